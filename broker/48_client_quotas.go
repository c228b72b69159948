package broker

// DescribeClientQuotas (key 48) and AlterClientQuotas (key 49), v0-v1, and
// the throttling of clients over their quotas.
//
// Quotas (broker/quota) are producer_byte_rate and consumer_byte_rate for
// users, client ids, users with client ids, and their defaults, as in
// Kafka (kafka-configs.sh --alter --entity-type users ... --add-config
// producer_byte_rate=...). AlterClientQuotas writes one WAL entry per
// entity (type 13) on the leader and answers once it is committed; every
// replica applies it, and state checkpoints carry the quotas, so every
// node enforces the same quotas. A follower hands AlterClientQuotas to the
// leader (clients send it to any broker) and answers once the change has
// reached it.
//
// Each node measures and enforces quotas on its own traffic, as each Kafka
// broker does: Produce requests count their size, Fetch answers the bytes
// of the records in them. A request that takes its client over a quota is
// answered with ThrottleMillis, the time after which the client's rate is
// back at its quota, and the connection reads no further request before
// then (Kafka's KIP-219: clients of Produce v6+ and Fetch v8+ also wait on
// their side); older versions get their answer only after that time, as
// Kafka does for them. Fetch answers keep their records (Kafka sends an
// empty answer and counts nothing instead; the rate comes out the same).
//
// With --acls, DescribeClientQuotas needs DescribeConfigs on the cluster
// and AlterClientQuotas AlterConfigs on the cluster, as in Kafka.

import (
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tandem-io/tandem/broker/quota"
	"github.com/tandem-io/tandem/broker/wal"
)

func init() {
	register(kmsg.DescribeClientQuotas.Int16(), 0, 1, handleDescribeClientQuotas)
	register(kmsg.AlterClientQuotas.Int16(), 0, 1, handleAlterClientQuotas)
}

// clientQuotaEntry is the WAL entry of one entity's quota changes.
type clientQuotaEntry struct {
	Entity quota.Entity        `json:"entity"`
	Set    map[string]*float64 `json:"set"` // nil value: remove
}

// quotaUser is the user part of a connection's quota entity: its
// principal's name (ANONYMOUS without SASL or a client certificate).
func quotaUser(rc *reqCtx) string {
	_, name, _ := strings.Cut(rc.auth.principal, ":")
	return name
}

// throttle records n bytes of quota q for the request's client and, when
// that takes the client over its quota, mutes the connection for the
// throttle time it returns.
func (b *Broker) throttle(rc *reqCtx, q string, n int) time.Duration {
	now := time.Now()
	t := b.quotas.Record(quotaUser(rc), rc.clientID, q, n, now)
	if t <= 0 {
		return 0
	}
	rc.auth.mutedUntil.Store(now.Add(t).UnixNano())
	b.metrics.throttled.WithLabelValues(q).Inc()
	b.metrics.throttleTime.WithLabelValues(q).Add(t.Seconds())
	return t
}

// waitUnmuted waits until the connection may read its next request. It
// reports false if the connection closed meanwhile.
func (b *Broker) waitUnmuted(ctx context.Context, a *connAuth) bool {
	d := time.Until(time.Unix(0, a.mutedUntil.Load()))
	if d <= 0 {
		return true
	}
	return sleepCtx(ctx, d)
}

// sleepCtx sleeps d, or less if ctx ends (then it reports false).
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func handleDescribeClientQuotas(b *Broker, rc *reqCtx, req kmsg.Request) func() kmsg.Response {
	r := req.(*kmsg.DescribeClientQuotasRequest)
	resp := r.ResponseKind().(*kmsg.DescribeClientQuotasResponse)
	if !b.allowedCluster(rc, kmsg.ACLOperationDescribeConfigs) {
		resp.ErrorCode = kerr.ClusterAuthorizationFailed.Code
		return now(resp)
	}
	var comps []quota.Component
	seen := map[string]bool{}
	for _, c := range r.Components {
		if seen[c.EntityType] {
			resp.ErrorCode, resp.ErrorMessage = kerr.InvalidRequest.Code, errMsg("entity type "+c.EntityType+" filtered twice")
			return now(resp)
		}
		seen[c.EntityType] = true
		qc := quota.Component{Type: c.EntityType}
		switch c.MatchType {
		case 0: // EXACT
			if c.Match == nil {
				qc.Default = true // Kafka: an exact match on null is the default
			} else {
				qc.Name = *c.Match
			}
		case 1:
			qc.Default = true
		case 2:
			qc.Any = true
		default:
			resp.ErrorCode, resp.ErrorMessage = kerr.InvalidRequest.Code, errMsg("unknown match type "+c.MatchType.String())
			return now(resp)
		}
		comps = append(comps, qc)
	}
	for _, cfg := range b.quotas.Describe(comps, r.Strict) {
		e := kmsg.NewDescribeClientQuotasResponseEntry()
		for _, p := range []struct {
			typ  string
			part *quota.Part
		}{{quota.TypeUser, cfg.Entity.User}, {quota.TypeClientID, cfg.Entity.ClientID}} {
			if p.part == nil {
				continue
			}
			ent := kmsg.NewDescribeClientQuotasResponseEntryEntity()
			ent.Type = p.typ
			if !p.part.Default {
				n := p.part.Name
				ent.Name = &n
			}
			e.Entity = append(e.Entity, ent)
		}
		for _, k := range []string{quota.ConsumerByteRate, quota.ProducerByteRate} {
			if v, ok := cfg.Values[k]; ok {
				val := kmsg.NewDescribeClientQuotasResponseEntryValue()
				val.Key, val.Value = k, v
				e.Values = append(e.Values, val)
			}
		}
		resp.Entries = append(resp.Entries, e)
	}
	return now(resp)
}

func handleAlterClientQuotas(b *Broker, rc *reqCtx, req kmsg.Request) func() kmsg.Response {
	r := req.(*kmsg.AlterClientQuotasRequest)
	resp := r.ResponseKind().(*kmsg.AlterClientQuotasResponse)
	// Each answer entry names its entity as the request did.
	for _, re := range r.Entries {
		e := kmsg.NewAlterClientQuotasResponseEntry()
		for _, ent := range re.Entity {
			ae := kmsg.NewAlterClientQuotasResponseEntryEntity()
			ae.Type, ae.Name = ent.Type, ent.Name
			e.Entity = append(e.Entity, ae)
		}
		resp.Entries = append(resp.Entries, e)
	}
	failAll := func(code int16, msg string) func() kmsg.Response {
		for i := range resp.Entries {
			resp.Entries[i].ErrorCode, resp.Entries[i].ErrorMessage = code, errMsg(msg)
		}
		return now(resp)
	}
	if !b.allowedCluster(rc, kmsg.ACLOperationAlterConfigs) {
		return failAll(kerr.ClusterAuthorizationFailed.Code, "altering client quotas needs ALTER_CONFIGS on the cluster")
	}
	// Validate every entry first: a bad one is refused on its own.
	entries := make([]*clientQuotaEntry, len(r.Entries))
	for i, re := range r.Entries {
		var types []string
		var names []*string
		for _, ent := range re.Entity {
			types, names = append(types, ent.Type), append(names, ent.Name)
		}
		ent, err := quota.EntityFrom(types, names)
		if err == nil {
			set := map[string]*float64{}
			for _, op := range re.Ops {
				if op.Remove {
					set[op.Key] = nil
					continue
				}
				if err = quota.ValidateValue(op.Key, op.Value); err != nil {
					break
				}
				v := op.Value
				set[op.Key] = &v
			}
			entries[i] = &clientQuotaEntry{Entity: ent, Set: set}
		}
		if err != nil {
			entries[i] = nil
			resp.Entries[i].ErrorCode, resp.Entries[i].ErrorMessage = kerr.InvalidRequest.Code, errMsg(err.Error())
		}
	}
	if r.ValidateOnly {
		return now(resp)
	}
	if !b.isLeader() {
		return func() kmsg.Response {
			ctx, cancel := rc.timeoutCtx(0)
			defer cancel()
			fwd, err := b.handToLeader(ctx, rc, r)
			if err != nil {
				return failAll(kerr.RequestTimedOut.Code, "handing the request to the leader failed: "+err.Error())()
			}
			lr := fwd.(*kmsg.AlterClientQuotasResponse)
			// Answer once the changes the leader made are here.
			b.waitApplied(ctx, func() bool {
				for i, e := range entries {
					if e == nil || i >= len(lr.Entries) || lr.Entries[i].ErrorCode != 0 {
						continue
					}
					cur := b.quotas.Describe(entityComponents(e.Entity), true)
					for k, v := range e.Set {
						has := len(cur) == 1
						var got float64
						if has {
							got, has = cur[0].Values[k]
						}
						if (v == nil) == has || (v != nil && got != *v) {
							return false
						}
					}
				}
				return true
			})
			return lr
		}
	}
	return func() kmsg.Response {
		ctx, cancel := rc.timeoutCtx(0)
		defer cancel()
		for i, e := range entries {
			if e == nil || len(e.Set) == 0 {
				continue
			}
			if err := b.appendMeta(ctx, wal.TypeClientQuota, e); err != nil {
				b.log.Warn("altering client quotas failed", "entity", e.Entity.String(), "error", err)
				resp.Entries[i].ErrorCode, resp.Entries[i].ErrorMessage = kerr.RequestTimedOut.Code, errMsg(err.Error())
				continue
			}
			b.log.Info("client quotas changed", "entity", e.Entity.String(), "changes", quotaChanges(e.Set), "by", rc.auth.principal)
		}
		return resp
	}
}

// entityComponents is the exact filter of one entity.
func entityComponents(e quota.Entity) []quota.Component {
	var cs []quota.Component
	if e.User != nil {
		cs = append(cs, quota.Component{Type: quota.TypeUser, Name: e.User.Name, Default: e.User.Default})
	}
	if e.ClientID != nil {
		cs = append(cs, quota.Component{Type: quota.TypeClientID, Name: e.ClientID.Name, Default: e.ClientID.Default})
	}
	return cs
}

func quotaChanges(set map[string]*float64) string {
	var parts []string
	for k, v := range set {
		if v == nil {
			parts = append(parts, k+" removed")
		} else {
			parts = append(parts, k+"="+strconv.FormatFloat(*v, 'f', -1, 64))
		}
	}
	return strings.Join(parts, ", ")
}

package broker

// IncrementalAlterConfigs (key 44), v0-v1, and AlterConfigs (key 33), v0-v2.
//
// Topic configs only (broker settings are command-line flags). Set and
// delete are supported; APPEND and SUBTRACT (list configs) are refused with
// INVALID_CONFIG since no topic config here is a list. AlterConfigs replaces
// the whole set of a topic's overrides, as Kafka's legacy API does. Changes
// go through the WAL, so followers and restarts see them. A follower hands
// the request to the leader (alterConfigsViaLeader), as Kafka brokers
// forward it to the controller; until 2026-12-06 it answered
// NOT_CONTROLLER.

import (
	"context"
	"fmt"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tandem-io/tandem/broker/wal"
)

func init() {
	register(kmsg.IncrementalAlterConfigs.Int16(), 0, 1, handleIncrementalAlterConfigs)
	register(kmsg.AlterConfigs.Int16(), 0, 2, handleAlterConfigs)
}

func (b *Broker) alterTopicConfig(ctx context.Context, name string, set map[string]*string, validateOnly bool) (*kerr.Error, string) {
	if !b.isLeader() {
		return kerr.NotController, "not the leader"
	}
	if _, ok := b.topicSnap(name); !ok {
		return kerr.UnknownTopicOrPartition, "unknown topic"
	}
	for k, v := range set {
		if v != nil {
			if e := b.validateTopicConfig(k, *v); e != nil {
				return e, "config " + k + "=" + *v + " is not supported"
			}
		} else if _, known := b.configDefaults()[k]; !known {
			return kerr.InvalidConfig, "unknown config " + k
		}
	}
	if validateOnly {
		return nil, ""
	}
	if err := b.appendMeta(ctx, wal.TypeAlterConfig, alterConfigEntry{Name: name, Set: set}); err != nil {
		return kerr.RequestTimedOut, err.Error()
	}
	b.log.Info("topic config changed", "topic", name, "changes", len(set))
	return nil, ""
}

func handleIncrementalAlterConfigs(b *Broker, rc *reqCtx, req kmsg.Request) func() kmsg.Response {
	r := req.(*kmsg.IncrementalAlterConfigsRequest)
	resp := r.ResponseKind().(*kmsg.IncrementalAlterConfigsResponse)
	return func() kmsg.Response {
		ctx, cancel := rc.timeoutCtx(0)
		defer cancel()
		if !b.isLeader() {
			return b.alterConfigsViaLeader(ctx, rc, r)
		}
		for _, rr := range r.Resources {
			sr := kmsg.NewIncrementalAlterConfigsResponseResource()
			sr.ResourceType = rr.ResourceType
			sr.ResourceName = rr.ResourceName
			code, msg := func() (*kerr.Error, string) {
				if int8(rr.ResourceType) != resourceTopic {
					return kerr.InvalidRequest, "only topic configs can be altered; broker settings are flags"
				}
				if !b.allowedTopic(rc, kmsg.ACLOperationAlterConfigs, rr.ResourceName) {
					return kerr.TopicAuthorizationFailed, "altering a topic's configs needs ALTER_CONFIGS on the topic"
				}
				set := map[string]*string{}
				for _, c := range rr.Configs {
					switch c.Op {
					case kmsg.IncrementalAlterConfigOpSet:
						if c.Value == nil {
							return kerr.InvalidConfig, "SET without a value"
						}
						set[c.Name] = c.Value
					case kmsg.IncrementalAlterConfigOpDelete:
						set[c.Name] = nil
					default:
						return kerr.InvalidConfig, "APPEND and SUBTRACT apply to list configs; none exist here"
					}
				}
				return b.alterTopicConfig(ctx, rr.ResourceName, set, r.ValidateOnly)
			}()
			if code != nil {
				sr.ErrorCode = code.Code
				sr.ErrorMessage = &msg
			}
			resp.Resources = append(resp.Resources, sr)
		}
		return resp
	}
}

func handleAlterConfigs(b *Broker, rc *reqCtx, req kmsg.Request) func() kmsg.Response {
	r := req.(*kmsg.AlterConfigsRequest)
	resp := r.ResponseKind().(*kmsg.AlterConfigsResponse)
	return func() kmsg.Response {
		ctx, cancel := rc.timeoutCtx(0)
		defer cancel()
		if !b.isLeader() {
			return b.alterConfigsViaLeader(ctx, rc, r)
		}
		for _, rr := range r.Resources {
			sr := kmsg.NewAlterConfigsResponseResource()
			sr.ResourceType = rr.ResourceType
			sr.ResourceName = rr.ResourceName
			code, msg := func() (*kerr.Error, string) {
				if int8(rr.ResourceType) != resourceTopic {
					return kerr.InvalidRequest, "only topic configs can be altered; broker settings are flags"
				}
				if !b.allowedTopic(rc, kmsg.ACLOperationAlterConfigs, rr.ResourceName) {
					return kerr.TopicAuthorizationFailed, "altering a topic's configs needs ALTER_CONFIGS on the topic"
				}
				snap, ok := b.topicSnap(rr.ResourceName)
				if !ok {
					return kerr.UnknownTopicOrPartition, "unknown topic"
				}
				set := map[string]*string{}
				for k := range snap.configs {
					set[k] = nil
				}
				for _, c := range rr.Configs {
					set[c.Name] = c.Value
				}
				return b.alterTopicConfig(ctx, rr.ResourceName, set, r.ValidateOnly)
			}()
			if code != nil {
				sr.ErrorCode = code.Code
				sr.ErrorMessage = &msg
			}
			resp.Resources = append(resp.Resources, sr)
		}
		return resp
	}
}

// alterConfigsViaLeader answers a follower's AlterConfigs or
// IncrementalAlterConfigs: each resource is authorized here (the leader
// sees this node's broker login, not the client's), the allowed ones are
// handed to the leader, as a Kafka broker forwards them to the
// controller, and the answer comes once the changes have replicated to
// this node, so that the client reads them back here.
func (b *Broker) alterConfigsViaLeader(ctx context.Context, rc *reqCtx, req kmsg.Request) kmsg.Response {
	type change struct {
		name string
		set  map[string]*string // nil value: removed
	}
	refused := map[string]bool{} // "type/name"
	key := func(typ kmsg.ConfigResourceType, name string) string { return fmt.Sprint(int8(typ), "/", name) }
	mayAlter := func(typ kmsg.ConfigResourceType, name string) bool {
		if int8(typ) == resourceTopic && !b.allowedTopic(rc, kmsg.ACLOperationAlterConfigs, name) {
			refused[key(typ, name)] = true
			return false
		}
		return true
	}
	var changes []change // what the leader must have applied, by topic
	var fwd kmsg.Request
	var validateOnly bool
	switch r := req.(type) {
	case *kmsg.IncrementalAlterConfigsRequest:
		f := *r
		f.Resources = nil
		for _, rr := range r.Resources {
			if !mayAlter(rr.ResourceType, rr.ResourceName) {
				continue
			}
			f.Resources = append(f.Resources, rr)
			c := change{name: rr.ResourceName, set: map[string]*string{}}
			for _, cfg := range rr.Configs {
				c.set[cfg.Name] = cfg.Value
				if cfg.Op == kmsg.IncrementalAlterConfigOpDelete {
					c.set[cfg.Name] = nil
				}
			}
			changes = append(changes, c)
		}
		fwd, validateOnly = &f, r.ValidateOnly
	case *kmsg.AlterConfigsRequest:
		f := *r
		f.Resources = nil
		for _, rr := range r.Resources {
			if !mayAlter(rr.ResourceType, rr.ResourceName) {
				continue
			}
			f.Resources = append(f.Resources, rr)
			c := change{name: rr.ResourceName, set: map[string]*string{}}
			for _, cfg := range rr.Configs {
				c.set[cfg.Name] = cfg.Value
			}
			changes = append(changes, c)
		}
		fwd, validateOnly = &f, r.ValidateOnly
	}
	// result answers one resource: the leader's answer, a local refusal,
	// or the failure to reach the leader.
	var lead kmsg.Response
	var fwdErr error
	if len(changes) > 0 {
		lead, fwdErr = b.handToLeader(ctx, rc, fwd)
	}
	leaderCode := func(typ kmsg.ConfigResourceType, name string) (int16, *string) {
		switch l := lead.(type) {
		case *kmsg.IncrementalAlterConfigsResponse:
			for _, lr := range l.Resources {
				if lr.ResourceType == typ && lr.ResourceName == name {
					return lr.ErrorCode, lr.ErrorMessage
				}
			}
		case *kmsg.AlterConfigsResponse:
			for _, lr := range l.Resources {
				if lr.ResourceType == typ && lr.ResourceName == name {
					return lr.ErrorCode, lr.ErrorMessage
				}
			}
		}
		msg := "handing the request to the leader failed"
		if fwdErr != nil {
			msg += ": " + fwdErr.Error()
		}
		return kerr.RequestTimedOut.Code, &msg
	}
	result := func(typ kmsg.ConfigResourceType, name string) (int16, *string) {
		if refused[key(typ, name)] {
			return kerr.TopicAuthorizationFailed.Code, errMsg("altering a topic's configs needs ALTER_CONFIGS on the topic")
		}
		return leaderCode(typ, name)
	}
	// Wait until what the leader changed has replicated here.
	if !validateOnly {
		b.waitApplied(ctx, func() bool {
			for _, c := range changes {
				if code, _ := result(kmsg.ConfigResourceTypeTopic, c.name); code != 0 {
					continue
				}
				for k, v := range c.set {
					if got := b.topicConfig(c.name, k); (v == nil && got != "") || (v != nil && got != *v) {
						return false
					}
				}
			}
			return true
		})
	}
	switch r := req.(type) {
	case *kmsg.IncrementalAlterConfigsRequest:
		resp := r.ResponseKind().(*kmsg.IncrementalAlterConfigsResponse)
		for _, rr := range r.Resources {
			sr := kmsg.NewIncrementalAlterConfigsResponseResource()
			sr.ResourceType, sr.ResourceName = rr.ResourceType, rr.ResourceName
			sr.ErrorCode, sr.ErrorMessage = result(rr.ResourceType, rr.ResourceName)
			resp.Resources = append(resp.Resources, sr)
		}
		return resp
	default:
		r2 := req.(*kmsg.AlterConfigsRequest)
		resp := r2.ResponseKind().(*kmsg.AlterConfigsResponse)
		for _, rr := range r2.Resources {
			sr := kmsg.NewAlterConfigsResponseResource()
			sr.ResourceType, sr.ResourceName = rr.ResourceType, rr.ResourceName
			sr.ErrorCode, sr.ErrorMessage = result(rr.ResourceType, rr.ResourceName)
			resp.Resources = append(resp.Resources, sr)
		}
		return resp
	}
}

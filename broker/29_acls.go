package broker

// DescribeAcls (key 29), CreateAcls (key 30), DeleteAcls (key 31), v0-v3,
// and the authorization of every other request.
//
// With --acls (Config.ACLs) each request is authorized as Kafka's
// authorizer does it (broker/acl has the rules): the connection's
// principal (User: and the SASL user, else the TLS client certificate's
// subject, else User:ANONYMOUS) needs, for instance, WRITE on a topic to
// produce to it, READ on the topic and on the group to consume in a group,
// CREATE on the cluster or the topic to create it. A refusal is the error
// Kafka gives: TOPIC_AUTHORIZATION_FAILED, GROUP_AUTHORIZATION_FAILED,
// CLUSTER_AUTHORIZATION_FAILED or TRANSACTIONAL_ID_AUTHORIZATION_FAILED.
//
// The bindings are WAL entries (type 12): CreateAcls and DeleteAcls append
// one on the leader and answer once it is committed, and every replica
// applies it, so every node authorizes with the same bindings and a
// promoted follower has them all. A follower hands CreateAcls and
// DeleteAcls to the leader (Kafka clients send them to any broker) after
// checking that the client may alter the cluster, and answers once the
// change has reached it. Without --acls the three APIs answer
// SECURITY_DISABLED, as Kafka without an authorizer.

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/tandem-io/tandem/broker/acl"
	"github.com/tandem-io/tandem/broker/wal"
)

func init() {
	register(kmsg.DescribeACLs.Int16(), 0, 3, handleDescribeACLs)
	register(kmsg.CreateACLs.Int16(), 0, 3, handleCreateACLs)
	register(kmsg.DeleteACLs.Int16(), 0, 3, handleDeleteACLs)
}

// aclEntry is the WAL entry of one CreateAcls or DeleteAcls request.
type aclEntry struct {
	Add    []acl.Binding `json:"add,omitempty"`
	Remove []acl.Binding `json:"remove,omitempty"`
}

// connPrincipal is the principal of a new connection before any SASL
// login: the subject of its TLS client certificate, or User:ANONYMOUS.
func connPrincipal(c net.Conn) string {
	if tc, ok := c.(*tls.Conn); ok {
		if certs := tc.ConnectionState().PeerCertificates; len(certs) > 0 {
			return "User:" + certs[0].Subject.String()
		}
	}
	return acl.Anonymous
}

// allowed reports whether the request's principal may perform op on the
// resource (always, without --acls). A refusal is counted and logged.
func (b *Broker) allowed(rc *reqCtx, op kmsg.ACLOperation, rt kmsg.ACLResourceType, name string) bool {
	if b.authz == nil {
		return true
	}
	if b.authz.Authorize(rc.auth.principal, rc.host, op, rt, name) {
		return true
	}
	b.denied(rc, op, rt, name)
	return false
}

// allowedAny reports whether the principal may perform op on at least one
// resource of type rt (always, without --acls).
func (b *Broker) allowedAny(rc *reqCtx, op kmsg.ACLOperation, rt kmsg.ACLResourceType) bool {
	return b.authz == nil || b.authz.AuthorizeAny(rc.auth.principal, rc.host, op, rt)
}

// quietlyAllowed is allowed without counting or logging a refusal: for
// requests that only leave unauthorized resources out of an answer
// (Metadata listing every topic, ListGroups).
func (b *Broker) quietlyAllowed(rc *reqCtx, op kmsg.ACLOperation, rt kmsg.ACLResourceType, name string) bool {
	return b.authz == nil || b.authz.Authorize(rc.auth.principal, rc.host, op, rt, name)
}

func (b *Broker) denied(rc *reqCtx, op kmsg.ACLOperation, rt kmsg.ACLResourceType, name string) {
	b.metrics.aclDenied.WithLabelValues(resourceLabel(rt)).Inc()
	args := []any{"principal", rc.auth.principal, "client", rc.host, "operation", op.String(),
		"resource_type", rt.String(), "resource", name}
	if b.aclLog.Loud(rc.auth.principal) {
		b.log.Info("request refused by the ACLs", args...)
	} else {
		b.log.Debug("request refused by the ACLs", args...)
	}
}

func resourceLabel(rt kmsg.ACLResourceType) string {
	switch rt {
	case kmsg.ACLResourceTypeTopic:
		return "topic"
	case kmsg.ACLResourceTypeGroup:
		return "group"
	case kmsg.ACLResourceTypeCluster:
		return "cluster"
	case kmsg.ACLResourceTypeTransactionalId:
		return "transactional_id"
	}
	return "other"
}

// allowedTopic is allowed for a topic.
func (b *Broker) allowedTopic(rc *reqCtx, op kmsg.ACLOperation, name string) bool {
	return b.allowed(rc, op, kmsg.ACLResourceTypeTopic, name)
}

// allowedGroup is allowed for a consumer group.
func (b *Broker) allowedGroup(rc *reqCtx, op kmsg.ACLOperation, name string) bool {
	return b.allowed(rc, op, kmsg.ACLResourceTypeGroup, name)
}

// allowedCluster is allowed for the cluster.
func (b *Broker) allowedCluster(rc *reqCtx, op kmsg.ACLOperation) bool {
	return b.allowed(rc, op, kmsg.ACLResourceTypeCluster, acl.ClusterName)
}

// allowedCreateTopic: CREATE on the cluster, or on the topic, as Kafka.
func (b *Broker) allowedCreateTopic(rc *reqCtx, name string) bool {
	if b.authz == nil || b.quietlyAllowed(rc, kmsg.ACLOperationCreate, kmsg.ACLResourceTypeCluster, acl.ClusterName) {
		return true
	}
	return b.allowedTopic(rc, kmsg.ACLOperationCreate, name)
}

func errMsg(s string) *string { return &s }

// supportedOps is what Kafka's authorizer can grant on each resource type
// (AclEntry.supportedOperations): the operations an authorized_operations
// answer may list.
var supportedOps = map[kmsg.ACLResourceType][]kmsg.ACLOperation{
	kmsg.ACLResourceTypeTopic: {kmsg.ACLOperationRead, kmsg.ACLOperationWrite, kmsg.ACLOperationCreate, kmsg.ACLOperationDescribe,
		kmsg.ACLOperationDelete, kmsg.ACLOperationAlter, kmsg.ACLOperationDescribeConfigs, kmsg.ACLOperationAlterConfigs},
	kmsg.ACLResourceTypeGroup: {kmsg.ACLOperationRead, kmsg.ACLOperationDescribe, kmsg.ACLOperationDelete},
	kmsg.ACLResourceTypeCluster: {kmsg.ACLOperationCreate, kmsg.ACLOperationClusterAction, kmsg.ACLOperationDescribeConfigs,
		kmsg.ACLOperationAlterConfigs, kmsg.ACLOperationIdempotentWrite, kmsg.ACLOperationAlter, kmsg.ACLOperationDescribe},
}

// authorizedOps is Kafka's authorized_operations bit field (KIP-430) for a
// resource: bit n is set when the principal may perform the operation
// whose code is n. Without --acls every supported operation is allowed,
// as Kafka answers without an authorizer.
func (b *Broker) authorizedOps(rc *reqCtx, rt kmsg.ACLResourceType, name string) int32 {
	var bits int32
	for _, op := range supportedOps[rt] {
		if b.quietlyAllowed(rc, op, rt, name) {
			bits |= 1 << uint(op)
		}
	}
	return bits
}

func handleDescribeACLs(b *Broker, rc *reqCtx, req kmsg.Request) func() kmsg.Response {
	r := req.(*kmsg.DescribeACLsRequest)
	resp := r.ResponseKind().(*kmsg.DescribeACLsResponse)
	f := acl.Filter{ResourceType: r.ResourceType, ResourceName: r.ResourceName, PatternType: r.ResourcePatternType,
		Principal: r.Principal, Host: r.Host, Operation: r.Operation, Permission: r.PermissionType}
	switch {
	case b.authz == nil:
		resp.ErrorCode, resp.ErrorMessage = kerr.SecurityDisabled.Code, errMsg("ACLs are not enforced on this broker (--acls)")
		return now(resp)
	case !b.allowedCluster(rc, kmsg.ACLOperationDescribe):
		resp.ErrorCode = kerr.ClusterAuthorizationFailed.Code
		return now(resp)
	}
	if err := f.Validate(); err != nil {
		resp.ErrorCode, resp.ErrorMessage = kerr.InvalidRequest.Code, errMsg(err.Error())
		return now(resp)
	}
	// Select sorts by resource: one answer resource per run.
	for _, bd := range b.acls.Select(f) {
		n := len(resp.Resources)
		if n == 0 || resp.Resources[n-1].ResourceType != bd.ResourceType ||
			resp.Resources[n-1].ResourcePatternType != bd.PatternType || resp.Resources[n-1].ResourceName != bd.ResourceName {
			res := kmsg.NewDescribeACLsResponseResource()
			res.ResourceType, res.ResourceName, res.ResourcePatternType = bd.ResourceType, bd.ResourceName, bd.PatternType
			resp.Resources = append(resp.Resources, res)
			n++
		}
		a := kmsg.NewDescribeACLsResponseResourceACL()
		a.Principal, a.Host, a.Operation, a.PermissionType = bd.Principal, bd.Host, bd.Operation, bd.Permission
		resp.Resources[n-1].ACLs = append(resp.Resources[n-1].ACLs, a)
	}
	return now(resp)
}

func handleCreateACLs(b *Broker, rc *reqCtx, req kmsg.Request) func() kmsg.Response {
	r := req.(*kmsg.CreateACLsRequest)
	resp := r.ResponseKind().(*kmsg.CreateACLsResponse)
	failAll := func(code int16, msg string) func() kmsg.Response {
		for range r.Creations {
			res := kmsg.NewCreateACLsResponseResult()
			res.ErrorCode, res.ErrorMessage = code, errMsg(msg)
			resp.Results = append(resp.Results, res)
		}
		return now(resp)
	}
	if code, msg := b.aclChangeRefused(rc, "creating"); code != 0 {
		return failAll(code, msg)
	}
	if !b.isLeader() {
		return func() kmsg.Response {
			ctx, cancel := rc.timeoutCtx(0)
			defer cancel()
			fwd, err := b.handToLeader(ctx, rc, r)
			if err != nil {
				return failAll(kerr.RequestTimedOut.Code, "handing the request to the leader failed: "+err.Error())()
			}
			lr := fwd.(*kmsg.CreateACLsResponse)
			var want []acl.Binding
			for i, c := range r.Creations {
				if i < len(lr.Results) && lr.Results[i].ErrorCode == 0 {
					want = append(want, creationBinding(c))
				}
			}
			b.waitApplied(ctx, func() bool {
				for _, bd := range want {
					if !b.acls.Has(bd) {
						return false
					}
				}
				return true
			})
			return lr
		}
	}
	var entry aclEntry
	var ok []int // index of each entry binding's result
	for _, c := range r.Creations {
		res := kmsg.NewCreateACLsResponseResult()
		bd := creationBinding(c)
		if err := bd.Validate(); err != nil {
			res.ErrorCode, res.ErrorMessage = kerr.InvalidRequest.Code, errMsg(err.Error())
		} else {
			entry.Add = append(entry.Add, bd)
			ok = append(ok, len(resp.Results))
		}
		resp.Results = append(resp.Results, res)
	}
	if len(entry.Add) == 0 {
		return now(resp)
	}
	return func() kmsg.Response {
		ctx, cancel := rc.timeoutCtx(0)
		defer cancel()
		if err := b.appendMeta(ctx, wal.TypeACL, entry); err != nil {
			b.log.Warn("creating ACLs failed", "bindings", len(entry.Add), "error", err)
			for _, i := range ok {
				resp.Results[i].ErrorCode, resp.Results[i].ErrorMessage = kerr.RequestTimedOut.Code, errMsg(err.Error())
			}
			return resp
		}
		for _, bd := range entry.Add {
			b.log.Info("ACL created", "acl", bd.String(), "by", rc.auth.principal)
		}
		return resp
	}
}

// aclChangeRefused returns the error of a CreateAcls or DeleteAcls that
// this broker will not carry out (0: none): ACLs not enforced here, or a
// principal that may not alter the cluster.
func (b *Broker) aclChangeRefused(rc *reqCtx, what string) (int16, string) {
	switch {
	case b.authz == nil:
		return kerr.SecurityDisabled.Code, "ACLs are not enforced on this broker (--acls)"
	case !b.allowedCluster(rc, kmsg.ACLOperationAlter):
		return kerr.ClusterAuthorizationFailed.Code, what + " ACLs needs ALTER on the cluster"
	}
	return 0, ""
}

func creationBinding(c kmsg.CreateACLsRequestCreation) acl.Binding {
	return acl.Binding{ResourceType: c.ResourceType, ResourceName: c.ResourceName, PatternType: c.ResourcePatternType,
		Principal: c.Principal, Host: c.Host, Operation: c.Operation, Permission: c.PermissionType}
}

func handleDeleteACLs(b *Broker, rc *reqCtx, req kmsg.Request) func() kmsg.Response {
	r := req.(*kmsg.DeleteACLsRequest)
	resp := r.ResponseKind().(*kmsg.DeleteACLsResponse)
	failAll := func(code int16, msg string) func() kmsg.Response {
		resp.Results = resp.Results[:0]
		for range r.Filters {
			res := kmsg.NewDeleteACLsResponseResult()
			res.ErrorCode, res.ErrorMessage = code, errMsg(msg)
			resp.Results = append(resp.Results, res)
		}
		return now(resp)
	}
	if code, msg := b.aclChangeRefused(rc, "deleting"); code != 0 {
		return failAll(code, msg)
	}
	if !b.isLeader() {
		return func() kmsg.Response {
			ctx, cancel := rc.timeoutCtx(0)
			defer cancel()
			fwd, err := b.handToLeader(ctx, rc, r)
			if err != nil {
				return failAll(kerr.RequestTimedOut.Code, "handing the request to the leader failed: "+err.Error())()
			}
			lr := fwd.(*kmsg.DeleteACLsResponse)
			var gone []acl.Binding
			for _, res := range lr.Results {
				for _, m := range res.MatchingACLs {
					if res.ErrorCode == 0 && m.ErrorCode == 0 {
						gone = append(gone, acl.Binding{ResourceType: m.ResourceType, ResourceName: m.ResourceName,
							PatternType: m.ResourcePatternType, Principal: m.Principal, Host: m.Host,
							Operation: m.Operation, Permission: m.PermissionType})
					}
				}
			}
			b.waitApplied(ctx, func() bool {
				for _, bd := range gone {
					if b.acls.Has(bd) {
						return false
					}
				}
				return true
			})
			return lr
		}
	}
	var entry aclEntry
	seen := map[acl.Binding]bool{}
	for _, rf := range r.Filters {
		res := kmsg.NewDeleteACLsResponseResult()
		f := acl.Filter{ResourceType: rf.ResourceType, ResourceName: rf.ResourceName, PatternType: rf.ResourcePatternType,
			Principal: rf.Principal, Host: rf.Host, Operation: rf.Operation, Permission: rf.PermissionType}
		if err := f.Validate(); err != nil {
			res.ErrorCode, res.ErrorMessage = kerr.InvalidRequest.Code, errMsg(err.Error())
			resp.Results = append(resp.Results, res)
			continue
		}
		for _, bd := range b.acls.Select(f) {
			m := kmsg.NewDeleteACLsResponseResultMatchingACL()
			m.ResourceType, m.ResourceName, m.ResourcePatternType = bd.ResourceType, bd.ResourceName, bd.PatternType
			m.Principal, m.Host, m.Operation, m.PermissionType = bd.Principal, bd.Host, bd.Operation, bd.Permission
			res.MatchingACLs = append(res.MatchingACLs, m)
			if !seen[bd] {
				seen[bd] = true
				entry.Remove = append(entry.Remove, bd)
			}
		}
		resp.Results = append(resp.Results, res)
	}
	if len(entry.Remove) == 0 {
		return now(resp)
	}
	return func() kmsg.Response {
		ctx, cancel := rc.timeoutCtx(0)
		defer cancel()
		if err := b.appendMeta(ctx, wal.TypeACL, entry); err != nil {
			b.log.Warn("deleting ACLs failed", "bindings", len(entry.Remove), "error", err)
			for i := range resp.Results {
				if resp.Results[i].ErrorCode == 0 && len(resp.Results[i].MatchingACLs) > 0 {
					resp.Results[i].ErrorCode, resp.Results[i].ErrorMessage = kerr.RequestTimedOut.Code, errMsg(err.Error())
					resp.Results[i].MatchingACLs = nil
				}
			}
			return resp
		}
		for _, bd := range entry.Remove {
			b.log.Info("ACL deleted", "acl", bd.String(), "by", rc.auth.principal)
		}
		return resp
	}
}

// waitApplied waits, up to ctx, until done reports that a change the leader
// made has reached this node.
func (b *Broker) waitApplied(ctx context.Context, done func() bool) {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !done() {
		select {
		case <-tick.C:
		case <-ctx.Done():
			return
		}
	}
}

// handToLeader sends a request that only the leader carries out (a
// follower got it from a client that sends it to any broker) to the
// leader, and returns the leader's answer in the version the client
// asked for. It logs who the request is handed on for: the leader sees
// this broker's user.
func (b *Broker) handToLeader(ctx context.Context, rc *reqCtx, req kmsg.Request) (kmsg.Response, error) {
	version := req.GetVersion() // the client's; the leader may be asked another
	b.log.Info("handing a request to the leader", "request", kmsg.NameForKey(req.Key()), "by", rc.auth.principal, "client", rc.host)
	resp, err := b.askLeader(ctx, req)
	req.SetVersion(version)
	if err != nil {
		return nil, err
	}
	resp.SetVersion(version)
	return resp, nil
}

// askLeader sends a request to the leader's Kafka listener, logging in as
// --sasl-broker-user when set, and returns its answer.
func (b *Broker) askLeader(ctx context.Context, req kmsg.Request) (kmsg.Response, error) {
	view := b.clusterView()
	var addr string
	for _, bi := range view.Brokers {
		if bi.NodeID == view.LeaderID && bi.NodeID != b.cfg.NodeID {
			addr = net.JoinHostPort(bi.Host, strconv.Itoa(int(bi.Port)))
		}
	}
	if addr == "" {
		return nil, fmt.Errorf("no leader known")
	}
	opts := []kgo.Opt{kgo.SeedBrokers(addr), kgo.RequestRetries(1)}
	if b.tlsClient != nil {
		opts = append(opts, kgo.DialTLSConfig(b.tlsClient.Clone()))
	}
	if b.cfg.SASLBrokerUser != "" {
		opts = append(opts, kgo.SASL(scram.Auth{User: b.cfg.SASLBrokerUser, Pass: b.cfg.SASLBrokerPassword}.AsSha512Mechanism()))
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	// Straight to the seed, the leader: kgo would send an ACL request to
	// any broker it learns of, this one included.
	resp, err := cl.SeedBrokers()[0].Request(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("leader %s: %w", addr, err)
	}
	return resp, nil
}

package broker

// FindCoordinator (key 10), v0-v4.
//
// Groups and transactions are coordinated by the leader (their state is WAL
// entries, which only the leader writes), so every node names the current
// leader for both key types. While no leader is known the answer is
// COORDINATOR_NOT_AVAILABLE, which clients retry.

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func init() { register(kmsg.FindCoordinator.Int16(), 0, 4, handleFindCoordinator) }

func handleFindCoordinator(b *Broker, rc *reqCtx, req kmsg.Request) func() kmsg.Response {
	r := req.(*kmsg.FindCoordinatorRequest)
	resp := r.ResponseKind().(*kmsg.FindCoordinatorResponse)
	view := b.clusterView()
	find := func(key string) (int32, string, int32, *kerr.Error) {
		switch r.CoordinatorType {
		case 0: // group
			if !b.allowedGroup(rc, kmsg.ACLOperationDescribe, key) {
				return -1, "", -1, kerr.GroupAuthorizationFailed
			}
		case 1: // transaction
			if !b.allowed(rc, kmsg.ACLOperationDescribe, kmsg.ACLResourceTypeTransactionalId, key) {
				return -1, "", -1, kerr.TransactionalIDAuthorizationFailed
			}
		default:
			return -1, "", -1, kerr.InvalidRequest
		}
		if view.LeaderID < 0 {
			return -1, "", -1, kerr.CoordinatorNotAvailable
		}
		for _, bi := range view.Brokers {
			if bi.NodeID == view.LeaderID {
				return bi.NodeID, bi.Host, bi.Port, nil
			}
		}
		return -1, "", -1, kerr.CoordinatorNotAvailable
	}
	if r.Version >= 4 {
		for _, key := range r.CoordinatorKeys {
			c := kmsg.NewFindCoordinatorResponseCoordinator()
			c.Key = key
			id, host, port, code := find(key)
			c.NodeID, c.Host, c.Port = id, host, port
			if code != nil {
				c.ErrorCode = code.Code
			}
			resp.Coordinators = append(resp.Coordinators, c)
		}
		return now(resp)
	}
	id, host, port, code := find(r.CoordinatorKey)
	resp.NodeID, resp.Host, resp.Port = id, host, port
	if code != nil {
		resp.ErrorCode = code.Code
	}
	return now(resp)
}

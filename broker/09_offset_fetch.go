package broker

// OffsetFetch (key 9), versions from group.Versions.
//
// Returns a group's committed offsets (-1 for partitions without one). Offsets
// are restored from the WAL at start-up and applied from the leader on followers.
//
// A request with RequireStable (v7+, KIP-447) gets UNSTABLE_OFFSET_COMMIT,
// which clients retry, for partitions with offsets that an open
// transaction has committed (TxnOffsetCommit) but not yet ended.
//
// The group state lives in package broker/group; this file only wires the
// API into the registry.

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tandem-io/tandem/broker/group"
)

func init() {
	v := group.Versions[kmsg.OffsetFetch.Int16()]
	register(kmsg.OffsetFetch.Int16(), v[0], v[1], func(b *Broker, rc *reqCtx, req kmsg.Request) func() kmsg.Response {
		return func() kmsg.Response {
			return b.groupCall(rc, req, func(req kmsg.Request) kmsg.Response {
				r := req.(*kmsg.OffsetFetchRequest)
				resp := b.groups.OffsetFetch(group.WithClientInfo(rc.ctx, rc.clientID, "/"+rc.host), r)
				if r.RequireStable {
					b.markUnstableOffsets(r, resp)
				}
				return resp
			})
		}
	})
}

// markUnstableOffsets answers UNSTABLE_OFFSET_COMMIT for the partitions
// whose group has transactional offsets pending.
func (b *Broker) markUnstableOffsets(r *kmsg.OffsetFetchRequest, resp *kmsg.OffsetFetchResponse) {
	pending := map[string]map[tp]bool{}
	b.appendMu.Lock()
	for _, s := range b.txns {
		for g, offs := range s.Offsets {
			if pending[g] == nil {
				pending[g] = map[tp]bool{}
			}
			for _, o := range offs {
				pending[g][tp{o.Topic, o.Partition}] = true
			}
		}
	}
	b.appendMu.Unlock()
	if len(pending) == 0 {
		return
	}
	code := kerr.UnstableOffsetCommit.Code
	for i := range resp.Topics {
		t := &resp.Topics[i]
		for j := range t.Partitions {
			if pending[r.Group][tp{t.Topic, t.Partitions[j].Partition}] {
				t.Partitions[j].ErrorCode = code
				t.Partitions[j].Offset = -1
			}
		}
	}
	for gi := range resp.Groups {
		g := &resp.Groups[gi]
		for i := range g.Topics {
			t := &g.Topics[i]
			for j := range t.Partitions {
				if pending[g.Group][tp{t.Topic, t.Partitions[j].Partition}] {
					t.Partitions[j].ErrorCode = code
					t.Partitions[j].Offset = -1
				}
			}
		}
	}
}

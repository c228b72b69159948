package broker

// OffsetCommit (key 8), versions from group.Versions.
//
// Commits consumer offsets for a group. The coordinator checks the member and
// generation, then the offsets are written to the WAL and the commit is
// answered once the entry is committed (replicated to the in-sync replicas),
// so committed offsets survive a crash and a failover.
//
// The group state lives in package broker/group; this file only wires the
// API into the registry.

import (
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tandem-io/tandem/broker/group"
)

func init() {
	v := group.Versions[kmsg.OffsetCommit.Int16()]
	register(kmsg.OffsetCommit.Int16(), v[0], v[1], func(b *Broker, rc *reqCtx, req kmsg.Request) func() kmsg.Response {
		return func() kmsg.Response {
			return b.groupCall(rc, req, func(req kmsg.Request) kmsg.Response {
				return b.groups.OffsetCommit(group.WithClientInfo(rc.ctx, rc.clientID, "/"+rc.host), req.(*kmsg.OffsetCommitRequest))
			})
		}
	})
}

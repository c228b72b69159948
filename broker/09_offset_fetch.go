package broker

// OffsetFetch (key 9), versions from group.Versions.
//
// Returns a group's committed offsets (-1 for partitions without one). Offsets
// are restored from the WAL at start-up and applied from the leader on followers.
//
// The group state lives in package broker/group; this file only wires the
// API into the registry.

import (
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tandem-io/tandem/broker/group"
)

func init() {
	v := group.Versions[kmsg.OffsetFetch.Int16()]
	register(kmsg.OffsetFetch.Int16(), v[0], v[1], func(b *Broker, rc *reqCtx, req kmsg.Request) func() kmsg.Response {
		return func() kmsg.Response {
			return b.groupCall(rc, req, func(req kmsg.Request) kmsg.Response {
				return b.groups.OffsetFetch(group.WithClientInfo(rc.ctx, rc.clientID, "/"+rc.host), req.(*kmsg.OffsetFetchRequest))
			})
		}
	})
}

package broker

// OffsetDelete (key 47), versions from group.Versions.
//
// Deletes a group's committed offsets for some partitions (persisted in the WAL).

import (
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tandem-io/tandem/broker/group"
)

func init() {
	v := group.Versions[kmsg.OffsetDelete.Int16()]
	register(kmsg.OffsetDelete.Int16(), v[0], v[1], func(b *Broker, rc *reqCtx, req kmsg.Request) func() kmsg.Response {
		return func() kmsg.Response {
			return b.groupCall(rc, req, func(req kmsg.Request) kmsg.Response {
				return b.groups.OffsetDelete(group.WithClientInfo(rc.ctx, rc.clientID, "/"+rc.host), req.(*kmsg.OffsetDeleteRequest))
			})
		}
	})
}

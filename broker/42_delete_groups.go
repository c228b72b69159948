package broker

// DeleteGroups (key 42), versions from group.Versions.
//
// Deletes empty groups and their committed offsets (persisted as deletion
// entries in the WAL, so a restart does not bring them back).

import (
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tandem-io/tandem/broker/group"
)

func init() {
	v := group.Versions[kmsg.DeleteGroups.Int16()]
	register(kmsg.DeleteGroups.Int16(), v[0], v[1], func(b *Broker, rc *reqCtx, req kmsg.Request) func() kmsg.Response {
		return func() kmsg.Response {
			return b.groupCall(rc, req, func(req kmsg.Request) kmsg.Response {
				return b.groups.DeleteGroups(group.WithClientInfo(rc.ctx, rc.clientID, "/"+rc.host), req.(*kmsg.DeleteGroupsRequest))
			})
		}
	})
}

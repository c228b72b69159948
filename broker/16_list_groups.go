package broker

// ListGroups (key 16), versions from group.Versions.
//
// Lists the groups this coordinator knows.
//
// The group state lives in package broker/group; this file only wires the
// API into the registry.

import (
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tandem-io/tandem/broker/group"
)

func init() {
	v := group.Versions[kmsg.ListGroups.Int16()]
	register(kmsg.ListGroups.Int16(), v[0], v[1], func(b *Broker, rc *reqCtx, req kmsg.Request) func() kmsg.Response {
		return func() kmsg.Response {
			return b.groupCall(rc, req, func(req kmsg.Request) kmsg.Response {
				return b.groups.ListGroups(group.WithClientInfo(rc.ctx, rc.clientID, "/"+rc.host), req.(*kmsg.ListGroupsRequest))
			})
		}
	})
}

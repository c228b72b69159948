package broker

// JoinGroup (key 11), versions from group.Versions.
//
// Joins a member to a consumer group and waits for the rebalance to complete
// (Kafka's classic group protocol; v4+ first answers MEMBER_ID_REQUIRED).
//
// The group state lives in package broker/group; this file only wires the
// API into the registry.

import (
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tandem-io/tandem/broker/group"
)

func init() {
	v := group.Versions[kmsg.JoinGroup.Int16()]
	register(kmsg.JoinGroup.Int16(), v[0], v[1], func(b *Broker, rc *reqCtx, req kmsg.Request) func() kmsg.Response {
		return func() kmsg.Response {
			return b.groupCall(rc, req, func(req kmsg.Request) kmsg.Response {
				return b.groups.JoinGroup(group.WithClientInfo(rc.ctx, rc.clientID, "/"+rc.host), req.(*kmsg.JoinGroupRequest))
			})
		}
	})
}

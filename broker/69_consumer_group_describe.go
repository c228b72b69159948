package broker

// ConsumerGroupDescribe (key 69), versions from group.Versions.
//
// Describes groups of the consumer protocol (KIP-848): epochs, assignor,
// members with their current and target assignments, and, when asked, the
// operations the principal may perform on each group (KIP-430). DESCRIBE
// on the group with --acls.
//
// The group state lives in package broker/group; this file only wires the
// API into the registry.

import (
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tandem-io/tandem/broker/group"
)

func init() {
	v := group.Versions[kmsg.ConsumerGroupDescribe.Int16()]
	register(kmsg.ConsumerGroupDescribe.Int16(), v[0], v[1], func(b *Broker, rc *reqCtx, req kmsg.Request) func() kmsg.Response {
		return func() kmsg.Response {
			return b.groupCall(rc, req, func(req kmsg.Request) kmsg.Response {
				r := req.(*kmsg.ConsumerGroupDescribeRequest)
				resp := b.groups.ConsumerGroupDescribe(group.WithClientInfo(rc.ctx, rc.clientID, "/"+rc.host), r)
				if r.IncludeAuthorizedOperations {
					for i := range resp.Groups {
						if resp.Groups[i].ErrorCode == 0 {
							resp.Groups[i].AuthorizedOperations = b.authorizedOps(rc, kmsg.ACLResourceTypeGroup, resp.Groups[i].Group)
						}
					}
				}
				return resp
			})
		}
	})
}

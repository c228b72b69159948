package broker

// DescribeGroups (key 15), versions from group.Versions.
//
// Describes groups: state, protocol, members and their assignments, and
// (v3+, when asked) the operations the principal may perform on each
// (KIP-430's authorized_operations).
//
// The group state lives in package broker/group; this file only wires the
// API into the registry.

import (
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tandem-io/tandem/broker/group"
)

func init() {
	v := group.Versions[kmsg.DescribeGroups.Int16()]
	register(kmsg.DescribeGroups.Int16(), v[0], v[1], func(b *Broker, rc *reqCtx, req kmsg.Request) func() kmsg.Response {
		return func() kmsg.Response {
			return b.groupCall(rc, req, func(req kmsg.Request) kmsg.Response {
				r := req.(*kmsg.DescribeGroupsRequest)
				resp := b.groups.DescribeGroups(group.WithClientInfo(rc.ctx, rc.clientID, "/"+rc.host), r)
				if r.Version >= 3 && r.IncludeAuthorizedOperations {
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

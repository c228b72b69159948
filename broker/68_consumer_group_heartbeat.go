package broker

// ConsumerGroupHeartbeat (key 68), versions from group.Versions.
//
// The consumer group protocol of KIP-848 (Kafka 4.0's group.protocol=consumer,
// franz-go's ServerSideBalancer): members join, heartbeat and leave with
// this one request, and the coordinator assigns the partitions
// (broker/group/consumer_group.go). READ on the group with --acls.
//
// The group state lives in package broker/group; this file only wires the
// API into the registry.

import (
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tandem-io/tandem/broker/group"
)

func init() {
	v := group.Versions[kmsg.ConsumerGroupHeartbeat.Int16()]
	register(kmsg.ConsumerGroupHeartbeat.Int16(), v[0], v[1], func(b *Broker, rc *reqCtx, req kmsg.Request) func() kmsg.Response {
		return func() kmsg.Response {
			return b.groupCall(rc, req, func(req kmsg.Request) kmsg.Response {
				return b.groups.ConsumerGroupHeartbeat(group.WithClientInfo(rc.ctx, rc.clientID, "/"+rc.host), req.(*kmsg.ConsumerGroupHeartbeatRequest))
			})
		}
	})
}

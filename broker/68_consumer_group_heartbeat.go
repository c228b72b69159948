package broker

// ConsumerGroupHeartbeat (key 68), versions from group.Versions.
//
// The consumer group protocol of KIP-848 (Kafka 4.0's group.protocol=consumer,
// franz-go's ServerSideBalancer): members join, heartbeat and leave with
// this one request, and the coordinator assigns the partitions
// (broker/group/consumer_group.go). READ on the group with --acls; a
// regular expression subscription then matches only the topics the member
// may describe, as in Kafka.
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
				ctx := group.WithClientInfo(rc.ctx, rc.clientID, "/"+rc.host)
				if authz := b.authz; authz != nil {
					// A regex subscription matches only topics the member may
					// describe. The coordinator keeps this with the member and
					// asks it again on later heartbeats of the group.
					principal, host := rc.auth.principal, rc.host
					ctx = group.WithTopicFilter(ctx, func(topic string) bool {
						return authz.Authorize(principal, host, kmsg.ACLOperationDescribe, kmsg.ACLResourceTypeTopic, topic)
					})
				}
				return b.groups.ConsumerGroupHeartbeat(ctx, req.(*kmsg.ConsumerGroupHeartbeatRequest))
			})
		}
	})
}

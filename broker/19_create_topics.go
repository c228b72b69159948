package broker

// CreateTopics (key 19), v0-v7.
//
// Creates topics through the WAL (so followers and restarts see them) and
// answers when the creation is committed. Partitions -1 means num.partitions.
// Every node replicates every partition, so a replication factor larger than
// the number of nodes is refused with INVALID_REPLICATION_FACTOR; -1 or any
// smaller value is accepted. Manual replica assignment is refused. Configs
// are validated against the topic configs the broker knows
// (DescribeConfigs lists them); v5+ responses echo the resulting configs.

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func init() { register(kmsg.CreateTopics.Int16(), 0, 7, handleCreateTopics) }

func handleCreateTopics(b *Broker, rc *reqCtx, req kmsg.Request) func() kmsg.Response {
	r := req.(*kmsg.CreateTopicsRequest)
	resp := r.ResponseKind().(*kmsg.CreateTopicsResponse)
	return func() kmsg.Response {
		ctx, cancel := rc.timeoutCtx(r.TimeoutMillis)
		defer cancel()
		nodes := len(b.clusterView().Brokers)
		for _, rt := range r.Topics {
			st := kmsg.NewCreateTopicsResponseTopic()
			st.Topic = rt.Topic
			st.NumPartitions = -1
			st.ReplicationFactor = -1
			configs := map[string]string{}
			for _, c := range rt.Configs {
				if c.Value != nil {
					configs[c.Name] = *c.Value
				}
			}
			var code *kerr.Error
			var msg string
			switch {
			case !b.allowedCreateTopic(rc, rt.Topic):
				code, msg = kerr.TopicAuthorizationFailed, "creating a topic needs CREATE on the cluster or on the topic"
			case len(rt.ReplicaAssignment) > 0:
				code, msg = kerr.InvalidReplicaAssignment, "manual replica assignment is not supported: every node holds every partition"
			case rt.ReplicationFactor > int16(nodes) || rt.ReplicationFactor == 0 || rt.ReplicationFactor < -1:
				code, msg = kerr.InvalidReplicationFactor, "replication factor must be -1 or between 1 and the number of nodes"
			default:
				code, msg = b.createTopic(ctx, rt.Topic, rt.NumPartitions, configs, r.ValidateOnly)
			}
			if code != nil {
				st.ErrorCode = code.Code
				st.ErrorMessage = &msg
			} else if snap, ok := b.topicSnap(rt.Topic); ok {
				st.TopicID = snap.id
				st.NumPartitions = int32(len(snap.partitions))
				st.ReplicationFactor = int16(nodes)
				for _, c := range b.describeTopicConfigs(snap, nil) {
					rc := kmsg.NewCreateTopicsResponseTopicConfig()
					rc.Name = c.Name
					rc.Value = c.Value
					rc.Source = c.Source
					rc.IsSensitive = false
					rc.ReadOnly = c.ReadOnly
					st.Configs = append(st.Configs, rc)
				}
			}
			resp.Topics = append(resp.Topics, st)
		}
		return resp
	}
}

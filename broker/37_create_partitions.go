package broker

// CreatePartitions (key 37), v0-v3.
//
// Raises a topic's partition count through the WAL. Lowering it, or asking
// for manual assignments, is refused as Kafka refuses it. A count above
// 100000 (maxPartitions, the CreateTopics limit) is refused with
// INVALID_PARTITIONS; an entry above it written by an older version is
// skipped when applied (see applyPrefixLocked).

import (
	"fmt"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tandem-io/tandem/broker/wal"
)

func init() { register(kmsg.CreatePartitions.Int16(), 0, 3, handleCreatePartitions) }

func handleCreatePartitions(b *Broker, rc *reqCtx, req kmsg.Request) func() kmsg.Response {
	r := req.(*kmsg.CreatePartitionsRequest)
	resp := r.ResponseKind().(*kmsg.CreatePartitionsResponse)
	return func() kmsg.Response {
		ctx, cancel := rc.timeoutCtx(r.TimeoutMillis)
		defer cancel()
		for _, rt := range r.Topics {
			st := kmsg.NewCreatePartitionsResponseTopic()
			st.Topic = rt.Topic
			code, msg := func() (*kerr.Error, string) {
				if !b.allowedTopic(rc, kmsg.ACLOperationAlter, rt.Topic) {
					return kerr.TopicAuthorizationFailed, "adding partitions needs ALTER on the topic"
				}
				if !b.isLeader() {
					return kerr.NotController, "not the leader"
				}
				snap, ok := b.topicSnap(rt.Topic)
				if !ok {
					return kerr.UnknownTopicOrPartition, "unknown topic"
				}
				if len(rt.Assignment) > 0 {
					return kerr.InvalidReplicaAssignment, "manual assignment is not supported"
				}
				if rt.Count <= int32(len(snap.partitions)) {
					return kerr.InvalidPartitions, fmt.Sprintf("topic has %d partitions; the count can only grow", len(snap.partitions))
				}
				if rt.Count > maxPartitions {
					return kerr.InvalidPartitions, fmt.Sprintf("%d partitions (at most %d)", rt.Count, maxPartitions)
				}
				if r.ValidateOnly {
					return nil, ""
				}
				if err := b.appendMeta(ctx, wal.TypeCreatePartitions, createPartitionsEntry{Name: rt.Topic, Count: rt.Count}); err != nil {
					return kerr.RequestTimedOut, err.Error()
				}
				b.log.Info("partitions added", "topic", rt.Topic, "count", rt.Count)
				return nil, ""
			}()
			if code != nil {
				st.ErrorCode = code.Code
				st.ErrorMessage = &msg
			}
			resp.Topics = append(resp.Topics, st)
		}
		return resp
	}
}

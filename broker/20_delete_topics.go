package broker

// DeleteTopics (key 20), v0-v6.
//
// Deletes topics (by name, or by topic id from v6) through the WAL. The
// records stay in the WAL segments until retention removes the segments, but
// they are no longer indexed or served, and a topic created again with the
// same name starts empty. Committed group offsets of the topic are dropped.

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tandem-io/tandem/broker/wal"
)

func init() { register(kmsg.DeleteTopics.Int16(), 0, 6, handleDeleteTopics) }

func handleDeleteTopics(b *Broker, rc *reqCtx, req kmsg.Request) func() kmsg.Response {
	r := req.(*kmsg.DeleteTopicsRequest)
	resp := r.ResponseKind().(*kmsg.DeleteTopicsResponse)
	return func() kmsg.Response {
		ctx, cancel := rc.timeoutCtx(r.TimeoutMillis)
		defer cancel()
		var names []string
		var ids [][16]byte
		if r.Version >= 6 {
			for _, t := range r.Topics {
				if t.Topic != nil {
					names = append(names, *t.Topic)
					ids = append(ids, [16]byte{})
				} else {
					n, _ := b.topicByID(t.TopicID)
					names = append(names, n)
					ids = append(ids, t.TopicID)
				}
			}
		} else {
			names = r.TopicNames
			ids = make([][16]byte, len(names))
		}
		for i, name := range names {
			st := kmsg.NewDeleteTopicsResponseTopic()
			if name != "" {
				n := name
				st.Topic = &n
			}
			st.TopicID = ids[i]
			var code *kerr.Error
			if name != "" && !b.allowedTopic(rc, kmsg.ACLOperationDelete, name) {
				code = kerr.TopicAuthorizationFailed
			} else {
				code = b.deleteTopic(ctx, name)
			}
			if code != nil {
				if name == "" {
					code = kerr.UnknownTopicID
				}
				st.ErrorCode = code.Code
			}
			resp.Topics = append(resp.Topics, st)
		}
		return resp
	}
}

func (b *Broker) deleteTopic(ctx context.Context, name string) *kerr.Error {
	if !b.isLeader() {
		return kerr.NotController
	}
	snap, ok := b.topicSnap(name)
	if !ok {
		return kerr.UnknownTopicOrPartition
	}
	if err := b.appendMeta(ctx, wal.TypeDeleteTopic, deleteTopicEntry{Name: name, ID: snap.id}); err != nil {
		b.log.Error("deleting topic failed", "topic", name, "error", err)
		return kerr.RequestTimedOut
	}
	b.log.Info("topic deleted", "topic", name)
	return nil
}

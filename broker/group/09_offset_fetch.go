package group

// OffsetFetch (API key 9), versions 0-9.
//
// Returns a group's committed offsets. A partition without a committed
// offset (or an unknown group) gets offset -1, leader epoch -1, empty
// metadata and no error, as in Kafka. Null topics (v2+) mean every topic the
// group has offsets for. v0-v7 ask for one group; v8+ for a list of groups,
// each answered with its own error code. RequireStable (v7+) is not
// handled here: the broker answers UNSTABLE_OFFSET_COMMIT for partitions
// with transactional offsets not yet ended (broker/09_offset_fetch.go).
// v9+ may name the member and its epoch: in a group of the consumer
// protocol with members, an unknown member gets UNKNOWN_MEMBER_ID and
// another epoch STALE_MEMBER_EPOCH, as in Kafka.

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// OffsetFetch handles an OffsetFetch request. It never blocks.
func (c *Coordinator) OffsetFetch(_ context.Context, req *kmsg.OffsetFetchRequest) *kmsg.OffsetFetchResponse {
	resp := kmsg.NewPtrOffsetFetchResponse()
	resp.Version = req.Version
	c.mu.Lock()
	defer c.mu.Unlock()

	if req.Version >= 8 {
		for _, rg := range req.Groups {
			og := kmsg.NewOffsetFetchResponseGroup()
			og.Group = rg.Group
			if code := c.unavailableLocked(); code != 0 {
				og.ErrorCode = code
				resp.Groups = append(resp.Groups, og)
				continue
			}
			if code := c.checkFetchMemberLocked(rg); code != 0 {
				og.ErrorCode = code
				resp.Groups = append(resp.Groups, og)
				continue
			}
			var want []kmsg.OffsetFetchRequestTopic
			if rg.Topics != nil {
				want = make([]kmsg.OffsetFetchRequestTopic, 0, len(rg.Topics))
				for _, t := range rg.Topics {
					want = append(want, kmsg.OffsetFetchRequestTopic{Topic: t.Topic, Partitions: t.Partitions})
				}
			}
			for _, t := range c.fetchLocked(rg.Group, want) {
				ot := kmsg.NewOffsetFetchResponseGroupTopic()
				ot.Topic = t.Topic
				for _, p := range t.Partitions {
					op := kmsg.NewOffsetFetchResponseGroupTopicPartition()
					op.Partition = p.Partition
					op.Offset = p.Offset
					op.LeaderEpoch = p.LeaderEpoch
					op.Metadata = p.Metadata
					op.ErrorCode = p.ErrorCode
					ot.Partitions = append(ot.Partitions, op)
				}
				og.Topics = append(og.Topics, ot)
			}
			resp.Groups = append(resp.Groups, og)
		}
		return resp
	}

	if code := c.unavailableLocked(); code != 0 {
		if req.Version >= 2 {
			resp.ErrorCode = code
			return resp
		}
		// v0-v1 have no top-level error: report it on every partition.
		for _, t := range req.Topics {
			rt := kmsg.NewOffsetFetchResponseTopic()
			rt.Topic = t.Topic
			for _, p := range t.Partitions {
				rp := kmsg.NewOffsetFetchResponseTopicPartition()
				rp.Partition = p
				rp.Offset = -1
				rp.Metadata = strPtr("")
				rp.ErrorCode = code
				rt.Partitions = append(rt.Partitions, rp)
			}
			resp.Topics = append(resp.Topics, rt)
		}
		return resp
	}
	topics := req.Topics
	if req.Version < 2 && topics == nil {
		topics = []kmsg.OffsetFetchRequestTopic{} // null topics arrived in v2
	}
	resp.Topics = c.fetchLocked(req.Group, topics)
	return resp
}

// fetchLocked answers for one group; nil topics means all of the group's topics.
func (c *Coordinator) fetchLocked(name string, topics []kmsg.OffsetFetchRequestTopic) []kmsg.OffsetFetchResponseTopic {
	g := c.getGroupLocked(name)
	if topics == nil {
		if g == nil {
			return []kmsg.OffsetFetchResponseTopic{}
		}
		for _, t := range sortedTopics(g) {
			topics = append(topics, kmsg.OffsetFetchRequestTopic{Topic: t, Partitions: sortedPartitions(g.offsets[t])})
		}
	}
	out := make([]kmsg.OffsetFetchResponseTopic, 0, len(topics))
	for _, t := range topics {
		rt := kmsg.NewOffsetFetchResponseTopic()
		rt.Topic = t.Topic
		for _, p := range t.Partitions {
			rp := kmsg.NewOffsetFetchResponseTopicPartition()
			rp.Partition = p
			rp.Offset = -1
			rp.LeaderEpoch = -1
			rp.Metadata = strPtr("")
			if g != nil {
				if o, ok := g.offsets[t.Topic][p]; ok {
					rp.Offset = o.Offset
					rp.LeaderEpoch = o.LeaderEpoch
					rp.Metadata = strPtr(o.Metadata)
				}
			}
			rt.Partitions = append(rt.Partitions, rp)
		}
		out = append(out, rt)
	}
	return out
}

// checkFetchMemberLocked checks the member an OffsetFetch v9+ names, for
// a group of the consumer protocol with members; 0 means fine.
func (c *Coordinator) checkFetchMemberLocked(rg kmsg.OffsetFetchRequestGroup) int16 {
	if rg.MemberID == nil && rg.MemberEpoch < 0 {
		return 0
	}
	g := c.getGroupLocked(rg.Group)
	if g == nil || !g.isConsumerLocked() {
		return 0
	}
	m := g.cg.members[derefOr(rg.MemberID, "")]
	switch {
	case m == nil:
		return kerr.UnknownMemberID.Code
	case rg.MemberEpoch != m.epoch:
		return kerr.StaleMemberEpoch.Code
	}
	return 0
}

package group

// OffsetDelete (API key 47), version 0.
//
// Deletes a group's committed offsets for some partitions
// (kafka-consumer-groups.sh --delete-offsets). GROUP_ID_NOT_FOUND for an
// unknown group. While the group has members (of either group protocol),
// partitions of topics a member subscribes to get GROUP_SUBSCRIBED_TO_TOPIC
// (a classic group whose protocol type is not "consumer" gets
// NON_EMPTY_GROUP). The deletion is made
// durable through the Persister as tombstones before it is answered, within
// Config.CommitTimeout (then COORDINATOR_NOT_AVAILABLE).

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// OffsetDelete handles an OffsetDelete request. It blocks while the
// deletion is persisted.
func (c *Coordinator) OffsetDelete(ctx context.Context, req *kmsg.OffsetDeleteRequest) *kmsg.OffsetDeleteResponse {
	resp := kmsg.NewPtrOffsetDeleteResponse()
	resp.Version = req.Version
	codes := make([][]int16, len(req.Topics))
	for i, t := range req.Topics {
		codes[i] = make([]int16, len(t.Partitions))
	}
	resp.ErrorCode = c.offsetDelete(ctx, req, codes)
	if resp.ErrorCode != 0 {
		return resp
	}
	for i, t := range req.Topics {
		rt := kmsg.NewOffsetDeleteResponseTopic()
		rt.Topic = t.Topic
		for j, p := range t.Partitions {
			rp := kmsg.NewOffsetDeleteResponseTopicPartition()
			rp.Partition = p.Partition
			rp.ErrorCode = codes[i][j]
			rt.Partitions = append(rt.Partitions, rp)
		}
		resp.Topics = append(resp.Topics, rt)
	}
	return resp
}

func (c *Coordinator) offsetDelete(ctx context.Context, req *kmsg.OffsetDeleteRequest, codes [][]int16) int16 {
	if req.Group == "" {
		return kerr.InvalidGroupID.Code
	}
	parent := ctx
	ctx, cancel := c.commitContext(ctx)
	defer cancel()
	unlock := c.lockCommits(ctx, req.Group)
	if unlock == nil {
		return lockTimeoutCode(parent)
	}
	defer unlock()

	c.mu.Lock()
	if code := c.unavailableLocked(); code != 0 {
		c.mu.Unlock()
		return code
	}
	g := c.getGroupLocked(req.Group)
	if g == nil {
		c.mu.Unlock()
		return kerr.GroupIDNotFound.Code
	}
	subscribed := map[string]bool{}
	if g.isConsumerLocked() {
		for name := range g.cg.subscribed {
			subscribed[name] = true
		}
	}
	if len(g.members) > 0 {
		if g.protocolType != "consumer" {
			c.mu.Unlock()
			return kerr.NonEmptyGroup.Code
		}
		for _, m := range g.members {
			for _, p := range m.protocols {
				var meta kmsg.ConsumerMemberMetadata
				if err := meta.ReadFrom(p.metadata); err == nil {
					for _, t := range meta.Topics {
						subscribed[t] = true
					}
				}
			}
		}
	}
	var tombs []Offset
	now := c.now().UnixMilli()
	for i, t := range req.Topics {
		for j, p := range t.Partitions {
			if subscribed[t.Topic] {
				codes[i][j] = kerr.GroupSubscribedToTopic.Code
				continue
			}
			if _, ok := g.offsets[t.Topic][p.Partition]; ok {
				tombs = append(tombs, Offset{Topic: t.Topic, Partition: p.Partition, Offset: -1, LeaderEpoch: -1, CommitTimeMs: now})
			}
		}
	}
	c.mu.Unlock()

	if len(tombs) > 0 && c.persister != nil {
		if err := c.persister.CommitOffsets(ctx, req.Group, tombs); err != nil {
			code := persistErrorCode(err)
			c.logPersistFailure("could not persist offset deletion", code, "group", req.Group, "error", err)
			return code
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if g := c.getGroupLocked(req.Group); g != nil {
		applyOffsetsLocked(g, tombs)
		c.maybeDeleteLocked(g)
	}
	return 0
}

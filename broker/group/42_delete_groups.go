package group

// DeleteGroups (API key 42), versions 0-2.
//
// Deletes groups that have no members, with all their committed offsets
// (kafka-consumer-groups.sh --delete). Per group: INVALID_GROUP_ID for an
// empty id, GROUP_ID_NOT_FOUND for an unknown group, NON_EMPTY_GROUP while
// it has members. The deletion is made durable through the Persister as
// tombstones (offset -1 for every partition) before it is answered, within
// Config.CommitTimeout for the whole request (then COORDINATOR_NOT_AVAILABLE).

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// DeleteGroups handles a DeleteGroups request. It blocks while the deletion
// is persisted.
func (c *Coordinator) DeleteGroups(ctx context.Context, req *kmsg.DeleteGroupsRequest) *kmsg.DeleteGroupsResponse {
	resp := kmsg.NewPtrDeleteGroupsResponse()
	resp.Version = req.Version
	cctx, cancel := c.commitContext(ctx)
	defer cancel()
	for _, name := range req.Groups {
		rg := kmsg.NewDeleteGroupsResponseGroup()
		rg.Group = name
		rg.ErrorCode = c.deleteGroup(ctx, cctx, name)
		resp.Groups = append(resp.Groups, rg)
	}
	return resp
}

// deleteGroup deletes one group; ctx is the request's context, cctx the
// same bounded by the commit timeout.
func (c *Coordinator) deleteGroup(ctx, cctx context.Context, name string) int16 {
	if name == "" {
		return kerr.InvalidGroupID.Code
	}
	unlock := c.lockCommits(cctx, name)
	if unlock == nil {
		return lockTimeoutCode(ctx)
	}
	defer unlock()

	// Holding the commit lock, no commit of this group can change its
	// offsets until we are done.
	c.mu.Lock()
	if code := c.unavailableLocked(); code != 0 {
		c.mu.Unlock()
		return code
	}
	g := c.getGroupLocked(name)
	if g == nil {
		c.mu.Unlock()
		return kerr.GroupIDNotFound.Code
	}
	if g.state != Empty || len(g.members) > 0 {
		c.mu.Unlock()
		return kerr.NonEmptyGroup.Code
	}
	tombs := tombstonesLocked(g, nil, c.now().UnixMilli())
	c.mu.Unlock()

	if len(tombs) > 0 && c.persister != nil {
		if err := c.persister.CommitOffsets(cctx, name, tombs); err != nil {
			code := persistErrorCode(err)
			c.logPersistFailure("could not persist group deletion", code, "group", name, "error", err)
			return code
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if g := c.getGroupLocked(name); g != nil {
		applyOffsetsLocked(g, tombs)
		c.maybeDeleteLocked(g)
	}
	c.log.Info("deleted group", "group", name, "offsets", len(tombs))
	return 0
}

// tombstonesLocked returns a tombstone for each committed offset of g that
// keep accepts (nil: all).
func tombstonesLocked(g *group, keep func(topic string, partition int32) bool, nowMs int64) []Offset {
	var out []Offset
	for _, topic := range sortedTopics(g) {
		for _, p := range sortedPartitions(g.offsets[topic]) {
			if keep == nil || keep(topic, p) {
				out = append(out, Offset{Topic: topic, Partition: p, Offset: -1, LeaderEpoch: -1, CommitTimeMs: nowMs})
			}
		}
	}
	return out
}

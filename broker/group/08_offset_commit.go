package group

// OffsetCommit (API key 8), versions 0-9.
//
// Stores a group's consumed positions. Checks follow Kafka's classic groups:
//   - generation -1 (always on v0) with any member id is a "simple" commit
//     by a client that assigns partitions itself; it is allowed when the
//     group is unknown (the group is created, Empty) or Empty;
//   - otherwise the member must be in the group (UNKNOWN_MEMBER_ID) with the
//     current generation (ILLEGAL_GENERATION); commits during
//     PreparingRebalance are accepted, during CompletingRebalance they get
//     REBALANCE_IN_PROGRESS; a replaced static member gets FENCED_INSTANCE_ID.
//   - in a group of the consumer protocol (KIP-848) with members, the member
//     must be in it (UNKNOWN_MEMBER_ID), commit with v9+ (UNSUPPORTED_VERSION)
//     and give its current member epoch as the generation
//     (STALE_MEMBER_EPOCH), as in Kafka;
//   - metadata longer than MaxMetadataBytes: OFFSET_METADATA_TOO_LARGE;
//     an unknown partition (Config.PartitionExists): UNKNOWN_TOPIC_OR_PARTITION.
//
// Accepted offsets are made durable through the Persister first and only
// then applied in memory and acknowledged; when the Persister fails, nothing
// is stored and every accepted partition gets the mapped error code. The
// whole commit is bounded by Config.CommitTimeout (offsets.commit.timeout.ms):
// past it the answer is COORDINATOR_NOT_AVAILABLE.
// Committing offset -1 deletes the partition's committed offset.
// The v1 per-partition timestamp becomes the commit time when set; the v2-v4
// retention time is ignored (offsets expire after the broker's
// --offsets-retention, Kafka's offsets.retention.minutes: see expire.go).

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// OffsetCommit handles an OffsetCommit request. It blocks while the offsets
// are persisted.
func (c *Coordinator) OffsetCommit(ctx context.Context, req *kmsg.OffsetCommitRequest) *kmsg.OffsetCommitResponse {
	resp := kmsg.NewPtrOffsetCommitResponse()
	resp.Version = req.Version
	codes := make([][]int16, len(req.Topics))
	for i, t := range req.Topics {
		codes[i] = make([]int16, len(t.Partitions))
	}
	defer func() {
		for i, t := range req.Topics {
			rt := kmsg.NewOffsetCommitResponseTopic()
			rt.Topic = t.Topic
			for j, p := range t.Partitions {
				rp := kmsg.NewOffsetCommitResponseTopicPartition()
				rp.Partition = p.Partition
				rp.ErrorCode = codes[i][j]
				rt.Partitions = append(rt.Partitions, rp)
			}
			resp.Topics = append(resp.Topics, rt)
		}
	}()
	setAll := func(code int16) {
		for i := range codes {
			for j := range codes[i] {
				if codes[i][j] == 0 {
					codes[i][j] = code
				}
			}
		}
	}

	generation, memberID := req.Generation, req.MemberID
	if req.Version == 0 {
		generation, memberID = -1, ""
	}
	var instanceID *string
	if req.Version >= 7 {
		instanceID = req.InstanceID
	}

	// Per-partition checks that need no lock.
	now := c.now().UnixMilli()
	var offsets []Offset
	var where [][2]int
	for i, t := range req.Topics {
		for j, p := range t.Partitions {
			meta := derefOr(p.Metadata, "")
			switch {
			case len(meta) > c.maxMeta:
				codes[i][j] = kerr.OffsetMetadataTooLarge.Code
				continue
			case c.exists != nil && !c.exists(t.Topic, p.Partition):
				codes[i][j] = kerr.UnknownTopicOrPartition.Code
				continue
			}
			o := Offset{Topic: t.Topic, Partition: p.Partition, Offset: p.Offset,
				LeaderEpoch: -1, Metadata: meta, CommitTimeMs: now}
			if req.Version >= 6 {
				o.LeaderEpoch = p.LeaderEpoch
			}
			if req.Version == 1 && p.Timestamp >= 0 {
				o.CommitTimeMs = p.Timestamp
			}
			offsets = append(offsets, o)
			where = append(where, [2]int{i, j})
		}
	}

	parent := ctx
	ctx, cancel := c.commitContext(ctx)
	defer cancel()
	unlock := c.lockCommits(ctx, req.Group)
	if unlock == nil {
		setAll(lockTimeoutCode(parent))
		return resp
	}
	defer unlock()

	if code := c.checkCommit(req.Group, generation, memberID, instanceID, req.Version, false); code != 0 {
		setAll(code)
		return resp
	}
	if len(offsets) == 0 {
		return resp
	}
	if c.persister != nil {
		if err := c.persister.CommitOffsets(ctx, req.Group, offsets); err != nil {
			code := persistErrorCode(err)
			c.logPersistFailure("could not persist committed offsets", code, "group", req.Group,
				"partitions", len(offsets), "timeout", c.commitTTL, "error", err)
			for _, w := range where {
				codes[w[0]][w[1]] = code
			}
			return resp
		}
	}
	c.mu.Lock()
	g := c.getOrCreateGroupLocked(req.Group)
	applyOffsetsLocked(g, offsets)
	c.maybeDeleteLocked(g)
	c.mu.Unlock()
	return resp
}

// checkCommit decides whether this member may commit now; 0 means yes.
// version is the OffsetCommit version (ignored for txn, a TxnOffsetCommit).
func (c *Coordinator) checkCommit(name string, generation int32, memberID string, instanceID *string, version int16, txn bool) int16 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if code := c.unavailableLocked(); code != 0 {
		return code
	}
	g := c.getGroupLocked(name)
	if g == nil {
		if generation < 0 {
			return 0 // simple commit; the group is created when the offsets are applied
		}
		return kerr.IllegalGeneration.Code
	}
	if g.isConsumerLocked() {
		return checkConsumerCommitLocked(g.cg, generation, memberID, instanceID, version, txn)
	}
	if g.fencedLocked(instanceID, memberID) {
		return kerr.FencedInstanceID.Code
	}
	if generation < 0 && g.state == Empty {
		return 0
	}
	m := g.members[memberID]
	if m == nil {
		return kerr.UnknownMemberID.Code
	}
	if generation != g.generation {
		return kerr.IllegalGeneration.Code
	}
	switch g.state {
	case Stable, PreparingRebalance:
		c.touchLocked(m)
		return 0
	case CompletingRebalance:
		return kerr.RebalanceInProgress.Code
	}
	return kerr.UnknownMemberID.Code
}

// CheckTxnCommit decides whether a transactional producer may commit
// offsets for this member of the group (TxnOffsetCommit v3+, KIP-447): the
// same generation and member checks as OffsetCommit. 0 means yes.
func (c *Coordinator) CheckTxnCommit(name string, generation int32, memberID string, instanceID *string) int16 {
	return c.checkCommit(name, generation, memberID, instanceID, 0, true)
}

// checkConsumerCommitLocked is checkCommit for a group of the consumer
// protocol with members (Kafka's ConsumerGroup.validateOffsetCommit).
func checkConsumerCommitLocked(cg *cgroup, epoch int32, memberID string, instanceID *string, version int16, txn bool) int16 {
	if txn && epoch < 0 && memberID == "" && instanceID == nil {
		return 0 // a transactional commit that names no member
	}
	m := cg.members[memberID]
	switch {
	case m == nil:
		return kerr.UnknownMemberID.Code
	case !txn && version < 9:
		return kerr.UnsupportedVersion.Code
	case epoch != m.epoch:
		return kerr.StaleMemberEpoch.Code
	}
	return 0
}

package group

// Committed offsets expire as in Kafka (offsets.retention.minutes, 7 days
// by default; KIP-211 since Kafka 2.1):
//
//   - a group that has had members (it has a protocol type) keeps its
//     offsets while it has members; once it is Empty, all of them expire
//     together when it has been Empty for the retention;
//   - a group that never had members here (its clients commit offsets but
//     assign partitions themselves), or whose end of membership is not
//     known (not stored), has each offset expire on its own, the retention
//     after its last commit.
//
// An expired offset is deleted with a tombstone through the Persister, as
// OffsetDelete does, so it goes on every replica; a group left with nothing
// is forgotten. A consumer of that group then starts from its
// auto.offset.reset position. Only the active coordinator expires offsets.

import (
	"context"
	"errors"
	"time"
)

// ExpireOffsets deletes the committed offsets that are past retention (see
// above) and returns how many it deleted. It stops at the first group whose
// tombstones cannot be persisted, with that error; the rest wait for the
// next call.
func (c *Coordinator) ExpireOffsets(ctx context.Context, retention time.Duration) (int, error) {
	if retention <= 0 {
		return 0, nil
	}
	c.mu.Lock()
	if c.unavailableLocked() != 0 {
		c.mu.Unlock()
		return 0, nil
	}
	names := sortedKeys(c.groups)
	c.mu.Unlock()
	n := 0
	for _, name := range names {
		k, err := c.expireGroup(ctx, name, retention)
		n += k
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// expireGroup expires the offsets of one group, holding its commit lock so
// that no commit of the group comes between the choice and the tombstones.
func (c *Coordinator) expireGroup(ctx context.Context, name string, retention time.Duration) (int, error) {
	cctx, cancel := c.commitContext(ctx)
	defer cancel()
	unlock := c.lockCommits(cctx, name)
	if unlock == nil {
		return 0, errors.New("group: expiring offsets: the group's earlier commits are still waiting")
	}
	defer unlock()
	c.mu.Lock()
	g := c.getGroupLocked(name)
	if g == nil || c.unavailableLocked() != 0 {
		c.mu.Unlock()
		return 0, nil
	}
	now := c.now()
	cutoff := now.Add(-retention).UnixMilli()
	var expired func(topic string, partition int32) bool
	switch {
	case len(g.members) > 0 || len(g.pending) > 0 || g.state != Empty:
	case g.protocolType != "" && !g.emptySince.IsZero():
		if !now.Before(g.emptySince.Add(retention)) {
			expired = func(string, int32) bool { return true }
		}
	default: // no membership, or not known when it ended
		expired = func(topic string, p int32) bool { return g.offsets[topic][p].CommitTimeMs <= cutoff }
	}
	var tombs []Offset
	if expired != nil {
		tombs = tombstonesLocked(g, expired, now.UnixMilli())
	}
	c.mu.Unlock()
	if len(tombs) == 0 {
		return 0, nil
	}
	if c.persister != nil {
		if err := c.persister.CommitOffsets(cctx, name, tombs); err != nil {
			return 0, err
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if g := c.getGroupLocked(name); g != nil {
		applyOffsetsLocked(g, tombs)
		c.maybeDeleteLocked(g)
	}
	c.log.Info("expired committed offsets", "group", name, "partitions", len(tombs), "retention", retention)
	return len(tombs), nil
}

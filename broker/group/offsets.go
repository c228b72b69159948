package group

import (
	"context"
	"errors"
	"sort"

	"github.com/twmb/franz-go/pkg/kerr"
)

// commitLock serializes the commits of one group so that the order in which
// the Persister makes them durable is the order in which they are applied in
// memory (and so a restart, which replays the WAL, ends where memory was).
type commitLock struct {
	ch   chan struct{} // a one-slot semaphore
	refs int
}

// commitContext bounds a commit (the wait for the group's commit lock and
// the Persister call) by Config.CommitTimeout.
func (c *Coordinator) commitContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, c.commitTTL)
}

// lockTimeoutCode is the answer of a commit that did not get its group's
// commit lock before ctx, bounded by commitContext, ended: an earlier commit
// of the group is still waiting for the Persister. parent is the request's
// own context.
func lockTimeoutCode(parent context.Context) int16 {
	if parent.Err() != nil {
		return kerr.RequestTimedOut.Code // the client has gone or given up
	}
	return kerr.CoordinatorNotAvailable.Code // as for a commit not persisted in time
}

// lockCommits takes the commit lock of group name; call the returned func
// to release it. It gives up (nil func) when ctx ends first.
func (c *Coordinator) lockCommits(ctx context.Context, name string) func() {
	c.commitMu.Lock()
	l := c.commitLocks[name]
	if l == nil {
		l = &commitLock{ch: make(chan struct{}, 1)}
		c.commitLocks[name] = l
	}
	l.refs++
	c.commitMu.Unlock()

	release := func() {
		c.commitMu.Lock()
		l.refs--
		if l.refs == 0 {
			delete(c.commitLocks, name)
		}
		c.commitMu.Unlock()
	}
	select {
	case l.ch <- struct{}{}:
	case <-ctx.Done():
		release()
		return nil
	}
	return func() {
		<-l.ch
		release()
	}
}

// applyOffsetsLocked stores offsets in g. A negative offset is a tombstone:
// it deletes the partition's committed offset.
func applyOffsetsLocked(g *group, offsets []Offset) {
	for _, o := range offsets {
		if o.Offset < 0 {
			if parts := g.offsets[o.Topic]; parts != nil {
				delete(parts, o.Partition)
				if len(parts) == 0 {
					delete(g.offsets, o.Topic)
				}
			}
			continue
		}
		parts := g.offsets[o.Topic]
		if parts == nil {
			parts = make(map[int32]Offset)
			g.offsets[o.Topic] = parts
		}
		parts[o.Partition] = o
	}
}

// Restore applies committed offsets read back from the WAL at start-up, or
// applied from the leader's WAL on a follower. It does not call the
// Persister. Entries are applied in order, so replaying the WAL from the
// start reproduces the leader's offsets. An Offset of -1 (written by
// DeleteGroups and OffsetDelete) deletes that partition's offset.
func (c *Coordinator) Restore(group string, offsets []Offset) {
	if len(offsets) == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	g := c.getOrCreateGroupLocked(group)
	applyOffsetsLocked(g, offsets)
	c.maybeDeleteLocked(g)
}

// DeleteTopic forgets every group's committed offsets for topic (the topic
// was deleted). Groups left Empty with no offsets are removed.
func (c *Coordinator) DeleteTopic(topic string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, g := range c.groups {
		if _, ok := g.offsets[topic]; ok {
			delete(g.offsets, topic)
			c.maybeDeleteLocked(g)
		}
	}
}

// DeleteTopicOffsets is DeleteTopic under the name the broker's WAL replay uses.
func (c *Coordinator) DeleteTopicOffsets(topic string) { c.DeleteTopic(topic) }

// Offsets returns a copy of a group's committed offsets sorted by topic and
// partition (for admin tools and tests); nil when the group has none.
func (c *Coordinator) Offsets(group string) []Offset {
	c.mu.Lock()
	defer c.mu.Unlock()
	g := c.getGroupLocked(group)
	if g == nil {
		return nil
	}
	var out []Offset
	for _, topic := range sortedTopics(g) {
		for _, p := range sortedPartitions(g.offsets[topic]) {
			out = append(out, g.offsets[topic][p])
		}
	}
	return out
}

func sortedTopics(g *group) []string {
	ts := make([]string, 0, len(g.offsets))
	for t := range g.offsets {
		ts = append(ts, t)
	}
	sort.Strings(ts)
	return ts
}

func sortedPartitions(m map[int32]Offset) []int32 {
	ps := make([]int32, 0, len(m))
	for p := range m {
		ps = append(ps, p)
	}
	sort.Slice(ps, func(i, j int) bool { return ps[i] < ps[j] })
	return ps
}

// logPersistFailure logs a group write that failed with code: at WARN when
// this node stopped coordinating the group meanwhile (NOT_COORDINATOR, part
// of every failover: the client writes again at the new coordinator), at
// ERROR otherwise.
func (c *Coordinator) logPersistFailure(msg string, code int16, args ...any) {
	args = append(args, "error_code", kerr.ErrorForCode(code))
	if code == kerr.NotCoordinator.Code {
		c.log.Warn(msg+"; this node no longer coordinates the group (the client retries at the new coordinator)", args...)
		return
	}
	c.log.Error(msg, args...)
}

// persistErrorCode maps a Persister error to the code OffsetCommit returns,
// as Kafka maps errors of appending to __consumer_offsets. A Persister that
// did not finish within Config.CommitTimeout (context.DeadlineExceeded, or
// REQUEST_TIMED_OUT) gives COORDINATOR_NOT_AVAILABLE, as Kafka's group
// coordinator (the KIP-848 runtime, Kafka 4) and transaction coordinator
// answer a write that was not replicated in time.
func persistErrorCode(err error) int16 {
	var ke *kerr.Error
	if !errors.As(err, &ke) {
		return kerr.CoordinatorNotAvailable.Code
	}
	switch ke {
	case kerr.UnknownTopicOrPartition, kerr.NotEnoughReplicas, kerr.NotEnoughReplicasAfterAppend, kerr.RequestTimedOut:
		return kerr.CoordinatorNotAvailable.Code
	case kerr.NotLeaderForPartition, kerr.KafkaStorageError, kerr.NotCoordinator:
		return kerr.NotCoordinator.Code
	case kerr.MessageTooLarge, kerr.RecordListTooLarge, kerr.InvalidFetchSize:
		return kerr.InvalidCommitOffsetSize.Code
	}
	return ke.Code
}

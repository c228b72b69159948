package broker

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/tandem-io/tandem/broker/group"
	"github.com/tandem-io/tandem/broker/link"
	"github.com/tandem-io/tandem/broker/wal"
)

// This file is the broker's side of replication: what the sidecar link
// (package broker/link) calls. The broker implements link.Broker.

var (
	_ link.Broker    = (*Broker)(nil)
	_ link.Committer = (*Broker)(nil) // the hello carries the commit point it knew
)

// NodeID is this node's id.
func (b *Broker) NodeID() int32 { return b.cfg.NodeID }

// Advertised is the Kafka address clients are told.
func (b *Broker) Advertised() (string, int32) { return b.host, b.port }

// Rack is this node's rack (empty when none).
func (b *Broker) Rack() string { return b.cfg.Rack }

// WAL is the broker's write-ahead log.
func (b *Broker) WAL() *wal.Log { return b.wal }

// ErrNotFollower is returned when entries are applied to a node that takes writes.
var ErrNotFollower = errors.New("broker: not a follower")

// ApplyEntries appends the leader's entries unchanged (same LSN, epoch,
// type and payload), folds them into the state and returns once they are
// durable under the fsync policy.
func (b *Broker) ApplyEntries(ents []wal.Entry) error {
	return b.applyEntries(ents, true)
}

// AppendEntries is ApplyEntries without waiting for the entries to be
// durable (link.Appender: the link waits, and appends the next entries
// meanwhile). It still waits when the entries complete a re-clone, whose
// state rebuild needs them on disk.
func (b *Broker) AppendEntries(ents []wal.Entry) error {
	return b.applyEntries(ents, false)
}

func (b *Broker) applyEntries(ents []wal.Entry, wait bool) error {
	if len(ents) == 0 {
		return nil
	}
	if b.isLeader() {
		return fmt.Errorf("%w: refusing %d entries from LSN %d", ErrNotFollower, len(ents), ents[0].LSN)
	}
	b.appendMu.Lock()
	for _, e := range ents {
		pos, err := b.wal.AppendEntry(e)
		if err != nil {
			b.appendMu.Unlock()
			return fmt.Errorf("broker: applying LSN %d: %w", e.LSN, err)
		}
		if err := b.applyLocked(e, pos); err != nil {
			b.appendMu.Unlock()
			return fmt.Errorf("broker: applying LSN %d: %w", e.LSN, err)
		}
	}
	rebuild := b.rebuildPending
	b.rebuildPending = false
	b.appendMu.Unlock()
	if !wait && !rebuild {
		return nil
	}
	if err := b.wal.WaitDurable(b.ctx, ents[len(ents)-1].LSN); err != nil {
		return err
	}
	if rebuild {
		b.log.Info("state snapshot received after a re-clone; rebuilding the state from it")
		return b.rebuild(func() error { return nil })
	}
	return nil
}

// TruncateAfter drops every entry above lsn (a diverged tail) and rebuilds
// the state from what is left. A state checkpoint above lsn describes the
// dropped entries: the rebuild replaces it with a state-snapshot entry
// still in the WAL, if there is one (loadCheckpointLocked).
func (b *Broker) TruncateAfter(lsn uint64) error {
	last := b.wal.LastLSN()
	if lsn >= last {
		return nil
	}
	b.log.Warn("truncating diverged WAL tail", "after_lsn", lsn, "dropped_entries", last-lsn)
	return b.rebuild(func() error { return b.wal.Truncate(lsn) })
}

// ResetTo wipes the WAL and the state; the next entry expected is next (the
// node is re-cloned from the leader from there).
func (b *Broker) ResetTo(next uint64) error {
	b.log.Warn("resetting WAL for a re-clone from the leader", "next_lsn", next)
	return b.rebuild(func() error {
		if err := b.wal.Reset(next); err != nil {
			return err
		}
		// The old checkpoint describes the state before the reset; the
		// leader's state-snapshot entry replaces it.
		if err := os.Remove(filepath.Join(b.cfg.DataDir, checkpointName)); err != nil && !os.IsNotExist(err) {
			return err
		}
		if err := syncDir(b.cfg.DataDir); err != nil {
			return err
		}
		b.awaitingSnapshot = next > 1
		return nil
	})
}

// rebuild changes the WAL with fn and replays the state from scratch.
// Requests that answer from the state wait until it is whole again
// (readWhole).
func (b *Broker) rebuild(fn func() error) error {
	b.rebuildBegins()
	defer b.rebuildEnds()
	b.appendMu.Lock()
	err := fn()
	b.resetStateLocked()
	b.appendMu.Unlock()
	if err != nil {
		return err
	}
	if _, err := b.replay(); err != nil {
		return err
	}
	b.hwNotify.broadcast()
	return nil
}

// rebuildBegins marks the state as being rebuilt; rebuildEnds marks it
// whole again. Only the link's goroutine rebuilds, one rebuild at a time.
func (b *Broker) rebuildBegins() {
	b.rebuildMu.Lock()
	b.rebuildDone = make(chan struct{})
	b.rebuildSeq.Add(1)
	b.rebuildMu.Unlock()
}

func (b *Broker) rebuildEnds() {
	b.rebuildMu.Lock()
	b.rebuildSeq.Add(1)
	close(b.rebuildDone)
	b.rebuildMu.Unlock()
}

// readWhole runs read, which builds an answer from the state (topics,
// partitions and their offsets, the epoch history), when no rebuild is in
// progress, and runs it again if one began meanwhile. A rebuild (a
// diverged tail truncated, a re-clone) empties the state and replays the
// WAL into it, which takes a while on a long WAL. An answer from the
// half-built state would tell a consumer that its partition is unknown,
// or that its offset is out of range, and franz-go takes the second for
// lost data and resets the consumer (to the start of the log: it reads
// everything again; to its end: it skips records). If ctx ends while a
// rebuild runs, read runs once anyway.
func (b *Broker) readWhole(ctx context.Context, read func()) {
	for {
		seq := b.rebuildSeq.Load()
		if seq%2 == 1 {
			// The channel is that rebuild's or a later one's (it is
			// replaced before the count moves on).
			b.rebuildMu.Lock()
			done := b.rebuildDone
			b.rebuildMu.Unlock()
			select {
			case <-done:
				continue
			case <-ctx.Done():
				read()
				return
			}
		}
		read()
		if b.rebuildSeq.Load() == seq || ctx.Err() != nil {
			return
		}
	}
}

// resetStateLocked forgets the state built from the WAL, before a replay
// from scratch. Caller holds appendMu.
func (b *Broker) resetStateLocked() {
	b.mu.Lock()
	b.topics = make(map[string]*topic)
	b.mu.Unlock()
	b.producers = make(map[producerKey]*seqWindow)
	b.pidEpochs = make(map[int64]int16)
	b.pidBumps = make(map[int64]int16)
	b.windows = newWindowList()
	b.pidWindows = make(map[int64]int32)
	b.tpWindows = make(map[tp]map[int64]*seqWindow)
	b.pidIdleSince = make(map[int64]time.Time)
	b.pidIdle = nil
	b.lsnMarks = nil // LSNs may be handed out again after a truncation
	b.txns = make(map[string]*txnState)
	b.acls.Replace(nil)
	b.quotas.Replace(nil)
	b.scram.Replace(nil)
	b.nextPID = 0
	b.lastApplied = 0
	b.skipMetaUpTo = 0
	b.compactLSN.Store(0)
	b.commitMu.Lock()
	b.fenceWaitersLocked()
	b.pending = nil
	if c := b.wal.LastLSN(); b.commitLSN > c {
		b.commitLSN = c
	}
	b.commitMu.Unlock()
	b.groups.ResetMembership()
	b.groups.ResetOffsets() // replay restores those the WAL still holds
}

// SetClusterView changes the role, leader, epoch and ISR the broker acts on.
// Losing leadership drops group membership (members rejoin at the new
// leader); committed offsets stay.
func (b *Broker) SetClusterView(v link.ClusterView) {
	old := b.clusterView()
	v.Brokers = keepKnownBrokers(v, old)
	if takesWrites(old) && (!takesWrites(v) || v.Epoch != old.Epoch || v.HandingOver && !old.HandingOver) {
		// Leaving leadership (or changing term, or starting to hand it
		// over) under appendMu: an append in progress finishes first, and
		// every later one sees the new view (appendLocked checks it). So
		// when the sidecar's fence has seen this view applied, this broker
		// writes nothing more in the old role, nothing stamped with an
		// epoch it does not lead, and nothing after the WAL end that a
		// handover waits for.
		// Only the link calls SetClusterView, one view at a time (its
		// viewGate), so old is still the current view here.
		b.appendMu.Lock()
		b.mu.Lock()
		b.view = v
		b.mu.Unlock()
		b.appendMu.Unlock()
	} else {
		b.mu.Lock()
		b.view = v
		b.mu.Unlock()
	}
	if (old.Role == link.RoleLeader || old.Role == link.RoleStandalone) && v.Role == link.RoleFollower {
		// Writers waiting for the commit point fail now: their entries
		// may be truncated and their LSNs reused by the new leader.
		b.commitMu.Lock()
		b.fenceWaitersLocked()
		b.commitMu.Unlock()
	}
	if v.HandingOver && !old.HandingOver {
		b.log.Info("the sidecar is handing the leadership over; taking no more writes", "epoch", v.Epoch,
			"last_lsn", b.wal.LastLSN())
	}
	if old.Role != v.Role || old.LeaderID != v.LeaderID || old.Epoch != v.Epoch {
		b.log.Info("cluster view changed", "role", v.Role.String(), "leader", v.LeaderID, "epoch", v.Epoch,
			"brokers", len(v.Brokers), "isr", fmt.Sprint(v.ISR))
	}
	// Groups are coordinated by the leader only; a follower answers
	// NOT_COORDINATOR and drops membership (offsets stay: they replicate).
	b.groups.SetActive(v.Role != link.RoleFollower)
	if v.Role == link.RoleLeader && v.Epoch > b.lastEpoch() {
		// A new term: its first entry records the epoch in the WAL's epoch
		// history, which is what divergence repair compares.
		b.appendMu.Lock()
		lsn, err := b.appendLocked(wal.TypeNoop, nil)
		b.appendMu.Unlock()
		if err != nil {
			b.log.Error("writing the first entry of a new epoch failed", "epoch", v.Epoch, "error", err)
		} else {
			b.log.Info("leader epoch started", "epoch", v.Epoch, "lsn", lsn)
			b.commitMu.Lock()
			if b.commitLSN+1 < lsn {
				b.termStart, b.termEpoch, b.termStarted = lsn, v.Epoch, time.Now()
			}
			b.commitMu.Unlock()
		}
	}
	b.hwNotify.broadcast()
}

// keepKnownBrokers is the broker list to serve with view v, old being the
// view it replaces. A view that does not come from a leader (no leader
// known, or the leader it names is not listed: a sidecar that has just
// started or stepped down and has not heard from a leader) also keeps the
// brokers of the old view it does not list. Kafka clients replace their
// broker list with each Metadata answer; a node that listed only itself
// would make a client that asked it forget every other broker, and with
// them the leader elected meanwhile (docs/operations.md, "Network
// partitions").
func keepKnownBrokers(v, old link.ClusterView) []link.BrokerInfo {
	listed := func(id int32) bool {
		return slices.ContainsFunc(v.Brokers, func(bi link.BrokerInfo) bool { return bi.NodeID == id })
	}
	if v.Role != link.RoleFollower || (v.LeaderID > 0 && listed(v.LeaderID)) {
		return v.Brokers
	}
	out := slices.Clone(v.Brokers)
	for _, bi := range old.Brokers {
		if !listed(bi.NodeID) {
			out = append(out, bi)
		}
	}
	slices.SortFunc(out, func(a, b link.BrokerInfo) int { return int(a.NodeID) - int(b.NodeID) })
	return out
}

// offsetPersister writes committed group offsets to the WAL.
type offsetPersister Broker

// ErrNotLeader is returned for writes on a node that does not take them.
var ErrNotLeader = errors.New("broker: not the leader")

func (op *offsetPersister) CommitOffsets(ctx context.Context, groupID string, offsets []group.Offset) error {
	b := (*Broker)(op)
	if !b.isLeader() {
		return fmt.Errorf("%w: %w", ErrNotLeader, kerr.NotCoordinator)
	}
	e := offsetCommitEntry{Group: groupID, Offsets: make([]offsetCommitValue, len(offsets))}
	for i, o := range offsets {
		ts := o.CommitTimeMs
		if ts == 0 {
			ts = time.Now().UnixMilli()
		}
		e.Offsets[i] = offsetCommitValue{Topic: o.Topic, Partition: o.Partition, Offset: o.Offset,
			LeaderEpoch: o.LeaderEpoch, Metadata: o.Metadata, CommitTime: ts}
	}
	return coordinatorMoved(b.appendMeta(ctx, wal.TypeOffsetCommit, e))
}

// coordinatorMoved marks err, from writing a group's entry, as
// NOT_COORDINATOR when the write failed because this node stopped leading
// (before the entry was written, or while it waited for the commit point):
// Kafka's coordinator answers so when it loses the leadership of the
// offsets topic's partition, and the client finds the new coordinator and
// writes there. Other failures keep their own code (group.persistErrorCode).
func coordinatorMoved(err error) error {
	if errors.Is(err, ErrNotLeader) || errors.Is(err, ErrFenced) {
		return fmt.Errorf("%w: %w", err, kerr.NotCoordinator)
	}
	return err
}

// StoreGroup writes a group's membership to the WAL (group.GroupPersister):
// a promoted follower, or this broker after a restart, loads it and the
// members carry on without a rebalance.
func (op *offsetPersister) StoreGroup(ctx context.Context, s group.GroupState) error {
	b := (*Broker)(op)
	if !b.isLeader() {
		return fmt.Errorf("%w: %w", ErrNotLeader, kerr.NotCoordinator)
	}
	return coordinatorMoved(b.appendMeta(ctx, wal.TypeGroupState, s))
}

package broker

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/tandem-io/tandem/broker/group"
	"github.com/tandem-io/tandem/broker/wal"
)

// applyLocked folds one WAL entry into the in-memory state. The leader calls
// it right after appending, a follower after appending the leader's entry,
// and Open for every entry at start-up: the same entry always yields the
// same state. Caller holds appendMu.
func (b *Broker) applyLocked(e wal.Entry, pos wal.Pos) error {
	return b.applyPrefixLocked(e, pos, len(e.Payload))
}

// applyPrefixLocked is applyLocked for an entry of which only a prefix of
// the payload may be in e.Payload (start-up replay: a record batch's topic,
// partition and RecordBatch header); size is the full payload length.
func (b *Broker) applyPrefixLocked(e wal.Entry, pos wal.Pos, size int) error {
	b.lastApplied = e.LSN
	if e.LSN <= b.skipMetaUpTo && e.Type != wal.TypeRecordBatch && e.Type != wal.TypeCompactedBatch {
		return nil // already in the state checkpoint
	}
	switch e.Type {
	case wal.TypeRecordBatch:
		return b.applyBatchLocked(e, pos, size)
	case wal.TypeCompactedBatch:
		return b.applyCompactedLocked(e, pos, size)
	case wal.TypeCreateTopic:
		var c createTopicEntry
		if err := decodeJSON(e, &c); err != nil {
			return err
		}
		t := &topic{name: c.Name, id: c.ID, createdLSN: e.LSN, configs: c.Configs}
		if t.configs == nil {
			t.configs = map[string]string{}
		}
		for i := int32(0); i < c.Partitions; i++ {
			t.partitions = append(t.partitions, newPartition(c.Name, i))
		}
		b.mu.Lock()
		b.topics[c.Name] = t
		b.mu.Unlock()
	case wal.TypeDeleteTopic:
		var d deleteTopicEntry
		if err := decodeJSON(e, &d); err != nil {
			return err
		}
		b.mu.Lock()
		if t, ok := b.topics[d.Name]; ok && t.id == d.ID {
			delete(b.topics, d.Name)
		}
		b.mu.Unlock()
		for k, ws := range b.tpWindows {
			if k.topic == d.Name {
				for _, w := range ws {
					b.dropWindow(w, time.Now())
				}
			}
		}
		b.groups.DeleteTopic(d.Name)
	case wal.TypeCreatePartitions:
		var c createPartitionsEntry
		if err := decodeJSON(e, &c); err != nil {
			return err
		}
		if c.Count > maxPartitions {
			// Older versions did not bound CreatePartitions; such an entry
			// would allocate its partitions at every start and on every
			// follower. It is skipped, the same way on every node.
			b.log.Error("skipping a CreatePartitions entry over the partition limit; the topic keeps its partitions",
				"lsn", e.LSN, "topic", c.Name, "count", c.Count, "limit", maxPartitions)
			return nil
		}
		b.mu.Lock()
		if t, ok := b.topics[c.Name]; ok {
			for i := int32(len(t.partitions)); i < c.Count; i++ {
				t.partitions = append(t.partitions, newPartition(c.Name, i))
			}
		}
		b.mu.Unlock()
	case wal.TypeAlterConfig:
		var a alterConfigEntry
		if err := decodeJSON(e, &a); err != nil {
			return err
		}
		b.mu.Lock()
		if t, ok := b.topics[a.Name]; ok {
			cfgs := make(map[string]string, len(t.configs))
			for k, v := range t.configs {
				cfgs[k] = v
			}
			for k, v := range a.Set {
				if v == nil {
					delete(cfgs, k)
				} else {
					cfgs[k] = *v
				}
			}
			t.configs = cfgs
		}
		b.mu.Unlock()
	case wal.TypeOffsetCommit:
		var o offsetCommitEntry
		if err := decodeJSON(e, &o); err != nil {
			return err
		}
		offs := make([]group.Offset, len(o.Offsets))
		for i, v := range o.Offsets {
			offs[i] = group.Offset{Topic: v.Topic, Partition: v.Partition, Offset: v.Offset,
				LeaderEpoch: v.LeaderEpoch, Metadata: v.Metadata, CommitTimeMs: v.CommitTime}
		}
		b.groups.Restore(o.Group, offs)
	case wal.TypeGroupState:
		var g group.GroupState
		if err := decodeJSON(e, &g); err != nil {
			return err
		}
		b.groups.RestoreGroup(g)
	case wal.TypeDeleteRecords:
		return b.applyDeleteRecordsLocked(e)
	case wal.TypeACL:
		var a aclEntry
		if err := decodeJSON(e, &a); err != nil {
			return err
		}
		b.acls.Apply(a.Add, a.Remove)
	case wal.TypeClientQuota:
		var q clientQuotaEntry
		if err := decodeJSON(e, &q); err != nil {
			return err
		}
		b.quotas.Apply(q.Entity, q.Set)
	case wal.TypeScramCredential:
		var sc scramEntry
		if err := decodeJSON(e, &sc); err != nil {
			return err
		}
		for _, d := range sc.Delete {
			b.scram.Set(d.User, d.Mechanism, nil)
		}
		for _, u := range sc.Set {
			c := u.Credential
			b.scram.Set(u.User, u.Mechanism, &c)
		}
	case wal.TypeProducerID:
		var p producerIDEntry
		if err := decodeJSON(e, &p); err != nil {
			return err
		}
		if p.NextID > b.nextPID {
			b.nextPID = p.NextID
		}
		b.pidEpochs[p.ProducerID] = p.Epoch
		b.notePIDIdle(p.ProducerID, time.Now()) // until it writes
		if p.Epoch > 0 {
			// A new id starts at epoch 0: this entry is a bump from Epoch-1.
			b.pidBumps[p.ProducerID] = p.Epoch
		}
	case wal.TypeTransaction:
		return b.applyTxnLocked(e)
	case wal.TypeNoop:
		// A new leader's first entry: it carries the epoch, nothing else.
	case wal.TypeStateSnapshot:
		// The state already reflects every earlier entry, except on a
		// replica re-cloned from a later LSN: it rebuilds from the snapshot
		// once the entries in hand are applied (ApplyEntries).
		if b.awaitingSnapshot {
			b.awaitingSnapshot = false
			b.rebuildPending = true
		}
	default:
		return fmt.Errorf("%w: lsn %d has unknown type %d", ErrBadEntry, e.LSN, e.Type)
	}
	return nil
}

// batchEntryLocked decodes a record-batch entry (or a compacted copy,
// which has the same payload) of which e.Payload may hold only a prefix
// (size is the whole payload's length), and finds its partition. p is nil
// when the topic was deleted after the batch was written (a later entry
// says so) or never existed on this node: nothing to index. Caller holds
// appendMu.
func (b *Broker) batchEntryLocked(e wal.Entry, pos wal.Pos, size int) (p *partition, info batchInfo, raw []byte, ref batchRef, err error) {
	tname, part, raw, err := decodeBatchEntry(e.Payload)
	if err != nil {
		return nil, info, nil, ref, fmt.Errorf("lsn %d: %w", e.LSN, err)
	}
	rawSize := size - batchOffsetInPayload(e.Payload)
	info, err = parseBatchHeader(raw, rawSize)
	if err != nil {
		return nil, info, nil, ref, fmt.Errorf("%w: lsn %d: %v", ErrBadEntry, e.LSN, err)
	}
	p = b.partition(tname, part)
	if p != nil && b.skipMetaUpTo > 0 {
		if t, _ := b.topicSnapCreated(tname); e.LSN < t {
			p = nil // a batch of an older topic of the same name
		}
	}
	if p == nil {
		b.log.Debug("batch for unknown partition ignored", "topic", tname, "partition", part, "lsn", e.LSN, "type", e.Type)
	}
	ref = batchRef{
		base:      info.baseOffset,
		last:      info.lastOffset(),
		maxTs:     info.maxTimestamp,
		pos:       pos,
		size:      int32(rawSize),
		poff:      int32(batchOffsetInPayload(e.Payload)),
		hasPID:    info.producerID >= 0,
		compacted: e.Type == wal.TypeCompactedBatch,
	}
	return p, info, raw, ref, nil
}

func (b *Broker) applyBatchLocked(e wal.Entry, pos wal.Pos, size int) error {
	p, info, raw, ref, err := b.batchEntryLocked(e, pos, size)
	if err != nil || p == nil {
		return err
	}
	tname, part := p.topic, p.id
	p.mu.Lock()
	switch {
	case ref.last < p.logStart:
		// Below the log start offset that the state checkpoint restored
		// (topic retention had removed it): not served again.
	case len(p.batches) == 0 && b.skipMetaUpTo == 0:
		// Nothing before this batch is stored: a new partition, or one
		// whose older batches retention deleted. (A replay from the state
		// checkpoint moves the log start offset once it has indexed
		// every batch: endCheckpointReplayLocked.)
		p.logStart = max(p.logStart, ref.base)
		fallthrough
	default:
		p.batches = append(p.batches, ref)
	}
	p.next = ref.last + 1
	p.applyTxnBatchLocked(info, raw)
	p.mu.Unlock()
	if info.producerID >= 0 && info.baseSequence >= 0 {
		k := producerKey{pid: info.producerID, tp: tp{tname, part}}
		w := b.windowFor(k, info.producerEpoch)
		w.add(seqEntry{firstSeq: info.baseSequence, lastSeq: info.lastSequence(), baseOffset: info.baseOffset, lsn: e.LSN, maxTs: info.maxTimestamp})
		if ep, ok := b.pidEpochs[info.producerID]; !ok || ep < info.producerEpoch {
			b.pidEpochs[info.producerID] = info.producerEpoch
		}
		if info.producerID >= b.nextPID {
			b.nextPID = info.producerID + 1
		}
	}
	// A batch that the state checkpoint covers commits with the
	// checkpoint's LSN, as restoreCheckpointLocked queued the partitions:
	// b.pending stays in LSN order.
	commitAt := max(e.LSN, b.skipMetaUpTo)
	b.commitMu.Lock()
	if commitAt <= b.commitLSN {
		b.commitMu.Unlock()
		p.mu.Lock()
		p.setHWLocked(ref.last + 1)
		p.mu.Unlock()
		b.hwNotify.broadcast()
		return nil
	}
	b.pending = append(b.pending, pendingCommit{lsn: commitAt, p: p, end: ref.last + 1})
	b.commitMu.Unlock()
	return nil
}

// partition returns a topic-partition, or nil.
func (b *Broker) partition(topicName string, part int32) *partition {
	b.mu.RLock()
	defer b.mu.RUnlock()
	t := b.topics[topicName]
	if t == nil || part < 0 || int(part) >= len(t.partitions) {
		return nil
	}
	return t.partitions[part]
}

// SetCommitLSN moves the commit point forward: every batch at or below it
// becomes visible to consumers and acks=-1 produces waiting on it are
// answered. It never moves backwards.
func (b *Broker) SetCommitLSN(lsn uint64) {
	b.commitMu.Lock()
	if lsn <= b.commitLSN {
		b.commitMu.Unlock()
		return
	}
	b.commitLSN = lsn
	termDone := b.termStart > 0 && lsn+1 >= b.termStart
	termStart, termEpoch, termStarted := b.termStart, b.termEpoch, b.termStarted
	if termDone {
		b.termStart = 0
	}
	i := 0
	for i < len(b.pending) && b.pending[i].lsn <= lsn {
		i++
	}
	done := b.pending[:i]
	b.pending = b.pending[i:]
	close(b.commitCh)
	b.commitCh = make(chan struct{})
	b.commitMu.Unlock()
	if termDone {
		b.log.Info("the entries of earlier leaders are committed; end offsets are available again",
			"epoch", termEpoch, "first_lsn_of_epoch", termStart, "after", time.Since(termStarted).Round(time.Millisecond))
	}
	// done is ascending in LSN, so per partition the last one wins.
	for _, pc := range done {
		pc.p.mu.Lock()
		pc.p.setHWLocked(pc.end)
		pc.p.mu.Unlock()
	}
	if len(done) > 0 {
		b.hwNotify.broadcast()
	}
}

// CommitLSN is the current commit point.
func (b *Broker) CommitLSN() uint64 {
	b.commitMu.Lock()
	defer b.commitMu.Unlock()
	return b.commitLSN
}

// ErrFenced is returned to a writer whose entry may no longer be in the
// log: the node lost leadership or truncated its WAL after the writer
// appended (the entry at that LSN may now be another leader's).
var ErrFenced = errors.New("broker: leadership lost or WAL truncated before the entry was committed")

// commitGeneration is the current fence generation; a writer takes it
// before appending and passes it to waitCommit.
func (b *Broker) commitGeneration() uint64 {
	b.commitMu.Lock()
	defer b.commitMu.Unlock()
	return b.commitGen
}

// fenceWaitersLocked fails every writer waiting for the commit point (they
// took an older generation). Caller holds commitMu.
func (b *Broker) fenceWaitersLocked() {
	b.commitGen++
	b.termStart = 0
	close(b.commitCh)
	b.commitCh = make(chan struct{})
}

// waitCommit blocks until the commit point reaches lsn or ctx ends. It
// fails with ErrFenced when the node lost leadership or truncated its WAL
// since generation gen (taken before the entry was appended).
func (b *Broker) waitCommit(ctx interface {
	Done() <-chan struct{}
	Err() error
}, lsn, gen uint64) error {
	for {
		b.commitMu.Lock()
		if b.commitGen != gen {
			b.commitMu.Unlock()
			return ErrFenced
		}
		if b.commitLSN >= lsn {
			b.commitMu.Unlock()
			return nil
		}
		ch := b.commitCh
		b.commitMu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		case <-b.ctx.Done():
			return ErrClosed
		}
	}
}

// The commit checkpoint lets a replicated node that restarts serve reads up
// to the last commit point it knew before its sidecar tells it the current
// one (Kafka's replication-offset-checkpoint).
func (b *Broker) commitCheckpointPath() string {
	return filepath.Join(b.cfg.DataDir, "commit-checkpoint")
}

func (b *Broker) loadCommitCheckpoint() uint64 {
	data, err := os.ReadFile(b.commitCheckpointPath())
	if err != nil {
		return 0
	}
	v, err := strconv.ParseUint(strings.TrimSpace(string(data)), 10, 64)
	if err != nil {
		b.log.Warn("ignoring unreadable commit checkpoint", "file", b.commitCheckpointPath(), "error", err)
		return 0
	}
	// Never claim more than is on disk here.
	if last := b.wal.DurableLSN(); v > last {
		v = last
	}
	return v
}

// saveCommitCheckpoint writes the commit point to commit-checkpoint and
// makes it durable (file, then the rename in the directory): a power loss
// of the whole cluster leaves every follower knowing the commit point of
// at most a second before, which is what keeps it from dropping
// acknowledged entries to follow a leader that lacks them. Two fsyncs a
// second at most, and none while the commit point stands still.
func (b *Broker) saveCommitCheckpoint() {
	if err := b.writeCommitCheckpoint(b.CommitLSN()); err != nil {
		b.log.Warn("writing commit checkpoint failed", "file", b.commitCheckpointPath(), "error", err)
	}
}

func (b *Broker) writeCommitCheckpoint(lsn uint64) error {
	return writeFileDurably(b.commitCheckpointPath(), []byte(strconv.FormatUint(lsn, 10)+"\n"))
}

func (b *Broker) checkpointCommitLoop() {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	var last uint64
	for {
		select {
		case <-t.C:
			if c := b.CommitLSN(); c != last {
				b.saveCommitCheckpoint()
				last = c
			}
		case <-b.ctx.Done():
			return
		}
	}
}

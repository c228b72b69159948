package broker

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"time"

	"github.com/tandem-io/tandem/broker/acl"
	"github.com/tandem-io/tandem/broker/group"
	"github.com/tandem-io/tandem/broker/link"
	"github.com/tandem-io/tandem/broker/quota"
	"github.com/tandem-io/tandem/broker/sasl"
	"github.com/tandem-io/tandem/broker/wal"
)

// Retention deletes whole WAL segments: a sealed segment whose last write is
// older than log.retention.ms, and the oldest sealed segments while the WAL
// is larger than log.retention.bytes. The active segment is never deleted.
//
// Deleting a segment also deletes the metadata entries in it (topic
// creation, configs, group offsets, producer ids) and the record batches
// that gave each partition its offsets, so before deleting, the broker
// writes a state checkpoint (DataDir/state-checkpoint.json): the metadata
// state and every partition's log start and log end offsets as of the last
// applied LSN. The leader also appends it to the WAL as a state-snapshot
// entry, which replicates, so a follower that is re-cloned from the
// leader's first LSN gets it too. Start-up loads the
// checkpoint (or the first snapshot entry), skips metadata entries it
// already covers, and indexes every record batch still on disk on top of
// the offsets it restored, so that offsets are never handed out twice.
//
// A checkpoint describes the state as of its LSN, so it holds only while
// the WAL still holds every entry up to that LSN. A truncation (divergence
// repair after a failover drops a follower's or old leader's entries above
// the commit point) or a crash that loses unsynced writes can leave it past
// the WAL's last LSN, describing topics, offsets and partition offsets of
// entries that no longer exist. Start-up and every rebuild treat such a
// checkpoint as stale: they remove it and take the state from a
// state-snapshot entry in the WAL (every one left is at or below the WAL's
// end), or, when the WAL has none, load it anyway and log an error that asks
// to re-clone the node. A WAL that starts at LSN 1 never reads the
// checkpoint, and retention rewrites it before it deletes a segment.

const checkpointName = "state-checkpoint.json"

type stateCheckpoint struct {
	LSN       uint64                    `json:"lsn"`
	Topics    []checkpointTopic         `json:"topics"`
	Offsets   map[string][]group.Offset `json:"offsets"`
	NextPID   int64                     `json:"next_pid"`
	PIDEpochs map[int64]int16           `json:"pid_epochs"`
	// PIDBumps is Broker.pidBumps (absent in checkpoints of older versions).
	PIDBumps map[int64]int16 `json:"pid_bumps,omitempty"`
	// Groups is the stored membership of consumer groups (absent in
	// checkpoints of older versions).
	Groups []group.GroupState `json:"groups,omitempty"`
	// ACLs is every Kafka ACL binding (absent in checkpoints of older
	// versions, and when there is none).
	ACLs []acl.Binding `json:"acls,omitempty"`
	// Quotas is every client quota (absent in checkpoints of older
	// versions, and when there is none).
	Quotas []quota.Config `json:"quotas,omitempty"`
	// ScramUsers is every SASL user set through Kafka's API: user ->
	// mechanism -> credential (absent in checkpoints of older versions,
	// and when there is none).
	ScramUsers map[string]map[string]sasl.Credential `json:"scram_users,omitempty"`
	// Transactions is the transaction coordinator's state, by
	// transactional id (absent in checkpoints of older versions, and when
	// there is none).
	Transactions []*txnState `json:"transactions,omitempty"`
}

type checkpointTopic struct {
	createTopicEntry
	CreatedLSN uint64 `json:"created_lsn"`
	// PartitionOffsets holds each partition's log start and log end
	// offsets, by partition id, so that a partition whose batches were all
	// in deleted segments keeps its offsets (Kafka keeps the log end and
	// log start offsets across restarts). Checkpoints of older versions
	// lack it: their partitions come back from the batches still on disk.
	PartitionOffsets []checkpointPartition `json:"partition_offsets,omitempty"`
}

// checkpointPartition is one partition in the state checkpoint.
type checkpointPartition struct {
	LogStart int64 `json:"log_start"`
	Next     int64 `json:"next"`
}

func (b *Broker) retentionLoop() {
	t := time.NewTicker(b.cfg.RetentionCheckInterval)
	defer t.Stop()
	b.trimTopics(time.Now()) // topic retention is re-applied after a restart
	for {
		select {
		case <-t.C:
			b.trimTopics(time.Now())
			b.cleanCompacted(time.Now())
			if n, err := b.enforceRetention(time.Now()); err != nil {
				b.log.Error("retention failed; will retry", "error", err)
			} else if n > 0 {
				b.log.Info("retention deleted WAL segments", "segments", n, "first_lsn", b.wal.FirstLSN())
			}
			b.expireOffsets()
		case <-b.ctx.Done():
			return
		}
	}
}

// expireOffsets deletes committed offsets past --offsets-retention (the
// group coordinator decides which; it does nothing unless this node
// coordinates groups, i.e. leads).
func (b *Broker) expireOffsets() {
	if b.cfg.OffsetsRetention <= 0 || !b.isLeader() {
		return
	}
	n, err := b.groups.ExpireOffsets(b.ctx, b.cfg.OffsetsRetention)
	if err != nil {
		b.log.Warn("expiring committed offsets failed; will retry", "expired", n, "error", err)
	} else if n > 0 {
		b.log.Info("expired committed offsets", "partitions", n, "retention", b.cfg.OffsetsRetention)
	}
}

// trimTopics applies topic-level retention.ms and retention.bytes
// overrides: the oldest committed batches of each partition that are older
// than retention.ms (by their max timestamp, as Kafka judges a segment), or
// beyond retention.bytes, stop being served and the log start offset moves
// past them. Their bytes are reclaimed when node-wide retention deletes the
// segment that holds them. A topic whose retention.ms is longer than the
// node's (or -1) has its live batches copied forward before node-wide
// retention deletes their segment (compact.go), so that it keeps them as
// long as it says.
func (b *Broker) trimTopics(now time.Time) {
	b.mu.RLock()
	var work []*partition
	var rms, rbytes []int64
	for _, t := range b.topics {
		if _, del := cleanupPolicy(t.configs["cleanup.policy"]); !del {
			continue // compacted only: kept until a later record of the same key replaces it
		}
		ms, okMs := parseOverride(t.configs["retention.ms"])
		by, okBy := parseOverride(t.configs["retention.bytes"])
		if !okMs && !okBy {
			continue
		}
		for _, p := range t.partitions {
			work = append(work, p)
			rms = append(rms, ms)
			rbytes = append(rbytes, by)
		}
	}
	b.mu.RUnlock()
	for i, p := range work {
		p.mu.Lock()
		var size int64
		for _, ref := range p.batches {
			size += int64(ref.size)
		}
		n := 0
		for n < len(p.batches) && p.batches[n].last < p.hw {
			ref := p.batches[n]
			old := rms[i] >= 0 && now.Sub(time.UnixMilli(ref.maxTs)) > time.Duration(rms[i])*time.Millisecond
			big := rbytes[i] >= 0 && size > rbytes[i]
			if !old && !big {
				break
			}
			size -= int64(ref.size)
			n++
		}
		if n > 0 {
			if n < len(p.batches) {
				p.logStart = max(p.logStart, p.batches[n].base) // DeleteRecords may have moved it into the batch
			} else {
				p.logStart = p.next
			}
			p.batches = append(p.batches[:0:0], p.batches[n:]...)
			b.log.Info("topic retention removed batches", "topic", p.topic, "partition", p.id, "batches", n, "log_start", p.logStart)
		}
		p.mu.Unlock()
	}
}

// parseOverride reads a retention override; -1 (or absent) means none.
func parseOverride(v string) (int64, bool) {
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return -1, false
	}
	return n, true
}

// enforceRetention deletes the segments retention allows and returns how many.
func (b *Broker) enforceRetention(now time.Time) (int, error) {
	segs := b.wal.Segments()
	if len(segs) < 2 {
		return 0, nil
	}
	var total int64
	for _, s := range segs {
		total += s.Bytes
	}
	// The live batches of compacted and long-retention topics are kept
	// whatever the size (compact.go): they do not count against
	// log.retention.bytes, or every round would copy them forward again.
	_, live := b.compactionHold()
	total -= live
	// On a replicated leader, every in-sync follower has everything up to
	// the commit point; entries above it may still have to be shipped from
	// this WAL. Retention keeps them, up to ReplicaKeepBytes of segments it
	// would otherwise have deleted (PostgreSQL's max_slot_wal_keep_size):
	// past that, a follower that needs them is re-cloned instead.
	keepFrom := uint64(0)
	if v := b.clusterView(); v.Role == link.RoleLeader {
		keepFrom = b.CommitLSN() + 1
	}
	var upTo uint64 // delete segments whose LastLSN < upTo
	var held int64  // bytes retention would delete but replicas still need
	for _, s := range segs[:len(segs)-1] {
		old := b.cfg.RetentionMs >= 0 && now.Sub(s.LastWrite) > time.Duration(b.cfg.RetentionMs)*time.Millisecond
		big := b.cfg.RetentionBytes >= 0 && total > b.cfg.RetentionBytes
		if !old && !big {
			break
		}
		if keepFrom > 0 && s.LastLSN >= keepFrom {
			held += s.Bytes
			if b.cfg.ReplicaKeepBytes < 0 || held <= b.cfg.ReplicaKeepBytes {
				continue // an in-sync follower may still need it: keep it, and all after it
			}
			b.log.Warn("retention deletes WAL that an in-sync follower has not flushed yet (over --replica-keep-bytes); that follower will be re-cloned",
				"segment", s.Path, "commit_lsn", keepFrom-1, "held_bytes", held)
		}
		upTo = s.LastLSN + 1
		total -= s.Bytes
	}
	if upTo == 0 {
		return 0, nil
	}
	if upTo = b.compactionRetention(upTo, now); upTo == 0 {
		return 0, nil
	}
	if err := b.writeCheckpoint(); err != nil {
		return 0, err
	}
	n, err := b.wal.DeleteSegmentsBefore(upTo)
	if err != nil {
		return n, err
	}
	first := b.wal.FirstLSN()
	b.mu.RLock()
	for _, t := range b.topics {
		for _, p := range t.partitions {
			p.mu.Lock()
			p.dropBeforeLocked(first)
			p.mu.Unlock()
		}
	}
	b.mu.RUnlock()
	b.metrics.retentionDelete.Add(float64(n))
	return n, nil
}

// writeCheckpoint saves the metadata state atomically in the data dir and,
// on the leader, also as a state-snapshot WAL entry, which replicates: a
// follower re-cloned from a later LSN learns the state from it. The file is
// written once the entries it describes are durable (a follower appends
// without waiting for that), so that a crash does not leave it past the
// WAL's end.
func (b *Broker) writeCheckpoint() error {
	b.appendMu.Lock()
	cp := b.snapshotLocked()
	durable := cp.LSN
	if b.isLeader() {
		lsn, err := b.appendLocked(wal.TypeStateSnapshot, encodeJSON(cp))
		if err != nil {
			b.appendMu.Unlock()
			return fmt.Errorf("broker: writing the state snapshot entry: %w", err)
		}
		durable = lsn
	}
	b.appendMu.Unlock()
	if err := b.wal.WaitDurable(b.ctx, durable); err != nil {
		return err
	}
	return b.saveCheckpointFile(cp)
}

// snapshotLocked captures the metadata state as of the last applied entry.
// Caller holds appendMu.
func (b *Broker) snapshotLocked() stateCheckpoint {
	cp := stateCheckpoint{LSN: b.lastApplied, NextPID: b.nextPID, PIDEpochs: map[int64]int16{}}
	for k, v := range b.pidEpochs {
		cp.PIDEpochs[k] = v
	}
	if len(b.pidBumps) > 0 {
		cp.PIDBumps = make(map[int64]int16, len(b.pidBumps))
		for k, v := range b.pidBumps {
			cp.PIDBumps[k] = v
		}
	}
	b.mu.RLock()
	for _, t := range b.topics {
		cfgs := map[string]string{}
		for k, v := range t.configs {
			cfgs[k] = v
		}
		offs := make([]checkpointPartition, len(t.partitions))
		for i, p := range t.partitions {
			p.mu.RLock()
			offs[i] = checkpointPartition{LogStart: p.logStart, Next: p.next}
			p.mu.RUnlock()
		}
		cp.Topics = append(cp.Topics, checkpointTopic{
			createTopicEntry: createTopicEntry{Name: t.name, ID: t.id, Partitions: int32(len(t.partitions)), Configs: cfgs},
			CreatedLSN:       t.createdLSN,
			PartitionOffsets: offs,
		})
	}
	b.mu.RUnlock()
	cp.Offsets = b.groups.AllOffsets()
	cp.Groups = b.groups.StoredGroups()
	cp.ACLs = b.acls.All()
	cp.Quotas = b.quotas.All()
	if u := b.scram.All(); len(u) > 0 {
		cp.ScramUsers = u
	}
	for _, s := range b.txns {
		c := s.clone()
		c.NextPID = 0
		cp.Transactions = append(cp.Transactions, c)
	}
	sort.Slice(cp.Transactions, func(i, j int) bool { return cp.Transactions[i].ID < cp.Transactions[j].ID })
	return cp
}

func (b *Broker) saveCheckpointFile(cp stateCheckpoint) error {
	data, err := json.Marshal(cp)
	if err != nil {
		return err
	}
	if err := writeFileDurably(filepath.Join(b.cfg.DataDir, checkpointName), data); err != nil {
		return fmt.Errorf("broker: writing state checkpoint: %w", err)
	}
	return nil
}

// loadCheckpointLocked restores the metadata state that the WAL's deleted
// segments held, when the WAL no longer starts at LSN 1: from
// state-checkpoint.json if it covers the gap, else from the first
// state-snapshot entry in the WAL (a replica re-cloned from the leader). It
// returns the LSN the state covers (metadata entries up to it are skipped
// by the replay), or 0 when nothing covers the gap. Caller holds appendMu.
//
// A checkpoint whose LSN is above the WAL's last LSN describes entries that
// are no longer in the log: a truncation dropped them (divergence repair),
// or a crash lost them. It is removed when the WAL holds a state-snapshot
// entry, which then replaces it (every entry left is at or below the WAL's
// end, so that snapshot describes only entries still in the log). Without
// one, the checkpoint alone says what the deleted segments held: it is
// loaded anyway, and an error says to re-clone the node.
func (b *Broker) loadCheckpointLocked() (uint64, error) {
	first, last := b.wal.FirstLSN(), b.wal.LastLSN()
	file, haveFile, err := b.readCheckpointFile()
	if err != nil {
		return 0, err
	}
	if haveFile && file.LSN > last {
		return b.loadInsteadOfStaleCheckpointLocked(file)
	}
	if haveFile && file.LSN+1 >= first {
		b.restoreCheckpointLocked(file)
		return file.LSN, nil
	}
	if haveFile {
		b.log.Warn("state checkpoint is older than the WAL; looking for a state snapshot entry instead",
			"checkpoint_lsn", file.LSN, "wal_first_lsn", first)
	}
	cp, found, err := b.findSnapshotEntry()
	if err != nil {
		return 0, err
	}
	if !found {
		b.log.Warn("the WAL starts after LSN 1 and no state checkpoint or snapshot covers the gap; topics created before it are unknown",
			"wal_first_lsn", first)
		return 0, nil
	}
	b.restoreCheckpointLocked(cp)
	return cp.LSN, nil
}

// loadInsteadOfStaleCheckpointLocked is loadCheckpointLocked for a
// checkpoint file above the WAL's last LSN (stale). Caller holds appendMu.
func (b *Broker) loadInsteadOfStaleCheckpointLocked(stale stateCheckpoint) (uint64, error) {
	path := filepath.Join(b.cfg.DataDir, checkpointName)
	first, last := b.wal.FirstLSN(), b.wal.LastLSN()
	cp, found, err := b.findSnapshotEntry()
	if err != nil {
		return 0, err
	}
	if !found {
		b.log.Error("the state checkpoint describes WAL entries that this node no longer has (dropped by a truncation after a failover, or lost in a crash), "+
			"and no state snapshot entry in the WAL can replace it: loading it anyway, so this node's topics, configs, committed offsets, producer ids "+
			"and partition offsets may include effects of the dropped entries. Re-clone this node from the leader: stop it, wipe its data directory, start it",
			"checkpoint", path, "checkpoint_lsn", stale.LSN, "wal_first_lsn", first, "wal_last_lsn", last)
		b.restoreCheckpointLocked(stale)
		return stale.LSN, nil
	}
	// Removed before anything is rebuilt from the snapshot, so that no
	// later start-up loads it once the WAL has grown past its LSN again.
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return 0, fmt.Errorf("broker: removing the stale state checkpoint %s: %w", path, err)
	}
	if err := syncDir(b.cfg.DataDir); err != nil {
		return 0, fmt.Errorf("broker: removing the stale state checkpoint %s: %w", path, err)
	}
	b.log.Warn("removed the state checkpoint: it describes WAL entries that this node no longer has; the state is rebuilt from the WAL's state snapshot entry",
		"checkpoint_lsn", stale.LSN, "wal_last_lsn", last, "snapshot_lsn", cp.LSN)
	b.restoreCheckpointLocked(cp)
	return cp.LSN, nil
}

// readCheckpointFile reads state-checkpoint.json; found is false when
// there is none.
func (b *Broker) readCheckpointFile() (cp stateCheckpoint, found bool, err error) {
	path := filepath.Join(b.cfg.DataDir, checkpointName)
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return cp, false, nil
	}
	if err != nil {
		return cp, false, fmt.Errorf("broker: reading %s: %w", path, err)
	}
	if err := json.Unmarshal(data, &cp); err != nil {
		return cp, false, fmt.Errorf("broker: %s is corrupt (%v); move it away to rebuild from the WAL's state snapshot, or restore the node from a replica", path, err)
	}
	return cp, true, nil
}

// syncDir fsyncs a directory, so that a file created, renamed or removed
// in it stays so after a crash.
// writeFileDurably replaces path with data so that a crash leaves either
// the old file or the whole new one, durably: data goes to path.tmp, which
// is fsynced, renamed over path, and the directory fsynced.
func writeFileDurably(path string, data []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	return syncDir(filepath.Dir(path))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// findSnapshotEntry returns the first state-snapshot entry in the WAL.
func (b *Broker) findSnapshotEntry() (stateCheckpoint, bool, error) {
	r, err := b.wal.NewReader(b.wal.FirstLSN())
	if err != nil {
		return stateCheckpoint{}, false, err
	}
	defer r.Close()
	for {
		e, _, err := r.Next()
		if errors.Is(err, io.EOF) {
			return stateCheckpoint{}, false, nil
		}
		if err != nil {
			return stateCheckpoint{}, false, err
		}
		if e.Type == wal.TypeStateSnapshot {
			var cp stateCheckpoint
			if err := decodeJSON(e, &cp); err != nil {
				return cp, false, err
			}
			return cp, true, nil
		}
	}
}

// restoreCheckpointLocked loads a checkpoint into a state that has nothing
// applied yet (start-up, or a rebuild). Each partition gets back its log
// start and log end offsets; the batches still on disk, replayed next, are
// indexed on top (applyBatchLocked). Its high watermark reaches the log end
// offset once the commit point reaches the checkpoint's LSN, which every
// record below it precedes. Caller holds appendMu.
func (b *Broker) restoreCheckpointLocked(cp stateCheckpoint) {
	b.commitMu.Lock()
	committed := cp.LSN <= b.commitLSN
	b.commitMu.Unlock()
	var pending []pendingCommit
	b.mu.Lock()
	for _, t := range cp.Topics {
		nt := &topic{name: t.Name, id: t.ID, createdLSN: t.CreatedLSN, configs: t.Configs}
		if nt.configs == nil {
			nt.configs = map[string]string{}
		}
		for i := int32(0); i < t.Partitions; i++ {
			p := newPartition(t.Name, i)
			if int(i) < len(t.PartitionOffsets) {
				o := t.PartitionOffsets[i]
				p.logStart, p.next = o.LogStart, o.Next
				if committed {
					p.hw = o.Next
				} else if o.Next > 0 {
					pending = append(pending, pendingCommit{lsn: cp.LSN, p: p, end: o.Next})
				}
			}
			nt.partitions = append(nt.partitions, p)
		}
		b.topics[t.Name] = nt
	}
	b.mu.Unlock()
	if len(pending) > 0 {
		b.commitMu.Lock()
		b.pending = append(b.pending, pending...)
		b.commitMu.Unlock()
	}
	for g, offs := range cp.Offsets {
		b.groups.Restore(g, offs)
	}
	for _, g := range cp.Groups {
		b.groups.RestoreGroup(g)
	}
	if cp.NextPID > b.nextPID {
		b.nextPID = cp.NextPID
	}
	for k, v := range cp.PIDEpochs {
		b.pidEpochs[k] = v
		b.notePIDIdle(k, time.Now())
	}
	for k, v := range cp.PIDBumps {
		b.pidBumps[k] = v
	}
	b.acls.Replace(cp.ACLs)
	b.quotas.Replace(cp.Quotas)
	b.scram.Replace(cp.ScramUsers)
	for _, s := range cp.Transactions {
		c := s.clone()
		b.txns[c.ID] = c
	}
}

// endCheckpointReplayLocked ends a replay that started from the state
// checkpoint: later metadata entries are applied again, a partition left
// with no batch indexed (all of them were in deleted segments) gets its
// log start offset at its log end offset, as an empty log in Kafka, and
// one whose first batches were in deleted segments gets it at its first
// batch still stored. A compacted partition keeps the checkpoint's: its
// gaps are compaction's, and no segment it pointed into was deleted.
// Caller holds appendMu.
func (b *Broker) endCheckpointReplayLocked() {
	if b.skipMetaUpTo == 0 {
		return
	}
	b.skipMetaUpTo = 0
	b.mu.RLock()
	defer b.mu.RUnlock()
	for _, t := range b.topics {
		compact := t.compacts()
		for _, p := range t.partitions {
			p.mu.Lock()
			switch {
			case len(p.batches) == 0 && p.logStart < p.next:
				p.logStart = p.next
			case len(p.batches) > 0 && !compact:
				p.logStart = max(p.logStart, p.batches[0].base)
			}
			p.mu.Unlock()
		}
	}
}

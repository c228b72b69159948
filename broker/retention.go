package broker

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/tandem-io/tandem/broker/group"
)

// Retention deletes whole WAL segments: a sealed segment whose last write is
// older than log.retention.ms, and the oldest sealed segments while the WAL
// is larger than log.retention.bytes. The active segment is never deleted.
//
// Deleting a segment also deletes the metadata entries in it (topic
// creation, configs, group offsets, producer ids), so before deleting, the
// broker writes a state checkpoint (DataDir/state-checkpoint.json): the
// metadata state as of the last applied LSN. Start-up loads the checkpoint
// first, skips metadata entries it already covers, and indexes every record
// batch still on disk.

const checkpointName = "state-checkpoint.json"

type stateCheckpoint struct {
	LSN       uint64                    `json:"lsn"`
	Topics    []checkpointTopic         `json:"topics"`
	Offsets   map[string][]group.Offset `json:"offsets"`
	NextPID   int64                     `json:"next_pid"`
	PIDEpochs map[int64]int16           `json:"pid_epochs"`
}

type checkpointTopic struct {
	createTopicEntry
	CreatedLSN uint64 `json:"created_lsn"`
}

func (b *Broker) retentionLoop() {
	t := time.NewTicker(b.cfg.RetentionCheckInterval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			if n, err := b.enforceRetention(time.Now()); err != nil {
				b.log.Error("retention failed; will retry", "error", err)
			} else if n > 0 {
				b.log.Info("retention deleted WAL segments", "segments", n, "first_lsn", b.wal.FirstLSN())
			}
		case <-b.ctx.Done():
			return
		}
	}
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
	var upTo uint64 // delete segments whose LastLSN < upTo
	for _, s := range segs[:len(segs)-1] {
		old := b.cfg.RetentionMs >= 0 && now.Sub(s.LastWrite) > time.Duration(b.cfg.RetentionMs)*time.Millisecond
		big := b.cfg.RetentionBytes >= 0 && total > b.cfg.RetentionBytes
		if !old && !big {
			break
		}
		upTo = s.LastLSN + 1
		total -= s.Bytes
	}
	if upTo == 0 {
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

// writeCheckpoint saves the metadata state atomically.
func (b *Broker) writeCheckpoint() error {
	b.appendMu.Lock()
	cp := stateCheckpoint{LSN: b.lastApplied, NextPID: b.nextPID, PIDEpochs: map[int64]int16{}}
	for k, v := range b.pidEpochs {
		cp.PIDEpochs[k] = v
	}
	b.mu.RLock()
	for _, t := range b.topics {
		cfgs := map[string]string{}
		for k, v := range t.configs {
			cfgs[k] = v
		}
		cp.Topics = append(cp.Topics, checkpointTopic{
			createTopicEntry: createTopicEntry{Name: t.name, ID: t.id, Partitions: int32(len(t.partitions)), Configs: cfgs},
			CreatedLSN:       t.createdLSN,
		})
	}
	b.mu.RUnlock()
	cp.Offsets = b.groups.AllOffsets()
	b.appendMu.Unlock()

	data, err := json.Marshal(cp)
	if err != nil {
		return err
	}
	path := filepath.Join(b.cfg.DataDir, checkpointName)
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("broker: writing state checkpoint: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("broker: writing state checkpoint: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("broker: writing state checkpoint: %w", err)
	}
	f.Close()
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("broker: writing state checkpoint: %w", err)
	}
	if d, err := os.Open(b.cfg.DataDir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// loadCheckpointLocked restores the metadata state saved before retention
// deleted segments, if the WAL no longer starts at LSN 1. It returns the LSN
// the checkpoint covers (0 when none). Caller holds appendMu.
func (b *Broker) loadCheckpointLocked() (uint64, error) {
	path := filepath.Join(b.cfg.DataDir, checkpointName)
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("broker: reading %s: %w", path, err)
	}
	var cp stateCheckpoint
	if err := json.Unmarshal(data, &cp); err != nil {
		return 0, fmt.Errorf("broker: %s is corrupt (%v); restore it from a replica or move it away to start without the metadata of deleted segments", path, err)
	}
	if cp.LSN > b.wal.LastLSN() {
		b.log.Warn("state checkpoint is newer than the WAL (the WAL was truncated after it); using it anyway",
			"checkpoint_lsn", cp.LSN, "wal_last_lsn", b.wal.LastLSN())
	}
	b.mu.Lock()
	for _, t := range cp.Topics {
		nt := &topic{name: t.Name, id: t.ID, createdLSN: t.CreatedLSN, configs: t.Configs}
		if nt.configs == nil {
			nt.configs = map[string]string{}
		}
		for i := int32(0); i < t.Partitions; i++ {
			nt.partitions = append(nt.partitions, newPartition(t.Name, i))
		}
		b.topics[t.Name] = nt
	}
	b.mu.Unlock()
	for g, offs := range cp.Offsets {
		b.groups.Restore(g, offs)
	}
	b.nextPID = cp.NextPID
	for k, v := range cp.PIDEpochs {
		b.pidEpochs[k] = v
	}
	return cp.LSN, nil
}

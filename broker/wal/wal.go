package wal

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
)

// EntryType says what an entry's payload is. The WAL stores it and never
// interprets it.
type EntryType uint8

const (
	TypeRecordBatch      EntryType = 1 // payload: broker-encoded (topic, partition, raw Kafka RecordBatch)
	TypeCreateTopic      EntryType = 2
	TypeDeleteTopic      EntryType = 3
	TypeOffsetCommit     EntryType = 4
	TypeProducerID       EntryType = 5
	TypeCreatePartitions EntryType = 6
	TypeAlterConfig      EntryType = 7
	TypeNoop             EntryType = 8 // written by a new leader at the start of its epoch
	// TypeStateSnapshot holds the broker's metadata state (topics, configs,
	// group offsets, producer ids), written by the leader before retention
	// deletes segments, so that a replica re-cloned from a later LSN learns
	// what the deleted segments held.
	TypeStateSnapshot EntryType = 9
	// TypeGroupState holds a consumer group's membership (generation,
	// members, assignments), written by the group coordinator when a
	// rebalance completes or the group empties, so that a promoted
	// follower or a restarted broker carries on with the same members.
	TypeGroupState EntryType = 10
	// TypeDeleteRecords moves the log start offset of some partitions
	// forward (Kafka's DeleteRecords).
	TypeDeleteRecords EntryType = 11
	// TypeACL adds and removes Kafka ACL bindings (CreateAcls,
	// DeleteAcls).
	TypeACL EntryType = 12
	// TypeClientQuota sets and removes the Kafka client quotas of one
	// entity (AlterClientQuotas).
	TypeClientQuota EntryType = 13
	// TypeScramCredential sets and deletes SCRAM credentials of SASL users
	// (AlterUserScramCredentials).
	TypeScramCredential EntryType = 14
	// TypeTransaction holds the whole state of one transactional id
	// (producer id and epoch, transaction state, partitions, pending
	// offsets): the transaction coordinator's log (Kafka's
	// __transaction_state).
	TypeTransaction EntryType = 15
	// TypeCompactedBatch replaces one stored RecordBatch of a compacted
	// topic (cleanup.policy=compact) with a copy that keeps only the
	// latest record of each key: same payload layout as TypeRecordBatch,
	// same base and last offset as the batch it replaces. A copy with no
	// records removes the batch from the partition's index.
	TypeCompactedBatch EntryType = 16
)

func (t EntryType) String() string {
	switch t {
	case TypeRecordBatch:
		return "RecordBatch"
	case TypeCreateTopic:
		return "CreateTopic"
	case TypeDeleteTopic:
		return "DeleteTopic"
	case TypeOffsetCommit:
		return "OffsetCommit"
	case TypeProducerID:
		return "ProducerID"
	case TypeCreatePartitions:
		return "CreatePartitions"
	case TypeAlterConfig:
		return "AlterConfig"
	case TypeNoop:
		return "Noop"
	case TypeStateSnapshot:
		return "StateSnapshot"
	case TypeGroupState:
		return "GroupState"
	case TypeDeleteRecords:
		return "DeleteRecords"
	case TypeACL:
		return "ACL"
	case TypeClientQuota:
		return "ClientQuota"
	case TypeScramCredential:
		return "ScramCredential"
	case TypeTransaction:
		return "Transaction"
	case TypeCompactedBatch:
		return "CompactedBatch"
	}
	return fmt.Sprintf("EntryType(%d)", uint8(t))
}

// Entry is one WAL entry. LSNs start at 1 and grow by exactly 1 per entry; 0 means "none".
type Entry struct {
	LSN     uint64
	Epoch   uint32
	Type    EntryType
	Payload []byte
	// PayloadCRC is the CRC-32C of Payload, valid when HasCRC is set.
	// Readers set it for every entry whose whole payload they return (it
	// comes out of checking the frame's CRC); an entry received from
	// another node carries the sender's, and AppendEntry refuses the entry
	// when its payload does not match it (ErrDamaged).
	PayloadCRC uint32
	HasCRC     bool
}

// Pos says where an entry's frame starts on disk.
type Pos struct {
	LSN     uint64
	Segment uint64 // first LSN of the segment file that holds the entry
	Offset  int64  // byte offset of the entry frame inside that file
}

// SyncPolicy says when the log fsyncs and what "durable" means (doc.go
// explains the trade-offs).
type SyncPolicy int

const (
	// SyncEveryBatch (default): group commit. An entry is durable once an
	// fsync that covers it has returned.
	SyncEveryBatch SyncPolicy = iota
	// SyncInterval: fsync every Options.SyncInterval; an entry is durable
	// as soon as it is written.
	SyncInterval
	// SyncNone: fsync only at segment roll and Close; an entry is durable
	// as soon as it is written.
	SyncNone
)

func (p SyncPolicy) String() string {
	switch p {
	case SyncEveryBatch:
		return "every-batch"
	case SyncInterval:
		return "interval"
	case SyncNone:
		return "none"
	}
	return fmt.Sprintf("SyncPolicy(%d)", int(p))
}

// ParseSyncPolicy parses the --fsync flag values every-batch, interval, none.
func ParseSyncPolicy(s string) (SyncPolicy, error) {
	switch strings.ToLower(s) {
	case "every-batch", "everybatch", "batch", "":
		return SyncEveryBatch, nil
	case "interval":
		return SyncInterval, nil
	case "none":
		return SyncNone, nil
	}
	return 0, fmt.Errorf("wal: unknown fsync policy %q (want every-batch, interval or none)", s)
}

// EpochStart says that Epoch's first entry has LSN StartLSN.
type EpochStart struct {
	Epoch    uint32
	StartLSN uint64
}

// SegmentInfo describes one segment file.
type SegmentInfo struct {
	FirstLSN  uint64
	LastLSN   uint64 // FirstLSN-1 when the segment is empty
	Bytes     int64
	LastWrite time.Time // last append, or the file's mtime for segments found at Open
	Path      string
}

// Defaults of Options.
const (
	DefaultSegmentBytes  = 64 << 20
	DefaultMaxEntryBytes = 64 << 20
	DefaultSyncInterval  = time.Second
	// DefaultPreallocateBytes: see Options.PreallocateBytes.
	DefaultPreallocateBytes = 1 << 20
	// DefaultPageCacheBytes: see Options.PageCacheBytes.
	DefaultPageCacheBytes = 256 << 20
)

// Options configure Open.
type Options struct {
	// Dir holds the segment files and the epoch history. Created if missing.
	Dir string
	// SegmentBytes is the size after which the log rolls to a new segment
	// file. Default 64 MiB: big enough that rolls (one fsync of the file and
	// one of the directory) are rare, small enough that retention deletes
	// space in useful steps.
	SegmentBytes int64
	// Sync is the fsync policy. Default SyncEveryBatch.
	Sync SyncPolicy
	// SyncInterval is the fsync period under SyncInterval. Default 1s.
	SyncInterval time.Duration
	// MaxEntryBytes bounds an entry's payload; larger appends fail with
	// ErrTooLarge. Default 64 MiB (at most 1 GiB).
	MaxEntryBytes int
	// Logger receives the log's messages (it is Named("wal")). Default: none.
	Logger hclog.Logger
	// PreallocateBytes is how far ahead of the last entry the active
	// segment is kept zero-filled (and its size durable), so that a
	// group-commit fsync of a small append flushes only data, not the
	// file-system journal: on ext4 about half the latency. Zero-filling
	// is rate-limited, so at full speed it costs little bandwidth.
	// Default 1 MiB; negative turns it off.
	PreallocateBytes int64
	// PageCacheBytes is how much of the newest WAL data the log leaves to
	// the operating system's page cache. After each group-commit fsync,
	// pages of older data (already on the device, so clean) are released
	// with posix_fadvise(POSIX_FADV_DONTNEED), as PostgreSQL releases WAL
	// segments it no longer needs. The freed memory is what the next
	// appends are written into, instead of pages the kernel must newly
	// allocate (on a VM whose memory the host backs lazily, a page cache
	// that keeps growing costs most of the append path's CPU), and the WAL
	// does not crowd other data out of memory. Consumers, followers and
	// replays at the tail still read from memory; reading further back
	// reads the device. Only the fsync policies every-batch and interval
	// release pages (SyncNone never knows that they are clean). Default
	// 256 MiB; negative keeps everything (the kernel alone decides, as with
	// Kafka).
	PageCacheBytes int64
	// OnSync, when set, is called after every group-commit fsync with its
	// duration (for a latency histogram). It must not block.
	OnSync func(time.Duration)
	// OnRecover, when set, is called by Open for every entry that recovery
	// verified, in LSN order, while the segments are scanned: a caller that
	// rebuilds its state from the whole log (the broker) does it from the
	// bytes recovery reads anyway instead of reading the log a second time.
	// e.Payload is the entry's whole payload and is valid only during the
	// call; size is len(e.Payload). Returning false stops the calls for the
	// rest of Open (recovery itself goes on). An entry it was given can
	// still be cut off afterwards only if Open fails: a torn tail is never
	// passed to it, so when Open returns a log, every entry given to
	// OnRecover is in it, and no other.
	OnRecover func(e Entry, pos Pos, size int) bool
}

// Stats are counters for tests and metrics.
type Stats struct {
	Appends      uint64 // entries written
	BytesWritten uint64 // frame bytes written
	Fsyncs       uint64 // fsyncs of segment files (syncer, rolls, truncation, Close)
	Rolls        uint64 // new segments created by rolling
	// CacheReleases counts the ranges released after fsyncs because they
	// fell behind the page-cache window (Options.PageCacheBytes); releases
	// by reads of old data are not counted.
	CacheReleases uint64
}

// Errors. Each is wrapped with context (file, offset, LSN); test with errors.Is.
var (
	ErrCorrupt    = errors.New("wal: corrupt entry")
	ErrGap        = errors.New("wal: LSN gap")
	ErrCompacted  = errors.New("wal: entries compacted")
	ErrStaleEpoch = errors.New("wal: stale epoch")
	ErrClosed     = errors.New("wal: closed")
	ErrTooLarge   = errors.New("wal: entry too large")
	// ErrDamaged is returned by AppendEntry for an entry whose payload does
	// not match the checksum it came with: it was damaged after the sender
	// read it, and nothing of it is written.
	ErrDamaged = errors.New("wal: entry payload does not match its checksum")
	// ErrTruncated is returned by a Reader whose entries were removed by
	// Truncate or Reset after it had returned them, and by Checksum or ReadAt
	// when the entries they read were truncated meanwhile.
	ErrTruncated = errors.New("wal: entries truncated")
	// ErrNotFound is returned by ReadAt for a position that holds no entry.
	ErrNotFound = errors.New("wal: no entry at position")
)

// Log is the node-wide write-ahead log. All methods are safe for concurrent use.
type Log struct {
	opts   Options
	dir    string
	logger hclog.Logger
	lock   *os.File // flock on Dir/LOCK

	kick   chan struct{} // wakes the syncer (capacity 1)
	wbKick chan struct{} // wakes the writeback goroutine (capacity 1)
	zKick  chan struct{} // wakes the preallocation goroutine (capacity 1)
	stop   chan struct{} // closed by Close
	wg     sync.WaitGroup

	appends, bytesWritten, fsyncs, rolls atomic.Uint64

	mu         sync.Mutex
	segs       []*segment // ordered by first LSN; the last one is active
	lastLSN    uint64
	syncedLSN  uint64 // highest LSN covered by an fsync
	durableLSN uint64 // highest LSN durable under the policy
	durCh      chan struct{}
	epochs     []EpochStart
	gen        uint64 // bumped by Truncate and Reset
	closed     bool
	failErr    error         // sticky I/O failure: appends refuse until restart
	writeState WriteState    // see WriteState
	writeCh    chan struct{} // closed and replaced when writeState changes
	readers    map[*Reader]struct{}
	wbSeg      *segment // segment and offset up to which writeback was started
	wbOff      int64
	cacheDrops atomic.Uint64 // Stats.CacheReleases
	syncHook   func()        // tests: runs at the start of every syncer cycle

	// syncMu serialises every fsync of a segment file (fsyncSegment), so
	// that no fsync runs concurrently with one that fails. Lock order:
	// Log.mu, then syncMu; the syncer and the preallocator hold only syncMu
	// while they fsync and take Log.mu after releasing it.
	syncMu sync.Mutex
	// syncErr (guarded by syncMu) is the first fsync failure of a segment
	// file; every later fsync fails with it without running. Only a Reset,
	// which deletes every segment file, clears it.
	syncErr error
	// fsyncHook (tests only) runs in place of each segment fsync, and of
	// the directory fsync that creates a segment: it gets the path and the
	// real fsync, so a test can fail, delay or pass it through. Set with
	// Log.mu and syncMu held; read under either.
	fsyncHook func(path string, fsync func() error) error
}

// Open opens (creating if needed) the log in opts.Dir and recovers it: every
// segment is scanned and verified, a torn tail of the last segment is cut off
// (with a warning naming the file, offset and bytes dropped), and any other
// damage fails with an error wrapping ErrCorrupt.
func Open(opts Options) (*Log, error) {
	if opts.Dir == "" {
		return nil, errors.New("wal: Options.Dir is empty")
	}
	if opts.SegmentBytes <= 0 {
		opts.SegmentBytes = DefaultSegmentBytes
	}
	if opts.MaxEntryBytes <= 0 {
		opts.MaxEntryBytes = DefaultMaxEntryBytes
	}
	if opts.MaxEntryBytes > maxDecodeEntry {
		return nil, fmt.Errorf("wal: MaxEntryBytes %d is above the limit of %d", opts.MaxEntryBytes, maxDecodeEntry)
	}
	if opts.SyncInterval <= 0 {
		opts.SyncInterval = DefaultSyncInterval
	}
	if opts.PreallocateBytes == 0 {
		opts.PreallocateBytes = DefaultPreallocateBytes
	}
	if opts.PageCacheBytes == 0 {
		opts.PageCacheBytes = DefaultPageCacheBytes
	}
	switch opts.Sync {
	case SyncEveryBatch, SyncInterval, SyncNone:
	default:
		return nil, fmt.Errorf("wal: unknown sync policy %d", opts.Sync)
	}
	logger := opts.Logger
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("wal: create directory: %w", err)
	}
	lock, err := lockDir(opts.Dir)
	if err != nil {
		return nil, err
	}
	l := &Log{
		opts:    opts,
		dir:     opts.Dir,
		logger:  logger.Named("wal"),
		lock:    lock,
		kick:    make(chan struct{}, 1),
		wbKick:  make(chan struct{}, 1),
		zKick:   make(chan struct{}, 1),
		stop:    make(chan struct{}),
		durCh:   make(chan struct{}),
		writeCh: make(chan struct{}),
		readers: make(map[*Reader]struct{}),
	}
	if err := l.recover(); err != nil {
		for _, s := range l.segs {
			s.f.Close()
		}
		unlockDir(lock)
		return nil, err
	}
	if opts.Sync != SyncNone {
		l.wg.Add(1)
		go l.syncer()
	}
	if writebackSupported {
		l.wg.Add(1)
		go l.writeback()
	}
	if opts.PreallocateBytes > 0 {
		l.wg.Add(1)
		go l.preallocator()
		l.zKick <- struct{}{}
	}
	return l, nil
}

// recover loads the segments and the epoch history (see doc.go, Recovery).
func (l *Log) recover() error {
	des, err := os.ReadDir(l.dir)
	if err != nil {
		return fmt.Errorf("wal: read directory: %w", err)
	}
	var firsts []uint64
	for _, de := range des {
		name := de.Name()
		if strings.HasSuffix(name, ".tmp") {
			// Leftover of an interrupted atomic write; never installed.
			if err := os.Remove(filepath.Join(l.dir, name)); err != nil {
				return fmt.Errorf("wal: remove leftover %s: %w", name, err)
			}
			continue
		}
		if first, ok := parseSegmentName(name); ok && de.Type().IsRegular() {
			firsts = append(firsts, first)
		}
	}
	slices.Sort(firsts)

	persisted, found, err := readEpochs(l.dir)
	if err != nil {
		return err
	}

	if len(firsts) == 0 {
		seg, err := l.createSegmentLocked(1)
		if err != nil {
			return err
		}
		l.segs = []*segment{seg}
		l.lastLSN = 0
		l.epochs = nil
		l.logger.Info("created new WAL", "dir", l.dir)
		if found && len(persisted) > 0 || !found {
			return writeEpochs(l.dir, nil)
		}
		return nil
	}

	// Bytes of the segments after each one: a sealed segment wholly
	// behind the page-cache window is released once scanned, so that
	// recovery reuses the memory it reads into (Options.PageCacheBytes).
	after := make([]int64, len(firsts))
	for i := len(firsts) - 2; i >= 0; i-- {
		after[i] = after[i+1]
		if fi, err := os.Stat(filepath.Join(l.dir, segmentName(firsts[i+1]))); err == nil {
			after[i] += fi.Size()
		}
	}
	st := &scanState{onRecover: l.opts.OnRecover}
	for i, first := range firsts {
		path := filepath.Join(l.dir, segmentName(first))
		if first == 0 {
			return fmt.Errorf("%w: %s: segment names LSN 0 (LSNs start at 1)", ErrCorrupt, path)
		}
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			return fmt.Errorf("wal: open segment: %w", err)
		}
		seg := &segment{first: first, path: path, f: f, last: first - 1}
		l.segs = append(l.segs, seg)
		fi, err := f.Stat()
		if err != nil {
			return fmt.Errorf("wal: stat %s: %w", path, err)
		}
		seg.lastWrite = fi.ModTime()
		if i > 0 {
			prev := l.segs[i-1]
			if first != prev.last+1 {
				return fmt.Errorf("%w: %s offset 0: segment starts at LSN %d but the previous segment %s ends at LSN %d (missing or extra entries between them)",
					ErrCorrupt, path, first, prev.path, prev.last)
			}
		}
		bad, err := scanSegment(seg, fi.Size(), st)
		if err != nil {
			return err
		}
		if bad == nil {
			if keep := l.opts.PageCacheBytes; cacheReleaseSupported && keep >= 0 && i < len(firsts)-1 && after[i] >= keep {
				releaseCache(f, 0, 0)
				seg.released = seg.size
			}
			continue
		}
		if i < len(firsts)-1 {
			return fmt.Errorf("%w: %s offset %d: %s in a sealed segment (LSN %d expected there)",
				ErrCorrupt, path, bad.off, bad.reason, seg.last+1)
		}
		if zero, err := zeroFrom(f, bad.off, fi.Size()); err != nil {
			return fmt.Errorf("wal: read %s: %w", path, err)
		} else if zero {
			// Space zero-filled ahead of the log (Options.PreallocateBytes),
			// left by a crash or a stop before the segment was sealed.
			if err := f.Truncate(bad.off); err != nil {
				return fmt.Errorf("wal: cut preallocated space of %s at offset %d: %w", path, bad.off, err)
			}
			if err := f.Sync(); err != nil {
				return fmt.Errorf("wal: fsync %s: %w", path, err)
			}
			l.logger.Info("removed zero-filled space after the last entry (preallocated, it holds no entries)", "file", path, "offset", bad.off, "bytes", fi.Size()-bad.off)
			continue
		}
		off, lsn, valid, err := findValidFrame(f, bad.off+1, fi.Size(), seg.last+1)
		if err != nil {
			return fmt.Errorf("wal: read %s: %w", path, err)
		}
		if valid {
			// Entries follow: only a hole in data that no fsync covered
			// (doc.go, Recovery) is a torn tail, anything else is corruption.
			if hole, err := neverWrittenAt(f, bad.off, fi.Size()); err != nil {
				return fmt.Errorf("wal: read %s: %w", path, err)
			} else if !hole {
				return fmt.Errorf("%w: %s offset %d: %s (LSN %d expected), but a valid entry with LSN %d follows at offset %d; refusing to drop it",
					ErrCorrupt, path, bad.off, bad.reason, seg.last+1, lsn, off)
			}
		}
		if err := f.Truncate(bad.off); err != nil {
			return fmt.Errorf("wal: truncate torn tail of %s at offset %d: %w", path, bad.off, err)
		}
		if err := f.Sync(); err != nil {
			return fmt.Errorf("wal: fsync %s: %w", path, err)
		}
		if valid {
			l.logger.Warn("truncated WAL segment at a hole that no fsync covered (a power failure kept later writes but not this one; what follows was never acknowledged under the every-batch fsync policy)",
				"file", path, "offset", bad.off, "dropped_bytes", fi.Size()-bad.off, "last_lsn", seg.last,
				"next_valid_lsn", lsn, "next_valid_offset", off)
			continue
		}
		l.logger.Warn("truncated torn tail of WAL segment (an append was cut short by a crash; it was never acknowledged as durable)",
			"file", path, "offset", bad.off, "dropped_bytes", fi.Size()-bad.off, "reason", bad.reason, "last_lsn", seg.last)
	}
	active := l.segs[len(l.segs)-1]
	l.lastLSN = active.last
	// Sealed segments were fsynced when they were rolled; the last one may
	// hold data written by a process that crashed before fsync (it is in the
	// page cache), so fsync it before calling anything durable.
	if err := active.f.Sync(); err != nil {
		return fmt.Errorf("wal: fsync %s: %w", active.path, err)
	}
	l.syncedLSN, l.durableLSN = l.lastLSN, l.lastLSN

	l.epochs = reconcileEpochs(persisted, l.segs[0].first, st.starts)
	if !found || !equalEpochs(l.epochs, persisted) {
		if found {
			l.logger.Warn("epoch history did not match the WAL entries; rewrote it from the entries",
				"file", filepath.Join(l.dir, epochsFile), "was", fmt.Sprint(persisted), "now", fmt.Sprint(l.epochs))
		}
		if err := writeEpochs(l.dir, l.epochs); err != nil {
			return err
		}
	}
	l.logger.Info("opened WAL", "dir", l.dir, "segments", len(l.segs),
		"first_lsn", l.segs[0].first, "last_lsn", l.lastLSN, "epochs", len(l.epochs))
	return nil
}

func (l *Log) activeLocked() *segment { return l.segs[len(l.segs)-1] }

func (l *Log) firstLSNLocked() uint64 { return l.segs[0].first }

// writableLocked returns why the log cannot take writes, if it cannot.
func (l *Log) writableLocked() error {
	if l.closed {
		return ErrClosed
	}
	return l.failErr
}

// setDurableLocked moves DurableLSN and wakes everyone waiting on Durable().
func (l *Log) setDurableLocked(v uint64) {
	if v == l.durableLSN {
		return
	}
	l.durableLSN = v
	close(l.durCh)
	l.durCh = make(chan struct{})
}

// markSyncedLocked records that an fsync covered every LSN up to v.
func (l *Log) markSyncedLocked(v uint64) {
	if v > l.syncedLSN {
		l.syncedLSN = v
	}
	if l.opts.Sync == SyncEveryBatch && l.syncedLSN > l.durableLSN {
		l.setDurableLocked(l.syncedLSN)
	}
}

// failLocked makes the log refuse further writes after an I/O error that
// left its state uncertain (a failed fsync may have dropped dirty pages).
func (l *Log) failLocked(err error) {
	if l.failErr == nil {
		l.failErr = err
		l.logger.Error("WAL refuses further writes until the broker restarts and recovers it", "error", err)
		l.setWriteErrLocked(err)
		close(l.durCh) // wake waiters so they see the error
		l.durCh = make(chan struct{})
	}
}

// fsyncSegment fsyncs seg's file, only its data and size (fdatasync(2))
// when dataOnly is set, holding syncMu. Linux reports a writeback error to
// one fsync per open file only (errseq): an fsync after a failed one
// returns 0 although the pages the failure dropped never reached the
// disk. So the first failure is kept, and every later fsync fails with it
// without running; an fsync cannot run concurrently with a failing one
// either. Callers fail the log on any error except one wrapping
// os.ErrClosed from a segment that was deleted meanwhile (its file was
// closed: no fsync ran).
func (l *Log) fsyncSegment(seg *segment, dataOnly bool) error {
	l.syncMu.Lock()
	defer l.syncMu.Unlock()
	if l.syncErr != nil {
		return fmt.Errorf("wal: fsync %s not attempted, an earlier fsync failed: %w", seg.path, l.syncErr)
	}
	fsync := seg.f.Sync
	if dataOnly {
		fsync = func() error { return syncData(seg.f) }
	}
	var err error
	if l.fsyncHook != nil {
		err = l.fsyncHook(seg.path, fsync)
	} else {
		err = fsync()
	}
	if err == nil || errors.Is(err, os.ErrClosed) {
		return err
	}
	l.syncErr = fmt.Errorf("wal: fsync %s: %w", seg.path, err)
	return l.syncErr
}

// fsyncFailedLocked handles the error of an fsyncSegment of seg that ran
// without Log.mu (syncer, preallocator): it fails the log and returns
// true, unless the file had been closed because seg was deleted (no fsync
// ran), or a Reset has since deleted every file the failure concerned.
func (l *Log) fsyncFailedLocked(seg *segment, err error) bool {
	if errors.Is(err, os.ErrClosed) && (seg.removed || l.closed) {
		return false
	}
	l.syncMu.Lock()
	cleared := l.syncErr == nil
	l.syncMu.Unlock()
	if cleared && seg.removed {
		return false
	}
	l.failLocked(err)
	return true
}

// Append writes an entry with the next LSN (leader path) and returns its
// position. The entry is visible to ReadAt when Append returns and to
// Readers once it is durable (WaitDurable).
func (l *Log) Append(epoch uint32, typ EntryType, payload []byte) (Pos, error) {
	return l.AppendParts(epoch, typ, payload)
}

// AppendParts is Append of a payload given in pieces (for example a small
// header and a large record batch straight from the request): the entry's
// payload is their concatenation, and they are written with one vectored
// write, without first being copied together.
func (l *Log) AppendParts(epoch uint32, typ EntryType, parts ...[]byte) (Pos, error) {
	return l.AppendPartsTail(epoch, typ, 0, 0, parts...)
}

// AppendPartsTail is AppendParts for a payload whose last tailLen bytes
// the caller has checksummed already: tailCRC is their CRC-32C
// (Castagnoli). The broker passes a Kafka record batch's own CRC, which
// covers the batch from its byte 21 on and which it verified when the
// request arrived, so the log reads only the other bytes to checksum the
// entry. A tailCRC that does not match the bytes makes an entry that every
// reader refuses as corrupt: pass only a CRC verified against them.
func (l *Log) AppendPartsTail(epoch uint32, typ EntryType, tailLen int, tailCRC uint32, parts ...[]byte) (Pos, error) {
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	if n > l.opts.MaxEntryBytes {
		return Pos{}, fmt.Errorf("%w: payload of %d bytes, limit %d", ErrTooLarge, n, l.opts.MaxEntryBytes)
	}
	if tailLen < 0 || tailLen > n {
		return Pos{}, fmt.Errorf("wal: a checksummed tail of %d bytes in a payload of %d", tailLen, n)
	}
	// Checksummed before the lock: the LSN, which the frame's CRC also
	// covers, is combined in under it.
	crc := payloadCRC(parts, n, tailLen, tailCRC)
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.writableLocked(); err != nil {
		return Pos{}, err
	}
	return l.appendLocked(l.lastLSN+1, epoch, typ, parts, n, crc)
}

// AppendEntry writes an entry received from the leader unchanged (follower
// path). e.LSN must be LastLSN()+1, else ErrGap. An entry that carries a
// checksum (e.HasCRC) whose payload does not match it is refused with
// ErrDamaged before anything is written: the one pass over the payload
// that the frame's CRC needs anyway also checks it.
func (l *Log) AppendEntry(e Entry) (Pos, error) {
	if len(e.Payload) > l.opts.MaxEntryBytes {
		return Pos{}, fmt.Errorf("%w: LSN %d: payload of %d bytes, limit %d", ErrTooLarge, e.LSN, len(e.Payload), l.opts.MaxEntryBytes)
	}
	crc := crc32.Checksum(e.Payload, castagnoli)
	if e.HasCRC && crc != e.PayloadCRC {
		return Pos{}, fmt.Errorf("%w: LSN %d: %d payload bytes have CRC-32C %08x, the sender read %08x",
			ErrDamaged, e.LSN, len(e.Payload), crc, e.PayloadCRC)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.writableLocked(); err != nil {
		return Pos{}, err
	}
	if e.LSN != l.lastLSN+1 {
		return Pos{}, fmt.Errorf("%w: got LSN %d, the log expects %d", ErrGap, e.LSN, l.lastLSN+1)
	}
	return l.appendLocked(e.LSN, e.Epoch, e.Type, [][]byte{e.Payload}, len(e.Payload), crc)
}

// appendLocked writes the entry whose payload is the concatenation of
// parts, size bytes in all, with the CRC-32C crc, and records in the
// write state whether that worked (an entry refused for its epoch says
// nothing about the storage).
func (l *Log) appendLocked(lsn uint64, epoch uint32, typ EntryType, parts [][]byte, size int, crc uint32) (Pos, error) {
	pos, err := l.writeEntryLocked(lsn, epoch, typ, parts, size, crc)
	if err == nil || !errors.Is(err, ErrStaleEpoch) {
		l.setWriteErrLocked(err)
	}
	return pos, err
}

// WriteState says whether the log's storage takes writes.
type WriteState struct {
	// Err is the error of the newest append when it failed to write (a
	// full disk, an I/O error; not an entry refused for what it is), or
	// the failure that makes the log refuse every write until a restart.
	// Nil once an append succeeds again.
	Err error
	// Since is when appends began failing (zero while Err is nil).
	Since time.Time
	// FirstLSN is the oldest LSN on disk (as FirstLSN returns it).
	FirstLSN uint64
}

// WriteState returns the log's write state and a channel that is closed
// when appends start or stop failing (the newest error of a failing log
// replaces the one before without closing it), or when retention deletes
// segments (FirstLSN moves). A broker whose appends fail reports it: a
// leader that cannot write should hand over.
func (l *Log) WriteState() (WriteState, <-chan struct{}) {
	l.mu.Lock()
	defer l.mu.Unlock()
	st := l.writeState
	st.FirstLSN = l.firstLSNLocked()
	return st, l.writeCh
}

// setWriteErrLocked records the outcome of a write: err nil after one that
// worked (unless the log has failed for good).
func (l *Log) setWriteErrLocked(err error) {
	if err == nil {
		err = l.failErr
	}
	if err == nil && l.writeState.Err == nil {
		return // the usual case: nothing changes
	}
	st := WriteState{Err: err, Since: l.writeState.Since}
	switch {
	case err == nil:
		st.Since = time.Time{}
		l.logger.Info("WAL writes work again", "failing_for", time.Since(l.writeState.Since).Round(time.Millisecond))
	case l.writeState.Err == nil:
		st.Since = time.Now()
		if err != l.failErr { // failLocked said it already
			l.logger.Error("WAL write failed; appends fail until the storage takes writes again", "error", err)
		}
	default:
		// Still failing: keep the newest error, without a change to
		// report.
		l.writeState.Err = err
		return
	}
	l.writeState = st
	close(l.writeCh)
	l.writeCh = make(chan struct{})
}

func (l *Log) writeEntryLocked(lsn uint64, epoch uint32, typ EntryType, parts [][]byte, size int, crc uint32) (Pos, error) {
	added, err := l.noteEpochLocked(epoch, lsn)
	if err != nil {
		return Pos{}, err
	}
	n := frameSize(size)
	if seg := l.activeLocked(); !seg.empty() && seg.size+int64(n) > l.opts.SegmentBytes {
		if err := l.rollLocked(); err != nil {
			if added {
				l.epochs = l.epochs[:len(l.epochs)-1]
			}
			return Pos{}, err
		}
	}
	seg := l.activeLocked()
	hdr := encodeFrameHeader(lsn, epoch, typ, size, crc)
	// One pwritev(2) of header and payload: no user-space buffering, so
	// ReadAt and readers see the entry as soon as Append returns.
	if err := writeFrameAt(seg.f, seg.size, hdr[:], parts); err != nil {
		if added {
			l.epochs = l.epochs[:len(l.epochs)-1]
		}
		werr := fmt.Errorf("wal: write LSN %d to %s at offset %d: %w", lsn, seg.path, seg.size, err)
		// Cut off whatever part of the frame reached the file (and the
		// zero-filled space after it, which the preallocator redoes).
		if terr := seg.f.Truncate(seg.size); terr != nil {
			l.failLocked(fmt.Errorf("%w; then truncating back failed: %v", werr, terr))
		}
		seg.alloc = seg.size
		return Pos{}, werr
	}
	pos := Pos{LSN: lsn, Segment: seg.first, Offset: seg.size}
	seg.addIndexLocked(lsn, seg.size)
	seg.size += int64(n)
	seg.last = lsn
	seg.lastWrite = time.Now()
	l.lastLSN = lsn
	l.appends.Add(1)
	l.bytesWritten.Add(uint64(n))
	if l.opts.PreallocateBytes > 0 && seg.alloc-seg.size < l.opts.PreallocateBytes/2 {
		select {
		case l.zKick <- struct{}{}:
		default:
		}
	}
	if l.wbSeg != seg || seg.size-l.wbOff >= writebackChunk {
		select {
		case l.wbKick <- struct{}{}:
		default:
		}
	}
	if l.opts.Sync == SyncEveryBatch {
		select {
		case l.kick <- struct{}{}:
		default:
		}
	} else {
		l.setDurableLocked(lsn)
	}
	return pos, nil
}

// noteEpochLocked checks an entry's epoch against the history and records a
// new EpochStart (persisted before the entry is written) when it is higher.
func (l *Log) noteEpochLocked(epoch uint32, lsn uint64) (bool, error) {
	if n := len(l.epochs); n > 0 {
		last := l.epochs[n-1]
		if epoch < last.Epoch {
			return false, fmt.Errorf("%w: LSN %d has epoch %d, but epoch %d started at LSN %d", ErrStaleEpoch, lsn, epoch, last.Epoch, last.StartLSN)
		}
		if epoch == last.Epoch {
			return false, nil
		}
	}
	hist := append(slices.Clip(l.epochs), EpochStart{Epoch: epoch, StartLSN: lsn})
	if err := writeEpochs(l.dir, hist); err != nil {
		return false, err
	}
	l.epochs = hist
	l.logger.Info("new epoch", "epoch", epoch, "start_lsn", lsn)
	return true, nil
}

// rollLocked seals the active segment (fsync) and starts a new one.
func (l *Log) rollLocked() error {
	old := l.activeLocked()
	if old.alloc > old.size {
		// A sealed segment ends at its last entry.
		if err := old.f.Truncate(old.size); err != nil {
			err = fmt.Errorf("wal: cut preallocated space of %s at offset %d: %w", old.path, old.size, err)
			l.failLocked(err)
			return err
		}
		old.alloc = old.size
	}
	if err := l.fsyncSegment(old, false); err != nil {
		l.failLocked(err)
		return err
	}
	l.fsyncs.Add(1)
	l.markSyncedLocked(old.last)
	seg, err := l.createSegmentLocked(l.lastLSN + 1)
	if err != nil {
		return err
	}
	l.segs = append(l.segs, seg)
	l.rolls.Add(1)
	l.logger.Debug("rolled to new segment", "file", seg.path, "sealed", old.path, "sealed_bytes", old.size)
	return nil
}

// writebackChunk is how much newly written data makes the writeback
// goroutine start the device write.
const writebackChunk = 256 << 10

// writeback starts the device write of appended data as soon as a chunk
// of it is in the page cache, instead of leaving it dirty until the next
// fsync (or the kernel's own flush a few seconds later). The disk then
// works while the broker is still receiving the rest of a group commit,
// so that fsync only waits for the tail: throughput approaches the
// device's, and fsync latency under load drops. The same idea as
// RocksDB's bytes_per_sync and PostgreSQL's wal_writer_flush_after.
func (l *Log) writeback() {
	defer l.wg.Done()
	for {
		select {
		case <-l.stop:
			return
		case <-l.wbKick:
		}
		l.mu.Lock()
		if l.closed || len(l.segs) == 0 {
			l.mu.Unlock()
			return
		}
		seg := l.activeLocked()
		from := l.wbOff
		if l.wbSeg != seg || from > seg.size {
			from = 0
		}
		to := seg.size
		l.wbSeg, l.wbOff = seg, to
		l.mu.Unlock()
		if to > from {
			startWriteback(seg.f, from, to-from)
		}
	}
}

// preallocInterval bounds how often the preallocator zero-fills: at full
// speed the log outruns it (appends then extend the file as without
// preallocation) and zero-filling costs at most PreallocateBytes per
// interval of extra writes.
const preallocInterval = 50 * time.Millisecond

// preallocator keeps the active segment zero-filled PreallocateBytes ahead
// of the last entry. The zeros are written under the lock and only beyond
// the last entry, so they never overwrite one; the fsync that makes the new
// file size durable runs outside it. Recovery removes a zero-filled tail
// (doc.go).
func (l *Log) preallocator() {
	defer l.wg.Done()
	var zeros []byte
	var last time.Time
	for {
		select {
		case <-l.stop:
			return
		case <-l.zKick:
		}
		if d := preallocInterval - time.Since(last); d > 0 {
			select {
			case <-l.stop:
				return
			case <-time.After(d):
			}
		}
		last = time.Now()
		l.mu.Lock()
		if l.closed || l.failErr != nil || len(l.segs) == 0 {
			l.mu.Unlock()
			continue
		}
		seg := l.activeLocked()
		from := max(seg.alloc, seg.size)
		to := seg.size + l.opts.PreallocateBytes
		if to-from < l.opts.PreallocateBytes/2 || to > l.opts.SegmentBytes {
			l.mu.Unlock()
			continue
		}
		if int64(len(zeros)) < to-from {
			zeros = make([]byte, to-from)
		}
		_, err := seg.f.WriteAt(zeros[:to-from], from)
		if err == nil {
			seg.alloc = to
		} else {
			// Nothing was promised about this space; cut it off again.
			_ = seg.f.Truncate(max(seg.alloc, seg.size))
			l.logger.Warn("zero-filling WAL space ahead failed", "file", seg.path, "offset", from, "error", err)
		}
		l.mu.Unlock()
		if err != nil {
			continue
		}
		// This fsync writes back appended entries too: its failure is the
		// log's (fsyncSegment).
		if err := l.fsyncSegment(seg, true); err != nil {
			l.mu.Lock()
			l.fsyncFailedLocked(seg, err)
			l.mu.Unlock()
		}
	}
}

// syncer is the group-commit goroutine: one fsync covers every entry
// written before it started, and releases all their waiters at once.
func (l *Log) syncer() {
	defer l.wg.Done()
	var tick <-chan time.Time
	if l.opts.Sync == SyncInterval {
		t := time.NewTicker(l.opts.SyncInterval)
		defer t.Stop()
		tick = t.C
	}
	kick := l.kick
	if l.opts.Sync != SyncEveryBatch {
		kick = nil
	}
	for {
		select {
		case <-l.stop:
			return
		case <-kick:
		case <-tick:
		}
		l.mu.Lock()
		hook := l.syncHook
		l.mu.Unlock()
		if hook != nil {
			hook()
		}
		l.syncOnce()
	}
}

// syncOnce fsyncs the active segment outside the lock, then advances the
// synced (and, under SyncEveryBatch, durable) LSN to what was written
// before the fsync began.
func (l *Log) syncOnce() {
	l.mu.Lock()
	if l.closed || l.failErr != nil || l.lastLSN <= l.syncedLSN {
		l.mu.Unlock()
		return
	}
	target, seg, gen, size := l.lastLSN, l.activeLocked(), l.gen, l.activeLocked().size
	l.mu.Unlock()

	start := time.Now()
	err := l.fsyncSegment(seg, true)
	l.fsyncs.Add(1)
	if l.opts.OnSync != nil {
		l.opts.OnSync(time.Since(start))
	}

	l.mu.Lock()
	// A failure counts whatever happened meanwhile: a roll or Truncate
	// fsyncing the same file after it would have got 0 (see fsyncSegment).
	if err != nil && l.fsyncFailedLocked(seg, err) {
		l.mu.Unlock()
		return
	}
	if l.closed || l.gen != gen {
		// Truncate/Reset changed the log meanwhile; whatever is now there
		// gets the next cycle.
		if !l.closed {
			select {
			case l.kick <- struct{}{}:
			default:
			}
		}
		l.mu.Unlock()
		return
	}
	// If seg was sealed meanwhile (and maybe deleted by retention, err
	// then saying that its file is closed), the roll fsynced it up to
	// target.
	l.markSyncedLocked(target)
	drops := l.cacheDropsLocked(seg, size)
	l.mu.Unlock()
	for _, d := range drops {
		releaseCache(d.f, d.off, d.n)
		l.cacheDrops.Add(1)
	}
}

// releaseChunk is the unit in which page cache is released: the largest
// page-cache folio on x86-64 and arm64 (2 MiB), so that a released range
// never ends inside a large folio, which the kernel would keep whole.
const releaseChunk = 2 << 20

func chunkDown(off int64) int64 { return off - off%releaseChunk }

// releaseRead is called after a read of [off, end) of s, with s.released
// and s.size as they were under the lock. Data behind the page-cache window
// (a consumer or follower far behind, start-up replay, a checksum) is not
// kept in memory: each chunk is released once a read has passed its end,
// and a segment released whole loses its tail too when a read reaches it.
func releaseRead(s *segment, off, end, released, size int64) {
	if off >= released {
		return
	}
	from := chunkDown(off)
	if released >= size && end >= size {
		releaseCache(s.f, from, 0)
		return
	}
	if to := chunkDown(min(released, end)); to > from {
		releaseCache(s.f, from, to-from)
	}
}

// cacheDrop is a range of a segment file whose page cache may be released
// (n == 0: to the end of the file).
type cacheDrop struct {
	f      *os.File
	off, n int64
}

// cacheDropsLocked returns the ranges to release now that everything up to
// offset synced of seg is on the device (Options.PageCacheBytes): the data
// more than PageCacheBytes behind that point, in this and older segments,
// minus what was released before. Every segment before seg is sealed, so
// fsynced whole. A released range is advice only: should a Truncate or a
// roll race with it, the kernel drops clean pages and reads them back when
// they are needed.
func (l *Log) cacheDropsLocked(seg *segment, synced int64) []cacheDrop {
	keep := l.opts.PageCacheBytes
	if keep < 0 || !cacheReleaseSupported {
		return nil
	}
	i := len(l.segs) - 1
	for i >= 0 && l.segs[i] != seg {
		i-- // seg was sealed meanwhile: start there
	}
	var drops []cacheDrop
	for ; i >= 0; i-- {
		s := l.segs[i]
		end, sealed := s.size, i < len(l.segs)-1
		if !sealed {
			end = synced
		}
		if keep >= end {
			keep -= end // all of it is in the window
			continue
		}
		out := end - keep // bytes at the start of s behind the window
		keep = 0
		switch {
		case s.released >= s.size:
			// Released whole before, and so was every older segment.
			return drops
		case sealed && out == end:
			drops = append(drops, cacheDrop{f: s.f, off: s.released})
			s.released = s.size
		default:
			if upTo := chunkDown(out); upTo > s.released {
				drops = append(drops, cacheDrop{f: s.f, off: s.released, n: upTo - s.released})
				s.released = upTo
			}
		}
	}
	return drops
}

// WaitDurable returns when lsn is durable under the sync policy (group
// commit: the first fsync that starts after lsn was written releases it,
// together with everything else it covers).
func (l *Log) WaitDurable(ctx context.Context, lsn uint64) error {
	for {
		l.mu.Lock()
		if l.durableLSN >= lsn {
			l.mu.Unlock()
			return nil
		}
		if err := l.writableLocked(); err != nil {
			l.mu.Unlock()
			return err
		}
		ch := l.durCh
		l.mu.Unlock()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ch:
		}
	}
}

// MaxEntryBytes is the largest payload an append takes (Options.MaxEntryBytes).
func (l *Log) MaxEntryBytes() int { return l.opts.MaxEntryBytes }

// DurableLSN is the highest LSN durable under the policy: fsynced for
// SyncEveryBatch, written for SyncInterval and SyncNone.
func (l *Log) DurableLSN() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.durableLSN
}

// SyncedLSN is the highest LSN covered by a completed fsync, whatever the
// policy (the "flushed" position of a replica).
func (l *Log) SyncedLSN() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.syncedLSN
}

// Durable returns a channel that is closed the next time DurableLSN changes
// (and when the log closes or fails). Call it again for the next change, and
// take it before reading DurableLSN or calling Reader.Next so that no change
// is missed.
func (l *Log) Durable() <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.durCh
}

// FirstLSN is the oldest LSN still on disk (LastLSN()+1 when empty).
func (l *Log) FirstLSN() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.firstLSNLocked()
}

// LastLSN is the LSN of the last entry written, 0 when the log never had one.
func (l *Log) LastLSN() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lastLSN
}

// Stats returns the log's counters.
func (l *Log) Stats() Stats {
	return Stats{
		Appends:       l.appends.Load(),
		BytesWritten:  l.bytesWritten.Load(),
		Fsyncs:        l.fsyncs.Load(),
		Rolls:         l.rolls.Load(),
		CacheReleases: l.cacheDrops.Load(),
	}
}

// EpochHistory returns a copy of the epoch history, oldest first.
func (l *Log) EpochHistory() []EpochStart {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.epochs)
}

// SetEpoch records that epoch starts at startLSN, which must be
// LastLSN()+1, before any entry of it is written (a new leader). A lower
// epoch than the last recorded fails with ErrStaleEpoch; the same epoch is a
// no-op. A start recorded this way and never followed by an entry is dropped
// at the next Open (as Kafka's leader-epoch cache does).
func (l *Log) SetEpoch(epoch uint32, startLSN uint64) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.writableLocked(); err != nil {
		return err
	}
	if startLSN != l.lastLSN+1 {
		return fmt.Errorf("%w: epoch %d must start at the next LSN %d, not %d", ErrGap, epoch, l.lastLSN+1, startLSN)
	}
	_, err := l.noteEpochLocked(epoch, startLSN)
	return err
}

// Segments describes the segment files, oldest first; the last is active.
func (l *Log) Segments() []SegmentInfo {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]SegmentInfo, len(l.segs))
	for i, s := range l.segs {
		out[i] = SegmentInfo{FirstLSN: s.first, LastLSN: s.last, Bytes: s.size, LastWrite: s.lastWrite, Path: s.path}
	}
	return out
}

// SegmentCount is the number of segment files the log holds open (one
// file descriptor each).
func (l *Log) SegmentCount() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.segs)
}

// segmentForLocked returns the index of the segment holding lsn, or -1.
func (l *Log) segmentForLocked(lsn uint64) int {
	i := sort.Search(len(l.segs), func(i int) bool { return l.segs[i].first > lsn }) - 1
	if i < 0 || lsn > l.segs[i].last {
		return -1
	}
	return i
}

// ReadAt reads the entry whose frame starts at p (the Fetch path). It reads
// any written entry, durable or not. The entry's CRC and LSN are verified.
func (l *Log) ReadAt(p Pos) (Entry, error) {
	var e Entry
	err := l.readAtPos(p, func(seg *segment, limit int64) (int64, error) {
		var err error
		e, err = readEntryAt(seg, p.Offset, limit)
		if err == nil && e.LSN != p.LSN {
			err = fmt.Errorf("%w: %s offset %d holds LSN %d, not %d", ErrCorrupt, seg.path, p.Offset, e.LSN, p.LSN)
		}
		return frameHeaderSize + int64(len(e.Payload)), err
	})
	if err != nil {
		return Entry{}, err
	}
	return e, nil
}

// ReadRange appends bytes [off, off+n) of the payload of the entry whose
// frame starts at p to dst and returns the extended slice (the Fetch path:
// one stored RecordBatch inside a WAL entry). The range is read straight
// into dst, with no intermediate buffer, and the whole frame's CRC and LSN
// are still verified; on error dst is returned unchanged.
func (l *Log) ReadRange(p Pos, off, n int, dst []byte) ([]byte, error) {
	if off < 0 || n < 0 {
		return dst, fmt.Errorf("%w: range [%d, %d+%d) of %+v", ErrNotFound, off, off, n, p)
	}
	out := dst
	err := l.readAtPos(p, func(seg *segment, limit int64) (int64, error) {
		var err error
		var read int64
		out, read, err = readRangeAt(seg, p, off, n, limit, dst)
		return read, err
	})
	if err != nil {
		return dst, err
	}
	return out, nil
}

// readAtPos checks that p names a written frame, runs read on its segment
// outside the lock (read returns how many bytes from p.Offset it read, for
// the page-cache release), and reports a truncation or retention that
// raced with the read.
func (l *Log) readAtPos(p Pos, read func(seg *segment, limit int64) (int64, error)) error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return ErrClosed
	}
	i := sort.Search(len(l.segs), func(i int) bool { return l.segs[i].first >= p.Segment })
	if i == len(l.segs) || l.segs[i].first != p.Segment || p.LSN < p.Segment || p.LSN > l.segs[i].last ||
		p.Offset < 0 || p.Offset+frameHeaderSize > l.segs[i].size {
		first := l.firstLSNLocked()
		l.mu.Unlock()
		if p.LSN < first {
			return fmt.Errorf("%w: LSN %d (first is %d)", ErrCompacted, p.LSN, first)
		}
		return fmt.Errorf("%w: %+v", ErrNotFound, p)
	}
	seg, limit, gen, released := l.segs[i], l.segs[i].size, l.gen, l.segs[i].released
	l.mu.Unlock()

	n, err := read(seg, limit)
	releaseRead(seg, p.Offset, p.Offset+n, released, limit)
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.closed:
		return ErrClosed
	case l.gen != gen && p.LSN > l.lastLSN:
		return fmt.Errorf("%w: LSN %d (log now ends at %d)", ErrTruncated, p.LSN, l.lastLSN)
	case seg.removed && p.LSN < l.firstLSNLocked():
		return fmt.Errorf("%w: LSN %d (first is %d)", ErrCompacted, p.LSN, l.firstLSNLocked())
	}
	return err
}

// readRangeAt reads the frame at p.Offset of seg as three pieces: the
// header with the payload bytes before the range (one pread into a small
// buffer), the range itself (one pread into dst) and whatever follows it
// (usually nothing), and checks the CRC over all three. It returns the
// extended dst and the frame's size.
func readRangeAt(seg *segment, p Pos, off, n int, limit int64, dst []byte) ([]byte, int64, error) {
	var small [frameHeaderSize + 256]byte
	var head []byte
	if frameHeaderSize+off <= len(small) {
		head = small[:frameHeaderSize+off]
	} else {
		head = make([]byte, frameHeaderSize+off)
	}
	if p.Offset+int64(len(head)) > limit {
		return dst, 0, fmt.Errorf("%w: payload offset %d of the frame at %s offset %d is past the written end %d",
			ErrNotFound, off, seg.path, p.Offset, limit)
	}
	if _, err := seg.f.ReadAt(head, p.Offset); err != nil {
		return dst, 0, fmt.Errorf("wal: read %s at offset %d: %w", seg.path, p.Offset, err)
	}
	h, err := parseHeader(head, maxDecodeEntry)
	if err != nil {
		return dst, 0, fmt.Errorf("%w: %s offset %d: %v", ErrCorrupt, seg.path, p.Offset, err)
	}
	total := h.total()
	if p.Offset+total > limit {
		return dst, 0, fmt.Errorf("%w: %s offset %d: frame of %d bytes runs past the written end %d", ErrCorrupt, seg.path, p.Offset, total, limit)
	}
	if h.lsn != p.LSN {
		return dst, 0, fmt.Errorf("%w: %s offset %d holds LSN %d, not %d", ErrCorrupt, seg.path, p.Offset, h.lsn, p.LSN)
	}
	payload := int64(h.length) - bodyFixedSize
	if int64(off)+int64(n) > payload {
		return dst, 0, fmt.Errorf("%w: range [%d, %d) of LSN %d beyond its %d-byte payload (%s offset %d)",
			ErrNotFound, off, off+n, p.LSN, payload, seg.path, p.Offset)
	}
	out := slices.Grow(dst, n)[:len(dst)+n]
	body := out[len(dst):]
	if _, err := seg.f.ReadAt(body, p.Offset+int64(len(head))); err != nil {
		return dst, 0, fmt.Errorf("wal: read %s at offset %d: %w", seg.path, p.Offset+int64(len(head)), err)
	}
	crc := crc32.Update(crc32.Checksum(head[lenCRCSize:], castagnoli), castagnoli, body)
	if rest := payload - int64(off) - int64(n); rest > 0 {
		tail := make([]byte, rest)
		if _, err := seg.f.ReadAt(tail, p.Offset+int64(len(head))+int64(n)); err != nil {
			return dst, 0, fmt.Errorf("wal: read %s at offset %d: %w", seg.path, p.Offset+int64(len(head))+int64(n), err)
		}
		crc = crc32.Update(crc, castagnoli, tail)
	}
	if crc != h.crc {
		return dst, 0, fmt.Errorf("%w: %s offset %d: %v", ErrCorrupt, seg.path, p.Offset, errBadCRC)
	}
	return out, total, nil
}

// readEntryAt reads and verifies the frame at off (two preads: header, rest).
func readEntryAt(seg *segment, off, limit int64) (Entry, error) {
	var hdr [frameHeaderSize]byte
	if _, err := seg.f.ReadAt(hdr[:], off); err != nil {
		return Entry{}, fmt.Errorf("wal: read %s at offset %d: %w", seg.path, off, err)
	}
	h, err := parseHeader(hdr[:], maxDecodeEntry)
	if err != nil {
		return Entry{}, fmt.Errorf("%w: %s offset %d: %v", ErrCorrupt, seg.path, off, err)
	}
	if off+h.total() > limit {
		return Entry{}, fmt.Errorf("%w: %s offset %d: frame of %d bytes runs past the written end %d", ErrCorrupt, seg.path, off, h.total(), limit)
	}
	frame := make([]byte, h.total())
	copy(frame, hdr[:])
	if _, err := seg.f.ReadAt(frame[frameHeaderSize:], off+frameHeaderSize); err != nil {
		return Entry{}, fmt.Errorf("wal: read %s at offset %d: %w", seg.path, off, err)
	}
	e, _, err := decodeFrame(frame, maxDecodeEntry)
	if err != nil {
		return Entry{}, fmt.Errorf("%w: %s offset %d: %v", ErrCorrupt, seg.path, off, err)
	}
	return e, nil
}

// Truncate drops every entry with LSN > after (divergence repair), and the
// epoch starts beyond it. Readers that had returned dropped entries fail
// with ErrTruncated. Truncating below FirstLSN()-1 fails with ErrCompacted
// (use Reset).
func (l *Log) Truncate(after uint64) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return ErrClosed
	}
	if after < l.lastLSN {
		if after+1 < l.firstLSNLocked() {
			return fmt.Errorf("%w: cannot truncate after LSN %d: the log starts at %d; use Reset", ErrCompacted, after, l.firstLSNLocked())
		}
		if err := l.truncateLocked(after); err != nil {
			l.failLocked(err)
			return err
		}
	}
	return l.dropEpochsAfterLocked(after)
}

func (l *Log) truncateLocked(after uint64) error {
	idx := l.segmentForLocked(after + 1)
	if idx < 0 {
		return fmt.Errorf("wal: truncate: no segment holds LSN %d", after+1)
	}
	seg := l.segs[idx]
	off, err := seg.locateLocked(after + 1)
	if err != nil {
		return err
	}
	oldLast := l.lastLSN
	l.gen++
	// Newest first, so that a crash at any step leaves a valid, shorter log.
	for i := len(l.segs) - 1; i > idx; i-- {
		s := l.segs[i]
		if err := os.Remove(s.path); err != nil {
			return fmt.Errorf("wal: truncate: remove %s: %w", s.path, err)
		}
		s.f.Close()
		s.removed = true
		l.segs = l.segs[:i]
		l.lastLSN = l.segs[i-1].last
	}
	if err := syncDir(l.dir); err != nil {
		return err
	}
	if err := seg.f.Truncate(off); err != nil {
		return fmt.Errorf("wal: truncate %s at offset %d: %w", seg.path, off, err)
	}
	if err := l.fsyncSegment(seg, false); err != nil {
		return err
	}
	l.fsyncs.Add(1)
	seg.size, seg.last, seg.alloc = off, after, off
	seg.released = min(seg.released, off)
	seg.trimIndexLocked(off)
	seg.lastWrite = time.Now()
	l.lastLSN = after
	// The fsync above covered the cut segment; earlier ones are sealed.
	l.syncedLSN = after
	l.setDurableLocked(after)
	for r := range l.readers {
		if r.next > after+1 && r.err == nil {
			r.err = fmt.Errorf("%w: the log was truncated after LSN %d, and this reader had returned up to LSN %d", ErrTruncated, after, r.next-1)
		}
	}
	l.logger.Info("truncated WAL", "after_lsn", after, "dropped_entries", oldLast-after, "file", seg.path, "offset", off)
	return nil
}

func (l *Log) dropEpochsAfterLocked(after uint64) error {
	i := len(l.epochs)
	for i > 0 && l.epochs[i-1].StartLSN > after {
		i--
	}
	if i == len(l.epochs) {
		return nil
	}
	hist := slices.Clone(l.epochs[:i])
	if err := writeEpochs(l.dir, hist); err != nil {
		return err
	}
	l.logger.Info("dropped epoch starts after truncation", "after_lsn", after, "dropped", fmt.Sprint(l.epochs[i:]))
	l.epochs = hist
	return nil
}

// Reset wipes every entry and the epoch history; the next entry gets LSN
// next (a follower re-cloning from a leader whose log no longer reaches back
// to it). Readers positioned past next fail with ErrTruncated.
func (l *Log) Reset(next uint64) error {
	if next == 0 {
		return errors.New("wal: Reset(0): LSNs start at 1")
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return ErrClosed
	}
	l.gen++
	// Newest first: a crash in the middle leaves a valid, shorter log.
	for len(l.segs) > 0 {
		// A placeholder left by a failed Reset (below) has no file.
		if s := l.segs[len(l.segs)-1]; !s.removed {
			if err := os.Remove(s.path); err != nil {
				err = fmt.Errorf("wal: reset: remove %s: %w", s.path, err)
				l.failLocked(err)
				return err
			}
			s.f.Close()
			s.removed = true
		}
		l.segs = l.segs[:len(l.segs)-1]
	}
	l.lastLSN = next - 1
	l.syncedLSN = next - 1
	l.setDurableLocked(next - 1)
	seg, err := l.createSegmentLocked(next)
	if err != nil {
		// Keep an in-memory placeholder so that reads see an empty log
		// (every reader stops at DurableLSN = next-1); writes fail until
		// a Reset succeeds.
		l.failLocked(err)
		l.segs = []*segment{{first: next, last: next - 1, removed: true, path: filepath.Join(l.dir, segmentName(next))}}
		return err
	}
	l.segs = []*segment{seg}
	for r := range l.readers {
		if r.next > next && r.err == nil {
			r.err = fmt.Errorf("%w: the log was reset to start at LSN %d, and this reader had returned up to LSN %d", ErrTruncated, next, r.next-1)
		}
	}
	l.epochs = nil
	if err := writeEpochs(l.dir, nil); err != nil {
		l.failLocked(err)
		return err
	}
	// Every file an earlier failure concerned is deleted and closed (an
	// fsync still running on one finished before syncMu was free), so
	// nothing it may have lost is part of the log any more.
	l.syncMu.Lock()
	l.syncErr = nil
	l.syncMu.Unlock()
	l.failErr = nil
	l.setWriteErrLocked(nil)
	l.logger.Info("reset WAL", "next_lsn", next)
	return nil
}

// DeleteSegmentsBefore removes whole sealed segments whose LastLSN < lsn
// (retention), oldest first, never the active segment, and returns how
// many it removed. Readers positioned in them fail with ErrCompacted.
func (l *Log) DeleteSegmentsBefore(lsn uint64) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return 0, ErrClosed
	}
	n := 0
	var err error
	for len(l.segs) > 1 && l.segs[0].last < lsn {
		s := l.segs[0]
		if err = os.Remove(s.path); err != nil {
			err = fmt.Errorf("wal: delete segment %s: %w", s.path, err)
			break
		}
		s.f.Close()
		s.removed = true
		l.segs = l.segs[1:]
		n++
		l.logger.Info("deleted WAL segment", "file", s.path, "first_lsn", s.first, "last_lsn", s.last, "bytes", s.size)
	}
	if n > 0 {
		if serr := syncDir(l.dir); serr != nil && err == nil {
			err = serr
		}
		close(l.writeCh) // FirstLSN moved (WriteState)
		l.writeCh = make(chan struct{})
	}
	return n, err
}

// Checksum returns a rolling checksum of the entries [from, to] (see doc.go:
// FNV-1a 64 over each entry's big-endian lsn, epoch and crc32c). Two logs
// holding the same entries have the same checksum whatever their segment
// sizes. The whole range must be on disk. An empty range (from == to+1)
// gives the FNV offset basis.
func (l *Log) Checksum(from, to uint64) (uint64, error) {
	h := uint64(fnvOffset)
	if from == to+1 {
		return h, nil
	}
	if from > to || from == 0 {
		return 0, fmt.Errorf("wal: checksum: invalid range [%d, %d]", from, to)
	}
	l.mu.Lock()
	first, last := l.firstLSNLocked(), l.lastLSN
	l.mu.Unlock()
	if from < first {
		return 0, fmt.Errorf("%w: checksum range [%d, %d] starts before the first LSN %d", ErrCompacted, from, to, first)
	}
	if to > last {
		return 0, fmt.Errorf("%w: checksum range [%d, %d] ends after the last LSN %d", ErrNotFound, from, to, last)
	}
	r, err := l.newReader(from, true)
	if err != nil {
		return 0, err
	}
	defer r.Close()
	for lsn := from; lsn <= to; lsn++ {
		hdr, err := r.nextFrame()
		if err != nil {
			return 0, fmt.Errorf("wal: checksum at LSN %d: %w", lsn, err)
		}
		h = fnvAdd(h, hdr.lsn, hdr.epoch, hdr.crc)
	}
	return h, nil
}

const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

func fnvAdd(h, lsn uint64, epoch, crc uint32) uint64 {
	var b [16]byte
	for i := 0; i < 8; i++ {
		b[i] = byte(lsn >> (56 - 8*i))
	}
	for i := 0; i < 4; i++ {
		b[8+i] = byte(epoch >> (24 - 8*i))
		b[12+i] = byte(crc >> (24 - 8*i))
	}
	for _, c := range b {
		h ^= uint64(c)
		h *= fnvPrime
	}
	return h
}

// Close fsyncs the active segment, stops the syncer, closes every file and
// releases the directory lock. Waiters and readers get ErrClosed; so does
// every later call.
func (l *Log) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return ErrClosed
	}
	l.closed = true
	l.mu.Unlock()
	close(l.stop)
	l.wg.Wait()

	l.mu.Lock()
	defer l.mu.Unlock()
	var errs []error
	if active := l.activeLocked(); active.f != nil && !active.removed {
		if active.alloc > active.size {
			// Leave no preallocated space behind on a clean stop.
			if err := active.f.Truncate(active.size); err != nil {
				errs = append(errs, fmt.Errorf("wal: cut preallocated space of %s: %w", active.path, err))
			}
			active.alloc = active.size
		}
		if err := l.fsyncSegment(active, false); err != nil {
			errs = append(errs, err)
		} else {
			l.fsyncs.Add(1)
			l.syncedLSN = l.lastLSN
			if l.failErr == nil {
				l.durableLSN = l.lastLSN
			}
		}
	}
	for _, s := range l.segs {
		if s.f != nil && !s.removed {
			if err := s.f.Close(); err != nil {
				errs = append(errs, err)
			}
		}
	}
	// Wake everyone waiting; later Durable() calls get a channel that never
	// closes, so loops that wait on it do not spin on a closed log (their
	// next WAL call returns ErrClosed).
	close(l.durCh)
	l.durCh = make(chan struct{})
	unlockDir(l.lock)
	l.logger.Info("closed WAL", "last_lsn", l.lastLSN)
	return errors.Join(errs...)
}

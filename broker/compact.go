package broker

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
	"github.com/twmb/franz-go/pkg/kbin"

	"github.com/tandem-io/tandem/broker/wal"
)

// Log compaction (Kafka's cleanup.policy=compact).
//
// The WAL is node-wide, so a compacted topic cannot be cleaned in place
// the way Kafka cleans a partition's own segment files. Instead, the
// leader rewrites batches, at two moments:
//   - cleaning (cleanCompacted), as Kafka's log cleaner: once the batches
//     written since a partition's last cleaning make up
//     min.cleanable.dirty.ratio of it (or the oldest of them is older than
//     max.compaction.lag.ms), every batch of the partition that loses
//     records is rewritten; the old batches stay on disk until retention
//     deletes their segment;
//   - before retention deletes WAL segments, every batch of a compacted
//     partition that sits in them is rewritten, changed or not, so that
//     nothing still live is lost with the segment (and the rest of the
//     partition is cleaned as above).
//
// Each rewritten batch is a
// TypeCompactedBatch entry appended at the WAL's end: the same base offset,
// last offset delta, timestamps, producer fields and codec, holding only
// the records that are still the latest of their key (a record is dropped
// when a later committed record of the partition has the same key). The
// entry replaces the old batch in the partition's offset index; offsets do
// not change, so consumers see the gaps that Kafka's compaction leaves.
// The entries replicate like any other, so every replica's WAL stays a
// byte-identical copy of the leader's.
//
// Retention then deletes the old segments. It never deletes a segment that
// a compacted partition's index still points into (on a follower, until it
// has applied the leader's rewritten batches), nor any segment while the
// last rewritten batch this node applied is above the commit point: an
// uncommitted rewrite can be truncated after a failover, and the old
// batches are then needed again.
//
// What compaction keeps, as Kafka does:
//   - the latest record of every key, and its tombstone (null value) for
//     delete.retention.ms after it was written;
//   - every record younger than min.compaction.lag.ms, and every record
//     after the first such batch (only a prefix is compacted, as below
//     Kafka's first uncleanable offset);
//   - the partition's last batch, whole (a consumer positioned in it must
//     still get a batch that moves it on);
//   - committed transactional records, like any others; aborted
//     transactional records and the markers of decided transactions are
//     removed;
//   - nothing at or above the last stable offset is rewritten or counted as
//     a later record: an open transaction, or a record not yet committed,
//     holds the segments it is in.
//
// What differs from Kafka: the records compaction removes stay on disk
// (unread) until retention deletes the WAL segment they were written to
// (log.retention.ms, 7 days by default, or log.retention.bytes), and the
// rewritten batches take space of their own meanwhile. The live records of
// compacted topics do not count against log.retention.bytes, and each
// retention round that deletes segments copies them forward once.
// Cleaning runs at each retention check (log.retention.check.interval.ms),
// not as soon as the ratio is reached.
//
// The same machinery keeps the records of a topic whose own retention.ms
// is longer than the node's log.retention.ms, or -1 (forever): Kafka keeps
// such a topic's segments for as long as the topic says, and Kafka Streams
// creates its repartition topics with retention.ms=-1. Its batches below
// the segments retention deletes are copied forward unchanged (the same
// TypeCompactedBatch entry, every record kept), and its live bytes do not
// count against log.retention.bytes either. The topic's own retention.ms
// and retention.bytes still apply (trimTopics), as does DeleteRecords.

// cleanupPolicy parses a cleanup.policy value ("delete", "compact",
// "compact,delete").
func cleanupPolicy(v string) (compact, del bool) {
	if v == "" {
		return false, true
	}
	for s := range strings.SplitSeq(v, ",") {
		switch strings.TrimSpace(s) {
		case "compact":
			compact = true
		case "delete":
			del = true
		}
	}
	return compact, del
}

// validCleanupPolicy reports whether v is a cleanup.policy Tandem takes.
func validCleanupPolicy(v string) bool {
	n := 0
	for s := range strings.SplitSeq(v, ",") {
		switch strings.TrimSpace(s) {
		case "compact", "delete":
			n++
		default:
			return false
		}
	}
	return n > 0
}

// compacts reports whether a topic's cleanup.policy includes compact.
// Caller holds b.mu.
func (t *topic) compacts() bool {
	c, _ := cleanupPolicy(t.configs["cleanup.policy"])
	return c
}

// topicCompacts reports whether the named topic is compacted.
func (b *Broker) topicCompacts(name string) bool {
	b.mu.RLock()
	defer b.mu.RUnlock()
	t := b.topics[name]
	return t != nil && t.compacts()
}

// keptPartition is a partition whose batches must outlive the WAL
// segments they were written to: a compacted topic's (filtered when they
// are copied forward) or a long-retention topic's (copied whole).
type keptPartition struct {
	p       *partition
	compact bool
}

// keptPartitions lists the partitions of compacted topics and of topics
// that keep their records longer than this node's retention.
func (b *Broker) keptPartitions() []keptPartition {
	b.mu.RLock()
	defer b.mu.RUnlock()
	var out []keptPartition
	for _, t := range b.topics {
		c := t.compacts()
		if !c && !b.outlivesRetention(t) {
			continue
		}
		for _, p := range t.partitions {
			out = append(out, keptPartition{p: p, compact: c})
		}
	}
	return out
}

// outlivesRetention reports whether a topic that is not compacted keeps
// its records longer than this node's log.retention.ms: its retention.ms
// is set, and is -1 (forever) or longer. A node without time retention
// (log.retention.ms -1) keeps every topic's records until
// log.retention.bytes needs the space, and so every topic's. Caller holds
// b.mu.
func (b *Broker) outlivesRetention(t *topic) bool {
	v, ok := t.configs["retention.ms"]
	if !ok || b.cfg.RetentionMs < 0 {
		return false
	}
	ms, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return false
	}
	return ms < 0 || ms > b.cfg.RetentionMs
}

// compactionHold returns the lowest LSN that a kept partition's index
// points into (retention must keep it), and the bytes those partitions'
// batches hold (which do not count against log.retention.bytes). The LSN
// is 0 when no kept partition holds any batch.
func (b *Broker) compactionHold() (lowest uint64, live int64) {
	for _, k := range b.keptPartitions() {
		p := k.p
		p.mu.RLock()
		for _, r := range p.batches {
			if lowest == 0 || r.pos.LSN < lowest {
				lowest = r.pos.LSN
			}
			live += int64(r.size)
		}
		p.mu.RUnlock()
	}
	return lowest, live
}

// applyCompactedLocked folds a TypeCompactedBatch entry into the index: the
// batch with the same base offset is replaced (or removed, when the copy
// has no records); one that is not indexed, because a restart replays the
// copy without the deleted original, is inserted in offset order. Offsets,
// the high watermark, producer state and transactions are untouched: the
// copy is of a batch that is already committed and stable. Caller holds
// appendMu.
func (b *Broker) applyCompactedLocked(e wal.Entry, pos wal.Pos, size int) error {
	p, info, _, ref, err := b.batchEntryLocked(e, pos, size)
	if err != nil {
		return err
	}
	b.compactLSN.Store(e.LSN)
	if p == nil {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	i := sort.Search(len(p.batches), func(i int) bool { return p.batches[i].base >= ref.base })
	found := i < len(p.batches) && p.batches[i].base == ref.base
	switch {
	case info.numRecords == 0:
		if found {
			p.batches = append(p.batches[:i], p.batches[i+1:]...)
		}
		if info.control() {
			// An abort marker goes with its transaction's records (which
			// went first): a read_committed client that is told of the
			// aborted transaction skips its producer's records until it
			// sees the marker, so the range goes too. A replay, which
			// never sees the marker, does not list it either.
			p.aborted = slices.DeleteFunc(p.aborted, func(a abortedTxn) bool {
				return a.pid == info.producerID && a.last == info.baseOffset
			})
		}
	case found:
		p.batches[i] = ref
	case ref.last < p.logStart || ref.base >= p.next:
		// Deleted meanwhile (DeleteRecords, topic retention), or not a
		// batch this partition ever stored.
	default:
		p.batches = append(p.batches, batchRef{})
		copy(p.batches[i+1:], p.batches[i:])
		p.batches[i] = ref
	}
	return nil
}

// compactionStats is what one compaction round did.
type compactionStats struct {
	partitions int   // compacted partitions with a rewritten batch
	batches    int   // rewritten batches of compacted topics (including removed ones)
	copied     int   // batches of long-retention topics copied forward whole
	copiedB    int64 // their bytes
	removed    int64 // records left out
	// indexedBytes is what pass 1 read to bring the key indexes up to
	// date.
	indexedBytes int64
	bytesIn      int64
	bytesOut     int64
}

// compactBefore rewrites the batches of kept partitions that are in WAL
// entries below upTo, so that retention can delete those segments. It
// runs on the leader (or a standalone broker), from the retention loop
// only. It returns the LSN of the last entry it appended (0 if none).
func (b *Broker) compactBefore(ctx context.Context, upTo uint64, now time.Time) (uint64, compactionStats, error) {
	var st compactionStats
	var last uint64
	kept := b.keptPartitions()
	b.keyIndexes.retain(kept)
	for _, k := range kept {
		p := k.p
		// A compacted partition is also cleaned whole (its prefix, as
		// cleanCompacted does), not only below upTo: an expired tombstone
		// below upTo may go only if every older record of its key goes
		// too, and one may sit in a copy above upTo (a batch kept whole
		// for min.compaction.lag.ms when its segment went).
		n, lsn, err := b.compactPartition(p, k.compact, k.compact, upTo, now, &st)
		if err != nil {
			what := "copying forward"
			if k.compact {
				what = "compacting"
			}
			return last, st, fmt.Errorf("%s %s-%d: %w", what, p.topic, p.id, err)
		}
		if n > 0 && k.compact {
			st.partitions++
		}
		last = max(last, lsn)
		if ctx.Err() != nil {
			return last, st, ctx.Err()
		}
	}
	return last, st, nil
}

// compactPartition rewrites p's batches below upTo, compacted when compact
// is set and whole otherwise, and, when clean is set (a compacted
// partition cleaned before retention needs its segments:
// cleanCompacted), also every other batch that compaction changes. It
// returns how many it rewrote and the last LSN it appended.
func (b *Broker) compactPartition(p *partition, compact, clean bool, upTo uint64, now time.Time, st *compactionStats) (int, uint64, error) {
	p.mu.RLock()
	refs := append([]batchRef(nil), p.batches...)
	aborted := append([]abortedTxn(nil), p.aborted...)
	lso := p.lsoLocked()
	p.mu.RUnlock()
	need := clean
	for _, r := range refs {
		if r.pos.LSN < upTo && r.last < lso {
			need = true
			break
		}
	}
	if !need || len(refs) == 0 {
		return 0, 0, nil
	}
	deleteRetention := b.topicInt(p.topic, "delete.retention.ms", defaultDeleteRetentionMs)
	lag := b.topicInt(p.topic, "min.compaction.lag.ms", 0)
	limit := int64(b.maxMessageBytes(p.topic)) * maxDecompressedRatio

	isAborted := func(info batchInfo) bool {
		if !info.transactional() || info.control() {
			return false
		}
		for _, a := range aborted {
			if a.pid == info.producerID && a.first <= info.baseOffset && info.baseOffset <= a.last {
				return true
			}
		}
		return false
	}

	// Pass 1: the latest committed offset of every key, brought up to
	// date from where the last round left the partition's key index.
	//
	// The index is kept for the next round only when this one ends
	// without an error: a round that fails half-way may have left some
	// of the batches it meant to rewrite unchanged, and its index would
	// then lack keys (gone) whose older records those batches still hold.
	var idx *keyIndex
	keep := false
	if compact {
		idx = b.keyIndexes.take(p, b.clusterView().Epoch)
		defer func() {
			if keep {
				b.keyIndexes.put(p, idx)
			}
		}()
	}
	for _, r := range refs {
		if !compact {
			break // copied whole: no key is looked at
		}
		if r.last < idx.next {
			continue // indexed by an earlier round
		}
		if r.last >= lso {
			break // refs ascend by offset; nothing stable follows
		}
		raw, info, err := b.readBatch(r)
		if err != nil {
			return 0, 0, err
		}
		st.indexedBytes += int64(r.size)
		if !info.control() && !isAborted(info) {
			err = eachRecord(raw, info, max(limit, int64(len(raw))*maxDecompressedRatio), func(rec record) {
				if rec.key != nil {
					idx.latest[string(rec.key)] = info.baseOffset + int64(rec.offsetDelta)
				}
			})
			if err != nil {
				return 0, 0, fmt.Errorf("batch at offset %d: %w", r.base, err)
			}
		}
		idx.next = r.last + 1
	}
	var latest map[string]int64
	if compact {
		latest = idx.latest
		idx.prune(refs)
	}
	var gone []string // keys whose expired tombstone this round removes

	// Pass 2: rewrite the batches below upTo.
	type rewrite struct {
		old batchRef
		raw []byte
	}
	//
	// Only a prefix of the partition is compacted, as Kafka cleans only
	// below its first uncleanable offset: the batches before the first
	// one that is not stable, or younger than min.compaction.lag.ms, or
	// the partition's last batch. Batches from there on are kept whole
	// (copied if their segment is about to go), so that no tombstone
	// after them goes while they still hold an older record of its key.
	var out []rewrite
	uncleanable := refs[len(refs)-1].base
	for _, r := range refs {
		if r.last >= lso || (lag > 0 && now.UnixMilli()-r.maxTs < lag) {
			uncleanable = min(uncleanable, r.base)
			break
		}
	}
	for _, r := range refs {
		forced := r.pos.LSN < upTo // its segment is about to go: copied even if unchanged
		if !forced && !clean {
			continue
		}
		if r.last >= lso {
			continue // holds its segment until its transaction is decided
		}
		raw, info, err := b.readBatch(r)
		if err != nil {
			return 0, 0, err
		}
		var nb []byte
		removedBefore := st.removed
		switch {
		case !compact || r.base >= uncleanable:
			if !forced {
				continue
			}
			nb = raw // kept whole
		case info.control() || isAborted(info):
			nb = emptyBatch(raw)
			st.removed += int64(info.numRecords)
		default:
			tombstoneExpired := now.UnixMilli()-info.maxTimestamp > deleteRetention
			nb, err = filterBatch(raw, info, max(limit, int64(len(raw))*maxDecompressedRatio), func(rec record) bool {
				off := info.baseOffset + int64(rec.offsetDelta)
				if rec.key == nil {
					return true // written before the topic was compacted: kept
				}
				if l, ok := latest[string(rec.key)]; ok && l > off {
					return false
				}
				if rec.tombstone && tombstoneExpired {
					gone = append(gone, string(rec.key))
					return false
				}
				return true
			}, &st.removed)
			if err != nil {
				return 0, 0, fmt.Errorf("batch at offset %d: %w", r.base, err)
			}
		}
		if !forced && st.removed == removedBefore {
			continue // nothing removed: the batch stays where it is
		}
		out = append(out, rewrite{old: r, raw: nb})
	}
	if len(out) == 0 {
		keep = true
		if clean {
			p.setCleanedTo(uncleanable)
		}
		return 0, 0, nil
	}

	// Append under appendMu, checking that each batch is still the one
	// read (DeleteRecords, topic retention or a deleted topic may have
	// changed the partition meanwhile).
	var lastLSN uint64
	n := 0
	for _, w := range out {
		b.appendMu.Lock()
		if b.partition(p.topic, p.id) != p {
			b.appendMu.Unlock()
			return n, lastLSN, nil // the topic was deleted
		}
		p.mu.RLock()
		i := sort.Search(len(p.batches), func(i int) bool { return p.batches[i].base >= w.old.base })
		same := i < len(p.batches) && p.batches[i].base == w.old.base && p.batches[i].pos == w.old.pos
		p.mu.RUnlock()
		if !same {
			b.appendMu.Unlock()
			continue
		}
		payload := append(batchEntryPrefix(p.topic, p.id, len(w.raw)), w.raw...)
		lsn, err := b.appendLocked(wal.TypeCompactedBatch, payload)
		b.appendMu.Unlock()
		if err != nil {
			return n, lastLSN, err
		}
		lastLSN = lsn
		n++
		if compact {
			st.batches++
			st.bytesIn += int64(w.old.size)
			st.bytesOut += int64(len(w.raw))
		} else {
			st.copied++
			st.copiedB += int64(len(w.raw))
		}
	}
	for _, k := range gone {
		delete(latest, k) // no record of the key is left
	}
	keep = true
	if clean {
		p.setCleanedTo(uncleanable)
	}
	return n, lastLSN, nil
}

// setCleanedTo records how far a cleaning of p got.
func (p *partition) setCleanedTo(off int64) {
	p.mu.Lock()
	p.cleanedTo = max(p.cleanedTo, off)
	p.mu.Unlock()
}

// cleanCompacted compacts, on the leader, each compacted partition that
// has enough to clean, as Kafka's log cleaner does, without waiting for
// retention to need its segments: those whose dirty bytes (the batches
// written since the last cleaning, not counting the partition's last
// batch nor batches younger than min.compaction.lag.ms) make up at least
// min.cleanable.dirty.ratio of the partition, or whose oldest dirty batch
// is older than max.compaction.lag.ms. Only the batches that compaction
// changes are rewritten; the old ones stay on disk until retention
// deletes their segment. It runs from the retention loop.
func (b *Broker) cleanCompacted(now time.Time) {
	if !b.isLeader() {
		return
	}
	var st compactionStats
	for _, k := range b.keptPartitions() {
		if !k.compact || !b.dirtyEnough(k.p, now) {
			continue
		}
		if _, _, err := b.compactPartition(k.p, true, true, 0, now, &st); err != nil {
			b.log.Error("cleaning a compacted partition failed; retention will compact it when it needs its segments", "topic", k.p.topic, "partition", k.p.id, "error", err)
		}
	}
	if st.batches > 0 {
		b.metrics.compactedBatches.Add(float64(st.batches))
		b.metrics.compactionRemoved.Add(float64(st.removed))
		b.log.Info("cleaned compacted topics", "partitions", st.partitions, "batches", st.batches,
			"records_removed", st.removed, "bytes_read", st.bytesIn, "bytes_written", st.bytesOut, "bytes_indexed", st.indexedBytes)
	}
}

// dirtyEnough reports whether cleanCompacted should clean p now.
func (b *Broker) dirtyEnough(p *partition, now time.Time) bool {
	ratio := 0.5
	if v, err := strconv.ParseFloat(b.topicConfig(p.topic, "min.cleanable.dirty.ratio"), 64); err == nil {
		ratio = v
	}
	lag := b.topicInt(p.topic, "min.compaction.lag.ms", 0)
	maxLag := b.topicInt(p.topic, "max.compaction.lag.ms", math.MaxInt64)
	p.mu.RLock()
	defer p.mu.RUnlock()
	if len(p.batches) < 2 {
		return false
	}
	var total, dirty int64
	oldest := int64(math.MaxInt64)
	for _, r := range p.batches[:len(p.batches)-1] { // the last batch is never cleaned
		total += int64(r.size)
		if r.base < p.cleanedTo || r.last >= p.hw || (lag > 0 && now.UnixMilli()-r.maxTs < lag) {
			continue
		}
		dirty += int64(r.size)
		oldest = min(oldest, r.maxTs)
	}
	if dirty == 0 {
		return false
	}
	return float64(dirty) >= ratio*float64(total) || now.UnixMilli()-oldest > maxLag
}

// readBatch reads an indexed batch from the WAL and parses its header.
func (b *Broker) readBatch(r batchRef) ([]byte, batchInfo, error) {
	raw, err := b.wal.ReadRange(r.pos, int(r.poff), int(r.size), nil)
	if err != nil {
		return nil, batchInfo{}, err
	}
	info, err := parseBatch(raw)
	return raw, info, err
}

// defaultDeleteRetentionMs is Kafka's delete.retention.ms default: how
// long compaction keeps a key's tombstone once it is the latest record.
const defaultDeleteRetentionMs = 24 * 60 * 60 * 1000

// record is what compaction (and the produce path's timestamp checks)
// need of one record.
type record struct {
	offsetDelta    int32
	timestampDelta int64
	key            []byte // nil for a null key
	tombstone      bool   // null value
	raw            []byte // the whole record, length prefix included
}

// parseRecord reads the record at the start of data (uncompressed records
// section) and returns it and the bytes after it.
func parseRecord(data []byte) (record, []byte, error) {
	n, sz := kbin.Varint(data)
	if sz <= 0 || n < 0 || sz+int(n) > len(data) {
		return record{}, nil, errors.New("record cut short")
	}
	rec := record{raw: data[:sz+int(n)]}
	b := data[sz : sz+int(n)]
	if len(b) < 1 {
		return record{}, nil, errors.New("record cut short")
	}
	b = b[1:] // attributes
	td, k := kbin.Varlong(b)
	if k <= 0 {
		return record{}, nil, errors.New("bad timestamp delta")
	}
	rec.timestampDelta, b = td, b[k:]
	od, k := kbin.Varint(b)
	if k <= 0 {
		return record{}, nil, errors.New("bad offset delta")
	}
	rec.offsetDelta, b = od, b[k:]
	kl, k := kbin.Varint(b)
	if k <= 0 || int(kl) > len(b)-k {
		return record{}, nil, errors.New("bad key length")
	}
	b = b[k:]
	if kl >= 0 {
		rec.key, b = b[:kl:kl], b[kl:]
	}
	vl, k := kbin.Varint(b)
	if k <= 0 {
		return record{}, nil, errors.New("bad value length")
	}
	rec.tombstone = vl < 0
	return rec, data[sz+int(n):], nil
}

// recordsData returns the uncompressed records section of a batch.
func recordsData(raw []byte, info batchInfo, limit int64) ([]byte, error) {
	data := raw[batchHeaderLen:]
	codec := info.attributes & 0x07
	switch {
	case codec == 0:
		return data, nil
	case codec == 2 && !bytes.HasPrefix(data, xerialMagic):
		return snappyBlock(data, limit)
	}
	r, done, err := openRecords(codec, data, limit)
	if err != nil {
		return nil, err
	}
	defer done()
	return io.ReadAll(r)
}

// eachRecord calls fn for every record of a batch.
func eachRecord(raw []byte, info batchInfo, limit int64, fn func(record)) error {
	data, err := recordsData(raw, info, limit)
	if err != nil {
		return err
	}
	for i := int32(0); i < info.numRecords; i++ {
		var rec record
		if rec, data, err = parseRecord(data); err != nil {
			return fmt.Errorf("record %d of %d: %w", i, info.numRecords, err)
		}
		fn(rec)
	}
	return nil
}

// filterBatch returns a copy of a batch with the records keep accepts,
// compressed with the batch's codec, or raw itself when it keeps them all.
func filterBatch(raw []byte, info batchInfo, limit int64, keep func(record) bool, removed *int64) ([]byte, error) {
	var kept [][]byte
	n := 0
	err := eachRecord(raw, info, limit, func(rec record) {
		if keep(rec) {
			kept = append(kept, rec.raw)
			n += len(rec.raw)
		}
	})
	if err != nil {
		return nil, err
	}
	if len(kept) == int(info.numRecords) {
		return raw, nil
	}
	*removed += int64(info.numRecords) - int64(len(kept))
	if len(kept) == 0 {
		return emptyBatch(raw), nil
	}
	recs := make([]byte, 0, n)
	for _, r := range kept {
		recs = append(recs, r...)
	}
	codec := info.attributes & 0x07
	data, err := compressRecords(codec, recs)
	if err != nil {
		return nil, err
	}
	out := make([]byte, batchHeaderLen, batchHeaderLen+len(data))
	copy(out, raw[:batchHeaderLen])
	out = append(out, data...)
	binary.BigEndian.PutUint32(out[57:61], uint32(len(kept)))
	sealBatch(out)
	return out, nil
}

// emptyBatch is a batch's header with no records: as a compacted copy, it
// removes the batch from the index.
func emptyBatch(raw []byte) []byte {
	out := append([]byte(nil), raw[:batchHeaderLen]...)
	attrs := binary.BigEndian.Uint16(out[21:23]) &^ 0x07
	binary.BigEndian.PutUint16(out[21:23], attrs)
	binary.BigEndian.PutUint32(out[57:61], 0)
	sealBatch(out)
	return out
}

// sealBatch sets a batch's length and CRC-32C from its bytes.
func sealBatch(b []byte) {
	binary.BigEndian.PutUint32(b[8:12], uint32(len(b)-12))
	binary.BigEndian.PutUint32(b[batchCRCStart-4:batchCRCStart], crc32.Checksum(b[batchCRCStart:], castagnoli))
}

// compressRecords compresses a records section with a Kafka codec.
func compressRecords(codec int16, recs []byte) ([]byte, error) {
	var buf bytes.Buffer
	switch codec {
	case 0:
		return recs, nil
	case 1:
		err := writeAll(gzip.NewWriter(&buf), recs)
		return buf.Bytes(), err
	case 2:
		return s2.EncodeSnappy(nil, recs), nil
	case 3:
		err := writeAll(lz4.NewWriter(&buf), recs)
		return buf.Bytes(), err
	case 4:
		enc, err := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1))
		if err != nil {
			return nil, err
		}
		defer enc.Close()
		return enc.EncodeAll(recs, nil), nil
	}
	return nil, fmt.Errorf("unknown compression codec %d", codec)
}

// writeAll writes data to a compressing writer and closes it.
func writeAll(w io.WriteCloser, data []byte) error {
	if _, err := w.Write(data); err != nil {
		return err
	}
	return w.Close()
}

// checkKeys refuses a batch with a record without a key: a compacted topic
// keeps the latest record of each key, and Kafka refuses keyless records
// for it.
func checkKeys(raw []byte, info batchInfo, limit int64) error {
	missing := false
	if err := eachRecord(raw, info, limit, func(rec record) {
		if rec.key == nil {
			missing = true
		}
	}); err != nil {
		return err
	}
	if missing {
		return errors.New("compacted topic cannot accept a record without a key")
	}
	return nil
}

// compactionRetention is the part of a retention round for compacted
// topics: the leader rewrites what the segments below upTo hold of them,
// and every node then lowers upTo so that no segment a compacted
// partition still points into is deleted. It returns the new upTo (0:
// delete nothing this round).
func (b *Broker) compactionRetention(upTo uint64, now time.Time) uint64 {
	if b.isLeader() {
		ctx, cancel := context.WithTimeout(b.ctx, compactionCommitWait)
		defer cancel()
		gen := b.commitGeneration()
		last, st, err := b.compactBefore(ctx, upTo, now)
		if st.batches > 0 {
			b.metrics.compactedBatches.Add(float64(st.batches))
			b.metrics.compactionRemoved.Add(float64(st.removed))
			b.log.Info("compacted topics before retention", "partitions", st.partitions, "batches", st.batches,
				"records_removed", st.removed, "bytes_read", st.bytesIn, "bytes_written", st.bytesOut, "bytes_indexed", st.indexedBytes, "up_to_lsn", upTo)
		}
		if st.copied > 0 {
			b.metrics.retentionCopied.Add(float64(st.copied))
			b.log.Info("copied batches of topics with a longer retention.ms forward before retention", "batches", st.copied,
				"bytes", st.copiedB, "up_to_lsn", upTo)
		}
		if err != nil {
			b.log.Error("compaction failed; retention keeps the segments it needs and will retry", "error", err)
		}
		// A cleaning's rewrites (cleanCompacted, just before) must commit
		// too: retention deletes nothing while one is above the commit
		// point.
		if c := b.compactLSN.Load(); c > last && c > b.CommitLSN() {
			last = c
		}
		if last > 0 {
			werr := b.wal.WaitDurable(ctx, last)
			if werr == nil {
				werr = b.waitCommit(ctx, last, gen)
			}
			if werr != nil {
				b.log.Warn("compacted or copied batches not committed yet; retention waits for the next round", "lsn", last, "error", werr)
				return 0
			}
		}
	}
	if c := b.compactLSN.Load(); c > b.CommitLSN() {
		return 0 // a rewrite that a failover could still undo
	}
	if hold, _ := b.compactionHold(); hold > 0 && hold < upTo {
		b.log.Info("retention keeps WAL segments that compacted or long-retention topics still need",
			"lsn", hold, "wanted_up_to_lsn", upTo, "leader", b.isLeader())
		upTo = hold
	}
	return upTo
}

// compactionCommitWait bounds how long a retention round waits for its
// rewritten batches to commit before it gives up until the next round.
const compactionCommitWait = 30 * time.Second

// parseMs reads a non-negative millisecond config.
func parseMs(v string) bool {
	n, err := strconv.ParseInt(v, 10, 64)
	return err == nil && n >= 0
}

// keyIndex is a compacted partition's latest committed offset of every
// key, as of offset next: every stable batch that ends below next has
// been read into it. Compaction rounds keep it, so that each reads only
// the batches written since the last, not the whole partition again. It
// holds committed records only (below the last stable offset), which no
// failover truncates; it is still built anew when this node leads in
// another epoch.
type keyIndex struct {
	latest map[string]int64
	next   int64
	epoch  uint32
}

// maxKeptKeys bounds the keys of one partition's index that are kept
// between rounds: a larger partition builds its index anew each round
// (reading the whole partition) rather than hold it in memory.
const maxKeptKeys = 1 << 20

// prune drops the keys whose latest record is no longer in the partition
// (below its first batch: DeleteRecords, retention.ms or retention.bytes
// of a compact,delete topic removed it), so that the index holds only
// keys with a record.
func (idx *keyIndex) prune(refs []batchRef) {
	if len(refs) == 0 {
		return
	}
	first := refs[0].base
	for k, off := range idx.latest {
		if off < first {
			delete(idx.latest, k)
		}
	}
}

// keyIndexes holds each compacted partition's key index between rounds.
type keyIndexes struct {
	mu sync.Mutex
	m  map[*partition]*keyIndex
}

// take returns p's index, or a new one when there is none, or the one
// there was built in another epoch.
func (k *keyIndexes) take(p *partition, epoch uint32) *keyIndex {
	k.mu.Lock()
	defer k.mu.Unlock()
	idx := k.m[p]
	delete(k.m, p)
	if idx == nil || idx.epoch != epoch {
		idx = &keyIndex{latest: make(map[string]int64), epoch: epoch}
	}
	return idx
}

// put keeps p's index for the next round, unless it is too large to.
func (k *keyIndexes) put(p *partition, idx *keyIndex) {
	if len(idx.latest) > maxKeptKeys {
		return
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.m == nil {
		k.m = make(map[*partition]*keyIndex)
	}
	k.m[p] = idx
}

// retain forgets the indexes of partitions that are no longer compacted
// (deleted topics, a policy changed to delete).
func (k *keyIndexes) retain(kept []keptPartition) {
	k.mu.Lock()
	defer k.mu.Unlock()
	live := make(map[*partition]bool, len(kept))
	for _, kp := range kept {
		if kp.compact {
			live[kp.p] = true
		}
	}
	for p := range k.m {
		if !live[p] {
			delete(k.m, p)
		}
	}
}

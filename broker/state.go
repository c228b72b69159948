package broker

import (
	"sort"
	"sync"

	"github.com/tandem-io/tandem/broker/wal"
)

// topic is one Kafka topic. Its partitions only grow (CreatePartitions).
type topic struct {
	name       string
	id         [16]byte
	createdLSN uint64
	configs    map[string]string // overrides; defaults come from the broker config
	partitions []*partition
}

// batchRef locates one stored RecordBatch: the index entry from
// (topic, partition, offset) to the WAL entry that holds it.
type batchRef struct {
	base   int64
	last   int64
	maxTs  int64
	pos    wal.Pos
	size   int32 // RecordBatch bytes
	poff   int32 // where the RecordBatch starts inside the WAL payload
	hasPID bool
	// compacted: the batch is a compaction's copy (TypeCompactedBatch),
	// at a later LSN than the batches around it.
	compacted bool
}

// partition is one topic-partition: its offset index and watermarks.
type partition struct {
	topic string
	id    int32

	mu       sync.RWMutex
	batches  []batchRef // ascending by base offset; the fetch index
	logStart int64      // first offset still stored
	next     int64      // log end offset: the offset the next record gets
	hw       int64      // high watermark: records below it are committed

	// Transactions (txn.go), rebuilt from the batches like the index.
	openTxns []openTxn    // transactions not yet ended here, or whose marker is not yet committed
	aborted  []abortedTxn // aborted transactions, ascending by marker offset

	// cleanedTo: this node's last cleaning of the (compacted) partition
	// considered every batch below it (compact.go). Not replicated: a
	// new leader or a restart cleans the whole partition once.
	cleanedTo int64
}

func newPartition(topic string, id int32) *partition {
	return &partition{topic: topic, id: id}
}

// setHWLocked moves the high watermark forward. The caller then wakes
// waiting fetches with Broker.hwNotify.
func (p *partition) setHWLocked(hw int64) {
	if hw > p.hw {
		p.hw = hw
		if len(p.openTxns) > 0 {
			p.dropEndedTxnsLocked()
		}
	}
}

// find returns the index of the first batch whose last offset is >= off.
func (p *partition) findLocked(off int64) int {
	return sort.Search(len(p.batches), func(i int) bool { return p.batches[i].last >= off })
}

// watermarks returns (logStart, hw, next) under the read lock.
func (p *partition) watermarks() (int64, int64, int64) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.logStart, p.hw, p.next
}

// lso returns the last stable offset under the read lock (txn.go).
func (p *partition) lso() int64 {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.lsoLocked()
}

// fetchOffsets returns (logStart, hw, lso, next) at one instant.
func (p *partition) fetchOffsets() (int64, int64, int64, int64) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.logStart, p.hw, p.lsoLocked(), p.next
}

// dropBefore forgets index entries whose WAL entries retention deleted.
// The index is in offset order, which is also LSN order except for the
// copies that compaction wrote (compact.go), so every entry is checked.
func (p *partition) dropBeforeLocked(firstLSN uint64) {
	n := 0
	for _, r := range p.batches {
		if r.pos.LSN >= firstLSN {
			n++
		}
	}
	if n == len(p.batches) {
		return
	}
	firstGone := p.batches[0].pos.LSN < firstLSN
	kept := make([]batchRef, 0, n)
	for _, r := range p.batches {
		if r.pos.LSN >= firstLSN {
			kept = append(kept, r)
		}
	}
	p.batches = kept
	switch {
	case len(kept) == 0:
		p.logStart = p.next
	case firstGone:
		// max: DeleteRecords may have moved the log start offset into
		// the batch.
		p.logStart = max(p.logStart, kept[0].base)
	}
	p.pruneAbortedLocked()
}

// advanceLogStartLocked moves the log start offset forward to off (never
// back, never past the log end offset) and forgets the batches that end
// below it (DeleteRecords). A batch holding off stays indexed: a Fetch from
// off gets it whole, and the client skips the records before off, as with
// Kafka, whose log start offset can also fall inside a batch.
func (p *partition) advanceLogStartLocked(off int64) {
	off = min(off, p.next)
	if off <= p.logStart {
		return
	}
	p.logStart = off
	if i := p.findLocked(off); i > 0 {
		p.batches = append(p.batches[:0:0], p.batches[i:]...)
	}
	p.pruneAbortedLocked()
}

// tp names a topic-partition.
type tp struct {
	topic     string
	partition int32
}

// seqWindow remembers the last batches of one producer on one partition, so
// that a retried batch is recognised and answered with its original offset
// (Kafka keeps five, the maximum number of in-flight requests).
type seqWindow struct {
	epoch   int16
	entries [5]seqEntry
	n       int // valid entries, newest last

	// For the expiry of idle windows (producer_expiry.go): the window's
	// key and its place in Broker.windows.
	key        producerKey
	prev, next *seqWindow
}

// lastLSN is the WAL entry of the window's newest batch (0 if none).
func (w *seqWindow) lastLSN() uint64 {
	if w.n == 0 {
		return 0
	}
	return w.entries[w.n-1].lsn
}

type seqEntry struct {
	firstSeq, lastSeq int32
	baseOffset        int64
	lsn               uint64 // WAL entry of the batch: a retry is answered once it commits
	maxTs             int64  // the batch's max timestamp (DescribeProducers' last timestamp)
}

func (w *seqWindow) lastSeq() int32 {
	if w.n == 0 {
		return -1
	}
	return w.entries[w.n-1].lastSeq
}

func (w *seqWindow) add(e seqEntry) {
	if w.n == len(w.entries) {
		copy(w.entries[:], w.entries[1:])
		w.n--
	}
	w.entries[w.n] = e
	w.n++
}

func (w *seqWindow) duplicate(firstSeq, lastSeq int32) (seqEntry, bool) {
	for i := 0; i < w.n; i++ {
		if w.entries[i].firstSeq == firstSeq && w.entries[i].lastSeq == lastSeq {
			return w.entries[i], true
		}
	}
	return seqEntry{}, false
}

// producerKey identifies one idempotent producer's sequence on one partition.
type producerKey struct {
	pid int64
	tp  tp
}

// pendingCommit is a batch (or other entry) waiting for the commit point.
type pendingCommit struct {
	lsn uint64
	p   *partition
	end int64 // the high watermark once lsn is committed
}

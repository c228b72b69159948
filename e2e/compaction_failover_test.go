package e2e

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tandem-io/tandem/internal/testutil"
)

// Log compaction under failover (broker/compact.go, docs/guarantees.md
// "Compacted topics"): the latest committed record of every key survives
// retention, leader failovers and restarts, on every node.

const (
	cfTopic  = "compacted-under-failover"
	cfFiller = "filler-under-failover"
	cfKeys   = 200
	cfCold   = 20 // key-000..key-019: written only at the start, then carried by compaction alone
	cfHot    = 60 // key-020..key-059: written in every round; the others in one round of four
	cfKills  = 5  // leader SIGKILLs
)

var cfPad = strings.Repeat("v", 100)

func cfKey(k int) string { return fmt.Sprintf("key-%03d", k) }

// cfValue is key k's value number seq: "key-007:seq=42:vvv...".
func cfValue(k, seq int) string { return fmt.Sprintf("%s:seq=%d:%s", cfKey(k), seq, cfPad) }

// parseCf returns the key index and sequence of a record the writer wrote.
func parseCf(r compactedRecord) (k, seq int, err error) {
	if !strings.HasPrefix(r.Key, "key-") {
		return 0, 0, fmt.Errorf("offset %d: key %q was never written", r.Offset, r.Key)
	}
	k, err = strconv.Atoi(strings.TrimPrefix(r.Key, "key-"))
	if err != nil || k < 0 || k >= cfKeys || cfKey(k) != r.Key {
		return 0, 0, fmt.Errorf("offset %d: key %q was never written", r.Offset, r.Key)
	}
	if r.Value == nil {
		return k, 0, fmt.Errorf("offset %d: key %s has a null value (no tombstone was written)", r.Offset, r.Key)
	}
	prefix, rest, ok := strings.Cut(*r.Value, ":seq=")
	num, pad, ok2 := strings.Cut(rest, ":")
	seq, err = strconv.Atoi(num)
	if !ok || !ok2 || err != nil || prefix != r.Key || pad != cfPad {
		return k, 0, fmt.Errorf("offset %d: key %s has value %.40q, not one the writer wrote for it", r.Offset, r.Key, *r.Value)
	}
	return k, seq, nil
}

// cfKeyState is what the writer knows of one key.
type cfKeyState struct {
	attempted int   // highest sequence sent (its outcome may be unknown)
	acked     int   // highest sequence acknowledged (acks=all)
	ackedOff  int64 // the offset the producer was given for it
	ackedN    int   // acknowledged writes of the key
}

// cfWorkload writes the compacted topic: rounds of one record per chosen
// key, each with the key's next sequence number, acks=all, idempotent,
// one round at a time. A producer whose round had any error is replaced
// by a new one with the same codec, as the Jepsen test does: what failed
// is of unknown outcome (not acknowledged, maybe committed).
type cfWorkload struct {
	gate                sync.Mutex  // held by the writer for each round; a check holds it to pause the writer
	hold                atomic.Bool // while set, neither the writers nor the filler start anything new
	mu                  sync.Mutex
	keys                [cfKeys]cfKeyState
	rounds, failed      int
	attempted, acked    int
	clients             int
	coldDone            chan struct{} // closed once every cold key has acknowledged writes
	coldClosed          bool
	firstErr, lastError string
	// ackedAt is every acknowledged write by the offset the producer was
	// given; collisions are acknowledged writes given an offset already
	// given to another one.
	ackedAt    map[int64]cfAck
	collisions []string
	began      time.Time // the test's start, for the times in cfAck
}

// ackedEnd is one past the highest offset given to an acknowledged write.
func (w *cfWorkload) ackedEnd() int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return oneAfterHighest(w.ackedAt)
}

// oneAfterHighest is one past the highest offset among m's keys (0 for
// none).
func oneAfterHighest[V any](m map[int64]V) int64 {
	end := int64(0)
	for off := range m {
		end = max(end, off+1)
	}
	return end
}

// cfEndOn asks node id itself for topic/0's end offset (its own high
// watermark), as Kafka's debugging replica id (-2) may: a consumer's
// ListOffsets is answered by the leader only.
func cfEndOn(t *testing.T, cl *kgo.Client, id int, topic string) (int64, error) {
	req := kmsg.NewPtrListOffsetsRequest()
	req.ReplicaID = -2
	rt := kmsg.NewListOffsetsRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewListOffsetsRequestTopicPartition()
	rp.Partition, rp.Timestamp = 0, -1
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	resp, err := cl.Broker(id).Request(ctxTimeout(t, 10*time.Second), req)
	if err != nil {
		return 0, err
	}
	lr := resp.(*kmsg.ListOffsetsResponse)
	if len(lr.Topics) != 1 || len(lr.Topics[0].Partitions) != 1 {
		return 0, fmt.Errorf("node %d: ListOffsets answered %d topics", id, len(lr.Topics))
	}
	sp := lr.Topics[0].Partitions[0]
	if err := kerr.ErrorForCode(sp.ErrorCode); err != nil {
		return 0, fmt.Errorf("node %d: %w", id, err)
	}
	return sp.Offset, nil
}

// cfAck is one acknowledged write.
type cfAck struct {
	k, seq, round, client int
	at                    time.Duration // since the test started
	pid                   int64
	epoch                 int16
}

func (a cfAck) String() string {
	return fmt.Sprintf("%s seq %d (round %d, producer %d, producer id %d epoch %d, acknowledged at %v)",
		cfKey(a.k), a.seq, a.round, a.client, a.pid, a.epoch, a.at.Round(time.Millisecond))
}

var cfCodecs = []kgo.CompressionCodec{kgo.ZstdCompression(), kgo.GzipCompression(), kgo.SnappyCompression(),
	kgo.Lz4Compression(), kgo.NoCompression()}

// cfProducer is one idempotent producer of the failover writers: a
// patient one retries through a failover, an impatient one gives up first
// (an election takes about the 3 s lease TTL), so that some of its writes
// end with an unknown outcome: not acknowledged, maybe committed.
func cfProducer(t *testing.T, seeds []string, id string, codec kgo.CompressionCodec, patient bool) *kgo.Client {
	patience := 8 * time.Second
	if !patient {
		patience = 2500 * time.Millisecond
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...), kgo.ClientID(id),
		kgo.ProducerBatchCompression(codec),
		kgo.RecordDeliveryTimeout(patience), kgo.RequestTimeoutOverhead(3*time.Second),
		kgo.RetryTimeout(patience), kgo.MetadataMinAge(250*time.Millisecond))
	if err != nil {
		t.Errorf("kgo.NewClient: %v", err)
		return nil
	}
	return cl
}

// cfProducers makes n producers with newClient, or none if one fails; the
// returned function closes them (those replaced meanwhile too, if the
// caller stores the replacements in the slice).
func cfProducers(n int, newClient func(int) *kgo.Client) ([]*kgo.Client, func()) {
	clients := make([]*kgo.Client, n)
	for i := range clients {
		if clients[i] = newClient(i); clients[i] == nil {
			for _, cl := range clients[:i] {
				cl.Close()
			}
			return nil, func() {}
		}
	}
	return clients, func() {
		for _, cl := range clients {
			if cl != nil { // a replacement that failed
				cl.Close()
			}
		}
	}
}

func (w *cfWorkload) run(ctx context.Context, t *testing.T, stop <-chan struct{}, seeds []string, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 11))
	newClient := func(codec int) *kgo.Client {
		w.mu.Lock()
		gen := w.clients
		w.clients++
		w.mu.Unlock()
		// Three producers are patient, two are not.
		return cfProducer(t, seeds, fmt.Sprintf("compacted-writer-%d", gen), cfCodecs[codec], codec < 3)
	}
	// One idempotent producer per codec, taking the rounds in turn (one
	// round at a time, so each key's writes stay in sequence order).
	clients, closeAll := cfProducers(len(cfCodecs), newClient)
	if clients == nil {
		return
	}
	defer closeAll()
	type sent struct{ k, seq int }
	for round := 0; ; round++ {
		select {
		case <-stop:
			return
		case <-ctx.Done():
			return
		default:
		}
		if w.hold.Load() {
			sleepOrDone(ctx, 20*time.Millisecond)
			continue
		}
		w.gate.Lock()
		what := map[*kgo.Record]sent{}
		var recs []*kgo.Record
		w.mu.Lock()
		for k := range cfKeys {
			var write bool
			switch {
			case k < cfCold:
				write = !w.coldClosed && (round < 3 || w.keys[k].ackedN == 0)
			case k < cfHot:
				write = true
			default:
				write = rng.IntN(4) == 0
			}
			if !write {
				continue
			}
			w.keys[k].attempted++
			r := &kgo.Record{Topic: cfTopic, Key: []byte(cfKey(k)), Value: []byte(cfValue(k, w.keys[k].attempted))}
			what[r] = sent{k, w.keys[k].attempted}
			recs = append(recs, r)
		}
		w.rounds++
		w.attempted += len(recs)
		w.mu.Unlock()

		ci := round % len(clients)
		pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		res := clients[ci].ProduceSync(pctx, recs...)
		cancel()
		var errs []error
		w.mu.Lock()
		for _, r := range res {
			s := what[r.Record]
			if r.Err != nil {
				errs = append(errs, r.Err)
				continue
			}
			ks := &w.keys[s.k]
			ks.ackedN++
			w.acked++
			a := cfAck{k: s.k, seq: s.seq, round: round, client: ci, at: time.Since(w.began),
				pid: r.Record.ProducerID, epoch: r.Record.ProducerEpoch}
			if prev, ok := w.ackedAt[r.Record.Offset]; ok {
				w.collisions = append(w.collisions, fmt.Sprintf("offset %d was acknowledged for %v and again for %v", r.Record.Offset, prev, a))
			}
			w.ackedAt[r.Record.Offset] = a
			if s.seq > ks.acked {
				ks.acked, ks.ackedOff = s.seq, r.Record.Offset
			}
		}
		if !w.coldClosed && round >= 2 {
			all := true
			for k := range cfCold {
				all = all && w.keys[k].ackedN > 0
			}
			if all {
				w.coldClosed = true
				close(w.coldDone)
			}
		}
		if len(errs) > 0 {
			w.failed++
			w.lastError = errs[0].Error()
			if w.firstErr == "" {
				w.firstErr = w.lastError
			}
		}
		w.mu.Unlock()
		w.gate.Unlock()
		if len(errs) > 0 {
			clients[ci].Close()
			if clients[ci] = newClient(ci); clients[ci] == nil {
				return
			}
		}
	}
}

// cfRead is one record of a key as read from a node.
type cfRead struct {
	off int64
	seq int
}

// problems checks what one node served of the compacted topic against what
// the writer knows: records in offset order, only values the writer wrote
// (sequence <= the highest attempted), per key the sequences strictly
// increasing with the offset (a lower one after a higher one is an older
// value brought back; the same one twice a duplicated batch), the last one
// (what a consumer ends with) at or above the highest acknowledged one and,
// when it is that one, at the offset the producer was given; every key
// with an acknowledged write present; and each cold key, whose writes were
// all in WAL segments that retention deleted, read exactly once.
func (w *cfWorkload) problems(recs []compactedRecord, coldCompacted bool) []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var probs []string
	by := map[int][]cfRead{}
	for i, r := range recs {
		if i > 0 && r.Offset <= recs[i-1].Offset {
			probs = append(probs, fmt.Sprintf("offset %d read after offset %d", r.Offset, recs[i-1].Offset))
		}
		k, seq, err := parseCf(r)
		if err != nil {
			probs = append(probs, err.Error())
			continue
		}
		if seq < 1 || seq > w.keys[k].attempted {
			probs = append(probs, fmt.Sprintf("offset %d: %s=seq %d, but the writer only ever sent seq 1..%d for it",
				r.Offset, cfKey(k), seq, w.keys[k].attempted))
		}
		if a, ok := w.ackedAt[r.Offset]; ok && (a.k != k || a.seq != seq) {
			probs = append(probs, fmt.Sprintf("offset %d holds %s seq %d, but the producer was told that offset for %v",
				r.Offset, cfKey(k), seq, a))
		}
		by[k] = append(by[k], cfRead{r.Offset, seq})
	}
	for k := range cfKeys {
		ks, reads := w.keys[k], by[k]
		hist := fmt.Sprintf("(writer: highest acknowledged seq %d at offset %d, %d acknowledged writes, highest attempted seq %d; read: %s)",
			ks.acked, ks.ackedOff, ks.ackedN, ks.attempted, cfShowReads(reads))
		if len(reads) == 0 {
			if ks.acked > 0 {
				probs = append(probs, fmt.Sprintf("%s is missing: its acknowledged write seq %d at offset %d was lost %s",
					cfKey(k), ks.acked, ks.ackedOff, hist))
			}
			continue
		}
		for i := 1; i < len(reads); i++ {
			switch p, q := reads[i-1], reads[i]; {
			case q.seq < p.seq:
				probs = append(probs, fmt.Sprintf("%s: seq %d at offset %d comes after seq %d at offset %d: an older value after a newer one %s",
					cfKey(k), q.seq, q.off, p.seq, p.off, hist))
			case q.seq == p.seq:
				probs = append(probs, fmt.Sprintf("%s: seq %d read twice, at offsets %d and %d %s", cfKey(k), q.seq, p.off, q.off, hist))
			}
		}
		last := reads[len(reads)-1]
		switch {
		case last.seq < ks.acked:
			probs = append(probs, fmt.Sprintf("%s ends with seq %d at offset %d, older than its acknowledged seq %d (offset %d): the latest committed value was lost %s",
				cfKey(k), last.seq, last.off, ks.acked, ks.ackedOff, hist))
		case last.seq == ks.acked && last.off != ks.ackedOff:
			probs = append(probs, fmt.Sprintf("%s's acknowledged seq %d is at offset %d, but the producer was told offset %d %s",
				cfKey(k), ks.acked, last.off, ks.ackedOff, hist))
		}
		if k < cfCold && coldCompacted && len(reads) != 1 {
			probs = append(probs, fmt.Sprintf("cold %s is read %d times although retention deleted every WAL segment it was written to: its older values were not compacted away %s",
				cfKey(k), len(reads), hist))
		}
	}
	return probs
}

func cfShowReads(reads []cfRead) string {
	if len(reads) == 0 {
		return "nothing"
	}
	var parts []string
	for i, r := range reads {
		if len(reads) > 12 && i == 5 {
			parts = append(parts, fmt.Sprintf("... %d more ...", len(reads)-10))
		}
		if len(reads) > 12 && i >= 5 && i < len(reads)-5 {
			continue
		}
		parts = append(parts, fmt.Sprintf("seq %d@%d", r.seq, r.off))
	}
	return strings.Join(parts, ", ")
}

// cfKeptWriter writes cfKept (retention.ms=-1): rounds of cfKeptPerRound
// keyless records, each value a sequence number that grows by one per
// record, acks=all, idempotent, one round at a time, cfKeptPace apart.
// Two producers (zstd, patient; none, impatient) take the rounds in turn;
// a producer whose round had any error is replaced, as cfWorkload does.
type cfKeptWriter struct {
	gate                sync.Mutex // held by the writer for each round; a check holds it to pause the writer
	mu                  sync.Mutex
	attempted           int           // highest sequence sent (sequences 1..attempted were all sent once)
	acked               int           // acknowledged writes
	ackedAt             map[int64]int // acknowledged writes: sequence by the offset the producer was given
	ackedOff            map[int]int64 // the same, offset by sequence
	collisions          []string      // acknowledged writes given an offset already given to another
	rounds, failed      int
	clients             int
	firstErr, lastError string
}

const (
	cfKept         = "kept-under-failover" // retention.ms=-1: copied forward whole before retention deletes its segments
	cfKeptPerRound = 10
	cfKeptPace     = 80 * time.Millisecond // about 125 records (20 kB) a second, in batches spread over every WAL segment
)

var cfKeptPad = strings.Repeat("k", 150)

// cfKeptValue is sequence seq's value: "seq=000042:kkk...".
func cfKeptValue(seq int) string { return fmt.Sprintf("seq=%06d:%s", seq, cfKeptPad) }

// parseKept returns the sequence of a record of cfKept.
func parseKept(r compactedRecord) (int, error) {
	if r.Key != "" {
		return 0, fmt.Errorf("offset %d has key %q; the writer wrote no keys", r.Offset, r.Key)
	}
	if r.Value == nil {
		return 0, fmt.Errorf("offset %d has a null value; the writer wrote none", r.Offset)
	}
	num, pad, ok := strings.Cut(strings.TrimPrefix(*r.Value, "seq="), ":")
	seq, err := strconv.Atoi(num)
	if !strings.HasPrefix(*r.Value, "seq=") || !ok || err != nil || len(num) != 6 || pad != cfKeptPad {
		return 0, fmt.Errorf("offset %d has value %.40q, not one the writer wrote", r.Offset, *r.Value)
	}
	return seq, nil
}

// ackedEnd is one past the highest offset given to an acknowledged write.
func (kw *cfKeptWriter) ackedEnd() int64 {
	kw.mu.Lock()
	defer kw.mu.Unlock()
	return oneAfterHighest(kw.ackedAt)
}

func (kw *cfKeptWriter) run(ctx context.Context, t *testing.T, stop <-chan struct{}, hold *atomic.Bool, seeds []string) {
	newClient := func(i int) *kgo.Client {
		kw.mu.Lock()
		gen := kw.clients
		kw.clients++
		kw.mu.Unlock()
		// The first (zstd) is patient, the second (no compression) not.
		if i == 1 {
			return cfProducer(t, seeds, fmt.Sprintf("kept-writer-%d", gen), kgo.NoCompression(), false)
		}
		return cfProducer(t, seeds, fmt.Sprintf("kept-writer-%d", gen), kgo.ZstdCompression(), true)
	}
	clients, closeAll := cfProducers(2, newClient)
	if clients == nil {
		return
	}
	defer closeAll()
	for round := 0; ; {
		select {
		case <-stop:
			return
		case <-ctx.Done():
			return
		default:
		}
		if hold.Load() {
			sleepOrDone(ctx, 20*time.Millisecond)
			continue
		}
		kw.gate.Lock()
		seqOf := map[*kgo.Record]int{}
		recs := make([]*kgo.Record, cfKeptPerRound)
		kw.mu.Lock()
		for i := range recs {
			kw.attempted++
			recs[i] = &kgo.Record{Topic: cfKept, Value: []byte(cfKeptValue(kw.attempted))}
			seqOf[recs[i]] = kw.attempted
		}
		kw.rounds++
		kw.mu.Unlock()

		ci := round % len(clients)
		round++
		pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		res := clients[ci].ProduceSync(pctx, recs...)
		cancel()
		var firstErr error
		kw.mu.Lock()
		for _, r := range res {
			if r.Err != nil {
				firstErr = cmp.Or(firstErr, r.Err)
				continue
			}
			seq := seqOf[r.Record]
			kw.acked++
			if prev, ok := kw.ackedAt[r.Record.Offset]; ok {
				kw.collisions = append(kw.collisions, fmt.Sprintf("offset %d was acknowledged for seq %d and again for seq %d (producer %d)",
					r.Record.Offset, prev, seq, ci))
			}
			kw.ackedAt[r.Record.Offset] = seq
			kw.ackedOff[seq] = r.Record.Offset
		}
		if firstErr != nil {
			kw.failed++
			kw.lastError = firstErr.Error()
			if kw.firstErr == "" {
				kw.firstErr = kw.lastError
			}
		}
		kw.mu.Unlock()
		kw.gate.Unlock()
		if firstErr != nil {
			clients[ci].Close()
			if clients[ci] = newClient(ci); clients[ci] == nil {
				return
			}
		}
		select {
		case <-stop:
			return
		case <-ctx.Done():
			return
		case <-time.After(cfKeptPace):
		}
	}
}

// problems checks what one node served of cfKept, read from the beginning
// up to end, against what the writer knows. Nothing is ever removed from
// the topic (retention.ms=-1, no compaction, no transactions), so the
// records must be at offsets 0, 1, 2, ... up to the end offset, each a
// sequence the writer sent, none twice, and every acknowledged sequence
// at the offset the producer was given.
func (kw *cfKeptWriter) problems(recs []compactedRecord, end int64) []string {
	kw.mu.Lock()
	defer kw.mu.Unlock()
	var probs []string
	seen := map[int]int64{}
	var gaps []int64 // missing offsets
	next := int64(0)
	for i, r := range recs {
		if i > 0 && r.Offset <= recs[i-1].Offset {
			probs = append(probs, fmt.Sprintf("offset %d read after offset %d", r.Offset, recs[i-1].Offset))
		}
		for o := next; o < r.Offset && len(gaps) < 1_000_000; o++ {
			gaps = append(gaps, o)
		}
		next = max(next, r.Offset+1)
		seq, err := parseKept(r)
		if err != nil {
			probs = append(probs, err.Error())
			continue
		}
		if seq < 1 || seq > kw.attempted {
			probs = append(probs, fmt.Sprintf("offset %d holds seq %d, but the writer only ever sent seq 1..%d", r.Offset, seq, kw.attempted))
			continue
		}
		if prev, ok := seen[seq]; ok {
			probs = append(probs, fmt.Sprintf("seq %d read twice, at offsets %d and %d", seq, prev, r.Offset))
		} else {
			seen[seq] = r.Offset
		}
		if s, ok := kw.ackedAt[r.Offset]; ok && s != seq {
			probs = append(probs, fmt.Sprintf("offset %d holds seq %d, but the producer was told that offset for seq %d", r.Offset, seq, s))
		}
	}
	for o := next; o < end && len(gaps) < 1_000_000; o++ {
		gaps = append(gaps, o)
	}
	if len(gaps) > 0 {
		probs = append(probs, fmt.Sprintf("%d offsets below the end offset %d are missing (%s): the topic is neither compacted nor trimmed, so every offset from 0 up holds a record",
			len(gaps), end, cfRanges(gaps)))
	}
	var lost, lostOffs []int64
	var moved []string
	for seq, off := range kw.ackedOff {
		got, ok := seen[seq]
		switch {
		case !ok:
			lost, lostOffs = append(lost, int64(seq)), append(lostOffs, off)
		case got != off:
			moved = append(moved, fmt.Sprintf("seq %d at offset %d, the producer was told %d", seq, got, off))
		}
	}
	if len(lost) > 0 {
		slices.Sort(lost)
		slices.Sort(lostOffs)
		probs = append(probs, fmt.Sprintf("%d of %d acknowledged writes are missing: seq %s, acknowledged at offsets %s",
			len(lost), len(kw.ackedOff), cfRanges(lost), cfRanges(lostOffs)))
	}
	if len(moved) > 0 {
		sort.Strings(moved)
		probs = append(probs, fmt.Sprintf("%d acknowledged writes are not at the offset the producer was given: %s",
			len(moved), strings.Join(moved[:min(len(moved), 10)], "; ")))
	}
	return probs
}

// cfRanges shows sorted numbers as ranges: "0-99 120 140-150".
func cfRanges(ns []int64) string {
	var out []string
	for i := 0; i < len(ns); {
		j := i
		for j+1 < len(ns) && ns[j+1] == ns[j]+1 {
			j++
		}
		if j == i {
			out = append(out, strconv.FormatInt(ns[i], 10))
		} else {
			out = append(out, fmt.Sprintf("%d-%d", ns[i], ns[j]))
		}
		i = j + 1
	}
	if len(out) > 20 {
		out = append(out[:20:20], fmt.Sprintf("... (%d ranges)", len(out)))
	}
	return strings.Join(out, " ")
}

// cfCounter sums a per-process counter across the restarts of one node's
// broker (a restart starts it at 0 again).
type cfCounter struct{ base, last float64 }

func (c *cfCounter) observe(v float64) {
	if v < c.last {
		c.base += c.last
	}
	c.last = v
}

func (c *cfCounter) total() float64 { return c.base + c.last }

var (
	cfCompactedLine = regexp.MustCompile(`(?:compacted topics before retention|cleaned compacted topics).*\bbatches=(\d+).*\brecords_removed=(\d+)`)
	cfCopiedLine    = regexp.MustCompile(`copied batches of topics with a longer retention\.ms forward before retention.*\bbatches=(\d+).*\bbytes=(\d+)`)
	cfDeletedLine   = regexp.MustCompile(`retention deleted WAL segments`)
	cfInteresting   = regexp.MustCompile(`(?i)compact|copied|truncat|re-clon|refus|diverg|\[ERROR\]|\[WARN\]|panic`)
)

// cfLogCopies counts, from a broker's log (all its runs), the rounds that
// copied batches of long-retention topics forward, the batches and bytes.
func cfLogCopies(log string) (rounds, batches int, bytes int64) {
	for _, m := range cfCopiedLine.FindAllStringSubmatch(log, -1) {
		n, _ := strconv.Atoi(m[1])
		b, _ := strconv.ParseInt(m[2], 10, 64)
		rounds, batches, bytes = rounds+1, batches+n, bytes+b
	}
	return rounds, batches, bytes
}

// cfLogCompactions counts, from a broker's log (all its runs), the
// compaction rounds (cleanings and rounds before retention), rewritten
// batches and removed records.
func cfLogCompactions(log string) (rounds, batches, removed int) {
	for _, m := range cfCompactedLine.FindAllStringSubmatch(log, -1) {
		b, _ := strconv.Atoi(m[1])
		r, _ := strconv.Atoi(m[2])
		rounds, batches, removed = rounds+1, batches+b, removed+r
	}
	return rounds, batches, removed
}

// cfLogDigest is the lines of every node's broker and sidecar logs that
// bear on compaction, truncation and retention (the last ones), with the
// log files' paths, for a failure report.
func cfLogDigest(c *cluster, lines int) string {
	var b strings.Builder
	for _, n := range c.nodes {
		for _, p := range []*testutil.Process{n.broker, n.side} {
			var hits []string
			for _, l := range strings.Split(p.Log(), "\n") {
				if (cfInteresting.MatchString(l) && !strings.Contains(l, "retention keeps WAL segments")) || strings.HasPrefix(l, "=== testutil") {
					hits = append(hits, l)
				}
			}
			if len(hits) > lines {
				hits = hits[len(hits)-lines:]
			}
			fmt.Fprintf(&b, "---- %s (%s): last %d lines about compaction, truncation, retention, errors ----\n%s\n",
				p.Name(), p.LogPath(), len(hits), strings.Join(hits, "\n"))
		}
	}
	return b.String()
}

// TestCompactionSurvivesFailovers: a three-node cluster (etcd elections)
// with 1 MiB WAL segments, log.retention.bytes 2 MiB and a 200ms retention
// check, so that retention, and with it compaction, runs several times a
// second. A compacted topic (one partition, replication factor 3,
// min.insync.replicas=2) gets rounds of acks=all idempotent writes to 200
// keys, each value the key and a sequence number that grows per key: 20
// cold keys are written only in the first rounds (from then on only
// compaction's copies keep their values), 40 hot keys in every round, the
// rest in one round of four. Five producers, one per codec (zstd, gzip,
// snappy, lz4, none), take the rounds in turn, so that compaction filters
// and recompresses all of them; a producer whose round fails is replaced.
// For every key the writer records the highest sequence acknowledged (and
// its offset) and the highest attempted. A topic with retention.ms=-1
// (cfKept, min.insync.replicas=2) gets rounds of ten keyless acks=all
// idempotent writes alongside, each value a sequence number that grows by
// one per record (two producers, zstd and none, one of them impatient):
// before retention deletes a segment, the leader copies that topic's
// batches in it forward whole, the same rewrite as compaction's. A filler
// topic (cleanup.policy=delete) takes about 3 MB/s alongside (acks=1), so
// that segments roll and are deleted all the time.
//
// The nemesis SIGKILLs the leader (broker and sidecar) five times, 4-6 s
// apart or as soon as the cluster has recovered from the last fault, waits
// for another node to be elected and restarts the killed one. Every second
// kill first cuts the leader off (both followers' sidecars SIGKILLed) and
// waits up to 1.2 s for the leader to compact again, so that it is killed
// holding rewritten batches no one else has, the uncommitted rewrite of
// compact.go's header; the writes then stop until the check below, so
// that the new leader does not soon rewrite the same batches again (which
// would hide a loss on the old leader). Once, a follower's broker alone is
// SIGKILLed and restarted (it rebuilds its index from the WAL, originals
// and copies). After every fault, with the cluster back in sync and the
// writers paused, every node must serve (franz-go in that node's rack, up
// to the end offset) the latest acknowledged value of every key, and every
// record of the retention.ms=-1 topic (checked as below).
//
// Then, with the writers stopped, every node in sync and the WALs no
// longer moving, every node is read with franz-go and kcat, each in that
// node's rack, from the beginning to the end offset. For every key the
// last value read (what a consumer ends with) must be the latest present,
// its sequence at least the highest acknowledged one (at the offset the
// producer was given when equal) and at most the highest attempted; no key
// with an acknowledged write may be missing; a key's sequences must only
// increase with the offset (a lower one after a higher one is an older
// value resurrected, the same one twice a duplicated batch); each cold key
// must be read once; every node, and both clients, must serve exactly the
// same records. The retention.ms=-1 topic, read the same way, must have
// its log start offset at 0 on every node and a record at every offset
// from 0 to its end offset, each a sequence the writer sent, none twice,
// every acknowledged one at the offset the producer was given; every node,
// and both clients, must serve the same records. Retention must have
// deleted, on every node, every WAL segment written before the first
// fault; the leaders must have compacted
// (tandem_broker_compacted_batches_total summed over nodes and restarts,
// and their logs) and copied the retention.ms=-1 topic's batches forward
// (tandem_broker_retention_copied_batches_total, and their logs); there
// must have been an election per kill; tandemctl verify must find the
// three WALs identical.
func TestCompactionSurvivesFailovers(t *testing.T) {
	began := time.Now()
	since := func() time.Duration { return time.Since(began).Round(time.Millisecond) }
	seed := uint64(time.Now().UnixNano())
	t.Logf("random seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 5))

	c, url, leader, metrics := startCompactionCluster(t, "200ms")
	t.Logf("cluster up, node %d leads (%v)", leader, since())

	// The topics.
	adm := kadm.NewClient(kclient(t, c.kafkaAddrs()))
	create := func(name string, configs map[string]*string) {
		t.Helper()
		testutil.Eventually(t, 60*time.Second, func() error {
			resp, err := adm.CreateTopic(ctxTimeout(t, 15*time.Second), 1, 3, configs, name)
			if err == nil {
				err = resp.Err
			}
			if errors.Is(err, kerr.TopicAlreadyExists) {
				return nil
			}
			return err
		})
	}
	str := func(s string) *string { return &s }
	create(cfTopic, map[string]*string{"cleanup.policy": str("compact"), "min.insync.replicas": str("2")})
	create(cfFiller, map[string]*string{"cleanup.policy": str("delete")})
	create(cfKept, map[string]*string{"retention.ms": str("-1"), "min.insync.replicas": str("2")})
	for topic, configs := range map[string]map[string]string{
		cfTopic: {"cleanup.policy": "compact", "min.insync.replicas": "2"},
		cfKept:  {"retention.ms": "-1", "min.insync.replicas": "2"},
	} {
		rcs, err := adm.DescribeTopicConfigs(ctxTimeout(t, 15*time.Second), topic)
		if err != nil || len(rcs) != 1 || rcs[0].Err != nil {
			t.Fatalf("DescribeConfigs %s: %v %+v", topic, err, rcs)
		}
		for key, want := range configs {
			if v, _, _ := configValue(rcs[0], key); v != want {
				t.Fatalf("%s has %s=%q, want %q", topic, key, v, want)
			}
		}
	}
	gauge := func(id int, name string) float64 {
		t.Helper()
		var v float64
		testutil.Eventually(t, 20*time.Second, func() (err error) {
			v, err = brokerGauge(metrics[id], name)
			return err
		})
		return v
	}
	firstBefore := map[int]float64{}
	for _, n := range c.nodes {
		firstBefore[n.id] = gauge(n.id, "tandem_broker_wal_first_lsn")
	}
	startLSN := gauge(leader, "tandem_broker_wal_last_lsn")
	t.Logf("topics created; WAL first LSNs %v, the leader's last LSN %.0f (%v)", firstBefore, startLSN, since())

	// The workload: the compacted writer, the filler, and a monitor of
	// leaders and compaction counters.
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
	}()
	stopWriters := make(chan struct{})
	w := &cfWorkload{coldDone: make(chan struct{}), ackedAt: map[int64]cfAck{}, began: began}
	writerDone := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(writerDone)
		w.run(ctx, t, stopWriters, c.kafkaAddrs(), seed)
	}()
	// The writer of the retention.ms=-1 topic, paused with the others.
	kw := &cfKeptWriter{ackedAt: map[int64]int{}, ackedOff: map[int]int64{}}
	keptDone := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(keptDone)
		kw.run(ctx, t, stopWriters, &w.hold, c.kafkaAddrs())
	}()

	// The filler: 30 records of 10 kB every 100ms (3 MB/s), acks=1, not
	// waiting for each other (at most 300 buffered).
	var fillBytes, fillErrs atomic.Int64
	wg.Add(1)
	go func() {
		defer wg.Done()
		cl, err := kgo.NewClient(kgo.SeedBrokers(c.kafkaAddrs()...), kgo.ClientID("compaction-filler"),
			kgo.RequiredAcks(kgo.LeaderAck()), kgo.DisableIdempotentWrite(), plain, kgo.MaxBufferedRecords(300),
			kgo.RecordDeliveryTimeout(8*time.Second), kgo.RetryTimeout(8*time.Second), kgo.MetadataMinAge(250*time.Millisecond))
		if err != nil {
			t.Errorf("kgo.NewClient: %v", err)
			return
		}
		defer cl.Close()
		pad := strings.Repeat("f", 10_000)
		done := func(r *kgo.Record, err error) {
			if err != nil {
				fillErrs.Add(1)
			} else {
				fillBytes.Add(int64(len(r.Value)))
			}
		}
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for n := 0; ; {
			select {
			case <-stopWriters:
				return
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			if w.hold.Load() {
				continue
			}
			for range 30 {
				cl.Produce(ctx, &kgo.Record{Topic: cfFiller, Value: fmt.Appendf(nil, "%08d-%s", n, pad)}, done)
				n++
			}
		}
	}()

	var monMu sync.Mutex
	batches, removed, deletedSegs, copied := map[int]*cfCounter{}, map[int]*cfCounter{}, map[int]*cfCounter{}, map[int]*cfCounter{}
	for _, n := range c.nodes {
		batches[n.id], removed[n.id], deletedSegs[n.id], copied[n.id] = &cfCounter{}, &cfCounter{}, &cfCounter{}, &cfCounter{}
	}
	scrapeAll := func() {
		for _, n := range c.nodes {
			m, err := scrape(metrics[n.id])
			if err != nil {
				continue // killed or restarting
			}
			monMu.Lock()
			batches[n.id].observe(m["tandem_broker_compacted_batches_total"])
			removed[n.id].observe(m["tandem_broker_compaction_removed_records_total"])
			deletedSegs[n.id].observe(m["tandem_broker_retention_deleted_segments_total"])
			copied[n.id].observe(m["tandem_broker_retention_copied_batches_total"])
			monMu.Unlock()
		}
	}
	var elections atomic.Int64
	var leaders []string
	wg.Add(1)
	go func() {
		defer wg.Done()
		_, lastEpoch := c.leaderNow(time.Second)
		for ctx.Err() == nil {
			scrapeAll()
			if id, epoch := c.leaderNow(300 * time.Millisecond); id != 0 && epoch > lastEpoch {
				elections.Add(1)
				monMu.Lock()
				leaders = append(leaders, fmt.Sprintf("node %d epoch %d at %v", id, epoch, since()))
				monMu.Unlock()
				lastEpoch = epoch
			}
			sleepOrDone(ctx, 150*time.Millisecond)
		}
	}()

	// Every cold key acknowledged before the faults begin; from here on,
	// retention deletes the segments that hold their writes.
	select {
	case <-w.coldDone:
	case <-time.After(30 * time.Second):
		w.mu.Lock()
		rounds, failed, last := w.rounds, w.failed, w.lastError
		w.mu.Unlock()
		t.Fatalf("the cold keys were not all acknowledged within 30s (%d rounds, %d failed, last error %q)", rounds, failed, last)
	}
	var coldEndLSN float64
	for _, n := range c.nodes {
		coldEndLSN = max(coldEndLSN, gauge(n.id, "tandem_broker_wal_last_lsn"))
	}
	t.Logf("cold keys acknowledged; their writes end at or before LSN %.0f (%v)", coldEndLSN, since())

	// The nemesis.
	var faults []string
	waitSettled := func(what string) int {
		t.Helper()
		var id int
		testutil.Eventually(t, 60*time.Second, func() error {
			if id, _ = c.leaderNow(time.Second); id == 0 {
				return fmt.Errorf("%s: no leader", what)
			}
			return c.inSync(id)
		})
		c.waitElectable(url)
		return id
	}
	// After every fault, with the cluster back in sync, the compacted
	// writer and the retention.ms=-1 topic's writer pause (the filler
	// does not, except after a cut-off kill: retention, compaction and
	// copies go on) and every node must serve, up to the end offset, the
	// latest acknowledged value of every key, and every record of cfKept:
	// a loss that a later compaction or copy would hide shows here.
	midReads := 0
	// keptLogStart asks node id for cfKept's log start offset, again while
	// the answer is an error (the probe's connection to a node that was
	// restarted fails once).
	keptProbe := kclient(t, c.kafkaAddrs())
	keptLogStart := func(id int) (ls int64, err error) {
		_ = testutil.Poll(10*time.Second, func() error {
			ls, err = logStartOn(c, keptProbe, id, cfKept, 0)
			return err
		})
		return ls, err
	}
	// keptProblems reads cfKept from every node with franz-go, up to end,
	// and checks it against what its writer knows, and the topic's log
	// start offset on the node (still 0: nothing was deleted).
	// keptReadOn checks cfKept's log start offset on node id (a problem
	// unless 0) and reads the topic there with franz-go up to end (nothing
	// when there is nothing from the log start offset on: franz-go would
	// wait for it).
	keptReadOn := func(id int, end int64) (recs []compactedRecord, read bool, probs []string) {
		t.Helper()
		ls, err := keptLogStart(id)
		if err != nil || ls != 0 {
			probs = append(probs, fmt.Sprintf("node %d gives %s's log start offset as %d (%v), want 0: retention deleted records of a retention.ms=-1 topic",
				id, cfKept, ls, err))
		}
		if err == nil && ls < end {
			return franzCompactedRead(t, c, id, cfKept, end), true, probs
		}
		return nil, false, probs
	}
	keptProblems := func(end int64) []string {
		t.Helper()
		var probs []string
		for _, n := range c.nodes {
			recs, ok, lsProbs := keptReadOn(n.id, end)
			probs = append(probs, lsProbs...)
			read := fmt.Sprintf("not read: nothing from its log start offset up to the end offset %d", end)
			if ok {
				read = fmt.Sprintf("franz-go, %d records read up to offset %d", len(recs), end-1)
			}
			for _, p := range kw.problems(recs, end) {
				probs = append(probs, fmt.Sprintf("node %d (%s): %s", n.id, read, p))
			}
		}
		return probs
	}
	midCheck := func(after string) {
		t.Helper()
		w.gate.Lock()
		defer w.gate.Unlock()
		kw.gate.Lock()
		defer kw.gate.Unlock()
		// Every node must serve at least up to the last acknowledged
		// write (the writers are paused; a round of unknown outcome may
		// have gone further).
		end := max(endOffsetOf(t, adm, cfTopic), w.ackedEnd())
		keptEnd := max(endOffsetOf(t, adm, cfKept), kw.ackedEnd())
		w.mu.Lock()
		probs := slices.Clone(w.collisions)
		w.mu.Unlock()
		for _, n := range c.nodes {
			first, err := brokerGauge(metrics[n.id], "tandem_broker_wal_first_lsn")
			if err != nil {
				t.Fatalf("node %d's metrics: %v", n.id, err)
			}
			recs := franzCompactedRead(t, c, n.id, cfTopic, end)
			ps := w.problems(recs, first > coldEndLSN)
			for _, p := range ps {
				probs = append(probs, fmt.Sprintf("node %d (franz-go, %d records read up to offset %d, WAL first LSN %.0f): %s", n.id, len(recs), end-1, first, p))
			}
			midReads++
		}
		kw.mu.Lock()
		keptProbs := slices.Clone(kw.collisions)
		kw.mu.Unlock()
		keptProbs = append(keptProbs, keptProblems(keptEnd)...)
		if len(probs) > 0 || len(keptProbs) > 0 {
			t.Logf("broker logs:\n%s", cfLogDigest(c, 60))
			var parts []string
			if total := len(probs); total > 0 {
				if total > 40 {
					probs = append(probs[:40:40], fmt.Sprintf("... and %d more", total-40))
				}
				parts = append(parts, fmt.Sprintf("the compacted topic is wrong (%d problems):\n  %s", total, strings.Join(probs, "\n  ")))
			}
			if total := len(keptProbs); total > 0 {
				if total > 40 {
					keptProbs = append(keptProbs[:40:40], fmt.Sprintf("... and %d more", total-40))
				}
				parts = append(parts, fmt.Sprintf("the retention.ms=-1 topic %s is wrong (%d problems):\n  %s", cfKept, total, strings.Join(keptProbs, "\n  ")))
			}
			t.Fatalf("after %s, with the writers paused, %s", after, strings.Join(parts, "\n"))
		}
	}
	lastKill := time.Now().Add(-2 * time.Second)
	var preFaultLSN float64 // the WALs' end before the first fault
	for i := 1; i <= cfKills; i++ {
		if d := time.Until(lastKill.Add(time.Duration(4000+rng.IntN(2000)) * time.Millisecond)); d > 0 {
			time.Sleep(d) // the pace of the faults, not a wait for a condition
		}
		if i == 1 {
			for _, n := range c.nodes {
				preFaultLSN = max(preFaultLSN, gauge(n.id, "tandem_broker_wal_last_lsn"))
			}
		}
		old, oldEpoch := c.waitLeader(30 * time.Second)
		fault := fmt.Sprintf("SIGKILL leader node %d (epoch %d)", old, oldEpoch)
		if i%2 == 0 {
			// Cut the leader off: both followers' sidecars die (SIGKILL,
			// so that nothing the leader sends is left in their sockets),
			// and what the leader appends now, compaction's copies
			// included, reaches no one and cannot commit. Kill the leader
			// once it has compacted again (and, were it not to wait for
			// the commit, deleted segments), then restart the followers'
			// sidecars: one of them is elected (they are still in the
			// published ISR), and the killed leader's copies are
			// truncated when it rejoins.
			followers := c.otherNodes(old)
			mark := len(c.node(old).broker.Log())
			for _, f := range followers {
				if err := c.node(f).side.Kill(); err != nil {
					t.Fatalf("SIGKILL sidecar %d: %v", f, err)
				}
			}
			cut := time.Now()
			saw := "no compaction"
			_ = testutil.Poll(1200*time.Millisecond, func() bool {
				log := c.node(old).broker.Log()[mark:]
				loc := cfCompactedLine.FindStringIndex(log)
				if loc == nil {
					return false
				}
				saw = "a compaction"
				if cfDeletedLine.MatchString(log[loc[1]:]) {
					saw = "a compaction and then a segment deletion"
					return true
				}
				return false
			})
			if cfCopiedLine.MatchString(c.node(old).broker.Log()[mark:]) {
				saw += " (copies of " + cfKept + " included)"
			}
			// The writes stop with the leader (until the check after
			// this fault): the new leader has no reason to compact soon,
			// so a node that lost batches with its truncated copies does
			// not get them back from the new leader's copies before it
			// is read.
			w.hold.Store(true)
			c.node(old).killPair()
			for _, f := range followers {
				c.node(f).side.MustRestart()
			}
			fault = fmt.Sprintf("SIGKILL followers' sidecars %v; %s after %v, having logged %s since; followers' sidecars restarted",
				followers, fault, time.Since(cut).Round(time.Millisecond), saw)
		} else {
			c.node(old).killPair()
		}
		lastKill = time.Now()
		var next int
		if err := testutil.Poll(20*time.Second, func() error {
			if next, _ = c.leaderNow(time.Second); next != 0 && next != old {
				return nil
			}
			return fmt.Errorf("no node other than the killed node %d leads", old)
		}); err != nil {
			// Possible only if the followers had left the published ISR
			// (a very slow machine): the killed node leads again once it
			// is back.
			fault += fmt.Sprintf("; no other node elected within 20s (%v)", err)
		} else {
			fault += fmt.Sprintf("; node %d elected after %v", next, time.Since(lastKill).Round(time.Millisecond))
		}
		c.node(old).startPair()
		leader = waitSettled("after restarting node " + strconv.Itoa(old))
		fault += fmt.Sprintf("; node %d restarted, all in sync at %v", old, since())
		t.Log("nemesis: " + fault)
		faults = append(faults, fault)
		midCheck(fault)
		w.hold.Store(false)
		if i == 3 {
			// A follower's broker alone: it replays its WAL (originals
			// and compacted copies) and rebuilds its index.
			f := c.otherNodes(leader)[rng.IntN(2)]
			c.node(f).broker.Kill()
			c.node(f).broker.MustRestart()
			testutil.WaitTCPFor(t, c.node(f).kafka, 20*time.Second)
			waitSettled("after restarting broker " + strconv.Itoa(f))
			fault = fmt.Sprintf("SIGKILL follower broker %d, restarted; all in sync at %v", f, since())
			t.Log("nemesis: " + fault)
			faults = append(faults, fault)
			midCheck(fault)
		}
	}
	time.Sleep(2 * time.Second) // the writers' last stretch without faults
	close(stopWriters)
	// The round in flight finishes (its writes acknowledged or failed)
	// before the end offset is read.
	<-writerDone
	<-keptDone
	writersStopped := since()

	// Settle: a leader, every node in sync and at its last LSN.
	leader = waitSettled("after the run")
	c.caughtUp(60*time.Second, leader, 1, 2, 3)
	admEnd := endOffsetOf(t, adm, cfTopic)
	// The end offsets: every node's own high watermark, once they agree.
	probe := kclient(t, c.kafkaAddrs())
	endEverywhere := func(topic string) int64 {
		t.Helper()
		var end int64
		var ends []string
		if err := testutil.Poll(30*time.Second, func() error {
			ends, end = nil, -1
			agree := true
			for _, n := range c.nodes {
				e, err := cfEndOn(t, probe, n.id, topic)
				if err != nil {
					return err
				}
				ends = append(ends, fmt.Sprintf("node %d: %d", n.id, e))
				agree = agree && (end < 0 || e == end)
				end = max(end, e)
			}
			if !agree {
				return fmt.Errorf("the nodes give different end offsets: %s", strings.Join(ends, ", "))
			}
			return nil
		}); err != nil {
			t.Fatalf("%s's end offset: %v", topic, err)
		}
		return end
	}
	end, keptEnd := endEverywhere(cfTopic), endEverywhere(cfKept)
	t.Logf("writers stopped at %v; node %d leads; %s ends at offset %d, %s at offset %d, on every node (%v)",
		writersStopped, leader, cfTopic, end, cfKept, keptEnd, since())
	if admEnd != end {
		t.Logf("note: kadm's ListEndOffsets, asked as soon as every node had the leader's last LSN, answered %d (the writer's last acknowledged offset is %d)",
			admEnd, w.ackedEnd()-1)
	}

	// Retention deleted, on every node, every segment written before the
	// first fault (the cold keys' writes among them): what was written
	// then is only in compaction's copies, made and replicated around the
	// failovers.
	firstAfter := map[int]float64{}
	if err := testutil.Poll(30*time.Second, func() error {
		for _, n := range c.nodes {
			first, err := brokerGauge(metrics[n.id], "tandem_broker_wal_first_lsn")
			if err != nil {
				return err
			}
			firstAfter[n.id] = first
			if first <= preFaultLSN {
				return fmt.Errorf("node %d's WAL still starts at LSN %.0f, at or before LSN %.0f where the WALs ended before the first fault (the cold keys' writes ended at LSN %.0f)",
					n.id, first, preFaultLSN, coldEndLSN)
			}
		}
		return nil
	}); err != nil {
		t.Fatalf("retention did not delete the segments of the first writes on every node: %v", err)
	}

	// Every node serves the latest committed value of every key.
	w.mu.Lock()
	acked, attempted, rounds, failedRounds, clients := w.acked, w.attempted, w.rounds, w.failed, w.clients
	firstErr := w.firstErr
	withAck := 0
	for _, ks := range w.keys {
		if ks.acked > 0 {
			withAck++
		}
	}
	w.mu.Unlock()
	// Retention (and so compaction) goes on after the writers stop, until
	// the WAL is back under log.retention.bytes; what a node serves
	// changes with every round. The per-key checks hold at any time; the
	// comparison of the nodes' records needs a WAL that does not move
	// while they are read.
	lastLSNs := func() (string, error) {
		var out []string
		for _, n := range c.nodes {
			v, err := brokerGauge(metrics[n.id], "tandem_broker_wal_last_lsn")
			if err != nil {
				return "", err
			}
			out = append(out, fmt.Sprintf("node %d at LSN %.0f", n.id, v))
		}
		return strings.Join(out, ", "), nil
	}
	waitQuiet := func() string {
		t.Helper()
		var seen string
		var quietSince time.Time
		if err := testutil.Poll(30*time.Second, func() error {
			now, err := lastLSNs()
			switch {
			case err != nil:
				return err
			case now != seen:
				seen, quietSince = now, time.Now()
				return fmt.Errorf("WAL moved: %s", now)
			case time.Since(quietSince) < 1500*time.Millisecond:
				return fmt.Errorf("WAL quiet for only %v: %s", time.Since(quietSince), now)
			}
			return nil
		}); err != nil {
			t.Fatalf("the WALs did not stop moving within 30s of the writers stopping: %v", err)
		}
		return seen
	}
	var views map[int][]compactedRecord
	var allProbs []string
	var readWhen string
	for attempt := 1; ; attempt++ {
		before := waitQuiet()
		views, allProbs = map[int][]compactedRecord{}, nil
		keyProbs := 0 // problems that do not depend on when the nodes were read
		for _, n := range c.nodes {
			franz := franzCompactedRead(t, c, n.id, cfTopic, end)
			kc := kcatCompactedRead(t, c, n.id, cfTopic, "beginning")
			views[n.id] = franz
			for _, v := range []struct {
				client string
				recs   []compactedRecord
			}{{"franz-go", franz}, {"kcat", kc}} {
				probs := w.problems(v.recs, true)
				for _, p := range probs {
					allProbs = append(allProbs, fmt.Sprintf("node %d (%s, %d records read): %s", n.id, v.client, len(v.recs), p))
					keyProbs++
				}
			}
			if fmt.Sprint(franz) != fmt.Sprint(kc) {
				allProbs = append(allProbs, fmt.Sprintf("node %d: franz-go read %d records, kcat %d, not the same ones%s",
					n.id, len(franz), len(kc), cfFirstDiff(franz, kc)+cfOffsetDiff("franz-go", franz, "kcat", kc)))
			}
		}
		after, err := lastLSNs()
		readWhen = fmt.Sprintf("read with the WALs at %s before and %s after (%v)", before, after, err)
		if keyProbs > 0 || (err == nil && after == before) {
			t.Logf("read every node (%s) (%v)", readWhen, since())
			break
		}
		if attempt == 3 {
			t.Fatalf("the WALs moved while the nodes were read, three times (before: %s; after: %s, %v)", before, after, err)
		}
		t.Logf("the WALs moved while the nodes were read (before: %s; after: %s, %v); reading again", before, after, err)
	}
	// Every acknowledged write was given an offset of its own, below the
	// end offset (nothing else writes the topic).
	w.mu.Lock()
	for _, col := range w.collisions {
		allProbs = append(allProbs, "two acknowledged writes, one offset: "+col)
	}
	var beyond []string
	for off, a := range w.ackedAt {
		if off >= end {
			beyond = append(beyond, fmt.Sprintf("offset %d (%v)", off, a))
		}
	}
	if len(beyond) > 0 {
		sort.Strings(beyond)
		allProbs = append(allProbs, fmt.Sprintf("%d acknowledged writes were given offsets at or past the end offset %d: %s",
			len(beyond), end, strings.Join(beyond[:min(len(beyond), 10)], "; ")))
	}
	if n := int64(len(w.ackedAt)); n > end {
		allProbs = append(allProbs, fmt.Sprintf("%d acknowledged writes (%d distinct offsets) but the topic ends at offset %d", w.acked, n, end))
	}
	w.mu.Unlock()
	for _, n := range c.nodes[1:] {
		if fmt.Sprint(views[n.id]) != fmt.Sprint(views[1]) {
			allProbs = append(allProbs, fmt.Sprintf("node %d serves %d records, node 1 serves %d, not the same ones%s",
				n.id, len(views[n.id]), len(views[1]), cfFirstDiff(views[1], views[n.id])+
					cfOffsetDiff("node 1", views[1], fmt.Sprintf("node %d", n.id), views[n.id])))
		}
	}
	// Every node serves every record of the retention.ms=-1 topic, from
	// offset 0 (its log start offset) to its end, acknowledged writes at
	// the offsets the producer was given: its batches below the segments
	// retention deleted were copied forward, and those copies survived
	// the failovers. Nothing compacts it: it is read once.
	kw.mu.Lock()
	keptProbs := slices.Clone(kw.collisions)
	keptAcked, keptAttempted, keptRounds, keptFailed, keptClients := kw.acked, kw.attempted, kw.rounds, kw.failed, kw.clients
	keptFirstErr := kw.firstErr
	var keptBeyond []int64
	for off := range kw.ackedAt {
		if off >= keptEnd {
			keptBeyond = append(keptBeyond, off)
		}
	}
	kw.mu.Unlock()
	if len(keptBeyond) > 0 {
		slices.Sort(keptBeyond)
		keptProbs = append(keptProbs, fmt.Sprintf("%d acknowledged writes were given offsets at or past the end offset %d: %s",
			len(keptBeyond), keptEnd, cfRanges(keptBeyond)))
	}
	keptViews := map[int][]compactedRecord{}
	for _, n := range c.nodes {
		franz, _, lsProbs := keptReadOn(n.id, keptEnd)
		keptProbs = append(keptProbs, lsProbs...)
		kc := kcatCompactedRead(t, c, n.id, cfKept, "beginning")
		keptViews[n.id] = franz
		for _, v := range []struct {
			client string
			recs   []compactedRecord
		}{{"franz-go", franz}, {"kcat", kc}} {
			for _, p := range kw.problems(v.recs, keptEnd) {
				keptProbs = append(keptProbs, fmt.Sprintf("node %d (%s, %d records read): %s", n.id, v.client, len(v.recs), p))
			}
		}
		if fmt.Sprint(franz) != fmt.Sprint(kc) {
			keptProbs = append(keptProbs, fmt.Sprintf("node %d: franz-go read %d records, kcat %d, not the same ones%s",
				n.id, len(franz), len(kc), cfFirstDiff(franz, kc)))
		}
	}
	for _, n := range c.nodes[1:] {
		if fmt.Sprint(keptViews[n.id]) != fmt.Sprint(keptViews[1]) {
			keptProbs = append(keptProbs, fmt.Sprintf("node %d serves %d records, node 1 serves %d, not the same ones%s",
				n.id, len(keptViews[n.id]), len(keptViews[1]), cfFirstDiff(keptViews[1], keptViews[n.id])))
		}
	}
	t.Logf("read %s on every node (%v)", cfKept, since())

	if len(allProbs) > 0 || len(keptProbs) > 0 {
		t.Logf("broker logs:\n%s", cfLogDigest(c, 60))
		var parts []string
		if len(allProbs) > 0 {
			shown := allProbs
			if len(shown) > 40 {
				shown = append(shown[:40:40], fmt.Sprintf("... and %d more", len(allProbs)-40))
			}
			parts = append(parts, fmt.Sprintf("the compacted topic is wrong (%d problems; %s):\n  %s",
				len(allProbs), readWhen, strings.Join(shown, "\n  ")))
		}
		if len(keptProbs) > 0 {
			shown := keptProbs
			if len(shown) > 40 {
				shown = append(shown[:40:40], fmt.Sprintf("... and %d more", len(keptProbs)-40))
			}
			parts = append(parts, fmt.Sprintf("the retention.ms=-1 topic %s is wrong (%d problems; %d acknowledged writes, seq 1..%d attempted, end offset %d):\n  %s",
				cfKept, len(keptProbs), keptAcked, keptAttempted, keptEnd, strings.Join(shown, "\n  ")))
		}
		t.Fatalf("after %d acknowledged writes to %d keys, %d to %s, and %d faults (%s), %s",
			acked, withAck, keptAcked, cfKept, len(faults), strings.Join(faults, " | "), strings.Join(parts, "\n"))
	}
	t.Logf("every node serves all %d records of %s (%d acknowledged) at offsets 0..%d, from log start offset 0 (%v)",
		len(keptViews[leader]), cfKept, keptAcked, keptEnd-1, since())
	t.Logf("every node serves the latest committed value of all %d keys with acknowledged writes (%d records at offsets 0..%d) (%v)",
		withAck, len(views[leader]), end-1, since())

	// The replicas are identical.
	verifyAfterRetention(t, c, leader, "after the run")

	// The leaders compacted, and retention deleted segments, all along.
	scrapeAll()
	cancel()
	wg.Wait()
	var sumBatches, sumRemoved, sumDeleted, sumCopied float64
	var logRounds, logBatches, logRemoved, copyRounds, logCopied int
	var logCopiedBytes int64
	for _, n := range c.nodes {
		sumBatches += batches[n.id].total()
		sumRemoved += removed[n.id].total()
		sumDeleted += deletedSegs[n.id].total()
		sumCopied += copied[n.id].total()
		r, b, rm := cfLogCompactions(n.broker.Log())
		logRounds, logBatches, logRemoved = logRounds+r, logBatches+b, logRemoved+rm
		cr, cb, cby := cfLogCopies(n.broker.Log())
		copyRounds, logCopied, logCopiedBytes = copyRounds+cr, logCopied+cb, logCopiedBytes+cby
	}
	if sumBatches == 0 || logBatches == 0 || logRemoved == 0 {
		t.Errorf("the leaders did not compact: tandem_broker_compacted_batches_total summed over nodes and runs %.0f, logged %d batches and %d removed records; want > 0",
			sumBatches, logBatches, logRemoved)
	}
	if sumCopied == 0 || logCopied == 0 {
		t.Errorf("the leaders did not copy %s's batches forward: tandem_broker_retention_copied_batches_total summed over nodes and runs %.0f, logged %d batches; want > 0",
			cfKept, sumCopied, logCopied)
	}
	if got := int(elections.Load()); got < cfKills {
		t.Errorf("%d leader elections seen, want at least %d (one per kill)", got, cfKills)
	}
	for _, n := range c.nodes {
		for _, p := range []*testutil.Process{n.broker, n.side} {
			if log := p.Log(); strings.Contains(log, "panic:") || strings.Contains(log, "WARNING: DATA RACE") {
				t.Errorf("%s's log shows a panic or race:\n%s", p.Name(), tail(log, 40))
			}
		}
	}
	moved := map[int]string{}
	for _, n := range c.nodes {
		moved[n.id] = fmt.Sprintf("%.0f->%.0f", firstBefore[n.id], firstAfter[n.id])
	}
	monMu.Lock()
	t.Logf("leaders: %s", strings.Join(leaders, ", "))
	monMu.Unlock()
	t.Logf("figures: run %v (writers %v); %d reads of a node during the run (after each fault, every node); compacted topic: %d rounds, %d writes attempted, %d acknowledged, %d rounds failed (first error %q), %d producer clients, end offset %d; retention.ms=-1 topic: %d rounds, %d writes attempted, %d acknowledged, %d rounds failed (first error %q), %d producer clients, end offset %d; filler %.1f MB (%d records failed); %d faults, %d leader kills, %d elections; compaction: %d rounds logged, %d batches rewritten (metrics %.0f), %d records removed (metrics %.0f); copies: %d rounds logged, %d batches copied forward (metrics %.0f), %.1f MB; %.0f WAL segments deleted by retention; WAL first LSN per node %v (writers started at LSN %.0f, cold writes ended at LSN %.0f, the first fault came at LSN %.0f)",
		since(), writersStopped, midReads, rounds, attempted, acked, failedRounds, firstErr, clients, end,
		keptRounds, keptAttempted, keptAcked, keptFailed, keptFirstErr, keptClients, keptEnd,
		float64(fillBytes.Load())/1e6, fillErrs.Load(), len(faults), cfKills, elections.Load(),
		logRounds, logBatches, sumBatches, logRemoved, sumRemoved, copyRounds, logCopied, sumCopied, float64(logCopiedBytes)/1e6,
		sumDeleted, moved, startLSN, coldEndLSN, preFaultLSN)
}

// cfOffsetDiff describes which offsets one read of the topic has and the
// other lacks (as ranges, with the keys and sequences at the first ones).
func cfOffsetDiff(aName string, a []compactedRecord, bName string, b []compactedRecord) string {
	only := func(x, y []compactedRecord) []compactedRecord {
		in := map[int64]bool{}
		for _, r := range y {
			in[r.Offset] = true
		}
		var out []compactedRecord
		for _, r := range x {
			if !in[r.Offset] {
				out = append(out, r)
			}
		}
		return out
	}
	show := func(rs []compactedRecord) string {
		if len(rs) == 0 {
			return "none"
		}
		var ranges []string
		for i := 0; i < len(rs); {
			j := i
			for j+1 < len(rs) && rs[j+1].Offset == rs[j].Offset+1 {
				j++
			}
			ranges = append(ranges, fmt.Sprintf("%d-%d", rs[i].Offset, rs[j].Offset))
			i = j + 1
		}
		if len(ranges) > 30 {
			ranges = append(ranges[:30:30], fmt.Sprintf("... (%d ranges)", len(ranges)))
		}
		var first []string
		for _, r := range rs[:min(len(rs), 5)] {
			_, seq, _ := parseCf(r)
			first = append(first, fmt.Sprintf("%s seq %d@%d", r.Key, seq, r.Offset))
		}
		return fmt.Sprintf("%d records at offsets %s (first: %s)", len(rs), strings.Join(ranges, " "), strings.Join(first, ", "))
	}
	return fmt.Sprintf("; only %s has %s; only %s has %s", aName, show(only(a, b)), bName, show(only(b, a)))
}

// cfFirstDiff describes where two reads of the topic first differ.
func cfFirstDiff(a, b []compactedRecord) string {
	for i := range min(len(a), len(b)) {
		if a[i].String() != b[i].String() {
			return fmt.Sprintf(": first difference at index %d: %.60s vs %.60s", i, a[i], b[i])
		}
	}
	if len(a) != len(b) {
		longer := a
		if len(b) > len(a) {
			longer = b
		}
		n := min(len(a), len(b))
		var extra []string
		for _, r := range longer[n:min(len(longer), n+5)] {
			extra = append(extra, fmt.Sprintf("%.60s", r))
		}
		return fmt.Sprintf(": the longer one goes on with %s", strings.Join(extra, "; "))
	}
	return ""
}

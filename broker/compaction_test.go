package broker

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// stored is one record as a consumer reads it back.
type stored struct {
	offset int64
	key    string
	value  string // "<nil>" for a tombstone
}

func (s stored) String() string { return fmt.Sprintf("%d:%s=%s", s.offset, s.key, s.value) }

// readTopic consumes a one-partition topic from its start up to its log end
// offset, as read_committed or read_uncommitted.
func readTopic(t *testing.T, addr, topic string, committed bool) []stored {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	adm := kadm.NewClient(newClient(t, addr))
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	end, _ := ends.Lookup(topic, 0)
	if end.Err != nil {
		t.Fatal(end.Err)
	}
	iso := kgo.ReadUncommitted()
	if committed {
		iso = kgo.ReadCommitted()
	}
	cl := newClient(t, addr, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(iso))
	var got []stored
	for last := int64(-1); last < end.Offset-1; {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("%s: read up to offset %d of %d before the deadline: %v", topic, last, end.Offset, got)
		}
		fs.EachError(func(_ string, _ int32, err error) { t.Fatalf("%s: fetch: %v", topic, err) })
		fs.EachRecord(func(r *kgo.Record) {
			v := string(r.Value)
			if r.Value == nil {
				v = "<nil>"
			}
			got = append(got, stored{r.Offset, string(r.Key), v})
			last = r.Offset
		})
	}
	return got
}

// compactTopic creates a one-partition compacted topic.
func compactTopic(t *testing.T, adm *kadm.Client, name string, configs map[string]string) {
	t.Helper()
	c := map[string]string{"cleanup.policy": "compact"}
	for k, v := range configs {
		c[k] = v
	}
	createTopicWith(t, adm, name, c)
}

// latestByKey is what compaction must leave of what was written: the
// latest record of every key, in offset order.
func latestByKey(written []stored) []stored {
	last := map[string]stored{}
	for _, s := range written {
		last[s.key] = s
	}
	var out []stored
	for _, s := range last {
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b stored) int { return int(a.offset - b.offset) })
	return out
}

// writeTable writes rounds of every key to a topic, each round through a
// producer of another compression codec, and returns what it wrote with
// the offsets the broker gave. Key k3 ends with a tombstone.
func writeTable(ctx context.Context, t *testing.T, addr, topic string, keys, rounds int) []stored {
	t.Helper()
	codecs := []kgo.CompressionCodec{kgo.NoCompression(), kgo.GzipCompression(), kgo.SnappyCompression(), kgo.Lz4Compression(), kgo.ZstdCompression()}
	var written []stored
	for r := 0; r < rounds; r++ {
		cl := newClient(t, addr, kgo.DefaultProduceTopic(topic), kgo.ProducerBatchCompression(codecs[r%len(codecs)]), kgo.ProducerLinger(0))
		var recs []*kgo.Record
		for k := 0; k < keys; k++ {
			rec := &kgo.Record{Key: fmt.Appendf(nil, "k%d", k), Value: fmt.Appendf(nil, "v%d-%d-%s", k, r, strings.Repeat("x", 200))}
			if r == rounds-1 && k == 3 {
				rec.Value = nil
			}
			recs = append(recs, rec)
		}
		res := cl.ProduceSync(ctx, recs...)
		if err := res.FirstErr(); err != nil {
			t.Fatal(err)
		}
		for _, pr := range res {
			v := string(pr.Record.Value)
			if pr.Record.Value == nil {
				v = "<nil>"
			}
			written = append(written, stored{pr.Record.Offset, string(pr.Record.Key), v})
		}
		cl.Close()
	}
	slices.SortFunc(written, func(a, b stored) int { return int(a.offset - b.offset) })
	return written
}

// A compacted topic keeps the latest record of every key, at its original
// offset, when retention deletes the WAL segments its records were written
// to; a topic with cleanup.policy=delete in the same segments loses them.
// Every codec's batches are filtered and recompressed; a tombstone stays
// for delete.retention.ms and goes after it. It all holds after a restart,
// which replays the rewritten batches without the originals. A record
// without a key is refused.
func TestCompactionKeepsLatestRecordOfEachKey(t *testing.T) {
	dir := t.TempDir()
	segBytes := func(c *Config) { c.SegmentBytes = 1 << 20 }
	b, addr := startBrokerWith(t, dir, segBytes)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cl := newClient(t, addr)
	adm := kadm.NewClient(cl)
	compactTopic(t, adm, "table", map[string]string{"delete.retention.ms": fmt.Sprint(int64(365 * 24 * time.Hour / time.Millisecond))})
	compactTopic(t, adm, "table-tombstones-expire", nil)
	compactTopic(t, adm, "table-lagged", map[string]string{"min.compaction.lag.ms": fmt.Sprint(int64(365 * 24 * time.Hour / time.Millisecond))})
	createTopic(t, cl, "plain", 1)
	createTopic(t, cl, "busy", 1)

	table := writeTable(ctx, t, addr, "table", 20, 6)
	expiring := writeTable(ctx, t, addr, "table-tombstones-expire", 5, 3)
	if err := newClient(t, addr, kgo.DefaultProduceTopic("plain")).ProduceSync(ctx, kgo.KeyStringRecord("a", "1")).FirstErr(); err != nil {
		t.Fatal(err)
	}
	// k0 once more, so that the batch with k3's tombstone is not the
	// partition's last (compaction keeps that one whole).
	table = append(table, writeTable(ctx, t, addr, "table", 1, 1)...)
	expiring = append(expiring, writeTable(ctx, t, addr, "table-tombstones-expire", 1, 1)...)
	// Records younger than min.compaction.lag.ms are not compacted.
	lagged := writeTable(ctx, t, addr, "table-lagged", 5, 3)
	if got := readTopic(t, addr, "table", false); len(got) != len(table) {
		t.Fatalf("before retention the table holds %d records; want all %d written", len(got), len(table))
	}
	lastLSN := b.wal.LastLSN()

	fillAndRetain(ctx, t, b, addr, "the tables' original batches")
	if first := b.wal.FirstLSN(); first <= lastLSN {
		t.Fatalf("retention kept the WAL from LSN %d; the test needs the tables' batches (up to LSN %d) deleted", first, lastLSN)
	}
	want := latestByKey(table)
	var wantExpiring []stored
	for _, s := range latestByKey(expiring) {
		if s.value != "<nil>" {
			wantExpiring = append(wantExpiring, s)
		}
	}
	check := func(when string) {
		t.Helper()
		if got := readTopic(t, addr, "table", false); !slices.Equal(got, want) {
			t.Fatalf("%s, the compacted table holds\n%v\nwant the latest record of each key\n%v", when, got, want)
		}
		if got := readTopic(t, addr, "table-tombstones-expire", false); !slices.Equal(got, wantExpiring) {
			t.Fatalf("%s, the table whose tombstones expired holds\n%v\nwant\n%v", when, got, wantExpiring)
		}
		if got := readTopic(t, addr, "table-lagged", false); !slices.Equal(got, lagged) {
			t.Fatalf("%s, the table with min.compaction.lag.ms of a year holds\n%v\nwant every record\n%v", when, got, lagged)
		}
		if start, _, next := b.partition("table", 0).watermarks(); start != 0 || next != table[len(table)-1].offset+1 {
			t.Fatalf("%s, the table has log start %d and log end %d; want 0 and %d", when, start, next, table[len(table)-1].offset+1)
		}
		if start, _, next := b.partition("plain", 0).watermarks(); start != 1 || next != 1 {
			t.Fatalf("%s, the delete-policy topic has log start %d and log end %d; want its record deleted (1, 1)", when, start, next)
		}
	}
	check("after retention")
	if !slices.ContainsFunc(want, func(s stored) bool { return s.key == "k3" && s.value == "<nil>" }) {
		t.Fatalf("the table's expected contents lack k3's tombstone: %v", want)
	}

	// A record without a key is refused, as Kafka refuses it.
	err := newClient(t, addr, kgo.DefaultProduceTopic("table"), kgo.RecordRetries(0)).ProduceSync(ctx, kgo.StringRecord("no key")).FirstErr()
	if !errors.Is(err, kerr.InvalidRecord) {
		t.Fatalf("a keyless record on a compacted topic got %v; want INVALID_RECORD", err)
	}

	cl.Close()
	b.Close()
	b, addr = startBrokerWith(t, dir, segBytes)
	check("after a restart")

	// A second round copies the rewritten batches forward again: nothing
	// is lost when their own segment goes.
	lastLSN = b.wal.LastLSN()
	fillAndRetain(ctx, t, b, addr, "the first round's rewritten batches")
	if first := b.wal.FirstLSN(); first <= lastLSN {
		t.Fatalf("retention kept the WAL from LSN %d; the test needs it past %d", first, lastLSN)
	}
	check("after a second round")
}

// Compaction leaves out aborted transactional records and transaction
// markers, and a record that a later aborted one would have replaced is
// kept; committed transactional records are compacted like any other.
func TestCompactionWithTransactions(t *testing.T) {
	dir := t.TempDir()
	b, addr := startBrokerWith(t, dir, func(c *Config) { c.SegmentBytes = 1 << 20 })
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cl := newClient(t, addr)
	compactTopic(t, kadm.NewClient(cl), "table", nil)
	createTopic(t, cl, "busy", 1)

	txn := newClient(t, addr, kgo.DefaultProduceTopic("table"), kgo.TransactionalID("compaction-test"))
	run := func(commit bool, recs ...*kgo.Record) {
		t.Helper()
		if err := txn.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		if err := txn.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
		if err := txn.EndTransaction(ctx, kgo.TransactionEndTry(commit)); err != nil {
			t.Fatal(err)
		}
	}
	run(true, kgo.KeyStringRecord("a", "a1"), kgo.KeyStringRecord("b", "b1"))
	run(false, kgo.KeyStringRecord("a", "a2-aborted"), kgo.KeyStringRecord("c", "c1-aborted"))
	run(true, kgo.KeyStringRecord("b", "b2"))
	plain := newClient(t, addr, kgo.DefaultProduceTopic("table"))
	if err := plain.ProduceSync(ctx, kgo.KeyStringRecord("d", "d1")).FirstErr(); err != nil {
		t.Fatal(err)
	}
	lastLSN := b.wal.LastLSN()
	fillAndRetain(ctx, t, b, addr, "the transactions' batches")
	if first := b.wal.FirstLSN(); first <= lastLSN {
		t.Fatalf("retention kept the WAL from LSN %d; the test needs the table's batches (up to LSN %d) deleted", first, lastLSN)
	}
	// Offsets: a1 0, b1 1, marker 2, a2 3, c1 4, marker 5, b2 6, marker 7, d1 8.
	want := []stored{{0, "a", "a1"}, {6, "b", "b2"}, {8, "d", "d1"}}
	for _, committed := range []bool{false, true} {
		if got := readTopic(t, addr, "table", committed); !slices.Equal(got, want) {
			t.Fatalf("read_committed=%v: the compacted table holds %v; want %v", committed, got, want)
		}
	}
}

// A follower applies the leader's rewritten batches and serves the same
// records. Until it has them, its own retention keeps the segments its
// compacted partitions point into, whatever log.retention.bytes says.
func TestCompactionOnFollower(t *testing.T) {
	leader, addr := startBrokerWith(t, t.TempDir(), func(c *Config) { c.SegmentBytes = 1 << 20 })
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cl := newClient(t, addr)
	compactTopic(t, kadm.NewClient(cl), "table", nil)
	createTopic(t, cl, "busy", 1)
	table := writeTable(ctx, t, addr, "table", 10, 4)
	f := retainOnFollower(ctx, t, leader, addr, "the table")

	var keys []stored
	for _, s := range latestByKey(table) {
		v := "?"
		if s.value == "<nil>" {
			v = s.value
		}
		keys = append(keys, stored{s.offset, s.key, v})
	}
	for _, br := range []*Broker{leader, f} {
		if got := servedRecords(t, br, "table"); !slices.Equal(got, keys) {
			t.Fatalf("node %d serves %v; want %v", br.cfg.NodeID, got, keys)
		}
	}
}

// retainOnFollower checks a follower's retention against what the leader
// at addr (with a "busy" topic) holds of a compacted or long-retention
// topic (what) in its WAL so far: a follower that deletes every sealed
// segment it may keeps those that hold the topic's batches until it has
// the leader's rewrites, then deletes them. It returns the follower.
func retainOnFollower(ctx context.Context, t *testing.T, leader *Broker, addr, what string) *Broker {
	t.Helper()
	lastLSN := leader.wal.LastLSN()
	cfg := DefaultConfig()
	cfg.NodeID = 2
	cfg.DataDir = t.TempDir()
	cfg.Listen = "127.0.0.1:0"
	cfg.SegmentBytes = 1 << 20
	cfg.RetentionBytes = 0                                      // delete every sealed segment it may
	cfg.SidecarSocket = filepath.Join(t.TempDir(), "none.sock") // follower role, never attached
	cfg.Logger = hclog.New(&hclog.LoggerOptions{Name: "follower", Output: testWriter{t}})
	f, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })

	// The follower has the topic's original batches and 3.5 MB more.
	prod := newClient(t, addr, kgo.DefaultProduceTopic("busy"), kgo.ProducerLinger(0), kgo.ProducerBatchCompression(kgo.NoCompression()))
	for i := 0; i < 350; i++ {
		if err := prod.ProduceSync(ctx, kgo.StringRecord(strings.Repeat("x", 10<<10))).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	follow(t, f, leader)
	f.SetCommitLSN(f.wal.LastLSN())
	if _, err := f.enforceRetention(time.Now()); err != nil {
		t.Fatal(err)
	}
	if first := f.wal.FirstLSN(); first > 1 {
		t.Fatalf("the follower's retention deleted its WAL up to LSN %d, which holds %s's only batches", first-1, what)
	}

	// The leader rewrites and deletes; the follower applies the
	// rewrites, then deletes too.
	if n, err := leader.enforceRetention(time.Now().Add(30 * 24 * time.Hour)); err != nil || n == 0 {
		t.Fatalf("leader retention deleted %d segments (%v)", n, err)
	}
	follow(t, f, leader)
	f.SetCommitLSN(f.wal.LastLSN())
	if n, err := f.enforceRetention(time.Now()); err != nil || n == 0 {
		t.Fatalf("follower retention deleted %d segments (%v) once it had the rewritten batches", n, err)
	}
	if first := f.wal.FirstLSN(); first <= lastLSN {
		t.Fatalf("the follower kept its WAL from LSN %d; the test needs %s's batches (up to LSN %d) deleted", first, what, lastLSN)
	}
	return f
}

// servedRecords reads partition 0 of a topic from a broker's own index up
// to its high watermark (a follower that takes no client here too): each
// record's offset, key and value, given as "?" unless it is a tombstone.
func servedRecords(t *testing.T, br *Broker, topic string) []stored {
	t.Helper()
	snap, _ := br.topicSnap(topic)
	p := snap.partitions[0]
	_, hw, _ := p.watermarks()
	data, err := br.readBatches(p, 0, hw, 1<<30, true)
	if err != nil {
		t.Fatal(err)
	}
	var got []stored
	for len(data) > 0 {
		info, err := parseBatch(data)
		if err != nil {
			t.Fatal(err)
		}
		n := 12 + int(binary.BigEndian.Uint32(data[8:12]))
		if err := eachRecord(data[:n], info, 1<<30, func(r record) {
			v := "<nil>"
			if !r.tombstone {
				v = "?"
			}
			got = append(got, stored{info.baseOffset + int64(r.offsetDelta), string(r.key), v})
		}); err != nil {
			t.Fatal(err)
		}
		data = data[n:]
	}
	return got
}

// fuzzBatch wraps a records section, compressed with codec, in a batch
// header claiming n records.
func fuzzBatch(codec int16, data []byte, n int32) []byte {
	rb := kmsg.RecordBatch{PartitionLeaderEpoch: -1, Magic: 2, Attributes: codec, LastOffsetDelta: n - 1,
		ProducerID: -1, ProducerEpoch: -1, FirstSequence: -1, NumRecords: n, Records: data}
	raw := rb.AppendTo(nil)
	sealBatch(raw)
	return raw
}

// FuzzCompactFilter feeds arbitrary records sections, with any codec and
// record count, to compaction's filter, keeping the records a mask picks.
// It must never panic; when the batch's records parse, the filtered batch
// must be a valid batch (length, CRC) holding exactly the kept records,
// byte for byte, compressed with the same codec.
func FuzzCompactFilter(f *testing.F) {
	for _, s := range fuzzSeedRecords(f) {
		f.Add(s.codec, s.data, s.records, uint64(0b10110))
	}
	f.Fuzz(func(t *testing.T, codec uint8, data []byte, records int32, mask uint64) {
		c := int16(codec & 0x07)
		if records < 0 || records > 1000 {
			return
		}
		raw := fuzzBatch(c, data, records)
		info, err := parseBatch(raw)
		if err != nil {
			t.Fatalf("the header the test built does not parse: %v", err)
		}
		var all []record
		if eachRecord(raw, info, fuzzRecordsLimit, func(r record) { all = append(all, r) }) != nil {
			// Records that do not parse: the filter must fail too, not panic.
			if _, err := filterBatch(raw, info, fuzzRecordsLimit, func(record) bool { return true }, new(int64)); err == nil && records > 0 {
				t.Fatal("the filter accepted records that do not parse")
			}
			return
		}
		i := 0
		var want [][]byte
		keep := func(r record) bool {
			k := mask&(1<<(i%64)) != 0
			i++
			if k {
				want = append(want, append([]byte(nil), r.raw...))
			}
			return k
		}
		var removed int64
		out, err := filterBatch(raw, info, fuzzRecordsLimit, keep, &removed)
		if err != nil {
			t.Fatalf("filtering records that parse failed: %v", err)
		}
		if removed != int64(len(all)-len(want)) {
			t.Fatalf("removed %d of %d records, keeping %d", removed, len(all), len(want))
		}
		if int(binary.BigEndian.Uint32(out[8:12])) != len(out)-12 || crc32c(out[21:]) != binary.BigEndian.Uint32(out[17:21]) {
			t.Fatal("the filtered batch's length or CRC is wrong")
		}
		oi, err := parseBatch(out)
		if err != nil {
			t.Fatalf("the filtered batch does not parse: %v", err)
		}
		if oi.numRecords != int32(len(want)) || oi.lastOffsetDelta != info.lastOffsetDelta || (len(want) > 0 && oi.attributes&0x07 != c) {
			t.Fatalf("filtered batch: %d records, last offset delta %d, codec %d; want %d, %d, %d",
				oi.numRecords, oi.lastOffsetDelta, oi.attributes&0x07, len(want), info.lastOffsetDelta, c)
		}
		var got [][]byte
		if err := eachRecord(out, oi, fuzzRecordsLimit*2, func(r record) { got = append(got, append([]byte(nil), r.raw...)) }); err != nil {
			t.Fatalf("the filtered batch's records do not parse: %v", err)
		}
		if !slices.EqualFunc(got, want, bytes.Equal) {
			t.Fatalf("the filtered batch holds %d records that differ from the %d kept", len(got), len(want))
		}
	})
}

// BenchmarkCompaction measures one retention round that compacts a
// partition: 64 MiB of 1 KiB records (zstd batches of 100) over 10,000
// keys, written once and then overwritten, so that half the records go.
// It reports the rate at which the round reads the partition's batches
// that must move (MB/s of stored, compressed batches).
func BenchmarkCompaction(bm *testing.B) {
	// compact: a compacted topic, filtered and recompressed; forever: a
	// topic with retention.ms=-1, whose batches are copied whole.
	bm.Run("compact", func(bm *testing.B) { benchRetentionCopy(bm, "cleanup.policy", "compact") })
	bm.Run("forever", func(bm *testing.B) { benchRetentionCopy(bm, "retention.ms", "-1") })
}

// benchRetentionCopy times one retention round that must compact or copy
// forward a partition of 64 MiB of records (34 MB of zstd batches) whose
// topic has config key=value before it deletes its segments.
func benchRetentionCopy(bm *testing.B, key, value string) {
	for range bm.N {
		bm.StopTimer()
		b, addr := openBenchBroker(bm, func(c *Config) { c.SegmentBytes = 8 << 20 })
		ctx := context.Background()
		cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.DefaultProduceTopic("table"),
			kgo.ProducerBatchCompression(kgo.ZstdCompression()), kgo.ProducerLinger(5*time.Millisecond), kgo.ProducerBatchMaxBytes(128<<10))
		if err != nil {
			bm.Fatal(err)
		}
		resp, err := kadm.NewClient(cl).CreateTopic(ctx, 1, 1, map[string]*string{key: kadm.StringPtr(value)}, "table")
		if err == nil {
			err = resp.Err
		}
		if err != nil {
			bm.Fatal(err)
		}
		value := make([]byte, 1024)
		rng := rand.New(rand.NewPCG(1, 2))
		var recs []*kgo.Record
		for i := range 64 << 10 {
			for j := range 64 { // half random: compresses to about half
				binary.LittleEndian.PutUint64(value[8*j:], rng.Uint64())
			}
			recs = append(recs, &kgo.Record{Key: fmt.Appendf(nil, "key-%d", i%10000), Value: append([]byte(nil), value...)})
		}
		if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			bm.Fatal(err)
		}
		cl.Close()
		var before int64
		for _, s := range b.wal.Segments() {
			before += s.Bytes
		}
		bm.StartTimer()
		start := time.Now()
		n, err := b.enforceRetention(time.Now().Add(30 * 24 * time.Hour))
		el := time.Since(start)
		bm.StopTimer()
		if err != nil || n == 0 {
			bm.Fatalf("retention deleted %d segments (%v)", n, err)
		}
		bm.ReportMetric(float64(before)/1e6/el.Seconds(), "MB/s")
		bm.ReportMetric(float64(before)/1e6, "MB-of-WAL")
		if key == "cleanup.policy" {
			// A second round after a tenth more records: its key index
			// is the first round's, brought up to date.
			cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.DefaultProduceTopic("table"),
				kgo.ProducerBatchCompression(kgo.ZstdCompression()), kgo.ProducerLinger(5*time.Millisecond), kgo.ProducerBatchMaxBytes(128<<10))
			if err != nil {
				bm.Fatal(err)
			}
			if err := cl.ProduceSync(ctx, recs[:len(recs)/10]...).FirstErr(); err != nil {
				bm.Fatal(err)
			}
			cl.Close()
			start := time.Now()
			if n, err := b.enforceRetention(time.Now().Add(60 * 24 * time.Hour)); err != nil || n == 0 {
				bm.Fatalf("the second round deleted %d segments (%v)", n, err)
			}
			bm.ReportMetric(time.Since(start).Seconds(), "s/2nd-round")
		}
		b.Close()
	}
}

// The topics that Kafka Streams and Kafka Connect create for themselves,
// with the configs they set, are created as asked and described back, and
// a value out of Kafka's range is still refused.
func TestStreamsAndConnectInternalTopicConfigs(t *testing.T) {
	_, addr := startBroker(t, t.TempDir())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	adm := kadm.NewClient(newClient(t, addr))
	topics := map[string]map[string]string{
		// Streams: repartition, unwindowed and windowed changelog topics.
		"app-KSTREAM-AGGREGATE-STATE-STORE-0000000003-repartition": {
			"cleanup.policy": "delete", "segment.bytes": "52428800", "retention.ms": "-1", "message.timestamp.type": "CreateTime"},
		"app-store-changelog": {"cleanup.policy": "compact", "message.timestamp.type": "CreateTime"},
		"app-window-store-changelog": {
			"cleanup.policy": "compact,delete", "retention.ms": "172800000", "message.timestamp.type": "CreateTime"},
		// Connect's config, offset and status topics, with the tuning
		// people copy from Kafka's documentation.
		"connect-configs": {"cleanup.policy": "compact", "min.cleanable.dirty.ratio": "0.1", "segment.ms": "600000"},
		"connect-offsets": {"cleanup.policy": "compact", "max.compaction.lag.ms": "3600000", "delete.retention.ms": "100", "min.compaction.lag.ms": "0"},
	}
	for name, configs := range topics {
		c := map[string]*string{}
		for k, v := range configs {
			c[k] = kadm.StringPtr(v)
		}
		resp, err := adm.CreateTopic(ctx, 1, 1, c, name)
		if err == nil {
			err = resp.Err
		}
		if err != nil {
			t.Fatalf("create %s with %v: %v", name, configs, err)
		}
		rcs, err := adm.DescribeTopicConfigs(ctx, name)
		if err != nil || len(rcs) != 1 || rcs[0].Err != nil {
			t.Fatalf("describe %s: %v %+v", name, err, rcs)
		}
		for k, v := range configs {
			got := rcs[0].Configs
			i := slices.IndexFunc(got, func(c kadm.Config) bool { return c.Key == k })
			if i < 0 || got[i].Value == nil || *got[i].Value != v {
				t.Fatalf("%s: %s is not described as %s: %+v", name, k, v, got)
			}
		}
	}
	for k, v := range map[string]string{"segment.bytes": "13", "segment.ms": "0", "min.cleanable.dirty.ratio": "1.5",
		"max.compaction.lag.ms": "-1", "cleanup.policy": "compact,shred", "delete.retention.ms": "soon"} {
		resp, err := adm.CreateTopic(ctx, 1, 1, map[string]*string{k: kadm.StringPtr(v)}, "bad-"+strings.ReplaceAll(k, ".", "-"))
		if err == nil {
			err = resp.Err
		}
		if !errors.Is(err, kerr.InvalidConfig) {
			t.Fatalf("create with %s=%s: %v; want INVALID_CONFIG", k, v, err)
		}
	}
}

// With cleanup.policy=compact,delete (Kafka Streams' windowed changelogs),
// the topic's retention.ms removes records older than it even when they
// are the latest of their key, and compaction removes the older records of
// the keys written since; with compact alone, retention.ms is ignored.
func TestCompactDeletePolicy(t *testing.T) {
	b, addr := startBrokerWith(t, t.TempDir(), func(c *Config) { c.SegmentBytes = 1 << 20 })
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cl := newClient(t, addr)
	adm := kadm.NewClient(cl)
	compactTopic(t, adm, "windows", map[string]string{"cleanup.policy": "compact,delete", "retention.ms": "3600000"})
	compactTopic(t, adm, "table", map[string]string{"retention.ms": "3600000"})
	createTopic(t, cl, "busy", 1)

	old := time.Now().Add(-2 * time.Hour)
	write := func(topic string, ts time.Time, kv ...string) {
		t.Helper()
		p := newClient(t, addr, kgo.DefaultProduceTopic(topic))
		var recs []*kgo.Record
		for i := 0; i < len(kv); i += 2 {
			recs = append(recs, &kgo.Record{Key: []byte(kv[i]), Value: []byte(kv[i+1]), Timestamp: ts})
		}
		if err := p.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	for _, topic := range []string{"windows", "table"} {
		write(topic, old, "a", "a-old", "b", "b-old") // offsets 0, 1: two hours old
		write(topic, time.Now(), "b", "b-new")        // offset 2
		write(topic, time.Now(), "c", "c-new")        // offset 3
	}
	b.trimTopics(time.Now())
	fillAndRetain(ctx, t, b, addr, "the topics' batches")
	if got, want := readTopic(t, addr, "windows", false), []stored{{2, "b", "b-new"}, {3, "c", "c-new"}}; !slices.Equal(got, want) {
		t.Fatalf("compact,delete topic holds %v; want %v (a-old past retention.ms, b-old replaced)", got, want)
	}
	if got, want := readTopic(t, addr, "table", false), []stored{{0, "a", "a-old"}, {2, "b", "b-new"}, {3, "c", "c-new"}}; !slices.Equal(got, want) {
		t.Fatalf("compact topic with retention.ms holds %v; want %v (retention.ms ignored, b-old replaced)", got, want)
	}
}

// A compaction round keeps each partition's key index for the next, which
// then reads only the batches written since (not the whole partition
// again) and compacts exactly as a round that reads everything: later
// values replace earlier ones, new keys are kept, a tombstone that
// expires takes its key out of the index. A restart (or a new leader)
// builds the index anew.
func TestCompactionKeyIndexKeptBetweenRounds(t *testing.T) {
	dir := t.TempDir()
	segBytes := func(c *Config) { c.SegmentBytes = 1 << 20 }
	b, addr := startBrokerWith(t, dir, segBytes)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cl := newClient(t, addr)
	compactTopic(t, kadm.NewClient(cl), "table", nil) // tombstones expire after a day
	createTopic(t, cl, "busy", 1)
	written := writeTable(ctx, t, addr, "table", 20, 4)
	fillAndRetain(ctx, t, b, addr, "the table's first batches")
	p := b.partition("table", 0)
	// bytesFrom is the size of the partition's batches from offset from.
	bytesFrom := func(from int64) (n int64) {
		p.mu.RLock()
		defer p.mu.RUnlock()
		for _, r := range p.batches {
			if r.base >= from {
				n += int64(r.size)
			}
		}
		return n
	}
	round := func(when string) compactionStats {
		t.Helper()
		_, st, err := b.compactBefore(ctx, b.wal.LastLSN()+1, time.Now().Add(2*24*time.Hour))
		if err != nil {
			t.Fatalf("%s: %v", when, err)
		}
		return st
	}
	// What a reader must find: the latest record of every key, without
	// tombstones (compactBefore runs two days on: expired), once the
	// partition's last batch (kept whole) is past them.
	want := func() []stored {
		var out []stored
		for _, s := range latestByKey(written) {
			if s.value != "<nil>" {
				out = append(out, s)
			}
		}
		return out
	}

	// New values of half the keys, ten new keys, k3 deleted again, then
	// one more batch so that the tombstone's is not the last.
	since := written[len(written)-1].offset + 1
	written = append(written, writeTable(ctx, t, addr, "table", 30, 1)...)
	written = append(written, writeTable(ctx, t, addr, "table", 1, 1)...)
	newBytes, all := bytesFrom(since), bytesFrom(0)
	st := round("second round")
	if st.indexedBytes != newBytes {
		t.Fatalf("the second round read %d bytes to index the keys of a partition of %d bytes; want only the %d bytes written since the first round", st.indexedBytes, all, newBytes)
	}
	if got := readTopic(t, addr, "table", false); !slices.Equal(got, want()) {
		t.Fatalf("after the second round the table holds\n%v\nwant\n%v", got, want())
	}
	idx := b.keyIndexes.m[p]
	if idx == nil || idx.next != written[len(written)-1].offset+1 {
		t.Fatalf("the kept index is %+v; want one up to offset %d", idx, written[len(written)-1].offset+1)
	}
	if _, ok := idx.latest["k3"]; ok {
		t.Fatal("the index still holds k3, whose tombstone expired and was removed")
	}

	// k3 comes back; a restart builds the index from the whole partition.
	written = append(written, writeTable(ctx, t, addr, "table", 5, 1)...)
	written = append(written, writeTable(ctx, t, addr, "table", 1, 1)...)
	cl.Close()
	b.Close()
	b, addr = startBrokerWith(t, dir, segBytes)
	p = b.partition("table", 0)
	all = bytesFrom(0)
	if st := round("after a restart"); st.indexedBytes != all {
		t.Fatalf("after a restart the round indexed %d bytes; want the whole partition's %d", st.indexedBytes, all)
	}
	if got := readTopic(t, addr, "table", false); !slices.Equal(got, want()) {
		t.Fatalf("after a restart and a round the table holds\n%v\nwant\n%v", got, want())
	}
}

// The leader cleans a compacted partition as Kafka's log cleaner does,
// without waiting for retention to need its segments: once the batches
// written since its last cleaning make up min.cleanable.dirty.ratio of it
// (0.5 by default), or the oldest of them is older than
// max.compaction.lag.ms. Only the batches that lose records are
// rewritten, and nothing is deleted from the WAL.
func TestCompactionCleansBeforeRetention(t *testing.T) {
	b, addr := startBrokerWith(t, t.TempDir(), nil)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	adm := kadm.NewClient(newClient(t, addr))
	compactTopic(t, adm, "table", nil)
	compactTopic(t, adm, "eager", map[string]string{"min.cleanable.dirty.ratio": "0.01"})
	written := map[string][]stored{}
	for _, topic := range []string{"table", "eager"} {
		written[topic] = append(writeTable(ctx, t, addr, topic, 200, 4), writeTable(ctx, t, addr, topic, 1, 1)...)
	}
	check := func(when, topic string) {
		t.Helper()
		if got, want := readTopic(t, addr, topic, false), latestByKey(written[topic]); !slices.Equal(got, want) {
			t.Fatalf("%s, %s holds\n%v\nwant the latest record of each key\n%v", when, topic, got, want)
		}
	}

	// Everything is dirty: both are cleaned, nothing is deleted.
	b.cleanCompacted(time.Now())
	check("after the first cleaning", "table")
	check("after the first cleaning", "eager")
	if first := b.wal.FirstLSN(); first != 1 {
		t.Fatalf("cleaning deleted WAL segments (first LSN %d)", first)
	}
	last := b.wal.LastLSN()
	b.cleanCompacted(time.Now())
	if b.wal.LastLSN() != last {
		t.Fatalf("a cleaning with nothing written since the last one appended %d entries", b.wal.LastLSN()-last)
	}

	// Two small zstd batches more (the last one is never cleaned): a
	// dirty ratio well under 0.5, over 0.01.
	small := func(topic string, keys ...string) {
		t.Helper()
		p := newClient(t, addr, kgo.DefaultProduceTopic(topic), kgo.ProducerBatchCompression(kgo.ZstdCompression()), kgo.ProducerLinger(0))
		defer p.Close()
		var recs []*kgo.Record
		for _, k := range keys {
			recs = append(recs, &kgo.Record{Key: []byte(k), Value: []byte("again")})
		}
		if err := p.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			written[topic] = append(written[topic], stored{r.Offset, string(r.Key), "again"})
		}
	}
	for _, topic := range []string{"table", "eager"} {
		small(topic, "k0", "k1")
		small(topic, "k5")
	}
	b.cleanCompacted(time.Now())
	check("after the eager topic's second cleaning", "eager")
	// Not cleaned: the values k0, k1 and k5 had before are still there.
	if got := readTopic(t, addr, "table", false); len(got) != len(latestByKey(written["table"]))+3 {
		t.Fatalf("the table was cleaned below min.cleanable.dirty.ratio: it holds %d records, want %d (the old values of k0, k1 and k5 still there)",
			len(got), len(latestByKey(written["table"]))+3)
	}

	// max.compaction.lag.ms: dirty records older than it are cleaned
	// whatever the ratio.
	b.cleanCompacted(time.Now().Add(time.Hour))
	if got := readTopic(t, addr, "table", false); len(got) != len(latestByKey(written["table"]))+3 {
		t.Fatalf("the table was cleaned an hour on without max.compaction.lag.ms: it holds %d records", len(got))
	}
	res, err := adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Op: kadm.SetConfig, Name: "max.compaction.lag.ms", Value: kadm.StringPtr("60000")}}, "table")
	if err == nil {
		err = res[0].Err
	}
	if err != nil {
		t.Fatal(err)
	}
	b.cleanCompacted(time.Now().Add(time.Hour))
	check("an hour on, with max.compaction.lag.ms of a minute", "table")
	if first := b.wal.FirstLSN(); first != 1 {
		t.Fatalf("cleaning deleted WAL segments (first LSN %d)", first)
	}
}

// Compaction cleans only a prefix of a partition, as Kafka cleans below
// its first uncleanable offset: a batch younger than
// min.compaction.lag.ms (by its producer's timestamp) keeps every batch
// after it whole, so that an expired tombstone after it cannot go while
// it still holds an older value of the tombstone's key (which would then
// come back).
func TestCompactionCleansOnlyAPrefix(t *testing.T) {
	b, addr := startBrokerWith(t, t.TempDir(), func(c *Config) { c.SegmentBytes = 1 << 20 })
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cl := newClient(t, addr)
	compactTopic(t, kadm.NewClient(cl), "table", map[string]string{"min.compaction.lag.ms": "3600000", "delete.retention.ms": "1000", "min.cleanable.dirty.ratio": "0.01"})
	createTopic(t, cl, "busy", 1)
	p := newClient(t, addr, kgo.DefaultProduceTopic("table"), kgo.ProducerLinger(0))
	old := time.Now().Add(-48 * time.Hour)
	for _, r := range []*kgo.Record{
		{Key: []byte("k"), Value: []byte("v1"), Timestamp: time.Now()}, // young: uncleanable
		{Key: []byte("k"), Value: nil, Timestamp: old},                 // an expired tombstone after it
		{Key: []byte("z"), Value: []byte("last"), Timestamp: old},
	} {
		if err := p.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	want := []stored{{0, "k", "v1"}, {1, "k", "<nil>"}, {2, "z", "last"}}
	b.cleanCompacted(time.Now())
	if got := readTopic(t, addr, "table", false); !slices.Equal(got, want) {
		t.Fatalf("after cleaning, the table holds %v; want %v (nothing from the young batch on is cleaned)", got, want)
	}
	// Thirty days on, everything is cleanable: k goes whole.
	fillAndRetain(ctx, t, b, addr, "the table's batches")
	if got, want := readTopic(t, addr, "table", false), []stored{{2, "z", "last"}}; !slices.Equal(got, want) {
		t.Fatalf("after retention thirty days on, the table holds %v; want %v", got, want)
	}
}

// A round before retention cleans a compacted partition whole, not only
// the batches in the segments about to go: a copy of a batch that was kept
// whole for min.compaction.lag.ms when its segment went sits above those
// segments, and may hold an older value of a key whose expired tombstone
// is in them. The tombstone goes only with that value.
func TestCompactionBeforeRetentionCleansCopies(t *testing.T) {
	b, addr := startBrokerWith(t, t.TempDir(), nil)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	day := 24 * time.Hour
	compactTopic(t, kadm.NewClient(newClient(t, addr)), "table", map[string]string{
		"min.compaction.lag.ms": strconv.FormatInt(int64(10*day/time.Millisecond), 10), "delete.retention.ms": strconv.FormatInt(int64(day/time.Millisecond), 10)})
	p := newClient(t, addr, kgo.DefaultProduceTopic("table"), kgo.ProducerLinger(0))
	t0 := time.Now()
	lsns := map[string]uint64{}
	for _, r := range []*kgo.Record{
		{Key: []byte("k"), Value: []byte("v1"), Timestamp: t0},
		{Key: []byte("k"), Value: nil, Timestamp: t0.Add(day)}, // a tombstone
		{Key: []byte("z"), Value: []byte("last"), Timestamp: t0.Add(day)},
	} {
		if err := p.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatal(err)
		}
		lsns[string(r.Key)+string(r.Value)] = b.wal.LastLSN()
	}
	// Seven days on, retention is about to delete the segment with k=v1
	// only: k=v1 is younger than min.compaction.lag.ms, so it is copied
	// whole.
	last, _, err := b.compactBefore(ctx, lsns["kv1"]+1, t0.Add(7*day))
	if err != nil || last == 0 {
		t.Fatalf("first round: last LSN %d, %v", last, err)
	}
	// Twelve days on, the segment with the tombstone goes; k=v1 (in its
	// copy, above) is old enough now, and the tombstone has expired.
	if _, _, err := b.compactBefore(ctx, last, t0.Add(12*day)); err != nil {
		t.Fatal(err)
	}
	if got, want := readTopic(t, addr, "table", false), []stored{{2, "z", "last"}}; !slices.Equal(got, want) {
		t.Fatalf("the table holds %v; want %v: k's tombstone went, so its older value must have gone too", got, want)
	}
}

package broker

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// readRecords reads a one-partition topic from its start to its end offset and
// returns its records.
func readRecords(t *testing.T, addr, topic string) []*kgo.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ends, err := kadm.NewClient(newClient(t, addr)).ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	end, _ := ends.Lookup(topic, 0)
	cl := newClient(t, addr, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	var out []*kgo.Record
	for (len(out) == 0 || out[len(out)-1].Offset < end.Offset-1) && end.Offset > 0 && ctx.Err() == nil {
		fs := cl.PollFetches(ctx)
		fs.EachError(func(_ string, _ int32, err error) { t.Fatalf("%s: fetch: %v", topic, err) })
		out = append(out, fs.Records()...)
	}
	if ctx.Err() != nil {
		t.Fatalf("%s: read %d records before the deadline, up to end offset %d", topic, len(out), end.Offset)
	}
	return out
}

// A topic with message.timestamp.type=LogAppendTime gives every record the
// time the broker appended it, whatever the producer set, in every codec:
// the produce answer carries it, consumers get it with the LogAppendTime
// type, and it survives a restart (the batch CRC was computed again).
// Topic retention.ms and ListOffsets by timestamp judge by it. A CreateTime
// topic keeps the producer's timestamps.
func TestLogAppendTime(t *testing.T) {
	dir := t.TempDir()
	b, addr := startBrokerWith(t, dir, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	adm := kadm.NewClient(newClient(t, addr))
	createTopicWith(t, adm, "appended", map[string]string{"message.timestamp.type": "LogAppendTime", "retention.ms": "3600000"})
	createTopicWith(t, adm, "created", map[string]string{"retention.ms": "3600000"})

	old := time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)
	codecs := []kgo.CompressionCodec{kgo.NoCompression(), kgo.GzipCompression(), kgo.SnappyCompression(), kgo.Lz4Compression(), kgo.ZstdCompression()}
	before := time.Now().Truncate(time.Millisecond)
	for _, topic := range []string{"appended", "created"} {
		for _, c := range codecs {
			p := newClient(t, addr, kgo.DefaultProduceTopic(topic), kgo.ProducerBatchCompression(c))
			res := p.ProduceSync(ctx, &kgo.Record{Value: []byte("a"), Timestamp: old}, &kgo.Record{Value: []byte("b"), Timestamp: old.Add(time.Second)})
			if err := res.FirstErr(); err != nil {
				t.Fatalf("%s: %v", topic, err)
			}
			p.Close()
		}
	}
	after := time.Now()
	inWindow := func(ts time.Time) bool { return !ts.Before(before) && !ts.After(after) }

	check := func(when string) {
		t.Helper()
		recs := readRecords(t, addr, "appended")
		if len(recs) != 2*len(codecs) {
			t.Fatalf("%s: read %d records of the LogAppendTime topic, want %d", when, len(recs), 2*len(codecs))
		}
		for _, r := range recs {
			if r.Attrs.TimestampType() != 1 || !inWindow(r.Timestamp) {
				t.Fatalf("%s: LogAppendTime record at offset %d has timestamp %v of type %d; want the append time (%v to %v), type 1",
					when, r.Offset, r.Timestamp, r.Attrs.TimestampType(), before, after)
			}
		}
		for i, r := range readRecords(t, addr, "created")[:2*len(codecs)] {
			want := old.Add(time.Duration(i%2) * time.Second)
			if r.Attrs.TimestampType() != 0 || !r.Timestamp.Equal(want) {
				t.Fatalf("%s: CreateTime record at offset %d has timestamp %v of type %d; want the producer's %v, type 0",
					when, r.Offset, r.Timestamp, r.Attrs.TimestampType(), want)
			}
		}
	}
	check("after producing")

	// ListOffsets by timestamp: the first batch appended at or after t.
	time.Sleep(5 * time.Millisecond)
	mark := time.Now()
	time.Sleep(5 * time.Millisecond)
	// (franz-go ignores the produce answer's LogAppendTime: ask directly.)
	late := produceRecords(t, newClient(t, addr), "appended", rawBatch(-1, -1, -1, 1))
	if late.ErrorCode != 0 || late.LogAppendTime < mark.UnixMilli() || late.LogAppendTime > time.Now().UnixMilli() {
		t.Fatalf("the produce answer gave error %v and LogAppendTime %d; want the append time, after %d",
			kerr.ErrorForCode(late.ErrorCode), late.LogAppendTime, mark.UnixMilli())
	}
	if cr := produceRecords(t, newClient(t, addr), "created", rawBatch(-1, -1, -1, 1)); cr.LogAppendTime != -1 {
		t.Fatalf("the produce answer for a CreateTime topic gave LogAppendTime %d; want -1", cr.LogAppendTime)
	}
	lo, err := adm.ListOffsetsAfterMilli(ctx, mark.UnixMilli(), "appended")
	if err != nil {
		t.Fatal(err)
	}
	if o, _ := lo.Lookup("appended", 0); o.Err != nil || o.Offset != late.BaseOffset {
		t.Fatalf("ListOffsets at %v gave offset %d (%v); want %d, the first record appended after it", mark, o.Offset, o.Err, late.BaseOffset)
	}

	// retention.ms of an hour: the CreateTime topic's records from 2001
	// go, the LogAppendTime topic's records, appended now, stay.
	b.trimTopics(time.Now())
	if start, _, _ := b.partition("created", 0).watermarks(); start != int64(2*len(codecs)) {
		t.Fatalf("retention.ms of an hour moved the CreateTime topic's log start to %d; want %d, past its records from 2001", start, 2*len(codecs))
	}
	if start, _, _ := b.partition("appended", 0).watermarks(); start != 0 {
		t.Fatalf("retention.ms of an hour removed LogAppendTime records appended seconds ago (log start %d)", start)
	}

	b.Close()
	_, addr = startBrokerWith(t, dir, nil)
	recs := readRecords(t, addr, "appended")
	if len(recs) != 2*len(codecs)+1 {
		t.Fatalf("after a restart, read %d records of the LogAppendTime topic, want %d", len(recs), 2*len(codecs)+1)
	}
	for _, r := range recs[:2*len(codecs)] {
		if r.Attrs.TimestampType() != 1 || !inWindow(r.Timestamp) {
			t.Fatalf("after a restart, the record at offset %d has timestamp %v of type %d", r.Offset, r.Timestamp, r.Attrs.TimestampType())
		}
	}
}

// message.timestamp.before.max.ms and message.timestamp.after.max.ms
// (KIP-937) refuse a batch with a record too far in the past or future with
// INVALID_TIMESTAMP, compressed or not, and write nothing of it; on a
// LogAppendTime topic they do not apply. Invalid values are refused.
func TestTimestampBounds(t *testing.T) {
	_, addr := startBrokerWith(t, t.TempDir(), nil)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	adm := kadm.NewClient(newClient(t, addr))
	hour := strconv.FormatInt(int64(time.Hour/time.Millisecond), 10)
	minute := strconv.FormatInt(int64(time.Minute/time.Millisecond), 10)
	createTopicWith(t, adm, "bounded", map[string]string{"message.timestamp.before.max.ms": hour, "message.timestamp.after.max.ms": minute})
	createTopicWith(t, adm, "bounded-appended", map[string]string{"message.timestamp.before.max.ms": hour, "message.timestamp.type": "LogAppendTime"})
	// Kafka's older single bound: both ways, unless one is set itself.
	createTopicWith(t, adm, "bounded-by-difference", map[string]string{"message.timestamp.difference.max.ms": hour, "message.timestamp.after.max.ms": minute})

	now := time.Now()
	for _, c := range []kgo.CompressionCodec{kgo.NoCompression(), kgo.ZstdCompression()} {
		// Flushed only when told, so that the two records of each call
		// below go in one batch: with a linger of 0 the client could send
		// the first alone, and it would be taken.
		p := newClient(t, addr, kgo.ProducerBatchCompression(c), kgo.RecordRetries(0), kgo.ManualFlushing())
		for _, tc := range []struct {
			ts   time.Time
			want error
		}{
			{now.Add(-2 * time.Hour), kerr.InvalidTimestamp},
			{now.Add(time.Hour), kerr.InvalidTimestamp},
			{now.Add(-30 * time.Minute), nil},
			{now.Add(30 * time.Second), nil},
		} {
			// The offending record is the second of its batch.
			for _, topic := range []string{"bounded", "bounded-by-difference"} {
				err := produceOneBatch(ctx, p, &kgo.Record{Topic: topic, Value: []byte("ok"), Timestamp: now},
					&kgo.Record{Topic: topic, Value: []byte("x"), Timestamp: tc.ts})
				if !errors.Is(err, tc.want) && !(tc.want == nil && err == nil) {
					t.Fatalf("%s, codec %v, a record %v from now: got %v, want %v", topic, c, tc.ts.Sub(now).Round(time.Second), err, tc.want)
				}
			}
		}
		if err := produceOneBatch(ctx, p, &kgo.Record{Topic: "bounded-appended", Value: []byte("old"), Timestamp: now.Add(-48 * time.Hour)}); err != nil {
			t.Fatalf("codec %v: a LogAppendTime topic refused an old record: %v", c, err)
		}
		p.Close()
	}
	if got := len(readRecords(t, addr, "bounded")); got != 8 {
		t.Fatalf("the bounded topic holds %d records; want the 8 of the 4 accepted batches, nothing of the refused ones", got)
	}

	for name, value := range map[string]string{
		"message.timestamp.type":              "WallClockTime",
		"message.timestamp.before.max.ms":     "-1",
		"message.timestamp.after.max.ms":      "soon",
		"message.timestamp.difference.max.ms": "-5",
	} {
		resp, err := adm.CreateTopic(ctx, 1, 1, map[string]*string{name: kadm.StringPtr(value)}, "refused")
		if err == nil {
			err = resp.Err
		}
		if !errors.Is(err, kerr.InvalidConfig) {
			t.Fatalf("a topic with %s=%s: got %v, want INVALID_CONFIG", name, value, err)
		}
	}
}

// produceOneBatch produces rs through p, a client with kgo.ManualFlushing,
// so that they leave in one batch when they share a partition, and returns
// the first error.
func produceOneBatch(ctx context.Context, p *kgo.Client, rs ...*kgo.Record) error {
	var mu sync.Mutex
	var first error
	var wg sync.WaitGroup
	for _, r := range rs {
		wg.Add(1)
		p.Produce(ctx, r, func(_ *kgo.Record, err error) {
			mu.Lock()
			if first == nil {
				first = err
			}
			mu.Unlock()
			wg.Done()
		})
	}
	if err := p.Flush(ctx); err != nil {
		return err
	}
	wg.Wait()
	return first
}

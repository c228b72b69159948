package e2e

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// These tests send single Kafka requests built with kmsg through a kgo
// client (cl.Request), to check protocol behaviour that client libraries
// hide: idempotent sequence checks, fetch limits and long polls.

// recordBatch encodes a v2 RecordBatch holding values, as an idempotent
// producer with (pid, epoch) would send it with first sequence seq.
func recordBatch(pid int64, epoch int16, seq int32, values ...string) []byte {
	var recs []byte
	for i, v := range values {
		r := kmsg.Record{OffsetDelta: int32(i), Value: []byte(v)}
		body := r.AppendTo(nil)[1:] // drop the varint length 0
		r.Length = int32(len(body))
		recs = r.AppendTo(recs)
	}
	now := time.Now().UnixMilli()
	b := kmsg.RecordBatch{
		PartitionLeaderEpoch: -1,
		Magic:                2,
		LastOffsetDelta:      int32(len(values) - 1),
		FirstTimestamp:       now,
		MaxTimestamp:         now,
		ProducerID:           pid,
		ProducerEpoch:        epoch,
		FirstSequence:        seq,
		NumRecords:           int32(len(values)),
		Records:              recs,
	}
	raw := b.AppendTo(nil)
	binary.BigEndian.PutUint32(raw[8:], uint32(len(raw)-12))                                          // length: bytes after the length field
	binary.BigEndian.PutUint32(raw[17:], crc32.Checksum(raw[21:], crc32.MakeTable(crc32.Castagnoli))) // crc: attributes .. end
	return raw
}

// rawProduce sends one Produce request (acks=all) with batch for topic[0]
// and returns the partition's error and base offset.
func rawProduce(t *testing.T, cl *kgo.Client, topic string, batch []byte) (int64, error) {
	t.Helper()
	req := kmsg.NewPtrProduceRequest()
	req.Acks = -1
	req.TimeoutMillis = 10000
	rt := kmsg.NewProduceRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewProduceRequestTopicPartition()
	rp.Partition = 0
	rp.Records = batch
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctxTimeout(t, 20*time.Second), cl.Broker(1))
	if err != nil {
		t.Fatalf("Produce request: %v", err)
	}
	if len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 1 {
		t.Fatalf("Produce response has %d topics, want 1 with 1 partition", len(resp.Topics))
	}
	p := resp.Topics[0].Partitions[0]
	return p.BaseOffset, kerr.ErrorForCode(p.ErrorCode)
}

// TestIdempotentSequences drives the idempotent-producer checks by hand:
// a retried batch (same producer id, epoch and sequence) is acknowledged
// but not written again, also after a broker crash; a batch whose sequence
// leaves a gap is refused with OUT_OF_ORDER_SEQUENCE_NUMBER.
func TestIdempotentSequences(t *testing.T) {
	b := startBroker(t)
	const topic = "idem"
	b.createTopic(topic, 1)
	cl := b.client()

	ipReq := kmsg.NewPtrInitProducerIDRequest()
	ipReq.ProducerID, ipReq.ProducerEpoch = -1, -1
	ip, err := ipReq.RequestWith(ctxTimeout(t, 10*time.Second), cl)
	if err != nil || ip.ErrorCode != 0 || ip.ProducerID < 0 {
		t.Fatalf("InitProducerId: %v, error code %d, producer id %d", err, ip.ErrorCode, ip.ProducerID)
	}
	pid, epoch := ip.ProducerID, ip.ProducerEpoch

	type step struct {
		name       string
		seq        int32
		values     []string
		wantErr    error // nil: accepted
		wantOffset int64 // base offset when accepted
		wantEnd    int64 // end offset afterwards
	}
	steps := []step{
		{"first batch", 0, []string{"a", "b", "c"}, nil, 0, 3},
		{"retry of the first batch", 0, []string{"a", "b", "c"}, nil, 0, 3},
		{"next batch", 3, []string{"d", "e"}, nil, 3, 5},
		{"gap in the sequence", 10, []string{"x"}, kerr.OutOfOrderSequenceNumber, -1, 5},
		{"retry of the second batch", 3, []string{"d", "e"}, nil, 3, 5},
	}
	run := func(t *testing.T, s step) {
		t.Helper()
		off, err := rawProduce(t, cl, topic, recordBatch(pid, epoch, s.seq, s.values...))
		// Kafka < 2.? answered a duplicate with DUPLICATE_SEQUENCE_NUMBER,
		// which clients treat as success; accept it too.
		if s.wantErr == nil && errors.Is(err, kerr.DuplicateSequenceNumber) {
			err, off = nil, s.wantOffset
		}
		if !errors.Is(err, s.wantErr) && !(err == nil && s.wantErr == nil) {
			t.Errorf("%s (sequence %d): error %v, want %v", s.name, s.seq, err, s.wantErr)
		}
		if s.wantErr == nil && err == nil && off != s.wantOffset {
			t.Errorf("%s (sequence %d): base offset %d, want %d", s.name, s.seq, off, s.wantOffset)
		}
		if end := b.endOffsets(topic)[0]; end != s.wantEnd {
			t.Errorf("after %s: end offset %d, want %d (a retried batch must not be stored twice)", s.name, end, s.wantEnd)
		}
	}
	for _, s := range steps {
		run(t, s)
	}

	// The producer state survives a crash.
	b.kill()
	b.restart()
	cl = b.client()
	run(t, step{"retry of the second batch after a crash", 3, []string{"d", "e"}, nil, 3, 5})
	run(t, step{"next batch after a crash", 5, []string{"f"}, nil, 5, 6})
	requireSameValues(t, "records", b.readAll(topic)[0], []string{"a", "b", "c", "d", "e", "f"})
	b.requireAlive()
}

// rawFetch sends one Fetch request for topic[0] from offset and returns the
// partition's answer and how long the broker took. It fails the test on a
// transport or request-level error.
func rawFetch(t *testing.T, cl *kgo.Client, topic string, offset int64, maxWait time.Duration, minBytes, maxBytes, partMaxBytes int32) (kmsg.FetchResponseTopicPartition, time.Duration) {
	t.Helper()
	p, took, err := rawFetchE(cl, topic, offset, maxWait, minBytes, maxBytes, partMaxBytes)
	if err != nil {
		t.Fatal(err)
	}
	return p, took
}

// rawFetchE is rawFetch returning its error (for use off the test goroutine).
func rawFetchE(cl *kgo.Client, topic string, offset int64, maxWait time.Duration, minBytes, maxBytes, partMaxBytes int32) (kmsg.FetchResponseTopicPartition, time.Duration, error) {
	req := kmsg.NewPtrFetchRequest()
	req.ReplicaID = -1
	req.MaxWaitMillis = int32(maxWait.Milliseconds())
	req.MinBytes = minBytes
	req.MaxBytes = maxBytes
	rt := kmsg.NewFetchRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewFetchRequestTopicPartition()
	rp.Partition = 0
	rp.FetchOffset = offset
	rp.PartitionMaxBytes = partMaxBytes
	rp.CurrentLeaderEpoch = -1
	rp.LogStartOffset = -1
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	ctx, cancel := context.WithTimeout(context.Background(), maxWait+20*time.Second)
	defer cancel()
	start := time.Now()
	resp, err := req.RequestWith(ctx, cl.Broker(1))
	took := time.Since(start)
	var none kmsg.FetchResponseTopicPartition
	if err != nil {
		return none, took, fmt.Errorf("Fetch request: %w", err)
	}
	if err := kerr.ErrorForCode(resp.ErrorCode); err != nil {
		return none, took, fmt.Errorf("Fetch: %w", err)
	}
	if len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 1 {
		return none, took, fmt.Errorf("Fetch response has %d topics, want 1 with 1 partition", len(resp.Topics))
	}
	return resp.Topics[0].Partitions[0], took, nil
}

// fetchWritten is a kgo hook that signals each time a Fetch request has been
// written to a broker connection.
type fetchWritten chan struct{}

func (f fetchWritten) OnBrokerWrite(_ kgo.BrokerMetadata, key int16, _ int, _, _ time.Duration, err error) {
	if key == kmsg.Fetch.Int16() && err == nil {
		select {
		case f <- struct{}{}:
		default:
		}
	}
}

// batchesIn splits a fetched records blob into its record batches' record
// counts (a partial batch at the end, allowed by the protocol, is ignored).
func batchesIn(records []byte) []int32 {
	var out []int32
	for len(records) >= 61 {
		n := int(binary.BigEndian.Uint32(records[8:])) + 12
		if n > len(records) {
			break
		}
		out = append(out, int32(binary.BigEndian.Uint32(records[57:])))
		records = records[n:]
	}
	return out
}

// TestFetchLimits checks how Fetch honours its limits: MaxBytes and
// PartitionMaxBytes bound the answer, but the first batch is always returned
// whole even when it is bigger (KIP-74), so consumers always progress.
func TestFetchLimits(t *testing.T) {
	b := startBroker(t)
	const topic = "limits"
	b.createTopic(topic, 1)
	cl := b.client(kgo.ProducerBatchCompression(kgo.NoCompression()), kgo.ProducerLinger(0))
	// 20 batches of ~10 KB each (one record per ProduceSync).
	big := strings.Repeat("z", 10000)
	for i := range 20 {
		produceSync(t, cl, topic, []string{fmt.Sprintf("%02d%s", i, big)})
	}

	tests := []struct {
		name                   string
		maxBytes, partMaxBytes int32
		wantMin, wantMax       int // whole batches returned
	}{
		{"no tight limit", 10 << 20, 10 << 20, 20, 20},
		{"MaxBytes 35000", 35000, 10 << 20, 1, 3},
		{"PartitionMaxBytes 25000", 10 << 20, 25000, 1, 2},
		{"PartitionMaxBytes smaller than one batch", 10 << 20, 100, 1, 1},
		{"MaxBytes smaller than one batch", 100, 10 << 20, 1, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, _ := rawFetch(t, cl, topic, 0, 500*time.Millisecond, 1, tc.maxBytes, tc.partMaxBytes)
			if err := kerr.ErrorForCode(p.ErrorCode); err != nil {
				t.Fatalf("partition error: %v", err)
			}
			if p.HighWatermark != 20 {
				t.Errorf("high watermark %d, want 20", p.HighWatermark)
			}
			n := len(batchesIn(p.RecordBatches))
			if n < tc.wantMin || n > tc.wantMax {
				t.Errorf("got %d whole batches (%d bytes), want %d..%d", n, len(p.RecordBatches), tc.wantMin, tc.wantMax)
			}
			limit := min(tc.maxBytes, tc.partMaxBytes)
			if n > 1 && len(p.RecordBatches) > int(limit) {
				t.Errorf("got %d bytes in %d batches with a limit of %d: only a single first batch may exceed the limit", len(p.RecordBatches), n, limit)
			}
		})
	}

	t.Run("offset past the end", func(t *testing.T) {
		p, _ := rawFetch(t, cl, topic, 25, 100*time.Millisecond, 1, 1<<20, 1<<20)
		if err := kerr.ErrorForCode(p.ErrorCode); !errors.Is(err, kerr.OffsetOutOfRange) {
			t.Errorf("fetch at offset 25 of 20: error %v, want OFFSET_OUT_OF_RANGE", err)
		}
	})
}

// TestFetchLongPoll: a Fetch with nothing to return waits up to MaxWaitMs
// (it neither answers at once, which makes consumers spin, nor hangs), and
// one that is waiting answers as soon as a record arrives.
func TestFetchLongPoll(t *testing.T) {
	b := startBroker(t)
	const topic = "longpoll"
	b.createTopic(topic, 1)
	cl := b.client()

	p, took := rawFetch(t, cl, topic, 0, 1500*time.Millisecond, 1, 1<<20, 1<<20)
	if len(p.RecordBatches) != 0 || took < 1200*time.Millisecond || took > 10*time.Second {
		t.Errorf("empty fetch with MaxWaitMs=1500 answered after %v with %d bytes; want about 1.5s and none", took, len(p.RecordBatches))
	}

	type result struct {
		p    kmsg.FetchResponseTopicPartition
		took time.Duration
		err  error
	}
	written := make(fetchWritten, 1)
	waiter := b.client(kgo.WithHooks(written))
	if err := waiter.Ping(ctxTimeout(t, 10*time.Second)); err != nil {
		t.Fatalf("ping: %v", err)
	}
	done := make(chan result, 1)
	go func() {
		p, took, err := rawFetchE(waiter, topic, 0, 20*time.Second, 1, 1<<20, 1<<20)
		done <- result{p, took, err}
	}()
	// Produce once the waiting fetch is on the wire. (Should the record
	// still beat it to the broker, the fetch simply finds it at once.)
	select {
	case <-written:
	case <-time.After(10 * time.Second):
		t.Fatal("the fetch request was not sent within 10s")
	}
	produceSync(t, cl, topic, []string{"wake"})
	select {
	case r := <-done:
		if r.err != nil {
			t.Fatal(r.err)
		}
		if len(batchesIn(r.p.RecordBatches)) != 1 || r.took > 10*time.Second {
			t.Errorf("waiting fetch answered after %v with %d batches; want the new record well before MaxWaitMs (20s)", r.took, len(batchesIn(r.p.RecordBatches)))
		}
	case <-time.After(30 * time.Second):
		t.Fatal("waiting fetch did not return within 30s")
	}
	b.requireAlive()
}

// TestMessageSizeLimits: a record just under message.max.bytes round-trips;
// a bigger batch is refused with MESSAGE_TOO_LARGE and the broker goes on.
func TestMessageSizeLimits(t *testing.T) {
	b := startBroker(t)
	const topic = "sizes"
	b.createTopic(topic, 1)
	cl := b.client(kgo.ProducerBatchMaxBytes(4<<20), kgo.ProducerBatchCompression(kgo.NoCompression()),
		kgo.FetchMaxPartitionBytes(4<<20), kgo.FetchMaxBytes(8<<20),
		kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))

	ok := strings.Repeat("o", 1000*1000)
	produceSync(t, cl, topic, []string{ok})
	res := cl.ProduceSync(ctxTimeout(t, 30*time.Second), &kgo.Record{Topic: topic, Value: []byte(strings.Repeat("x", 2<<20))})
	if err := res.FirstErr(); !errors.Is(err, kerr.MessageTooLarge) {
		t.Errorf("producing a 2 MiB record (message.max.bytes 1048588): error %v, want MESSAGE_TOO_LARGE", err)
	}
	produceSync(t, cl, topic, []string{"small"})
	got := consumeN(t, cl, 2, 30*time.Second)
	if len(got) != 2 || string(got[0].Value) != ok || string(got[1].Value) != "small" {
		t.Errorf("read back %d records; want the 1 MB record then \"small\"", len(got))
	}
	b.requireAlive()
}

// TestAcksZero: records produced with acks=0 (no response) arrive.
func TestAcksZero(t *testing.T) {
	b := startBroker(t)
	const topic = "acks0"
	b.createTopic(topic, 1)
	cl := b.client(kgo.RequiredAcks(kgo.NoAck()), kgo.DisableIdempotentWrite())
	want := seqValues("z-", 300)
	produceSync(t, cl, topic, want)
	rd := b.client(kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	requireSameValues(t, "acks=0 records", values(consumeN(t, rd, len(want), 30*time.Second)), want)
}

// TestAutoCreateDisabled: with --auto-create-topics=false, neither Metadata
// nor Produce creates a topic; the producer gets UNKNOWN_TOPIC_OR_PARTITION.
func TestAutoCreateDisabled(t *testing.T) {
	b := startBroker(t, "--auto-create-topics=false")
	cl := b.client(kgo.AllowAutoTopicCreation(), kgo.UnknownTopicRetries(2), kgo.DisableIdempotentWrite())
	res := cl.ProduceSync(ctxTimeout(t, 30*time.Second), &kgo.Record{Topic: "nope", Value: []byte("x")})
	if err := res.FirstErr(); !errors.Is(err, kerr.UnknownTopicOrPartition) {
		t.Errorf("produce to a missing topic: error %v, want UNKNOWN_TOPIC_OR_PARTITION", err)
	}
	if n := partitionCount(t, b.client(), "nope"); n != -1 {
		t.Errorf("topic nope exists with %d partitions although auto-creation is off", n)
	}
	b.requireAlive()
}

// TestConcurrentProducers: several idempotent producers write to the same
// partitions at once; every record is stored once, offsets are dense and
// each producer's records keep their order.
func TestConcurrentProducers(t *testing.T) {
	b := startBroker(t)
	const topic, producers, each = "concurrent", 6, 2000
	b.createTopic(topic, 2)
	var wg sync.WaitGroup
	errs := make(chan error, producers)
	for p := range producers {
		cl := b.client(kgo.ProducerLinger(time.Millisecond))
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			var perr error
			var mu sync.Mutex
			for i := range each {
				rec := &kgo.Record{Topic: topic, Key: []byte{byte(p)}, Value: fmt.Appendf(nil, "%d-%05d", p, i)}
				cl.Produce(ctx, rec, func(_ *kgo.Record, err error) {
					if err != nil {
						mu.Lock()
						perr = err
						mu.Unlock()
					}
				})
			}
			if err := cl.Flush(ctx); err != nil {
				errs <- fmt.Errorf("producer %d: flush: %w", p, err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			if perr != nil {
				errs <- fmt.Errorf("producer %d: %w", p, perr)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		return
	}
	parts := b.readAll(topic)
	seen := map[string]bool{}
	last := map[string]string{} // producer -> last value seen
	total := 0
	for p, vs := range parts {
		for _, v := range vs {
			total++
			if seen[v] {
				t.Fatalf("partition %d: %s stored twice", p, v)
			}
			seen[v] = true
			prod := v[:strings.IndexByte(v, '-')]
			if l, ok := last[prod]; ok && v < l {
				t.Fatalf("partition %d: %s after %s (out of order)", p, v, l)
			}
			last[prod] = v
		}
	}
	if total != producers*each {
		t.Fatalf("read %d records, want %d", total, producers*each)
	}
	b.requireAlive()
}

// TestRecordFields: keys, null and empty values, headers and timestamps come
// back exactly as produced, for every compression codec kgo has.
func TestRecordFields(t *testing.T) {
	b := startBroker(t)
	ts := time.UnixMilli(time.Now().Add(-time.Minute).UnixMilli())
	sample := []*kgo.Record{
		{Key: []byte("k1"), Value: []byte("v1"), Headers: []kgo.RecordHeader{{Key: "h", Value: []byte("x")}, {Key: "h", Value: nil}}},
		{Key: nil, Value: nil},           // a tombstone: null value
		{Key: []byte{}, Value: []byte{}}, // empty, not null
		{Key: []byte("k4"), Value: []byte(strings.Repeat("v", 5000)), Timestamp: ts},
	}
	codecs := []struct {
		name  string
		codec kgo.CompressionCodec
	}{
		{"none", kgo.NoCompression()},
		{"gzip", kgo.GzipCompression()},
		{"snappy", kgo.SnappyCompression()},
		{"lz4", kgo.Lz4Compression()},
		{"zstd", kgo.ZstdCompression()},
	}
	for _, c := range codecs {
		t.Run(c.name, func(t *testing.T) {
			topic := "fields-" + c.name
			b.createTopic(topic, 1)
			cl := b.client(kgo.ProducerBatchCompression(c.codec), kgo.RecordDeliveryTimeout(0),
				kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
			recs := make([]*kgo.Record, len(sample))
			for i, r := range sample {
				cp := *r
				cp.Topic = topic
				recs[i] = &cp
			}
			if err := cl.ProduceSync(ctxTimeout(t, 30*time.Second), recs...).FirstErr(); err != nil {
				t.Fatalf("produce: %v", err)
			}
			got := consumeN(t, cl, len(sample), 30*time.Second)
			for i, r := range got {
				w := sample[i]
				if (r.Key == nil) != (w.Key == nil) || string(r.Key) != string(w.Key) {
					t.Errorf("record %d: key %q (nil %v), want %q (nil %v)", i, r.Key, r.Key == nil, w.Key, w.Key == nil)
				}
				if (r.Value == nil) != (w.Value == nil) || string(r.Value) != string(w.Value) {
					t.Errorf("record %d: value of %d bytes (nil %v), want %d bytes (nil %v)", i, len(r.Value), r.Value == nil, len(w.Value), w.Value == nil)
				}
				if len(r.Headers) != len(w.Headers) {
					t.Errorf("record %d: %d headers, want %d", i, len(r.Headers), len(w.Headers))
				} else {
					for j := range r.Headers {
						if r.Headers[j].Key != w.Headers[j].Key || string(r.Headers[j].Value) != string(w.Headers[j].Value) {
							t.Errorf("record %d header %d: %q=%q, want %q=%q", i, j, r.Headers[j].Key, r.Headers[j].Value, w.Headers[j].Key, w.Headers[j].Value)
						}
					}
				}
				if !w.Timestamp.IsZero() && !r.Timestamp.Equal(w.Timestamp) {
					t.Errorf("record %d: timestamp %v, want %v", i, r.Timestamp, w.Timestamp)
				}
			}
		})
	}
	b.requireAlive()
}

// TestUnknownPartition: producing to a partition the topic does not have is
// refused with UNKNOWN_TOPIC_OR_PARTITION and stores nothing.
func TestUnknownPartition(t *testing.T) {
	b := startBroker(t)
	const topic = "one-partition"
	b.createTopic(topic, 1)
	cl := b.client()
	req := kmsg.NewPtrProduceRequest()
	req.Acks = -1
	req.TimeoutMillis = 5000
	rt := kmsg.NewProduceRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewProduceRequestTopicPartition()
	rp.Partition = 7
	rp.Records = recordBatch(-1, -1, -1, "lost")
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctxTimeout(t, 10*time.Second), cl.Broker(1))
	if err != nil {
		t.Fatalf("Produce: %v", err)
	}
	if len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 1 {
		t.Fatalf("Produce response: %+v", resp)
	}
	if err := kerr.ErrorForCode(resp.Topics[0].Partitions[0].ErrorCode); !errors.Is(err, kerr.UnknownTopicOrPartition) {
		t.Errorf("produce to partition 7 of a 1-partition topic: error %v, want UNKNOWN_TOPIC_OR_PARTITION", err)
	}
	if ends := b.endOffsets(topic); len(ends) != 1 || ends[0] != 0 {
		t.Errorf("end offsets %v, want only partition 0 at 0", ends)
	}
	b.requireAlive()
}

// TestCorruptBatchesRefused: the broker stores record batches byte for byte,
// so it must refuse a batch that consumers could not read: a bad CRC, a
// length, record count or offset delta that does not match, an old magic,
// an empty batch, a control or transactional batch from a plain producer,
// compressed bytes that do not decompress. Each is refused with an error and nothing
// is stored; the partition stays readable.
func TestCorruptBatchesRefused(t *testing.T) {
	b := startBroker(t)
	const topic = "corrupt-batches"
	b.createTopic(topic, 1)
	cl := b.client()
	recrc := func(raw []byte) []byte {
		binary.BigEndian.PutUint32(raw[17:], crc32.Checksum(raw[21:], crc32.MakeTable(crc32.Castagnoli)))
		return raw
	}
	tests := []struct {
		name  string
		batch func() []byte
		want  error // nil: any error will do
	}{
		{"bad CRC", func() []byte {
			raw := recordBatch(-1, -1, -1, "a", "b")
			raw[len(raw)-1] ^= 0xff
			return raw
		}, kerr.CorruptMessage},
		{"record count larger than the records", func() []byte {
			raw := recordBatch(-1, -1, -1, "a")
			binary.BigEndian.PutUint32(raw[57:], 5)
			return recrc(raw)
		}, nil},
		{"length past the end", func() []byte {
			raw := recordBatch(-1, -1, -1, "a")
			binary.BigEndian.PutUint32(raw[8:], uint32(len(raw)+100))
			return raw
		}, nil},
		{"magic 1", func() []byte {
			raw := recordBatch(-1, -1, -1, "a")
			raw[16] = 1
			return raw
		}, nil},
		{"last offset delta beyond the records", func() []byte {
			raw := recordBatch(-1, -1, -1, "a", "b", "c")
			binary.BigEndian.PutUint32(raw[23:], 10) // lastOffsetDelta
			return recrc(raw)
		}, nil},
		{"no records", func() []byte {
			raw := recordBatch(-1, -1, -1, "a")
			raw = raw[:61]                                   // header only
			binary.BigEndian.PutUint32(raw[8:], 61-12)       // length
			binary.BigEndian.PutUint32(raw[57:], 0)          // numRecords
			binary.BigEndian.PutUint32(raw[23:], 0xffffffff) // lastOffsetDelta -1
			return recrc(raw)
		}, nil},
		{"control batch from a client", func() []byte {
			raw := recordBatch(-1, -1, -1, "a")
			binary.BigEndian.PutUint16(raw[21:], 0x20) // attributes: control
			return recrc(raw)
		}, nil},
		// Transactions are not supported: a transactional batch would hold
		// read_committed consumers (librdkafka's default) at its offset forever.
		{"transactional batch", func() []byte {
			raw := recordBatch(4242, 0, 0, "a")
			binary.BigEndian.PutUint16(raw[21:], 0x10) // attributes: transactional
			return recrc(raw)
		}, nil},
		{"gzip attribute on bytes that are not gzip", func() []byte {
			raw := recordBatch(-1, -1, -1, "a", "b", "c")
			binary.BigEndian.PutUint16(raw[21:], 1) // attributes: gzip
			return recrc(raw)
		}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := rawProduce(t, cl, topic, tc.batch())
			if err == nil {
				t.Errorf("%s: accepted; want an error", tc.name)
			} else if tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("%s: error %v, want %v", tc.name, err, tc.want)
			}
			if end := b.endOffsets(topic)[0]; end != 0 {
				t.Fatalf("%s: end offset %d after a refused batch, want 0", tc.name, end)
			}
		})
	}
	produceSync(t, cl, topic, []string{"good"})
	requireSameValues(t, "partition after the refused batches", b.readAll(topic)[0], []string{"good"})
	b.requireAlive()
}

// TestBatchOffsetsAssigned: the broker, not the producer, assigns offsets: a
// batch that arrives with a made-up base offset is stored at the partition's
// end, and consumers see the broker's offsets.
func TestBatchOffsetsAssigned(t *testing.T) {
	b := startBroker(t)
	const topic = "assigned"
	b.createTopic(topic, 1)
	cl := b.client(kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	for i, base := range []int64{999, 0, 5} {
		raw := recordBatch(-1, -1, -1, fmt.Sprintf("r%d-0", i), fmt.Sprintf("r%d-1", i))
		binary.BigEndian.PutUint64(raw, uint64(base)) // firstOffset (not covered by the CRC)
		off, err := rawProduce(t, cl, topic, raw)
		if err != nil || off != int64(2*i) {
			t.Fatalf("batch %d sent with base offset %d: error %v, stored at %d; want offset %d", i, base, err, off, 2*i)
		}
	}
	got := consumeN(t, cl, 6, 20*time.Second)
	for i, r := range got {
		if r.Offset != int64(i) || string(r.Value) != fmt.Sprintf("r%d-%d", i/2, i%2) {
			t.Fatalf("record %d: offset %d value %q", i, r.Offset, r.Value)
		}
	}
	b.requireAlive()
}

// TestFetchFromInsideABatch: a consumer that starts at an offset in the
// middle of a stored batch (as after committing part of it) gets exactly
// the records from that offset on: the broker must return the batch that
// holds the offset, not the next one.
func TestFetchFromInsideABatch(t *testing.T) {
	b := startBroker(t)
	const topic = "mid-batch"
	b.createTopic(topic, 1)
	// Three batches of 5 records each: offsets 0-4, 5-9, 10-14. The
	// producer sends only when flushed, once per batch.
	prod := b.client(kgo.ManualFlushing())
	for i := range 3 {
		recs := make([]*kgo.Record, 5)
		for j := range recs {
			recs[j] = &kgo.Record{Topic: topic, Value: fmt.Appendf(nil, "%02d", i*5+j)}
		}
		if err := produceOneBatch(ctxTimeout(t, 20*time.Second), prod, recs...); err != nil {
			t.Fatalf("produce batch %d: %v", i, err)
		}
	}
	p, _ := rawFetch(t, prod, topic, 0, 100*time.Millisecond, 1, 1<<20, 1<<20)
	if got := batchesIn(p.RecordBatches); len(got) != 3 {
		t.Fatalf("stored batches hold %v records, want 3 batches of 5 (test setup)", got)
	}
	for _, start := range []int64{0, 1, 4, 5, 7, 12, 14} {
		cl := b.client(kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {0: kgo.NewOffset().At(start)}}))
		got := consumeN(t, cl, int(15-start), 20*time.Second)
		for i, r := range got {
			if want := start + int64(i); r.Offset != want || string(r.Value) != fmt.Sprintf("%02d", want) {
				t.Fatalf("from offset %d: record %d is offset %d value %q, want offset %d", start, i, r.Offset, r.Value, want)
			}
		}
		cl.Close()
	}
	b.requireAlive()
}

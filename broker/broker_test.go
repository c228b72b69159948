package broker

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tandem-io/tandem/internal/testutil"
)

// startBroker runs an in-process broker on 127.0.0.1:0 over dir.
func startBroker(t *testing.T, dir string) (*Broker, string) {
	t.Helper()
	return startBrokerWith(t, dir, nil)
}

// startBrokerWith is startBroker with a hook to change the config.
func startBrokerWith(t *testing.T, dir string, change func(*Config)) (*Broker, string) {
	t.Helper()
	cfg := DefaultConfig()
	cfg.NodeID = 1
	cfg.DataDir = dir
	cfg.Listen = "127.0.0.1:0"
	cfg.InitialRebalanceDelay = time.Millisecond
	cfg.Logger = hclog.New(&hclog.LoggerOptions{Name: "broker", Output: testWriter{t}, Level: hclog.Info})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Advertise = ln.Addr().String()
	if change != nil {
		change(&cfg)
	}
	b, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- b.ServeListener(ln) }()
	t.Cleanup(func() {
		b.Close()
		<-done
	})
	return b, ln.Addr().String()
}

// openBenchBroker runs a broker for a benchmark on a fresh directory on
// 127.0.0.1, logging nothing; change, if set, adjusts its config. It
// returns the broker, which the caller closes, and its address.
func openBenchBroker(bm *testing.B, change func(*Config)) (*Broker, string) {
	cfg := DefaultConfig()
	cfg.NodeID = 1
	cfg.DataDir = bm.TempDir()
	cfg.Listen = "127.0.0.1:0"
	cfg.Logger = hclog.NewNullLogger()
	if change != nil {
		change(&cfg)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		bm.Fatal(err)
	}
	cfg.Advertise = ln.Addr().String()
	b, err := Open(cfg)
	if err != nil {
		bm.Fatal(err)
	}
	go b.ServeListener(ln) //nolint:errcheck // ends when the broker closes
	return b, ln.Addr().String()
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}

func newClient(t *testing.T, addr string, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(addr)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

func consumeAll(t *testing.T, addr, topic string, want int) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cl := newClient(t, addr, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	var got []string
	for len(got) < want {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("consumed %d of %d records before the deadline", len(got), want)
		}
		fs.EachRecord(func(r *kgo.Record) { got = append(got, string(r.Value)) })
	}
	return got
}

// Records produced are consumed back in order, and are still there, with
// the topic, after the broker restarts on the same directory.
func TestProduceConsumeSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	b, addr := startBroker(t, dir)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cl := newClient(t, addr, kgo.DefaultProduceTopic("orders"), kgo.AllowAutoTopicCreation())
	for i := 0; i < 200; i++ {
		if err := cl.ProduceSync(ctx, kgo.StringRecord(fmt.Sprint(i))).FirstErr(); err != nil {
			t.Fatalf("produce %d: %v", i, err)
		}
	}
	cl.Close()
	check := func(addr string) {
		got := consumeAll(t, addr, "orders", 200)
		for i, v := range got {
			if v != fmt.Sprint(i) {
				t.Fatalf("record %d is %q, want %q", i, v, fmt.Sprint(i))
			}
		}
	}
	check(addr)
	b.Close()
	_, addr2 := startBroker(t, dir)
	check(addr2)
}

// rawProduce sends one idempotent batch with a given sequence through kmsg.
func rawProduce(t *testing.T, cl *kgo.Client, topic string, pid int64, epoch int16, seq int32, n int) *kmsg.ProduceResponseTopicPartition {
	t.Helper()
	r, err := rawProduceErr(cl, topic, pid, epoch, seq, n)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// rawProduceErr is rawProduce for goroutines other than the test's.
func rawProduceErr(cl *kgo.Client, topic string, pid int64, epoch int16, seq int32, n int) (*kmsg.ProduceResponseTopicPartition, error) {
	return produceRecordsErr(cl, topic, rawBatch(pid, epoch, seq, n))
}

// produceRecords sends one partition's record set (one or more batches)
// to partition 0 of a topic, with the client's acks.
func produceRecords(t *testing.T, cl *kgo.Client, topic string, records []byte) *kmsg.ProduceResponseTopicPartition {
	t.Helper()
	r, err := produceRecordsErr(cl, topic, records)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// produceRecordsErr is produceRecords for goroutines other than the test's.
func produceRecordsErr(cl *kgo.Client, topic string, records []byte) (*kmsg.ProduceResponseTopicPartition, error) {
	req := kmsg.NewPtrProduceRequest()
	req.Acks = -1
	req.TimeoutMillis = 5000
	rt := kmsg.NewProduceRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewProduceRequestTopicPartition()
	rp.Records = records
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(context.Background(), cl)
	if err != nil {
		return nil, err
	}
	return &resp.Topics[0].Partitions[0], nil
}

// rawBatch encodes one uncompressed RecordBatch of n records, whose values
// are their sequence numbers, as a producer would (pid -1 for a
// non-idempotent one, whose values then count from seq anyway).
func rawBatch(pid int64, epoch int16, seq int32, n int) []byte {
	rb := kmsg.RecordBatch{
		PartitionLeaderEpoch: -1, Magic: 2, LastOffsetDelta: int32(n - 1),
		FirstTimestamp: time.Now().UnixMilli(), MaxTimestamp: time.Now().UnixMilli(),
		ProducerID: pid, ProducerEpoch: epoch, FirstSequence: seq, NumRecords: int32(n),
	}
	for i := 0; i < n; i++ {
		r := kmsg.Record{OffsetDelta: int32(i), Value: []byte(fmt.Sprint(seq + int32(i)))}
		body := r.AppendTo(nil)
		r.Length = int32(len(body) - 1) // the length varint of 0 took one byte
		body = r.AppendTo(nil)
		rb.Records = append(rb.Records, body...)
	}
	raw := rb.AppendTo(nil)
	// Fix the length and CRC the way a producer computes them.
	rb.Length = int32(len(raw) - 12)
	raw = rb.AppendTo(nil)
	rb.CRC = int32(crc32c(raw[21:]))
	return rb.AppendTo(nil)
}

// A retried idempotent batch is not written twice; a gap in the sequence
// is refused with OUT_OF_ORDER_SEQUENCE_NUMBER.
func TestIdempotentProducerSequences(t *testing.T) {
	_, addr := startBroker(t, t.TempDir())
	cl := newClient(t, addr)
	ctx := context.Background()
	ct := kmsg.NewPtrCreateTopicsRequest()
	tt := kmsg.NewCreateTopicsRequestTopic()
	tt.Topic, tt.NumPartitions, tt.ReplicationFactor = "idem", 1, 1
	ct.Topics = append(ct.Topics, tt)
	if _, err := ct.RequestWith(ctx, cl); err != nil {
		t.Fatal(err)
	}
	ip := kmsg.NewPtrInitProducerIDRequest()
	ipr, err := ip.RequestWith(ctx, cl)
	if err != nil || ipr.ErrorCode != 0 {
		t.Fatalf("InitProducerId: %v %v", err, kerr.ErrorForCode(ipr.ErrorCode))
	}
	pid, epoch := ipr.ProducerID, ipr.ProducerEpoch

	first := rawProduce(t, cl, "idem", pid, epoch, 0, 3)
	if first.ErrorCode != 0 || first.BaseOffset != 0 {
		t.Fatalf("first batch: error %v offset %d", kerr.ErrorForCode(first.ErrorCode), first.BaseOffset)
	}
	retry := rawProduce(t, cl, "idem", pid, epoch, 0, 3)
	if retry.ErrorCode != 0 || retry.BaseOffset != 0 {
		t.Fatalf("retried batch: error %v offset %d, want the original offset 0", kerr.ErrorForCode(retry.ErrorCode), retry.BaseOffset)
	}
	gap := rawProduce(t, cl, "idem", pid, epoch, 10, 1)
	if gap.ErrorCode != kerr.OutOfOrderSequenceNumber.Code {
		t.Fatalf("gap: error %v, want OUT_OF_ORDER_SEQUENCE_NUMBER", kerr.ErrorForCode(gap.ErrorCode))
	}
	next := rawProduce(t, cl, "idem", pid, epoch, 3, 2)
	if next.ErrorCode != 0 || next.BaseOffset != 3 {
		t.Fatalf("next batch: error %v offset %d, want 3", kerr.ErrorForCode(next.ErrorCode), next.BaseOffset)
	}
	got := consumeAll(t, addr, "idem", 5)
	want := []string{"0", "1", "2", "3", "4"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("consumed %v, want %v (each record once)", got, want)
	}
}

// A long-polling fetch returns as soon as a record arrives, not at MaxWait.
func TestFetchLongPollWakesOnProduce(t *testing.T) {
	_, addr := startBroker(t, t.TempDir())
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	prod := newClient(t, addr, kgo.DefaultProduceTopic("poll"), kgo.AllowAutoTopicCreation())
	if err := prod.ProduceSync(ctx, kgo.StringRecord("first")).FirstErr(); err != nil {
		t.Fatal(err)
	}
	cons := newClient(t, addr, kgo.ConsumeTopics("poll"), kgo.ConsumeResetOffset(kgo.NewOffset().AtEnd()),
		kgo.FetchMaxWait(10*time.Second))
	got := make(chan string, 1)
	go func() {
		for ctx.Err() == nil {
			fs := cons.PollFetches(ctx)
			if fs.NumRecords() > 0 {
				got <- string(fs.Records()[0].Value)
				return
			}
		}
	}()
	// Produce repeatedly until the consumer, which started at the end, sees one.
	testutil.Eventually(t, 15*time.Second, func() bool {
		select {
		case v := <-got:
			return v == "second"
		default:
			prod.ProduceSync(ctx, kgo.StringRecord("second"))
			return false
		}
	})
}

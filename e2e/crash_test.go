package e2e

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tandem-io/tandem/internal/testutil"
)

// ackTracker records which produced values the broker acknowledged.
type ackTracker struct {
	mu     sync.Mutex
	acked  map[int]bool
	failed int
	errs   map[string]int // error text -> count, for the test log
}

func (a *ackTracker) record(i int, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if err == nil {
		a.acked[i] = true
		return
	}
	a.failed++
	a.errs[err.Error()]++
}

func (a *ackTracker) count() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.acked)
}

// TestCrashRecovery kills the broker with SIGKILL in the middle of an acks=all
// produce load and restarts it on the same data directory, three times. The producer
// (franz-go, idempotent) keeps running across the crash. Afterwards every
// acknowledged value is readable, each exactly once, in production order
// within its partition; and the consumer group offsets committed before the
// crash are still returned by OffsetFetch.
func TestCrashRecovery(t *testing.T) {
	b := startBroker(t)
	const topic, group = "crash", "crash-group"
	const partitions = 3
	b.createTopic(topic, partitions)
	adm := b.admin()

	// Committed group offsets before the crash: consume 90 records as a
	// group and commit them.
	pre := b.client()
	produceSync(t, pre, topic, seqValues("pre-", 90))
	gc := b.client(kgo.ConsumerGroup(group), kgo.ConsumeTopics(topic), kgo.DisableAutoCommit())
	consumeN(t, gc, 90, 30*time.Second)
	if err := gc.CommitUncommittedOffsets(ctxTimeout(t, 15*time.Second)); err != nil {
		t.Fatalf("commit group offsets: %v", err)
	}
	gc.Close()
	before, err := adm.FetchOffsets(ctxTimeout(t, 15*time.Second), group)
	if err != nil || before.Error() != nil {
		t.Fatalf("OffsetFetch before the crash: %v / %v", err, before.Error())
	}
	var preTotal int64
	before.Each(func(o kadm.OffsetResponse) { preTotal += o.At })
	if preTotal != 90 {
		t.Fatalf("committed offsets before the crash sum to %d, want 90: %+v", preTotal, before)
	}

	// The load: values 0, 1, 2, ... produced asynchronously (acks=all,
	// idempotent) until stopped; which ones were acknowledged is recorded.
	acks := &ackTracker{acked: map[int]bool{}, errs: map[string]int{}}
	loadCl := b.client(
		kgo.RecordDeliveryTimeout(45*time.Second),
		kgo.ProducerLinger(time.Millisecond),
		kgo.MaxBufferedRecords(2000),
	)
	loadCtx, stopLoad := context.WithCancel(context.Background())
	defer stopLoad()
	var produced int // values issued; written by the load goroutine only
	loadDone := make(chan struct{})
	go func() {
		defer close(loadDone)
		for i := 0; loadCtx.Err() == nil; i++ {
			i := i
			loadCl.Produce(loadCtx, &kgo.Record{Topic: topic, Value: []byte(strconv.Itoa(i))},
				func(_ *kgo.Record, err error) { acks.record(i, err) })
			produced = i + 1
		}
	}()

	// Three crashes in a row, each once the producer has had 3000 more
	// records acknowledged (so each restart also recovers a log that was
	// being written at full speed).
	const rounds = 3
	for round := 1; round <= rounds; round++ {
		target := acks.count() + 3000
		testutil.Eventually(t, 60*time.Second, func() error {
			if n := acks.count(); n < target {
				return fmt.Errorf("crash %d: %d records acknowledged, waiting for %d: the producer is not making progress", round, n, target)
			}
			return nil
		})
		b.kill()
		t.Logf("SIGKILL %d with %d records acknowledged", round, acks.count())
		b.restart()
	}
	// The producer must get going again against the restarted broker.
	ackedAtLastKill := acks.count()
	testutil.Eventually(t, 60*time.Second, func() error {
		if n := acks.count(); n < ackedAtLastKill+2000 {
			return fmt.Errorf("%d records acknowledged (%d at the last crash): the producer is not making progress after the restart", n, ackedAtLastKill)
		}
		return nil
	})
	stopLoad()
	<-loadDone
	if err := loadCl.Flush(ctxTimeout(t, 60*time.Second)); err != nil {
		t.Fatalf("flush the producer: %v", err)
	}
	loadCl.Close()
	acks.mu.Lock()
	t.Logf("produced %d, acknowledged %d, failed %d; errors: %v", produced, len(acks.acked), acks.failed, acks.errs)
	acked := acks.acked
	acks.mu.Unlock()

	// Read every partition from the start up to its end offset.
	ends := b.endOffsets(topic)
	var total int64
	for _, e := range ends {
		total += e
	}
	rd := b.client(kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	recs := consumeN(t, rd, int(total), 60*time.Second)

	seen := map[int]int{}
	lastInPartition := map[int32]int{}
	nextOffset := map[int32]int64{}
	for _, r := range recs {
		if r.Offset != nextOffset[r.Partition] {
			t.Fatalf("partition %d: record at offset %d, want %d (offsets must be dense)", r.Partition, r.Offset, nextOffset[r.Partition])
		}
		nextOffset[r.Partition]++
		v := string(r.Value)
		if strings.HasPrefix(v, "pre-") {
			continue
		}
		i, err := strconv.Atoi(v)
		if err != nil {
			t.Fatalf("partition %d offset %d: unexpected value %q", r.Partition, r.Offset, v)
		}
		seen[i]++
		if last, ok := lastInPartition[r.Partition]; ok && i <= last {
			t.Fatalf("partition %d offset %d: value %d after value %d (out of order or duplicated)", r.Partition, r.Offset, i, last)
		}
		lastInPartition[r.Partition] = i
	}
	var missing, dup []int
	for i := range acked {
		if seen[i] == 0 {
			missing = append(missing, i)
		}
	}
	for i, n := range seen {
		if n > 1 {
			dup = append(dup, i)
		}
	}
	if len(missing) > 0 {
		t.Errorf("%d acknowledged records are missing after the restart, e.g. %v", len(missing), missing[:min(len(missing), 20)])
	}
	if len(dup) > 0 {
		t.Errorf("%d records are stored more than once, e.g. %v", len(dup), dup[:min(len(dup), 20)])
	}

	// Group offsets committed before the crash survive it.
	after, err := adm.FetchOffsets(ctxTimeout(t, 15*time.Second), group)
	if err != nil {
		t.Fatalf("OffsetFetch after the restart: %v", err)
	}
	before.Each(func(o kadm.OffsetResponse) {
		got, ok := after.Lookup(o.Topic, o.Partition)
		if !ok || got.Err != nil || got.At != o.At {
			t.Errorf("group %s %s[%d]: committed offset %d before the crash, %+v (found %v) after", group, o.Topic, o.Partition, o.At, got, ok)
		}
	})
	b.requireNoPanic()
}

// TestCrashResetsUnansweredConnections: when the broker process dies
// (SIGKILL), a client connection that has had answers ends the orderly way
// (the client reads EOF between requests and reconnects), and one that has
// had none, or only its ApiVersions answer, is reset by the kernel. Given an
// orderly end before its first answer, franz-go decides TLS or SASL is
// misconfigured, does not retry, and fails the records it was about to
// send: in a 15-minute soak (2026-12-07), a producer whose InitProducerId
// was on its way to a leader killed at that moment lost a write attempt
// that way. Given a reset, it dials again.
func TestCrashResetsUnansweredConnections(t *testing.T) {
	b := startBroker(t)
	answered := kafkaConn(t, b.Addr, kmsg.NewPtrApiVersionsRequest(), kmsg.NewPtrMetadataRequest())
	versionsOnly := kafkaConn(t, b.Addr, kmsg.NewPtrApiVersionsRequest())
	fresh := kafkaConn(t, b.Addr)
	// The broker has accepted the fresh connection too (it accepts in
	// order): it answers a request on a connection dialled after it.
	kafkaConn(t, b.Addr, kmsg.NewPtrApiVersionsRequest())

	b.kill()
	testutil.CheckConnEnds(t, "SIGKILL", answered, versionsOnly, fresh)
}

// TestProducerDialingABrokerThatCrashesRetries: one of a franz-go
// producer's connections is accepted by a broker that is then killed
// (SIGKILL) and restarted. The producer dials again and its record is
// written, instead of failing at once. The client's second connection is
// the one that matters (franz-go v1.22: the first is its seed connection,
// whose Metadata it always retries; the second, to node 1, carries
// InitProducerId): against a broker that closed it the orderly way, the
// produce failed with "unable to initialize a producer ID ... is TLS
// missing?", the failed write of the 2026-12-07 soak.
func TestProducerDialingABrokerThatCrashesRetries(t *testing.T) {
	for killAt := int32(1); killAt <= 3; killAt++ {
		t.Run(fmt.Sprintf("killed at dial %d", killAt), func(t *testing.T) {
			b := startBroker(t)
			b.createTopic("crash-dial", 1)
			var dialed atomic.Int32
			restarted := make(chan error, 1)
			dial := func(ctx context.Context, network, host string) (net.Conn, error) {
				c, err := (&net.Dialer{}).DialContext(ctx, network, host)
				if err != nil || dialed.Add(1) != killAt {
					return c, err
				}
				// The broker accepts in order: once it answers a
				// connection dialled after this one, it has accepted
				// this one too.
				// (This runs in the client's goroutine: errors go to
				// the test through restarted.)
				probe, perr := testutil.KafkaExchange(b.Addr, kmsg.NewPtrApiVersionsRequest())
				if perr != nil {
					restarted <- perr
					return c, nil
				}
				probe.Close()
				if kerr := b.Proc.Kill(); kerr != nil {
					restarted <- kerr
					return c, nil
				}
				go func() { restarted <- b.Proc.Restart() }()
				return c, nil
			}
			cl := b.client(kgo.Dialer(dial), kgo.RecordDeliveryTimeout(30*time.Second), kgo.DefaultProduceTopic("crash-dial"))
			err := cl.ProduceSync(ctxTimeout(t, 40*time.Second), &kgo.Record{Value: []byte("v")}).FirstErr()
			if dialed.Load() < killAt {
				t.Fatalf("the client dialled only %d times", dialed.Load())
			}
			if rerr := <-restarted; rerr != nil {
				t.Fatalf("killing and restarting the broker: %v", rerr)
			}
			if err != nil {
				t.Fatalf("the produce failed after %d dials: %v", dialed.Load(), err)
			}
			t.Logf("written after %d dials", dialed.Load())
		})
	}
}

// kafkaConn is testutil.KafkaExchange, closed when the test ends.
func kafkaConn(t *testing.T, addr string, reqs ...kmsg.Request) net.Conn {
	t.Helper()
	c, err := testutil.KafkaExchange(addr, reqs...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

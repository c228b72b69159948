package e2e

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

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

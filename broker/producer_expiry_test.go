package broker

import (
	"context"
	"fmt"
	"maps"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Idle producer state expires (producer.id.expiration.ms): a producer that
// stopped writing is no longer listed by DescribeProducers and its id is
// forgotten, while one that keeps writing and one with a transaction open
// are kept. The idle producer can come back: its next batch is taken and
// retries of it are still recognised; an InitProducerId bump of a
// forgotten id gets a new id rather than an error.
func TestIdleProducerStateExpires(t *testing.T) {
	const expiration = 400 * time.Millisecond
	b, addr := startBrokerWith(t, t.TempDir(), func(c *Config) {
		c.ProducerIDExpiration = expiration
		c.ProducerIDExpirationCheckInterval = 50 * time.Millisecond
		// One window or id per hold of the lock: the sweeps go in many
		// steps and step over the windows a transaction holds.
		c.producerSweepBatch = 1
	})
	cl := newClient(t, addr)
	for _, topic := range []string{"pe-a", "pe-b"} {
		if err := createTopicErr(t, cl, topic); err != nil {
			t.Fatal(err)
		}
	}
	newPID := func() int64 {
		t.Helper()
		r, err := initProducerID(t.Context(), cl, -1, -1)
		if err == nil {
			err = kerr.ErrorForCode(r.ErrorCode)
		}
		if err != nil {
			t.Fatalf("InitProducerId: %v", err)
		}
		return r.ProducerID
	}
	idle, never := newPID(), newPID()
	for _, topic := range []string{"pe-a", "pe-b"} {
		if r := rawProduce(t, cl, topic, idle, 0, 0, 2); r.ErrorCode != 0 {
			t.Fatalf("produce to %s: %v", topic, kerr.ErrorForCode(r.ErrorCode))
		}
	}
	open := txnProducer(t, addr, "app-open", "pe-a", kgo.TransactionTimeout(time.Minute))
	if err := open.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := open.ProduceSync(t.Context(), kgo.StringRecord("in the open transaction")).FirstErr(); err != nil {
		t.Fatal(err)
	}
	openPID, _, err := open.ProducerID(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	// A producer that goes on writing throughout.
	busy := newPID()
	stop, wrote := make(chan struct{}), make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	var once sync.Once
	first := func() { once.Do(func() { close(wrote) }) }
	go func() {
		defer wg.Done()
		defer first() // also when it fails
		for seq := int32(0); ; seq++ {
			r, err := rawProduceErr(cl, "pe-a", busy, 0, seq, 1)
			if err != nil || r.ErrorCode != 0 {
				t.Errorf("the busy producer's batch %d: %v %v", seq, err, r)
				return
			}
			first()
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	defer func() { close(stop); wg.Wait() }()
	<-wrote

	known := func(pid int64) bool {
		b.appendMu.Lock()
		defer b.appendMu.Unlock()
		_, ok := b.pidEpochs[pid]
		return ok
	}
	adm := kadm.NewClient(cl)
	described := func() map[string]kadm.DescribedProducersPartition {
		t.Helper()
		d, err := adm.DescribeProducers(t.Context(), kadm.TopicsSet{"pe-a": {0: {}}, "pe-b": {0: {}}})
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]kadm.DescribedProducersPartition{}
		for topic, ps := range d {
			p := ps.Partitions[0]
			if p.Err != nil {
				t.Fatalf("DescribeProducers %s: %v", topic, p.Err)
			}
			out[topic] = p
		}
		return out
	}
	if d := described(); len(d["pe-a"].ActiveProducers) != 3 || len(d["pe-b"].ActiveProducers) != 1 {
		t.Fatalf("before expiry, DescribeProducers lists %d producers on pe-a and %d on pe-b, want 3 and 1",
			len(d["pe-a"].ActiveProducers), len(d["pe-b"].ActiveProducers))
	}
	deadline := time.Now().Add(15 * time.Second)
	for known(idle) || known(never) {
		if time.Now().After(deadline) {
			t.Fatalf("after 15 s the idle producer's id is known: %v, the never-used one's: %v", known(idle), known(never))
		}
		time.Sleep(20 * time.Millisecond)
	}
	d := described()
	for topic, p := range d {
		if _, ok := p.ActiveProducers[idle]; ok {
			t.Errorf("DescribeProducers still lists the idle producer on %s", topic)
		}
	}
	if _, ok := d["pe-a"].ActiveProducers[busy]; !ok || !known(busy) {
		t.Errorf("the busy producer was forgotten (listed on pe-a: %v, id known: %v)", ok, known(busy))
	}
	if p, ok := d["pe-a"].ActiveProducers[openPID]; !ok || p.CurrentTxnStartOffset < 0 || !known(openPID) {
		t.Errorf("the producer with a transaction open was forgotten (listed: %+v %v, id known: %v)", p, ok, known(openPID))
	}

	// The idle producer comes back where it left off.
	back := rawProduce(t, cl, "pe-b", idle, 0, 2, 1)
	if back.ErrorCode != 0 || back.BaseOffset != 2 {
		t.Fatalf("the returning producer's batch: %v at offset %d, want offset 2", kerr.ErrorForCode(back.ErrorCode), back.BaseOffset)
	}
	if r := rawProduce(t, cl, "pe-b", idle, 0, 2, 1); r.ErrorCode != 0 || r.BaseOffset != back.BaseOffset {
		t.Fatalf("a retry of it: %v at offset %d, want the original's answer (offset %d)", kerr.ErrorForCode(r.ErrorCode), r.BaseOffset, back.BaseOffset)
	}
	if r := rawProduce(t, cl, "pe-b", idle, 0, 5, 1); r.ErrorCode != kerr.OutOfOrderSequenceNumber.Code {
		t.Fatalf("a batch with a gap after it: %v, want OUT_OF_ORDER_SEQUENCE_NUMBER", kerr.ErrorForCode(r.ErrorCode))
	}
	if got := consumeAll(t, addr, "pe-b", 3); len(got) != 3 {
		t.Fatalf("pe-b holds %d records, want 3", len(got))
	}
	// A forgotten id presented for a bump (KIP-360) gets a new id.
	r, err := initProducerID(t.Context(), cl, never, 0)
	if err != nil || r.ErrorCode != 0 || r.ProducerID == never || r.ProducerEpoch != 0 {
		t.Fatalf("InitProducerId bumping a forgotten id: %v %v id %d epoch %d, want a new id at epoch 0", err, kerr.ErrorForCode(r.ErrorCode), r.ProducerID, r.ProducerEpoch)
	}
	if err := open.EndTransaction(t.Context(), kgo.TryCommit); err != nil {
		t.Fatalf("committing the transaction kept open through the expiry: %v", err)
	}
	check := func(when string) {
		t.Helper()
		b.appendMu.Lock()
		defer b.appendMu.Unlock()
		if err := windowBookkeepingErr(b); err != nil {
			t.Fatalf("%s: %v", when, err)
		}
	}
	check("after the expiry")
	// Deleting a topic forgets its producers' windows with it.
	if _, err := adm.DeleteTopics(t.Context(), "pe-b"); err != nil {
		t.Fatal(err)
	}
	check("after deleting pe-b")
	b.appendMu.Lock()
	left := len(b.tpWindows[tp{"pe-b", 0}])
	b.appendMu.Unlock()
	if left != 0 {
		t.Fatalf("%d producer windows of the deleted topic are left", left)
	}
}

// BenchmarkProducerState measures what idle producer state costs and what
// a sweep gives back: 20,000 idempotent producers each write one batch to
// each of 4 partitions (80,000 sequence windows), then one sweep forgets
// them all. Reported: heap bytes per window held (with the index entry of
// its batch, which stays with the log) and freed by the sweep, the state
// checkpoint's bytes per producer id and after the sweep, and how long the
// sweep held the append lock.
//
//	go test -run '^$' -bench BenchmarkProducerState -benchtime 1x ./broker
func BenchmarkProducerState(bm *testing.B) {
	const producers, topics, workers = 20000, 4, 8
	for bm.Loop() {
		b, addr := openBenchBroker(bm, func(c *Config) { c.ProducerIDExpiration = time.Hour })
		cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.MaxBufferedRecords(1))
		if err != nil {
			bm.Fatal(err)
		}
		names := make([]string, topics)
		for i := range names {
			names[i] = fmt.Sprintf("state-%d", i)
			if _, err := kadm.NewClient(cl).CreateTopic(context.Background(), 1, 1, nil, names[i]); err != nil {
				bm.Fatal(err)
			}
		}
		heap := func() uint64 {
			runtime.GC()
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			return ms.HeapAlloc
		}
		snapshot := func() int {
			b.appendMu.Lock()
			defer b.appendMu.Unlock()
			return len(encodeJSON(b.snapshotLocked()))
		}
		before, snapBefore := heap(), snapshot()
		var wg sync.WaitGroup
		errs := make(chan error, workers)
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for pid := int64(1000 + w); pid < 1000+producers; pid += workers {
					for _, topic := range names {
						r, err := rawProduceErr(cl, topic, pid, 0, 0, 1)
						if err == nil && r.ErrorCode != 0 {
							err = kerr.ErrorForCode(r.ErrorCode)
						}
						if err != nil {
							errs <- err
							return
						}
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		if err := <-errs; err != nil {
			bm.Fatal(err)
		}
		held, snapHeld := heap(), snapshot()
		// Sweep as if an expiration had passed: the first sweep marks, the
		// second (an expiration later) forgets the windows, the third the
		// ids.
		now := time.Now()
		b.expireProducers(now)
		start := time.Now()
		windows, _ := b.expireProducers(now.Add(time.Hour))
		sweep := time.Since(start)
		_, pids := b.expireProducers(now.Add(2 * time.Hour))
		if windows != producers*topics || pids != producers {
			bm.Fatalf("the sweeps forgot %d windows and %d ids, want %d and %d", windows, pids, producers*topics, producers)
		}
		after, snapAfter := heap(), snapshot()
		bm.ReportMetric(float64(held-before)/float64(windows), "heap-B/window")
		bm.ReportMetric(float64(snapHeld-snapBefore)/float64(producers), "checkpoint-B/producer")
		bm.ReportMetric(float64(snapAfter), "checkpoint-B-after")
		bm.ReportMetric(float64(int64(held)-int64(after))/float64(windows), "freed-B/window")
		bm.ReportMetric(float64(sweep.Microseconds())/1000, "sweep-ms")
		cl.Close()
		b.Close()
	}
}

// windowBookkeepingErr checks that the expiry's bookkeeping agrees with
// the producer windows: every window is listed once, indexed under its
// partition and counted under its producer id. Caller holds appendMu, or the broker is idle.
func windowBookkeepingErr(b *Broker) error {
	listed, perPID := 0, map[int64]int32{}
	for w := b.windows.front(); w != nil && w != &b.windows.root; w = w.next {
		if b.producers[w.key] != w {
			return fmt.Errorf("window %+v is listed but not in the map", w.key)
		}
		listed++
		perPID[w.key.pid]++
	}
	byTP := 0
	for k, ws := range b.tpWindows {
		for pid, w := range ws {
			if b.producers[producerKey{pid, k}] != w {
				return fmt.Errorf("window of %d on %v is indexed by partition but not in the map", pid, k)
			}
			byTP++
		}
	}
	if listed != len(b.producers) || byTP != len(b.producers) || !maps.Equal(perPID, b.pidWindows) {
		return fmt.Errorf("%d windows listed and %d indexed by partition of %d; per producer id %v, counted %v",
			listed, byTP, len(b.producers), perPID, b.pidWindows)
	}
	for pid := range b.pidIdleSince {
		if b.pidWindows[pid] > 0 {
			return fmt.Errorf("producer id %d has %d windows and counts as idle", pid, b.pidWindows[pid])
		}
	}
	return nil
}

package e2e

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tandem-io/tandem/internal/testutil"
)

// --catchup-bytes-per-sec holds back a follower that catches up (outside the
// ISR) and never an in-sync one: node 3 comes back to a 10 MB backlog and
// takes at least as long as the limit allows, while node 2, in sync the
// whole time, is never held back; node 3 then rejoins the ISR with a WAL
// identical to the leader's. Then a catch-up that the limit cannot finish:
// node 3 comes back while producers write faster than the limit, and the
// leader says so (log and tandem_sidecar_catchup_not_gaining_total); once
// the producers stop, node 3 catches up after all.
func TestCatchupThrottleHoldsBackOnlyCatchingUpFollowers(t *testing.T) {
	const rate = 2_000_000 // bytes per second
	c := startCluster(t, clusterOpts{sidecarFlags: append(isrSidecarFlags(), "--catchup-bytes-per-sec", fmt.Sprint(rate))})
	metricsAddr := testutil.FreeAddr(t)
	c.restartSidecarWith(1, "--metrics-listen", metricsAddr)
	c.waitInSync(30 * time.Second)
	const topic = "throttle"
	c.createTopic(topic)

	c.node(3).killPair()
	c.waitISR(30*time.Second, 1, 2)
	const records, size = 10_000, 1000
	recs := make([]*kgo.Record, records)
	for i := range recs {
		recs[i] = &kgo.Record{Topic: topic, Value: append([]byte(fmt.Sprintf("%06d", i)), bytes.Repeat([]byte("t"), size-6)...)}
	}
	prod := kclient(t, []string{c.leader().kafka}, kgo.RequiredAcks(kgo.AllISRAcks()), kgo.ProducerBatchCompression(kgo.NoCompression()))
	if err := prod.ProduceSync(ctxTimeout(t, 60*time.Second), recs...).FirstErr(); err != nil {
		t.Fatalf("producing %d records with node 3 down: %v", records, err)
	}
	c.caughtUp(30*time.Second, 1, 2)

	start := time.Now()
	c.node(3).startPair()
	c.caughtUp(2*time.Minute, 1, 3)
	took := time.Since(start)
	// At most rate × t + one burst (1 MiB here: a batch) + one batch can
	// have been sent in t, so the backlog cannot arrive sooner than this.
	minTook := time.Duration(float64(records*size-2<<20) / rate * float64(time.Second))
	t.Logf("node 3 caught up %d bytes of records in %s (limit %d bytes/s, no sooner than %s)", records*size, took.Round(time.Millisecond), rate, minTook.Round(time.Millisecond))
	if took < minTook {
		t.Fatalf("node 3 caught up in %s, faster than --catchup-bytes-per-sec %d allows (%s)", took, rate, minTook)
	}
	c.waitISR(30*time.Second, 1, 2, 3)
	m, err := scrape(metricsAddr)
	if err != nil {
		t.Fatal(err)
	}
	if n := m[`tandem_sidecar_catchup_throttled_total{follower="3"}`]; n == 0 {
		t.Fatal("the leader never held back node 3's catch-up (tandem_sidecar_catchup_throttled_total{follower=\"3\"} is 0)")
	}
	if n := m[`tandem_sidecar_catchup_throttled_total{follower="2"}`]; n != 0 {
		t.Fatalf("the leader held back node 2, which was in the ISR, %v times", n)
	}
	c.mustVerify(1)

	c.node(3).killPair()
	c.waitISR(30*time.Second, 1, 2)
	stop := make(chan struct{})
	produced := make(chan error, 1)
	go func() { // about three times the limit, in 100 ms steps
		const perStep = 3 * rate / 10 / size
		for i := 0; ; i++ {
			select {
			case <-stop:
				produced <- nil
				return
			default:
			}
			step := make([]*kgo.Record, perStep)
			for j := range step {
				step[j] = &kgo.Record{Topic: topic, Value: append([]byte(fmt.Sprintf("%06d", i)), bytes.Repeat([]byte("f"), size-6)...)}
			}
			stepStart := time.Now()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			err := prod.ProduceSync(ctx, step...).FirstErr()
			cancel()
			if err != nil {
				produced <- fmt.Errorf("producing faster than the limit: %w", err)
				return
			}
			time.Sleep(100*time.Millisecond - time.Since(stepStart))
		}
	}()
	// Node 3 must come back behind (a follower that is caught up when it
	// connects joins the ISR at once and is never throttled).
	time.Sleep(2 * time.Second)
	c.node(3).startPair()
	notGaining := `tandem_sidecar_catchup_not_gaining_total{follower="3"}`
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(500 * time.Millisecond) {
		m, err := scrape(metricsAddr)
		if err != nil {
			t.Fatal(err)
		}
		if m[notGaining] > 0 {
			break
		}
		if time.Now().After(deadline) {
			close(stop)
			t.Fatalf("producers wrote about %d bytes/s for a minute, three times --catchup-bytes-per-sec, and the leader never reported node 3 as not catching up (%s is 0)", 3*rate, notGaining)
		}
	}
	close(stop)
	if err := <-produced; err != nil {
		t.Fatal(err)
	}
	log := c.node(1).side.Log()
	i := strings.Index(log, "follower is not catching up")
	if i < 0 {
		t.Fatalf("%s went up but the leader sidecar logged no \"follower is not catching up\"", notGaining)
	}
	line, _, _ := strings.Cut(log[i:], "\n")
	t.Logf("leader sidecar: %s", line)
	c.caughtUp(2*time.Minute, 1, 3)
	c.waitISR(30*time.Second, 1, 2, 3)
	m, err = scrape(metricsAddr)
	if err != nil {
		t.Fatal(err)
	}
	if n := m[`tandem_sidecar_catchup_not_gaining_total{follower="2"}`]; n != 0 {
		t.Fatalf("the leader reported node 2, in the ISR all along, as not catching up %v times", n)
	}
	c.mustVerify(1)
}

package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tandem-io/tandem/internal/testutil"
)

// TestEtcdOutage: the etcd that automatic failover relies on goes away
// twice while acks=all writes go on: first it hangs (SIGSTOP, which is what
// a network partition from etcd looks like), then it crashes (SIGKILL) and
// is restarted on its data. While etcd is away the leader steps down
// before its lease could expire (it cannot renew the lease, so it must not
// assume it still holds it: docs/operations.md, "fencing"; it does so at
// half the TTL), and no write is acknowledged. Once etcd is back, a leader is elected without anyone
// acting, writes go on, and every node holds every acknowledged write once
// and in order, in identical WALs.
func TestEtcdOutage(t *testing.T) {
	url, etcd := startEtcdProcess(t)
	c := startCluster(t, clusterOpts{
		brokerFlags:  []string{"--min-insync-replicas", "2"},
		sidecarFlags: etcdSidecarFlags(url),
	})
	const topic = "etcd-outage"
	c.createTopicRetry(topic)
	leader, _ := c.waitLeader(30 * time.Second)
	testutil.Eventually(t, 30*time.Second, func() error { return c.inSync(leader) })
	c.waitElectable(url)

	var acked []string
	next := 0
	// write produces n new values with a client of its own and returns how
	// many were not acknowledged within timeout.
	write := func(n int, timeout time.Duration) (failed int) {
		t.Helper()
		cl := kclient(t, c.kafkaAddrs(), plain, kgo.MetadataMinAge(250*time.Millisecond),
			kgo.RecordDeliveryTimeout(timeout), kgo.RetryTimeout(timeout))
		defer cl.Close()
		recs := make([]*kgo.Record, n)
		for i := range recs {
			recs[i] = &kgo.Record{Topic: topic, Value: fmt.Appendf(nil, "v-%06d", next+i)}
		}
		next += n
		ctx, cancel := context.WithTimeout(context.Background(), timeout+5*time.Second)
		defer cancel()
		for _, r := range cl.ProduceSync(ctx, recs...) {
			if r.Err != nil {
				failed++
				continue
			}
			acked = append(acked, string(r.Record.Value))
		}
		return failed
	}
	if f := write(50, 30*time.Second); f != 0 {
		t.Fatalf("%d of 50 writes failed before any outage", f)
	}

	for _, outage := range []struct {
		what        string
		stop, start func()
	}{
		{"hangs (SIGSTOP)", func() { etcd.Pause() }, func() { etcd.Resume() }},
		{"crashes (SIGKILL) and restarts", func() { etcd.Kill() }, etcd.MustRestart},
	} {
		outage.stop()
		gone := time.Now()
		// Before its lease could expire (and, with etcd back, another node
		// be elected), the leader must have stopped taking writes.
		testutil.Eventually(t, etcdLeaseTTL, func() error {
			if id, _ := c.leaderNow(time.Second); id != 0 {
				return fmt.Errorf("node %d still leads %s after etcd went away (lease TTL %s)", id, time.Since(gone).Round(time.Millisecond), etcdLeaseTTL)
			}
			return nil
		})
		steppedDown := time.Since(gone)
		if f := write(1, 3*time.Second); f != 1 {
			t.Fatalf("etcd %s: a write was acknowledged while no node can hold the election", outage.what)
		}
		if rest := 2*etcdLeaseTTL - time.Since(gone); rest > 0 {
			time.Sleep(rest) // the outage lasts two lease TTLs
		}
		outage.start()
		back := time.Now()
		id, epoch := c.waitLeader(60 * time.Second)
		t.Logf("etcd %s: no leader %s after it went away; node %d leads epoch %d %s after it came back",
			outage.what, steppedDown.Round(time.Millisecond), id, epoch, time.Since(back).Round(time.Millisecond))
		if f := write(50, 60*time.Second); f != 0 {
			t.Fatalf("etcd %s: %d of 50 writes failed after etcd came back", outage.what, f)
		}
	}

	leader, _ = c.waitLeader(30 * time.Second)
	testutil.Eventually(t, 60*time.Second, func() error { return c.inSync(leader) })
	c.caughtUp(60*time.Second, leader, 1, 2, 3)
	c.mustVerify(leader)
	for _, n := range c.nodes {
		requireAckedStored(t, fmt.Sprintf("node %d", n.id), readValues(t, c, n.id, topic), acked)
	}
}

package e2e

import (
	"context"
	"fmt"
	"os/exec"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tandem-io/tandem/internal/testutil"
)

// TestRollingRestart is what an operator does to upgrade a cluster or change
// a flag that is read at start: restart the nodes one at a time, the
// followers first and the leader last, each after the one before is back
// in the ISR (`tandemctl wait-in-sync`). Every process gets SIGTERM, both
// of a pair at once (as Kubernetes stops a pod's containers), with etcd
// failover and min.insync.replicas=2, while an acks=all producer writes and
// a consumer group reads all along.
//
// What a user checks: writes go on while each node is down, no
// acknowledged write is lost or stored twice, no write fails (the
// producer's retries outlast each pause), the consumer group reads
// everything, the leadership moved off the node restarted last, and the
// replicas are identical. It logs how long writes paused at each step.
//
// --replica-lag-time-max is a minute here: a follower that stops cleanly
// tells the leader (FollowerLeaving), which takes it out of the ISR at
// once, so acks=all writes do not wait for the lag bound. Before that
// message existed, writes stood still for the whole bound at each
// follower's restart (10 s with the default), and this test failed.
func TestRollingRestart(t *testing.T) {
	url := startEtcd(t)
	c := startCluster(t, clusterOpts{
		brokerFlags:  []string{"--min-insync-replicas", "2"},
		sidecarFlags: append(etcdSidecarFlags(url), "--replica-lag-time-max", "60s"),
	})
	leader, epoch := c.waitLeader(30 * time.Second)
	testutil.Eventually(t, 30*time.Second, func() error { return c.inSync(leader) })
	c.waitElectable(url)
	const topic = "rolling"
	c.createTopicRetry(topic)

	w := startAckWriter(t, c, topic)
	r := startGroupReader(t, kclient(t, c.kafkaAddrs(), kgo.ConsumerGroup("rolling-group"), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.MetadataMinAge(250*time.Millisecond), kgo.RetryTimeout(60*time.Second)))
	w.waitMore(100, 30*time.Second, "before the restarts")

	var order []int
	for _, n := range c.nodes {
		if n.id != leader {
			order = append(order, n.id)
		}
	}
	order = append(order, leader)

	for _, id := range order {
		n := c.node(id)
		pause := watchAckPause(w)
		stopped := time.Now()
		if err := n.stopPair(); err != nil {
			t.Fatal(err)
		}
		took := time.Since(stopped)

		// The upgrade itself would happen here. Writes must go on meanwhile:
		// through a new leader when this node led.
		w.waitMore(50, 30*time.Second, fmt.Sprintf("while node %d is down", id))
		now, nowEpoch := c.waitLeader(30 * time.Second)
		if now == id {
			t.Fatalf("node %d leads while it is stopped", id)
		}

		n.side.MustRestart()
		n.broker.MustRestart()
		testutil.WaitTCPFor(t, n.kafka, 20*time.Second)
		back := time.Now()
		// What the operator runs before the next node (asking the node
		// just restarted, which names its leader).
		out, err := exec.Command(testutil.Bin(t, "tandemctl"), "--sidecar", n.sidecar, "wait-in-sync", "--max-wait", "60s").CombinedOutput()
		if err != nil {
			t.Fatalf("tandemctl wait-in-sync after node %d's restart: %v\n%s", id, err, out)
		}
		if l, _ := c.leaderNow(time.Second); l == 0 || c.inISR(l, id) != nil {
			t.Fatalf("tandemctl wait-in-sync returned, but node %d is not in leader %d's ISR: %v\n%s", id, l, c.inISR(l, id), out)
		}
		c.waitElectable(url)
		longest, failed := pause()
		t.Logf("node %d (%s): both processes exited %v after SIGTERM; node %d leads epoch %d; back in the ISR %v after its start; longest pause between acknowledged writes %v; %d writes failed",
			id, map[bool]string{true: "the leader", false: "a follower"}[id == leader], took.Round(time.Millisecond),
			now, nowEpoch, time.Since(back).Round(time.Millisecond), longest.Round(time.Millisecond), failed)
		if id == leader && (now == leader || nowEpoch <= epoch) {
			t.Fatalf("after the leader's restart node %d leads epoch %d; want another node in a later epoch than %d", now, nowEpoch, epoch)
		}
	}

	w.waitMore(100, 30*time.Second, "after the last restart")
	acked, failed := w.result()
	if failed > 0 {
		t.Fatalf("%d writes failed during the rolling restart (the last with %v); want none: each pause is shorter than the producer's retries", failed, w.lastErr)
	}
	final, _ := c.waitLeader(30 * time.Second)
	c.caughtUp(60*time.Second, final, 1, 2, 3)
	c.mustVerify(final)
	for _, n := range c.nodes {
		requireAckedStored(t, fmt.Sprintf("node %d", n.id), readValues(t, c, n.id, topic), acked)
	}
	r.waitFor(t, 60*time.Second, acked)
	distinct, again := r.counts()
	t.Logf("%d writes acknowledged, none failed; the group read all of them (%d distinct values, %d read again after a rebalance)", len(acked), distinct, again)
}

// inISR says whether the leader leaderID has follower id connected and in
// its ISR.
func (c *cluster) inISR(leaderID, id int) error {
	st, err := c.status(leaderID)
	if err != nil {
		return err
	}
	for _, rep := range st.Replicas {
		if int(rep.NodeId) == id {
			if !rep.Connected || !rep.InIsr {
				return fmt.Errorf("node %d at leader %d: connected=%v in_isr=%v", id, leaderID, rep.Connected, rep.InIsr)
			}
			return nil
		}
	}
	return fmt.Errorf("leader %d does not list node %d", leaderID, id)
}

// watchAckPause samples w's acknowledged count every 20ms until the
// returned func is called, which gives the longest time the count stood
// still and how many writes failed meanwhile.
func watchAckPause(w *ackWriter) func() (time.Duration, int) {
	ctx, cancel := context.WithCancel(context.Background())
	w.mu.Lock()
	failed0 := w.failed
	w.mu.Unlock()
	var longest time.Duration
	done := make(chan struct{})
	go func() {
		defer close(done)
		last, since := w.count(), time.Now()
		for ctx.Err() == nil {
			sleepOrDone(ctx, 20*time.Millisecond)
			if n := w.count(); n != last {
				last, since = n, time.Now()
			} else if d := time.Since(since); d > longest {
				longest = d
			}
		}
	}()
	return func() (time.Duration, int) {
		cancel()
		<-done
		w.mu.Lock()
		defer w.mu.Unlock()
		return longest, w.failed - failed0
	}
}

package sidecar_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/tandem-io/tandem/broker/link"
	adminv1 "github.com/tandem-io/tandem/gen/tandem/admin/v1"
	"github.com/tandem-io/tandem/internal/testutil"
	"github.com/tandem-io/tandem/sidecar/sidecartest"
)

// A leader's broker that stops on purpose (SIGTERM for the real broker)
// while its sidecar keeps running: Kafka's controlled shutdown. The sidecar
// waits until its in-sync followers hold the broker's last entry, resigns,
// and an in-sync follower is elected at once. Without it, the sidecar
// would keep the election for a whole lease TTL with no broker behind it
// (a minute here: longer than the test waits). The new leader's epoch
// starts right after the old leader's last entry: nothing the old leader
// wrote is dropped, acks=1 writes included.
func TestStoppingLeaderBrokerHandsLeadershipOver(t *testing.T) {
	c, url := etcdCluster(t, nil)
	// Leases of a minute, so that nothing but the handover can move the
	// leadership while the broker is down. (Set by restarting the
	// sidecars: etcdCluster's first election needs short leases, because
	// the other nodes give the --leader node a head start of one TTL.)
	for _, id := range []int32{2, 3, 1} {
		c.Nodes[id].Config.LeaseTTL = time.Minute
		c.StopSidecar(id)
		c.StartSidecar(id)
		c.WaitCaughtUp(20)
	}
	old, epoch := waitISRPublished(t, c, url)
	leader := c.Nodes[old].Broker

	// The leader writes all along until its broker stops, so the followers
	// are behind by a few entries when it does.
	stopWrites := writeInBackground(leader, 1000, nil)
	time.Sleep(300 * time.Millisecond)
	stopWrites()
	last := leader.WAL().LastLSN()
	released, took := c.StopBrokerCleanly(old)
	if !released {
		t.Fatalf("node %d's sidecar did not end the link of its stopping broker", old)
	}
	t.Logf("node %d's sidecar released its broker after %v (WAL to LSN %d)", old, took, last)

	next, nextEpoch := requireTookOver(t, c, old, epoch, last)

	// The old leader's broker comes back and follows the new leader.
	c.StartBroker(old)
	waitFollows(t, c.Nodes[old].Broker, next, nextEpoch)
	c.Nodes[next].Broker.Produce(t, 10, 100)
	end := c.Nodes[next].Broker.WAL().LastLSN()
	c.WaitCaughtUp(end)
	c.AssertIdentical(end)
}

// A follower's broker, or a static leader's, has nothing to hand over: its
// sidecar ends the link at once, and the node carries on as after any
// broker stop.
func TestStoppingBrokerWithNothingToHandOver(t *testing.T) {
	c := sidecartest.NewCluster(t, 3, 1, nil)
	c.StartAll()
	leader := c.WaitLeader()
	leader.Produce(t, 20, 100)
	c.WaitCaughtUp(20)
	for _, id := range []int32{2, 1} {
		released, took := c.StopBrokerCleanly(id)
		if !released {
			t.Fatalf("node %d's sidecar did not end the link of its stopping broker", id)
		}
		t.Logf("node %d's sidecar released its broker after %v", id, took)
		c.StartBroker(id)
	}
	leader = c.WaitLeader()
	if got := leader.NodeID(); got != 1 {
		t.Fatalf("node %d leads, want the static leader 1", got)
	}
	leader.Produce(t, 10, 100)
	c.WaitCaughtUp(30)
	c.AssertIdentical(30)
}

// A leader's whole node stops at once (SIGTERM to both processes, as
// Kubernetes stops a pod's containers): the sidecar waits for its broker's
// BrokerStopping and hands the leadership over as when the broker alone
// stops, so the new leader holds every entry the old one wrote, before
// the sidecar revokes its lease.
func TestStoppingLeaderPairHandsLeadershipOver(t *testing.T) {
	c, url := etcdCluster(t, nil)
	old, epoch := waitISRPublished(t, c, url)
	leader := c.Nodes[old].Broker
	stopWrites := writeInBackground(leader, 1000, nil)
	time.Sleep(300 * time.Millisecond)
	stopWrites()
	last := leader.WAL().LastLSN()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); c.StopSidecar(old) }()
	released, _ := c.StopBrokerCleanly(old)
	wg.Wait()
	if !released {
		t.Fatalf("node %d's sidecar did not end the link of its stopping broker", old)
	}
	next, _ := requireTookOver(t, c, old, epoch, last)
	c.StartSidecar(old)
	c.StartBroker(old)
	end := c.Nodes[next].Broker.WAL().LastLSN()
	c.WaitCaughtUp(end)
	c.AssertIdentical(end)
}

// A leader's sidecar that stops on its own while its broker runs on (a
// sidecar-only upgrade): before it revokes its lease, it stops the broker's
// writes, waits until its in-sync followers hold the broker's last entry,
// and leaves the broker with a follower view. Without that, the broker
// went on taking writes that the new leader lacks (acks=1 writes, dropped
// when this node follows again).
func TestStoppingLeaderSidecarHandsLeadershipOver(t *testing.T) {
	c, url := etcdCluster(t, nil)
	old, epoch := waitISRPublished(t, c, url)
	leader := c.Nodes[old].Broker

	// The broker writes all along, as fast as its view lets it; it must
	// be refused from the handover on.
	var (
		mu       sync.Mutex
		written  int
		refused  int
		writeErr error
	)
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-quit:
				return
			case <-time.After(time.Millisecond):
			}
			lsn, err := leader.TryProduce(1000)
			mu.Lock()
			switch {
			case err != nil:
				writeErr = err
			case lsn == 0:
				refused++
			default:
				written++
			}
			mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	time.Sleep(300 * time.Millisecond)
	start := time.Now()
	c.StopSidecar(old)
	t.Logf("node %d's sidecar stopped in %v", old, time.Since(start))
	time.Sleep(300 * time.Millisecond) // the broker would go on writing meanwhile
	close(quit)
	<-done
	mu.Lock()
	t.Logf("the broker wrote %d entries, and was refused %d times", written, refused)
	if writeErr != nil || refused == 0 {
		t.Fatalf("the broker kept taking writes after its sidecar stopped (append error: %v)", writeErr)
	}
	mu.Unlock()
	if v := leader.View(); v.Role != link.RoleFollower || v.HandingOver {
		t.Fatalf("the broker's view after its sidecar stopped: %+v, want a follower's", v)
	}
	last := leader.WAL().LastLSN()
	next, nextEpoch := requireTookOver(t, c, old, epoch, last)

	// The sidecar comes back, and the node follows the new leader.
	c.StartSidecar(old)
	waitFollows(t, leader, next, nextEpoch)
	end := c.Nodes[next].Broker.WAL().LastLSN()
	c.WaitCaughtUp(end)
	c.AssertIdentical(end)
}

// A leader's sidecar that crashes under etcd failover: its broker runs on
// with its last view, but stops taking writes once the link has been down
// for a quarter of the lease TTL (ClusterView.fence_after_ms), before the
// lease can expire and another node be elected. Without that, the broker
// went on taking writes while another node led (acks=1 writes, dropped
// when it followed again), and told clients that it led.
func TestCrashedLeaderSidecarFencesItsBroker(t *testing.T) {
	c, url := etcdCluster(t, nil)
	old, epoch := waitISRPublished(t, c, url)
	leader := c.Nodes[old].Broker
	if v := leader.View(); v.FenceAfter != 500*time.Millisecond {
		t.Fatalf("the leader's broker was told to stop writes after %v without its sidecar; want a quarter of the 2s lease TTL", v.FenceAfter)
	}
	if lsn, err := leader.TryProduce(100); lsn == 0 || err != nil {
		t.Fatalf("the leader's broker refused a write before the crash (LSN %d, error %v)", lsn, err)
	}
	if err := c.Nodes[old].Sidecar.Crash(); err != nil {
		t.Fatal(err)
	}
	next, nextEpoch := leaderOf(t, c, old)
	if nextEpoch <= epoch {
		t.Fatalf("node %d leads epoch %d, want a later epoch than %d", next, nextEpoch, epoch)
	}
	if lsn, err := leader.TryProduce(100); lsn != 0 || err != nil {
		t.Fatalf("node %d's broker took a write (LSN %d, error %v) while node %d leads epoch %d and its own sidecar is down", old, lsn, err, next, nextEpoch)
	}
	if v := leader.View(); v.Role != link.RoleFollower || v.LeaderID != -1 {
		t.Fatalf("node %d's broker's view with its sidecar down: %v led by %d; want a follower of no known leader", old, v.Role, v.LeaderID)
	}
	c.Nodes[next].Broker.Produce(t, 10, 100)
	c.StartSidecar(old)
	end := c.Nodes[next].Broker.WAL().LastLSN()
	c.WaitCaughtUp(end)
	c.AssertIdentical(end)
}

// A leader's sidecar under etcd vouches for its broker's leadership with
// heartbeats (LinkHeartbeat), so that a broker whose sidecar is frozen
// stops taking writes before the lease can expire (ClusterView.
// heartbeat_interval_ms). While the sidecar runs, they keep the broker
// leading however long nothing else is said on the link.
func TestLeaderSidecarVouchesForItsBroker(t *testing.T) {
	c, url := etcdCluster(t, nil)
	old, epoch := waitISRPublished(t, c, url)
	leader := c.Nodes[old].Broker
	v := leader.View()
	if v.HeartbeatEvery != 125*time.Millisecond || v.FenceAfter != 500*time.Millisecond {
		t.Fatalf("the leader's broker was told of heartbeats every %v and a fence after %v; want 125ms and 500ms (a sixteenth and a quarter of the 2s lease TTL)", v.HeartbeatEvery, v.FenceAfter)
	}
	// Four times the fence's bound, with nothing but heartbeats on the
	// link unless the cluster changes.
	for end := time.Now().Add(2 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if v := leader.View(); v.Role != link.RoleLeader || v.Epoch != epoch {
			t.Fatalf("node %d's broker stopped leading epoch %d while its sidecar ran: %v in epoch %d, leader %d", old, epoch, v.Role, v.Epoch, v.LeaderID)
		}
	}
	if lsn, err := leader.TryProduce(100); lsn == 0 || err != nil {
		t.Fatalf("the leader's broker refused a write (LSN %d, error %v)", lsn, err)
	}
	// A follower's broker is told of no heartbeats: it takes no writes.
	for id, n := range c.Nodes {
		if id != old && n.Broker.View().HeartbeatEvery != 0 {
			t.Fatalf("node %d's broker follows and was told of heartbeats: %+v", id, n.Broker.View())
		}
	}
}

// waitFollows waits until broker b's view follows leader in epoch.
func waitFollows(t *testing.T, b *sidecartest.MemBroker, leader int32, epoch uint32) {
	t.Helper()
	testutil.Eventually(t, 20*time.Second, func() bool {
		v := b.View()
		return v.Role == link.RoleFollower && v.LeaderID == leader && v.Epoch == epoch
	})
}

// requireTookOver waits for a node other than old to lead the epoch after
// epoch, has it write 10 entries, and fails the test unless its epoch
// starts right after last, the old leader's last entry (nothing the old
// leader wrote was dropped). It returns the new leader and its epoch.
func requireTookOver(t *testing.T, c *sidecartest.Cluster, old int32, epoch uint32, last uint64) (int32, uint32) {
	t.Helper()
	next, nextEpoch := leaderOf(t, c, old)
	if nextEpoch != epoch+1 {
		t.Fatalf("node %d leads epoch %d, want %d", next, nextEpoch, epoch+1)
	}
	c.Nodes[next].Broker.Produce(t, 10, 100)
	h := c.Nodes[next].Broker.WAL().EpochHistory()
	if got := h[len(h)-1]; got.Epoch != nextEpoch || got.StartLSN != last+1 {
		t.Fatalf("node %d's epoch %d starts at LSN %d, want %d (right after the old leader's last entry): history %v",
			next, got.Epoch, got.StartLSN, last+1, h)
	}
	return next, nextEpoch
}

// waitISRPublished waits until a leader has published the ISR [1 2 3] in
// etcd (every follower can then be elected) and its broker leads in that
// epoch, and returns the leader and the epoch.
func waitISRPublished(t *testing.T, c *sidecartest.Cluster, url string) (int32, uint32) {
	t.Helper()
	var id int32
	var epoch uint32
	testutil.Eventually(t, 20*time.Second, func() error {
		var v struct {
			LeaderID int32   `json:"leader_id"`
			Epoch    uint32  `json:"epoch"`
			ISR      []int32 `json:"isr"`
		}
		got := publishedISR(t, url)
		if err := json.Unmarshal([]byte(got), &v); err != nil || !slices.Equal(v.ISR, []int32{1, 2, 3}) {
			return fmt.Errorf("published ISR %q, want [1 2 3]", got)
		}
		// Not an ISR left from before a restart: its publisher still
		// leads that epoch, with its broker attached and leading too.
		st, err := c.Admin(v.LeaderID).Status(context.Background(), &adminv1.StatusRequest{})
		if err != nil {
			return err
		}
		if st.GetRole() != adminv1.Role_ROLE_LEADER || st.GetEpoch() != v.Epoch || !st.GetLinked() {
			return fmt.Errorf("node %d published the ISR in epoch %d; its sidecar is %v in epoch %d (broker linked: %v)", v.LeaderID, v.Epoch, st.GetRole(), st.GetEpoch(), st.GetLinked())
		}
		if bv := c.Nodes[v.LeaderID].Broker.View(); bv.Role != link.RoleLeader || bv.Epoch != v.Epoch {
			return fmt.Errorf("node %d published the ISR in epoch %d, its broker's view is %v in epoch %d", v.LeaderID, v.Epoch, bv.Role, bv.Epoch)
		}
		id, epoch = v.LeaderID, v.Epoch
		return nil
	})
	return id, epoch
}

// publishedISR is the ISR value published in etcd ("" when none).
func publishedISR(t *testing.T, url string) string {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{url}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	r, err := cli.Get(ctx, "/tandem/test-cluster/isr")
	if err != nil || len(r.Kvs) == 0 {
		return ""
	}
	return string(r.Kvs[0].Value)
}

// A leader's sidecar that stops cleanly with no other node in the ISR has
// nobody to hand its leadership to. It steps down before it revokes its
// lease, so that its broker takes no more writes once the sidecar has
// stopped. Left leading, the broker took writes for a quarter of the
// lease TTL after the link ended, while the revoked lease let a node that
// had joined the ISR meanwhile be elected: in a 15-minute soak
// (2026-12-07), two brokers took writes for 0.5 s that way.
func TestStoppingLeaderSidecarWithNobodyToHandOverFencesItsBroker(t *testing.T) {
	c, url := etcdCluster(t, nil)
	old, _ := waitISRPublished(t, c, url)
	leader := c.Nodes[old].Broker
	// The followers' sidecars stop cleanly: each leaves the ISR at once.
	var others []int32
	for _, id := range c.IDs() {
		if id != old {
			others = append(others, id)
			c.StopSidecar(id)
		}
	}
	testutil.Eventually(t, 20*time.Second, func() error {
		st, err := c.Admin(old).Status(context.Background(), &adminv1.StatusRequest{})
		if err != nil {
			return err
		}
		for _, r := range st.GetReplicas() {
			if r.GetNodeId() != old && r.GetInIsr() {
				return fmt.Errorf("node %d is still in the ISR", r.GetNodeId())
			}
		}
		return nil
	})
	if lsn, err := leader.TryProduce(100); lsn == 0 || err != nil {
		t.Fatalf("the leader's broker refused a write before its sidecar stopped (LSN %d, error %v)", lsn, err)
	}

	c.StopSidecar(old)
	if lsn, err := leader.TryProduce(100); lsn != 0 || err != nil {
		t.Fatalf("the broker took a write (LSN %d, error %v) after its sidecar stopped with its lease given up", lsn, err)
	}
	if v := leader.View(); v.Role != link.RoleFollower {
		t.Fatalf("the broker's view after its sidecar stopped: %+v, want a follower's", v)
	}

	// Everything comes back, and the nodes agree.
	for _, id := range append(others, old) {
		c.StartSidecar(id)
	}
	next := c.WaitLeader()
	next.Produce(t, 10, 100)
	end := next.WAL().LastLSN()
	c.WaitCaughtUp(end)
	c.AssertIdentical(end)
}

// A leader's sidecar whose broker lost its link (the broker runs on, and
// cannot re-attach) and that then stops must keep its etcd lease until the
// broker's own detached-link fence has stopped its writes: given up at
// once, another node is elected while the old broker still takes writes.
func TestStoppingLeaderSidecarHoldsLeaseUntilDetachedBrokerFenced(t *testing.T) {
	c, url := etcdCluster(t, nil)
	old, _ := waitISRPublished(t, c, url)
	leader := c.Nodes[old].Broker
	if lsn, err := leader.TryProduce(100); lsn == 0 || err != nil {
		t.Fatalf("the leader's broker refused a write (LSN %d, error %v)", lsn, err)
	}
	// The followers of a new cluster campaign only after giving the
	// --leader node a head start of one lease TTL (2 s here, counted from
	// their start): let it pass, so that a freed lease is taken at once.
	time.Sleep(2 * time.Second)
	// Without its socket file the broker cannot attach again (it keeps
	// trying), so it keeps its leader view until its own fence.
	if err := os.Remove(c.Nodes[old].Socket); err != nil {
		t.Fatal(err)
	}
	c.Nodes[old].Sidecar.EndBrokerLink()
	ended := time.Now()
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		c.StopSidecar(old)
	}()

	// Sample the old broker's writes and the other brokers' views until
	// another node leads and the old broker refuses writes.
	var lastWrite, elected time.Time
	var next int32
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) && (elected.IsZero() || !lastWrite.IsZero() && time.Since(lastWrite) < 2*time.Second) {
		if lsn, err := leader.TryProduce(10); err != nil {
			t.Fatal(err)
		} else if lsn != 0 {
			lastWrite = time.Now()
		}
		for _, id := range c.IDs() {
			if id != old && elected.IsZero() && c.Nodes[id].Broker.View().Role == link.RoleLeader {
				elected, next = time.Now(), id
			}
		}
		time.Sleep(2 * time.Millisecond)
	}
	<-stopped
	if elected.IsZero() {
		t.Fatal("no other node was elected after the leader's sidecar stopped")
	}
	t.Logf("link ended; old broker's last write after %v; node %d leads after %v",
		lastWrite.Sub(ended).Round(time.Millisecond), next, elected.Sub(ended).Round(time.Millisecond))
	if lastWrite.IsZero() {
		t.Fatal("the old broker took no write after its link ended: the test shows nothing")
	}
	if !lastWrite.Before(elected) {
		t.Fatalf("the old broker took a write %v after node %d was elected: two brokers took writes at once",
			lastWrite.Sub(elected).Round(time.Millisecond), next)
	}
}

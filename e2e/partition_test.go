package e2e

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	adminv1 "github.com/tandem-io/tandem/gen/tandem/admin/v1"
	"github.com/tandem-io/tandem/internal/testutil"
)

// Network partitions. Each node (broker and sidecar) and etcd run in
// network namespaces of their own, joined by a bridge
// (testutil.Network); a cut drops every packet between two of them, so TCP
// connections go silent rather than fail. The test process, and so every
// Kafka client here, reaches every node throughout: a partition separates
// the nodes and etcd from each other, not the clients from the nodes.
//
// The cluster fails over through etcd (lease TTL 3 s) with
// min.insync.replicas=2, and a writer produces acks=all values the whole
// time. What must hold whatever the partition: at most one node takes
// writes; a write is acknowledged only once it is on two nodes; after the
// partition heals every node holds every acknowledged write once, in
// order, and the WALs are identical.

// partitionTest is a three-node cluster with etcd failover on a
// testutil.Network of hosts n1, n2, n3 and etcd, a topic, and a writer
// that has had 50 writes acknowledged.
type partitionTest struct {
	c      *cluster
	nw     *testutil.Network
	topic  string
	leader int    // the node that leads at the start
	epoch  uint32 // its epoch
	w      *ackWriter
}

// startNetCluster starts etcd and three pairs with etcd failover and
// min.insync.replicas=2, each in a network namespace of its own (hosts n1,
// n2, n3 and etcd), and returns the cluster, the network and etcd's URL.
// brokerFlags are added to every broker's.
func startNetCluster(t *testing.T, brokerFlags ...string) (*cluster, *testutil.Network, string) {
	t.Helper()
	nw := testutil.NewNetwork(t, "n1", "n2", "n3", "etcd")
	url, _ := startEtcdOn(t, nw.Host("etcd"))
	c := startCluster(t, clusterOpts{
		net:          nw,
		brokerFlags:  append([]string{"--min-insync-replicas", "2"}, brokerFlags...),
		sidecarFlags: etcdSidecarFlags(url),
	})
	return c, nw, url
}

func startPartitionTest(t *testing.T, topic string) *partitionTest {
	t.Helper()
	c, nw, url := startNetCluster(t)
	leader, _ := c.waitLeader(30 * time.Second)
	testutil.Eventually(t, 30*time.Second, func() error { return c.inSync(leader) })
	c.waitElectable(url)
	c.createTopicRetry(topic)
	p := &partitionTest{c: c, nw: nw, topic: topic}
	p.leader, p.epoch = c.waitLeader(30 * time.Second)
	p.w = startAckWriter(t, c, topic)
	p.w.waitMore(50, 30*time.Second, "before the partition")
	return p
}

// ackWriter produces unique increasing values with acks=all (unless extra
// options of startAckWriter say otherwise), a few at a time, from a client
// that knows every broker, until stopped; it records which were
// acknowledged.
type ackWriter struct {
	t      *testing.T
	cancel context.CancelFunc
	done   chan struct{}

	mu      sync.Mutex
	acked   []string
	failed  int
	lastErr error // of the last write that failed
}

func startAckWriter(t *testing.T, c *cluster, topic string, extra ...kgo.Opt) *ackWriter {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	w := &ackWriter{t: t, cancel: cancel, done: make(chan struct{})}
	cl := kclient(t, c.kafkaAddrs(), append([]kgo.Opt{plain, kgo.MetadataMinAge(250 * time.Millisecond),
		kgo.RecordDeliveryTimeout(10 * time.Second), kgo.RetryTimeout(10 * time.Second)}, extra...)...)
	go func() {
		defer close(w.done)
		for next := 0; ctx.Err() == nil; next += 5 {
			recs := make([]*kgo.Record, 5)
			for i := range recs {
				recs[i] = &kgo.Record{Topic: topic, Value: fmt.Appendf(nil, "w-%07d", next+i)}
			}
			pctx, pcancel := context.WithTimeout(context.Background(), 15*time.Second)
			res := cl.ProduceSync(pctx, recs...)
			pcancel()
			w.mu.Lock()
			for _, r := range res {
				if r.Err != nil {
					w.failed++
					w.lastErr = r.Err
				} else {
					w.acked = append(w.acked, string(r.Record.Value))
				}
			}
			w.mu.Unlock()
		}
	}()
	t.Cleanup(w.stop)
	return w
}

func (w *ackWriter) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.acked)
}

// waitMore waits until n more writes than now are acknowledged.
func (w *ackWriter) waitMore(n int, timeout time.Duration, what string) {
	w.t.Helper()
	want := w.count() + n
	testutil.Eventually(w.t, timeout, func() error {
		w.mu.Lock()
		got, failed, last := len(w.acked), w.failed, w.lastErr
		w.mu.Unlock()
		if got < want {
			return fmt.Errorf("%s: %d of %d more writes acknowledged (%d failed so far, the last with %v)", what, got-(want-n), n, failed, last)
		}
		return nil
	})
}

func (w *ackWriter) stop() {
	w.cancel()
	<-w.done
}

// result stops the writer and returns what it acknowledged and how many
// writes failed.
func (w *ackWriter) result() ([]string, int) {
	w.stop()
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.acked), w.failed
}

// watchLeaders polls every node's role until the returned stop is called,
// and fails the test if two nodes ever say they lead at once (whatever
// their epochs: a leader that lost etcd must have stepped down before
// another is elected), or if a node other than those allowed (by allowed,
// given the node and its epoch) says it leads.
func (c *cluster) watchLeaders(allowed func(id int, epoch uint32) bool) (stop func()) {
	t := c.t
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	var bad []string
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			var leading []string
			for id, st := range c.statuses(time.Second) {
				if st.Role != adminv1.Role_ROLE_LEADER {
					continue
				}
				leading = append(leading, fmt.Sprintf("node %d (epoch %d)", id, st.Epoch))
				if !allowed(id, st.Epoch) {
					bad = append(bad, fmt.Sprintf("node %d leads epoch %d", id, st.Epoch))
				}
			}
			if len(leading) > 1 {
				bad = append(bad, "at once: "+strings.Join(leading, ", "))
			}
			sleepOrDone(ctx, 100*time.Millisecond)
		}
	}()
	return func() {
		t.Helper()
		cancel()
		<-done
		if len(bad) > 0 {
			t.Fatalf("leadership during the partition: %v", bad[:min(len(bad), 5)])
		}
	}
}

// healAndCheck heals the network, waits until one node leads with the
// others in sync, stops the writer and checks that every node holds every
// acknowledged write once and in order, and that the WALs are identical.
func (p *partitionTest) healAndCheck(t *testing.T) {
	t.Helper()
	c := p.c
	p.nw.HealAll()
	healed := time.Now()
	leader, _ := c.waitLeader(60 * time.Second)
	testutil.Eventually(t, 60*time.Second, func() error { return c.inSync(leader) })
	t.Logf("healed: node %d leads with every node in sync %s later", leader, time.Since(healed).Round(time.Millisecond))
	p.w.waitMore(20, 30*time.Second, "after the partition healed")
	acked, failed := p.w.result()
	c.caughtUp(60*time.Second, leader, 1, 2, 3)
	c.mustVerify(leader)
	for _, n := range c.nodes {
		requireAckedStored(t, fmt.Sprintf("node %d", n.id), readValues(t, c, n.id, p.topic), acked)
	}
	t.Logf("%d writes acknowledged, %d failed (none of those was acknowledged)", len(acked), failed)
}

// otherNodes are the ids of the nodes other than id.
func (c *cluster) otherNodes(id int) []int {
	var out []int
	for _, n := range c.nodes {
		if n.id != id {
			out = append(out, n.id)
		}
	}
	return out
}

// TestPartitionIsolatedLeader: the leader is cut off from both followers and
// from etcd, while clients still reach it. It must step down before its
// lease can expire; a follower is elected, and the writer's acks=all
// writes go on there while the old leader is still cut off. A write sent
// to the old leader itself is not acknowledged. Healed, the old leader
// follows the new one, and nothing acknowledged is lost.
func TestPartitionIsolatedLeader(t *testing.T) {
	p := startPartitionTest(t, "partition-leader")
	c, nw, w, old, oldEpoch := p.c, p.nw, p.w, p.leader, p.epoch

	stopWatch := c.watchLeaders(func(id int, epoch uint32) bool { return id == old && epoch == oldEpoch || epoch > oldEpoch })
	nw.Isolate(c.node(old).host)
	cut := time.Now()
	t.Logf("node %d (leader, epoch %d) cut off from the other nodes and etcd", old, oldEpoch)

	testutil.Eventually(t, etcdLeaseTTL, func() error {
		st, err := c.statusWithin(old, time.Second)
		if err != nil {
			return err
		}
		if st.Role == adminv1.Role_ROLE_LEADER {
			return fmt.Errorf("node %d still leads %s after it was cut off", old, time.Since(cut).Round(time.Millisecond))
		}
		return nil
	})
	steppedDown := time.Since(cut)
	var leader int
	var epoch uint32
	testutil.Eventually(t, 30*time.Second, func() error {
		if leader, epoch = c.leaderNow(time.Second); leader == 0 || leader == old {
			return fmt.Errorf("no other node leads %s after the cut", time.Since(cut).Round(time.Millisecond))
		}
		return nil
	})
	elected := time.Since(cut)
	if epoch <= oldEpoch {
		t.Fatalf("node %d leads epoch %d, not above the old leader's %d", leader, epoch, oldEpoch)
	}
	w.waitMore(100, 30*time.Second, "on the new leader while the old one is cut off")
	writesOn := time.Since(cut)
	t.Logf("node %d stepped down %s after the cut; node %d leads epoch %d after %s; 100 more writes acknowledged after %s",
		old, steppedDown.Round(time.Millisecond), leader, epoch, elected.Round(time.Millisecond), writesOn.Round(time.Millisecond))

	// The old leader, still cut off, takes no acks=all write.
	direct := newKgo(t, c.node(old).kafka)
	err := rawProduceTo(ctxTimeout(t, 15*time.Second), direct, -1, p.topic)
	if err == nil {
		t.Fatalf("node %d, cut off and no longer leading, acknowledged an acks=all write", old)
	}
	t.Logf("an acks=all write sent to node %d while it is cut off: %v", old, err)
	stopWatch()

	p.healAndCheck(t)
	st, err := c.status(old)
	if err != nil {
		t.Fatal(err)
	}
	if st.Role != adminv1.Role_ROLE_FOLLOWER {
		t.Fatalf("node %d after the partition healed: %s, want a follower", old, st.Role)
	}
}

// TestPartitionLeaderFromEtcd: the leader loses etcd but still reaches its
// followers (and they reach etcd). It steps down, since it can no longer
// renew its lease, and a follower is elected: the cluster stays writable.
// The old leader learns of the new leader from its peers and follows it
// while still cut off from etcd.
func TestPartitionLeaderFromEtcd(t *testing.T) {
	p := startPartitionTest(t, "partition-etcd")
	c, nw, w, old, oldEpoch := p.c, p.nw, p.w, p.leader, p.epoch

	stopWatch := c.watchLeaders(func(id int, epoch uint32) bool { return id == old && epoch == oldEpoch || epoch > oldEpoch })
	nw.Cut(c.node(old).host, nw.Host("etcd"))
	cut := time.Now()
	var leader int
	var epoch uint32
	testutil.Eventually(t, 30*time.Second, func() error {
		if leader, epoch = c.leaderNow(time.Second); leader == 0 || leader == old {
			return fmt.Errorf("no other node leads %s after node %d lost etcd", time.Since(cut).Round(time.Millisecond), old)
		}
		return nil
	})
	t.Logf("node %d lost etcd; node %d leads epoch %d %s later", old, leader, epoch, time.Since(cut).Round(time.Millisecond))
	w.waitMore(100, 30*time.Second, "on the new leader")
	// Replication does not need etcd: the old leader learns the new epoch
	// from its peers, follows, and is back in the ISR while still cut off.
	c.waitRole(30*time.Second, old, adminv1.Role_ROLE_FOLLOWER, int32(leader), epoch)
	testutil.Eventually(t, 30*time.Second, func() error { return c.inSync(leader) })
	t.Logf("node %d follows node %d and is in sync %s after it lost etcd", old, leader, time.Since(cut).Round(time.Millisecond))
	stopWatch()

	p.healAndCheck(t)
}

// TestPartitionLeaderFromFollowers: the leader is cut off from both
// followers but still reaches etcd (and they reach etcd too). It keeps its
// lease, so no follower may take over: the followers leave its ISR, and an
// acks=all write is refused at once with NOT_ENOUGH_REPLICAS rather than
// acknowledged with one copy or left to hang. Kafka (KRaft) does the same
// when a leader still reaches the controller. Healed, the followers rejoin
// and writes go on.
func TestPartitionLeaderFromFollowers(t *testing.T) {
	p := startPartitionTest(t, "partition-followers")
	c, nw, w, leader, epoch := p.c, p.nw, p.w, p.leader, p.epoch

	stopWatch := c.watchLeaders(func(id int, e uint32) bool { return id == leader && e == epoch })
	for _, id := range c.otherNodes(leader) {
		nw.Cut(c.node(leader).host, c.node(id).host)
	}
	cut := time.Now()
	testutil.Eventually(t, 30*time.Second, func() error {
		st, err := c.status(leader)
		if err != nil {
			return err
		}
		if !slices.Equal(st.GetIsr(), []int32{int32(leader)}) {
			return fmt.Errorf("node %d's ISR is %v", leader, st.GetIsr())
		}
		return nil
	})
	t.Logf("node %d's ISR shrank to itself %s after the cut", leader, time.Since(cut).Round(time.Millisecond))
	direct := newKgo(t, c.node(leader).kafka)
	asked := time.Now()
	err := rawProduceTo(ctxTimeout(t, 15*time.Second), direct, -1, p.topic)
	if err == nil || !kerr.IsRetriable(err) || (err != kerr.NotEnoughReplicas && err != kerr.NotEnoughReplicasAfterAppend) {
		t.Fatalf("acks=all write to node %d with only itself in sync: %v, want NOT_ENOUGH_REPLICAS", leader, err)
	}
	t.Logf("acks=all write to the leader with only itself in sync: %v after %s", err, time.Since(asked).Round(time.Millisecond))
	before := w.count()
	// Stay cut for two lease TTLs: the lease is renewed, so nobody else
	// may lead.
	time.Sleep(2 * etcdLeaseTTL)
	if got := w.count(); got != before {
		t.Fatalf("%d writes acknowledged while the leader had no follower in sync", got-before)
	}
	for _, id := range c.otherNodes(leader) {
		st, err := c.status(id)
		if err != nil {
			t.Fatal(err)
		}
		if st.GetReady() {
			t.Fatalf("node %d is ready while cut off from the leader", id)
		}
		t.Logf("node %d while cut off from the leader: %s (%s)", id, st.GetRole(), st.GetNotReadyReason())
	}
	stopWatch()

	p.healAndCheck(t)
	if now, e := c.waitLeader(10 * time.Second); now != leader || e != epoch {
		t.Fatalf("node %d leads epoch %d after the partition, want node %d still leading epoch %d", now, e, leader, epoch)
	}
}

// TestPartitionFollowerFromLeader: one follower is cut off from the leader
// only (it still reaches etcd and the other follower). It leaves the ISR,
// writes go on with the two nodes left, it must not take over, and once
// healed it catches up and rejoins.
func TestPartitionFollowerFromLeader(t *testing.T) {
	p := startPartitionTest(t, "partition-follower")
	c, nw, w, leader, epoch := p.c, p.nw, p.w, p.leader, p.epoch
	f := c.otherNodes(leader)[0]

	stopWatch := c.watchLeaders(func(id int, e uint32) bool { return id == leader && e == epoch })
	nw.Cut(c.node(leader).host, c.node(f).host)
	cut := time.Now()
	testutil.Eventually(t, 30*time.Second, func() error {
		st, err := c.status(leader)
		if err != nil {
			return err
		}
		if slices.Contains(st.GetIsr(), int32(f)) {
			return fmt.Errorf("node %d is still in node %d's ISR %v", f, leader, st.GetIsr())
		}
		return nil
	})
	t.Logf("node %d left the ISR %s after the cut", f, time.Since(cut).Round(time.Millisecond))
	w.waitMore(200, 30*time.Second, "with one follower cut off")
	time.Sleep(etcdLeaseTTL) // long enough for a wrongful election to show
	stopWatch()

	p.healAndCheck(t)
	if now, e := c.waitLeader(10 * time.Second); now != leader || e != epoch {
		t.Fatalf("node %d leads epoch %d after the partition, want node %d still leading epoch %d", now, e, leader, epoch)
	}
}

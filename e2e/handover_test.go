package e2e

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os/exec"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tandem-io/tandem/internal/testutil"
)

// TestLeaderBrokerStopHandsOver: the leader's broker alone gets SIGTERM
// while its sidecar keeps running (an upgrade of the broker binary,
// `systemctl restart tandem-broker`), with etcd failover and an acks=all
// and an acks=1 producer writing all along. The broker stops taking writes
// and tells its sidecar where its WAL ends; the sidecar waits for the
// in-sync followers to hold that end and resigns, and one of them is
// elected (Kafka's controlled shutdown).
//
// What a user checks: writes go on while the broker is down, through a new
// leader; every acknowledged write is on every node afterwards, acks=1
// writes included (the followers held the old leader's whole WAL when it
// resigned, so the old leader drops nothing when it follows); the
// replicas are identical.
//
// The lease TTL is a minute: without the handover the sidecar would keep
// the election for that long with no broker behind it (it resigns after
// one TTL), and no write would go through while the test waits.
func TestLeaderBrokerStopHandsOver(t *testing.T) {
	leaderStopHandsOver(t, "broker", "--lease-ttl", "60s")
}

// TestLeaderSidecarCrashFencesBroker: the leader's sidecar alone is killed
// (SIGKILL) and stays down, with etcd failover and an acks=1 producer
// writing all along. Its broker runs on, but stops taking writes once the
// link has been down for a quarter of the lease TTL, before another node
// can be elected.
//
// What a user checks: the old leader's broker stops claiming to lead
// (its Metadata names no leader), and the producer's writes go on through
// the new leader while the sidecar is down. Without the fence the broker
// kept naming itself leader and kept taking the producer's writes, which
// nobody else had and which were dropped once the sidecar was back.
func TestLeaderSidecarCrashFencesBroker(t *testing.T) {
	const topic = "sidecar-crash-one"
	c, leader, epoch, one := leaderWithAcks1Writer(t, topic, clusterOpts{})

	n := c.node(leader)
	n.side.Kill()
	killed := time.Now()
	now, nowEpoch := c.waitLeader(30 * time.Second)
	if now == leader || nowEpoch <= epoch {
		t.Fatalf("with node %d's sidecar killed, node %d leads epoch %d; want another node in a later epoch than %d", leader, now, nowEpoch, epoch)
	}
	elected := time.Since(killed)

	named := requireStopsNamingItself(t, n, leader, topic, killed)
	one.waitMore(200, 30*time.Second, fmt.Sprintf("acks=1 while node %d's sidecar is down", leader))

	n.side.MustRestart()
	testutil.WaitTCPFor(t, n.sidecar, 20*time.Second)
	if out, err := exec.Command(testutil.Bin(t, "tandemctl"), "--sidecar", n.sidecar, "wait-in-sync", "--max-wait", "60s").CombinedOutput(); err != nil {
		t.Fatalf("tandemctl wait-in-sync after node %d's sidecar restarted: %v\n%s", leader, err, out)
	}
	acked, failed := one.result()
	c.caughtUp(60*time.Second, now, 1, 2, 3)
	c.mustVerify(now)
	t.Logf("node %d's sidecar killed; node %d elected for epoch %d after %v; node %d's broker named leader %d afterwards; %d acks=1 writes acknowledged, %d failed",
		leader, now, nowEpoch, elected.Round(time.Millisecond), leader, named, len(acked), failed)
}

// leaderWithAcks1Writer starts three nodes with opts and etcd failover,
// past their start-up head start (skipHeadStart), and an acks=1 producer
// without idempotence writing to topic, and waits for its first 100
// writes. It returns the cluster, its leader and epoch, and the producer.
func leaderWithAcks1Writer(t *testing.T, topic string, opts clusterOpts) (*cluster, int, uint32, *ackWriter) {
	t.Helper()
	url := startEtcd(t)
	opts.sidecarFlags = append(etcdSidecarFlags(url), opts.sidecarFlags...)
	c := startCluster(t, opts)
	leader, epoch := c.waitLeader(30 * time.Second)
	skipHeadStart(t, c, leader, url)
	c.createTopicRetry(topic)
	one := startAckWriter(t, c, topic, kgo.RequiredAcks(kgo.LeaderAck()), kgo.DisableIdempotentWrite())
	one.waitMore(100, 30*time.Second, "acks=1 before the fault")
	return c, leader, epoch, one
}

// requireStopsNamingItself waits until node n's broker, asked itself, no
// longer names itself the leader of topic (its sidecar went away at since),
// and returns the leader it names.
func requireStopsNamingItself(t *testing.T, n *node, leader int, topic string, since time.Time) int32 {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(n.kafka))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var named int32
	testutil.Eventually(t, 20*time.Second, func() error {
		req := kmsg.NewPtrMetadataRequest()
		mt := kmsg.NewMetadataRequestTopic()
		mt.Topic = kmsg.StringPtr(topic)
		req.Topics = append(req.Topics, mt)
		resp, err := req.RequestWith(ctxTimeout(t, 5*time.Second), cl.SeedBrokers()[0])
		if err != nil {
			return err
		}
		if len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) == 0 {
			return fmt.Errorf("node %d's Metadata for %s: %d topics", leader, topic, len(resp.Topics))
		}
		named = resp.Topics[0].Partitions[0].Leader
		if named == int32(leader) {
			return fmt.Errorf("node %d's broker still names itself the leader of %s, %v after its sidecar went away", leader, topic, time.Since(since).Round(time.Millisecond))
		}
		return nil
	})
	return named
}

// TestLeaderSidecarFreezeFencesBroker: the leader's sidecar alone is
// frozen (SIGSTOP; a sidecar stuck as hard, on a hung disk or in a
// debugger, looks the same) while its broker runs on, with etcd failover
// and an acks=1 producer. The stream between them stays open, but the
// sidecar's heartbeats stop (LinkHeartbeat): the broker stops taking
// writes a quarter of the lease TTL later, before another node can be
// elected, and tells clients that it does not lead. When the sidecar runs
// again, it finds its lease gone and the node follows the new leader.
//
// What a user checks: writes go on through the new leader, and none that
// was acknowledged once the old broker stopped claiming the leadership is
// lost. acks=1 writes it took in the first moments of the freeze are lost
// when it follows again, as after a crash; without the heartbeats it
// went on taking them for as long as the sidecar stayed frozen.
func TestLeaderSidecarFreezeFencesBroker(t *testing.T) {
	const topic = "sidecar-freeze-one"
	metrics := map[int]string{1: testutil.FreeAddr(t), 2: testutil.FreeAddr(t), 3: testutil.FreeAddr(t)}
	c, leader, epoch, one := leaderWithAcks1Writer(t, topic, clusterOpts{
		brokerFlagsFor: func(id int) []string { return []string{"--metrics-listen", metrics[id]} },
	})
	// The brokers that take writes, by their own tandem_broker_takes_writes.
	writers := func() ([]int, error) {
		var ids []int
		for id, addr := range metrics {
			v, err := brokerGauge(addr, "tandem_broker_takes_writes")
			if err != nil {
				return nil, err
			}
			if v == 1 {
				ids = append(ids, id)
			}
		}
		slices.Sort(ids)
		return ids, nil
	}
	requireWriters := func(when string, want int) {
		t.Helper()
		testutil.Eventually(t, 20*time.Second, func() error {
			ids, err := writers()
			if err == nil && !slices.Equal(ids, []int{want}) {
				err = fmt.Errorf("%s: the brokers taking writes are %v, want node %d alone", when, ids, want)
			}
			return err
		})
	}
	requireWriters("before the freeze", leader)

	n := c.node(leader)
	before := one.count()
	if err := n.side.Pause(); err != nil {
		t.Fatal(err)
	}
	frozen := time.Now()
	thawed := false
	t.Cleanup(func() {
		if !thawed {
			n.side.Resume()
		}
	})
	named := requireStopsNamingItself(t, n, leader, topic, frozen)
	fenced := time.Since(frozen)
	if v, err := brokerGauge(metrics[leader], "tandem_broker_takes_writes"); err != nil || v != 0 {
		t.Fatalf("node %d's broker names no leader but its tandem_broker_takes_writes is %v (%v)", leader, v, err)
	}
	// Writes acknowledged from here on were taken by the new leader (the
	// one under way may still have been the old broker's).
	from := one.count() + 5
	now, nowEpoch := c.waitLeader(30 * time.Second)
	if now == leader || nowEpoch <= epoch {
		t.Fatalf("with node %d's sidecar frozen, node %d leads epoch %d; want another node in a later epoch than %d", leader, now, nowEpoch, epoch)
	}
	one.waitMore(200, 30*time.Second, fmt.Sprintf("acks=1 while node %d's sidecar is frozen", leader))
	requireWriters("with the sidecar frozen", now)

	if err := n.side.Resume(); err != nil {
		t.Fatal(err)
	}
	thawed = true
	if out, err := exec.Command(testutil.Bin(t, "tandemctl"), "--sidecar", n.sidecar, "wait-in-sync", "--max-wait", "60s").CombinedOutput(); err != nil {
		t.Fatalf("tandemctl wait-in-sync after node %d's sidecar ran again: %v\n%s", leader, err, out)
	}
	one.waitMore(50, 30*time.Second, "acks=1 after the sidecar ran again")
	requireWriters("after the sidecar ran again", now)
	acked, failed := one.result()
	c.caughtUp(60*time.Second, now, 1, 2, 3)
	c.mustVerify(now)
	var lostBefore, lostDuring int
	for _, node := range c.nodes {
		stored := readValues(t, c, node.id, topic)
		requireAckedPresent(t, fmt.Sprintf("node %d, acks=1 writes after the fence", node.id), stored, acked[from:])
		if node.id == now {
			lostBefore = before - countPresent(stored, acked[:before])
			lostDuring = from - before - countPresent(stored, acked[before:from])
		}
	}
	t.Logf("node %d's sidecar frozen; its broker named leader %d %v later; node %d elected for epoch %d; %d acks=1 writes acknowledged (%d failed), all %d after the fence on every node; lost: %d of the %d acknowledged during the freeze before the fence, %d of the %d before the freeze",
		leader, named, fenced.Round(time.Millisecond), now, nowEpoch, len(acked), failed, len(acked)-from, lostDuring, from-before, lostBefore, before)
}

// countPresent counts the values of want that are in stored.
func countPresent(stored, want []string) int {
	have := make(map[string]bool, len(stored))
	for _, v := range stored {
		have[v] = true
	}
	n := 0
	for _, v := range want {
		if have[v] {
			n++
		}
	}
	return n
}

// skipHeadStart waits until every node is in sync with leader and can be
// elected, and restarts the followers' sidecars: in a new cluster they give
// the --leader node a head start of one lease TTL before they campaign,
// and restarted once an ISR is published they campaign at once, as in a
// cluster that has been running.
func skipHeadStart(t *testing.T, c *cluster, leader int, url string) {
	t.Helper()
	testutil.Eventually(t, 30*time.Second, func() error { return c.inSync(leader) })
	c.waitElectable(url)
	for _, n := range c.nodes {
		if n.id == leader {
			continue
		}
		if err := n.side.Stop(); err != nil {
			t.Fatal(err)
		}
		n.side.MustRestart()
		testutil.WaitTCPFor(t, n.sidecar, 20*time.Second)
	}
	testutil.Eventually(t, 30*time.Second, func() error { return c.inSync(leader) })
	c.waitElectable(url)
}

// requireAckedPresent fails the test unless every acknowledged value is in
// stored. For producers without idempotence (acks=1 here), whose retry of
// a batch that was written but not answered stores it twice, as in Kafka.
func requireAckedPresent(t *testing.T, what string, stored, acked []string) {
	t.Helper()
	have := make(map[string]bool, len(stored))
	for _, v := range stored {
		have[v] = true
	}
	for i, v := range acked {
		if !have[v] {
			t.Fatalf("%s: acknowledged value %s (number %d of %d) is missing; %d stored", what, v, i, len(acked), len(stored))
		}
	}
}

// TestLeaderSidecarStopHandsOver: the leader's sidecar alone gets SIGTERM
// while its broker keeps running (an upgrade of the sidecar binary,
// `systemctl restart tandem-sidecar`), with etcd failover and an acks=all
// and an acks=1 producer writing all along. Before it revokes its lease the
// sidecar stops the broker's writes, waits until the in-sync followers hold
// the broker's last entry, and leaves the broker following no one until it
// is back.
//
// What a user checks: writes go on through a new leader while the sidecar
// is down, and every acknowledged write is on every node once it is back,
// acks=1 writes included. Without the handover the broker went on taking
// acks=1 writes on its own (its producer had no reason to look elsewhere),
// and they were dropped when the node followed the new leader.
func TestLeaderSidecarStopHandsOver(t *testing.T) {
	leaderStopHandsOver(t, "sidecar")
}

// leaderStopHandsOver stops the leader's broker or sidecar (which) with
// SIGTERM under an acks=all and an acks=1 producer, with etcd failover
// (sidecarFlags added), and checks what a user would: writes go on through
// a new leader while it is down, and once it is back every acknowledged
// write of either producer is on every node and the replicas are
// identical.
func leaderStopHandsOver(t *testing.T, which string, sidecarFlags ...string) {
	url := startEtcd(t)
	c := startCluster(t, clusterOpts{sidecarFlags: append(etcdSidecarFlags(url), sidecarFlags...)})
	leader, epoch := c.waitLeader(30 * time.Second)
	skipHeadStart(t, c, leader, url)

	allTopic, oneTopic := which+"-stop-all", which+"-stop-one"
	c.createTopicRetry(allTopic)
	c.createTopicRetry(oneTopic)
	all := startAckWriter(t, c, allTopic)
	one := startAckWriter(t, c, oneTopic, kgo.RequiredAcks(kgo.LeaderAck()), kgo.DisableIdempotentWrite())
	all.waitMore(100, 30*time.Second, "acks=all before the stop")
	one.waitMore(100, 30*time.Second, "acks=1 before the stop")

	pause := watchAckPause(all)
	n := c.node(leader)
	proc, addr := n.broker, n.kafka
	if which == "sidecar" {
		proc, addr = n.side, n.sidecar
	}
	stopped := time.Now()
	if err := proc.Stop(); err != nil {
		t.Fatalf("node %d's %s did not exit cleanly on SIGTERM: %v", leader, which, err)
	}
	took := time.Since(stopped)
	all.waitMore(50, 30*time.Second, fmt.Sprintf("acks=all while node %d's %s is down", leader, which))
	one.waitMore(200, 30*time.Second, fmt.Sprintf("acks=1 while node %d's %s is down", leader, which))
	now, nowEpoch := c.waitLeader(30 * time.Second)
	if now == leader || nowEpoch <= epoch {
		t.Fatalf("with node %d's %s down, node %d leads epoch %d; want another node in a later epoch than %d", leader, which, now, nowEpoch, epoch)
	}
	longest, failedMeanwhile := pause()

	proc.MustRestart()
	testutil.WaitTCPFor(t, addr, 20*time.Second)
	if out, err := exec.Command(testutil.Bin(t, "tandemctl"), "--sidecar", n.sidecar, "wait-in-sync", "--max-wait", "60s").CombinedOutput(); err != nil {
		t.Fatalf("tandemctl wait-in-sync after node %d's %s restarted: %v\n%s", leader, which, err, out)
	}
	all.waitMore(50, 30*time.Second, "acks=all after the restart")
	one.waitMore(50, 30*time.Second, "acks=1 after the restart")
	ackedAll, failedAll := all.result()
	ackedOne, failedOne := one.result()
	if failedAll > 0 {
		t.Fatalf("%d acks=all writes failed (the last with %v); want none: the handover is shorter than the producer's retries", failedAll, all.lastErr)
	}
	c.caughtUp(60*time.Second, now, 1, 2, 3)
	c.mustVerify(now)
	for _, node := range c.nodes {
		what := fmt.Sprintf("node %d", node.id)
		requireAckedStored(t, what+", acks=all", readValues(t, c, node.id, allTopic), ackedAll)
		requireAckedPresent(t, what+", acks=1", readValues(t, c, node.id, oneTopic), ackedOne)
	}
	t.Logf("node %d's %s exited %v after SIGTERM; node %d leads epoch %d; longest pause between acknowledged acks=all writes %v (%d failed meanwhile); %d acks=all and %d acks=1 writes acknowledged (%d acks=1 failed), all on every node",
		leader, which, took.Round(time.Millisecond), now, nowEpoch, longest.Round(time.Millisecond), failedMeanwhile, len(ackedAll), len(ackedOne), failedOne)
}

// TestLeaderPairFreezeRefusesQueuedWrites: the leader's broker and sidecar
// are frozen together (SIGSTOP of both: a paused VM or container), another
// node is elected, and clients send the old broker produce requests that
// wait in its sockets. When the broker runs again it must not take them:
// another node leads, so an acks=1 write it acknowledged would be lost
// when it follows. Its fence's timer is long overdue by then, but the
// requests may run before it does (the soak caught a broker taking writes
// for 48 ms after such a freeze); since 2026-12-07 every append checks
// the moment the fence was due.
func TestLeaderPairFreezeRefusesQueuedWrites(t *testing.T) {
	const topic = "pair-freeze"
	url := startEtcd(t)
	c := startCluster(t, clusterOpts{sidecarFlags: etcdSidecarFlags(url)})
	leader, epoch := c.waitLeader(30 * time.Second)
	skipHeadStart(t, c, leader, url)
	c.createTopicRetry(topic)
	n := c.node(leader)

	// Connections to the old leader, opened (and accepted) before the
	// freeze; their produce requests go out during it. Many, so that
	// some of them run before an overdue fence would (with 200, the
	// broker before the bound acknowledged some in one run of five; with
	// 600, 219 of them).
	const conns = 400
	var raw []net.Conn
	for range conns {
		cn, err := net.Dial("tcp", n.kafka)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cn.Close() })
		raw = append(raw, cn)
	}
	time.Sleep(200 * time.Millisecond)

	for _, p := range []*testutil.Process{n.side, n.broker} {
		if err := p.Pause(); err != nil {
			t.Fatal(err)
		}
	}
	thawed := false
	t.Cleanup(func() {
		if !thawed {
			n.broker.Resume()
			n.side.Resume()
		}
	})
	now, nowEpoch := c.waitLeader(30 * time.Second)
	if now == leader || nowEpoch <= epoch {
		t.Fatalf("with node %d frozen, node %d leads epoch %d; want another node in a later epoch than %d", leader, now, nowEpoch, epoch)
	}

	f := kmsg.NewRequestFormatter(kmsg.FormatterClientID("queued"))
	for i, cn := range raw {
		req := kmsg.NewPtrProduceRequest()
		req.Version, req.Acks, req.TimeoutMillis = 7, 1, 5000
		rt := kmsg.NewProduceRequestTopic()
		rt.Topic = topic
		rp := kmsg.NewProduceRequestTopicPartition()
		rp.Records = recordBatch(-1, -1, 0, fmt.Sprintf("queued-%d", i))
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		if _, err := cn.Write(f.AppendRequest(nil, req, int32(i))); err != nil {
			t.Fatal(err)
		}
	}
	// The broker runs again first; its sidecar stays frozen a moment
	// longer, so only the broker's own fence can refuse the requests.
	if err := n.broker.Resume(); err != nil {
		t.Fatal(err)
	}
	taken := 0
	for i, cn := range raw {
		cn.SetReadDeadline(time.Now().Add(10 * time.Second))
		var size [4]byte
		if _, err := io.ReadFull(cn, size[:]); err != nil {
			t.Fatalf("connection %d: reading the produce answer: %v", i, err)
		}
		body := make([]byte, binary.BigEndian.Uint32(size[:]))
		if _, err := io.ReadFull(cn, body); err != nil {
			t.Fatalf("connection %d: reading the produce answer: %v", i, err)
		}
		resp := kmsg.NewPtrProduceResponse()
		resp.Version = 7
		if err := resp.ReadFrom(body[4:]); err != nil {
			t.Fatalf("connection %d: decoding the produce answer: %v", i, err)
		}
		if code := resp.Topics[0].Partitions[0].ErrorCode; code == 0 {
			taken++
		} else if code != kerr.NotLeaderForPartition.Code {
			t.Errorf("connection %d: produce answered %v, want NOT_LEADER_OR_FOLLOWER", i, kerr.ErrorForCode(code))
		}
	}
	if err := n.side.Resume(); err != nil {
		t.Fatal(err)
	}
	thawed = true
	if taken > 0 {
		t.Errorf("node %d, resumed after node %d was elected, acknowledged %d of the %d acks=1 writes queued during its freeze; they are lost when it follows",
			leader, now, taken, conns)
	}
	if out, err := exec.Command(testutil.Bin(t, "tandemctl"), "--sidecar", n.sidecar, "wait-in-sync", "--max-wait", "60s").CombinedOutput(); err != nil {
		t.Fatalf("tandemctl wait-in-sync after node %d ran again: %v\n%s", leader, err, out)
	}
	c.mustVerify(now)
}

package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/tandem-io/tandem/broker/wal"
	adminv1 "github.com/tandem-io/tandem/gen/tandem/admin/v1"
	"github.com/tandem-io/tandem/internal/testutil"
)

// Automatic failover through a real etcd (issue 5), and a Jepsen-style run:
// acks=all producers with unique values and min.insync.replicas=2 while a
// nemesis kills and freezes leaders and followers (whole pairs, or only the
// sidecar: the broker keeps serving but is cut off; or only the broker),
// stops whole pairs, brokers alone or sidecars alone cleanly (SIGTERM, as a
// rolling restart or an upgrade of one binary) and partitions the
// network (a node from everyone, from etcd only, or from one other node;
// the clients reach every node throughout) or floods a node with more
// connections than its --max-connections. A consumer group member reads
// the topic throughout, its coordinator moving with every failover. At the
// end every acknowledged value must be read exactly once from the log and
// at least once by the group member, and every node's WAL must be
// identical.

// etcdLeaseTTL is --lease-ttl in these tests: a dead leader is replaced
// within about this long. 3s rather than the 2s minimum: on a busy machine
// an etcd renewal can take most of a second, and a leader steps down when
// its lease went unrenewed for half the TTL.
const etcdLeaseTTL = 3 * time.Second

// startEtcd runs a one-member etcd on free 127.0.0.1 ports with a temp data
// dir and returns its client URL.
func startEtcd(t *testing.T) string {
	t.Helper()
	url, _ := startEtcdProcess(t)
	return url
}

// startEtcdProcess is startEtcd that also returns the process (to pause,
// kill or restart it on the same data and ports).
func startEtcdProcess(t *testing.T) (string, *testutil.Process) {
	t.Helper()
	return startEtcdOn(t, nil)
}

// startEtcdOn is startEtcdProcess in host h of a testutil.Network (on
// 127.0.0.1 when h is nil).
func startEtcdOn(t *testing.T, h *testutil.Host) (string, *testutil.Process) {
	t.Helper()
	var client, peer string
	if h != nil {
		client, peer = h.Addr(2379), h.Addr(2380)
	} else {
		client, peer = testutil.FreeAddr(t), testutil.FreeAddr(t)
	}
	cu, pu := "http://"+client, "http://"+peer
	cfg := testutil.ProcessConfig{
		Name: "etcd",
		Path: "/usr/bin/etcd",
		Args: []string{
			"--name", "e2e", "--data-dir", filepath.Join(t.TempDir(), "etcd"),
			"--listen-client-urls", cu, "--advertise-client-urls", cu,
			"--listen-peer-urls", pu, "--initial-advertise-peer-urls", pu,
			"--initial-cluster", "e2e=" + pu, "--log-level", "warn",
		},
	}
	if h != nil {
		cfg = h.Wrap(cfg)
	}
	p := testutil.Start(t, cfg)
	testutil.WaitTCPFor(t, client, 20*time.Second)
	return cu, p
}

// startElectableCluster starts etcd and a three-node cluster with etcd
// elections, and waits until a leader has every follower in sync and
// published in its ISR, so that any node may be elected. It returns the
// cluster, etcd's URL and the leader.
func startElectableCluster(t *testing.T) (*cluster, string, int) {
	t.Helper()
	url := startEtcd(t)
	c := startCluster(t, clusterOpts{sidecarFlags: etcdSidecarFlags(url)})
	leader, _ := c.waitLeader(30 * time.Second)
	testutil.Eventually(t, 30*time.Second, func() error { return c.inSync(leader) })
	c.waitElectable(url)
	return c, url, leader
}

// etcdSidecarFlags are the sidecar flags of a cluster with automatic
// failover through the etcd at url.
func etcdSidecarFlags(url string) []string {
	return []string{"--etcd-endpoints", url, "--lease-ttl", etcdLeaseTTL.String(),
		"--replica-lag-time-max", "2s", "--epoch-poll-interval", "250ms"}
}

// leaderNow returns the node that says it leads (with the highest epoch)
// and is linked to its broker, or 0. Nodes that do not answer within
// timeout count as not leading.
func (c *cluster) leaderNow(timeout time.Duration) (int, uint32) {
	best, epoch := 0, uint32(0)
	for id, st := range c.statuses(timeout) {
		if st.Role == adminv1.Role_ROLE_LEADER && st.Linked && st.Epoch > epoch {
			best, epoch = id, st.Epoch
		}
	}
	return best, epoch
}

// statuses asks every node for its status at once and returns the answers
// that came within timeout, by node id.
func (c *cluster) statuses(timeout time.Duration) map[int]*adminv1.StatusResponse {
	type res struct {
		id int
		st *adminv1.StatusResponse
	}
	ch := make(chan res, len(c.nodes))
	for _, n := range c.nodes {
		go func() {
			st, _ := c.statusWithin(n.id, timeout)
			ch <- res{n.id, st}
		}()
	}
	out := map[int]*adminv1.StatusResponse{}
	for range c.nodes {
		if r := <-ch; r.st != nil {
			out[r.id] = r.st
		}
	}
	return out
}

// statusWithin is status with a bounded wait (a frozen sidecar must not
// stall the monitor).
func (c *cluster) statusWithin(id int, timeout time.Duration) (*adminv1.StatusResponse, error) {
	type res struct {
		st  *adminv1.StatusResponse
		err error
	}
	ch := make(chan res, 1)
	go func() {
		st, err := c.status(id)
		ch <- res{st, err}
	}()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case r := <-ch:
		return r.st, r.err
	case <-t.C:
		return nil, fmt.Errorf("node %d: no status within %s", id, timeout)
	}
}

// waitLeader waits until some node leads, linked, and returns it.
func (c *cluster) waitLeader(timeout time.Duration) (int, uint32) {
	c.t.Helper()
	var id int
	var epoch uint32
	testutil.Eventually(c.t, timeout, func() error {
		id, epoch = c.leaderNow(time.Second)
		if id == 0 {
			return fmt.Errorf("no leader")
		}
		return nil
	})
	return id, epoch
}

// waitElectable waits until the ISR the leader published in etcd lists
// every node: only then can any of them be elected (a follower that just
// joined the ISR is published about 100ms later).
func (c *cluster) waitElectable(url string) {
	c.t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{url}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		c.t.Fatal(err)
	}
	defer cli.Close()
	want := make([]int32, 0, len(c.nodes))
	for _, n := range c.nodes {
		want = append(want, int32(n.id))
	}
	testutil.Eventually(c.t, 60*time.Second, func() error {
		r, err := cli.Get(ctxTimeout(c.t, 5*time.Second), "/tandem/"+c.opts.clusterID+"/isr")
		if err != nil {
			return err
		}
		if len(r.Kvs) == 0 {
			return errors.New("no ISR published yet")
		}
		var v struct {
			ISR []int32 `json:"isr"`
		}
		if err := json.Unmarshal(r.Kvs[0].Value, &v); err != nil {
			return err
		}
		if !slices.Equal(v.ISR, want) {
			return fmt.Errorf("published ISR %v, want %v", v.ISR, want)
		}
		return nil
	})
}

// createTopicRetry creates a one-partition topic through whichever node
// leads, retrying while leadership moves (an election can still be
// settling when the cluster has just started).
func (c *cluster) createTopicRetry(topic string) {
	c.t.Helper()
	c.createTopicsRetry(1, topic)
}

// createTopicsRetry is createTopicRetry with partitions.
func (c *cluster) createTopicsRetry(partitions int32, topic string) {
	c.t.Helper()
	adm := kadm.NewClient(kclient(c.t, c.kafkaAddrs()))
	testutil.Eventually(c.t, 60*time.Second, func() error {
		resp, err := adm.CreateTopic(ctxTimeout(c.t, 15*time.Second), partitions, -1, nil, topic)
		if err == nil {
			err = resp.Err
		}
		if errors.Is(err, kerr.TopicAlreadyExists) {
			return nil
		}
		return err
	})
}

func TestAutomaticFailover(t *testing.T) {
	url := startEtcd(t)
	c := startCluster(t, clusterOpts{sidecarFlags: etcdSidecarFlags(url)})
	const topic = "auto-failover"
	c.createTopicRetry(topic)
	first := rangeValues("v", 0, 20)
	produceSync(t, kclient(t, c.kafkaAddrs(), plain), topic, first)
	old, _ := c.waitLeader(30 * time.Second) // node 1 unless an election flapped at start
	testutil.Eventually(t, 30*time.Second, func() error { return c.inSync(old) })
	c.waitElectable(url)
	var others []string
	for _, n := range c.nodes {
		if n.id != old {
			others = append(others, n.kafka)
		}
	}

	killed := time.Now()
	c.node(old).killPair()
	// The time until another node leads, and until the first acks=all
	// write is acknowledged (a client that refreshes metadata every
	// 250ms), measure the failover.
	var id int
	var epoch uint32
	testutil.Eventually(t, 30*time.Second, func() error {
		if id, epoch = c.leaderNow(100 * time.Millisecond); id == 0 || id == old {
			return fmt.Errorf("no new leader yet")
		}
		return nil
	})
	elected := time.Since(killed)
	prod := kclient(t, others, plain, kgo.MetadataMinAge(250*time.Millisecond))
	second := rangeValues("v", 20, 40)
	produceSync(t, prod, topic, second[:1])
	failover := time.Since(killed)
	t.Logf("failover: node %d leads epoch %d %s after SIGKILL of the leader (node %d); first acknowledged write after %s (lease TTL %s)",
		id, epoch, elected.Round(time.Millisecond), old, failover.Round(time.Millisecond), etcdLeaseTTL)
	produceSync(t, prod, topic, second[1:])

	c.node(old).startPair()
	c.waitRole(30*time.Second, old, adminv1.Role_ROLE_FOLLOWER, int32(id), epoch)
	testutil.Eventually(t, 30*time.Second, func() error { return c.inSync(id) })
	c.caughtUp(30*time.Second, id, 1, 2, 3)
	t.Log(c.mustVerify(id))
	want := append(slices.Clone(first), second...)
	if got := readValues(t, c, old, topic); !slices.Equal(got, want) {
		t.Fatalf("node %d has %d values after rejoining, want the 40 produced", old, len(got))
	}
}

// jepsenDuration is how long the nemesis runs: $TANDEM_JEPSEN_DURATION
// (a Go duration), default two minutes.
func jepsenDuration(t *testing.T) time.Duration {
	d := 2 * time.Minute
	if s := os.Getenv("TANDEM_JEPSEN_DURATION"); s != "" {
		v, err := time.ParseDuration(s)
		if err != nil || v <= 0 {
			t.Fatalf("TANDEM_JEPSEN_DURATION=%q: %v", s, err)
		}
		d = v
	}
	return d
}

// jepsenMaxConnections is every broker's --max-connections in the Jepsen
// run: far above what the workload opens, low enough for a flood.
const jepsenMaxConnections = 400

// jepsenResult is what the run prints.
type jepsenResult struct {
	ops, acked, failed, lost, dup int
	failovers                     int
	groupRead, groupAgain         int // distinct values the group consumer read; of them, read more than once
	txn                           txnWorkload
	longestNoLeader               time.Duration
	faults                        []string
}

func TestJepsenFailover(t *testing.T) {
	dur := jepsenDuration(t)
	// Every node and etcd in a network namespace of its own, so that the
	// nemesis can also cut the network (partition_test.go).
	// A connection limit low enough for the nemesis to reach it (fault 7).
	// Every broker serves /metrics in its own namespace, so that a monitor
	// can see which brokers take writes (watchWriters).
	c, nw, url := startNetCluster(t, "--max-connections", strconv.Itoa(jepsenMaxConnections), "--metrics-listen", ":9100")
	const topic = "jepsen"
	c.createTopicRetry(topic)
	c.createTopicsRetry(3, jepsenTxnTopic)
	c.waitElectable(url)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	var res jepsenResult
	// A transactional producer alongside (its check is after the run).
	wg.Add(1)
	go func() {
		defer wg.Done()
		res.txn.run(ctx, t, c.kafkaAddrs())
	}()
	var mu sync.Mutex // guards acked, failedBy and res counters below
	acked := map[string]bool{}
	failedBy := map[string]int{} // failed writes by error and time, for the log
	var ops, failed atomic.Int64

	// Producers: acks=all (kgo's default, idempotent), one record at a
	// time with a unique value. A record whose fate is unknown (error,
	// timeout) is not acknowledged; the client is replaced after an error.
	for p := 0; p < 3; p++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			newClient := func() *kgo.Client {
				cl, err := kgo.NewClient(kgo.SeedBrokers(c.kafkaAddrs()...), kgo.ClientID(fmt.Sprintf("jepsen-%d", p)),
					kgo.RecordDeliveryTimeout(8*time.Second), kgo.RequestTimeoutOverhead(3*time.Second),
					kgo.RetryTimeout(8*time.Second), kgo.MetadataMinAge(250*time.Millisecond),
					kgo.ProducerBatchCompression(kgo.NoCompression()))
				if err != nil {
					t.Errorf("kgo.NewClient: %v", err)
				}
				return cl
			}
			cl := newClient()
			defer func() { cl.Close() }()
			for n := 0; ctx.Err() == nil; n++ {
				v := fmt.Sprintf("p%d-%d", p, n)
				pctx, pcancel := context.WithTimeout(ctx, 10*time.Second)
				err := cl.ProduceSync(pctx, &kgo.Record{Topic: topic, Value: []byte(v)}).FirstErr()
				pcancel()
				ops.Add(1)
				if err != nil {
					failed.Add(1)
					if ctx.Err() == nil {
						mu.Lock()
						failedBy[fmt.Sprintf("%s: %v", time.Now().UTC().Format("15:04:05"), err)]++
						mu.Unlock()
					}
					cl.Close()
					cl = newClient()
					continue
				}
				mu.Lock()
				acked[v] = true
				mu.Unlock()
			}
		}()
	}

	// A consumer group: one kgo member with auto-commit reads the topic
	// throughout. Its coordinator is the leader, so it moves with every
	// failover; its committed offsets and membership go with it.
	var groupEv groupEvents
	gcl, err := kgo.NewClient(append(append(groupEv.opts(), clientLog(t, "group-classic")...), kgo.SeedBrokers(c.kafkaAddrs()...),
		kgo.ConsumerGroup("jepsen-group"), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.AutoCommitInterval(500*time.Millisecond), kgo.FetchMaxWait(500*time.Millisecond),
		kgo.RetryTimeout(60*time.Second), kgo.MetadataMinAge(250*time.Millisecond))...)
	if err != nil {
		t.Fatal(err)
	}
	defer gcl.Close()
	group := startGroupReader(t, gcl)
	// And a member of a consumer-protocol group (KIP-848): the coordinator
	// assigns its partitions, and its epoch and assignment move with every
	// failover too.
	var group848Ev groupEvents
	gcl848, err := kgo.NewClient(append(append(group848Ev.opts(), clientLog(t, "group-848")...), kgo.SeedBrokers(c.kafkaAddrs()...),
		kgo.ConsumerGroup("jepsen-848-group"), kgo.ConsumeTopics(topic), kgo.ServerSideBalancer(),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.AutoCommitInterval(500*time.Millisecond), kgo.FetchMaxWait(500*time.Millisecond),
		kgo.RetryTimeout(60*time.Second), kgo.MetadataMinAge(250*time.Millisecond))...)
	if err != nil {
		t.Fatal(err)
	}
	defer gcl848.Close()
	group848 := startGroupReader(t, gcl848)

	// Monitor: which brokers take writes. Never two at once for longer
	// than a moment a 100 ms sample may catch (the test fails otherwise).
	metricsAddrs := map[int]string{}
	for _, n := range c.nodes {
		metricsAddrs[n.id] = n.host.Addr(9100)
	}
	writers := watchWriters(ctx, t, metricsAddrs, 100*time.Millisecond)
	// Monitor: the topic's end offset, asked of every node every 20 ms,
	// never goes back, across failovers too (KIP-207).
	kafkaAddrs := map[int]string{}
	for _, n := range c.nodes {
		kafkaAddrs[n.id] = n.kafka
	}
	ends := watchEndOffsets(ctx, t, kafkaAddrs, topic, 0, 20*time.Millisecond)

	// Monitor: who leads, how often it changes, longest time with no
	// leader.
	var failovers atomic.Int64
	var longest atomic.Int64
	wg.Add(1)
	go func() {
		defer wg.Done()
		lastLeader, lastEpoch := c.leaderNow(time.Second)
		var since time.Time
		for ctx.Err() == nil {
			id, epoch := c.leaderNow(300 * time.Millisecond)
			now := time.Now()
			if id == 0 {
				if since.IsZero() {
					since = now
				}
				if d := now.Sub(since); int64(d) > longest.Load() {
					longest.Store(int64(d))
				}
			} else {
				since = time.Time{}
				if epoch > lastEpoch {
					if lastEpoch != 0 {
						failovers.Add(1)
						t.Logf("leader: node %d epoch %d (was node %d epoch %d)", id, epoch, lastLeader, lastEpoch)
					}
					lastLeader, lastEpoch = id, epoch
				}
			}
			sleepOrDone(ctx, 100*time.Millisecond)
		}
	}()

	// Nemesis: one fault at a time, then recovery.
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 5))
	deadline := time.Now().Add(dur)
	for time.Now().Before(deadline) {
		leader, _ := c.waitLeader(60 * time.Second)
		target := leader
		who := "leader"
		if rng.IntN(2) == 0 {
			for target == leader {
				target = 1 + rng.IntN(len(c.nodes))
			}
			who = "follower"
		}
		n := c.node(target)
		down := time.Duration(2000+rng.IntN(3000)) * time.Millisecond
		var fault string
		switch rng.IntN(12) {
		case 0:
			fault = fmt.Sprintf("SIGKILL %s pair %d for %s", who, target, down)
			n.killPair()
			time.Sleep(down) // the fault's duration, not a wait for a condition
			n.startPair()
		case 1:
			fault = fmt.Sprintf("SIGSTOP %s pair %d for %s", who, target, down)
			n.side.Pause()
			n.broker.Pause()
			time.Sleep(down)
			n.broker.Resume()
			n.side.Resume()
		case 2:
			fault = fmt.Sprintf("SIGKILL %s sidecar %d for %s", who, target, down)
			n.side.Kill()
			time.Sleep(down)
			n.side.MustRestart()
		case 3:
			// The node's links are cut: its broker keeps running and
			// serving clients, its sidecar neither replicates nor renews
			// its etcd lease. A leader's broker stops taking writes once
			// its sidecar's heartbeats have stopped for fence_after_ms
			// (LinkHeartbeat), before another node can be elected.
			fault = fmt.Sprintf("SIGSTOP %s sidecar %d (links cut) for %s", who, target, down)
			n.side.Pause()
			time.Sleep(down)
			n.side.Resume()
		case 4:
			// A network partition: the node neither reaches nor hears
			// the other nodes and etcd; clients still reach it.
			fault = fmt.Sprintf("partition: %s node %d cut off from the other nodes and etcd for %s", who, target, down)
			nw.Isolate(n.host)
			time.Sleep(down)
			nw.HealAll()
		case 5:
			fault = fmt.Sprintf("partition: %s node %d cut off from etcd only for %s", who, target, down)
			nw.Cut(n.host, nw.Host("etcd"))
			time.Sleep(down)
			nw.HealAll()
		case 6:
			// One link down: the node and one other node no longer reach
			// each other; both still reach etcd and the third node.
			other := target
			for other == target {
				other = 1 + rng.IntN(len(c.nodes))
			}
			fault = fmt.Sprintf("partition: %s node %d and node %d cut off from each other for %s", who, target, other, down)
			nw.Cut(n.host, c.node(other).host)
			time.Sleep(down)
			nw.HealAll()
		case 7:
			// A client leaking connections: more than the broker's
			// --max-connections, held for the fault's duration. The
			// broker refuses those over its limit and keeps serving the
			// clients it has; new connections from the workload are
			// refused meanwhile.
			fault = fmt.Sprintf("connection flood: %d connections to %s node %d's Kafka port for %s", jepsenMaxConnections+200, who, target, down)
			release := flood(t, n.kafka, jepsenMaxConnections+200)
			time.Sleep(down)
			release()
			if !n.broker.Running() {
				t.Errorf("node %d's broker exited during a connection flood:\n%s", target, n.broker.LogTail(20))
			} else if !strings.Contains(n.broker.Log(), "refusing client connections over a limit") {
				t.Errorf("node %d's broker took a flood of %d connections without refusing any (--max-connections %d)", target, jepsenMaxConnections+200, jepsenMaxConnections)
			}
		case 8:
			// The broker alone crashes; its sidecar stays up (a follower's
			// tells the leader at once that it leaves the ISR).
			fault = fmt.Sprintf("SIGKILL %s broker %d for %s", who, target, down)
			n.broker.Kill()
			time.Sleep(down)
			n.broker.MustRestart()
		case 9:
			// A clean stop of both processes at once, as a rolling
			// restart or Kubernetes does: a leader's sidecar revokes its
			// lease, a follower's tells the leader it leaves the ISR.
			fault = fmt.Sprintf("SIGTERM %s pair %d for %s", who, target, down)
			if err := n.stopPair(); err != nil {
				t.Error(err)
			}
			time.Sleep(down)
			n.startPair()
		case 10:
			// A clean stop of the broker alone (an upgrade of the broker
			// binary): a leader's hands its leadership to an in-sync
			// follower before it exits (BrokerStopping), a follower's
			// sidecar tells the leader it leaves the ISR.
			fault = fmt.Sprintf("SIGTERM %s broker %d for %s", who, target, down)
			if err := n.broker.Stop(); err != nil {
				t.Errorf("node %d's broker did not exit cleanly on SIGTERM: %v", target, err)
			}
			time.Sleep(down)
			n.broker.MustRestart()
		case 11:
			// A clean stop of the sidecar alone (an upgrade of the
			// sidecar binary): a leader's stops its broker's writes and
			// hands the leadership to an in-sync follower before it
			// revokes its lease; a follower's tells the leader it leaves
			// the ISR. The broker keeps serving clients meanwhile.
			fault = fmt.Sprintf("SIGTERM %s sidecar %d for %s", who, target, down)
			if err := n.side.Stop(); err != nil {
				t.Errorf("node %d's sidecar did not exit cleanly on SIGTERM: %v", target, err)
			}
			time.Sleep(down)
			n.side.MustRestart()
		}
		t.Log("nemesis: " + fault)
		res.faults = append(res.faults, fault)
		// Recovery: a leader with every node back in sync, then some
		// quiet time with the producers running.
		testutil.Eventually(t, 90*time.Second, func() error {
			id, _ := c.leaderNow(time.Second)
			if id == 0 {
				return fmt.Errorf("no leader")
			}
			return c.inSync(id)
		})
		c.waitElectable(url)
		time.Sleep(time.Duration(1000+rng.IntN(2000)) * time.Millisecond)
	}
	cancel()
	wg.Wait()

	// Final check: every node in sync and identical, every acknowledged
	// value read exactly once.
	leader, _ := c.waitLeader(60 * time.Second)
	testutil.Eventually(t, 60*time.Second, func() error { return c.inSync(leader) })
	var ids []int
	for _, n := range c.nodes {
		ids = append(ids, n.id)
	}
	c.caughtUp(60*time.Second, leader, ids...)
	verifyOut, verifyErr := c.verify(leader)
	got := readValues(t, c, leader, topic)
	count := map[string]int{}
	for _, v := range got {
		count[v]++
	}
	var lostVals, dupVals []string
	for v := range acked {
		if count[v] == 0 {
			lostVals = append(lostVals, v)
		}
	}
	for v, k := range count {
		if k > 1 {
			dupVals = append(dupVals, v)
		}
	}
	sort.Strings(lostVals)
	sort.Strings(dupVals)
	// The group consumer reads every acknowledged value (at least once:
	// what it read after its last commit before a failover comes again).
	ackedVals := make([]string, 0, len(acked))
	for v := range acked {
		ackedVals = append(ackedVals, v)
	}
	group.waitFor(t, 60*time.Second, ackedVals)
	res.groupRead, res.groupAgain = group.counts()
	group848.waitFor(t, 60*time.Second, ackedVals)
	read848, again848 := group848.counts()
	res.ops, res.acked, res.failed = int(ops.Load()), len(acked), int(failed.Load())
	res.lost, res.dup = len(lostVals), len(dupVals)
	res.failovers = int(failovers.Load())
	res.longestNoLeader = time.Duration(longest.Load())
	txnSummary, txnErrs := res.txn.check(t, c, leader)
	summary := fmt.Sprintf("jepsen: duration %s, faults %d, operations %d, acknowledged %d, failed/unknown %d, read %d, lost %d, duplicated %d, failovers %d, longest window without a leader %s; %s; %s; consumer group: read %d values, %d of them again, rebalance callbacks: %s; consumer-protocol group: read %d values, %d of them again, callbacks: %s; %s",
		dur, len(res.faults), res.ops, res.acked, res.failed, len(got), res.lost, res.dup, res.failovers, res.longestNoLeader.Round(10*time.Millisecond),
		writers, ends, res.groupRead, res.groupAgain, groupEv.String(), read848, again848, group848Ev.String(), txnSummary)
	for _, e := range txnErrs {
		t.Error(e)
	}
	t.Log(summary)
	fmt.Println(summary)
	for _, rw := range group.rewound() {
		t.Logf("consumer group rewound: %s", rw)
	}
	for _, rw := range group848.rewound() {
		t.Logf("consumer-protocol group rewound: %s", rw)
	}
	for e, n := range failedBy {
		t.Logf("failed writes (the client gave up; not acknowledged): %d at %s", n, e)
	}
	t.Log(verifyOut)
	if verifyErr != nil {
		t.Errorf("tandemctl verify: %v\n%s", verifyErr, verifyOut)
	}
	// After every crash, freeze and cut, no node's WAL holds damage that
	// a broker would refuse to start on (what tandemctl wal checks; the
	// nodes are running, so their tails may be seen mid-write).
	for _, n := range c.nodes {
		var damage []string
		entries := 0
		err := wal.Inspect(filepath.Join(n.dir, "data", "wal"), 0, func(in wal.Inspected) error {
			if in.Entry != nil {
				entries++
			}
			if in.Corrupt {
				damage = append(damage, fmt.Sprintf("%s offset %d: %s", in.Segment, in.Offset, in.Note))
			}
			return nil
		})
		switch {
		case err != nil:
			t.Errorf("node %d: reading its WAL: %v", n.id, err)
		case len(damage) > 0:
			t.Errorf("node %d: its WAL is damaged: %s", n.id, strings.Join(damage, "; "))
		default:
			t.Logf("node %d: %d WAL entries, no damage", n.id, entries)
		}
	}
	if res.lost > 0 {
		t.Errorf("lost %d acknowledged values: %s", res.lost, strings.Join(lostVals[:min(len(lostVals), 20)], " "))
	}
	if res.dup > 0 {
		t.Errorf("%d values read more than once: %s", res.dup, strings.Join(dupVals[:min(len(dupVals), 20)], " "))
	}
	if res.acked == 0 {
		t.Errorf("no write was acknowledged")
	}
	// A consumer reads only committed records, which every node that
	// can be elected holds: franz-go must never find the log cut below
	// what it read.
	for _, dl := range group.lostData() {
		t.Errorf("consumer group: franz-go reported lost data: %s", dl)
	}
	for _, dl := range group848.lostData() {
		t.Errorf("consumer-protocol group: franz-go reported lost data: %s", dl)
	}
	if b := ends.Backwards(); len(b) > 0 {
		t.Errorf("the end offset went back %d times: %s", len(b), strings.Join(b[:min(len(b), 10)], "; "))
	}
	if w := writers.Sustained(); len(w) > 0 {
		t.Errorf("two brokers took writes at once for two sampling rounds or more: %s", strings.Join(w, "; "))
	}
}

// clientLog has a franz-go client log at info level (group joins, session
// ends, failed commits) into name.log in the test's directory under
// TANDEM_TEST_LOG_DIR, next to the brokers' and sidecars' logs; without
// that variable it does nothing.
func clientLog(t *testing.T, name string) []kgo.Opt {
	dir := os.Getenv("TANDEM_TEST_LOG_DIR")
	if dir == "" {
		return nil
	}
	dir = filepath.Join(dir, strings.Map(func(r rune) rune {
		if r == '/' {
			return '_'
		}
		return r
	}, t.Name()))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(filepath.Join(dir, name+".log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	stamp := func() string { return time.Now().UTC().Format("15:04:05.000 ") }
	return []kgo.Opt{kgo.WithLogger(kgo.BasicLogger(f, kgo.LogLevelInfo, stamp))}
}

// sleepOrDone waits d or until ctx is done.
func sleepOrDone(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// TestEtcdWholeClusterRestartKeepsCommittedEntries: the whole cluster loses
// power, the leader's WAL comes back without its last 20 acknowledged
// entries, and the leader's pair starts first: it wins the election, no
// peer answers, and it leads with the shorter log, publishing an ISR of
// itself. The followers refuse to drop the 20 and keep serving them; not
// being in the published ISR, they cannot be elected. The operator does
// what docs/operations.md says: stop the short node and delete the
// published ISR key; a node that holds everything is elected, and the old
// leader catches up from it when it returns (dropping the no-op it committed
// alone as the first entry of its epoch). Nothing acknowledged is lost.
func TestEtcdWholeClusterRestartKeepsCommittedEntries(t *testing.T) {
	c, url, old := startElectableCluster(t)
	const topic = "etcd-restart-short"
	seg, cut, want := produceWithTailMark(t, c, topic, old)
	var others []int
	for _, n := range c.nodes {
		if n.id != old {
			others = append(others, n.id)
		}
	}
	waitCommitCheckpoints(t, c, old, others...)

	for _, n := range c.nodes {
		n.killPair()
	}
	if err := os.Truncate(seg, cut); err != nil {
		t.Fatal(err)
	}
	c.node(old).startPair()
	if id, _ := c.waitLeader(60 * time.Second); id != old {
		t.Fatalf("node %d leads, want node %d (the only one running)", id, old)
	}
	for _, id := range others {
		c.node(id).startPair()
	}
	for _, id := range others {
		waitRefusing(t, c, id)
		if got := readValues(t, c, id, topic); !slices.Equal(got, want) {
			t.Fatalf("node %d serves %d values after refusing to follow the short leader, want the 40 acknowledged", id, len(got))
		}
	}

	// The short leader committed the first entry of its epoch alone (a
	// no-op, answered to no client) and saved that commit point: it gives
	// that entry up when it follows, where it refuses to drop data.
	waitCommitCheckpoints(t, c, old, old)
	// The operator's way out (docs/operations.md): tandemctl forget-isr
	// refuses while the short leader still holds the election, and
	// deletes its ISR once that node's pair is stopped.
	forget := func(args ...string) (string, error) {
		out, err := exec.Command(testutil.Bin(t, "tandemctl"), append([]string{"forget-isr", "--etcd-endpoints", url,
			"--cluster-id", c.opts.clusterID}, args...)...).CombinedOutput()
		return string(out), err
	}
	if out, err := forget("--wait", "1s"); err == nil || !strings.Contains(out, "still holds the election") ||
		!strings.Contains(out, fmt.Sprintf("stop node %d's broker and sidecar first", old)) {
		t.Fatalf("forget-isr with node %d running: err %v, output:\n%s", old, err, out)
	}
	c.node(old).killPair()
	if out, err := forget(); err != nil || !strings.Contains(out, fmt.Sprintf("deleted /tandem/%s/isr: node %d's ISR", c.opts.clusterID, old)) {
		t.Fatalf("forget-isr with node %d stopped: err %v, output:\n%s", old, err, out)
	}
	leader, _ := c.waitLeader(60 * time.Second)
	if leader == old {
		t.Fatalf("node %d leads again while stopped", old)
	}
	c.node(old).startPair()
	finishWithFiveMore(t, c, topic, leader, want)
}

const jepsenTxnTopic = "jepsen-txn"

// txnWorkload is a transactional producer under the nemesis: transactions
// of three unique values over three partitions, one in five aborted on
// purpose. Each transaction's outcome is what the client was told:
// committed, aborted, or unknown (an error on the way; the client is then
// replaced, which aborts or completes what the coordinator holds).
type txnWorkload struct {
	mu       sync.Mutex
	outcomes map[int]string // transaction number -> committed, aborted, unknown
}

const txnValuesPer = 3

func txnValue(n, i int) string { return fmt.Sprintf("t%d-%d", n, i) }

func (w *txnWorkload) set(n int, outcome string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.outcomes == nil {
		w.outcomes = map[int]string{}
	}
	w.outcomes[n] = outcome
}

func (w *txnWorkload) run(ctx context.Context, t *testing.T, seeds []string) {
	newClient := func() *kgo.Client {
		cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...), kgo.ClientID("jepsen-txn"),
			kgo.TransactionalID("jepsen-txn"), kgo.TransactionTimeout(10*time.Second),
			kgo.DefaultProduceTopic(jepsenTxnTopic), kgo.RecordPartitioner(kgo.RoundRobinPartitioner()),
			kgo.RecordDeliveryTimeout(8*time.Second), kgo.RequestTimeoutOverhead(3*time.Second),
			kgo.RetryTimeout(8*time.Second), kgo.MetadataMinAge(250*time.Millisecond))
		if err != nil {
			t.Errorf("kgo.NewClient: %v", err)
		}
		return cl
	}
	cl := newClient()
	defer func() { cl.Close() }()
	for n := 0; ctx.Err() == nil; n++ {
		commit := n%5 != 4
		tctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		err := cl.BeginTransaction()
		if err == nil {
			w.set(n, "unknown") // from the first record on
			for i := 0; i < txnValuesPer && err == nil; i++ {
				err = cl.ProduceSync(tctx, kgo.StringRecord(txnValue(n, i))).FirstErr()
			}
		}
		if err == nil {
			err = cl.EndTransaction(tctx, kgo.TransactionEndTry(commit))
		}
		cancel()
		switch {
		case err == nil && commit:
			w.set(n, "committed")
		case err == nil:
			w.set(n, "aborted")
		default:
			// The outcome is unknown: the coordinator may have it, and
			// a new producer of the id finishes or aborts it.
			cl.Close()
			if ctx.Err() == nil {
				sleepOrDone(ctx, 200*time.Millisecond)
			}
			cl = newClient()
		}
	}
}

// check reads the transactional topic read_committed on the leader, once
// no transaction is open any more, and returns the summary and what is
// wrong: a committed transaction must be there whole and once, an aborted
// one not at all, an unknown one whole or not at all.
func (w *txnWorkload) check(t *testing.T, c *cluster, leader int) (string, []string) {
	t.Helper()
	adm := kadm.NewClient(kclient(t, c.kafkaAddrs()))
	testutil.Eventually(t, 90*time.Second, func() error {
		l, err := adm.ListTransactions(ctxTimeout(t, 10*time.Second), nil, []string{"Ongoing", "PrepareCommit", "PrepareAbort"})
		if err != nil {
			return err
		}
		if len(l) > 0 {
			return fmt.Errorf("transactions still open: %v", l.TransactionalIDs())
		}
		return nil
	})
	w.mu.Lock()
	var want []string // every value of every committed transaction
	for n, outcome := range w.outcomes {
		if outcome == "committed" {
			for i := range txnValuesPer {
				want = append(want, txnValue(n, i))
			}
		}
	}
	w.mu.Unlock()
	cl := kclient(t, []string{c.node(leader).kafka}, kgo.ConsumeTopics(jepsenTxnTopic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.FetchMaxWait(200*time.Millisecond))
	count := map[string]int{}
	// Read until every committed value is in and nothing more came for 3 s
	// (or a minute passed: then the checks below say what is missing).
	deadline, lastNew := time.Now().Add(60*time.Second), time.Now()
	for time.Now().Before(deadline) {
		pctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		fs := cl.PollFetches(pctx)
		cancel()
		fs.EachRecord(func(r *kgo.Record) {
			count[string(r.Value)]++
			lastNew = time.Now()
		})
		all := true
		for _, v := range want {
			if count[v] == 0 {
				all = false
				break
			}
		}
		if all && time.Since(lastNew) > 3*time.Second {
			break
		}
	}
	var errs []string
	w.mu.Lock()
	defer w.mu.Unlock()
	tally := map[string]int{}
	unknownIn := 0
	for n, outcome := range w.outcomes {
		tally[outcome]++
		seen := 0
		for i := range txnValuesPer {
			k := count[txnValue(n, i)]
			if k > 1 {
				errs = append(errs, fmt.Sprintf("transaction %d: %s read %d times", n, txnValue(n, i), k))
			}
			if k > 0 {
				seen++
			}
		}
		switch {
		case outcome == "committed" && seen != txnValuesPer:
			errs = append(errs, fmt.Sprintf("committed transaction %d: %d of its %d values read", n, seen, txnValuesPer))
		case outcome == "aborted" && seen != 0:
			errs = append(errs, fmt.Sprintf("aborted transaction %d: %d of its values read", n, seen))
		case outcome == "unknown" && seen != 0 && seen != txnValuesPer:
			errs = append(errs, fmt.Sprintf("transaction %d (outcome unknown to the client): %d of its %d values read, not all or none", n, seen, txnValuesPer))
		case outcome == "unknown" && seen == txnValuesPer:
			unknownIn++
		}
	}
	if tally["committed"] == 0 {
		errs = append(errs, "no transaction committed")
	}
	return fmt.Sprintf("transactions: %d committed, %d aborted, %d unknown to the client (%d of them committed whole), %d values read, %d problems",
		tally["committed"], tally["aborted"], tally["unknown"], unknownIn, len(count), len(errs)), errs
}

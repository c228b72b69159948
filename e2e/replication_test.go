package e2e

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tandem-io/tandem/internal/testutil"
)

// consumeFrom reads want records of topic from the start, fetching only from
// the given broker (a consumer pinned to one node), and returns the values
// in offset order per partition.
func consumeFrom(t *testing.T, addr, topic string, want int) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var got []string
	for len(got) < want {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read %d of %d records from %s before the deadline", len(got), want, addr)
		}
		fs.EachRecord(func(r *kgo.Record) { got = append(got, string(r.Value)) })
	}
	return got
}

func expectSequence(t *testing.T, got []string, prefix string, n int) {
	t.Helper()
	if len(got) != n {
		t.Fatalf("got %d records, want %d", len(got), n)
	}
	for i, v := range got {
		if want := fmt.Sprintf("%s%d", prefix, i); v != want {
			t.Fatalf("record %d is %q, want %q (gap, duplicate or reorder)", i, v, want)
		}
	}
}

// kgoProduce produces values prefix0..prefixN-1 synchronously, in order.
func kgoProduce(t *testing.T, addrs []string, topic, prefix string, from, to int, acks kgo.Acks) {
	t.Helper()
	opts := []kgo.Opt{kgo.SeedBrokers(addrs...), kgo.DefaultProduceTopic(topic), kgo.RequiredAcks(acks),
		kgo.AllowAutoTopicCreation()}
	if acks != kgo.AllISRAcks() {
		opts = append(opts, kgo.DisableIdempotentWrite())
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for i := from; i < to; i++ {
		if err := cl.ProduceSync(ctx, kgo.StringRecord(fmt.Sprintf("%s%d", prefix, i))).FirstErr(); err != nil {
			t.Fatalf("produce %s%d: %v", prefix, i, err)
		}
	}
}

// Issue 3, show 1: kafka-python produces 1000 messages to the leader; both
// followers reach the leader's LSN; tandemctl verify reports all three
// identical; a consumer reads all 1000 in order from each follower.
func TestReplicationThreeNodes(t *testing.T) {
	c := startCluster(t, clusterOpts{})
	leader := &broker{t: t, Addr: c.leader().kafka}
	res := pyProduce(t, leader, "repl", 1000, "all", "m-")
	for i, r := range res.Records {
		if r.Offset != int64(i) {
			t.Fatalf("message %d got offset %d", i, r.Offset)
		}
	}
	c.caughtUp(20*time.Second, 1, 2, 3)
	out := c.mustVerify(1)
	t.Logf("tandemctl verify:\n%s", out)
	for _, id := range []int{2, 3} {
		expectSequence(t, consumeFrom(t, c.node(id).kafka, "repl", 1000), "m-", 1000)
	}
}

// A client bootstrapped on a follower is routed to the leader for writes
// (Metadata names the leader); Produce sent to a follower directly is
// refused with NOT_LEADER_OR_FOLLOWER; topics created on the leader and
// committed group offsets appear on the followers.
func TestFollowersRouteToLeaderAndReplicateMetadata(t *testing.T) {
	c := startCluster(t, clusterOpts{})
	follower := c.node(3).kafka
	kgoProduce(t, []string{follower}, "routed", "r-", 0, 20, kgo.AllISRAcks())

	// Produce straight to the follower, bypassing metadata routing.
	cl, err := kgo.NewClient(kgo.SeedBrokers(follower))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := rawProduceTo(ctx, cl, 1, "routed"); !strings.Contains(fmt.Sprint(err), kerr.NotLeaderForPartition.Message) {
		t.Fatalf("produce to follower: got %v, want NOT_LEADER_OR_FOLLOWER", err)
	}

	// Explicit topic creation on the leader reaches the followers.
	adm := kadm.NewClient(newKgo(t, c.leader().kafka))
	if _, err := adm.CreateTopic(ctx, 3, -1, nil, "created-on-leader"); err != nil {
		t.Fatal(err)
	}
	// Committed offsets replicate: commit through the leader (group coordinator).
	offs := kadm.Offsets{}
	offs.Add(kadm.Offset{Topic: "routed", Partition: 0, At: 7, LeaderEpoch: -1})
	if _, err := adm.CommitOffsets(ctx, "repl-group", offs); err != nil {
		t.Fatal(err)
	}
	c.caughtUp(20*time.Second, 1, 2, 3)
	for _, id := range []int{2, 3} {
		fadm := kadm.NewClient(newKgo(t, c.node(id).kafka))
		td, err := fadm.ListTopics(ctx, "created-on-leader")
		if err != nil || td["created-on-leader"].Err != nil || len(td["created-on-leader"].Partitions) != 3 {
			t.Fatalf("node %d: topic created on the leader: %v %+v", id, err, td["created-on-leader"])
		}
	}
	c.mustVerify(1)
	expectSequence(t, consumeFrom(t, c.node(2).kafka, "routed", 20), "r-", 20)
}

// Issue 3, show 2: produce 100, SIGKILL a follower's broker (then, in the
// second case, its sidecar), produce 100 more, restart it: it catches up to
// all 200 and verifies identical.
func TestFollowerCatchUpAfterCrash(t *testing.T) {
	for _, tc := range []struct {
		name string
		kill func(n *node)
		back func(n *node)
	}{
		{"broker", func(n *node) { n.broker.Kill() }, func(n *node) { n.broker.MustRestart() }},
		{"sidecar", func(n *node) { n.side.Kill() }, func(n *node) { n.side.MustRestart() }},
		{"pair", func(n *node) { n.killPair() }, func(n *node) { n.startPair() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := startCluster(t, clusterOpts{sidecarFlags: []string{"--replica-lag-time-max", "2s"}})
			addrs := c.kafkaAddrs()
			kgoProduce(t, addrs, "catchup", "v-", 0, 100, kgo.LeaderAck())
			c.caughtUp(20*time.Second, 1, 2, 3)
			f := c.node(2)
			tc.kill(f)
			kgoProduce(t, addrs, "catchup", "v-", 100, 200, kgo.LeaderAck())
			tc.back(f)
			c.caughtUp(30*time.Second, 1, 2, 3)
			c.mustVerify(1)
			expectSequence(t, consumeFrom(t, f.kafka, "catchup", 200), "v-", 200)
		})
	}
}

// Issue 3, show 2 (last case): the leader's sidecar is restarted in the
// middle of a produce load; the followers end with every record, once.
func TestLeaderSidecarRestartUnderLoad(t *testing.T) {
	c := startCluster(t, clusterOpts{})
	addrs := []string{c.leader().kafka}
	const total = 3000
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		kgoProduce(t, addrs, "restart", "x-", 0, total, kgo.LeaderAck())
	}()
	// Restart the leader's sidecar twice while the producer runs.
	for i := 0; i < 2; i++ {
		testutil.Eventually(t, 20*time.Second, func() error {
			st, err := c.status(1)
			if err != nil {
				return err
			}
			if st.LastLsn < uint64(500*(i+1)) {
				return fmt.Errorf("leader at LSN %d", st.LastLsn)
			}
			return nil
		})
		c.leader().side.MustRestart()
	}
	wg.Wait()
	c.waitInSync(30 * time.Second)
	c.caughtUp(30*time.Second, 1, 2, 3)
	c.mustVerify(1)
	for _, id := range []int{2, 3} {
		expectSequence(t, consumeFrom(t, c.node(id).kafka, "restart", total), "x-", total)
	}
}

// Issue 3, show 3: a sidecar configured with another cluster id is refused
// with a clear error on both sides; garbage on the replication port gets a
// gRPC error, not a crash.
func TestForeignClusterRefused(t *testing.T) {
	c := startCluster(t, clusterOpts{nodes: 2})
	// A stranger claiming to be node 2 of cluster "other", dialing node 1.
	sock := shortTempDir(t) + "/s.sock"
	stranger := testutil.Start(t, testutil.ProcessConfig{
		Name: "stranger-sidecar",
		Path: testutil.Bin(t, "tandem-sidecar"),
		Args: []string{"--node-id", "2", "--cluster-id", "other", "--broker-socket", sock,
			"--listen", testutil.FreeAddr(t), "--leader", "1",
			"--peers", fmt.Sprintf("1=%s,2=%s", c.node(1).sidecar, c.node(2).sidecar)},
	})
	strangerBroker := testutil.Start(t, testutil.ProcessConfig{
		Name: "stranger-broker",
		Path: brokerPath(t),
		Args: []string{"--node-id", "2", "--data-dir", t.TempDir(), "--listen", testutil.FreeAddr(t), "--sidecar", sock},
	})
	defer func() {
		if t.Failed() {
			t.Logf("stranger broker log:\n%s", strangerBroker.LogTail(20))
		}
	}()
	testutil.Eventually(t, 30*time.Second, func() error {
		if !strings.Contains(stranger.Log(), "other") || !strings.Contains(stranger.Log(), "e2e") {
			return fmt.Errorf("the stranger's log does not name both cluster ids yet")
		}
		if !strings.Contains(c.node(1).side.Log(), "other") {
			return fmt.Errorf("the leader's log does not name the stranger's cluster id yet")
		}
		return nil
	})
	t.Logf("stranger:\n%s\nleader:\n%s", grepLines(stranger.Log(), "cluster"), grepLines(c.node(1).side.Log(), "other"))
	// Garbage on the replication port: the sidecar answers (or closes) and lives.
	conn, err := net.Dial("tcp", c.node(1).sidecar)
	if err != nil {
		t.Fatal(err)
	}
	conn.Write([]byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x04garbage-garbage-garbage"))
	conn.SetReadDeadline(time.Now().Add(3 * time.Second))
	buf := make([]byte, 256)
	conn.Read(buf)
	conn.Close()
	if !c.node(1).side.Running() {
		t.Fatalf("the sidecar died after garbage on its port:\n%s", c.node(1).side.LogTail(30))
	}
	// The real cluster is unaffected.
	c.waitInSync(20 * time.Second)
	kgoProduce(t, []string{c.leader().kafka}, "still", "s-", 0, 10, kgo.AllISRAcks())
}

func newKgo(t *testing.T, addr string, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(addr)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// rawProduceTo sends one single-record Produce with acks straight to the
// seed broker of cl (no metadata routing, no retry) and returns the
// partition's error.
func rawProduceTo(ctx context.Context, cl *kgo.Client, acks int16, topic string) error {
	raw := recordBatch(-1, -1, -1, "direct")
	req := kmsg.NewPtrProduceRequest()
	req.Acks = acks
	req.TimeoutMillis = 5000
	rt := kmsg.NewProduceRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewProduceRequestTopicPartition()
	rp.Records = raw
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	resp, err := cl.SeedBrokers()[0].Request(ctx, req)
	if err != nil {
		return err
	}
	return kerr.ErrorForCode(resp.(*kmsg.ProduceResponse).Topics[0].Partitions[0].ErrorCode)
}

// grepLines returns the lines of s that contain sub.
func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

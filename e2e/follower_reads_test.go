package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tandem-io/tandem/internal/testutil"
)

// Follower reads (Kafka KIP-392): nodes 1 and 3 are in rack "a", node 2 in
// rack "b". A consumer that says it is in rack "b" and bootstraps from the
// leader is told (Fetch PreferredReadReplica) to read from node 2, and does.

// startRackCluster starts three pairs with brokers in rack "a", then
// restarts node 2's broker in rack "b" (the harness gives every broker the
// same flags).
func startRackCluster(t *testing.T) *cluster {
	t.Helper()
	c := startCluster(t, clusterOpts{brokerFlags: []string{"--rack", "a"}})
	n := c.node(2)
	if err := n.broker.Stop(); err != nil {
		t.Fatalf("stopping broker 2: %v", err)
	}
	n.broker = testutil.Start(t, testutil.ProcessConfig{
		Name: "broker-2-rack-b",
		Path: brokerPath(t),
		Args: []string{
			"--node-id", "2", "--data-dir", filepath.Join(n.dir, "data"),
			"--listen", n.kafka, "--advertise", n.kafka, "--sidecar", n.sock,
			"--group-initial-rebalance-delay", "0s", "--rack", "b",
		},
	})
	testutil.WaitTCPFor(t, n.kafka, 20*time.Second)
	c.waitInSync(30 * time.Second)
	return c
}

// fetchServers is a kgo hook that counts, per node id, the record batches
// a consumer read from that node's Fetch answers.
type fetchServers struct {
	mu     sync.Mutex
	byNode map[int32]int
}

func (f *fetchServers) OnFetchBatchRead(meta kgo.BrokerMetadata, _ string, _ int32, _ kgo.FetchBatchMetrics) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.byNode[meta.NodeID]++
}

func (f *fetchServers) snapshot() map[int32]int {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[int32]int{}
	for k, v := range f.byNode {
		out[k] = v
	}
	return out
}

func TestFollowerReadsFranzGoRack(t *testing.T) {
	c := startRackCluster(t)
	const topic = "rack-reads"
	c.createTopic(topic)
	prod := kclient(t, []string{c.leader().kafka})
	vals := seqValues("rack-", 200)
	produceSync(t, prod, topic, vals)

	hook := &fetchServers{byNode: map[int32]int{}}
	cons := kclient(t, []string{c.leader().kafka}, kgo.Rack("b"), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.WithHooks(hook))
	got := consumeN(t, cons, len(vals), 30*time.Second)
	requireSameValues(t, "rack-b consumer", values(got), vals)
	// More records after the consumer moved: still read from node 2.
	more := seqValues("rack-more-", 50)
	produceSync(t, prod, topic, more)
	got = consumeN(t, cons, len(more), 30*time.Second)
	requireSameValues(t, "rack-b consumer, later records", values(got), more)

	by := hook.snapshot()
	t.Logf("record batches read, by serving node: %v", by)
	if by[2] == 0 || by[1] != 0 || by[3] != 0 {
		t.Fatalf("record batches read by node = %v; want every batch from node 2 (rack b), none from the leader or node 3", by)
	}

	// A consumer without a rack (or in the leader's rack) reads from the
	// leader.
	hookA := &fetchServers{byNode: map[int32]int{}}
	consA := kclient(t, []string{c.node(2).kafka}, kgo.Rack("a"), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.WithHooks(hookA))
	consumeN(t, consA, len(vals)+len(more), 30*time.Second)
	if by := hookA.snapshot(); by[1] == 0 || by[2] != 0 || by[3] != 0 {
		t.Fatalf("rack-a consumer read batches by node = %v; want every batch from the leader (node 1, rack a)", by)
	}
}

// TestFollowerReadsKcatRack consumes with kcat (librdkafka) and
// client.rack=b, and checks librdkafka's own fetch debug log: it must
// delegate the partition to preferred replica 2 and receive the records
// from broker 2.
func TestFollowerReadsKcatRack(t *testing.T) {
	c := startRackCluster(t)
	const topic = "rack-kcat"
	c.createTopic(topic)
	vals := seqValues("kcat-rack-", 100)
	produceSync(t, kclient(t, []string{c.leader().kafka}), topic, vals)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "kcat", "-C", "-b", c.leader().kafka, "-t", topic, "-o", "beginning",
		"-c", fmt.Sprint(len(vals)), "-X", "client.rack=b", "-d", "fetch")
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("kcat: %v\n%s", err, tail(stderr.String(), 60))
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	requireSameValues(t, "kcat client.rack=b", lines, vals)

	log := stderr.String()
	// librdkafka logs "Topic rack-kcat [0]: migrating from broker 1 to 2
	// (leader is 1): preferred replica updated" when the leader redirects,
	// and "HOST:PORT/2: Enqueue 100 message(s) ... on rack-kcat [0] fetch
	// queue" for every answer with records, naming the broker that sent it.
	pref := regexp.MustCompile(regexp.QuoteMeta(topic) + ` \[0\]: migrating from broker 1 to 2 \(leader is 1\): preferred replica`)
	if !pref.MatchString(log) {
		t.Fatalf("librdkafka's debug log does not show a move to preferred replica 2:\n%s", tail(log, 60))
	}
	from := func(id int) int {
		re := regexp.MustCompile(fmt.Sprintf(`/%d: Enqueue (\d+) message\(s\) .* on %s \[0\] fetch queue`, id, regexp.QuoteMeta(topic)))
		n := 0
		for _, m := range re.FindAllStringSubmatch(log, -1) {
			var k int
			fmt.Sscan(m[1], &k)
			n += k
		}
		return n
	}
	if n2, n1, n3 := from(2), from(1), from(3); n2 != len(vals) || n1 != 0 || n3 != 0 {
		t.Fatalf("librdkafka received %d records from node 2, %d from node 1, %d from node 3; want all %d from node 2:\n%s",
			n2, n1, n3, len(vals), tail(log, 60))
	}
}

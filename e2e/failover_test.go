package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	adminv1 "github.com/tandem-io/tandem/gen/tandem/admin/v1"
	"github.com/tandem-io/tandem/internal/testutil"
)

// Failover with real processes (DESIGN.md decision 9, issue 5): manual
// promotion after the leader dies, and an old leader whose log diverged
// rejoining and truncating its unreplicated tail.

// failoverSidecarFlags: short lag bound and a fast epoch poll, so that the
// tests run in seconds.
func failoverSidecarFlags() []string {
	return []string{"--replica-lag-time-max", "2s", "--epoch-poll-interval", "250ms"}
}

// plain: uncompressed batches, so that readAllFrom can decode them.
var plain = kgo.ProducerBatchCompression(kgo.NoCompression())

// waitLeaderless waits until node id is a follower of no one with its
// broker attached, not ready, and its readiness reason says reason: a
// node that refused to lead.
func (c *cluster) waitLeaderless(id int, reason string) {
	c.t.Helper()
	testutil.Eventually(c.t, 30*time.Second, func() error {
		st, err := c.status(id)
		if err != nil {
			return err
		}
		if st.Role != adminv1.Role_ROLE_FOLLOWER || st.LeaderId != 0 || !st.Linked {
			return fmt.Errorf("node %d: role %v leader %d epoch %d linked %v; want a linked follower of no one", id, st.Role, st.LeaderId, st.Epoch, st.Linked)
		}
		if st.Ready || !strings.Contains(st.NotReadyReason, reason) {
			return fmt.Errorf("node %d: ready %v, reason %q; want not ready, saying %q", id, st.Ready, st.NotReadyReason, reason)
		}
		return nil
	})
}

// promoteNode runs `tandemctl promote` against node id.
func (c *cluster) promoteNode(id int, extra ...string) (string, error) {
	args := append([]string{"--sidecar", c.node(id).sidecar, "--timeout", "30s", "promote"}, extra...)
	out, err := exec.Command(testutil.Bin(c.t, "tandemctl"), args...).CombinedOutput()
	return string(out), err
}

// waitRole waits until node id's sidecar reports role, leader and epoch,
// linked to its broker.
func (c *cluster) waitRole(timeout time.Duration, id int, role adminv1.Role, leader int32, epoch uint32) {
	c.t.Helper()
	testutil.Eventually(c.t, timeout, func() error {
		st, err := c.status(id)
		if err != nil {
			return err
		}
		if st.Role != role || st.LeaderId != leader || st.Epoch != epoch || !st.Linked {
			return fmt.Errorf("node %d: role %v leader %d epoch %d linked %v; want %v of %d in epoch %d",
				id, st.Role, st.LeaderId, st.Epoch, st.Linked, role, leader, epoch)
		}
		return nil
	})
}

// peersArg is the --peers value of tandemctl verify for some nodes.
func (c *cluster) peersArg(ids ...int) string {
	var parts []string
	for _, id := range ids {
		parts = append(parts, fmt.Sprintf("%d=%s", id, c.node(id).sidecar))
	}
	return strings.Join(parts, ",")
}

// rangeValues returns "prefix-from" .. "prefix-(to-1)".
func rangeValues(prefix string, from, to int) []string {
	var out []string
	for i := from; i < to; i++ {
		out = append(out, fmt.Sprintf("%s-%d", prefix, i))
	}
	return out
}

// readValues reads topic/0 on node id up to its high watermark.
func readValues(t *testing.T, c *cluster, id int, topic string) []string {
	t.Helper()
	var out []string
	for _, r := range readAllFrom(t, c, id, topic) {
		out = append(out, r.value)
	}
	return out
}

// groupRead consumes with group "failover-group" until it has read want
// (exactly, in order), commits, and leaves the group.
func groupRead(t *testing.T, seeds []string, topic string, want []string) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...), kgo.ConsumerGroup("failover-group"), kgo.ConsumeTopics(topic),
		kgo.DisableAutoCommit(), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(500*time.Millisecond),
		kgo.RetryTimeout(30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	got := values(consumeN(t, cl, len(want), 60*time.Second))
	if !slices.Equal(got, want) {
		t.Fatalf("group read %d values %v..., want %d starting %s", len(got), got[:min(len(got), 3)], len(want), want[0])
	}
	if err := cl.CommitUncommittedOffsets(ctxTimeout(t, 30*time.Second)); err != nil {
		t.Fatalf("committing offsets: %v", err)
	}
}

func TestManualFailover(t *testing.T) {
	c := startCluster(t, clusterOpts{sidecarFlags: failoverSidecarFlags()})
	const topic = "failover"
	c.createTopic(topic)
	first := rangeValues("v", 0, 50)
	produceSync(t, kclient(t, c.kafkaAddrs(), plain), topic, first)
	c.caughtUp(30*time.Second, 1, 2, 3)
	// A consumer group reads the first 50 and commits its offsets on the
	// leader; the commit replicates like any other WAL entry.
	groupRead(t, c.kafkaAddrs(), topic, first)
	c.caughtUp(30*time.Second, 1, 2, 3)

	c.node(1).killPair()
	out, err := c.promoteNode(2)
	if err != nil || !strings.Contains(out, "node 2 is leader in epoch 2") {
		t.Fatalf("tandemctl promote: %v\n%s", err, out)
	}
	c.waitRole(30*time.Second, 2, adminv1.Role_ROLE_LEADER, 2, 2)
	c.waitRole(30*time.Second, 3, adminv1.Role_ROLE_FOLLOWER, 2, 2)

	second := rangeValues("v", 50, 100)
	produceSync(t, kclient(t, []string{c.node(2).kafka, c.node(3).kafka}, plain), topic, second)
	// kafka-python bootstrapping from the follower finds the new leader
	// through Metadata.
	pyProduce(t, &broker{Addr: c.node(3).kafka}, topic, 10, "all", "py-")
	c.caughtUp(30*time.Second, 2, 3)
	want := append(slices.Clone(first), second...)
	want = append(want, rangeValues("py", 0, 10)...)
	if got := readValues(t, c, 3, topic); !slices.Equal(got, want) {
		t.Fatalf("node 3 has %d values %v..., want the 110 produced", len(got), got[:min(len(got), 5)])
	}
	t.Log(c.mustVerify(2, "--peers", c.peersArg(2, 3)))
	// The group carries on at the new leader from its committed offset.
	groupRead(t, []string{c.node(2).kafka, c.node(3).kafka}, topic, want[50:])

	// The old leader comes back (its sidecar still says --leader 1): it
	// learns epoch 2 from its peers, follows node 2 and catches up.
	c.node(1).startPair()
	c.waitRole(30*time.Second, 1, adminv1.Role_ROLE_FOLLOWER, 2, 2)
	c.caughtUp(30*time.Second, 2, 1, 3)
	testutil.Eventually(t, 30*time.Second, func() error { return c.inSync(2) })
	t.Log(c.mustVerify(2, "--peers", c.peersArg(1, 2, 3)))
	if got := readValues(t, c, 1, topic); !slices.Equal(got, want) {
		t.Fatalf("node 1 has %d values after rejoining, want the 110 produced", len(got))
	}
}

// TestRestartedAloneNeverReusesAnEpoch: a former leader that came back and
// followed a newer epoch keeps that knowledge in its state file, so that
// started again with no peer up it waits for that leader instead of
// leading (until 2026-12-07 its file still named itself, and it led in the
// epoch node 2 had begun: two leaders of one epoch). And a node whose
// state file is older than its WAL (left by such a version) refuses to
// lead, says why, and follows the real leader once it is back.
func TestRestartedAloneNeverReusesAnEpoch(t *testing.T) {
	c := startCluster(t, clusterOpts{sidecarFlags: failoverSidecarFlags()})
	const topic = "one-epoch-one-leader"
	c.createTopic(topic)
	want := rangeValues("v", 0, 20)
	produceSync(t, kclient(t, c.kafkaAddrs(), plain), topic, want[:10])
	c.caughtUp(30*time.Second, 1, 2, 3)
	c.node(1).killPair()
	if out, err := c.promoteNode(2); err != nil || !strings.Contains(out, "node 2 is leader in epoch 2") {
		t.Fatalf("tandemctl promote: %v\n%s", err, out)
	}
	c.waitRole(30*time.Second, 2, adminv1.Role_ROLE_LEADER, 2, 2)
	produceSync(t, kclient(t, []string{c.node(2).kafka, c.node(3).kafka}, plain), topic, want[10:])
	// Node 1 comes back, learns epoch 2 from its peers and follows.
	c.node(1).startPair()
	c.waitRole(30*time.Second, 1, adminv1.Role_ROLE_FOLLOWER, 2, 2)
	c.caughtUp(30*time.Second, 2, 1, 3)
	stateFile := filepath.Join(filepath.Dir(c.node(1).sock), "sidecar-state.json")
	if data, err := os.ReadFile(stateFile); err != nil || !strings.Contains(string(data), `"leader_id":2,"epoch":2`) {
		t.Fatalf("node 1's state file after following epoch 2: %q, %v; want leader 2, epoch 2", data, err)
	}

	// The whole cluster stops; node 1 starts first, alone.
	for _, id := range []int{2, 3, 1} {
		c.node(id).killPair()
	}
	c.node(1).startPair()
	c.waitRole(30*time.Second, 1, adminv1.Role_ROLE_FOLLOWER, 2, 2)
	time.Sleep(2 * time.Second) // long enough to have led, had it meant to
	c.waitRole(time.Second, 1, adminv1.Role_ROLE_FOLLOWER, 2, 2)

	// The same with the state file an older version left: it names node
	// 1 in epoch 1, and node 1's WAL holds epoch 2.
	c.node(1).killPair()
	if err := os.WriteFile(stateFile, []byte(`{"leader_id":1,"epoch":1}`+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c.node(1).startPair()
	c.waitLeaderless(1, "WAL holds entries of epoch 2")
	if log := c.node(1).side.Log(); !strings.Contains(log, "NOT LEADING") || !strings.Contains(log, "promote") {
		t.Errorf("node 1's sidecar did not log why it does not lead and what to run:\n%s", c.node(1).side.LogTail(40))
	}
	// The others come back: node 2 leads epoch 2 again, node 1 follows it,
	// and every node holds the 20 values, identical.
	c.node(2).startPair()
	c.node(3).startPair()
	c.waitRole(30*time.Second, 2, adminv1.Role_ROLE_LEADER, 2, 2)
	c.waitRole(30*time.Second, 1, adminv1.Role_ROLE_FOLLOWER, 2, 2)
	c.caughtUp(30*time.Second, 2, 1, 3)
	t.Log(c.mustVerify(2, "--peers", c.peersArg(1, 2, 3)))
	for _, id := range []int{1, 2, 3} {
		if err := testutil.Poll(10*time.Second, func() error {
			if got := readValues(t, c, id, topic); !slices.Equal(got, want) {
				return fmt.Errorf("node %d has %v, want the 20 acknowledged values", id, got)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
}

func TestDivergedLeaderTruncatesOnRejoin(t *testing.T) {
	c := startCluster(t, clusterOpts{sidecarFlags: failoverSidecarFlags()})
	const topic = "diverge"
	c.createTopic(topic)
	acked := rangeValues("acked", 0, 20)
	produceSync(t, kclient(t, c.kafkaAddrs(), plain), topic, acked)
	c.caughtUp(30*time.Second, 1, 2, 3)

	// Cut the leader off: its sidecar dies, its broker keeps its leader
	// view and takes acks=1 writes that reach nobody.
	c.node(1).side.Kill()
	lost := rangeValues("lost", 0, 10)
	produceSync(t, kclient(t, []string{c.node(1).kafka}, kgo.RequiredAcks(kgo.LeaderAck()), kgo.DisableIdempotentWrite(), plain), topic, lost)

	out, err := c.promoteNode(2)
	if err != nil {
		t.Fatalf("tandemctl promote: %v\n%s", err, out)
	}
	c.waitRole(30*time.Second, 2, adminv1.Role_ROLE_LEADER, 2, 2)
	more := rangeValues("acked", 20, 30)
	produceSync(t, kclient(t, []string{c.node(2).kafka, c.node(3).kafka}, plain), topic, more)

	// Heal: node 1's sidecar comes back, learns epoch 2, fences its broker
	// and truncates the 10 entries nobody else has.
	c.node(1).side.MustRestart()
	c.waitRole(30*time.Second, 1, adminv1.Role_ROLE_FOLLOWER, 2, 2)
	c.caughtUp(30*time.Second, 2, 1, 3)
	t.Log(c.mustVerify(2, "--peers", c.peersArg(1, 2, 3)))
	want := append(slices.Clone(acked), more...)
	for _, id := range []int{1, 2, 3} {
		// A node serves up to the commit point it has heard, which reaches
		// the rejoined node shortly after its entries do.
		if err := testutil.Poll(10*time.Second, func() error {
			if got := readValues(t, c, id, topic); !slices.Equal(got, want) {
				return fmt.Errorf("node %d has %v, want the 30 acknowledged values", id, got)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	if log := c.node(1).side.Log(); !strings.Contains(log, "truncating") || !strings.Contains(log, "dropped_entries=") {
		t.Errorf("node 1's sidecar did not log the truncation:\n%s", c.node(1).side.LogTail(40))
	}
}

// TestLeaderThatLostItsWALTailDoesNotLead: the static leader's machine
// loses power and its WAL comes back without its last 20 entries (what
// --fsync interval or none can do; here the segment is cut back at an
// entry boundary while the pair is down). The 20 were acknowledged with
// acks=all and both followers hold them. The leader must not lead with its
// shorter log (the followers would drop them): it steps down and names the
// node to promote; after that promotion it catches up and every node holds
// all 40 values.
func TestLeaderThatLostItsWALTailDoesNotLead(t *testing.T) {
	c := startCluster(t, clusterOpts{sidecarFlags: failoverSidecarFlags()})
	const topic = "lost-tail"
	seg, cut, want := produceWithTailMark(t, c, topic, 1)

	c.node(1).killPair()
	if err := os.Truncate(seg, cut); err != nil {
		t.Fatal(err)
	}
	c.node(1).startPair()

	// It does not lead: a follower of no one, not ready, saying why.
	c.waitLeaderless(1, "holds more of the log")
	if log := c.node(1).side.Log(); !strings.Contains(log, "NOT LEADING") || !strings.Contains(log, "tandemctl --sidecar") {
		t.Errorf("node 1's sidecar did not log why it does not lead and what to run:\n%s", c.node(1).side.LogTail(40))
	}
	for _, id := range []int{2, 3} {
		if got := readValues(t, c, id, topic); !slices.Equal(got, want) {
			t.Fatalf("node %d holds %d values after node 1 came back short, want the 40 acknowledged", id, len(got))
		}
	}

	// The promotion the log asks for is clean, and node 1 catches up.
	out, err := c.promoteNode(2)
	if err != nil || !strings.Contains(out, "node 2 is leader in epoch 2") {
		t.Fatalf("tandemctl promote: %v\n%s", err, out)
	}
	c.waitRole(30*time.Second, 1, adminv1.Role_ROLE_FOLLOWER, 2, 2)
	finishWithFiveMore(t, c, topic, 2, want)
}

// TestWholeClusterRestartKeepsCommittedEntries: the whole cluster loses
// power, the leader's WAL comes back without its last 20 acknowledged
// entries, and the leader's pair starts first: no peer answers its start-up
// check, so it leads with the shorter log. When the followers start they
// know from their brokers' commit checkpoints that the 20 were committed,
// refuse to drop them and say so; they keep serving them. The operator
// does what the log says (stop node 1, promote node 2), and node 1 catches
// up when it returns: nothing acknowledged is lost.
func TestWholeClusterRestartKeepsCommittedEntries(t *testing.T) {
	c := startCluster(t, clusterOpts{sidecarFlags: failoverSidecarFlags()})
	const topic = "restart-short"
	seg, cut, want := produceWithTailMark(t, c, topic, 1)
	waitCommitCheckpoints(t, c, 1, 2, 3)

	for _, id := range []int{1, 2, 3} {
		c.node(id).killPair()
	}
	if err := os.Truncate(seg, cut); err != nil {
		t.Fatal(err)
	}
	c.node(1).startPair()
	c.waitRole(30*time.Second, 1, adminv1.Role_ROLE_LEADER, 1, 1) // nobody answered its check
	for _, id := range []int{2, 3} {
		c.node(id).startPair()
	}
	for _, id := range []int{2, 3} {
		waitRefusing(t, c, id)
		if got := readValues(t, c, id, topic); !slices.Equal(got, want) {
			t.Fatalf("node %d serves %d values after refusing to follow the short leader, want the 40 acknowledged", id, len(got))
		}
	}
	if st, err := c.status(1); err != nil || len(st.Isr) != 1 {
		t.Fatalf("node 1's ISR with both followers refusing: %v (%v), want only node 1", st.GetIsr(), err)
	}

	c.node(1).killPair()
	out, err := c.promoteNode(2)
	if err != nil || !strings.Contains(out, "node 2 is leader in epoch 2") {
		t.Fatalf("tandemctl promote: %v\n%s", err, out)
	}
	c.waitRole(30*time.Second, 3, adminv1.Role_ROLE_FOLLOWER, 2, 2)
	c.node(1).startPair()
	c.waitRole(30*time.Second, 1, adminv1.Role_ROLE_FOLLOWER, 2, 2)
	finishWithFiveMore(t, c, topic, 2, want)
}

// produceWithTailMark creates topic, produces 20 values ("a-0".."a-19") and
// 20 more ("b-..."), each batch acknowledged with acks=all and replicated to
// every node, and returns the leader's last WAL segment, the byte offset
// where the first 20 values' entries end in it (cutting the file there
// loses the second 20, as a power failure under --fsync interval can) and
// all 40 values.
func produceWithTailMark(t *testing.T, c *cluster, topic string, leader int) (seg string, cut int64, want []string) {
	t.Helper()
	c.createTopicRetry(topic)
	var others []int
	for _, n := range c.nodes {
		if n.id != leader {
			others = append(others, n.id)
		}
	}
	first := rangeValues("a", 0, 20)
	produceSync(t, kclient(t, c.kafkaAddrs(), plain), topic, first)
	c.caughtUp(30*time.Second, leader, others...)
	segs, err := filepath.Glob(filepath.Join(c.node(leader).dir, "data", "wal", "*.wal"))
	if err != nil || len(segs) == 0 {
		t.Fatalf("node %d's WAL segments: %v %v", leader, segs, err)
	}
	slices.Sort(segs)
	seg = segs[len(segs)-1]
	cut = walEntriesEnd(t, seg)
	tail := rangeValues("b", 0, 20)
	produceSync(t, kclient(t, c.kafkaAddrs(), plain), topic, tail)
	c.caughtUp(30*time.Second, leader, others...)
	return seg, cut, append(slices.Clone(first), tail...)
}

// waitCommitCheckpoints waits until the brokers of ids have saved (in
// their commit-checkpoint file, written about once a second) the commit
// point that node leader reports.
func waitCommitCheckpoints(t *testing.T, c *cluster, leader int, ids ...int) {
	t.Helper()
	st, err := c.status(leader)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		testutil.Eventually(t, 10*time.Second, func() error {
			data, err := os.ReadFile(filepath.Join(c.node(id).dir, "data", "commit-checkpoint"))
			if err != nil {
				return err
			}
			if got, _ := strconv.ParseUint(strings.TrimSpace(string(data)), 10, 64); got < st.CommitLsn {
				return fmt.Errorf("node %d's commit checkpoint is %d, want %d", id, got, st.CommitLsn)
			}
			return nil
		})
	}
}

// waitRefusing waits until node id reports that it refuses to drop
// committed entries, and checks that its log says what to do.
func waitRefusing(t *testing.T, c *cluster, id int) {
	t.Helper()
	testutil.Eventually(t, 30*time.Second, func() error {
		st, err := c.status(id)
		if err != nil {
			return err
		}
		if st.Ready || !strings.Contains(st.NotReadyReason, "refusing to drop entries that were committed") {
			return fmt.Errorf("node %d: ready %v, reason %q; want it refusing to drop committed entries", id, st.Ready, st.NotReadyReason)
		}
		return nil
	})
	if log := c.node(id).side.Log(); !strings.Contains(log, "To keep the entries: stop node") {
		t.Errorf("node %d's sidecar did not say what to do:\n%s", id, c.node(id).side.LogTail(20))
	}
}

// finishWithFiveMore produces 5 more values through every node (clients
// find the leader), waits until every node caught up with node leader,
// and checks that the replicas are identical (tandemctl verify) and that
// every node serves want and the 5.
func finishWithFiveMore(t *testing.T, c *cluster, topic string, leader int, want []string) {
	t.Helper()
	more := rangeValues("c", 0, 5)
	produceSync(t, kclient(t, c.kafkaAddrs(), plain), topic, more)
	want = append(slices.Clone(want), more...)
	var others []int
	for _, n := range c.nodes {
		if n.id != leader {
			others = append(others, n.id)
		}
	}
	c.caughtUp(60*time.Second, leader, others...)
	t.Log(c.mustVerify(leader, "--peers", c.peersArg(1, 2, 3)))
	for _, n := range c.nodes {
		if got := readValues(t, c, n.id, topic); !slices.Equal(got, want) {
			t.Fatalf("node %d holds %d values, want the %d acknowledged", n.id, len(got), len(want))
		}
	}
}

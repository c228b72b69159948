package e2e

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tandem-io/tandem/internal/testutil"
)

// describeGroup returns the broker's description of group.
func describeGroup(t *testing.T, adm *kadm.Client, group string) (kadm.DescribedGroup, error) {
	dg, err := adm.DescribeGroups(ctxTimeout(t, 5*time.Second), group)
	if err != nil {
		return kadm.DescribedGroup{}, err
	}
	g := dg[group]
	return g, g.Err
}

// TestGroupMemberCrash: a librdkafka member (kcat -G) and a kgo member share
// a 4-partition topic; the kcat process is killed with SIGKILL (no
// LeaveGroup), and once its session times out the coordinator gives all its
// partitions to the kgo member. The two clients share only the "range"
// assignor, so the coordinator must pick the protocol every member supports.
func TestGroupMemberCrash(t *testing.T) {
	b := startBroker(t)
	const topic, group = "crashy-members", "crashy-group"
	b.createTopic(topic, 4)
	all := []int32{0, 1, 2, 3}
	adm := b.admin()

	var ma memberAssignment
	a := b.client(append(ma.opts(topic), kgo.ConsumerGroup(group), kgo.ConsumeTopics(topic),
		kgo.Balancers(kgo.CooperativeStickyBalancer(), kgo.RangeBalancer()),
		kgo.SessionTimeout(30*time.Second), kgo.HeartbeatInterval(500*time.Millisecond))...)
	pollLoop(t, a)
	testutil.Eventually(t, 20*time.Second, func() error {
		if got := ma.get(); !slices.Equal(got, all) {
			return fmt.Errorf("kgo member alone has %v, want %v", got, all)
		}
		return nil
	})

	kc := testutil.Start(t, testutil.ProcessConfig{
		Name: "kcat-member",
		Path: "kcat",
		Args: []string{"-b", b.Addr, "-G", group, "-q",
			"-X", "session.timeout.ms=6000", "-X", "heartbeat.interval.ms=500",
			"-X", "partition.assignment.strategy=range", topic},
	})
	testutil.Eventually(t, 30*time.Second, func() error {
		g, err := describeGroup(t, adm, group)
		if err != nil {
			return err
		}
		if g.State != "Stable" || len(g.Members) != 2 || g.Protocol != "range" {
			return fmt.Errorf("after kcat joined: state %q, protocol %q, %d members; want Stable, range, 2 (kgo member has %v)", g.State, g.Protocol, len(g.Members), ma.get())
		}
		if got := ma.get(); len(got) == 0 || len(got) == 4 {
			return fmt.Errorf("kgo member has %v; want a share of %v", got, all)
		}
		return nil
	})

	if err := kc.Kill(); err != nil {
		t.Fatalf("kill kcat: %v", err)
	}
	killed := time.Now()
	testutil.Eventually(t, 40*time.Second, func() error {
		if got := ma.get(); !slices.Equal(got, all) {
			return fmt.Errorf("%v after SIGKILL of the kcat member (session.timeout.ms=6000): kgo member has %v, want %v",
				time.Since(killed).Round(time.Second), got, all)
		}
		return nil
	})
	g, err := describeGroup(t, adm, group)
	if err != nil || len(g.Members) != 1 {
		t.Errorf("after the crashed member expired: %d members (err %v), want 1", len(g.Members), err)
	}
	b.requireAlive()
}

// TestGroupSurvivesBrokerRestart: a kgo group consumer (auto-commit) keeps
// consuming while the broker is killed and restarted, and reads every
// record (at least once). Group membership is stored in the WAL, so, as
// with Kafka, the restarted coordinator knows the member: it goes on
// heartbeating in its generation and keeps its partitions, with no
// rebalance (no partitions lost, revoked or assigned again).
func TestGroupSurvivesBrokerRestart(t *testing.T) {
	b := startBroker(t)
	const topic, group = "restart-group", "restart-group-1"
	b.createTopic(topic, 2)
	prod := b.client(kgo.RetryTimeout(60 * time.Second))
	produceSync(t, prod, topic, seqValues("r-", 1000))

	var rebalances groupEvents
	cons := b.client(append(rebalances.opts(), kgo.ConsumerGroup(group), kgo.ConsumeTopics(topic),
		kgo.AutoCommitInterval(200*time.Millisecond), kgo.RetryTimeout(60*time.Second))...)
	r := startGroupReader(t, cons)
	r.waitFor(t, 30*time.Second, seqValues("r-", 300))
	b.kill()
	b.restart()
	produceSync(t, prod, topic, seqValues("s-", 1000))

	r.waitFor(t, 60*time.Second, append(seqValues("r-", 1000), seqValues("s-", 1000)...))
	testutil.Eventually(t, 20*time.Second, func() error {
		g, err := describeGroup(t, b.admin(), group)
		if err != nil {
			return err
		}
		if g.State != "Stable" || len(g.Members) != 1 {
			return fmt.Errorf("group after the restart: state %q with %d members, want Stable with 1", g.State, len(g.Members))
		}
		return nil
	})
	if got := rebalances.String(); got != "assigned 2 partitions" {
		t.Fatalf("the consumer's partitions across the restart: %s; want them assigned once and kept", got)
	}
	b.requireNoPanic()
}

// TestGroupKeepsMembersAcrossFailover: a kgo group consumer reads from a
// three-node cluster with etcd elections, and the leader, which is the
// group coordinator, is killed (SIGKILL of its broker and sidecar). A
// follower is elected; it has the group's membership from the WAL and
// knows the member, which carries on in its generation with its partition
// (no rebalance, as when a Kafka coordinator moves) and reads everything
// produced before and after.
func TestGroupKeepsMembersAcrossFailover(t *testing.T) {
	c, _, old := startElectableCluster(t)
	const topic, group = "failover-members", "failover-members-1"
	c.createTopicRetry(topic)
	prod := kclient(t, c.kafkaAddrs(), kgo.RetryTimeout(60*time.Second))
	produceSync(t, prod, topic, seqValues("a-", 200))

	var rebalances groupEvents
	cons, err := kgo.NewClient(append(rebalances.opts(), kgo.SeedBrokers(c.kafkaAddrs()...),
		kgo.ConsumerGroup(group), kgo.ConsumeTopics(topic), kgo.AutoCommitInterval(200*time.Millisecond),
		kgo.FetchMaxWait(500*time.Millisecond), kgo.RetryTimeout(60*time.Second))...)
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close()
	r := startGroupReader(t, cons)
	r.waitFor(t, 30*time.Second, seqValues("a-", 200))

	c.node(old).killPair()
	leader, _ := c.waitLeader(60 * time.Second)
	if leader == old {
		t.Fatalf("node %d leads while killed", old)
	}
	produceSync(t, prod, topic, seqValues("b-", 200))
	r.waitFor(t, 60*time.Second, append(seqValues("a-", 200), seqValues("b-", 200)...))

	adm := kadm.NewClient(kclient(t, []string{c.node(leader).kafka}))
	testutil.Eventually(t, 20*time.Second, func() error {
		g, err := describeGroup(t, adm, group)
		if err != nil {
			return err
		}
		if g.State != "Stable" || len(g.Members) != 1 {
			return fmt.Errorf("group on node %d: state %q with %d members, want Stable with 1", leader, g.State, len(g.Members))
		}
		return nil
	})
	if got := rebalances.String(); got != "assigned 1 partitions" {
		// franz-go sometimes retries its heartbeat at the killed
		// coordinator's address, and a refused dial ends its session
		// on the client side (its issue #652; docs/operations.md says
		// more): it rejoins at once. Only that is the client's doing;
		// anything else (UNKNOWN_MEMBER_ID from a coordinator that lost
		// the member, a revocation) fails the test.
		if !rebalances.endedOnlyDialing(c.node(old).kafka) {
			t.Fatalf("the consumer's partitions across the failover: %s; want one assignment, kept", got)
		}
		t.Logf("franz-go ended its own session dialing the killed coordinator (its issue #652), then rejoined: %s", got)
	}
}

// groupReader polls a group consumer in the background and counts each
// value it reads. It also notes every rewind: a partition's record at or
// below an offset already read there, which is where a member that lost
// its session (or its coordinator's committed offsets) starts again.
type groupReader struct {
	mu      sync.Mutex
	seen    map[string]int
	last    map[int32]int64 // partition -> the offset after the record read last
	high    map[int32]int64 // partition -> the offset after the highest read
	rewinds []string
	// dataLoss lists the times franz-go reported lost data (its
	// ErrDataLoss: the log no longer holds an offset it had consumed up
	// to), which a consumer reading only committed records must never
	// see.
	dataLoss []string
}

func startGroupReader(t *testing.T, cl *kgo.Client) *groupReader {
	r := &groupReader{seen: map[string]int{}, last: map[int32]int64{}, high: map[int32]int64{}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			fs := cl.PollRecords(ctx, 50)
			if fs.IsClientClosed() {
				return
			}
			r.mu.Lock()
			for _, fe := range fs.Errors() {
				var dl *kgo.ErrDataLoss
				if errors.As(fe.Err, &dl) {
					r.dataLoss = append(r.dataLoss, time.Now().UTC().Format("15:04:05.000 ")+dl.Error())
				}
			}
			for _, rec := range fs.Records() {
				r.seen[string(rec.Value)]++
				p := rec.Partition
				if last, ok := r.last[p]; ok && rec.Offset < last {
					r.rewinds = append(r.rewinds, fmt.Sprintf("%s partition %d back from %d to %d (%d records)",
						time.Now().UTC().Format("15:04:05.000"), p, r.high[p], rec.Offset, r.high[p]-rec.Offset))
				}
				r.last[p] = rec.Offset + 1
				r.high[p] = max(r.high[p], rec.Offset+1)
			}
			r.mu.Unlock()
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	return r
}

// waitFor waits until every value of want was read at least once.
func (r *groupReader) waitFor(t *testing.T, timeout time.Duration, want []string) {
	t.Helper()
	testutil.Eventually(t, timeout, func() error {
		r.mu.Lock()
		defer r.mu.Unlock()
		var missing []string
		for _, v := range want {
			if r.seen[v] == 0 {
				missing = append(missing, v)
			}
		}
		if len(missing) > 0 {
			return fmt.Errorf("the group consumer misses %d of %d records, e.g. %v", len(missing), len(want), missing[:min(5, len(missing))])
		}
		return nil
	})
}

// lostData returns the data losses franz-go reported, one line each.
func (r *groupReader) lostData() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.dataLoss...)
}

// rewound returns the rewinds seen, one line each.
func (r *groupReader) rewound() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.rewinds...)
}

// counts returns how many distinct values were read, and how many of them
// more than once.
func (r *groupReader) counts() (distinct, again int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, n := range r.seen {
		if n > 1 {
			again++
		}
	}
	return len(r.seen), again
}

// groupEvents counts a kgo group consumer's rebalance callbacks and keeps
// the errors that ended its group sessions (kgo calls OnPartitionsLost
// after each of them), so that a summary says why a member lost its
// partitions.
type groupEvents struct {
	mu                      sync.Mutex
	assigned, revoked, lost []int // partitions per callback
	manageErrs              []string
}

// OnGroupManageError implements kgo.HookGroupManageError.
func (e *groupEvents) OnGroupManageError(err error) {
	e.mu.Lock()
	e.manageErrs = append(e.manageErrs, time.Now().UTC().Format("15:04:05.000")+" "+err.Error())
	e.mu.Unlock()
}

func (e *groupEvents) opts() []kgo.Opt {
	count := func(dst *[]int) func(context.Context, *kgo.Client, map[string][]int32) {
		return func(_ context.Context, _ *kgo.Client, m map[string][]int32) {
			n := 0
			for _, ps := range m {
				n += len(ps)
			}
			e.mu.Lock()
			*dst = append(*dst, n)
			e.mu.Unlock()
		}
	}
	return []kgo.Opt{
		kgo.OnPartitionsAssigned(count(&e.assigned)),
		kgo.OnPartitionsRevoked(count(&e.revoked)),
		kgo.OnPartitionsLost(count(&e.lost)),
		kgo.WithHooks(e),
	}
}

// endedOnlyDialing reports whether every session the client ended, it
// ended on a refused dial of addr (franz-go retrying a request at a killed
// coordinator), with nothing revoked.
func (e *groupEvents) endedOnlyDialing(addr string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.manageErrs) == 0 || len(e.revoked) > 0 || len(e.lost) > len(e.manageErrs) {
		return false
	}
	for _, m := range e.manageErrs {
		if !strings.Contains(m, "unable to dial: dial tcp "+addr+": connect: connection refused") {
			return false
		}
	}
	return true
}

func (e *groupEvents) String() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var parts []string
	for _, a := range e.assigned {
		parts = append(parts, fmt.Sprintf("assigned %d partitions", a))
	}
	for _, r := range e.revoked {
		parts = append(parts, fmt.Sprintf("revoked %d", r))
	}
	for _, l := range e.lost {
		parts = append(parts, fmt.Sprintf("lost %d", l))
	}
	for _, m := range e.manageErrs {
		parts = append(parts, "session ended: "+m)
	}
	if len(parts) == 0 {
		return "no callbacks"
	}
	return strings.Join(collapseRuns(parts), ", ")
}

// collapseRuns writes a run of equal strings once, with its length (a
// franz-go member whose coordinator is down may start thousands of empty
// sessions in a few seconds).
func collapseRuns(parts []string) []string {
	var out []string
	for i := 0; i < len(parts); {
		j := i + 1
		for j < len(parts) && parts[j] == parts[i] {
			j++
		}
		if j-i > 1 {
			out = append(out, fmt.Sprintf("%s (%d times in a row)", parts[i], j-i))
		} else {
			out = append(out, parts[i])
		}
		i = j
	}
	return out
}

// TestAlterConfigsAndDeleteGroups: IncrementalAlterConfigs sets and removes
// topic overrides and refuses unknown names and bad values; DeleteGroups
// removes an empty group with its offsets and refuses a group with members.
// Both outcomes survive a restart.
func TestAlterConfigsAndDeleteGroups(t *testing.T) {
	b := startBroker(t)
	adm := b.admin()
	const topic = "alter"
	if _, err := adm.CreateTopic(ctxTimeout(t, 10*time.Second), 1, 1, map[string]*string{"retention.ms": strp("3600000")}, topic); err != nil {
		t.Fatalf("create: %v", err)
	}

	alter := func(cfgs ...kadm.AlterConfig) error {
		t.Helper()
		resp, err := adm.AlterTopicConfigs(ctxTimeout(t, 10*time.Second), cfgs, topic)
		if err != nil {
			return err
		}
		if len(resp) != 1 {
			t.Fatalf("IncrementalAlterConfigs: %d responses, want 1", len(resp))
		}
		return resp[0].Err
	}
	describe := func() kadm.ResourceConfig {
		t.Helper()
		rcs, err := adm.DescribeTopicConfigs(ctxTimeout(t, 10*time.Second), topic)
		if err != nil || len(rcs) != 1 || rcs[0].Err != nil {
			t.Fatalf("DescribeConfigs: %v %+v", err, rcs)
		}
		return rcs[0]
	}

	if err := alter(kadm.AlterConfig{Op: kadm.SetConfig, Name: "retention.ms", Value: strp("120000")},
		kadm.AlterConfig{Op: kadm.SetConfig, Name: "cleanup.policy", Value: strp("delete")}); err != nil {
		t.Fatalf("set retention.ms: %v", err)
	}
	if v, _, _ := configValue(describe(), "retention.ms"); v != "120000" {
		t.Errorf("retention.ms after set = %q, want 120000", v)
	}
	for _, bad := range []kadm.AlterConfig{
		{Op: kadm.SetConfig, Name: "no.such.config", Value: strp("1")},
		{Op: kadm.SetConfig, Name: "retention.ms", Value: strp("soon")},
		{Op: kadm.SetConfig, Name: "compression.type", Value: strp("banana")},
	} {
		if err := alter(bad); !errors.Is(err, kerr.InvalidConfig) {
			t.Errorf("set %s=%s: error %v, want INVALID_CONFIG", bad.Name, *bad.Value, err)
		}
	}
	if v, _, _ := configValue(describe(), "retention.ms"); v != "120000" {
		t.Errorf("retention.ms after refused changes = %q, want 120000 (unchanged)", v)
	}

	// An empty group with offsets, and a group with a live member.
	offs := kadm.Offsets{}
	offs.Add(kadm.Offset{Topic: topic, Partition: 0, At: 0, LeaderEpoch: -1})
	if err := adm.CommitAllOffsets(ctxTimeout(t, 10*time.Second), "doomed", offs); err != nil {
		t.Fatalf("commit for group doomed: %v", err)
	}
	produceSync(t, b.client(), topic, []string{"x"})
	live := b.client(kgo.ConsumerGroup("alive"), kgo.ConsumeTopics(topic))
	consumeN(t, live, 1, 30*time.Second)

	dr, err := adm.DeleteGroups(ctxTimeout(t, 10*time.Second), "doomed", "alive")
	if err != nil {
		t.Fatalf("DeleteGroups: %v", err)
	}
	if err := dr["doomed"].Err; err != nil {
		t.Errorf("DeleteGroups doomed (empty): %v", err)
	}
	if err := dr["alive"].Err; !errors.Is(err, kerr.NonEmptyGroup) {
		t.Errorf("DeleteGroups alive (one member): error %v, want NON_EMPTY_GROUP", err)
	}

	// Remove the override, then restart: the state must be as left.
	if err := alter(kadm.AlterConfig{Op: kadm.DeleteConfig, Name: "retention.ms"}); err != nil {
		t.Fatalf("delete retention.ms override: %v", err)
	}
	check := func(when string) {
		t.Helper()
		if v, _, _ := configValue(describe(), "retention.ms"); v != "604800000" {
			t.Errorf("%s: retention.ms = %q, want the default 604800000 after deleting the override", when, v)
		}
		fo, err := adm.FetchOffsets(ctxTimeout(t, 10*time.Second), "doomed")
		if err != nil && !errors.Is(err, kerr.GroupIDNotFound) {
			t.Fatalf("%s: OffsetFetch doomed: %v", when, err)
		}
		if o, ok := fo.Lookup(topic, 0); ok && o.Err == nil && o.At >= 0 {
			t.Errorf("%s: deleted group doomed still has offset %d", when, o.At)
		}
		lg, err := adm.ListGroups(ctxTimeout(t, 10*time.Second))
		if err != nil {
			t.Fatalf("%s: ListGroups: %v", when, err)
		}
		if _, ok := lg["doomed"]; ok {
			t.Errorf("%s: ListGroups still lists the deleted group doomed", when)
		}
	}
	check("before restart")
	live.Close()
	b.kill()
	b.restart()
	check("after restart")
	b.requireNoPanic()
}

// TestOffsetCommitMetadata: the metadata string committed with an offset
// comes back from OffsetFetch, also after a restart (tools keep cursors and
// hostnames there).
func TestOffsetCommitMetadata(t *testing.T) {
	b := startBroker(t)
	const topic = "meta"
	b.createTopic(topic, 2)
	adm := b.admin()
	offs := kadm.Offsets{}
	offs.Add(kadm.Offset{Topic: topic, Partition: 0, At: 3, LeaderEpoch: -1, Metadata: "cursor-42"})
	offs.Add(kadm.Offset{Topic: topic, Partition: 1, At: 0, LeaderEpoch: -1, Metadata: ""})
	if err := adm.CommitAllOffsets(ctxTimeout(t, 10*time.Second), "meta-group", offs); err != nil {
		t.Fatalf("commit: %v", err)
	}
	check := func(when string) {
		t.Helper()
		fo, err := adm.FetchOffsets(ctxTimeout(t, 10*time.Second), "meta-group")
		if err != nil {
			t.Fatalf("%s: OffsetFetch: %v", when, err)
		}
		for p, want := range map[int32]kadm.Offset{0: {At: 3, Metadata: "cursor-42"}, 1: {At: 0, Metadata: ""}} {
			o, ok := fo.Lookup(topic, p)
			if !ok || o.Err != nil || o.At != want.At || o.Metadata != want.Metadata {
				t.Errorf("%s: partition %d: %+v (found %v), want offset %d metadata %q", when, p, o, ok, want.At, want.Metadata)
			}
		}
	}
	check("before restart")
	b.kill()
	b.restart()
	check("after restart")
}

// count returns how many times v was read.
func (r *groupReader) count(v string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.seen[v]
}

package group_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tandem-io/tandem/broker"
)

// ownership records which consumer holds each partition, from franz-go's
// assignment callbacks, and every time a partition was handed to a
// consumer while another one still held it.
type ownership struct {
	mu      sync.Mutex
	owner   map[int32]string
	doubles []string
	seen    map[string]int // record value -> times consumed
}

func (o *ownership) assigned(name string, ps []int32) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, p := range ps {
		if prev, ok := o.owner[p]; ok && prev != name {
			o.doubles = append(o.doubles, fmt.Sprintf("partition %d assigned to %s while %s held it", p, name, prev))
		}
		o.owner[p] = name
	}
}

func (o *ownership) released(name string, ps []int32) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, p := range ps {
		if o.owner[p] == name {
			delete(o.owner, p)
		}
	}
}

func (o *ownership) held() map[string][]int32 {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := map[string][]int32{}
	for p, name := range o.owner {
		out[name] = append(out[name], p)
	}
	for _, ps := range out {
		slices.Sort(ps)
	}
	return out
}

func (o *ownership) distinct() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.seen)
}

// franz-go consumers in a consumer-protocol group (KIP-848,
// kgo.ServerSideBalancer) against the real broker: the coordinator assigns
// the partitions, a member leaving hands its partitions to the others,
// no partition is ever held by two consumers at once, offsets are
// committed with member epochs, and a broker restart keeps the members and
// their epochs.
func TestFranzGoConsumerProtocolGroup(t *testing.T) {
	dir := t.TempDir()
	fast := func(c *broker.Config) {
		c.ConsumerHeartbeatInterval = 200 * time.Millisecond
		c.ConsumerSessionTimeout = 5 * time.Second
	}
	addr, stop := startBrokerWith(t, dir, "127.0.0.1:0", fast)
	ctx, cancel := context.WithTimeout(t.Context(), 120*time.Second)
	defer cancel()

	admCl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.DefaultProduceTopic("orders"))
	if err != nil {
		t.Fatal(err)
	}
	defer admCl.Close()
	adm := kadm.NewClient(admCl)
	if _, err := adm.CreateTopic(ctx, 6, 1, nil, "orders"); err != nil {
		t.Fatal(err)
	}
	produced := 0
	produce := func(n int) {
		t.Helper()
		for i := 0; i < n; i++ {
			admCl.Produce(ctx, &kgo.Record{Key: []byte(fmt.Sprint(produced)), Value: []byte(fmt.Sprint(produced))}, nil)
			produced++
		}
		if err := admCl.Flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
	produce(600)

	own := &ownership{owner: map[int32]string{}, seen: map[string]int{}}
	type consumer struct {
		name string
		cl   *kgo.Client
		stop context.CancelFunc
		done chan struct{}
	}
	start := func(name string) *consumer {
		c := &consumer{name: name, done: make(chan struct{})}
		commitRevoked := func(ctx context.Context, cl *kgo.Client, m map[string][]int32) {
			if err := cl.CommitMarkedOffsets(ctx); err != nil {
				t.Logf("%s: commit on revoke: %v", name, err)
			}
			own.released(name, m["orders"])
		}
		c.cl, err = kgo.NewClient(kgo.SeedBrokers(addr), kgo.ClientID(name),
			kgo.ConsumerGroup("kip848"), kgo.ConsumeTopics("orders"), kgo.ServerSideBalancer(),
			kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
			kgo.AutoCommitMarks(), kgo.AutoCommitInterval(100*time.Millisecond),
			kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, m map[string][]int32) {
				own.assigned(name, m["orders"])
			}),
			kgo.OnPartitionsRevoked(commitRevoked),
			kgo.OnPartitionsLost(func(_ context.Context, _ *kgo.Client, m map[string][]int32) {
				own.released(name, m["orders"])
			}))
		if err != nil {
			t.Fatal(err)
		}
		var pollCtx context.Context
		pollCtx, c.stop = context.WithCancel(ctx)
		go func() {
			defer close(c.done)
			for pollCtx.Err() == nil {
				fs := c.cl.PollFetches(pollCtx)
				fs.EachRecord(func(r *kgo.Record) {
					own.mu.Lock()
					own.seen[string(r.Value)]++
					own.mu.Unlock()
					c.cl.MarkCommitRecords(r)
				})
			}
		}()
		return c
	}
	closeConsumer := func(c *consumer) {
		c.stop()
		<-c.done
		c.cl.Close() // leaves the group (epoch -1) after committing
	}
	describe := func() kadm.DescribedConsumerGroup {
		dg, err := adm.DescribeConsumerGroups(ctx, "kip848")
		if err != nil {
			return kadm.DescribedConsumerGroup{}
		}
		return dg["kip848"]
	}
	// stable waits until the group is Stable with n members, each holding
	// its whole target, and returns the member ids and the group epoch.
	stable := func(n, perMember int) ([]string, int32) {
		t.Helper()
		var ids []string
		var epoch int32
		waitUntil(t, 60*time.Second, fmt.Sprintf("a stable group of %d members with %d partitions each", n, perMember), func() bool {
			d := describe()
			if d.State != "Stable" || len(d.Members) != n {
				return false
			}
			ids = ids[:0]
			for _, m := range d.Members {
				if m.MemberEpoch != d.AssignmentEpoch || len(m.Assignment) != 1 || len(m.Assignment["orders"]) != perMember {
					return false
				}
				ids = append(ids, m.MemberID)
			}
			held := own.held()
			if len(held) != n {
				return false
			}
			for _, ps := range held {
				if len(ps) != perMember {
					return false
				}
			}
			epoch = d.Epoch
			return true
		})
		slices.Sort(ids)
		return ids, epoch
	}
	caughtUp := func() {
		t.Helper()
		waitUntil(t, 60*time.Second, "every record consumed and committed", func() bool {
			if own.distinct() != produced {
				return false
			}
			lag, err := adm.Lag(ctx, "kip848")
			return err == nil && lag["kip848"].Lag.Total() == 0
		})
	}

	c1, c2, c3 := start("c1"), start("c2"), start("c3")
	stable(3, 2)
	caughtUp()

	// What older tools see: the group's type and its members.
	lg, err := adm.ListGroups(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if l := lg["kip848"]; l.ProtocolType != "consumer" {
		t.Fatalf("ListGroups: %+v, want protocol type consumer", l)
	}
	dg, err := adm.DescribeGroups(ctx, "kip848")
	if err != nil {
		t.Fatal(err)
	}
	if d := dg["kip848"]; d.ProtocolType != "consumer" || d.Protocol != "uniform" || len(d.Members) != 3 {
		t.Fatalf("DescribeGroups: type %q protocol %q, %d members; want consumer, uniform, 3", d.ProtocolType, d.Protocol, len(d.Members))
	}
	total := 0
	for _, m := range dg["kip848"].Members {
		a, ok := m.Assigned.AsConsumer()
		if !ok || len(a.Topics) != 1 || a.Topics[0].Topic != "orders" {
			t.Fatalf("DescribeGroups member %s assignment %+v", m.MemberID, a)
		}
		total += len(a.Topics[0].Partitions)
	}
	if total != 6 {
		t.Fatalf("DescribeGroups shows %d partitions assigned, want 6", total)
	}

	// c3 leaves: its two partitions go to the others, with no overlap.
	closeConsumer(c3)
	produce(300)
	stable(2, 3)
	caughtUp()

	// The broker restarts on the same address: the group is loaded with
	// its members and epochs, so c1 and c2 carry on without rejoining.
	before, epochBefore := stable(2, 3)
	stop()
	addr2, stop2 := startBrokerWith(t, dir, addr, fast)
	defer stop2()
	if addr2 != addr {
		t.Fatalf("restarted on %s, want %s", addr2, addr)
	}
	produce(300)
	caughtUp()
	after, epochAfter := stable(2, 3)
	if !slices.Equal(before, after) || epochAfter != epochBefore {
		t.Fatalf("after a restart the group has members %v at epoch %d; before it had %v at %d", after, epochAfter, before, epochBefore)
	}

	closeConsumer(c1)
	closeConsumer(c2)
	waitUntil(t, 30*time.Second, "the group empty", func() bool { return describe().State == "Empty" })
	own.mu.Lock()
	defer own.mu.Unlock()
	if len(own.doubles) > 0 {
		t.Fatalf("partitions held by two consumers at once: %v", own.doubles)
	}
	if len(own.seen) != produced {
		t.Fatalf("consumed %d distinct records, want %d", len(own.seen), produced)
	}
	dups := 0
	for _, n := range own.seen {
		dups += n - 1
	}
	t.Logf("%d records consumed through three hand-overs and a restart, %d twice", produced, dups)
}

// Static members (kgo.InstanceID) of a consumer-protocol group: a consumer
// that closes leaves with epoch -2 and its partitions wait for it; started
// again with the same instance id, it gets them back with no new group
// epoch, and the other member never loses anything.
func TestFranzGoConsumerProtocolStaticMembers(t *testing.T) {
	addr, _ := startBrokerWith(t, t.TempDir(), "127.0.0.1:0", func(c *broker.Config) {
		c.ConsumerHeartbeatInterval = 200 * time.Millisecond
		c.ConsumerSessionTimeout = 20 * time.Second
	})
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	admCl, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		t.Fatal(err)
	}
	defer admCl.Close()
	adm := kadm.NewClient(admCl)
	if _, err := adm.CreateTopic(ctx, 4, 1, nil, "events"); err != nil {
		t.Fatal(err)
	}
	own := &ownership{owner: map[int32]string{}, seen: map[string]int{}}
	lost := map[string]int{}
	start := func(instance string) *kgo.Client {
		cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ConsumerGroup("static"), kgo.ConsumeTopics("events"),
			kgo.ServerSideBalancer(), kgo.InstanceID(instance),
			kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, m map[string][]int32) { own.assigned(instance, m["events"]) }),
			kgo.OnPartitionsRevoked(func(_ context.Context, _ *kgo.Client, m map[string][]int32) { own.released(instance, m["events"]) }),
			kgo.OnPartitionsLost(func(_ context.Context, _ *kgo.Client, m map[string][]int32) {
				own.mu.Lock()
				lost[instance] += len(m["events"])
				own.mu.Unlock()
				own.released(instance, m["events"])
			}))
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			for {
				if fs := cl.PollFetches(ctx); fs.IsClientClosed() || ctx.Err() != nil {
					return
				}
			}
		}()
		return cl
	}
	type view struct {
		epoch   int32
		members map[string][]int32 // instance -> partitions
	}
	describe := func() view {
		dg, err := adm.DescribeConsumerGroups(ctx, "static")
		if err != nil || dg["static"].Err != nil {
			return view{}
		}
		v := view{epoch: dg["static"].Epoch, members: map[string][]int32{}}
		for _, m := range dg["static"].Members {
			if m.InstanceID != nil {
				ps := slices.Collect(func(yield func(int32) bool) {
					for p := range m.Assignment["events"] {
						if !yield(p) {
							return
						}
					}
				})
				slices.Sort(ps)
				v.members[*m.InstanceID] = ps
			}
		}
		return v
	}
	a, b := start("a"), start("b")
	defer a.Close()
	var before view
	waitUntil(t, 30*time.Second, "both static members with two partitions", func() bool {
		before = describe()
		held := own.held()
		return len(before.members["a"]) == 2 && len(before.members["b"]) == 2 && len(held["a"]) == 2 && len(held["b"]) == 2
	})
	b.Close() // leaves with epoch -2: its partitions wait for it
	waitUntil(t, 10*time.Second, "b's partitions released by the client", func() bool { return len(own.held()["b"]) == 0 })
	if v := describe(); v.epoch != before.epoch || !slices.Equal(v.members["b"], before.members["b"]) {
		t.Fatalf("after b left: epoch %d, b holds %v; want epoch %d and b's %v kept", v.epoch, v.members["b"], before.epoch, before.members["b"])
	}
	b = start("b")
	defer b.Close()
	waitUntil(t, 30*time.Second, "b back with its partitions", func() bool {
		return slices.Equal(own.held()["b"], before.members["b"])
	})
	if v := describe(); v.epoch != before.epoch || !slices.Equal(v.members["a"], before.members["a"]) {
		t.Fatalf("after b came back: epoch %d, a holds %v; want epoch %d and a's %v", v.epoch, v.members["a"], before.epoch, before.members["a"])
	}
	own.mu.Lock()
	defer own.mu.Unlock()
	if len(own.doubles) > 0 || lost["a"] > 0 {
		t.Fatalf("doubles %v, a lost %d partitions", own.doubles, lost["a"])
	}
}

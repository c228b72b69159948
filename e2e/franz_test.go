package e2e

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tandem-io/tandem/internal/testutil"
)

// TestFranzGoProduceConsumeGroup produces with franz-go's default producer
// (idempotent, acks=all) and consumes with a kgo consumer group that commits;
// a second group member started later resumes after the committed offsets.
func TestFranzGoProduceConsumeGroup(t *testing.T) {
	b := startBroker(t)
	const topic, group = "kgo-group", "kgo-group-1"
	b.createTopic(topic, 1)

	prod := b.client() // defaults: idempotent producer, acks=all
	first := seqValues("kgo-", 500)
	recs := produceSync(t, prod, topic, first)
	for i, r := range recs {
		if r.Partition != 0 || r.Offset != int64(i) {
			t.Fatalf("record %d acknowledged at %d/%d, want partition 0 offset %d", i, r.Partition, r.Offset, i)
		}
	}

	cons := b.client(kgo.ConsumerGroup(group), kgo.ConsumeTopics(topic), kgo.DisableAutoCommit())
	got := consumeN(t, cons, len(first), 30*time.Second)
	requireSameValues(t, "group consumer", values(got), first)
	if err := cons.CommitUncommittedOffsets(ctxTimeout(t, 15*time.Second)); err != nil {
		t.Fatalf("commit offsets: %v", err)
	}
	cons.Close()

	committed, err := b.admin().FetchOffsets(ctxTimeout(t, 15*time.Second), group)
	if err != nil {
		t.Fatalf("OffsetFetch %s: %v", group, err)
	}
	if o, ok := committed.Lookup(topic, 0); !ok || o.Err != nil || o.At != int64(len(first)) {
		t.Fatalf("committed offset for %s[0] = %+v (found %v), want %d", topic, o, ok, len(first))
	}

	more := seqValues("kgo-more-", 50)
	produceSync(t, prod, topic, more)
	cons2 := b.client(kgo.ConsumerGroup(group), kgo.ConsumeTopics(topic), kgo.DisableAutoCommit())
	got2 := consumeN(t, cons2, len(more), 30*time.Second)
	requireSameValues(t, "second group member (resumes after the commit)", values(got2), more)
	if got2[0].Offset != int64(len(first)) {
		t.Fatalf("second member started at offset %d, want %d", got2[0].Offset, len(first))
	}
	b.requireAlive()
}

// memberAssignment tracks a kgo group member's partitions through its
// OnPartitionsAssigned / Revoked / Lost callbacks (the default cooperative
// sticky balancer assigns and revokes incrementally).
type memberAssignment struct {
	mu    sync.Mutex
	parts map[int32]bool
}

func (m *memberAssignment) opts(topic string) []kgo.Opt {
	m.parts = map[int32]bool{}
	update := func(add bool) func(context.Context, *kgo.Client, map[string][]int32) {
		return func(_ context.Context, _ *kgo.Client, ps map[string][]int32) {
			m.mu.Lock()
			defer m.mu.Unlock()
			for _, p := range ps[topic] {
				if add {
					m.parts[p] = true
				} else {
					delete(m.parts, p)
				}
			}
		}
	}
	return []kgo.Opt{
		kgo.OnPartitionsAssigned(update(true)),
		kgo.OnPartitionsRevoked(update(false)),
		kgo.OnPartitionsLost(update(false)),
	}
}

func (m *memberAssignment) get() []int32 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Sorted(maps.Keys(m.parts))
}

// pollLoop keeps a group member fetching (as an application would) until the
// test ends or the client is closed.
func pollLoop(t *testing.T, cl *kgo.Client) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			fs := cl.PollFetches(ctx)
			if fs.IsClientClosed() {
				return
			}
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
}

// TestFranzGoGroupRebalance: two kgo members of one group share a
// 4-partition topic; when one leaves (Close sends LeaveGroup) the other
// takes over every partition, well before the session timeout would have
// expired the leaver.
func TestFranzGoGroupRebalance(t *testing.T) {
	b := startBroker(t)
	const topic, group = "rebalance", "rebalance-1"
	b.createTopic(topic, 4)
	all := []int32{0, 1, 2, 3}

	// A long session timeout: only LeaveGroup can make the rebalance quick.
	groupOpts := []kgo.Opt{
		kgo.ConsumerGroup(group), kgo.ConsumeTopics(topic),
		kgo.SessionTimeout(45 * time.Second), kgo.HeartbeatInterval(500 * time.Millisecond),
	}
	var ma, mb memberAssignment
	a := b.client(append(slices.Clone(groupOpts), append(ma.opts(topic), kgo.ClientID("member-a"))...)...)
	pollLoop(t, a)
	testutil.Eventually(t, 20*time.Second, func() error {
		if got := ma.get(); !slices.Equal(got, all) {
			return fmt.Errorf("member A alone has partitions %v, want %v", got, all)
		}
		return nil
	})

	bm := b.client(append(slices.Clone(groupOpts), append(mb.opts(topic), kgo.ClientID("member-b"))...)...)
	pollLoop(t, bm)
	testutil.Eventually(t, 30*time.Second, func() error {
		pa, pb := ma.get(), mb.get()
		if len(pa) == 0 || len(pb) == 0 {
			return fmt.Errorf("after B joined: A has %v, B has %v; want both non-empty", pa, pb)
		}
		union := slices.Sorted(slices.Values(append(slices.Clone(pa), pb...)))
		if !slices.Equal(union, all) {
			return fmt.Errorf("after B joined: A has %v, B has %v; want disjoint sets covering %v", pa, pb, all)
		}
		return nil
	})

	// The broker's view agrees: two members, all partitions assigned.
	adm := b.admin()
	testutil.Eventually(t, 10*time.Second, func() error {
		dg, err := adm.DescribeGroups(ctxTimeout(t, 5*time.Second), group)
		if err != nil {
			return err
		}
		g := dg[group]
		if g.Err != nil {
			return g.Err
		}
		if g.State != "Stable" || len(g.Members) != 2 {
			return fmt.Errorf("DescribeGroups: state %q with %d members, want Stable with 2", g.State, len(g.Members))
		}
		var got []int32
		g.AssignedPartitions().Each(func(tp string, p int32) {
			if tp == topic {
				got = append(got, p)
			}
		})
		if slices.Sort(got); !slices.Equal(got, all) {
			return fmt.Errorf("DescribeGroups: assigned %v, want %v", got, all)
		}
		return nil
	})

	left := time.Now()
	bm.Close()
	testutil.Eventually(t, 20*time.Second, func() error {
		if got := ma.get(); !slices.Equal(got, all) {
			return fmt.Errorf("%v after B left: A has %v, want %v", time.Since(left).Round(time.Millisecond), got, all)
		}
		return nil
	})
	testutil.Eventually(t, 10*time.Second, func() error {
		dg, err := adm.DescribeGroups(ctxTimeout(t, 5*time.Second), group)
		if err != nil {
			return err
		}
		g := dg[group]
		memberA, _ := a.GroupMetadata()
		if g.State != "Stable" || len(g.Members) != 1 || g.Members[0].MemberID != memberA {
			var ids []string
			for _, m := range g.Members {
				ids = append(ids, m.MemberID)
			}
			return fmt.Errorf("DescribeGroups after B left: state %q, members %v; want Stable with A (%s) only", g.State, ids, memberA)
		}
		return nil
	})
	b.requireAlive()
}

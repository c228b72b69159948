package e2e

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tandem-io/tandem/internal/testutil"
)

// TestConsumerProtocolGroupAcrossFailover: two franz-go consumers in a
// group of the KIP-848 consumer protocol (kgo.ServerSideBalancer) share a
// four-partition topic on a three-node cluster. The leader (the group
// coordinator) is killed with SIGKILL; the node that leads next loads the
// group from the WAL, so both members carry on under the same member ids
// and group epoch, keep their partitions, and read everything produced
// before and after the kill. Their committed offsets carry member epochs
// (OffsetCommit v9) and survive too.
func TestConsumerProtocolGroupAcrossFailover(t *testing.T) {
	c, _, old := startElectableCluster(t)
	const topic, group = "kip848-failover", "kip848-failover-1"
	c.createTopicsRetry(4, topic)
	prod := kclient(t, c.kafkaAddrs(), kgo.RetryTimeout(60*time.Second), kgo.RecordPartitioner(kgo.RoundRobinPartitioner()))
	produceSync(t, prod, topic, seqValues("a-", 400))

	var events [2]groupEvents
	readers := make([]*groupReader, 2)
	for i := range readers {
		cl, err := kgo.NewClient(append(events[i].opts(), kgo.SeedBrokers(c.kafkaAddrs()...),
			kgo.ClientID(fmt.Sprintf("kip848-%d", i)), kgo.ConsumerGroup(group), kgo.ConsumeTopics(topic),
			kgo.ServerSideBalancer(), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
			kgo.AutoCommitInterval(200*time.Millisecond), kgo.FetchMaxWait(500*time.Millisecond),
			kgo.RetryTimeout(60*time.Second))...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(cl.Close)
		readers[i] = startGroupReader(t, cl)
	}
	all := seqValues("a-", 400)
	readAll := func(want []string) {
		t.Helper()
		testutil.Eventually(t, 60*time.Second, func() error {
			var missing []string
			for _, v := range want {
				if readers[0].count(v)+readers[1].count(v) == 0 {
					missing = append(missing, v)
				}
			}
			if len(missing) > 0 {
				return fmt.Errorf("the two consumers miss %d of %d records, e.g. %v", len(missing), len(want), missing[:min(5, len(missing))])
			}
			return nil
		})
	}
	// stable returns the group's member ids and epoch once it is Stable
	// with both members holding two partitions each at its epoch.
	stable := func(node int) ([]string, int32) {
		t.Helper()
		adm := kadm.NewClient(kclient(t, []string{c.node(node).kafka}))
		var ids []string
		var epoch int32
		testutil.Eventually(t, 60*time.Second, func() error {
			dg, err := adm.DescribeConsumerGroups(ctxTimeout(t, 5*time.Second), group)
			if err != nil {
				return err
			}
			g := dg[group]
			if g.Err != nil {
				return g.Err
			}
			if g.State != "Stable" || len(g.Members) != 2 {
				return fmt.Errorf("group on node %d: %s with %d members, want Stable with 2", node, g.State, len(g.Members))
			}
			ids = ids[:0]
			for _, m := range g.Members {
				if m.MemberEpoch != g.Epoch || len(m.Assignment[topic]) != 2 {
					return fmt.Errorf("member %s at epoch %d holds %v; group epoch %d", m.MemberID, m.MemberEpoch, m.Assignment, g.Epoch)
				}
				ids = append(ids, m.MemberID)
			}
			epoch = g.Epoch
			return nil
		})
		slices.Sort(ids)
		return ids, epoch
	}
	readAll(all)
	before, epochBefore := stable(old)

	c.node(old).killPair()
	leader, _ := c.waitLeader(60 * time.Second)
	if leader == old {
		t.Fatalf("node %d leads while killed", old)
	}
	produceSync(t, prod, topic, seqValues("b-", 400))
	all = append(all, seqValues("b-", 400)...)
	readAll(all)
	after, epochAfter := stable(leader)
	if !slices.Equal(before, after) || epochAfter != epochBefore {
		t.Fatalf("after the failover the group has members %v at epoch %d; before it had %v at %d", after, epochAfter, before, epochBefore)
	}
	for i := range events {
		e := &events[i]
		e.mu.Lock()
		lost, ended := len(e.lost), len(e.manageErrs)
		e.mu.Unlock()
		if lost > 0 || ended > 0 {
			t.Errorf("consumer %d lost partitions or ended its session across the failover: %s", i, e.String())
		}
	}
	// The offsets they committed (with their member epochs) are on the new leader.
	adm := kadm.NewClient(kclient(t, []string{c.node(leader).kafka}))
	testutil.Eventually(t, 30*time.Second, func() error {
		lag, err := adm.Lag(ctxTimeout(t, 5*time.Second), group)
		if err != nil {
			return err
		}
		if l := lag[group].Lag.Total(); l != 0 {
			return fmt.Errorf("group lag %d on the new leader", l)
		}
		return nil
	})
	// Each member reads its own two partitions after the failover.
	for i, r := range readers {
		n := 0
		for _, v := range seqValues("b-", 400) {
			if r.count(v) > 0 {
				n++
			}
		}
		if n != 200 {
			t.Errorf("consumer %d read %d of the 400 records written after the failover, want its two partitions' 200", i, n)
		}
	}
	d0, again0 := readers[0].counts()
	d1, again1 := readers[1].counts()
	t.Logf("consumers read %d and %d records (%d and %d more than once); members %v kept epoch %d across the failover",
		d0, d1, again0, again1, after, epochAfter)
}

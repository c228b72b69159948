package sidecar_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tandem-io/tandem/broker/link"
	adminv1 "github.com/tandem-io/tandem/gen/tandem/admin/v1"
	"github.com/tandem-io/tandem/internal/testutil"
	"github.com/tandem-io/tandem/sidecar"
	"github.com/tandem-io/tandem/sidecar/sidecartest"
)

// statusOf reads node id's admin status.
func statusOf(t *testing.T, c *sidecartest.Cluster, id int32) *adminv1.StatusResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := c.Admin(id).Status(ctx, &adminv1.StatusRequest{})
	if err != nil {
		t.Fatalf("status of node %d: %v", id, err)
	}
	return st
}

// A follower that was cut off keeps the ISR and commit point it last
// heard. After the leader dies, promoting it would drop entries that the
// leader committed with the other follower alone; the promotion asks the
// peers, is refused, and names the node that holds more of the log.
func TestPromoteRefusesStaleFollowerWhenPeerHoldsMore(t *testing.T) {
	c := sidecartest.NewCluster(t, 3, 1, fastFailover)
	c.StartAll()
	b1 := c.WaitLeader()
	b1.Produce(t, 10, 100)
	c.WaitCaughtUp(10)

	// Node 2's broker goes away; its sidecar tells the leader, which drops
	// node 2 from the ISR at once and commits 10 more with node 3.
	c.StopBroker(2)
	b1.Produce(t, 10, 100)
	testutil.Eventually(t, 15*time.Second, func() bool {
		st := statusOf(t, c, 3)
		return st.GetCommitLsn() == 20 && st.GetLastLsn() == 20
	})
	c.StopBroker(1)
	c.StopSidecar(1)

	// Node 2 comes back holding 10 entries; the last ISR it heard may
	// still list it.
	c.StartBroker(2)
	testutil.Eventually(t, 10*time.Second, func() bool { return statusOf(t, c, 2).GetLinked() })
	_, err := promote(t, c, 2, false)
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "promote node 3 instead") {
		t.Fatalf("promote of node 2 (10 entries; node 3 holds 20, all committed): %v, want FailedPrecondition naming node 3", err)
	}

	// Node 3 is the right choice, and nothing acknowledged is lost.
	r, err := promote(t, c, 3, false)
	if err != nil || r.GetEpoch() != 2 {
		t.Fatalf("promote node 3: %v, %v", r, err)
	}
	b3 := waitRole(t, c, 3, link.RoleLeader, 2)
	waitRole(t, c, 2, link.RoleFollower, 2)
	b3.Produce(t, 5, 100)
	c.WaitCaughtUp(25)
	c.AssertIdentical(25)
	if n := c.Nodes[3].Sidecar.UncleanPromotions(); n != 0 {
		t.Fatalf("unclean promotions on node 3 = %d, want 0", n)
	}
}

// With a follower unreachable as well as the leader, a node can rely only
// on what it heard itself. Its broker detached, so it told the leader it
// stopped following, and the leader shrank the ISR without it at once:
// the promotion is refused for that; and once what it heard is older than
// the lag bound, for that too. --force still promotes it.
func TestPromoteRefusesStaleKnowledgeWhenPeersAreMissing(t *testing.T) {
	c := sidecartest.NewCluster(t, 3, 1, fastFailover)
	c.StartAll()
	b1 := c.WaitLeader()
	b1.Produce(t, 10, 100)
	c.WaitCaughtUp(10)

	// Node 3 dies for good; the ISR shrinks to {1, 2}.
	c.StopBroker(3)
	c.StopSidecar(3)
	testutil.Eventually(t, 15*time.Second, func() bool {
		isr := statusOf(t, c, 2).GetIsr()
		return len(isr) == 2 && isr[0] == 1 && isr[1] == 2
	})
	// Node 2's broker goes away (its sidecar tells the leader), and the
	// leader goes on alone: its ISR is {1} and its writes commit
	// (min.insync 1).
	c.StopBroker(2)
	b1.Produce(t, 5, 100)
	testutil.Eventually(t, 15*time.Second, func() bool {
		st := statusOf(t, c, 1)
		return st.GetCommitLsn() == 15 && len(st.GetIsr()) == 1
	})
	c.StopBroker(1)
	c.StopSidecar(1)
	c.StartBroker(2)
	testutil.Eventually(t, 10*time.Second, func() bool { return statusOf(t, c, 2).GetLinked() })

	_, err := promote(t, c, 2, false)
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "its broker detached since it last streamed from leader 1") {
		t.Fatalf("promote of node 2 after it left the ISR: %v, want FailedPrecondition saying that its broker detached and it told leader 1", err)
	}
	testutil.Eventually(t, 15*time.Second, func() error {
		_, err := promote(t, c, 2, false)
		if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "has not heard from leader 1") ||
			!strings.Contains(err.Error(), "[3] did not answer") {
			return fmt.Errorf("promote of node 2 with stale knowledge: %v, want FailedPrecondition about not hearing from leader 1", err)
		}
		return nil
	})
	r, err := promote(t, c, 2, true)
	if err != nil || r.GetEpoch() != 2 {
		t.Fatalf("forced promote: %v, %v", r, err)
	}
	if n := c.Nodes[2].Sidecar.UncleanPromotions(); n != 1 {
		t.Fatalf("unclean promotions = %d, want 1", n)
	}
	waitRole(t, c, 2, link.RoleLeader, 2)
}

// A planned switchover: the leader is alive and lists the follower in its
// ISR, so the follower is promoted, and the old leader follows it.
func TestPromoteWithLiveLeader(t *testing.T) {
	c := sidecartest.NewCluster(t, 3, 1, fastFailover)
	c.StartAll()
	c.WaitLeader().Produce(t, 20, 100)
	c.WaitCaughtUp(20)
	if st := statusOf(t, c, 2); st.GetWalLastEpoch() != 1 || st.GetLastHeardFromLeader() == nil {
		t.Fatalf("follower status: wal_last_epoch %d, last_heard_from_leader %v; want 1 and set", st.GetWalLastEpoch(), st.GetLastHeardFromLeader())
	}
	r, err := promote(t, c, 2, false)
	if err != nil || r.GetEpoch() != 2 {
		t.Fatalf("promote node 2 while leader 1 is alive: %v, %v", r, err)
	}
	b2 := waitRole(t, c, 2, link.RoleLeader, 2)
	waitRole(t, c, 1, link.RoleFollower, 2)
	waitRole(t, c, 3, link.RoleFollower, 2)
	b2.Produce(t, 5, 100)
	c.WaitCaughtUp(25)
	c.AssertIdentical(25)
}

// A follower whose broker comes back with a shorter WAL (entries lost on
// its disk) is behind the commit point it heard, even though its sidecar
// applied those entries before: the promotion goes by what the broker
// holds now.
func TestPromoteRefusesBrokerThatCameBackShorter(t *testing.T) {
	c := sidecartest.NewCluster(t, 3, 1, func(cfg *sidecar.Config) {
		fastFailover(cfg)
		cfg.ReplicaLagTimeMax = time.Minute // node 2's ISR knowledge stays fresh
	})
	c.StartAll()
	b1 := c.WaitLeader()
	b1.Produce(t, 20, 100)
	c.WaitCaughtUp(20)
	c.StopBroker(3)
	c.StopSidecar(3)
	c.StopBroker(1)
	c.StopSidecar(1)

	c.StopBroker(2)
	cutWAL(t, c, 2, 10)
	c.StartBroker(2)
	testutil.Eventually(t, 10*time.Second, func() bool { return statusOf(t, c, 2).GetLinked() })
	if st := statusOf(t, c, 2); st.GetLastLsn() != 10 || st.GetDurableLsn() > 10 {
		t.Fatalf("node 2's status after its broker came back with 10 entries: last %d durable %d", st.GetLastLsn(), st.GetDurableLsn())
	}
	_, err := promote(t, c, 2, false)
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "its WAL ends at LSN 10, before the last commit point it knows (20)") {
		t.Fatalf("promote of node 2 holding 10 of 20 committed entries: %v, want FailedPrecondition", err)
	}
}

// A planned switchover under load: every entry the old leader committed
// (acknowledged to acks=all producers) before it learned of the new epoch
// is in the new leader's log, in the old epoch. The promoted node stops
// following without telling the old leader it leaves (FollowerLeaving):
// the old leader would then drop it from the ISR at once and commit with
// node 3 alone until it learns of the new epoch (up to a poll interval,
// a second here), entries the new leader never had.
func TestSwitchoverUnderLoadKeepsCommittedEntries(t *testing.T) {
	c := sidecartest.NewCluster(t, 3, 1, func(cfg *sidecar.Config) { cfg.EpochPollInterval = time.Second })
	c.StartAll()
	b1 := c.WaitLeader()
	b1.Produce(t, 20, 100)
	c.WaitCaughtUp(20)

	// Node 1 writes one entry at a time while it leads, and records the
	// highest commit point its sidecar gave it.
	var maxCommit uint64
	stopWrites := writeInBackground(b1, 100, func() bool {
		maxCommit = max(maxCommit, b1.Commit())
		return b1.View().Role == link.RoleLeader
	})
	defer stopWrites()
	time.Sleep(300 * time.Millisecond)
	r, err := promote(t, c, 2, false)
	if err != nil || r.GetEpoch() != 2 {
		t.Fatalf("promote node 2 while leader 1 is alive: %v, %v", r, err)
	}
	b2 := waitRole(t, c, 2, link.RoleLeader, 2)
	waitRole(t, c, 1, link.RoleFollower, 2)
	waitRole(t, c, 3, link.RoleFollower, 2)
	stopWrites()          // maxCommit is final from here
	b2.Produce(t, 5, 100) // the first entries of epoch 2

	var epoch2 uint64
	for _, e := range b2.WAL().EpochHistory() {
		if e.Epoch == 2 {
			epoch2 = e.StartLSN
		}
	}
	if epoch2 == 0 || epoch2 <= maxCommit {
		t.Fatalf("node 1 committed up to LSN %d in epoch 1, but node 2's epoch 2 starts at LSN %d: committed entries were lost", maxCommit, epoch2)
	}
	t.Logf("node 1 committed up to LSN %d; node 2's epoch 2 starts at LSN %d", maxCommit, epoch2)
	last := b2.WAL().LastLSN()
	c.WaitCaughtUp(last)
	c.AssertIdentical(last)
}

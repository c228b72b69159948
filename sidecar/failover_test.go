package sidecar_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
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

func fastFailover(c *sidecar.Config) { c.EpochPollInterval = 200 * time.Millisecond }

// cutWAL cuts node id's WAL back to its first `after` entries, as a power
// failure under --fsync interval or none can; the node's broker must be
// stopped.
func cutWAL(t *testing.T, c *sidecartest.Cluster, id int32, after uint64) {
	t.Helper()
	b := sidecartest.OpenMemBroker(t, id, filepath.Join(c.Nodes[id].Dir, "wal"))
	if err := b.TruncateAfter(after); err != nil {
		t.Fatal(err)
	}
	b.Close()
}

// waitRole waits until node id's broker has the given role in epoch.
func waitRole(t *testing.T, c *sidecartest.Cluster, id int32, role link.Role, epoch uint32) *sidecartest.MemBroker {
	t.Helper()
	testutil.Eventually(t, 15*time.Second, func() bool {
		b := c.Nodes[id].Broker
		if b == nil {
			return false
		}
		v := b.View()
		return v.Role == role && v.Epoch == epoch
	})
	return c.Nodes[id].Broker
}

func promote(t *testing.T, c *sidecartest.Cluster, id int32, force bool) (*adminv1.PromoteResponse, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	return c.Admin(id).Promote(ctx, &adminv1.PromoteRequest{Force: force})
}

func TestManualPromotionAfterLeaderDies(t *testing.T) {
	c := sidecartest.NewCluster(t, 3, 1, fastFailover)
	c.StartAll()
	c.WaitLeader().Produce(t, 50, 100)
	c.WaitCaughtUp(50)
	c.StopBroker(1)
	c.StopSidecar(1)

	r, err := promote(t, c, 2, false)
	if err != nil {
		t.Fatalf("promote node 2: %v", err)
	}
	if r.GetLeaderId() != 2 || r.GetEpoch() != 2 {
		t.Fatalf("promote = %v, want leader 2 epoch 2", r)
	}
	b2 := waitRole(t, c, 2, link.RoleLeader, 2)
	waitRole(t, c, 3, link.RoleFollower, 2)
	b2.Produce(t, 50, 100)
	testutil.Eventually(t, 15*time.Second, func() bool { return c.Nodes[3].Broker.WAL().LastLSN() == 100 })

	// The promotion is persisted: node 2's state file names it leader.
	data, err := os.ReadFile(filepath.Join(filepath.Dir(c.Nodes[2].Socket), "sidecar-state.json"))
	if err != nil || !strings.Contains(string(data), `"leader_id":2`) {
		t.Fatalf("state file: %q, %v", data, err)
	}

	// The old leader comes back with its static --leader 1 and follows 2.
	c.StartSidecar(1)
	c.StartBroker(1)
	waitRole(t, c, 1, link.RoleFollower, 2)
	c.WaitCaughtUp(100)
	c.AssertIdentical(100)

	// Restarting node 2's sidecar keeps it leader (the state file wins
	// over --leader 1).
	c.StopSidecar(2)
	c.StartSidecar(2)
	testutil.Eventually(t, 15*time.Second, func() bool {
		st, err := c.Admin(2).Status(context.Background(), &adminv1.StatusRequest{})
		return err == nil && st.GetRole() == adminv1.Role_ROLE_LEADER && st.GetEpoch() == 2 && st.GetLinked()
	})
}

func TestDivergedOldLeaderTruncates(t *testing.T) {
	c := sidecartest.NewCluster(t, 3, 1, fastFailover)
	c.StartAll()
	b1 := c.WaitLeader()
	b1.Produce(t, 30, 100)
	c.WaitCaughtUp(30)
	// The leader's sidecar dies; its broker keeps its leader view and
	// takes writes nobody else sees.
	c.StopSidecar(1)
	b1.Produce(t, 7, 100)

	if _, err := promote(t, c, 2, false); err != nil {
		t.Fatalf("promote node 2: %v", err)
	}
	b2 := waitRole(t, c, 2, link.RoleLeader, 2)
	b2.Produce(t, 20, 100) // LSNs 31-50 in epoch 2 (the test broker writes no no-op)
	testutil.Eventually(t, 15*time.Second, func() bool { return c.Nodes[3].Broker.WAL().LastLSN() == 50 })

	// Node 1's sidecar comes back: it learns epoch 2, fences its broker
	// and truncates the 7 entries of epoch 1 that nobody else has.
	c.StartSidecar(1)
	waitRole(t, c, 1, link.RoleFollower, 2)
	c.WaitCaughtUp(50)
	c.AssertIdentical(50)
}

func TestPromoteRefusesOutOfSyncNode(t *testing.T) {
	c := sidecartest.NewCluster(t, 3, 1, fastFailover)
	c.StartAll()
	b1 := c.WaitLeader()
	b1.Produce(t, 10, 100)
	c.WaitCaughtUp(10)
	// Node 3 goes away while the leader keeps writing, then its sidecar
	// comes back without its broker: it knows no ISR and no position.
	c.StopBroker(3)
	c.StopSidecar(3)
	b1.Produce(t, 10, 100)
	testutil.Eventually(t, 10*time.Second, func() bool { return c.Nodes[2].Broker.WAL().LastLSN() == 20 })
	// Node 3's sidecar comes back without its broker: not even --force
	// promotes it (its WAL's epochs are unknown).
	c.StartSidecar(3)
	if _, err := promote(t, c, 3, true); status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "broker is not attached") {
		t.Fatalf("forced promote of a node whose broker is not attached: %v, want FailedPrecondition", err)
	}
	// The leader goes away and node 3's broker comes back with 10 entries:
	// node 2, which holds 20, answers, so only --force promotes node 3.
	c.StopBroker(1)
	c.StopSidecar(1)
	c.StartBroker(3)
	testutil.Eventually(t, 10*time.Second, func() bool { return statusOf(t, c, 3).GetLinked() })
	_, err := promote(t, c, 3, false)
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("promote of an out-of-sync node: %v, want FailedPrecondition naming --force", err)
	}
	// An unclean promotion: node 3 leads epoch 2 with only 10 entries.
	r, err := promote(t, c, 3, true)
	if err != nil || r.GetEpoch() != 2 {
		t.Fatalf("forced promote: %v, %v", r, err)
	}
	if n := c.Nodes[3].Sidecar.UncleanPromotions(); n != 1 {
		t.Fatalf("unclean promotions = %d, want 1", n)
	}
	if st, err := c.Admin(3).Status(context.Background(), &adminv1.StatusRequest{}); err != nil ||
		st.GetUncleanPromotions() != 1 || st.GetFailoverMode() != "static" {
		t.Fatalf("status after an unclean promotion: %v, %v", st, err)
	}
	waitRole(t, c, 3, link.RoleLeader, 2)
	// The others learn the new epoch, stop taking writes and drop the 10
	// entries node 3 never had: the price of an unclean promotion.
	c.StartSidecar(1)
	c.StartBroker(1)
	waitRole(t, c, 1, link.RoleFollower, 2)
	waitRole(t, c, 2, link.RoleFollower, 2)
	c.WaitCaughtUp(10)
	c.AssertIdentical(10)
}

// An unclean promotion is the operator's decision to lose what the
// promoted node lacks. Nodes 1 and 2 served entries 11-20 as committed
// (node 3 had left the ISR); with both down, node 3 is promoted with
// --force. When they come back they drop 11-20 and follow it: the new epoch
// is marked unclean and the mark is passed on, where they would refuse a
// leader that lost committed entries by accident.
func TestFollowersDropCommittedEntriesAfterUncleanPromotion(t *testing.T) {
	c := sidecartest.NewCluster(t, 3, 1, func(cfg *sidecar.Config) {
		fastFailover(cfg)
		cfg.ReplicaLagTimeMax = 500 * time.Millisecond
	})
	c.StartAll()
	b1 := c.WaitLeader()
	b1.Produce(t, 10, 100)
	c.WaitCaughtUp(10)
	c.StopBroker(3)
	c.StopSidecar(3)
	b1.Produce(t, 10, 100) // committed once node 3 leaves the ISR
	testutil.Eventually(t, 15*time.Second, func() bool { return c.Nodes[2].Broker.Commit() == 20 })
	for _, id := range []int32{1, 2} {
		c.StopBroker(id)
		c.StopSidecar(id)
	}

	c.StartSidecar(3)
	c.StartBroker(3)
	testutil.Eventually(t, 10*time.Second, func() bool { return statusOf(t, c, 3).GetLinked() })
	r, err := promote(t, c, 3, true)
	if err != nil {
		t.Fatalf("forced promote of node 3: %v", err)
	}
	b3 := waitRole(t, c, 3, link.RoleLeader, r.GetEpoch())
	b3.Produce(t, 5, 101) // LSNs 11-15 in the new epoch
	for _, id := range []int32{2, 1} {
		c.StartSidecar(id)
		c.StartBroker(id)
	}
	c.WaitCaughtUp(15)
	c.AssertIdentical(15)

	// Node 2 passes the mark on: promoted (cleanly) later, it leads a
	// lineage that began with an unclean promotion, and says so.
	c.StopBroker(3)
	c.StopSidecar(3)
	r2, err := promote(t, c, 2, false)
	if err != nil {
		t.Fatalf("promote node 2: %v", err)
	}
	waitRole(t, c, 2, link.RoleLeader, r2.GetEpoch())
	data, err := os.ReadFile(filepath.Join(c.Nodes[2].Dir, "run", "sidecar-state.json")) // --data-dir defaults to the socket's directory
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf(`"unclean_epoch":%d`, r.GetEpoch()); !strings.Contains(string(data), want) {
		t.Fatalf("node 2's state file %s does not hold %s", data, want)
	}
}

// A new leader lists every broker it knows from the start, also one whose
// follower has not connected to it (node 3's sidecar is down here): a
// Kafka client replaces the brokers it knows with each Metadata answer,
// and one that asked the new leader would otherwise forget node 3.
func TestNewLeaderListsBrokersNotConnectedYet(t *testing.T) {
	c := sidecartest.NewCluster(t, 3, 1, nil)
	c.StartAll()
	c.WaitLeader().Produce(t, 20, 100)
	c.WaitCaughtUp(20)
	testutil.Eventually(t, 10*time.Second, func() error {
		if v := c.Nodes[2].Broker.View(); len(v.Brokers) != 3 {
			return fmt.Errorf("node 2's view lists %v before the switchover, want all three", v.Brokers)
		}
		return nil
	})
	c.StopSidecar(3)
	if _, err := promote(t, c, 2, false); err != nil {
		t.Fatalf("promote node 2: %v", err)
	}
	b2 := waitRole(t, c, 2, link.RoleLeader, 2)
	waitRole(t, c, 1, link.RoleFollower, 2)
	v := b2.View()
	host, port := c.Nodes[3].Broker.Advertised()
	if i := slices.IndexFunc(v.Brokers, func(b link.BrokerInfo) bool { return b.NodeID == 3 }); i < 0 || v.Brokers[i].Host != host || v.Brokers[i].Port != port {
		t.Fatalf("new leader 2 lists %v; want node 3 at %s:%d too", v.Brokers, host, port)
	}
}

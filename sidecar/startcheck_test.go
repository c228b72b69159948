package sidecar_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tandem-io/tandem/broker/link"
	adminv1 "github.com/tandem-io/tandem/gen/tandem/admin/v1"
	"github.com/tandem-io/tandem/internal/testutil"
	"github.com/tandem-io/tandem/sidecar"
	"github.com/tandem-io/tandem/sidecar/sidecartest"
)

// A static leader that comes back with the tail of its WAL gone (a power
// failure under --fsync interval or none) and its sidecar's memory of the
// commit point gone with it must not lead again: its followers would
// truncate the 10 committed entries it lost. It steps down and says which
// node to promote; after that promotion it catches up and nothing is lost.
func TestStaticLeaderThatCameBackShorterStepsDown(t *testing.T) {
	c := sidecartest.NewCluster(t, 3, 1, func(cfg *sidecar.Config) {
		fastFailover(cfg)
		cfg.ReplicaLagTimeMax = time.Minute // the ISR stays [1 2 3]
	})
	c.StartAll()
	b1 := c.WaitLeader()
	b1.Produce(t, 20, 100)
	c.WaitCaughtUp(20)
	want := c.Checksums(20)[1]

	// Node 1 loses power: its broker and sidecar die, and its WAL keeps
	// only the first 10 entries.
	c.StopBroker(1)
	c.StopSidecar(1)
	cutWAL(t, c, 1, 10)
	c.StartSidecar(1)
	c.StartBroker(1)

	// It steps down instead of leading, and says why. Stepping down makes
	// its broker re-attach with a fresh hello, so for a moment the reason
	// is "broker not attached"; wait for the state after that.
	var st *adminv1.StatusResponse
	testutil.Eventually(t, 15*time.Second, func() error {
		st = statusOf(t, c, 1)
		if st.GetRole() != adminv1.Role_ROLE_FOLLOWER || st.GetLeaderId() != 0 || !st.GetLinked() ||
			!strings.Contains(st.GetNotReadyReason(), "holds more of the log") {
			return fmt.Errorf("node 1: role %v, leader %d, linked %v, reason %q; want a follower of no leader, linked, naming a peer that holds more",
				st.GetRole(), st.GetLeaderId(), st.GetLinked(), st.GetNotReadyReason())
		}
		return nil
	})
	if st.GetReady() {
		t.Fatalf("node 1 after stepping down is ready (reason %q); want not ready", st.GetNotReadyReason())
	}
	if v := c.Nodes[1].Broker.View(); v.Role != link.RoleFollower {
		t.Fatalf("node 1's broker has role %v, want follower (fenced)", v.Role)
	}
	// Give a wrongly leading node time to make the followers truncate.
	time.Sleep(time.Second)
	for _, id := range []int32{2, 3} {
		if got := c.Nodes[id].Broker.WAL().LastLSN(); got != 20 {
			t.Fatalf("node %d holds %d entries after node 1 came back with 10, want 20", id, got)
		}
	}

	// The operator promotes node 2 (clean: it holds the most), node 1
	// follows it and catches up.
	r, err := promote(t, c, 2, false)
	if err != nil {
		t.Fatalf("promote node 2: %v", err)
	}
	b2 := waitRole(t, c, 2, link.RoleLeader, r.GetEpoch())
	waitRole(t, c, 1, link.RoleFollower, r.GetEpoch())
	b2.Produce(t, 5, 100)
	c.WaitCaughtUp(25)
	c.AssertIdentical(25)
	if got := c.Checksums(20); got[1] != want || got[2] != want || got[3] != want {
		t.Fatalf("checksums of LSNs 1-20: %v, want %x everywhere (all 20 were committed)", got, want)
	}

	// A restart keeps node 1 a follower of node 2.
	c.StopBroker(1)
	c.StopSidecar(1)
	c.StartSidecar(1)
	c.StartBroker(1)
	waitRole(t, c, 1, link.RoleFollower, r.GetEpoch())
	c.WaitCaughtUp(25)
}

// A static leader whose sidecar restarts while its broker keeps its whole
// WAL leads again at once: no peer holds more.
func TestStaticLeaderRestartLeadsAgain(t *testing.T) {
	c := sidecartest.NewCluster(t, 3, 1, fastFailover)
	c.StartAll()
	b1 := c.WaitLeader()
	b1.Produce(t, 20, 100)
	c.WaitCaughtUp(20)
	c.StopBroker(1)
	c.StopSidecar(1)
	c.StartSidecar(1)
	c.StartBroker(1)
	b1 = waitRole(t, c, 1, link.RoleLeader, 1)
	testutil.Eventually(t, 10*time.Second, func() bool { return statusOf(t, c, 1).GetReady() })
	b1.Produce(t, 5, 100)
	c.WaitCaughtUp(25)
	c.AssertIdentical(25)
}

// With etcd, a leader whose broker comes back with a shorter WAL (the
// sidecar kept running and holds the election) must not lead with it
// either: it steps down, a node holding all 20 committed entries is
// elected, and the old leader catches up from it.
func TestEtcdLeaderWhoseBrokerCameBackShorterStepsDown(t *testing.T) {
	c, url := etcdCluster(t, func(cfg *sidecar.Config) {
		cfg.ReplicaLagTimeMax = time.Minute // the ISR stays [1 2 3]
	})
	want := c.Checksums(20)[1]
	waitPublishedISR(t, etcdClient(t, url), "[1,2,3]")
	c.StopBroker(1)
	cutWAL(t, c, 1, 10)
	w := watchRoles(t, c)
	c.StartBroker(1)

	id, epoch := leaderOf(t, c, 1)
	if id == 1 || epoch < 2 {
		t.Fatalf("leader after node 1's broker came back with 10 of 20 entries: node %d epoch %d, want node 2 or 3 in a new epoch", id, epoch)
	}
	c.Nodes[id].Broker.Produce(t, 5, 100)
	c.WaitCaughtUp(25)
	c.AssertIdentical(25)
	w.close()
	if got := c.Checksums(20); got[1] != want || got[2] != want || got[3] != want {
		t.Fatalf("checksums of LSNs 1-20: %v, want %x everywhere (all 20 were committed)", got, want)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.sameEpoch) > 0 {
		t.Errorf("two leaders in one epoch: %v", w.sameEpoch)
	}
}

// The whole cluster restarts after a power failure in which the leader's
// WAL lost its tail, and the leader comes up first: no peer answers its
// start-up check, so it leads, and acknowledges writes on its own (its ISR
// is itself until the followers catch up). The followers, when they come
// up, know from their brokers that 20 entries were committed, and refuse
// to drop any of them to follow it; they do not join its ISR either. The
// operator stops node 1 and promotes node 2, which holds all 20. Node 1
// then refuses to follow node 2 (its own 5 acknowledged writes would go)
// until the operator gives them up by wiping its data; it re-clones and
// the replicas agree.
func TestFollowersKeepCommittedEntriesFromAShorterLeader(t *testing.T) {
	c := sidecartest.NewCluster(t, 3, 1, func(cfg *sidecar.Config) {
		fastFailover(cfg)
		cfg.ReplicaLagTimeMax = time.Minute // node 2's promotion stays clean
	})
	c.StartAll()
	b1 := c.WaitLeader()
	b1.Produce(t, 20, 100)
	c.WaitCaughtUp(20)
	want := c.Checksums(20)[2]

	for _, id := range c.IDs() {
		c.StopBroker(id)
		c.StopSidecar(id)
	}
	cutWAL(t, c, 1, 10)
	c.StartSidecar(1)
	c.StartBroker(1)
	b1 = waitRole(t, c, 1, link.RoleLeader, 1)
	b1.Produce(t, 5, 101) // LSNs 11-15 in epoch 1, not the bytes nodes 2 and 3 hold there
	testutil.Eventually(t, 10*time.Second, func() bool { return b1.Commit() == 15 })
	for _, id := range []int32{2, 3} {
		c.StartSidecar(id)
		c.StartBroker(id)
	}
	for _, id := range []int32{2, 3} {
		testutil.Eventually(t, 15*time.Second, func() bool {
			return strings.Contains(statusOf(t, c, id).GetNotReadyReason(), "refusing to drop entries that were committed")
		})
	}
	time.Sleep(time.Second) // a follower that gave in would truncate now
	for _, id := range []int32{2, 3} {
		if got := c.Nodes[id].Broker.WAL().LastLSN(); got != 20 {
			t.Fatalf("node %d holds %d entries after refusing to follow, want its 20", id, got)
		}
		if got := nodeChecksum(t, c, id, 20); got != want {
			t.Fatalf("node %d's LSNs 1-20 have checksum %x after refusing to follow, want %x", id, got, want)
		}
	}
	if isr := statusOf(t, c, 1).GetIsr(); !slices.Equal(isr, []int32{1}) {
		t.Fatalf("node 1's ISR is %v with both followers refusing to follow it, want [1]", isr)
	}

	// The operator stops node 1 and promotes node 2: clean, node 3 answers
	// and holds no more.
	c.StopBroker(1)
	c.StopSidecar(1)
	r, err := promote(t, c, 2, false)
	if err != nil {
		t.Fatalf("promote node 2: %v", err)
	}
	b2 := waitRole(t, c, 2, link.RoleLeader, r.GetEpoch())
	waitRole(t, c, 3, link.RoleFollower, r.GetEpoch())
	b2.Produce(t, 3, 100)
	end := b2.WAL().LastLSN()
	testutil.Eventually(t, 15*time.Second, func() bool { return c.Nodes[3].Broker.WAL().LastLSN() == end })

	// Node 1 comes back: following node 2 would drop its committed 11-15.
	c.StartSidecar(1)
	c.StartBroker(1)
	testutil.Eventually(t, 15*time.Second, func() bool {
		return strings.Contains(statusOf(t, c, 1).GetNotReadyReason(), "refusing to drop entries that were committed")
	})
	if got := c.Nodes[1].Broker.WAL().LastLSN(); got != 15 {
		t.Fatalf("node 1 holds %d entries after refusing to follow, want its 15", got)
	}

	// The operator gives them up: node 1's data goes, and it re-clones.
	c.StopBroker(1)
	c.StopSidecar(1)
	if err := os.RemoveAll(c.Nodes[1].Dir); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(c.Nodes[1].Dir, 0o700); err != nil {
		t.Fatal(err)
	}
	c.StartSidecar(1)
	c.StartBroker(1)
	c.WaitCaughtUp(end)
	c.AssertIdentical(end)
	if got := c.Checksums(20); got[1] != want || got[2] != want || got[3] != want {
		t.Fatalf("checksums of LSNs 1-20: %v, want %x everywhere (all 20 were committed)", got, want)
	}
}

// nodeChecksum is node id's checksum of its LSNs 1 to upto.
func nodeChecksum(t *testing.T, c *sidecartest.Cluster, id int32, upto uint64) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r, err := c.Admin(id).Checksum(ctx, &adminv1.ChecksumRequest{FromLsn: 1, ToLsn: upto})
	if err != nil {
		t.Fatalf("checksum on node %d: %v", id, err)
	}
	return r.GetChecksum()
}

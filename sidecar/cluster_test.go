package sidecar_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tandem-io/tandem/broker/link"
	"github.com/tandem-io/tandem/broker/wal"
	adminv1 "github.com/tandem-io/tandem/gen/tandem/admin/v1"
	"github.com/tandem-io/tandem/internal/testutil"
	"github.com/tandem-io/tandem/sidecar"
	"github.com/tandem-io/tandem/sidecar/sidecartest"
)

func TestReplicationStreamsToFollowers(t *testing.T) {
	c := sidecartest.NewCluster(t, 3, 1, nil)
	c.StartAll()
	leader := c.WaitLeader()
	leader.Produce(t, 300, 1000) // 300 KB: more than the cache, the window and many batches
	c.WaitCaughtUp(300)
	c.AssertIdentical(300)

	for _, id := range []int32{2, 3} {
		v := c.Nodes[id].Broker.View()
		if v.Role != link.RoleFollower || v.LeaderID != 1 || len(v.Brokers) != 3 {
			t.Errorf("node %d view = %+v, want follower of 1 listing 3 brokers", id, v)
		}
	}
	testutil.Eventually(t, 10*time.Second, func() bool {
		return slices.Equal(leader.View().ISR, []int32{1, 2, 3})
	})
	st, err := c.Admin(1).Status(context.Background(), &adminv1.StatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if st.GetRole() != adminv1.Role_ROLE_LEADER || st.GetCommitLsn() != 300 || len(st.GetReplicas()) != 2 {
		t.Fatalf("leader status = %v", st)
	}
	for _, r := range st.GetReplicas() {
		if !r.GetConnected() || !r.GetInIsr() || r.GetFlushedLsn() != 300 || r.GetLagEntries() != 0 {
			t.Errorf("replica %v", r)
		}
	}
	testutil.Eventually(t, 10*time.Second, func() bool {
		st, err := c.Admin(2).Status(context.Background(), &adminv1.StatusRequest{})
		return err == nil && st.GetReady() && st.GetStreaming() && st.GetRole() == adminv1.Role_ROLE_FOLLOWER
	})
}

func TestFollowerRestartResumes(t *testing.T) {
	tests := []struct {
		name  string
		stop  func(c *sidecartest.Cluster, id int32)
		start func(c *sidecartest.Cluster, id int32)
	}{
		{"broker", (*sidecartest.Cluster).StopBroker, (*sidecartest.Cluster).StartBroker},
		{"sidecar", (*sidecartest.Cluster).StopSidecar, (*sidecartest.Cluster).StartSidecar},
		{"both", func(c *sidecartest.Cluster, id int32) { c.StopBroker(id); c.StopSidecar(id) },
			func(c *sidecartest.Cluster, id int32) { c.StartSidecar(id); c.StartBroker(id) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := sidecartest.NewCluster(t, 3, 1, nil)
			c.StartAll()
			leader := c.WaitLeader()
			leader.Produce(t, 100, 500)
			c.WaitCaughtUp(100)
			tt.stop(c, 2)
			leader.Produce(t, 100, 500)
			tt.start(c, 2)
			leader.Produce(t, 10, 500)
			c.WaitCaughtUp(210)
			c.AssertIdentical(210)
		})
	}
}

func TestLeaderSidecarRestartUnderLoad(t *testing.T) {
	c := sidecartest.NewCluster(t, 3, 1, nil)
	c.StartAll()
	leader := c.WaitLeader()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < 40; i++ {
			if leader.View().Role == link.RoleLeader {
				leader.Produce(t, 10, 200)
			}
		}
	}()
	c.StopSidecar(1)
	c.StartSidecar(1)
	<-done
	leader.Produce(t, 1, 200)
	last := leader.WAL().LastLSN()
	c.WaitCaughtUp(last)
	c.AssertIdentical(last)
}

func TestFollowerDivergenceIsTruncated(t *testing.T) {
	c := sidecartest.NewCluster(t, 2, 1, nil)
	c.StartAll()
	leader := c.WaitLeader()
	leader.Produce(t, 20, 100)
	c.WaitCaughtUp(20)
	// Node 2 grows a tail the leader never had (as an old leader that took
	// writes nobody replicated), then rejoins.
	c.StopBroker(2)
	c.StopSidecar(2)
	b := sidecartest.OpenMemBroker(t, 2, c.Nodes[2].Dir+"/wal")
	for i := 0; i < 5; i++ {
		if _, err := b.WAL().Append(7, 1, []byte("diverged")); err != nil {
			t.Fatal(err)
		}
	}
	b.WAL().Close()
	// Meanwhile the leader moved to epoch 8 (a follower never has a newer
	// epoch than a legitimate leader: a leader that sees one is stale and
	// refuses the follower), as a promotion would have: its state file
	// says so too.
	c.StopBroker(1)
	c.StopSidecar(1)
	b1 := sidecartest.OpenMemBroker(t, 1, c.Nodes[1].Dir+"/wal")
	if _, err := b1.WAL().Append(8, 1, []byte("epoch 8")); err != nil {
		t.Fatal(err)
	}
	b1.WAL().Close()
	c.WriteStateFile(1, 1, 8)
	c.StartSidecar(1)
	c.StartBroker(1)
	leader = c.WaitLeader()
	testutil.Eventually(t, 10*time.Second, func() bool { return leader.View().Epoch == 8 })
	leader.Produce(t, 9, 100)
	c.StartSidecar(2)
	c.StartBroker(2)
	c.WaitCaughtUp(30)
	c.AssertIdentical(30)
}

// A leader whose broker comes back with entries of a later epoch than the
// one it leads (its WAL was swapped for another node's, or the node led
// nothing of the sort) does not lead: it would put its own entries under
// an epoch another node began. It steps down, says why, and its follower
// keeps its log.
func TestLeaderRefusesAWALOfALaterEpoch(t *testing.T) {
	c := sidecartest.NewCluster(t, 2, 1, nil)
	c.StartAll()
	leader := c.WaitLeader()
	leader.Produce(t, 10, 100)
	c.WaitCaughtUp(10)
	c.StopBroker(1)
	b1 := sidecartest.OpenMemBroker(t, 1, c.Nodes[1].Dir+"/wal")
	if _, err := b1.WAL().Append(5, 1, []byte("epoch 5")); err != nil {
		t.Fatal(err)
	}
	b1.WAL().Close()
	c.StartBroker(1)
	testutil.Eventually(t, 10*time.Second, func() bool {
		st := c.Nodes[1].Sidecar.Status()
		return st.Role == adminv1.Role_ROLE_FOLLOWER && st.LeaderId == 0 && !st.Ready &&
			strings.Contains(st.NotReadyReason, "WAL holds entries of epoch 5")
	})
	if st := c.Nodes[1].Sidecar.Status(); st.Epoch >= 5 {
		t.Errorf("node 1 works in epoch %d after refusing, want the one it led (1)", st.Epoch)
	}
	if got := c.Nodes[2].Broker.WAL().LastLSN(); got != 10 {
		t.Errorf("the follower's WAL ends at %d, want the 10 entries it had", got)
	}
}

// A follower that needs entries the leader's retention already deleted is
// told to wipe its WAL and re-clone from the leader's first LSN.
func TestFollowerBehindRetentionIsRecloned(t *testing.T) {
	// A cache too small to hold what the follower misses: the leader must
	// go to its broker's WAL, which no longer has it.
	c := sidecartest.NewCluster(t, 2, 1, func(cfg *sidecar.Config) { cfg.CacheBytes = 8 << 10 })
	c.SegmentBytes = 16 << 10
	c.StartAll()
	leader := c.WaitLeader()
	leader.Produce(t, 20, 500)
	c.WaitCaughtUp(20)
	c.StopBroker(2)
	leader.Produce(t, 200, 500) // ~100 KB: several segments
	n, err := leader.WAL().DeleteSegmentsBefore(150)
	if err != nil || n == 0 {
		t.Fatalf("DeleteSegmentsBefore: %d, %v", n, err)
	}
	first := leader.WAL().FirstLSN()
	if first <= 21 {
		t.Fatalf("the leader still holds LSN 21 (first %d)", first)
	}
	c.StartBroker(2)
	c.WaitCaughtUp(220)
	if got := c.Nodes[2].Broker.WAL().FirstLSN(); got != first {
		t.Errorf("re-cloned follower starts at %d, want the leader's first LSN %d", got, first)
	}
	c.AssertIdenticalFrom(first, 220)
}

// Two entries with the same LSN and epoch are normally the same entry, and
// the divergence check compares epochs only. Here the leader wrote entries
// 16-20, replicated them and crashed before they were committed, lost them
// (as after an OS crash under --fsync interval or none) and wrote others
// in their place, in the same epoch: the follower's hello carries the
// checksum of its last entry, the leader sees that its own entry there
// differs, and the follower drops that epoch's entries and gets the
// leader's instead of keeping its old ones forever. That also drops its
// committed 1-15, which the leader holds unchanged (its hello's commit
// checksum says so): they come back.
func TestSameEpochDifferentEntriesAreRepaired(t *testing.T) {
	c := sidecartest.NewCluster(t, 2, 1, nil)
	c.StartAll()
	leader := c.WaitLeader()
	leader.Produce(t, 15, 100)
	c.WaitCaughtUp(15)
	epoch := leader.View().Epoch

	c.StopBroker(2)
	c.StopSidecar(2)
	c.StopBroker(1)
	for id, what := range map[int32]string{2: "replicated %d", 1: "rewritten %d"} {
		b := sidecartest.OpenMemBroker(t, id, c.Nodes[id].Dir+"/wal")
		n := map[int32]int{2: 20, 1: 25}[id]
		for i := 16; i <= n; i++ { // same LSNs, same epoch, other bytes
			if _, err := b.WAL().Append(epoch, 1, []byte(fmt.Sprintf(what, i))); err != nil {
				t.Fatal(err)
			}
		}
		b.WAL().Close()
	}
	c.StartBroker(1)
	c.WaitLeader()
	c.StartSidecar(2)
	c.StartBroker(2)
	c.WaitCaughtUp(25)
	c.AssertIdentical(25)
}

// A TCP connection that never completes its gRPC handshake (a silent
// client, a half-open peer behind a partition) is closed after the
// handshake bound, so it cannot hold the sidecar's shutdown (gRPC's own
// default is two minutes).
func TestSilentConnectionIsClosed(t *testing.T) {
	defer sidecar.SetConnectionTimeout(200 * time.Millisecond)()
	c := sidecartest.NewCluster(t, 1, 1, nil)
	c.StartSidecar(1)
	conn, err := net.Dial("tcp", c.Peers[1])
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// Nothing is sent. The sidecar closes the connection: the read ends.
	if err := conn.SetReadDeadline(time.Now().Add(20 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(io.Discard, conn); err != nil {
		t.Fatalf("the sidecar did not close a connection that never completed its handshake: %v", err)
	}
	c.StopSidecar(1)
}

// TestReplicaStateFollowsPostgres: the leader reports a follower's stream
// as pg_stat_replication.state does: disconnected while it is away,
// catchup from its reconnection until it first reaches the leader's end,
// streaming from then on.
func TestReplicaStateFollowsPostgres(t *testing.T) {
	c := sidecartest.NewCluster(t, 3, 1, func(cfg *sidecar.Config) {
		cfg.BatchBytes = 4 << 10
		cfg.ReplicaLagTimeMax = 500 * time.Millisecond
		if cfg.NodeID == 1 {
			// Node 3 comes back outside the ISR; at 50 KB/s its
			// 200 KB backlog takes about 4 s, long enough to be seen.
			cfg.CatchupBytesPerSec = 50_000
		}
	})
	c.StartAll()
	leader := c.WaitLeader()
	leader.Produce(t, 20, 100)
	c.WaitCaughtUp(20)

	state := func(id int32) (adminv1.ReplicaState, *adminv1.Replica) {
		t.Helper()
		st, err := c.Admin(1).Status(context.Background(), &adminv1.StatusRequest{})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range st.GetReplicas() {
			if r.GetNodeId() == id {
				return r.GetState(), r
			}
		}
		t.Fatalf("the leader's status has no replica %d: %v", id, st)
		return 0, nil
	}
	for _, id := range []int32{2, 3} {
		if s, r := state(id); s != adminv1.ReplicaState_REPLICA_STATE_STREAMING {
			t.Fatalf("node %d caught up: state %v (%v), want streaming", id, s, r)
		}
	}

	c.StopBroker(3)
	c.StopSidecar(3)
	testutil.Eventually(t, 10*time.Second, func() bool {
		s, r := state(3)
		return s == adminv1.ReplicaState_REPLICA_STATE_DISCONNECTED && !r.GetInIsr()
	})
	leader.Produce(t, 200, 1000)

	c.StartSidecar(3)
	c.StartBroker(3)
	testutil.Eventually(t, 10*time.Second, func() bool {
		s, r := state(3)
		return s == adminv1.ReplicaState_REPLICA_STATE_CATCHUP && r.GetConnected() && r.GetLagEntries() > 0 &&
			gather(t, c.Nodes[1].Sidecar)["tandem_sidecar_follower_catching_up{follower=3}"] == 1
	})
	c.WaitCaughtUp(220)
	testutil.Eventually(t, 10*time.Second, func() bool {
		s, _ := state(3)
		return s == adminv1.ReplicaState_REPLICA_STATE_STREAMING &&
			gather(t, c.Nodes[1].Sidecar)["tandem_sidecar_follower_catching_up{follower=3}"] == 0
	})
	if s, r := state(2); s != adminv1.ReplicaState_REPLICA_STATE_STREAMING {
		t.Errorf("node 2, never away: state %v (%v), want streaming", s, r)
	}
}

// TestStoppingFollowerLeavesTheISRAtOnce: a follower whose sidecar shuts
// down, or whose broker detaches, tells the leader so (FollowerLeaving), and
// the leader takes it out of the ISR at once, as Kafka's controlled
// shutdown does, instead of after replica-lag-time-max (an hour here): the
// commit point moves on without it. The leader writes all along, so the
// followers are in the middle of applying entries when they stop (the
// message must still go out). Back, they join the ISR again.
func TestStoppingFollowerLeavesTheISRAtOnce(t *testing.T) {
	c := sidecartest.NewCluster(t, 3, 1, func(cfg *sidecar.Config) { cfg.ReplicaLagTimeMax = time.Hour })
	c.StartAll()
	leader := c.WaitLeader()
	leader.Produce(t, 20, 100)
	c.WaitCaughtUp(20)
	isr := func(want ...int32) {
		t.Helper()
		testutil.Eventually(t, 10*time.Second, func() error {
			if got := leader.View().ISR; !slices.Equal(got, want) {
				return fmt.Errorf("the leader's broker sees ISR %v, want %v", got, want)
			}
			return nil
		})
	}
	isr(1, 2, 3)
	stopWrites := writeInBackground(leader, 2000, nil)
	defer stopWrites()
	committed := func(what string) {
		t.Helper()
		lsn := leader.WAL().LastLSN()
		testutil.Eventually(t, 10*time.Second, func() error {
			if got := leader.Commit(); got < lsn {
				return fmt.Errorf("%s: the commit point is %d, want %d", what, got, lsn)
			}
			return nil
		})
	}
	time.Sleep(200 * time.Millisecond) // entries flow to both followers
	c.StopSidecar(2)                   // the broker stays; its sidecar shuts down
	isr(1, 3)
	committed("node 2's sidecar stopped")

	c.StopBroker(3) // the sidecar stays; its broker goes away
	isr(1)
	committed("node 3's broker stopped too")

	c.StartSidecar(2)
	c.StartBroker(3)
	stopWrites()
	last := leader.WAL().LastLSN()
	c.WaitCaughtUp(last)
	isr(1, 2, 3)
	c.AssertIdentical(last)
}

// writeInBackground appends entries of size bytes to b's WAL (in the epoch
// its view leads when it starts), one a millisecond, as a leader under a steady load, until the returned
// stop is called (it waits for the writer, and may be called again) or
// after returns false (nil: go on).
func writeInBackground(b *sidecartest.MemBroker, size int, after func() bool) (stop func()) {
	quit := make(chan struct{})
	done := make(chan struct{})
	epoch := b.View().Epoch
	go func() {
		defer close(done)
		for {
			select {
			case <-quit:
				return
			case <-time.After(time.Millisecond):
			}
			if _, err := b.WAL().Append(epoch, wal.TypeRecordBatch, make([]byte, size)); err != nil {
				return
			}
			if after != nil && !after() {
				return
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() { close(quit) })
		<-done
	}
}

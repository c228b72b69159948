package sidecar

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/tandem-io/tandem/broker/link"
	adminv1 "github.com/tandem-io/tandem/gen/tandem/admin/v1"
	"github.com/tandem-io/tandem/internal/testutil"
)

func TestReplicationStreamsToFollowers(t *testing.T) {
	c := newCluster(t, 3, 1, nil)
	c.startAll()
	leader := c.waitLeader()
	leader.produce(t, 300, 1000) // 300 KB: more than the cache, the window and many batches
	c.waitCaughtUp(300)
	c.assertIdentical(300)

	for _, id := range []int32{2, 3} {
		v := c.nodes[id].broker.View()
		if v.Role != link.RoleFollower || v.LeaderID != 1 || len(v.Brokers) != 3 {
			t.Errorf("node %d view = %+v, want follower of 1 listing 3 brokers", id, v)
		}
	}
	testutil.Eventually(t, 10*time.Second, func() bool {
		return slices.Equal(leader.View().ISR, []int32{1, 2, 3})
	})
	st, err := c.admin(1).Status(context.Background(), &adminv1.StatusRequest{})
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
		st, err := c.admin(2).Status(context.Background(), &adminv1.StatusRequest{})
		return err == nil && st.GetReady() && st.GetStreaming() && st.GetRole() == adminv1.Role_ROLE_FOLLOWER
	})
}

func TestFollowerRestartResumes(t *testing.T) {
	tests := []struct {
		name  string
		stop  func(c *cluster, id int32)
		start func(c *cluster, id int32)
	}{
		{"broker", (*cluster).stopBroker, (*cluster).startBroker},
		{"sidecar", (*cluster).stopSidecar, (*cluster).startSidecar},
		{"both", func(c *cluster, id int32) { c.stopBroker(id); c.stopSidecar(id) },
			func(c *cluster, id int32) { c.startSidecar(id); c.startBroker(id) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newCluster(t, 3, 1, nil)
			c.startAll()
			leader := c.waitLeader()
			leader.produce(t, 100, 500)
			c.waitCaughtUp(100)
			tt.stop(c, 2)
			leader.produce(t, 100, 500)
			tt.start(c, 2)
			leader.produce(t, 10, 500)
			c.waitCaughtUp(210)
			c.assertIdentical(210)
		})
	}
}

func TestLeaderSidecarRestartUnderLoad(t *testing.T) {
	c := newCluster(t, 3, 1, nil)
	c.startAll()
	leader := c.waitLeader()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < 40; i++ {
			if leader.View().Role == link.RoleLeader {
				leader.produce(t, 10, 200)
			}
		}
	}()
	c.stopSidecar(1)
	c.startSidecar(1)
	<-done
	leader.produce(t, 1, 200)
	last := leader.w.LastLSN()
	c.waitCaughtUp(last)
	c.assertIdentical(last)
}

func TestFollowerDivergenceIsTruncated(t *testing.T) {
	c := newCluster(t, 2, 1, nil)
	c.startAll()
	leader := c.waitLeader()
	leader.produce(t, 20, 100)
	c.waitCaughtUp(20)
	// Node 2 grows a tail the leader never had (as an old leader that took
	// writes nobody replicated), then rejoins.
	c.stopBroker(2)
	c.stopSidecar(2)
	b := openMemBroker(t, 2, c.nodes[2].dir+"/wal")
	for i := 0; i < 5; i++ {
		if _, err := b.w.Append(7, 1, []byte("diverged")); err != nil {
			t.Fatal(err)
		}
	}
	b.w.Close()
	leader.produce(t, 10, 100)
	c.startSidecar(2)
	c.startBroker(2)
	c.waitCaughtUp(30)
	c.assertIdentical(30)
}

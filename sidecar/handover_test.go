package sidecar_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/tandem-io/tandem/broker/link"
	"github.com/tandem-io/tandem/internal/testutil"
	"github.com/tandem-io/tandem/sidecar/sidecartest"
)

// A leader's broker that stops on purpose (SIGTERM for the real broker)
// while its sidecar keeps running: Kafka's controlled shutdown. The sidecar
// waits until its in-sync followers hold the broker's last entry, resigns,
// and an in-sync follower is elected at once. Without it, the sidecar
// would keep the election for a whole lease TTL with no broker behind it
// (a minute here: longer than the test waits). The new leader's epoch
// starts right after the old leader's last entry: nothing the old leader
// wrote is dropped, acks=1 writes included.
func TestStoppingLeaderBrokerHandsLeadershipOver(t *testing.T) {
	c, url := etcdCluster(t, nil)
	// Leases of a minute, so that nothing but the handover can move the
	// leadership while the broker is down. (Set by restarting the
	// sidecars: etcdCluster's first election needs short leases, because
	// the other nodes give the --leader node a head start of one TTL.)
	for _, id := range []int32{2, 3, 1} {
		c.Nodes[id].Config.LeaseTTL = time.Minute
		c.StopSidecar(id)
		c.StartSidecar(id)
		c.WaitCaughtUp(20)
	}
	// Followers can be elected once the leader has published them in the
	// ISR.
	var old int32
	var epoch uint32
	testutil.Eventually(t, 20*time.Second, func() error {
		var v struct {
			LeaderID int32   `json:"leader_id"`
			Epoch    uint32  `json:"epoch"`
			ISR      []int32 `json:"isr"`
		}
		got := publishedISR(t, url)
		if err := json.Unmarshal([]byte(got), &v); err != nil || !slices.Equal(v.ISR, []int32{1, 2, 3}) {
			return fmt.Errorf("published ISR %q, want [1 2 3]", got)
		}
		if bv := c.Nodes[v.LeaderID].Broker.View(); bv.Role != link.RoleLeader || bv.Epoch != v.Epoch {
			return fmt.Errorf("node %d published the ISR in epoch %d, its broker's view is %v in epoch %d", v.LeaderID, v.Epoch, bv.Role, bv.Epoch)
		}
		old, epoch = v.LeaderID, v.Epoch
		return nil
	})
	leader := c.Nodes[old].Broker

	// The leader writes all along until its broker stops, so the followers
	// are behind by a few entries when it does.
	stopWrites := writeInBackground(leader, 1000, nil)
	time.Sleep(300 * time.Millisecond)
	stopWrites()
	last := leader.WAL().LastLSN()
	released, took := c.StopBrokerCleanly(old)
	if !released {
		t.Fatalf("node %d's sidecar did not end the link of its stopping broker", old)
	}
	t.Logf("node %d's sidecar released its broker after %v (WAL to LSN %d)", old, took, last)

	next, nextEpoch := leaderOf(t, c, old)
	if nextEpoch != epoch+1 {
		t.Fatalf("node %d leads epoch %d, want %d", next, nextEpoch, epoch+1)
	}
	c.Nodes[next].Broker.Produce(t, 10, 100)
	h := c.Nodes[next].Broker.WAL().EpochHistory()
	if got := h[len(h)-1]; got.Epoch != nextEpoch || got.StartLSN != last+1 {
		t.Fatalf("node %d's epoch %d starts at LSN %d, want %d (right after the old leader's last entry): history %v",
			next, got.Epoch, got.StartLSN, last+1, h)
	}

	// The old leader's broker comes back and follows the new leader.
	c.StartBroker(old)
	testutil.Eventually(t, 20*time.Second, func() bool {
		v := c.Nodes[old].Broker.View()
		return v.Role == link.RoleFollower && v.LeaderID == next && v.Epoch == nextEpoch
	})
	c.Nodes[next].Broker.Produce(t, 10, 100)
	end := c.Nodes[next].Broker.WAL().LastLSN()
	c.WaitCaughtUp(end)
	c.AssertIdentical(end)
}

// A follower's broker, or a static leader's, has nothing to hand over: its
// sidecar ends the link at once, and the node carries on as after any
// broker stop.
func TestStoppingBrokerWithNothingToHandOver(t *testing.T) {
	c := sidecartest.NewCluster(t, 3, 1, nil)
	c.StartAll()
	leader := c.WaitLeader()
	leader.Produce(t, 20, 100)
	c.WaitCaughtUp(20)
	for _, id := range []int32{2, 1} {
		released, took := c.StopBrokerCleanly(id)
		if !released {
			t.Fatalf("node %d's sidecar did not end the link of its stopping broker", id)
		}
		t.Logf("node %d's sidecar released its broker after %v", id, took)
		c.StartBroker(id)
	}
	leader = c.WaitLeader()
	if got := leader.NodeID(); got != 1 {
		t.Fatalf("node %d leads, want the static leader 1", got)
	}
	leader.Produce(t, 10, 100)
	c.WaitCaughtUp(30)
	c.AssertIdentical(30)
}

// publishedISR is the ISR value published in etcd ("" when none).
func publishedISR(t *testing.T, url string) string {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{url}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	r, err := cli.Get(ctx, "/tandem/test-cluster/isr")
	if err != nil || len(r.Kvs) == 0 {
		return ""
	}
	return string(r.Kvs[0].Value)
}

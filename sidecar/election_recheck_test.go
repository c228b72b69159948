package sidecar_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	adminv1 "github.com/tandem-io/tandem/gen/tandem/admin/v1"
	"github.com/tandem-io/tandem/internal/testutil"
	"github.com/tandem-io/tandem/sidecar"
	"github.com/tandem-io/tandem/sidecar/sidecartest"
)

// A node whose broker crashes after it won the election, but before it
// took the leader's role, resigns instead of leading with no broker behind
// it until the detached-broker rule gives the election up a whole lease
// TTL later: another node is elected at once and takes writes. (A soak run
// saw a node elected just as its broker was killed.) The lease TTL here is
// 30 s, so a node that held on would leave the cluster without a leader for
// longer than the 20 s the test waits.
func TestElectedNodeWhoseBrokerCrashedResigns(t *testing.T) {
	url := startEtcd(t)
	elected := make(chan int32, 1)
	crashed := make(chan struct{})
	var once sync.Once
	crashDone := func() { once.Do(func() { close(crashed) }) }
	var first atomic.Bool
	t.Cleanup(sidecar.SetElectedHook(func(id int32) {
		if !first.CompareAndSwap(false, true) {
			return
		}
		// The test goroutine kills this node's broker; the node takes the
		// leader's role only after its sidecar saw the broker go.
		elected <- id
		<-crashed
	}))
	// No --leader: no node gets a head start, every node campaigns at once.
	c := sidecartest.NewCluster(t, 3, 0, func(cfg *sidecar.Config) {
		cfg.EtcdEndpoints = []string{url}
		cfg.LeaseTTL = 30 * time.Second
		cfg.EpochPollInterval = 200 * time.Millisecond
	})
	t.Cleanup(crashDone) // before the cluster closes, should the test fail early
	c.StartAll()

	var x int32
	select {
	case x = <-elected:
	case <-time.After(30 * time.Second):
		t.Fatal("no node won the first election")
	}
	c.StopBroker(x)
	testutil.Eventually(t, 10*time.Second, func() error {
		st, err := c.Admin(x).Status(context.Background(), &adminv1.StatusRequest{})
		if err != nil {
			return err
		}
		if st.GetLinked() {
			return errors.New("the sidecar still has its broker attached")
		}
		return nil
	})
	crashDone()

	// Another node leads within seconds, and node x does not.
	y, epoch := leaderOf(t, c, x)
	st, err := c.Admin(x).Status(context.Background(), &adminv1.StatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if st.GetRole() == adminv1.Role_ROLE_LEADER {
		t.Fatalf("node %d took the leader's role with no broker attached (node %d leads epoch %d)", x, y, epoch)
	}
	t.Logf("node %d won the first election as its broker crashed; node %d leads epoch %d", x, y, epoch)

	// The new leader takes writes, and node x's broker, back, follows it
	// and catches up.
	c.Nodes[y].Broker.Produce(t, 20, 100)
	c.StartBroker(x)
	c.WaitCaughtUp(20)
	c.AssertIdentical(20)
}

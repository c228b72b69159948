package sidecar_test

import (
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/tandem-io/tandem/sidecar/sidecartest"
)

// TestRestartsUnderLoad restarts followers' brokers and sidecars, and the
// leader's sidecar, at random while the leader keeps writing; in the end
// every node holds exactly the leader's log (no gap, nothing twice).
func TestRestartsUnderLoad(t *testing.T) {
	c := sidecartest.NewCluster(t, 3, 1, nil)
	c.StartAll()
	leader := c.WaitLeader()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
				leader.Produce(t, 5, 300)
			}
		}
	}()
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 12; i++ {
		id := int32(1 + rng.IntN(3))
		switch what := rng.IntN(3); {
		case id == 1:
			c.StopSidecar(1)
			c.StartSidecar(1)
		case what == 0:
			c.StopBroker(id)
			c.StartBroker(id)
		case what == 1:
			c.StopSidecar(id)
			c.StartSidecar(id)
		default:
			c.StopBroker(id)
			c.StopSidecar(id)
			c.StartSidecar(id)
			c.StartBroker(id)
		}
	}
	close(stop)
	wg.Wait()
	last := leader.WAL().LastLSN()
	c.WaitCaughtUp(last)
	c.AssertIdentical(last)
	t.Logf("%d entries identical on 3 nodes after 12 restarts", last)
}

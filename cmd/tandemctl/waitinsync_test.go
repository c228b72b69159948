package main

import (
	"strings"
	"testing"
	"time"

	"github.com/tandem-io/tandem/sidecar/sidecartest"
)

// TestWaitInSync: wait-in-sync, asked through a follower, returns at once
// on a cluster in sync; gives up after --max-wait while a node is down,
// saying which; and returns once that node is back in the ISR.
func TestWaitInSync(t *testing.T) {
	c := sidecartest.NewCluster(t, 3, 1, nil)
	c.StartAll()
	c.WaitLeader().Produce(t, 20, 100)
	c.WaitCaughtUp(20)

	out, err := ctl(t, "--sidecar", c.Peers[2], "wait-in-sync", "--max-wait", "10s")
	if err != nil || !strings.Contains(out, "in sync after") || !strings.Contains(out, "node 1 leads epoch 1 with ISR [1 2 3]") {
		t.Fatalf("wait-in-sync on a cluster in sync: %v\n%s", err, out)
	}

	c.StopSidecar(3)
	out, err = ctl(t, "--sidecar", c.Peers[2], "wait-in-sync", "--max-wait", "1s", "--interval", "100ms")
	if err == nil || !strings.Contains(err.Error(), "not in sync after 1s: node 3 is not connected to the leader") ||
		!strings.Contains(out, "waiting: node 3 is not connected to the leader") {
		t.Fatalf("wait-in-sync with node 3's sidecar stopped: %v\n%s, want it to give up naming node 3", err, out)
	}

	type result struct {
		out string
		err error
	}
	done := make(chan result, 1)
	go func() {
		out, err := ctl(t, "--sidecar", c.Peers[1], "wait-in-sync", "--max-wait", "30s", "--interval", "100ms")
		done <- result{out, err}
	}()
	time.Sleep(300 * time.Millisecond) // it is waiting (a sleep, not a condition: it may not return yet either way)
	c.StartSidecar(3)
	r := <-done
	if r.err != nil || !strings.Contains(r.out, "waiting: node 3") || !strings.Contains(r.out, "ISR [1 2 3]") {
		t.Fatalf("wait-in-sync while node 3 comes back: %v\n%s, want it to wait for node 3 and then return", r.err, r.out)
	}
}

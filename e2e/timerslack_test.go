package e2e

import (
	"runtime"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tandem-io/tandem/internal/testutil"
	"github.com/tandem-io/tandem/internal/timerslack"
)

// requireThreadSlack checks the timer slack of every thread of p.
func requireThreadSlack(t *testing.T, p *testutil.Process, want time.Duration) {
	t.Helper()
	slacks, err := testutil.ThreadTimerSlacks(p.Pid())
	if err != nil {
		t.Fatalf("%s: %v", p.Name(), err)
	}
	for tid, got := range slacks {
		if got != want {
			t.Errorf("%s (pid %d) thread %d: timer slack %v, want %v", p.Name(), p.Pid(), tid, got, want)
		}
	}
	if len(slacks) < 2 {
		t.Errorf("%s (pid %d): only %d threads readable", p.Name(), p.Pid(), len(slacks))
	}
}

// Both servers run every thread with --timer-slack (1 ms by default; see
// internal/timerslack for why), including the threads the Go runtime
// starts before main, and still do their work: the pair (broker attached
// to its sidecar) takes writes and serves them. --timer-slack 0 leaves the slack the process was
// started with.
func TestServersRunWithTimerSlack(t *testing.T) {
	c := startCluster(t, clusterOpts{nodes: 1})
	n := c.node(1)
	c.createTopic("slack")
	produceSync(t, kclient(t, []string{n.kafka}), "slack", seqValues("s", 10))
	got := consumeN(t, kclient(t, []string{n.kafka}, kgo.ConsumeTopics("slack")), 10, 15*time.Second)
	requireSameValues(t, "read back", values(got), seqValues("s", 10))
	requireThreadSlack(t, n.broker, timerslack.Default)
	requireThreadSlack(t, n.side, timerslack.Default)

	b := startBroker(t, "--timer-slack", "300us")
	requireThreadSlack(t, b.Proc, 300*time.Microsecond)

	runtime.LockOSThread()
	mine, err := timerslack.Current()
	runtime.UnlockOSThread()
	if err != nil {
		t.Fatal(err)
	}
	b = startBroker(t, "--timer-slack", "0")
	requireThreadSlack(t, b.Proc, mine)
}

package e2e

// The Docker tests run deploy/compose/compose.yaml: three broker+sidecar
// pairs in FROM-scratch containers built by scripts/images.sh. They need a
// Docker engine with Compose and fail (never skip) when there is none.

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tandem-io/tandem/internal/testutil"
)

// TestDockerComposeCluster: `compose up` brings up three healthy pairs
// whose processes all run as uid/gid 65532;
// kafka-python produces through node 1's published port and reads the
// messages back through node 2's (whose Metadata names node 1 the leader);
// tandemctl inside the network shows three replicas in sync, and verify
// finds the same WAL checksum on all three.
func TestDockerComposeCluster(t *testing.T) {
	c := startComposeCluster(t)
	for _, s := range []string{"sidecar-1", "sidecar-2", "sidecar-3"} {
		for _, svc := range []string{"", dockerReadiness} {
			if code, out := c.probe(s, svc); code != 0 {
				t.Fatalf("%s: grpc-health-probe service %q exited %d: %s", s, svc, code, out)
			}
		}
	}

	// Every process runs as the images' non-root user.
	for _, s := range []string{"broker-1", "broker-2", "broker-3", "sidecar-1", "sidecar-2", "sidecar-3"} {
		out := c.mustDocker(30*time.Second, "top", c.container(s), "-o", "pid,uid,gid,comm")
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) < 2 {
			t.Fatalf("docker top %s: no process\n%s", s, out)
		}
		for _, l := range lines[1:] {
			if f := strings.Fields(l); len(f) < 3 || f[1] != "65532" || f[2] != "65532" {
				t.Fatalf("%s runs a process as %q, want uid and gid 65532", s, l)
			}
		}
	}

	const topic = "docker-compose"
	want := c.produce(1, topic, 100, "m-")
	c.consume(2, topic, want)

	st := c.waitInSync(30*time.Second, 1, 2, 3)
	if got := slices.Sorted(slices.Values(st.GetIsr())); !slices.Equal(got, []int32{1, 2, 3}) {
		t.Fatalf("leader's ISR is %v, want [1 2 3]", got)
	}
	if len(st.GetReplicas()) != 2 {
		t.Fatalf("leader reports %d replicas, want 2 followers", len(st.GetReplicas()))
	}
	out, err := c.tandemctl(1, "status")
	if err != nil {
		t.Fatalf("tandemctl status: %v\n%s", err, out)
	}
	t.Logf("tandemctl status on node 1:\n%s", out)
	out, err = c.tandemctl(1, "verify")
	if err != nil {
		t.Fatalf("tandemctl verify: %v\n%s", err, out)
	}
	t.Logf("tandemctl verify:\n%s", out)
}

// TestDockerComposeFollowerPartition: cut a follower's sidecar off the
// network. Its readiness turns NOT_SERVING (Docker marks it unhealthy)
// while its liveness stays SERVING, and the leader keeps taking writes
// without it. Reconnected, it catches up and becomes ready again.
func TestDockerComposeFollowerPartition(t *testing.T) {
	c := startComposeCluster(t)
	const topic = "docker-partition"
	want := c.produce(1, topic, 50, "before-")
	c.waitInSync(30*time.Second, 1, 2, 3)

	const cut = "sidecar-3"
	netName := c.network(cut)
	c.mustDocker(time.Minute, "network", "disconnect", netName, c.container(cut))
	t.Logf("disconnected %s from %s", cut, netName)

	// Liveness must stay SERVING the whole time: it is checked on every
	// poll while readiness changes, so a single lapse is caught.
	var liveErr error
	live := func() error {
		if code, out := c.probe(cut, ""); code != 0 {
			return fmt.Errorf("%s liveness: grpc-health-probe exited %d (%s); a lost leader or lag must never fail liveness", cut, code, out)
		}
		return nil
	}
	checkLive := func() {
		t.Helper()
		if err := live(); err != nil {
			t.Fatal(err)
		}
	}
	testutil.Eventually(t, 30*time.Second, func() error {
		if liveErr = live(); liveErr != nil {
			return nil // stop polling; reported below
		}
		if code, out := c.probe(cut, dockerReadiness); code != dockerProbeNotServing {
			return fmt.Errorf("readiness probe exited %d (%s), want %d (NOT_SERVING)", code, out, dockerProbeNotServing)
		}
		return nil
	})
	if liveErr != nil {
		t.Fatal(liveErr)
	}
	c.waitHealth(30*time.Second, "unhealthy", cut)
	checkLive()
	st, err := c.status(3)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("node 3 while cut off: ready %v (%s), streaming %v", st.GetReady(), st.GetNotReadyReason(), st.GetStreaming())

	// The leader keeps going with the ISR it has left.
	want = append(want, c.produce(1, topic, 50, "during-")...)
	testutil.Eventually(t, 30*time.Second, func() error {
		st, err := c.status(1)
		if err != nil {
			return err
		}
		if slices.Contains(st.GetIsr(), 3) {
			return fmt.Errorf("node 3 still in the leader's ISR %v", st.GetIsr())
		}
		return nil
	})
	checkLive()

	c.mustDocker(time.Minute, "network", "connect", "--alias", cut, netName, c.container(cut))
	t.Logf("reconnected %s", cut)
	testutil.Eventually(t, 60*time.Second, func() error {
		if liveErr = live(); liveErr != nil {
			return nil // stop polling; reported below
		}
		if code, out := c.probe(cut, dockerReadiness); code != 0 {
			return fmt.Errorf("readiness probe exited %d (%s)", code, out)
		}
		return nil
	})
	if liveErr != nil {
		t.Fatal(liveErr)
	}
	c.waitInSync(60*time.Second, 1, 2, 3)
	c.waitHealth(30*time.Second, "healthy", cut)
	c.consume(3, topic, want)
}

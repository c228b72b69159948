package sidecar_test

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tandem-io/tandem/internal/testutil"
	"github.com/tandem-io/tandem/sidecar/sidecartest"
)

// A follower whose WAL's file system fills up (static leader): its sidecar
// reports it not ready with the broker's error, the leader drops it from
// the ISR, and promoting it is refused even with --force (it could take no
// writes). Once the file system has room, it writes again, catches up
// without a restart and holds the same log.
func TestFollowerWithFullDisk(t *testing.T) {
	c := sidecartest.NewCluster(t, 3, 1, fastFailover)
	c.SegmentBytes = 1 << 20
	walDir := filepath.Join(c.Nodes[2].Dir, "wal")
	testutil.MountTmpfs(t, walDir, 2<<20)
	t.Cleanup(func() { c.StopBroker(2) }) // before the unmount: its WAL is on the tmpfs
	c.StartAll()
	b1 := c.WaitLeader()
	b1.Produce(t, 64, 64<<10) // 4 MiB: node 2 has room for about half

	testutil.Eventually(t, 15*time.Second, func() error {
		st := statusOf(t, c, 2)
		if !strings.Contains(st.GetStorageError(), "no space left on device") || st.GetStorageFailingSince() == nil {
			return fmt.Errorf("node 2 storage error %q", st.GetStorageError())
		}
		if st.GetReady() || !strings.Contains(st.GetNotReadyReason(), "cannot write its WAL") {
			return fmt.Errorf("node 2 ready %v (%q), want not ready for its WAL", st.GetReady(), st.GetNotReadyReason())
		}
		if isr := statusOf(t, c, 1).GetIsr(); len(isr) != 2 {
			return fmt.Errorf("leader's ISR %v, want node 2 dropped", isr)
		}
		return nil
	})
	// While the disk stays full, the follower retries with backoff, not
	// at the rate the leader can resend (every few ms).
	reconnects := func() float64 { return gather(t, c.Nodes[2].Sidecar)["tandem_sidecar_reconnects_total"] }
	before := reconnects()
	time.Sleep(4 * time.Second)
	if n := reconnects() - before; n > 8 {
		t.Fatalf("node 2 reopened its stream %v times in 4s with its disk full, want backoff (at most 8)", n)
	}
	for _, force := range []bool{false, true} {
		if _, err := promote(t, c, 2, force); status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "cannot write its WAL") {
			t.Fatalf("promote node 2 (force %v) with its WAL's file system full: %v, want FailedPrecondition for its WAL", force, err)
		}
	}

	testutil.ResizeTmpfs(t, walDir, 32<<20)
	b1.Produce(t, 4, 1000)
	c.WaitCaughtUp(68)
	testutil.Eventually(t, 15*time.Second, func() error {
		st := statusOf(t, c, 2)
		if st.GetStorageError() != "" || !st.GetReady() {
			return fmt.Errorf("node 2 storage error %q, ready %v (%q)", st.GetStorageError(), st.GetReady(), st.GetNotReadyReason())
		}
		if isr := statusOf(t, c, 1).GetIsr(); len(isr) != 3 {
			return fmt.Errorf("leader's ISR %v, want node 2 back", isr)
		}
		return nil
	})
	c.AssertIdentical(68)
}

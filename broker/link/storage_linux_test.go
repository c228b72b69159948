package link_test

import (
	"errors"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tandem-io/tandem/broker/wal"
	linkv1 "github.com/tandem-io/tandem/gen/tandem/link/v1"
	"github.com/tandem-io/tandem/internal/testutil"
)

// TestStorageState: a broker whose WAL appends fail (a full file system)
// tells its sidecar, but only a sidecar whose ClusterView says it reads
// StorageState (an older one would refuse the message); it reports the
// failure once, and again when an append works. It also reports where its
// WAL starts, and again when retention deletes segments.
func TestStorageState(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "wal")
	testutil.MountTmpfs(t, dir, 2<<20)
	h := newHarnessWith(t, wal.Options{Sync: wal.SyncNone, SegmentBytes: 1 << 20, Dir: dir}, nil, nil)
	s, _ := h.attach()
	h.send(s, view(linkv1.Role_ROLE_LEADER)) // reads_storage_state unset

	var werr error
	for i := 0; i < 100 && werr == nil; i++ { // 100 x 64 KiB on 2 MiB
		_, werr = h.b.w.Append(1, wal.TypeRecordBatch, make([]byte, 64<<10))
	}
	if !errors.Is(werr, syscall.ENOSPC) {
		t.Fatalf("filling the WAL's file system: %v, want ENOSPC", werr)
	}

	msgs := make(chan *linkv1.AttachRequest, 16)
	go func() {
		for {
			m, err := s.Recv()
			if err != nil {
				close(msgs)
				return
			}
			msgs <- m
		}
	}()
	next := func(within time.Duration) *linkv1.StorageState {
		t.Helper()
		deadline := time.After(within)
		for {
			select {
			case m, ok := <-msgs:
				if !ok {
					t.Fatal("the stream ended")
				}
				if st := m.GetStorage(); st != nil {
					return st
				}
			case <-deadline:
				return nil
			}
		}
	}
	if st := next(500 * time.Millisecond); st != nil {
		t.Fatalf("StorageState %v sent to a sidecar that did not say it reads it", st)
	}

	v := view(linkv1.Role_ROLE_LEADER)
	v.GetClusterView().ReadsStorageState = true
	h.send(s, v)
	st := next(10 * time.Second)
	if st == nil || !strings.Contains(st.GetError(), "no space left on device") || st.GetFailingSinceUnixMs() == 0 ||
		time.Since(time.UnixMilli(st.GetFailingSinceUnixMs())) > time.Minute || st.GetFirstLsn() != 1 {
		t.Fatalf("after the view that reads it: StorageState %v, want the ENOSPC and when it began", st)
	}
	if st := next(300 * time.Millisecond); st != nil {
		t.Fatalf("a second StorageState %v without a change", st)
	}

	testutil.ResizeTmpfs(t, dir, 16<<20)
	if _, err := h.b.w.Append(1, wal.TypeRecordBatch, []byte("room again")); err != nil {
		t.Fatalf("append after growing the file system: %v", err)
	}
	if st := next(10 * time.Second); st == nil || st.GetError() != "" || st.GetFailingSinceUnixMs() != 0 {
		t.Fatalf("after an append worked again: StorageState %v, want an empty one", st)
	}

	if n, err := h.b.w.DeleteSegmentsBefore(h.b.w.LastLSN()); err != nil || n == 0 {
		t.Fatalf("retention deleted %d segments (%v); the test needs at least one deleted", n, err)
	}
	if st := next(10 * time.Second); st == nil || st.GetError() != "" || st.GetFirstLsn() <= 1 || st.GetFirstLsn() != h.b.w.FirstLSN() {
		t.Fatalf("after retention deleted segments: StorageState %v, want first LSN %d and no error", st, h.b.w.FirstLSN())
	}
}

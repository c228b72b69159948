package wal

import (
	"errors"
	"syscall"
	"testing"
	"time"

	"github.com/tandem-io/tandem/internal/testutil"
)

// changed reports whether ch is closed.
func changed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// TestWriteStateFullDisk: appends on a full file system fail with ENOSPC,
// the write state says so (once, when it starts) and keeps the entries
// written before; after the file system grows, the next append works, the
// state clears, and nothing written is lost.
func TestWriteStateFullDisk(t *testing.T) {
	dir := t.TempDir()
	testutil.MountTmpfs(t, dir, 4<<20)
	// openLog's cleanup (Close) is registered after MountTmpfs's, so it
	// runs first: the log is closed before the tmpfs is unmounted.
	l := openLog(t, dir, func(o *Options) { o.SegmentBytes = 1 << 20 })
	st, ch := l.WriteState()
	if st.Err != nil || !st.Since.IsZero() {
		t.Fatalf("write state of a new log: %+v, want no error", st)
	}

	var lastOK uint64
	var werr error
	for i := 0; i < 200 && werr == nil; i++ { // 200 x 64 KiB: more than the 4 MiB
		var p Pos
		p, werr = l.Append(1, TypeRecordBatch, testPayload(l.LastLSN()+1, 64<<10))
		if werr == nil {
			lastOK = p.LSN
		}
	}
	if !errors.Is(werr, syscall.ENOSPC) {
		t.Fatalf("appending 12 MiB to a 4 MiB file system: error %v, want ENOSPC", werr)
	}
	if !changed(ch) {
		t.Fatal("the write-state channel was not closed when appends began failing")
	}
	st, ch = l.WriteState()
	if !errors.Is(st.Err, syscall.ENOSPC) || st.Since.IsZero() || time.Since(st.Since) > time.Minute {
		t.Fatalf("write state after ENOSPC: %+v, want ENOSPC and when it began", st)
	}
	// Failing again is no change to report.
	if _, err := l.Append(1, TypeRecordBatch, testPayload(l.LastLSN()+1, 64<<10)); err == nil {
		t.Fatal("an append on the full file system worked")
	}
	if changed(ch) {
		t.Fatal("the write-state channel was closed by a second failure")
	}
	if got := l.LastLSN(); got != lastOK {
		t.Fatalf("LastLSN %d after failed appends, want %d (the last that worked)", got, lastOK)
	}

	testutil.ResizeTmpfs(t, dir, 32<<20)
	appendN(t, l, 1, 4, 64<<10)
	if !changed(ch) {
		t.Fatal("the write-state channel was not closed when appends worked again")
	}
	if st, _ := l.WriteState(); st.Err != nil || !st.Since.IsZero() {
		t.Fatalf("write state after a successful append: %+v, want no error", st)
	}
	es := readAll(t, l, 1)
	checkEntries(t, es, 1, lastOK+4, 64<<10)
}

// TestWriteStateFailedLog: after a failed fsync the log refuses every write
// until it is reopened, and the write state keeps saying so; an entry
// refused for its epoch does not count as a storage failure.
func TestWriteStateFailedLog(t *testing.T) {
	l := openLog(t, t.TempDir(), nil)
	appendN(t, l, 2, 3, 100)
	if _, err := l.Append(1, TypeRecordBatch, []byte("stale")); !errors.Is(err, ErrStaleEpoch) {
		t.Fatalf("append with an older epoch: %v, want ErrStaleEpoch", err)
	}
	if st, _ := l.WriteState(); st.Err != nil {
		t.Fatalf("write state after a stale-epoch refusal: %v, want none", st.Err)
	}

	f := failFsync(t, l, anyPath)
	if _, err := l.Append(2, TypeRecordBatch, []byte("lost")); err != nil {
		t.Fatal(err)
	}
	f.waitEntered(t)
	_, ch := l.WriteState()
	f.open()
	eventually(t, 10*time.Second, "the failed fsync to show in the write state", func() bool { return changed(ch) })
	st, ch := l.WriteState()
	if !errors.Is(st.Err, syscall.EIO) || st.Since.IsZero() {
		t.Fatalf("write state after a failed fsync: %+v, want EIO", st)
	}
	if _, err := l.Append(2, TypeRecordBatch, []byte("refused")); !errors.Is(err, syscall.EIO) {
		t.Fatalf("append after a failed fsync: %v, want the fsync's EIO", err)
	}
	if st, _ := l.WriteState(); !errors.Is(st.Err, syscall.EIO) || changed(ch) {
		t.Fatalf("write state after a refused append: %+v (changed %v), want EIO unchanged", st, changed(ch))
	}
	if err := l.Close(); !errors.Is(err, syscall.EIO) {
		t.Fatalf("Close after a failed fsync: %v, want the fsync's EIO", err)
	}
}

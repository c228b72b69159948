//go:build linux

package wal

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// residentBytes is how much of the file at path is in the page cache
// (mincore(2) over a read-only mapping, which faults nothing in).
func residentBytes(t *testing.T, path string) int64 {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || st.Size() == 0 {
		return 0
	}
	m, err := unix.Mmap(int(f.Fd()), 0, int(st.Size()), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Fatalf("mmap %s: %v", path, err)
	}
	defer unix.Munmap(m)
	page := os.Getpagesize()
	vec := make([]byte, (len(m)+page-1)/page)
	if _, _, errno := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&m[0])), uintptr(len(m)), uintptr(unsafe.Pointer(&vec[0]))); errno != 0 {
		t.Fatalf("mincore %s: %v", path, errno)
	}
	var n int64
	for _, v := range vec {
		if v&1 != 0 {
			n += int64(page)
		}
	}
	return n
}

// TestPageCacheRelease: with PageCacheBytes set, fsynced WAL data behind
// the window leaves the page cache, the newest data stays, and every entry
// still reads back unchanged (from the disk) through a Reader and ReadAt.
func TestPageCacheRelease(t *testing.T) {
	dir := t.TempDir()
	var fs unix.Statfs_t
	if err := unix.Statfs(dir, &fs); err != nil {
		t.Fatal(err)
	}
	if fs.Type == unix.TMPFS_MAGIC {
		t.Fatalf("%s is on tmpfs, where page cache is the storage and cannot be released: run the tests with TMPDIR on a disk file system", dir)
	}
	const (
		window  = 8 << 20
		segment = 16 << 20
		payload = 64 << 10
		entries = 1024 // 64 MiB: four segments
	)
	l := openLog(t, dir, func(o *Options) {
		o.SegmentBytes = segment
		o.PageCacheBytes = window
	})
	var ps []Pos
	for lsn := uint64(1); lsn <= entries; lsn++ {
		p, err := l.Append(1, TypeRecordBatch, testPayload(lsn, payload))
		if err != nil {
			t.Fatal(err)
		}
		ps = append(ps, p)
		if lsn%16 == 0 { // a group commit every 1 MiB
			if err := l.WaitDurable(context.Background(), lsn); err != nil {
				t.Fatal(err)
			}
		}
	}
	if got := l.Stats().CacheReleases; got == 0 {
		t.Fatalf("no page cache released after %d MiB with a %d MiB window", entries*payload>>20, window>>20)
	}

	segs := l.Segments()
	if len(segs) < 4 {
		t.Fatalf("%d segments, want at least 4", len(segs))
	}
	var total, resident int64
	for _, s := range segs {
		total += s.Bytes
		resident += residentBytes(t, s.Path)
	}
	// The window, plus at most a release chunk still in flight at either
	// end of it.
	if limit := int64(window + 2*releaseChunk); resident > limit {
		t.Errorf("%d MiB of %d MiB of WAL in the page cache, want at most %d MiB", resident>>20, total>>20, limit>>20)
	}
	last := segs[len(segs)-1]
	if r := residentBytes(t, last.Path); r < last.Bytes/2 {
		t.Errorf("newest segment %s: %d of %d bytes in the page cache; the tail should stay in memory",
			filepath.Base(last.Path), r, last.Bytes)
	}

	// Everything reads back, and reading old data does not pull it all
	// back into memory.
	r, err := l.NewReader(1)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for want := uint64(1); ; want++ {
		e, _, err := r.Next()
		if errors.Is(err, io.EOF) {
			if want != entries+1 {
				t.Fatalf("reader ended at LSN %d, want %d", want-1, entries)
			}
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if e.LSN != want || !bytes.Equal(e.Payload, testPayload(want, payload)) {
			t.Fatalf("reader: LSN %d (want %d) or payload differs", e.LSN, want)
		}
	}
	for _, p := range ps {
		e, err := l.ReadAt(p)
		if err != nil || !bytes.Equal(e.Payload, testPayload(p.LSN, payload)) {
			t.Fatalf("ReadAt(LSN %d): %v, or payload differs", p.LSN, err)
		}
	}
	first := segs[0]
	if r := residentBytes(t, first.Path); r > first.Bytes/2 {
		t.Errorf("oldest segment %s: %d of %d bytes in the page cache after ReadAt of all of it; reads behind the window should not keep it",
			filepath.Base(first.Path), r, first.Bytes)
	}
}

// TestPageCacheKeptWhenOff: a negative PageCacheBytes leaves the page cache
// alone.
func TestPageCacheKeptWhenOff(t *testing.T) {
	l := openLog(t, t.TempDir(), func(o *Options) {
		o.SegmentBytes = 4 << 20
		o.PageCacheBytes = -1
	})
	for lsn := uint64(1); lsn <= 256; lsn++ {
		if _, err := l.Append(1, TypeRecordBatch, testPayload(lsn, 64<<10)); err != nil {
			t.Fatal(err)
		}
		if err := l.WaitDurable(context.Background(), lsn); err != nil {
			t.Fatal(err)
		}
	}
	if got := l.Stats().CacheReleases; got != 0 {
		t.Fatalf("%d page cache releases with PageCacheBytes < 0", got)
	}
}

package wal

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math/rand"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestAppendReadRoundTrip(t *testing.T) {
	tests := []struct {
		name   string
		policy SyncPolicy
		sizes  []int
	}{
		{"every-batch/small", SyncEveryBatch, []int{0, 1, 8, 100, 4096}},
		{"every-batch/larger-than-read-ahead", SyncEveryBatch, []int{readAheadSize + 1, 10, readAheadSize * 2}},
		{"interval", SyncInterval, []int{0, 16 << 10, 3}},
		{"none", SyncNone, []int{5, 64 << 10, 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			l := openLog(t, dir, func(o *Options) { o.Sync = tt.policy; o.SyncInterval = 10 * time.Millisecond })
			var want []Entry
			var pos []Pos
			for i, size := range tt.sizes {
				e := Entry{LSN: uint64(i + 1), Epoch: 7, Type: EntryType(i%8 + 1), Payload: testPayload(uint64(i+1), size)}
				p, err := l.Append(e.Epoch, e.Type, e.Payload)
				if err != nil {
					t.Fatalf("Append: %v", err)
				}
				if p.LSN != e.LSN || p.Segment != 1 {
					t.Fatalf("Append returned %+v, want LSN %d in segment 1", p, e.LSN)
				}
				want = append(want, e)
				pos = append(pos, p)
			}
			if err := l.WaitDurable(context.Background(), uint64(len(want))); err != nil {
				t.Fatalf("WaitDurable: %v", err)
			}
			check := func(l *Log) {
				t.Helper()
				got := readAll(t, l, 1)
				if len(got) != len(want) {
					t.Fatalf("read %d entries, want %d", len(got), len(want))
				}
				for i := range want {
					if got[i].LSN != want[i].LSN || got[i].Epoch != want[i].Epoch || got[i].Type != want[i].Type || !bytes.Equal(got[i].Payload, want[i].Payload) {
						t.Fatalf("entry %d: got LSN %d epoch %d type %v len %d, want %+v", i, got[i].LSN, got[i].Epoch, got[i].Type, len(got[i].Payload), want[i].LSN)
					}
					e, err := l.ReadAt(pos[i])
					if err != nil {
						t.Fatalf("ReadAt(%+v): %v", pos[i], err)
					}
					if e.LSN != want[i].LSN || !bytes.Equal(e.Payload, want[i].Payload) {
						t.Fatalf("ReadAt(%+v) returned LSN %d", pos[i], e.LSN)
					}
				}
				if l.FirstLSN() != 1 || l.LastLSN() != uint64(len(want)) || l.DurableLSN() != uint64(len(want)) {
					t.Fatalf("First/Last/Durable = %d/%d/%d", l.FirstLSN(), l.LastLSN(), l.DurableLSN())
				}
			}
			check(l)
			closeLog(t, l)
			l2 := openLog(t, dir, func(o *Options) { o.Sync = tt.policy })
			check(l2)
			if h := l2.EpochHistory(); !slices.Equal(h, []EpochStart{{7, 1}}) {
				t.Fatalf("EpochHistory = %v", h)
			}
		})
	}
}

func TestEmptyLog(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, nil)
	if l.FirstLSN() != 1 || l.LastLSN() != 0 || l.DurableLSN() != 0 {
		t.Fatalf("First/Last/Durable = %d/%d/%d, want 1/0/0", l.FirstLSN(), l.LastLSN(), l.DurableLSN())
	}
	if got := readAll(t, l, 1); len(got) != 0 {
		t.Fatalf("read %d entries from an empty log", len(got))
	}
	if _, err := l.NewReader(0); !errors.Is(err, ErrCompacted) {
		t.Fatalf("NewReader(0) = %v, want ErrCompacted", err)
	}
	segs := l.Segments()
	if len(segs) != 1 || filepath.Base(segs[0].Path) != "00000000000000000001.wal" || segs[0].LastLSN != 0 {
		t.Fatalf("Segments = %+v", segs)
	}
	closeLog(t, l)
	l = openLog(t, dir, nil)
	if l.FirstLSN() != 1 || l.LastLSN() != 0 {
		t.Fatalf("after reopen First/Last = %d/%d", l.FirstLSN(), l.LastLSN())
	}
}

func TestReaderAcrossSegmentRolls(t *testing.T) {
	dir := t.TempDir()
	const size = 500
	l := openLog(t, dir, func(o *Options) { o.SegmentBytes = 4096 })

	// A reader opened before anything is written follows the log through
	// every roll.
	follower, err := l.NewReader(1)
	if err != nil {
		t.Fatal(err)
	}
	defer follower.Close()
	var followed []Entry
	for round := 0; round < 10; round++ {
		appendN(t, l, 1, 20, size)
		for {
			e, _, err := follower.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("follower: %v", err)
			}
			followed = append(followed, e)
		}
	}
	checkEntries(t, followed, 1, 200, size)

	segs := l.Segments()
	if len(segs) < 20 {
		t.Fatalf("only %d segments; expected many rolls", len(segs))
	}
	for i, s := range segs {
		if s.Bytes > 4096 {
			t.Errorf("segment %s has %d bytes, more than SegmentBytes", s.Path, s.Bytes)
		}
		if filepath.Base(s.Path) != segmentName(s.FirstLSN) {
			t.Errorf("segment %d path %s does not match first LSN %d", i, s.Path, s.FirstLSN)
		}
		if i > 0 && s.FirstLSN != segs[i-1].LastLSN+1 {
			t.Errorf("segment %d starts at %d after %d", i, s.FirstLSN, segs[i-1].LastLSN)
		}
	}
	if st := l.Stats(); st.Rolls != uint64(len(segs)-1) {
		t.Errorf("Stats.Rolls = %d, want %d", st.Rolls, len(segs)-1)
	}
	for _, from := range []uint64{1, 7, 8, 9, 100, 199, 200, 201} {
		checkEntries(t, readAll(t, l, from), from, 200, size)
	}
	closeLog(t, l)
	l = openLog(t, dir, func(o *Options) { o.SegmentBytes = 4096 })
	checkEntries(t, readAll(t, l, 1), 1, 200, size)
	checkEntries(t, readAll(t, l, 123), 123, 200, size)
	appendN(t, l, 1, 5, size)
	checkEntries(t, readAll(t, l, 190), 190, 205, size)
}

func TestSparseIndexSeek(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, func(o *Options) { o.Sync = SyncNone })
	appendN(t, l, 1, 2000, 1000) // ~2 MB in one segment
	check := func(l *Log) {
		l.mu.Lock()
		n := len(l.segs[0].index)
		l.mu.Unlock()
		if n < 20 || n > 40 {
			t.Fatalf("index of a 2 MB segment has %d points, want one per 64 KiB", n)
		}
		for _, from := range []uint64{1, 65, 66, 1000, 1999, 2000} {
			r, err := l.NewReader(from)
			if err != nil {
				t.Fatal(err)
			}
			e, p, err := r.Next()
			r.Close()
			if err != nil || e.LSN != from || !bytes.Equal(e.Payload, testPayload(from, 1000)) {
				t.Fatalf("NewReader(%d).Next() = LSN %d, %v", from, e.LSN, err)
			}
			if want := int64(from-1) * int64(frameSize(1000)); p.Offset != want {
				t.Fatalf("LSN %d at offset %d, want %d", from, p.Offset, want)
			}
		}
	}
	check(l)
	closeLog(t, l)
	check(openLog(t, dir, nil))
}

func TestReaderEOFFollowsDurable(t *testing.T) {
	l := openLog(t, t.TempDir(), nil)
	gate := gateSyncer(t, l)
	r, err := l.NewReader(1)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if _, _, err := r.Next(); !errors.Is(err, io.EOF) {
		t.Fatalf("Next on empty log = %v, want io.EOF", err)
	}
	if _, err := l.Append(1, TypeNoop, nil); err != nil {
		t.Fatal(err)
	}
	gate.waitEntered(t) // the syncer holds before its fsync
	if _, _, err := r.Next(); !errors.Is(err, io.EOF) {
		t.Fatalf("Next before fsync = %v, want io.EOF (written but not durable)", err)
	}
	if d := l.DurableLSN(); d != 0 {
		t.Fatalf("DurableLSN = %d before fsync", d)
	}
	// The entry is readable by position right away, though.
	if e, err := l.ReadAt(Pos{LSN: 1, Segment: 1, Offset: 0}); err != nil || e.Type != TypeNoop {
		t.Fatalf("ReadAt = %+v, %v", e, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := l.WaitDurable(ctx, 1); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitDurable while syncer held = %v", err)
	}

	ch := l.Durable()
	gate.permits <- struct{}{}
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatal("Durable() never fired")
	}
	if d := l.DurableLSN(); d != 1 {
		t.Fatalf("DurableLSN = %d, want 1", d)
	}
	if e, _, err := r.Next(); err != nil || e.LSN != 1 {
		t.Fatalf("Next = %d, %v", e.LSN, err)
	}
	if _, _, err := r.Next(); !errors.Is(err, io.EOF) {
		t.Fatalf("Next at end = %v, want io.EOF", err)
	}
	gate.open()
	appendN(t, l, 1, 3, 10)
	for want := uint64(2); want <= 4; want++ {
		if e, _, err := r.Next(); err != nil || e.LSN != want {
			t.Fatalf("Next = %d, %v; want %d", e.LSN, err, want)
		}
	}
	if _, _, err := r.Next(); !errors.Is(err, io.EOF) {
		t.Fatalf("Next at end = %v, want io.EOF", err)
	}
}

func TestGroupCommit(t *testing.T) {
	l := openLog(t, t.TempDir(), nil)
	gate := gateSyncer(t, l)
	if _, err := l.Append(1, TypeNoop, nil); err != nil {
		t.Fatal(err)
	}
	gate.waitEntered(t)

	const writers = 64
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for i := 0; i < writers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p, err := l.Append(1, TypeRecordBatch, testPayload(uint64(i), 100))
			if err == nil {
				err = l.WaitDurable(context.Background(), p.LSN)
			}
			errs <- err
		}()
	}
	eventually(t, 10*time.Second, "all writers appended", func() bool { return l.LastLSN() == writers+1 })
	before := l.Stats().Fsyncs
	gate.open()
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("writer: %v", err)
		}
	}
	if n := l.Stats().Fsyncs - before; n != 1 {
		t.Fatalf("%d fsyncs released %d waiters, want exactly 1", n, writers)
	}
	if d := l.DurableLSN(); d != writers+1 {
		t.Fatalf("DurableLSN = %d", d)
	}
}

func TestSyncPolicies(t *testing.T) {
	t.Run("interval", func(t *testing.T) {
		l := openLog(t, t.TempDir(), func(o *Options) { o.Sync = SyncInterval; o.SyncInterval = 5 * time.Millisecond })
		if _, err := l.Append(1, TypeNoop, nil); err != nil {
			t.Fatal(err)
		}
		if d := l.DurableLSN(); d != 1 {
			t.Fatalf("DurableLSN = %d right after Append, want 1 (durable once written)", d)
		}
		eventually(t, 10*time.Second, "periodic fsync", func() bool { return l.SyncedLSN() == 1 && l.Stats().Fsyncs >= 1 })
	})
	t.Run("none", func(t *testing.T) {
		dir := t.TempDir()
		l := openLog(t, dir, func(o *Options) { o.Sync = SyncNone })
		appendN(t, l, 1, 10, 10)
		if st := l.Stats(); st.Fsyncs != 0 || l.SyncedLSN() != 0 || l.DurableLSN() != 10 {
			t.Fatalf("Fsyncs %d Synced %d Durable %d; want 0, 0, 10", st.Fsyncs, l.SyncedLSN(), l.DurableLSN())
		}
		closeLog(t, l)
		if st := l.Stats(); st.Fsyncs != 1 {
			t.Fatalf("Close did %d fsyncs, want 1", st.Fsyncs)
		}
	})
	t.Run("parse", func(t *testing.T) {
		for in, want := range map[string]SyncPolicy{"every-batch": SyncEveryBatch, "interval": SyncInterval, "none": SyncNone} {
			if got, err := ParseSyncPolicy(in); err != nil || got != want || got.String() != in {
				t.Errorf("ParseSyncPolicy(%q) = %v, %v", in, got, err)
			}
		}
		if _, err := ParseSyncPolicy("sometimes"); err == nil {
			t.Error("ParseSyncPolicy(sometimes) succeeded")
		}
	})
}

// lastSegmentPath returns the path of the active segment.
func lastSegmentPath(l *Log) string {
	s := l.Segments()
	return s[len(s)-1].Path
}

func TestTornTail(t *testing.T) {
	const size = 300
	frame := appendFrame(nil, Entry{LSN: 31, Epoch: 1, Type: TypeRecordBatch, Payload: testPayload(31, size)})
	badCRC := slices.Clone(frame)
	badCRC[len(badCRC)-1] ^= 0xff
	garbage := make([]byte, 3000)
	rand.New(rand.NewSource(1)).Read(garbage)
	tests := []struct {
		name string
		tail []byte
	}{
		{"half a frame", frame[:len(frame)/2]},
		{"header only", frame[:frameHeaderSize]},
		{"few bytes", frame[:5]},
		{"zeros", make([]byte, 4096)},
		{"garbage", garbage},
		{"whole frame with bad crc", badCRC},
		{"half frame then zeros", append(slices.Clone(frame[:100]), make([]byte, 8192)...)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			opts := func(o *Options) { o.SegmentBytes = 4096 }
			l := openLog(t, dir, opts)
			appendN(t, l, 1, 30, size)
			path := lastSegmentPath(l)
			closeLog(t, l)
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.Write(tt.tail); err != nil {
				t.Fatal(err)
			}
			f.Close()

			logger, logs := testLogger(t)
			var recovered []Entry
			var recoveredPos []Pos
			onRecover := func(e Entry, pos Pos, size int) bool {
				if size != len(e.Payload) {
					t.Errorf("OnRecover LSN %d: size %d, payload %d bytes", e.LSN, size, len(e.Payload))
				}
				e.Payload = slices.Clone(e.Payload)
				recovered = append(recovered, e)
				recoveredPos = append(recoveredPos, pos)
				return true
			}
			l, err = Open(Options{Dir: dir, SegmentBytes: 4096, Logger: logger, OnRecover: onRecover})
			if err != nil {
				t.Fatalf("Open with torn tail: %v", err)
			}
			// Recovery handed over every entry that is in the log, with
			// its position, and nothing of the torn tail.
			checkEntries(t, recovered, 1, 30, size)
			for i, pos := range recoveredPos {
				if e, err := l.ReadAt(pos); err != nil || e.LSN != uint64(i+1) {
					t.Fatalf("OnRecover position %+v: ReadAt gives LSN %d, %v; want %d", pos, e.LSN, err, i+1)
				}
			}
			t.Cleanup(func() { l.Close() })
			out := logs.String()
			wants := []string{"torn tail", filepath.Base(path), fmt.Sprintf("offset=%d", fi.Size()), fmt.Sprintf("dropped_bytes=%d", len(tt.tail))}
			if tt.name == "zeros" {
				// Indistinguishable from preallocated space: no entry
				// was there, so it is removed without a warning.
				wants = []string{"zero-filled space", filepath.Base(path), fmt.Sprintf("offset=%d", fi.Size()), fmt.Sprintf("bytes=%d", len(tt.tail))}
			}
			for _, want := range wants {
				if !strings.Contains(out, want) {
					t.Errorf("log output lacks %q:\n%s", want, out)
				}
			}
			if fi2, _ := os.Stat(path); fi2.Size() != fi.Size() {
				t.Errorf("file is %d bytes after recovery, want %d", fi2.Size(), fi.Size())
			}
			if l.LastLSN() != 30 {
				t.Fatalf("LastLSN = %d, want 30", l.LastLSN())
			}
			checkEntries(t, readAll(t, l, 1), 1, 30, size)
			appendN(t, l, 1, 3, size)
			checkEntries(t, readAll(t, l, 1), 1, 33, size)
			closeLog(t, l)
			l = openLog(t, dir, opts)
			checkEntries(t, readAll(t, l, 1), 1, 33, size)
		})
	}
}

// TestPowerLossHole: after a power failure, data written since the last
// completed fsync may have reached the disk in any order, sector by
// sector, so the active segment can hold [fsynced frames][the zeros that
// were there before][later frames that did land]. A hole whose frame
// provably never reached the disk (length field and the rest of its
// sector zero) is a torn tail: the file is cut there with a warning. A
// hole starting inside a frame, or in a sealed segment, cannot be told
// from corruption of fsynced data and stops Open.
func TestPowerLossHole(t *testing.T) {
	const size = 100 // frames of 121 bytes
	fs := int64(frameSize(size))
	frames := func(from, to uint64) []byte {
		var b []byte
		for lsn := from; lsn <= to; lsn++ {
			b = appendFrame(b, Entry{LSN: lsn, Epoch: 1, Type: TypeRecordBatch, Payload: testPayload(lsn, size)})
		}
		return b
	}
	tests := []struct {
		name     string
		sealed   bool  // the hole is in a sealed segment (LSNs 1-60; 61-90 follow)
		from, to int64 // bytes zeroed: the sectors that did not reach the disk
		// want: the log keeps LSNs 1..last, cut at offset off; or, if
		// corrupt, Open fails naming offset off.
		corrupt   bool
		last      uint64
		off       int64
		preallocd bool // zeros after the last frame (preallocated space)
	}{
		{name: "from the fsync boundary to the end of the page", from: 30 * fs, to: 4096, last: 30, off: 30 * fs},
		{name: "from the fsync boundary over whole pages", from: 30 * fs, to: 8192, last: 30, off: 30 * fs, preallocd: true},
		{name: "length field across a sector boundary", from: 55 * fs, to: 7168, last: 55, off: 55 * fs},
		{name: "length field zero, rest of its sector not", from: 30 * fs, to: 30*fs + 4, corrupt: true, off: 30 * fs},
		{name: "starting inside a frame", from: 4096, to: 4608, corrupt: true, off: 33 * fs},
		{name: "in a sealed segment", sealed: true, from: 30 * fs, to: 4096, corrupt: true, off: 30 * fs},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			img, next := frames(1, 90), []byte(nil)
			if tt.sealed {
				img, next = frames(1, 60), frames(61, 90)
			}
			if tt.preallocd {
				img = append(img, make([]byte, 64<<10)...)
			}
			clear(img[tt.from:tt.to])
			path := filepath.Join(dir, segmentName(1))
			if err := os.WriteFile(path, img, 0o644); err != nil {
				t.Fatal(err)
			}
			if next != nil {
				if err := os.WriteFile(filepath.Join(dir, segmentName(61)), next, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			logger, logs := testLogger(t)
			// No preallocation: it would extend the active segment in the
			// background right after Open, racing the size check below.
			l, err := Open(Options{Dir: dir, Logger: logger, PreallocateBytes: -1})
			if tt.corrupt {
				if !errors.Is(err, ErrCorrupt) {
					l.Close()
					t.Fatalf("Open = %v, want ErrCorrupt", err)
				}
				for _, want := range []string{filepath.Base(path), fmt.Sprintf("offset %d", tt.off)} {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("error %q lacks %q", err, want)
					}
				}
				if fi, _ := os.Stat(path); fi.Size() != int64(len(img)) {
					t.Errorf("Open changed the size of %s", path)
				}
				return
			}
			if err != nil {
				t.Fatalf("Open after a power failure: %v", err)
			}
			t.Cleanup(func() { l.Close() })
			for _, want := range []string{"hole that no fsync covered", filepath.Base(path), fmt.Sprintf("offset=%d", tt.off),
				fmt.Sprintf("dropped_bytes=%d", int64(len(img))-tt.off)} {
				if !strings.Contains(logs.String(), want) {
					t.Errorf("log output lacks %q:\n%s", want, logs.String())
				}
			}
			if fi, _ := os.Stat(path); fi.Size() != tt.off {
				t.Errorf("%s is %d bytes after recovery, want %d", path, fi.Size(), tt.off)
			}
			checkEntries(t, readAll(t, l, 1), 1, tt.last, size)
			appendN(t, l, 1, 2, size)
			checkEntries(t, readAll(t, l, 1), 1, tt.last+2, size)
		})
	}
}

func TestCorruptionDetected(t *testing.T) {
	const size = 100
	fs := int64(frameSize(size))
	flip := func(path string, off int64) {
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			panic(err)
		}
		defer f.Close()
		b := []byte{0}
		f.ReadAt(b, off)
		b[0] ^= 0x40
		f.WriteAt(b, off)
	}
	tests := []struct {
		name    string
		segSize int64
		damage  func(t *testing.T, segs []SegmentInfo) (file string, off int64)
	}{
		{"payload byte of an early entry", 1 << 20, func(t *testing.T, segs []SegmentInfo) (string, int64) {
			flip(segs[0].Path, 2*fs+30)
			return segs[0].Path, 2 * fs
		}},
		{"length field of an early entry", 1 << 20, func(t *testing.T, segs []SegmentInfo) (string, int64) {
			flip(segs[0].Path, 3*fs+2)
			return segs[0].Path, 3 * fs
		}},
		{"crc of the second to last entry", 1 << 20, func(t *testing.T, segs []SegmentInfo) (string, int64) {
			flip(segs[0].Path, 18*fs+5)
			return segs[0].Path, 18 * fs
		}},
		{"last entry of a sealed segment", 1024, func(t *testing.T, segs []SegmentInfo) (string, int64) {
			s := segs[1]
			flip(s.Path, s.Bytes-3)
			return s.Path, s.Bytes - fs
		}},
		{"garbage after a sealed segment", 1024, func(t *testing.T, segs []SegmentInfo) (string, int64) {
			s := segs[0]
			f, _ := os.OpenFile(s.Path, os.O_WRONLY|os.O_APPEND, 0)
			f.Write(make([]byte, 10))
			f.Close()
			return s.Path, s.Bytes
		}},
		{"missing middle segment", 1024, func(t *testing.T, segs []SegmentInfo) (string, int64) {
			os.Remove(segs[1].Path)
			return segs[2].Path, 0
		}},
		{"entry with a wrong LSN", 1 << 20, func(t *testing.T, segs []SegmentInfo) (string, int64) {
			f, _ := os.OpenFile(segs[0].Path, os.O_WRONLY|os.O_APPEND, 0)
			f.Write(appendFrame(nil, Entry{LSN: 99, Epoch: 1, Payload: []byte("x")}))
			f.Close()
			return segs[0].Path, segs[0].Bytes
		}},
		{"entry with a lower epoch", 1 << 20, func(t *testing.T, segs []SegmentInfo) (string, int64) {
			f, _ := os.OpenFile(segs[0].Path, os.O_WRONLY|os.O_APPEND, 0)
			f.Write(appendFrame(nil, Entry{LSN: 21, Epoch: 0, Payload: []byte("x")}))
			f.Close()
			return segs[0].Path, segs[0].Bytes
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			l := openLog(t, dir, func(o *Options) { o.SegmentBytes = tt.segSize })
			appendN(t, l, 1, 20, size)
			segs := l.Segments()
			closeLog(t, l)
			file, off := tt.damage(t, segs)
			fi, _ := os.Stat(file)
			_, err := Open(Options{Dir: dir, SegmentBytes: tt.segSize})
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Open = %v, want ErrCorrupt", err)
			}
			for _, want := range []string{filepath.Base(file), fmt.Sprintf("offset %d", off)} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q lacks %q", err, want)
				}
			}
			if fi2, _ := os.Stat(file); fi != nil && fi2.Size() != fi.Size() {
				t.Errorf("Open changed the size of %s", file)
			}
		})
	}
}

func TestTruncate(t *testing.T) {
	const size = 200
	// 300 entries, epoch 1 for 1-99, 2 for 100-199, 3 for 200-300, ~5 per segment.
	build := func(t *testing.T) (string, *Log) {
		dir := t.TempDir()
		l := openLog(t, dir, func(o *Options) { o.SegmentBytes = 1200 })
		appendN(t, l, 1, 99, size)
		appendN(t, l, 2, 100, size)
		appendN(t, l, 3, 101, size)
		return dir, l
	}
	tests := []struct {
		name   string
		after  uint64
		epochs []EpochStart
	}{
		{"nothing", 300, []EpochStart{{1, 1}, {2, 100}, {3, 200}}},
		{"last entry", 299, []EpochStart{{1, 1}, {2, 100}, {3, 200}}},
		{"mid segment", 152, []EpochStart{{1, 1}, {2, 100}}},
		{"epoch boundary", 199, []EpochStart{{1, 1}, {2, 100}}},
		{"first entry of an epoch", 200, []EpochStart{{1, 1}, {2, 100}, {3, 200}}},
		{"first entry", 1, []EpochStart{{1, 1}}},
		{"everything", 0, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir, l := build(t)
			// Also cut exactly at a segment boundary once.
			if err := l.Truncate(tt.after); err != nil {
				t.Fatalf("Truncate(%d): %v", tt.after, err)
			}
			check := func(l *Log) {
				t.Helper()
				if l.LastLSN() != tt.after || l.DurableLSN() != tt.after {
					t.Fatalf("Last/Durable = %d/%d, want %d", l.LastLSN(), l.DurableLSN(), tt.after)
				}
				checkEntries(t, readAll(t, l, 1), 1, tt.after, size)
				if h := l.EpochHistory(); !slices.Equal(h, tt.epochs) {
					t.Fatalf("EpochHistory = %v, want %v", h, tt.epochs)
				}
				segs := l.Segments()
				if last := segs[len(segs)-1]; last.LastLSN != tt.after {
					t.Fatalf("last segment %+v does not end at %d", last, tt.after)
				}
			}
			check(l)
			closeLog(t, l)
			l = openLog(t, dir, func(o *Options) { o.SegmentBytes = 1200 })
			check(l)
			// Appending continues at after+1, in a new epoch.
			appendN(t, l, 4, 10, size)
			checkEntries(t, readAll(t, l, 1), 1, tt.after+10, size)
			if h := l.EpochHistory(); h[len(h)-1] != (EpochStart{4, tt.after + 1}) {
				t.Fatalf("EpochHistory = %v", h)
			}
		})
	}
	t.Run("at segment boundary", func(t *testing.T) {
		dir, l := build(t)
		segs := l.Segments()
		after := segs[3].LastLSN
		if err := l.Truncate(after); err != nil {
			t.Fatal(err)
		}
		// The 5th segment stays, empty, as the active one.
		if segs := l.Segments(); len(segs) != 5 || segs[4].Bytes != 0 || segs[4].FirstLSN != after+1 {
			t.Fatalf("after truncating at the end of the 4th segment: %+v", segs)
		}
		closeLog(t, l)
		l = openLog(t, dir, func(o *Options) { o.SegmentBytes = 1200 })
		checkEntries(t, readAll(t, l, 1), 1, after, size)
	})
	t.Run("below first", func(t *testing.T) {
		_, l := build(t)
		if _, err := l.DeleteSegmentsBefore(50); err != nil {
			t.Fatal(err)
		}
		if err := l.Truncate(l.FirstLSN() - 2); !errors.Is(err, ErrCompacted) {
			t.Fatalf("Truncate below first = %v, want ErrCompacted", err)
		}
		if err := l.Truncate(l.FirstLSN() - 1); err != nil {
			t.Fatalf("Truncate(first-1) = %v", err)
		}
		if l.LastLSN() != l.FirstLSN()-1 {
			t.Fatalf("Last %d First %d", l.LastLSN(), l.FirstLSN())
		}
	})
}

func TestReset(t *testing.T) {
	dir := t.TempDir()
	opts := func(o *Options) { o.SegmentBytes = 1000 }
	l := openLog(t, dir, opts)
	appendN(t, l, 3, 50, 100)
	r, err := l.NewReader(1)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if _, _, err := r.Next(); err != nil {
		t.Fatal(err)
	}
	if err := l.Reset(1000); err != nil {
		t.Fatalf("Reset: %v", err)
	}
	if _, _, err := r.Next(); !errors.Is(err, ErrCompacted) {
		t.Fatalf("reader after Reset: %v, want ErrCompacted", err)
	}
	check := func(l *Log, last uint64) {
		t.Helper()
		if l.FirstLSN() != 1000 || l.LastLSN() != last || l.DurableLSN() != last {
			t.Fatalf("First/Last/Durable = %d/%d/%d", l.FirstLSN(), l.LastLSN(), l.DurableLSN())
		}
		if _, err := l.NewReader(999); !errors.Is(err, ErrCompacted) {
			t.Fatalf("NewReader(999) = %v", err)
		}
	}
	check(l, 999)
	if h := l.EpochHistory(); len(h) != 0 {
		t.Fatalf("EpochHistory after Reset = %v", h)
	}
	if segs := l.Segments(); len(segs) != 1 || segs[0].FirstLSN != 1000 || segs[0].Bytes != 0 {
		t.Fatalf("Segments = %+v", segs)
	}
	closeLog(t, l)
	l = openLog(t, dir, opts)
	check(l, 999)
	// A follower appends what the leader sends from 1000 on, in epoch 2.
	for lsn := uint64(1000); lsn < 1020; lsn++ {
		if _, err := l.AppendEntry(Entry{LSN: lsn, Epoch: 2, Type: TypeRecordBatch, Payload: testPayload(lsn, 100)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.WaitDurable(context.Background(), 1019); err != nil {
		t.Fatal(err)
	}
	check(l, 1019)
	checkEntries(t, readAll(t, l, 1000), 1000, 1019, 100)
	closeLog(t, l)
	l = openLog(t, dir, opts)
	check(l, 1019)
	if h := l.EpochHistory(); !slices.Equal(h, []EpochStart{{2, 1000}}) {
		t.Fatalf("EpochHistory = %v", h)
	}
	if err := l.Reset(0); err == nil {
		t.Fatal("Reset(0) succeeded")
	}
}

func TestDeleteSegmentsBefore(t *testing.T) {
	dir := t.TempDir()
	opts := func(o *Options) { o.SegmentBytes = 1000 }
	l := openLog(t, dir, opts)
	appendN(t, l, 1, 100, 100) // 8 entries per segment
	segs := l.Segments()
	r, err := l.NewReader(1)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if _, _, err := r.Next(); err != nil {
		t.Fatal(err)
	}

	n, err := l.DeleteSegmentsBefore(50)
	if err != nil {
		t.Fatal(err)
	}
	var want int
	for _, s := range segs {
		if s.LastLSN < 50 {
			want++
		}
	}
	if n != want || n == 0 {
		t.Fatalf("deleted %d segments, want %d", n, want)
	}
	for _, s := range segs[:n] {
		if _, err := os.Stat(s.Path); !os.IsNotExist(err) {
			t.Errorf("%s still exists", s.Path)
		}
	}
	first := l.FirstLSN()
	if first != segs[n].FirstLSN || first > 50 {
		t.Fatalf("FirstLSN = %d", first)
	}
	if _, _, err := r.Next(); !errors.Is(err, ErrCompacted) {
		t.Fatalf("reader in a deleted segment: %v, want ErrCompacted", err)
	}
	if _, err := l.NewReader(1); !errors.Is(err, ErrCompacted) {
		t.Fatalf("NewReader(1) = %v, want ErrCompacted", err)
	}
	if _, err := l.ReadAt(Pos{LSN: 1, Segment: 1}); !errors.Is(err, ErrCompacted) {
		t.Fatalf("ReadAt(1) = %v, want ErrCompacted", err)
	}
	checkEntries(t, readAll(t, l, first), first, 100, 100)

	// Never the active segment, even if everything is below lsn.
	if _, err := l.DeleteSegmentsBefore(1 << 40); err != nil {
		t.Fatal(err)
	}
	segs = l.Segments()
	if len(segs) != 1 || segs[0].LastLSN != 100 {
		t.Fatalf("Segments = %+v", segs)
	}
	closeLog(t, l)
	l = openLog(t, dir, opts)
	if l.FirstLSN() != segs[0].FirstLSN || l.LastLSN() != 100 {
		t.Fatalf("after reopen First/Last = %d/%d", l.FirstLSN(), l.LastLSN())
	}
	if h := l.EpochHistory(); !slices.Equal(h, []EpochStart{{1, 1}}) {
		t.Fatalf("EpochHistory = %v; starts before the first segment must be kept", h)
	}
}

func TestEpochHistory(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, nil)
	appendN(t, l, 1, 3, 10)
	appendN(t, l, 3, 2, 10)
	if _, err := l.Append(2, TypeNoop, nil); !errors.Is(err, ErrStaleEpoch) {
		t.Fatalf("Append with a lower epoch = %v, want ErrStaleEpoch", err)
	}
	if _, err := l.AppendEntry(Entry{LSN: 6, Epoch: 2}); !errors.Is(err, ErrStaleEpoch) {
		t.Fatalf("AppendEntry with a lower epoch = %v, want ErrStaleEpoch", err)
	}
	want := []EpochStart{{1, 1}, {3, 4}}
	if h := l.EpochHistory(); !slices.Equal(h, want) {
		t.Fatalf("EpochHistory = %v, want %v", h, want)
	}
	if err := l.SetEpoch(4, 7); !errors.Is(err, ErrGap) {
		t.Fatalf("SetEpoch at a wrong LSN = %v, want ErrGap", err)
	}
	if err := l.SetEpoch(2, 6); !errors.Is(err, ErrStaleEpoch) {
		t.Fatalf("SetEpoch(2) = %v, want ErrStaleEpoch", err)
	}
	if err := l.SetEpoch(5, 6); err != nil {
		t.Fatal(err)
	}
	if h := l.EpochHistory(); !slices.Equal(h, append(slices.Clone(want), EpochStart{5, 6})) {
		t.Fatalf("EpochHistory after SetEpoch = %v", h)
	}
	// A start with no entry after it is dropped at Open, as in Kafka.
	closeLog(t, l)
	l = openLog(t, dir, nil)
	if h := l.EpochHistory(); !slices.Equal(h, want) {
		t.Fatalf("EpochHistory after reopen = %v, want %v", h, want)
	}
	if err := l.SetEpoch(5, 6); err != nil {
		t.Fatal(err)
	}
	appendN(t, l, 5, 1, 10)
	want = append(want, EpochStart{5, 6})
	if h := l.EpochHistory(); !slices.Equal(h, want) {
		t.Fatalf("EpochHistory = %v, want %v", h, want)
	}
	closeLog(t, l)

	epochsPath := filepath.Join(dir, epochsFile)
	tests := []struct {
		name    string
		content []byte // nil: delete the file
		corrupt bool
	}{
		{"deleted file is rebuilt from entries", nil, false},
		{"start with no entries is dropped", encodeEpochs([]EpochStart{{1, 1}, {2, 2}, {3, 4}, {5, 6}, {9, 100}}), false},
		{"missing start is added", encodeEpochs([]EpochStart{{1, 1}}), false},
		{"bad crc", bytes.Replace(encodeEpochs(want), []byte("3 4"), []byte("3 5"), 1), true},
		{"not increasing", encodeEpochs([]EpochStart{{3, 1}, {1, 4}}), true},
		{"garbage", []byte("hello"), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.content == nil {
				os.Remove(epochsPath)
			} else if err := os.WriteFile(epochsPath, tt.content, 0o644); err != nil {
				t.Fatal(err)
			}
			l, err := Open(Options{Dir: dir})
			if tt.corrupt {
				if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), epochsPath) {
					t.Fatalf("Open = %v, want ErrCorrupt naming %s", err, epochsPath)
				}
				os.Remove(epochsPath)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			if h := l.EpochHistory(); !slices.Equal(h, want) {
				t.Fatalf("EpochHistory = %v, want %v", h, want)
			}
			data, _ := os.ReadFile(epochsPath)
			if got, err := decodeEpochs(data); err != nil || !slices.Equal(got, want) {
				t.Fatalf("epochs file holds %v, %v", got, err)
			}
		})
	}
}

func TestAppendEntryGap(t *testing.T) {
	l := openLog(t, t.TempDir(), nil)
	tests := []struct {
		lsn     uint64
		wantErr error
	}{
		{1, nil}, {3, ErrGap}, {1, ErrGap}, {0, ErrGap}, {2, nil}, {3, nil}, {10, ErrGap},
	}
	for _, tt := range tests {
		_, err := l.AppendEntry(Entry{LSN: tt.lsn, Epoch: 1, Type: TypeNoop})
		if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
			t.Fatalf("AppendEntry(LSN %d) = %v, want %v", tt.lsn, err, tt.wantErr)
		}
	}
	if l.LastLSN() != 3 {
		t.Fatalf("LastLSN = %d", l.LastLSN())
	}
}

func TestTooLarge(t *testing.T) {
	l := openLog(t, t.TempDir(), func(o *Options) { o.MaxEntryBytes = 1000 })
	if _, err := l.Append(1, TypeRecordBatch, make([]byte, 1001)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Append(1001 bytes) = %v, want ErrTooLarge", err)
	}
	if _, err := l.AppendEntry(Entry{LSN: 1, Payload: make([]byte, 1001)}); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("AppendEntry(1001 bytes) = %v, want ErrTooLarge", err)
	}
	if _, err := l.Append(1, TypeRecordBatch, make([]byte, 1000)); err != nil {
		t.Fatalf("Append(1000 bytes) = %v", err)
	}
	if _, err := Open(Options{Dir: t.TempDir(), MaxEntryBytes: 2 << 30}); err == nil {
		t.Fatal("Open with MaxEntryBytes 2 GiB succeeded")
	}
}

func TestReadAt(t *testing.T) {
	l := openLog(t, t.TempDir(), func(o *Options) { o.SegmentBytes = 1000 })
	ps := appendN(t, l, 1, 30, 100)
	for _, p := range ps {
		e, err := l.ReadAt(p)
		if err != nil || e.LSN != p.LSN || !bytes.Equal(e.Payload, testPayload(p.LSN, 100)) {
			t.Fatalf("ReadAt(%+v) = LSN %d, %v", p, e.LSN, err)
		}
	}
	bad := []Pos{
		{LSN: 31, Segment: ps[29].Segment, Offset: ps[29].Offset + int64(frameSize(100))}, // not written
		{LSN: 5, Segment: 2}, // no such segment
		{LSN: ps[5].LSN, Segment: ps[5].Segment, Offset: -1},
	}
	for _, p := range bad {
		if _, err := l.ReadAt(p); !errors.Is(err, ErrNotFound) {
			t.Errorf("ReadAt(%+v) = %v, want ErrNotFound", p, err)
		}
	}
	p := ps[5]
	p.Offset++ // not a frame boundary
	if _, err := l.ReadAt(p); err == nil {
		t.Errorf("ReadAt(%+v) at a non-boundary succeeded", p)
	}
	p = ps[5]
	p.LSN++ // wrong LSN for the offset
	if _, err := l.ReadAt(p); !errors.Is(err, ErrCorrupt) {
		t.Errorf("ReadAt(%+v) = %v, want ErrCorrupt", p, err)
	}
}

func TestReadRange(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, func(o *Options) { o.SegmentBytes = 1000 })
	ps := appendN(t, l, 1, 30, 300)
	prefix := []byte("kept")
	for _, p := range ps {
		want := testPayload(p.LSN, 300)
		for _, r := range []struct{ off, n int }{
			{0, 300},   // the whole payload
			{0, 10},    // a prefix, the rest of the frame follows it
			{40, 200},  // the middle
			{250, 50},  // the end
			{100, 0},   // nothing
			{260, 0},   // nothing, near the end
			{299, 1},   // the last byte
			{20, 280},  // the end, past a small-buffer head
			{0, 299},   // all but the last byte
			{299, 0},   // nothing at the last byte
			{300, 0},   // nothing past the last byte
			{1, 298},   // one byte off each side
			{150, 150}, // the second half
		} {
			got, err := l.ReadRange(p, r.off, r.n, slices.Clone(prefix))
			if err != nil {
				t.Fatalf("ReadRange(%+v, %d, %d): %v", p, r.off, r.n, err)
			}
			if !bytes.Equal(got, append(slices.Clone(prefix), want[r.off:r.off+r.n]...)) {
				t.Fatalf("ReadRange(%+v, %d, %d) = %q..., want the payload's bytes after %q", p, r.off, r.n, got[:min(len(got), 12)], prefix)
			}
		}
	}
	// A head larger than the small stack buffer (payload offset > 256).
	big := openLog(t, t.TempDir(), nil)
	bp := appendN(t, big, 1, 1, 5000)[0]
	got, err := big.ReadRange(bp, 4000, 900, nil)
	if err != nil || !bytes.Equal(got, testPayload(bp.LSN, 5000)[4000:4900]) {
		t.Fatalf("ReadRange with a 4000-byte head = %d bytes, %v", len(got), err)
	}

	p := ps[7]
	for _, bad := range []struct {
		name   string
		p      Pos
		off, n int
		want   error
	}{
		{"range past the payload", p, 250, 51, ErrNotFound},
		{"offset past the payload", p, 301, 0, ErrNotFound},
		{"negative offset", p, -1, 10, ErrNotFound},
		{"negative length", p, 0, -1, ErrNotFound},
		{"wrong LSN", Pos{LSN: p.LSN + 1, Segment: p.Segment, Offset: p.Offset}, 0, 10, ErrCorrupt},
		{"not written", Pos{LSN: 31, Segment: ps[29].Segment, Offset: ps[29].Offset + int64(frameSize(300))}, 0, 10, ErrNotFound},
	} {
		dst := []byte("x")
		got, err := l.ReadRange(bad.p, bad.off, bad.n, dst)
		if !errors.Is(err, bad.want) {
			t.Errorf("%s: ReadRange = %v, want %v", bad.name, err, bad.want)
		}
		if string(got) != "x" {
			t.Errorf("%s: dst changed to %q on error", bad.name, got)
		}
	}

	// A flipped bit anywhere in the frame, read range or not, fails the CRC.
	path := filepath.Join(dir, fmt.Sprintf("%020d.wal", p.Segment))
	for _, at := range []int64{frameHeaderSize + 5, frameHeaderSize + 100, frameHeaderSize + 290} {
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		var b [1]byte
		if _, err := f.ReadAt(b[:], p.Offset+at); err != nil {
			t.Fatal(err)
		}
		flip := func() {
			b[0] ^= 0x40
			if _, err := f.WriteAt(b[:], p.Offset+at); err != nil {
				t.Fatal(err)
			}
		}
		flip()
		if _, err := l.ReadRange(p, 50, 100, nil); !errors.Is(err, ErrCorrupt) {
			t.Errorf("byte %d of the frame flipped: ReadRange(50, 100) = %v, want ErrCorrupt", at, err)
		}
		flip()
		f.Close()
		if _, err := l.ReadRange(p, 50, 100, nil); err != nil {
			t.Errorf("byte %d restored: ReadRange = %v", at, err)
		}
	}
}

func TestChecksum(t *testing.T) {
	src := openLog(t, t.TempDir(), func(o *Options) { o.SegmentBytes = 2000 })
	appendN(t, src, 1, 40, 150)
	appendN(t, src, 2, 40, 150)
	// A replica with other segment sizes, fed through AppendEntry.
	dst := openLog(t, t.TempDir(), func(o *Options) { o.SegmentBytes = 50000; o.Sync = SyncNone })
	// And one whose entry 60 has another epoch (a divergent replica).
	div := openLog(t, t.TempDir(), func(o *Options) { o.Sync = SyncNone })
	for _, e := range readAll(t, src, 1) {
		if _, err := dst.AppendEntry(e); err != nil {
			t.Fatal(err)
		}
		if e.LSN >= 60 {
			e.Epoch = 3
		}
		if _, err := div.AppendEntry(e); err != nil {
			t.Fatal(err)
		}
	}
	for _, rg := range [][2]uint64{{1, 80}, {1, 1}, {17, 63}, {80, 80}, {1, 59}} {
		a, err := src.Checksum(rg[0], rg[1])
		if err != nil {
			t.Fatal(err)
		}
		b, err := dst.Checksum(rg[0], rg[1])
		if err != nil {
			t.Fatal(err)
		}
		if a != b {
			t.Errorf("Checksum%v differs between equal logs: %x vs %x", rg, a, b)
		}
		c, err := div.Checksum(rg[0], rg[1])
		if err != nil {
			t.Fatal(err)
		}
		if (c == a) != (rg[1] < 60) {
			t.Errorf("Checksum%v of divergent log: %x vs %x", rg, c, a)
		}
	}
	if a, _ := src.Checksum(1, 40); a == func() uint64 { v, _ := src.Checksum(1, 41); return v }() {
		t.Error("different ranges give the same checksum")
	}
	if v, err := src.Checksum(5, 4); err != nil || v != fnvOffset {
		t.Errorf("empty range = %x, %v", v, err)
	}
	if _, err := src.Checksum(1, 81); !errors.Is(err, ErrNotFound) {
		t.Errorf("Checksum past the end = %v", err)
	}
	if _, err := src.Checksum(9, 5); err == nil {
		t.Error("Checksum(9, 5) succeeded")
	}
	if _, err := src.DeleteSegmentsBefore(30); err != nil {
		t.Fatal(err)
	}
	if _, err := src.Checksum(1, 40); !errors.Is(err, ErrCompacted) {
		t.Errorf("Checksum over deleted entries = %v, want ErrCompacted", err)
	}
}

func TestReaderUnderTruncation(t *testing.T) {
	l := openLog(t, t.TempDir(), func(o *Options) { o.SegmentBytes = 1000 })
	appendN(t, l, 1, 60, 100)
	readTo := func(next uint64) *Reader {
		r, err := l.NewReader(1)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Close() })
		for lsn := uint64(1); lsn < next; lsn++ {
			if _, _, err := r.Next(); err != nil {
				t.Fatal(err)
			}
		}
		return r
	}
	ahead := readTo(51)  // returned up to 50: they are truncated away
	behind := readTo(15) // returned up to 14: unaffected
	edge := readTo(21)   // returned exactly up to 20
	if err := l.Truncate(20); err != nil {
		t.Fatal(err)
	}
	if _, _, err := ahead.Next(); !errors.Is(err, ErrTruncated) {
		t.Fatalf("reader past the truncation point: %v, want ErrTruncated", err)
	}
	if _, _, err := ahead.Next(); !errors.Is(err, ErrTruncated) {
		t.Fatalf("ErrTruncated is not sticky: %v", err)
	}
	for lsn := uint64(15); lsn <= 20; lsn++ {
		if e, _, err := behind.Next(); err != nil || e.LSN != lsn {
			t.Fatalf("reader behind: %d, %v", e.LSN, err)
		}
	}
	for _, r := range []*Reader{behind, edge} {
		if _, _, err := r.Next(); !errors.Is(err, io.EOF) {
			t.Fatalf("reader at the truncation point: %v, want io.EOF", err)
		}
	}
	// New entries 21.. (a new epoch) are read by both.
	for lsn := uint64(21); lsn <= 25; lsn++ {
		if _, err := l.Append(2, TypeRecordBatch, []byte("new")); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.WaitDurable(context.Background(), 25); err != nil {
		t.Fatal(err)
	}
	for _, r := range []*Reader{behind, edge} {
		for lsn := uint64(21); lsn <= 25; lsn++ {
			e, _, err := r.Next()
			if err != nil || e.LSN != lsn || string(e.Payload) != "new" || e.Epoch != 2 {
				t.Fatalf("after truncation: LSN %d %q epoch %d, %v", e.LSN, e.Payload, e.Epoch, err)
			}
		}
	}
}

func TestClose(t *testing.T) {
	dir := t.TempDir()
	l, err := Open(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	appendN(t, l, 1, 3, 10)
	if _, err := Open(Options{Dir: dir}); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("second Open of the same dir = %v, want an 'in use' error", err)
	}
	r, err := l.NewReader(1)
	if err != nil {
		t.Fatal(err)
	}
	waitErr := make(chan error, 1)
	go func() { waitErr <- l.WaitDurable(context.Background(), 100) }()
	before := l.Durable()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-before:
	default:
		t.Error("Close did not wake Durable() waiters")
	}
	select {
	case <-l.Durable():
		t.Error("Durable() after Close is closed: wait loops would spin")
	default:
	}
	if err := <-waitErr; !errors.Is(err, ErrClosed) {
		t.Fatalf("WaitDurable during Close = %v, want ErrClosed", err)
	}
	calls := map[string]func() error{
		"Close":                func() error { return l.Close() },
		"Append":               func() error { _, err := l.Append(1, TypeNoop, nil); return err },
		"AppendEntry":          func() error { _, err := l.AppendEntry(Entry{LSN: 4}); return err },
		"NewReader":            func() error { _, err := l.NewReader(1); return err },
		"Reader.Next":          func() error { _, _, err := r.Next(); return err },
		"ReadAt":               func() error { _, err := l.ReadAt(Pos{LSN: 1, Segment: 1}); return err },
		"Truncate":             func() error { return l.Truncate(1) },
		"Reset":                func() error { return l.Reset(1) },
		"DeleteSegmentsBefore": func() error { _, err := l.DeleteSegmentsBefore(2); return err },
		"SetEpoch":             func() error { return l.SetEpoch(2, 4) },
		"WaitDurable":          func() error { return l.WaitDurable(context.Background(), 4) },
		"Checksum":             func() error { _, err := l.Checksum(1, 3); return err },
	}
	for name, call := range calls {
		if err := call(); !errors.Is(err, ErrClosed) {
			t.Errorf("%s after Close = %v, want ErrClosed", name, err)
		}
	}
	if err := l.WaitDurable(context.Background(), 3); err != nil {
		t.Errorf("WaitDurable of a durable LSN after Close = %v", err)
	}
	if err := r.Close(); err != nil {
		t.Errorf("Reader.Close = %v", err)
	}
	if err := r.Close(); !errors.Is(err, ErrClosed) {
		t.Errorf("second Reader.Close = %v", err)
	}
	// The lock is released: the directory opens again.
	l = openLog(t, dir, nil)
	if l.LastLSN() != 3 {
		t.Fatalf("LastLSN = %d", l.LastLSN())
	}
}

func TestConcurrentAppendersAndReaders(t *testing.T) {
	l := openLog(t, t.TempDir(), func(o *Options) { o.SegmentBytes = 8 << 10 })
	const appenders, perAppender, readers = 4, 150, 3
	const total = appenders * perAppender
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, appenders+readers+1)
	for a := 0; a < appenders; a++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < perAppender; i++ {
				p, err := l.Append(1, TypeRecordBatch, []byte(fmt.Sprintf("%d/%d/%s", a, i, strings.Repeat("x", i))))
				if err == nil && i%10 == 9 {
					err = l.WaitDurable(ctx, p.LSN)
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	for rd := 0; rd < readers; rd++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := l.NewReader(1)
			if err != nil {
				errs <- err
				return
			}
			defer r.Close()
			lastSeq := make([]int, appenders)
			for i := range lastSeq {
				lastSeq[i] = -1
			}
			for want := uint64(1); want <= total; {
				ch := l.Durable()
				e, _, err := r.Next()
				if errors.Is(err, io.EOF) {
					select {
					case <-ch:
					case <-ctx.Done():
						errs <- fmt.Errorf("reader stuck at LSN %d", want)
						return
					}
					continue
				}
				if err != nil {
					errs <- err
					return
				}
				var a, seq int
				if _, err := fmt.Sscanf(string(e.Payload), "%d/%d/", &a, &seq); err != nil || e.LSN != want || seq != lastSeq[a]+1 {
					errs <- fmt.Errorf("reader: LSN %d (want %d) payload %.20q", e.LSN, want, e.Payload)
					return
				}
				lastSeq[a] = seq
				want++
			}
		}()
	}
	wg.Add(1)
	go func() { // observers
		defer wg.Done()
		for {
			ch := l.Durable()
			if l.DurableLSN() >= total {
				return
			}
			_ = l.Segments()
			_ = l.EpochHistory()
			if d := l.DurableLSN(); d > 0 {
				if _, err := l.Checksum(l.FirstLSN(), d); err != nil {
					errs <- err
					return
				}
			}
			select {
			case <-ctx.Done():
				errs <- errors.New("observer: durable LSN stuck")
				return
			case <-ch:
			}
		}
	}()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if l.LastLSN() != total {
		t.Fatalf("LastLSN = %d", l.LastLSN())
	}
	if st := l.Stats(); st.Appends != total || st.Fsyncs >= total {
		t.Logf("stats: %+v", st)
	}
}

// TestConcurrentTruncateAndRetention runs a writer that keeps appending,
// truncating and deleting old segments against readers that follow the log:
// readers may fail with ErrTruncated or ErrCompacted (and then start over),
// but every entry they return must be a real, current one.
func TestConcurrentTruncateAndRetention(t *testing.T) {
	l := openLog(t, t.TempDir(), func(o *Options) { o.SegmentBytes = 2048 })
	const rounds = 1500
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	done := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, 10)
	wg.Add(1)
	go func() { // writer
		defer wg.Done()
		defer close(done)
		epoch := uint32(1)
		for i := 1; i <= rounds; i++ {
			lsn := l.LastLSN() + 1
			if _, err := l.AppendEntry(Entry{LSN: lsn, Epoch: epoch, Type: TypeRecordBatch, Payload: testPayload(lsn, 64+i%200)}); err != nil {
				errs <- err
				return
			}
			switch {
			case i%97 == 0:
				if err := l.Truncate(l.LastLSN() - 5); err != nil {
					errs <- err
					return
				}
				epoch++
			case i%151 == 0:
				if _, err := l.DeleteSegmentsBefore(l.LastLSN() - 100); err != nil {
					errs <- err
					return
				}
			}
		}
		if err := l.WaitDurable(ctx, l.LastLSN()); err != nil {
			errs <- err
		}
	}()
	for rd := 0; rd < 2; rd++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var r *Reader
			defer func() {
				if r != nil {
					r.Close()
				}
			}()
			restarts := 0
			for {
				if r == nil {
					var err error
					if r, err = l.NewReader(l.FirstLSN()); err != nil {
						if errors.Is(err, ErrCompacted) {
							continue // retention moved on; try again
						}
						errs <- err
						return
					}
				}
				ch := l.Durable()
				e, _, err := r.Next()
				switch {
				case err == nil:
					if len(e.Payload) < 8 || binary.BigEndian.Uint64(e.Payload) != e.LSN || !bytes.Equal(e.Payload, testPayload(e.LSN, len(e.Payload))) {
						errs <- fmt.Errorf("reader returned LSN %d with a payload of another entry", e.LSN)
						return
					}
				case errors.Is(err, ErrTruncated) || errors.Is(err, ErrCompacted):
					r.Close()
					r = nil
					restarts++
				case errors.Is(err, io.EOF):
					select {
					case <-done:
						if l.DurableLSN() == l.LastLSN() {
							if _, _, err := r.Next(); errors.Is(err, io.EOF) {
								t.Logf("reader restarted %d times", restarts)
								return
							}
						}
					default:
					}
					select {
					case <-ch:
					case <-done:
					case <-ctx.Done():
						errs <- errors.New("reader stuck")
						return
					}
				default:
					errs <- fmt.Errorf("reader: %w", err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// NextPrefix (start-up replay) returns the first bytes of record batches
// with their full size, and other entries whole, across small and large
// frames and segment rolls, in the same order and positions as Next.
func TestNextPrefix(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, func(o *Options) { o.SegmentBytes = 2 << 20 })
	sizes := []int{10, 100, 5000, readAheadSize + 1000, 1 << 20, 3, readAheadSize * 2, 64, 700 << 10, 1}
	var want []Entry
	for i := 0; i < 30; i++ {
		size := sizes[i%len(sizes)]
		typ := TypeRecordBatch
		if i%7 == 3 {
			typ = TypeCreateTopic // must come back whole
		}
		lsn := l.LastLSN() + 1
		e := Entry{LSN: lsn, Epoch: 1, Type: typ, Payload: testPayload(lsn, size)}
		if _, err := l.AppendEntry(e); err != nil {
			t.Fatalf("AppendEntry: %v", err)
		}
		want = append(want, e)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := l.WaitDurable(ctx, l.LastLSN()); err != nil {
		t.Fatal(err)
	}
	closeLog(t, l)
	l = openLog(t, dir, func(o *Options) { o.SegmentBytes = 2 << 20 })
	if len(l.Segments()) < 3 {
		t.Fatalf("only %d segments; the test wants rolls", len(l.Segments()))
	}
	full, err := l.NewReader(1)
	if err != nil {
		t.Fatal(err)
	}
	defer full.Close()
	r, err := l.NewReader(1)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	const prefix = 50
	for i, w := range want {
		e, pos, size, err := r.NextPrefix(prefix, func(t EntryType) bool { return t != TypeRecordBatch })
		if err != nil {
			t.Fatalf("entry %d: NextPrefix: %v", i, err)
		}
		_, fpos, err := full.Next()
		if err != nil {
			t.Fatalf("entry %d: Next: %v", i, err)
		}
		if e.LSN != w.LSN || e.Epoch != w.Epoch || e.Type != w.Type || pos != fpos || size != len(w.Payload) {
			t.Fatalf("entry %d: got LSN %d epoch %d type %v pos %+v size %d; want LSN %d epoch %d type %v pos %+v size %d",
				i, e.LSN, e.Epoch, e.Type, pos, size, w.LSN, w.Epoch, w.Type, fpos, len(w.Payload))
		}
		wantPayload := w.Payload
		if w.Type == TypeRecordBatch && len(wantPayload) > prefix {
			wantPayload = wantPayload[:prefix]
		}
		if !bytes.Equal(e.Payload, wantPayload) {
			t.Fatalf("entry %d (LSN %d, %d bytes): payload prefix differs", i, w.LSN, len(w.Payload))
		}
	}
	if _, _, _, err := r.NextPrefix(prefix, nil); !errors.Is(err, io.EOF) {
		t.Fatalf("after the last entry: %v, want io.EOF", err)
	}
}

// AppendParts must write exactly what Append of the concatenated payload
// writes (same frame, same CRC), for any split, empty parts included, and
// the entries must read back whole.
func TestAppendPartsSameBytes(t *testing.T) {
	whole := openLog(t, t.TempDir(), nil)
	split := openLog(t, t.TempDir(), nil)
	sizes := []int{0, 1, 61, 4096, readAheadSize + 7, 1 << 20}
	for i, size := range sizes {
		lsn := uint64(i + 1)
		p := testPayload(lsn, size)
		if _, err := whole.Append(3, TypeRecordBatch, p); err != nil {
			t.Fatalf("Append: %v", err)
		}
		a, b := size/3, 2*size/3
		if _, err := split.AppendParts(3, TypeRecordBatch, p[:a], nil, p[a:b], p[b:]); err != nil {
			t.Fatalf("AppendParts: %v", err)
		}
	}
	for _, l := range []*Log{whole, split} {
		if err := l.WaitDurable(context.Background(), uint64(len(sizes))); err != nil {
			t.Fatalf("WaitDurable: %v", err)
		}
	}
	w, s := whole.Segments(), split.Segments()
	if len(w) != 1 || len(s) != 1 {
		t.Fatalf("segments: %d and %d, want 1 each", len(w), len(s))
	}
	wb, err := os.ReadFile(w[0].Path)
	if err != nil {
		t.Fatal(err)
	}
	sb, err := os.ReadFile(s[0].Path)
	if err != nil {
		t.Fatal(err)
	}
	// Compare the entries only: after them each file may hold zero-filled
	// space, as much as the preallocator had written by then.
	if w[0].Bytes != s[0].Bytes || int64(len(wb)) < w[0].Bytes || int64(len(sb)) < s[0].Bytes ||
		!bytes.Equal(wb[:w[0].Bytes], sb[:s[0].Bytes]) {
		t.Fatalf("segment entries differ: %d bytes from Append, %d from AppendParts", w[0].Bytes, s[0].Bytes)
	}
	for _, tail := range [][]byte{wb[w[0].Bytes:], sb[s[0].Bytes:]} {
		if i := bytes.IndexFunc(tail, func(r rune) bool { return r != 0 }); i >= 0 {
			t.Fatalf("non-zero byte %d bytes after the last entry", i)
		}
	}
	got := readAll(t, split, 1)
	if len(got) != len(sizes) {
		t.Fatalf("read %d entries, want %d", len(got), len(sizes))
	}
	for i, e := range got {
		if !bytes.Equal(e.Payload, testPayload(uint64(i+1), sizes[i])) {
			t.Fatalf("LSN %d: payload differs", e.LSN)
		}
	}
	if _, err := split.AppendParts(3, TypeRecordBatch, make([]byte, DefaultMaxEntryBytes), []byte{1}); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("AppendParts over MaxEntryBytes: %v, want ErrTooLarge", err)
	}
}

// The active segment is kept zero-filled ahead of the last entry. A sealed
// segment and a cleanly closed log end exactly at their last entry; a crash
// image (the files copied while the log is open) opens with every entry
// and without the zeros.
func TestPreallocation(t *testing.T) {
	dir := t.TempDir()
	const ahead = 64 << 10
	l := openLog(t, dir, func(o *Options) { o.SegmentBytes = 1 << 20; o.PreallocateBytes = ahead })
	appendN(t, l, 1, 30, 1000)
	active := func() SegmentInfo { s := l.Segments(); return s[len(s)-1] }
	fileSize := func(path string) int64 {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		return fi.Size()
	}
	eventually(t, 5*time.Second, "zero-filled space ahead of the last entry", func() bool {
		a := active()
		return fileSize(a.Path) >= a.Bytes+ahead/2
	})

	// Crash image: copy every file while the log is open.
	crash := t.TempDir()
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, de := range des {
		if data, err := os.ReadFile(filepath.Join(dir, de.Name())); err == nil {
			if err := os.WriteFile(filepath.Join(crash, de.Name()), data, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	logger, logs := testLogger(t)
	c, err := Open(Options{Dir: crash, SegmentBytes: 1 << 20, PreallocateBytes: -1, Logger: logger})
	if err != nil {
		t.Fatalf("Open of the crash image: %v", err)
	}
	checkEntries(t, readAll(t, c, 1), 1, 30, 1000)
	if !strings.Contains(logs.String(), "zero-filled space") || strings.Contains(logs.String(), "torn tail") {
		t.Errorf("recovery log should report removed zero-filled space, not a torn tail:\n%s", logs.String())
	}
	cs := c.Segments()
	if got := fileSize(cs[len(cs)-1].Path); got != cs[len(cs)-1].Bytes {
		t.Errorf("crash image's segment is %d bytes after recovery, want %d", got, cs[len(cs)-1].Bytes)
	}
	closeLog(t, c)

	// Roll several segments: sealed ones end at their last entry.
	appendN(t, l, 1, 30, 100_000)
	segs := l.Segments()
	if len(segs) < 3 {
		t.Fatalf("%d segments, want rolls", len(segs))
	}
	for _, s := range segs[:len(segs)-1] {
		if got := fileSize(s.Path); got != s.Bytes {
			t.Errorf("sealed %s is %d bytes, its entries %d", filepath.Base(s.Path), got, s.Bytes)
		}
	}
	a := active()
	closeLog(t, l)
	if got := fileSize(a.Path); got != a.Bytes {
		t.Errorf("after Close the active segment is %d bytes, its entries %d", got, a.Bytes)
	}
	l = openLog(t, dir, nil)
	if l.LastLSN() != 60 {
		t.Fatalf("LastLSN after reopen = %d, want 60", l.LastLSN())
	}
}

// TestCorruptEpochAcrossSegments: a sealed segment whose first entry has a
// lower epoch than the last entry of the segment before it is corruption.
func TestCorruptEpochAcrossSegments(t *testing.T) {
	const size = 100
	dir := t.TempDir()
	l := openLog(t, dir, func(o *Options) { o.SegmentBytes = 1024 })
	for lsn := uint64(1); lsn <= 20; lsn++ {
		epoch := uint32(1)
		if lsn >= 6 {
			epoch = 2
			if lsn == 6 {
				if err := l.SetEpoch(2, 6); err != nil {
					t.Fatal(err)
				}
			}
		}
		if _, err := l.Append(epoch, TypeRecordBatch, testPayload(lsn, size)); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.WaitDurable(context.Background(), 20); err != nil {
		t.Fatal(err)
	}
	segs := l.Segments()
	closeLog(t, l)
	if len(segs) < 3 || segs[1].FirstLSN <= 6 {
		t.Fatalf("segments %+v: want the second to start in epoch 2", segs)
	}
	// Rewrite the first frame of the second segment with epoch 1 (and a
	// valid CRC, so only the epoch order is wrong).
	s := segs[1]
	frame := appendFrame(nil, Entry{LSN: s.FirstLSN, Epoch: 1, Type: TypeRecordBatch, Payload: testPayload(s.FirstLSN, size)})
	f, err := os.OpenFile(s.Path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(frame, 0); err != nil {
		t.Fatal(err)
	}
	f.Close()
	_, err = Open(Options{Dir: dir, SegmentBytes: 1024})
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Open = %v, want ErrCorrupt", err)
	}
	for _, want := range []string{filepath.Base(s.Path), "offset 0", "epoch 1, lower than epoch 2"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}

// OnRecover stops being called once it returns false; recovery itself
// goes on and opens the whole log.
func TestOnRecoverStops(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, func(o *Options) { o.SegmentBytes = 4096 })
	appendN(t, l, 1, 40, 300)
	closeLog(t, l)
	calls := 0
	l = openLog(t, dir, func(o *Options) {
		o.SegmentBytes = 4096
		o.OnRecover = func(e Entry, _ Pos, _ int) bool {
			calls++
			return e.LSN < 5
		}
	})
	if calls != 5 {
		t.Fatalf("OnRecover called %d times, want 5 (it returned false at LSN 5)", calls)
	}
	if l.LastLSN() != 40 {
		t.Fatalf("LastLSN = %d, want 40", l.LastLSN())
	}
}

// AppendPartsTail with the CRC of the payload's tail (as the broker passes
// a Kafka batch's own CRC) must write exactly the frames Append writes, for
// tails inside one part, across parts, empty and whole, and the log must
// reopen with every entry verified.
func TestAppendPartsTailSameBytes(t *testing.T) {
	wholeDir, tailDir := t.TempDir(), t.TempDir()
	whole := openLog(t, wholeDir, nil)
	tail := openLog(t, tailDir, nil)
	type kase struct{ size, tailLen int }
	var cases []kase
	for _, size := range []int{0, 1, 61, 4096, readAheadSize + 7, 1 << 20} {
		for _, tl := range []int{0, 1, size / 2, size - size/3, size - 21, size} {
			if tl >= 0 && tl <= size {
				cases = append(cases, kase{size, tl})
			}
		}
	}
	for i, c := range cases {
		lsn := uint64(i + 1)
		p := testPayload(lsn, c.size)
		if _, err := whole.Append(3, TypeRecordBatch, p); err != nil {
			t.Fatalf("Append: %v", err)
		}
		a := c.size / 3
		crc := crc32.Checksum(p[c.size-c.tailLen:], castagnoli)
		if _, err := tail.AppendPartsTail(3, TypeRecordBatch, c.tailLen, crc, p[:a], nil, p[a:]); err != nil {
			t.Fatalf("AppendPartsTail(%d of %d bytes): %v", c.tailLen, c.size, err)
		}
	}
	if _, err := tail.AppendPartsTail(3, TypeRecordBatch, 5, 0, []byte{1, 2}); err == nil {
		t.Fatal("AppendPartsTail with a tail longer than the payload: no error")
	}
	n := uint64(len(cases))
	for _, l := range []*Log{whole, tail} {
		if err := l.WaitDurable(context.Background(), n); err != nil {
			t.Fatalf("WaitDurable: %v", err)
		}
	}
	w, s := whole.Segments(), tail.Segments()
	if len(w) != len(s) {
		t.Fatalf("segments: %d and %d", len(w), len(s))
	}
	for i := range w {
		wb, err := os.ReadFile(w[i].Path)
		if err != nil {
			t.Fatal(err)
		}
		sb, err := os.ReadFile(s[i].Path)
		if err != nil {
			t.Fatal(err)
		}
		if w[i].Bytes != s[i].Bytes || !bytes.Equal(wb[:w[i].Bytes], sb[:s[i].Bytes]) {
			t.Fatalf("segment %d differs: %d bytes from Append, %d from AppendPartsTail", i, w[i].Bytes, s[i].Bytes)
		}
	}
	if err := tail.Close(); err != nil {
		t.Fatal(err)
	}
	reopened := openLog(t, tailDir, nil)
	if got := reopened.LastLSN(); got != n {
		t.Fatalf("reopened log ends at LSN %d, want %d", got, n)
	}
	for i, e := range readAll(t, reopened, 1) {
		if !bytes.Equal(e.Payload, testPayload(uint64(i+1), cases[i].size)) {
			t.Fatalf("LSN %d: payload differs after reopening", e.LSN)
		}
	}
}

// Entries read from a WAL carry their payload's CRC-32C; a follower's
// AppendEntry refuses a payload that no longer matches it, writes nothing
// of it, and takes the intact entry afterwards. Entries without a checksum
// (older senders) are appended as before.
func TestAppendEntryChecksum(t *testing.T) {
	leader := openLog(t, t.TempDir(), nil)
	appendN(t, leader, 1, 3, 100)
	appendN(t, leader, 1, 2, 3*readAheadSize) // read outside the read-ahead buffer
	ents := readAll(t, leader, 1)
	if len(ents) != 5 {
		t.Fatalf("read %d entries, want 5", len(ents))
	}
	for _, e := range ents {
		if !e.HasCRC || e.PayloadCRC != crc32.Checksum(e.Payload, castagnoli) {
			t.Fatalf("LSN %d read with checksum %08x (set %v), its payload's is %08x",
				e.LSN, e.PayloadCRC, e.HasCRC, crc32.Checksum(e.Payload, castagnoli))
		}
	}

	follower := openLog(t, t.TempDir(), nil)
	for i, e := range ents {
		if i == 1 || i == 4 {
			damaged := e
			damaged.Payload = bytes.Clone(e.Payload)
			damaged.Payload[len(damaged.Payload)/2] ^= 0x10
			if _, err := follower.AppendEntry(damaged); !errors.Is(err, ErrDamaged) {
				t.Fatalf("AppendEntry(LSN %d, one bit flipped) = %v, want ErrDamaged", e.LSN, err)
			}
			if follower.LastLSN() != e.LSN-1 {
				t.Fatalf("after refusing LSN %d the log ends at %d", e.LSN, follower.LastLSN())
			}
		}
		if i == 2 {
			e.HasCRC = false // as from a sender that does not fill the field in
		}
		if _, err := follower.AppendEntry(e); err != nil {
			t.Fatalf("AppendEntry(LSN %d): %v", e.LSN, err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := follower.WaitDurable(ctx, 5); err != nil {
		t.Fatal(err)
	}
	want, err := leader.Checksum(1, 5)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := follower.Checksum(1, 5); err != nil || got != want {
		t.Fatalf("follower's checksum of 1-5 = %x, %v; the leader's %x", got, err, want)
	}
}

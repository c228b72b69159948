package wal

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// inspectAll runs Inspect from from and returns the entries (with their
// payloads copied) and the notes it reported.
func inspectAll(t *testing.T, dir string, from uint64) (entries []Inspected, notes []Inspected) {
	t.Helper()
	err := Inspect(dir, from, func(in Inspected) error {
		if in.Entry == nil {
			notes = append(notes, in)
			return nil
		}
		e := *in.Entry
		e.Payload = bytes.Clone(e.Payload)
		in.Entry = &e
		entries = append(entries, in)
		return nil
	})
	if err != nil {
		t.Fatalf("Inspect: %v", err)
	}
	return entries, notes
}

// Inspect lists every entry of a log that is open and being written, as a
// reader does, with the place of each frame, and notes the preallocated
// zeros after the last one without calling them corruption; it changes
// nothing.
func TestInspectListsEntries(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, func(o *Options) { o.SegmentBytes = 4096; o.PreallocateBytes = 8192 })
	pos := appendN(t, l, 1, 40, 150)
	pos = append(pos, appendN(t, l, 3, 25, 150)...)
	if !inUse(dir) {
		t.Error("inUse says no Log has the open log's directory")
	}

	entries, notes := inspectAll(t, dir, 0)
	if len(entries) != 65 {
		t.Fatalf("Inspect listed %d entries, want 65", len(entries))
	}
	for i, in := range entries {
		e, p := in.Entry, pos[i]
		wantEpoch := uint32(1)
		if i >= 40 {
			wantEpoch = 3
		}
		if e.LSN != p.LSN || e.Epoch != wantEpoch || e.Type != TypeRecordBatch || !bytes.Equal(e.Payload, testPayload(p.LSN, 150)) ||
			in.Segment != segmentName(p.Segment) || in.Offset != p.Offset || in.FrameBytes != int64(frameSize(150)) {
			t.Fatalf("entry %d: LSN %d epoch %d type %v at %s+%d (%d bytes); appended as LSN %d epoch %d at %s+%d",
				i, e.LSN, e.Epoch, e.Type, in.Segment, in.Offset, in.FrameBytes, p.LSN, wantEpoch, segmentName(p.Segment), p.Offset)
		}
	}
	for _, n := range notes {
		if n.Corrupt || !strings.Contains(n.Note, "preallocated") || n.Segment != segmentName(pos[len(pos)-1].Segment) {
			t.Errorf("note on a healthy open log: %+v", n)
		}
	}
	// From LSN 50: the segments wholly before it are not read.
	entries, _ = inspectAll(t, dir, 50)
	if len(entries) == 0 {
		t.Fatal("nothing listed from LSN 50")
	}
	if len(entries) == 0 || entries[0].Entry.LSN > 50 || entries[0].Entry.LSN < 40 || entries[len(entries)-1].Entry.LSN != 65 {
		t.Fatalf("from 50: entries %d to %d", entries[0].Entry.LSN, entries[len(entries)-1].Entry.LSN)
	}
	// Of a closed log (whose preallocator no longer grows the file), it
	// changes nothing.
	closeLog(t, l)
	if inUse(dir) {
		t.Error("inUse says a Log has the closed log's directory")
	}
	before := dirSizes(t, dir)
	if entries, notes = inspectAll(t, dir, 0); len(entries) != 65 || len(notes) != 0 {
		t.Fatalf("Inspect of the closed log: %d entries, notes %+v", len(entries), notes)
	}
	if after := dirSizes(t, dir); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatalf("Inspect changed the directory: %v, then %v", before, after)
	}
	if err := Inspect(t.TempDir(), 0, func(Inspected) error { return nil }); err == nil || !strings.Contains(err.Error(), "no segment files") {
		t.Fatalf("Inspect of an empty directory: %v", err)
	}
}

// dirSizes maps each file of dir to its size.
func dirSizes(t *testing.T, dir string) map[string]int64 {
	t.Helper()
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]int64{}
	for _, de := range des {
		fi, err := de.Info()
		if err != nil {
			t.Fatal(err)
		}
		m[de.Name()] = fi.Size()
	}
	return m
}

// Inspect calls damage corrupt exactly where Open refuses the log
// (ErrCorrupt): its first corrupt note names the segment and offset that
// Open's error names, and it goes on to list the valid entries after the
// damage. A torn tail and zeros after the last entry, which Open repairs,
// are noted without being called corrupt, and the entries listed before
// them are those Open keeps.
func TestInspectAgreesWithOpen(t *testing.T) {
	const size = 100
	fs := int64(frameSize(size))
	rewrite := func(path string, off int64, b []byte) {
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			panic(err)
		}
		defer f.Close()
		if _, err := f.WriteAt(b, off); err != nil {
			panic(err)
		}
	}
	flip := func(path string, off int64) {
		b, err := os.ReadFile(path)
		if err != nil {
			panic(err)
		}
		rewrite(path, off, []byte{b[off] ^ 0x40})
	}
	appendTo := func(path string, b []byte) {
		fi, err := os.Stat(path)
		if err != nil {
			panic(err)
		}
		rewrite(path, fi.Size(), b)
	}
	last := func(segs []SegmentInfo) SegmentInfo { return segs[len(segs)-1] }
	tests := []struct {
		name    string
		segSize int64
		damage  func(segs []SegmentInfo)
		corrupt bool
		// after is an LSN after the damage that Inspect still lists (when
		// corrupt).
		after func(segs []SegmentInfo) uint64
	}{
		{"payload byte of an early entry", 1 << 20, func(segs []SegmentInfo) { flip(segs[0].Path, 2*fs+30) }, true, lsn(4)},
		{"length field of an early entry", 1 << 20, func(segs []SegmentInfo) { flip(segs[0].Path, 3*fs+2) }, true, lsn(5)},
		{"last entry of a sealed segment", 1024, func(segs []SegmentInfo) { flip(segs[1].Path, segs[1].Bytes-3) }, true, func(segs []SegmentInfo) uint64 { return segs[2].FirstLSN }},
		{"garbage after a sealed segment", 1024, func(segs []SegmentInfo) { appendTo(segs[0].Path, make([]byte, 10)) }, true, lsn(20)},
		{"missing middle segment", 1024, func(segs []SegmentInfo) { os.Remove(segs[1].Path) }, true, lsn(20)},
		{"entry with a wrong LSN", 1 << 20, func(segs []SegmentInfo) {
			appendTo(segs[0].Path, appendFrame(nil, Entry{LSN: 99, Epoch: 1, Payload: []byte("x")}))
		}, true, lsn(99)},
		{"entry with a lower epoch", 1 << 20, func(segs []SegmentInfo) {
			appendTo(segs[0].Path, appendFrame(nil, Entry{LSN: 21, Epoch: 0, Payload: []byte("x")}))
		}, true, lsn(21)},
		{"torn tail: half a frame", 1 << 20, func(segs []SegmentInfo) {
			appendTo(last(segs).Path, appendFrame(nil, Entry{LSN: 21, Epoch: 1, Payload: testPayload(21, size)})[:60])
		}, false, nil},
		{"torn tail: zeros", 1024, func(segs []SegmentInfo) { appendTo(last(segs).Path, make([]byte, 4096)) }, false, nil},
		{"torn tail: a frame with a bad checksum", 1 << 20, func(segs []SegmentInfo) {
			f := appendFrame(nil, Entry{LSN: 21, Epoch: 1, Payload: testPayload(21, size)})
			f[len(f)-1] ^= 1
			appendTo(last(segs).Path, f)
		}, false, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			l := openLog(t, dir, func(o *Options) { o.SegmentBytes = tt.segSize })
			appendN(t, l, 1, 20, size)
			segs := l.Segments()
			closeLog(t, l)
			tt.damage(segs)

			entries, notes := inspectAll(t, dir, 0)
			var firstCorrupt *Inspected
			for i := range notes {
				if notes[i].Corrupt && firstCorrupt == nil {
					firstCorrupt = &notes[i]
				}
			}
			if len(notes) == 0 {
				t.Fatal("Inspect noted nothing")
			}
			var kept, recovered []uint64
			l, err := Open(Options{Dir: dir, SegmentBytes: tt.segSize, PreallocateBytes: -1,
				OnRecover: func(e Entry, _ Pos, _ int) bool { recovered = append(recovered, e.LSN); return true }})
			if err == nil {
				l.Close()
			}
			if errors.Is(err, ErrCorrupt) != tt.corrupt || (err != nil && !tt.corrupt) {
				t.Fatalf("Open = %v; the test expects corrupt=%v", err, tt.corrupt)
			}
			if (firstCorrupt != nil) != tt.corrupt {
				t.Fatalf("Inspect's notes %+v; Open: %v", notes, err)
			}
			if tt.corrupt {
				for _, want := range []string{firstCorrupt.Segment, fmt.Sprintf("offset %d", firstCorrupt.Offset)} {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("Open's error %q lacks %q, where Inspect noted %q", err, want, firstCorrupt.Note)
					}
				}
				after, found := tt.after(segs), false
				for _, e := range entries {
					found = found || e.Entry.LSN == after
				}
				if !found {
					t.Errorf("Inspect did not list LSN %d, after the damage", after)
				}
				return
			}
			for _, e := range entries {
				kept = append(kept, e.Entry.LSN)
			}
			if fmt.Sprint(kept) != fmt.Sprint(recovered) {
				t.Fatalf("Inspect listed %v before the torn tail; Open kept %v", kept, recovered)
			}
			if !strings.Contains(notes[0].Note, "torn tail") && !strings.Contains(notes[0].Note, "preallocated") {
				t.Errorf("the torn tail's note: %q", notes[0].Note)
			}
		})
	}
}

// lsn is an after of TestInspectAgreesWithOpen that does not depend on
// the segments.
func lsn(n uint64) func([]SegmentInfo) uint64 { return func([]SegmentInfo) uint64 { return n } }

// FuzzInspect writes arbitrary bytes as the only segment file, inspects
// it, then opens the log: Inspect must never panic, must call the bytes
// corrupt exactly when Open refuses them (ErrCorrupt), and when Open
// accepts them, the entries Inspect lists before its first note must be
// those Open recovers.
func FuzzInspect(f *testing.F) {
	addSegmentSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, segmentName(1)), data, 0o644); err != nil {
			t.Fatal(err)
		}
		var listed []uint64
		corrupt, noted := false, false
		err := Inspect(dir, 0, func(in Inspected) error {
			switch {
			case in.Entry == nil:
				noted = true
				corrupt = corrupt || in.Corrupt
			case !noted:
				listed = append(listed, in.Entry.LSN)
			}
			return nil
		})
		if err != nil {
			t.Fatalf("Inspect: %v", err)
		}
		var recovered []uint64
		l, err := Open(Options{Dir: dir, Sync: SyncNone, PreallocateBytes: -1,
			OnRecover: func(e Entry, _ Pos, _ int) bool { recovered = append(recovered, e.LSN); return true }})
		if err == nil {
			defer l.Close()
		}
		switch {
		case errors.Is(err, ErrCorrupt) != corrupt:
			t.Fatalf("Open: %v; Inspect called it corrupt: %v", err, corrupt)
		case err != nil && !corrupt:
			t.Fatalf("Open: %v", err)
		case err == nil && fmt.Sprint(listed) != fmt.Sprint(recovered):
			t.Fatalf("Inspect listed %v before its first note; Open recovered %v", listed, recovered)
		}
	})
}

// Inspect of a log being appended to at full speed never calls what it
// reads corrupt: a frame it finds half-written is looked at again, and a
// tail still being written is at worst a torn tail.
func TestInspectWhileAppending(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, func(o *Options) { o.SegmentBytes = 256 << 10; o.Sync = SyncNone })
	stop := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		payload := testPayload(1, 3000)
		for {
			select {
			case <-stop:
				done <- nil
				return
			default:
			}
			if _, err := l.Append(1, TypeRecordBatch, payload); err != nil {
				done <- err
				return
			}
		}
	}()
	defer func() {
		close(stop)
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}()
	var passes, entries int
	for end := time.Now().Add(2 * time.Second); time.Now().Before(end); passes++ {
		var last uint64
		i := passes
		err := Inspect(dir, 0, func(in Inspected) error {
			switch {
			case in.Corrupt:
				return fmt.Errorf("pass %d: %s offset %d: %s", i, in.Segment, in.Offset, in.Note)
			case in.Entry != nil:
				if last != 0 && in.Entry.LSN != last+1 {
					return fmt.Errorf("pass %d: LSN %d after %d", i, in.Entry.LSN, last)
				}
				last = in.Entry.LSN
				entries++
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("%d passes read %d entries", passes, entries)
}

// Segments that retention deletes while Inspect reads are noted, and the
// segment after them is a new start, not a gap.
func TestInspectWhileRetentionDeletes(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, func(o *Options) { o.SegmentBytes = 1024 })
	appendN(t, l, 1, 40, 100)
	segs := l.Segments()
	closeLog(t, l)
	if len(segs) < 4 {
		t.Fatalf("%d segments, want 4 or more", len(segs))
	}
	var notes []Inspected
	var first uint64
	err := Inspect(dir, 0, func(in Inspected) error {
		switch {
		case in.Entry == nil:
			notes = append(notes, in)
		case first == 0:
			first = in.Entry.LSN
			// Retention deletes the first two segments now.
			for _, s := range segs[:2] {
				if err := os.Remove(s.Path); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(notes) != 1 || notes[0].Corrupt || notes[0].Segment != filepath.Base(segs[1].Path) || !strings.Contains(notes[0].Note, "deleted while being read") {
		t.Fatalf("notes %+v, want one, not corrupt, on %s", notes, filepath.Base(segs[1].Path))
	}
}

// A segment of a live log cut short while Inspect reads it (a broker
// sealing it cuts its preallocated zeros off, a follower's repair its
// diverging tail) ends where it now ends: no error, no damage.
func TestInspectWhileTheSegmentIsCut(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, func(o *Options) { o.PreallocateBytes = 1 << 20 })
	appendN(t, l, 1, 30, 200)
	path := lastSegmentPath(l)
	var entries []uint64
	var notes []Inspected
	err := Inspect(dir, 0, func(in Inspected) error {
		if in.Entry == nil {
			notes = append(notes, in)
			return nil
		}
		entries = append(entries, in.Entry.LSN)
		if in.Entry.LSN == 10 {
			// Cut the file after this entry.
			return os.Truncate(path, in.Offset+in.FrameBytes)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("Inspect: %v", err)
	}
	if len(entries) != 10 || entries[9] != 10 {
		t.Fatalf("entries %v; want LSNs 1-10", entries)
	}
	for _, n := range notes {
		// The log's preallocator may zero-fill the file again.
		if n.Corrupt || !strings.Contains(n.Note, "preallocated") {
			t.Errorf("note %+v", n)
		}
	}
}

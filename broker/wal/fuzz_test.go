package wal

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// FuzzDecodeFrame checks that the frame decoder never panics, never reads
// past its input, and accepts only frames that re-encode to the same bytes.
// Seed corpus: testdata/fuzz/FuzzDecodeFrame (valid, truncated, bad CRC).
func FuzzDecodeFrame(f *testing.F) {
	f.Add(appendFrame(nil, Entry{LSN: 1, Epoch: 1, Type: TypeNoop}))
	f.Fuzz(func(t *testing.T, b []byte) {
		e, n, err := decodeFrame(b, 1<<20)
		if err != nil {
			if n != 0 {
				t.Fatalf("error %v with n = %d", err, n)
			}
			return
		}
		if n < frameHeaderSize || n > len(b) {
			t.Fatalf("decoded %d bytes of %d", n, len(b))
		}
		if len(e.Payload) > 1<<20 {
			t.Fatalf("payload of %d bytes above the limit", len(e.Payload))
		}
		if re := appendFrame(nil, e); !bytes.Equal(re, b[:n]) {
			t.Fatalf("re-encoded frame differs:\n%x\n%x", re, b[:n])
		}
		// Any proper prefix is a short frame, never a valid one.
		if _, _, err := decodeFrame(b[:n-1], 1<<20); err == nil {
			t.Fatal("a truncated frame decoded")
		}
	})
}

// addSegmentSeeds adds the seeds of the fuzz targets that take a whole
// segment file: empty, three valid entries, a torn tail, trailing zeros,
// a flipped byte in the middle, and a power-failure hole.
func addSegmentSeeds(f *testing.F) {
	var valid []byte
	for i := uint64(1); i <= 3; i++ {
		valid = appendFrame(valid, Entry{LSN: i, Epoch: uint32(i / 2), Type: TypeRecordBatch, Payload: bytes.Repeat([]byte{byte(i)}, int(i*10))})
	}
	f.Add([]byte{})
	f.Add(valid)
	f.Add(valid[:len(valid)-7])
	f.Add(append(slices.Clone(valid), 0, 0, 0, 0, 0, 0))
	mid := slices.Clone(valid)
	mid[30] ^= 1
	f.Add(mid)
	// A power-failure hole: entries 1-2, zeros to the end of the sector,
	// entry 3 after them (recovery cuts the log after entry 2).
	two := frameSize(10) + frameSize(20)
	f.Add(append(append(slices.Clone(valid[:two]), make([]byte, sectorSize-two)...), valid[two:]...))
}

// FuzzOpen writes arbitrary bytes as the only segment file and opens the
// log: Open must fail with an error or yield a clean log whose entries all
// read back, that takes new appends and that reopens identically. It must
// never panic or hang.
func FuzzOpen(f *testing.F) {
	addSegmentSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		path := filepath.Join(dir, segmentName(1))
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		l, err := Open(Options{Dir: dir, Sync: SyncNone, PreallocateBytes: -1})
		if err != nil {
			return
		}
		defer l.Close()
		last := l.LastLSN()
		var got []Entry
		r, err := l.NewReader(1)
		if err != nil {
			t.Fatal(err)
		}
		for {
			e, _, err := r.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("Next after %d entries: %v", len(got), err)
			}
			got = append(got, e)
		}
		r.Close()
		if uint64(len(got)) != last {
			t.Fatalf("read %d entries, LastLSN %d", len(got), last)
		}
		if fi, err := os.Stat(path); err != nil || fi.Size() > int64(len(data)) {
			t.Fatalf("segment grew during recovery: %v", err)
		}
		var epoch uint32
		if h := l.EpochHistory(); len(h) > 0 {
			epoch = h[len(h)-1].Epoch
		}
		if _, err := l.Append(epoch, TypeNoop, []byte("after")); err != nil {
			t.Fatalf("Append after recovery: %v", err)
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		l2, err := Open(Options{Dir: dir, Sync: SyncNone})
		if err != nil {
			t.Fatalf("reopen of a recovered log: %v", err)
		}
		defer l2.Close()
		if l2.LastLSN() != last+1 {
			t.Fatalf("reopened LastLSN %d, want %d", l2.LastLSN(), last+1)
		}
	})
}

// FuzzDecodeEpochs checks the epoch history parser (an operator may edit
// the file by hand): no panic, and what it accepts re-encodes identically
// or at least round-trips.
func FuzzDecodeEpochs(f *testing.F) {
	f.Add(encodeEpochs(nil))
	f.Add(encodeEpochs([]EpochStart{{1, 1}, {3, 40}, {4, 40}}))
	f.Add([]byte("tandem-wal-epochs v1\n1 1\ncrc32c 00000000\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		hist, err := decodeEpochs(data)
		if err != nil {
			return
		}
		again, err := decodeEpochs(encodeEpochs(hist))
		if err != nil || !equalEpochs(hist, again) {
			t.Fatalf("accepted history %v does not round-trip: %v, %v", hist, again, err)
		}
	})
}

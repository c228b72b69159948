package wal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"time"
)

// Inspected is one thing Inspect found in a WAL directory: an entry, or a
// note about bytes that do not hold the entry expected there.
type Inspected struct {
	Segment string // the segment file's name
	Offset  int64  // where the frame or the bytes noted begin in it
	// Entry is the entry whose frame starts at Offset (nil for a note).
	// Its Payload is only valid during the call.
	Entry *Entry
	// FrameBytes is the size of the entry's frame on disk.
	FrameBytes int64
	// Note says what is at Offset when it is not an entry (Entry nil): the
	// preallocated zeros that end the active segment, a torn tail, damage,
	// or an LSN or epoch out of order.
	Note string
	// Corrupt marks a note about damage that a broker refuses to start
	// on (Open's ErrCorrupt): bad bytes with valid entries after them, an
	// LSN out of sequence, an epoch that goes down, a missing segment. A
	// torn tail and preallocated zeros are not corrupt: Open repairs and
	// cuts them.
	Corrupt bool
}

// Inspect reads the WAL segments in dir in LSN order and calls fn with
// every entry and every note about bytes that are not the entry expected
// there (see Inspected), as pg_waldump and kafka-dump-log.sh do. It takes
// no lock and changes nothing, so it may read the WAL of a broker that
// is running: a frame of the newest segment that does not decode is then
// read again a few times before it is taken for damage, and the newest
// frame may be seen half-written, as a torn tail. Where a frame does not decode, it looks for the next valid frame in
// the segment, as Open's recovery does, and goes on from there. Segments
// whose successor begins at or below from are skipped without being read;
// the page cache of old segments is released once read, as Open does.
// An error from fn stops the walk and is returned.
func Inspect(dir string, from uint64, fn func(Inspected) error) error {
	des, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("wal: read directory: %w", err)
	}
	var firsts []uint64
	for _, de := range des {
		if first, ok := parseSegmentName(de.Name()); ok && de.Type().IsRegular() {
			firsts = append(firsts, first)
		}
	}
	if len(firsts) == 0 {
		return fmt.Errorf("wal: %s holds no segment files (%%020d%s)", dir, segmentSuffix)
	}
	sort.Slice(firsts, func(i, j int) bool { return firsts[i] < firsts[j] })
	// Bytes of the segments after each one: as recovery, a segment wholly
	// behind the page cache that a broker keeps (DefaultPageCacheBytes) is
	// released once read, so that reading a large WAL does not push a
	// running broker's recent data out of the cache.
	after := make([]int64, len(firsts))
	for i := len(firsts) - 2; i >= 0; i-- {
		after[i] = after[i+1]
		if fi, err := os.Stat(filepath.Join(dir, segmentName(firsts[i+1]))); err == nil {
			after[i] += fi.Size()
		}
	}
	in := inspector{fn: fn, live: inUse(dir)}
	for i, first := range firsts {
		if i+1 < len(firsts) && firsts[i+1] <= from {
			continue
		}
		if in.started && first != in.expected {
			name := segmentName(first)
			var note string
			if first > in.expected {
				note = fmt.Sprintf("LSNs %d to %d are missing: the segment before ends at %d and this one begins at %d", in.expected, first-1, in.expected-1, first)
			} else {
				note = fmt.Sprintf("this segment begins at LSN %d, but the segment before holds entries up to %d", first, in.expected-1)
			}
			if err := fn(Inspected{Segment: name, Note: note, Corrupt: true}); err != nil {
				return err
			}
		}
		if first == 0 {
			if err := fn(Inspected{Segment: segmentName(first), Note: "the file name gives LSN 0 (LSNs start at 1)", Corrupt: true}); err != nil {
				return err
			}
			continue
		}
		release := cacheReleaseSupported && i < len(firsts)-1 && after[i] >= DefaultPageCacheBytes
		if err := in.segment(filepath.Join(dir, segmentName(first)), first, i == len(firsts)-1, release); err != nil {
			return err
		}
	}
	return nil
}

// inspector carries Inspect's state from one segment to the next.
type inspector struct {
	fn        func(Inspected) error
	started   bool
	expected  uint64 // the next LSN
	epoch     uint32 // the last entry's epoch
	haveEpoch bool   // an entry was read
	buf       []byte // the frame being read
	live      bool   // a process has the log open and may be appending
}

// segment inspects one segment file; last says it is the newest, where a
// torn tail is expected after a crash, and release that its page cache is
// released once read.
func (in *inspector) segment(path string, first uint64, last, release bool) error {
	name := filepath.Base(path)
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		// Retention deleted it since the directory was read (and the ones
		// before it): the next segment is a new start, not a gap.
		in.started, in.haveEpoch = false, false
		return in.fn(Inspected{Segment: name, Note: "deleted while being read (retention)"})
	}
	if err != nil {
		return fmt.Errorf("wal: %w", err)
	}
	defer f.Close()
	if release {
		defer releaseCache(f, 0, 0)
	}
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("wal: %w", err)
	}
	size := st.Size()
	in.started, in.expected = true, first
	off := int64(0)
	for off < size {
		n, body, err := readFrameAt(f, off, size, &in.buf)
		for try := 0; err == nil && body == nil && last && in.live && try < 5; try++ {
			// A running broker may be writing this frame now: look again
			// (up to the file's size then) before calling it damage.
			time.Sleep(20 * time.Millisecond)
			if st, err := f.Stat(); err == nil {
				size = max(size, st.Size())
			}
			n, body, err = readFrameAt(f, off, size, &in.buf)
		}
		if in.live && (err != nil || body == nil) {
			// The file may have been cut while it was read: a segment the
			// broker sealed loses its preallocated zeros, a follower's
			// repair its diverging tail. Its entries end where it now ends.
			if st, serr := f.Stat(); serr == nil && st.Size() < size {
				size = st.Size()
				continue
			}
		}
		if err != nil {
			return err
		}
		if body == nil { // the bytes at off are not a frame: n says why
			next, stop, err := in.damage(f, name, off, size, n.reason, last)
			if err != nil || stop {
				return err
			}
			off = next
			continue
		}
		e := Entry{LSN: binary.BigEndian.Uint64(body[0:8]), Epoch: binary.BigEndian.Uint32(body[8:12]),
			Type: EntryType(body[12]), Payload: body[bodyFixedSize:]}
		e.PayloadCRC, e.HasCRC = crc32.Checksum(e.Payload, castagnoli), true
		switch {
		case e.LSN != in.expected:
			if err := in.fn(Inspected{Segment: name, Offset: off, Corrupt: true,
				Note: fmt.Sprintf("a valid frame with LSN %d where LSN %d belongs", e.LSN, in.expected)}); err != nil {
				return err
			}
		case in.haveEpoch && e.Epoch < in.epoch:
			if err := in.fn(Inspected{Segment: name, Offset: off, Corrupt: true,
				Note: fmt.Sprintf("LSN %d has epoch %d, lower than epoch %d of the entry before it", e.LSN, e.Epoch, in.epoch)}); err != nil {
				return err
			}
		}
		if err := in.fn(Inspected{Segment: name, Offset: off, Entry: &e, FrameBytes: n.bytes}); err != nil {
			return err
		}
		in.expected, in.epoch, in.haveEpoch = e.LSN+1, e.Epoch, true
		off += n.bytes
	}
	return nil
}

// damage notes bytes at off that are not a frame and returns where to go
// on (stop: nothing valid follows in this segment).
func (in *inspector) damage(f *os.File, name string, off, size int64, reason string, last bool) (next int64, stop bool, err error) {
	if zero, err := zeroFrom(f, off, size); err != nil {
		if in.live && errors.Is(err, io.EOF) {
			return 0, true, nil // cut meanwhile: it ends here
		}
		return 0, false, fmt.Errorf("wal: read %s: %w", name, err)
	} else if zero {
		note := fmt.Sprintf("%d zero bytes to the end of the file: space preallocated for the next entries", size-off)
		if !last {
			note = fmt.Sprintf("%d zero bytes to the end of the file, where LSN %d belongs: a sealed segment ends with its last entry, so this one lost its end", size-off, in.expected)
		}
		return 0, true, in.fn(Inspected{Segment: name, Offset: off, Note: note, Corrupt: !last})
	}
	at, lsn, found, err := findValidFrame(f, off+1, size, in.expected)
	if err != nil {
		return 0, false, fmt.Errorf("wal: read %s: %w", name, err)
	}
	if !found {
		note := fmt.Sprintf("%s, and no valid entry in the %d bytes after it: a torn tail (LSN %d was being written when the process or machine stopped); a broker cuts it off when it starts", reason, size-off, in.expected)
		if !last {
			note = fmt.Sprintf("%s, and no valid entry in the %d bytes after it, where LSN %d belongs: a sealed segment must end with its last entry", reason, size-off, in.expected)
		}
		return 0, true, in.fn(Inspected{Segment: name, Offset: off, Note: note, Corrupt: !last})
	}
	corrupt := true
	note := fmt.Sprintf("%s; %d damaged bytes, then a valid entry with LSN %d at offset %d: the WAL is corrupt here and a broker refuses to start on it", reason, at-off, lsn, at)
	if last {
		// As recovery: a hole that no fsync covered (a power failure kept
		// later writes but not this one) is a torn tail.
		hole, err := neverWrittenAt(f, off, size)
		if err != nil {
			return 0, false, fmt.Errorf("wal: read %s: %w", name, err)
		}
		if hole {
			corrupt = false
			note = fmt.Sprintf("%s: a hole that no fsync covered (a power failure kept later writes but not this one), %d bytes before a valid entry with LSN %d at offset %d; a broker cuts the segment off here when it starts, dropping the entries after it (never acknowledged under --fsync every-batch)", reason, at-off, lsn, at)
		}
	}
	if err := in.fn(Inspected{Segment: name, Offset: off, Note: note, Corrupt: corrupt}); err != nil {
		return 0, false, err
	}
	in.expected = lsn
	return at, false, nil
}

// frameAt is the size of the frame readFrameAt read, or why the bytes are
// not one.
type frameAt struct {
	bytes  int64
	reason string
}

// readFrameAt reads the frame at off of f (size bytes long) into buf
// and checks its length and CRC. body is the bytes the CRC covers (LSN,
// epoch, type and payload; it aliases *buf), nil when there is no valid
// frame at off.
func readFrameAt(f *os.File, off, size int64, buf *[]byte) (frameAt, []byte, error) {
	if size-off < frameHeaderSize {
		return frameAt{reason: fmt.Sprintf("only %d bytes left, less than a frame header", size-off)}, nil, nil
	}
	var hdr [lenCRCSize]byte
	if _, err := f.ReadAt(hdr[:], off); err != nil {
		return frameAt{}, nil, fmt.Errorf("wal: read %s at offset %d: %w", f.Name(), off, err)
	}
	length := binary.BigEndian.Uint32(hdr[0:4])
	if length < bodyFixedSize || int64(length)-bodyFixedSize > maxDecodeEntry {
		return frameAt{reason: fmt.Sprintf("invalid frame length %d", length)}, nil, nil
	}
	if int64(length) > size-off-lenCRCSize {
		return frameAt{reason: fmt.Sprintf("a frame of %d bytes would extend past the end of the file", lenCRCSize+int64(length))}, nil, nil
	}
	if cap(*buf) < int(length) {
		*buf = make([]byte, length)
	}
	body := (*buf)[:length]
	if _, err := io.ReadFull(io.NewSectionReader(f, off+lenCRCSize, int64(length)), body); err != nil {
		return frameAt{}, nil, fmt.Errorf("wal: read %s at offset %d: %w", f.Name(), off, err)
	}
	if crc32.Checksum(body, castagnoli) != binary.BigEndian.Uint32(hdr[4:8]) {
		return frameAt{reason: "checksum mismatch"}, nil, nil
	}
	return frameAt{bytes: lenCRCSize + int64(length)}, body, nil
}

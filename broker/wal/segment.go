package wal

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

const (
	segmentSuffix = ".wal"
	// indexInterval is the distance in bytes between two points of a
	// segment's sparse in-memory index.
	indexInterval = 64 << 10
	// scanBufferSize is the read buffer used for sequential scans
	// (recovery, truncation, forward search for a valid frame).
	scanBufferSize = 1 << 20
)

// segmentName returns the file name of the segment whose first LSN is first.
func segmentName(first uint64) string { return fmt.Sprintf("%020d%s", first, segmentSuffix) }

// parseSegmentName returns the first LSN encoded in a segment file name.
func parseSegmentName(name string) (uint64, bool) {
	num, ok := strings.CutSuffix(name, segmentSuffix)
	if !ok || len(num) != 20 {
		return 0, false
	}
	for _, c := range num {
		if c < '0' || c > '9' {
			return 0, false
		}
	}
	v, err := strconv.ParseUint(num, 10, 64)
	if err != nil {
		return 0, false
	}
	return v, true
}

// indexPoint maps an LSN to the byte offset of its frame.
type indexPoint struct {
	lsn uint64
	off int64
}

// segment is one segment file. Every field is guarded by Log.mu except f,
// first and path, which never change after creation. The *os.File stays
// open for the segment's whole life so readers can ReadAt without opening
// files; it is closed when the segment is deleted or the log is closed (Go
// defers the real close(2) until in-flight ReadAt calls return, and later
// calls fail with os.ErrClosed).
type segment struct {
	first     uint64 // LSN of the first entry (and the file name)
	path      string
	f         *os.File
	last      uint64 // LSN of the last entry; first-1 when empty
	size      int64  // bytes of complete frames
	alloc     int64  // the file is zero-filled (preallocated) from size up to here
	released  int64  // page cache released up to here (Options.PageCacheBytes)
	index     []indexPoint
	lastWrite time.Time
	removed   bool // deleted or truncated away; readers must re-seek
}

func (s *segment) empty() bool { return s.last < s.first }

// addIndexLocked records the frame of lsn at off if it is far enough from
// the previous index point (or is the segment's first frame).
func (s *segment) addIndexLocked(lsn uint64, off int64) {
	if n := len(s.index); n == 0 || off-s.index[n-1].off >= indexInterval {
		s.index = append(s.index, indexPoint{lsn: lsn, off: off})
	}
}

// seekLocked returns the closest known frame at or before lsn: its offset and
// LSN. The caller scans forward from there.
func (s *segment) seekLocked(lsn uint64) (int64, uint64) {
	i := sort.Search(len(s.index), func(i int) bool { return s.index[i].lsn > lsn })
	if i == 0 {
		return 0, s.first
	}
	p := s.index[i-1]
	return p.off, p.lsn
}

// trimIndexLocked drops index points at or past off.
func (s *segment) trimIndexLocked(off int64) {
	i := sort.Search(len(s.index), func(i int) bool { return s.index[i].off >= off })
	s.index = s.index[:i]
}

// locateLocked returns the byte offset of the frame of lsn, which must be in
// the segment. It starts at the nearest index point and reads only frame
// headers from there.
func (s *segment) locateLocked(lsn uint64) (int64, error) {
	if lsn < s.first || lsn > s.last {
		return 0, fmt.Errorf("wal: LSN %d is not in segment %s", lsn, s.path)
	}
	off, _ := s.seekLocked(lsn)
	br := bufio.NewReaderSize(io.NewSectionReader(s.f, off, s.size-off), 64<<10)
	var hdr [frameHeaderSize]byte
	for off < s.size {
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			return 0, fmt.Errorf("%w: %s offset %d: reading frame header: %v", ErrCorrupt, s.path, off, err)
		}
		h, err := parseHeader(hdr[:], maxDecodeEntry)
		if err != nil {
			return 0, fmt.Errorf("%w: %s offset %d: %v", ErrCorrupt, s.path, off, err)
		}
		if h.lsn == lsn {
			return off, nil
		}
		if h.lsn > lsn {
			return 0, fmt.Errorf("%w: %s offset %d: found LSN %d while looking for %d", ErrCorrupt, s.path, off, h.lsn, lsn)
		}
		if _, err := br.Discard(int(h.total()) - frameHeaderSize); err != nil {
			return 0, fmt.Errorf("%w: %s offset %d: %v", ErrCorrupt, s.path, off, err)
		}
		off += h.total()
	}
	return 0, fmt.Errorf("%w: %s: LSN %d not found before end of segment", ErrCorrupt, s.path, lsn)
}

// createSegmentLocked creates the empty segment file for first and fsyncs
// the directory. When that fsync fails, the file is removed again (and the
// directory fsynced once more, so that a crash does not bring the file
// back if the failure was passing), so that the next attempt (the next
// append retries a roll) can create it.
func (l *Log) createSegmentLocked(first uint64) (*segment, error) {
	path := filepath.Join(l.dir, segmentName(first))
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return nil, fmt.Errorf("wal: create segment: %w", err)
	}
	dirSync := func() error { return syncDir(l.dir) }
	if l.fsyncHook != nil {
		err = l.fsyncHook(l.dir, dirSync)
	} else {
		err = dirSync()
	}
	if err != nil {
		f.Close()
		if rerr := os.Remove(path); rerr != nil {
			return nil, fmt.Errorf("%w (creating %s; removing it again failed: %v)", err, path, rerr)
		}
		_ = syncDir(l.dir)
		return nil, fmt.Errorf("%w (creating %s, removed again)", err, path)
	}
	return &segment{first: first, path: path, f: f, last: first - 1, lastWrite: time.Now()}, nil
}

// syncDir fsyncs a directory so that file creations, renames and removals
// in it are durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("wal: open directory for fsync: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("wal: fsync directory %s: %w", dir, err)
	}
	return nil
}

// scanState carries what recovery learns across segments.
type scanState struct {
	haveEpoch bool
	epoch     uint32       // epoch of the last entry seen
	starts    []EpochStart // epoch transitions seen in the entries
	lastPath  string       // file and offset of the last entry, for messages
	lastOff   int64
	onRecover func(Entry, Pos, int) bool // Options.OnRecover; nil once it returned false
}

// badFrame describes the first frame of a segment that does not decode.
type badFrame struct {
	off    int64
	reason string
}

// scanSegment reads a segment from the start, verifying every frame's
// length, CRC, LSN (must continue from s.first) and epoch (must not go
// down). It fills s.last, s.size and s.index. It stops at the first frame
// that does not decode and reports it as a badFrame (s.size is then that
// frame's offset); a frame that decodes but has the wrong LSN or a lower
// epoch is an error wrapping ErrCorrupt, because no torn write produces it.
func scanSegment(s *segment, fileSize int64, st *scanState) (*badFrame, error) {
	br := bufio.NewReaderSize(io.NewSectionReader(s.f, 0, fileSize), scanBufferSize)
	var hdr [lenCRCSize]byte
	var body []byte
	off := int64(0)
	expected := s.first
	for off < fileSize {
		s.size = off
		if fileSize-off < frameHeaderSize {
			return &badFrame{off, fmt.Sprintf("only %d bytes left, less than a frame header", fileSize-off)}, nil
		}
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			return nil, fmt.Errorf("wal: read %s at offset %d: %w", s.path, off, err)
		}
		length := binary.BigEndian.Uint32(hdr[0:4])
		crc := binary.BigEndian.Uint32(hdr[4:8])
		if length < bodyFixedSize || int64(length)-bodyFixedSize > maxDecodeEntry {
			return &badFrame{off, fmt.Sprintf("invalid frame length %d", length)}, nil
		}
		if int64(length) > fileSize-off-lenCRCSize {
			return &badFrame{off, fmt.Sprintf("frame of %d bytes extends past the end of the file (%d bytes)", lenCRCSize+int64(length), fileSize)}, nil
		}
		if cap(body) < int(length) {
			body = make([]byte, length)
		}
		body = body[:length]
		if _, err := io.ReadFull(br, body); err != nil {
			return nil, fmt.Errorf("wal: read %s at offset %d: %w", s.path, off, err)
		}
		if crc32.Checksum(body, castagnoli) != crc {
			return &badFrame{off, "checksum mismatch"}, nil
		}
		lsn := binary.BigEndian.Uint64(body[0:8])
		epoch := binary.BigEndian.Uint32(body[8:12])
		if lsn != expected {
			return nil, fmt.Errorf("%w: %s offset %d: entry has LSN %d, expected %d", ErrCorrupt, s.path, off, lsn, expected)
		}
		if st.haveEpoch && epoch < st.epoch {
			return nil, fmt.Errorf("%w: %s offset %d: LSN %d has epoch %d, lower than epoch %d of the entry before it (%s offset %d)",
				ErrCorrupt, s.path, off, lsn, epoch, st.epoch, st.lastPath, st.lastOff)
		}
		if !st.haveEpoch || epoch > st.epoch {
			st.starts = append(st.starts, EpochStart{Epoch: epoch, StartLSN: lsn})
		}
		st.haveEpoch, st.epoch = true, epoch
		st.lastPath, st.lastOff = s.path, off
		s.addIndexLocked(lsn, off)
		s.last = lsn
		if st.onRecover != nil {
			e := Entry{LSN: lsn, Epoch: epoch, Type: EntryType(body[12]), Payload: body[bodyFixedSize:]}
			if !st.onRecover(e, Pos{LSN: lsn, Segment: s.first, Offset: off}, len(e.Payload)) {
				st.onRecover = nil
			}
		}
		off += lenCRCSize + int64(length)
		expected++
	}
	s.size = off
	return nil, nil
}

// findValidFrame searches f's bytes [from, size) for a frame that decodes
// with a correct CRC and a plausible LSN (at least minLSN and no further
// from it than the number of frames that could fit). It is how recovery tells
// a torn tail (nothing valid follows the bad frame) from corruption in the
// middle of the log (valid entries follow it). It returns the offset and
// LSN of the first such frame, or found == false.
func findValidFrame(f *os.File, from, size int64, minLSN uint64) (off int64, lsn uint64, found bool, err error) {
	maxLSN := minLSN + uint64((size-from)/frameHeaderSize) + 1
	const window = scanBufferSize
	buf := make([]byte, window+frameHeaderSize)
	var body []byte
	for base := from; base < size; base += window {
		n := int(min(int64(len(buf)), size-base))
		if _, err := f.ReadAt(buf[:n], base); err != nil && !errors.Is(err, io.EOF) {
			return 0, 0, false, err
		}
		for i := 0; i < min(window, n); i++ {
			if n-i < frameHeaderSize {
				break // the rest is shorter than a header; the next window (if any) covers it
			}
			h, herr := parseHeader(buf[i:n], maxDecodeEntry)
			if herr != nil || h.lsn < minLSN || h.lsn > maxLSN {
				continue
			}
			p := base + int64(i)
			if p+h.total() > size {
				continue
			}
			var b []byte
			if i+int(h.total()) <= n {
				b = buf[i+lenCRCSize : i+int(h.total())]
			} else {
				if cap(body) < int(h.length) {
					body = make([]byte, h.length)
				}
				body = body[:h.length]
				if _, err := f.ReadAt(body, p+lenCRCSize); err != nil {
					return 0, 0, false, err
				}
				b = body
			}
			if crc32.Checksum(b, castagnoli) == h.crc {
				return p, h.lsn, true, nil
			}
		}
	}
	return 0, 0, false, nil
}

// sectorSize is the smallest unit a device writes: after a power failure
// each sector of data written since the last completed fsync holds either
// its new content or what was there before, independently of the others.
const sectorSize = 512

// neverWrittenAt reports whether the frame expected at off of f provably
// never reached the disk: its length field reads 0 (no frame has length 0)
// and so does every byte up to the end of the sector holding the field's
// last byte. An fsync that returned would have made that sector hold the
// frame, and the WAL writes zeros only after its last frame, so no
// completed fsync covered the frame, nor anything written after it.
func neverWrittenAt(f *os.File, off, size int64) (bool, error) {
	const lengthSize = 4
	if off+lengthSize > size {
		return false, nil
	}
	end := min((off+lengthSize+sectorSize-1)/sectorSize*sectorSize, size)
	buf := make([]byte, end-off)
	if _, err := f.ReadAt(buf, off); err != nil {
		return false, err
	}
	for _, b := range buf {
		if b != 0 {
			return false, nil
		}
	}
	return true, nil
}

// zeroFrom reports whether every byte of f from off to size is zero.
func zeroFrom(f *os.File, off, size int64) (bool, error) {
	buf := make([]byte, 64<<10)
	for off < size {
		n := int(min(int64(len(buf)), size-off))
		if _, err := f.ReadAt(buf[:n], off); err != nil {
			return false, err
		}
		for _, b := range buf[:n] {
			if b != 0 {
				return false, nil
			}
		}
		off += int64(n)
	}
	return true, nil
}

package wal

import (
	"fmt"
	"hash/crc32"
	"io"
	"sync"
)

// readAheadSize is a Reader's buffer: one pread fills it with the next
// frames. Frames larger than it are read with a pread of their own.
const readAheadSize = 256 << 10

// shortReadSize is the read-ahead of NextPrefix among large frames.
const shortReadSize = 4 << 10

// maxReaderRetries bounds how often Next starts over because the log was
// truncated or compacted while it was reading.
const maxReaderRetries = 64

// Reader reads entries in LSN order up to the durable end of the log. It
// finds its starting point through the segments' sparse index, follows
// segment rolls, and fails (rather than returning stale bytes) when the
// entries under it are truncated (ErrTruncated) or deleted (ErrCompacted).
// A Reader is safe for concurrent use, but it is meant for one goroutine.
type Reader struct {
	l       *Log
	written bool // read up to LastLSN instead of DurableLSN (Checksum)

	mu     sync.Mutex // guards the fields below except next and err
	closed bool
	seg    *segment // segment of the next frame; nil: seek
	off    int64    // offset in seg to scan from (a frame boundary at or before next's)
	gen    uint64   // Log.gen when seg/off were found
	buf    []byte   // read-ahead: bytes [bufOff, bufOff+len(buf)) of bufSeg
	bufSeg *segment
	bufOff int64
	// short makes the next read-ahead small: NextPrefix just skipped a frame
	// larger than the read-ahead, so the next one is likely large too and
	// only its first bytes are wanted.
	short bool

	// Guarded by Log.mu (and written only while also holding r.mu).
	next uint64 // LSN that the next call returns
	err  error  // sticky: set by Truncate/Reset when entries this reader returned are gone
}

// NewReader returns a Reader whose first entry is from. It fails with
// ErrCompacted when from < FirstLSN(). from may be beyond LastLSN(): Next
// returns io.EOF until that entry is durable.
func (l *Log) NewReader(from uint64) (*Reader, error) {
	return l.newReader(from, false)
}

func (l *Log) newReader(from uint64, written bool) (*Reader, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil, ErrClosed
	}
	if first := l.firstLSNLocked(); from < first {
		return nil, fmt.Errorf("%w: reader from LSN %d, but the log starts at %d", ErrCompacted, from, first)
	}
	r := &Reader{l: l, next: from, written: written}
	l.readers[r] = struct{}{}
	return r, nil
}

// Next returns the next entry and its position. It returns io.EOF when the
// next entry is not durable yet; call it again after Log.Durable() fires or
// WaitDurable returns. The returned Payload is owned by the caller.
func (r *Reader) Next() (Entry, Pos, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e, pos, _, err := r.read(true, -1, nil)
	return e, pos, err
}

// NextPrefix is Next for rebuilding state from a log that Open has just
// verified: for entries whose type whole reports false it returns only the
// first prefix bytes of the payload, without reading the rest of the frame
// or checking its CRC again; size is the payload's full length. Entries of
// the types whole accepts are read and verified as by Next. Start-up replay
// of a large WAL reads its record batches' headers this way instead of
// every byte a second time.
func (r *Reader) NextPrefix(prefix int, whole func(EntryType) bool) (e Entry, pos Pos, size int, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e, pos, h, err := r.read(true, prefix, whole)
	return e, pos, int(h.length) - bodyFixedSize, err
}

// nextFrame is Next for Checksum: it verifies the frame but copies no payload.
func (r *Reader) nextFrame() (frameHeader, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, _, h, err := r.read(false, -1, nil)
	return h, err
}

// read implements Next, NextPrefix (prefix >= 0) and nextFrame. Caller
// holds r.mu.
func (r *Reader) read(wantPayload bool, prefix int, whole func(EntryType) bool) (Entry, Pos, frameHeader, error) {
	l := r.l
	for attempt := 0; ; attempt++ {
		if r.closed {
			return Entry{}, Pos{}, frameHeader{}, ErrClosed
		}
		// 1. Under the log lock: where is the next entry, and may we read it?
		l.mu.Lock()
		if err := r.checkLocked(); err != nil {
			l.mu.Unlock()
			return Entry{}, Pos{}, frameHeader{}, err
		}
		end := l.durableLSN
		if r.written {
			end = l.lastLSN
		}
		if r.next > end {
			l.mu.Unlock()
			return Entry{}, Pos{}, frameHeader{}, io.EOF
		}
		if r.seg == nil || r.seg.removed || r.gen != l.gen || r.next > r.seg.last {
			i := l.segmentForLocked(r.next)
			if i < 0 {
				l.mu.Unlock()
				return Entry{}, Pos{}, frameHeader{}, fmt.Errorf("%w: LSN %d is durable but in no segment", ErrCorrupt, r.next)
			}
			r.seg, r.gen = l.segs[i], l.gen
			r.off, _ = r.seg.seekLocked(r.next)
			r.bufSeg = nil
		}
		seg, off, limit, want := r.seg, r.off, r.seg.size, r.next
		l.mu.Unlock()

		// 2. Without the lock: read (skipping frames before want after a seek).
		e, h, frameOff, err := r.scanTo(seg, off, limit, want, wantPayload, prefix, whole)

		// 3. Under the lock again: did the log change under us?
		l.mu.Lock()
		if cerr := r.checkLocked(); cerr != nil {
			l.mu.Unlock()
			return Entry{}, Pos{}, frameHeader{}, cerr
		}
		if seg.removed || r.gen != l.gen {
			// Truncated or compacted meanwhile, in a way that does not
			// invalidate what this reader returned: seek again.
			r.seg = nil
			l.mu.Unlock()
			if attempt >= maxReaderRetries {
				return Entry{}, Pos{}, frameHeader{}, fmt.Errorf("%w: log kept changing under reader at LSN %d", ErrTruncated, want)
			}
			continue
		}
		if err != nil {
			r.seg = nil
			l.mu.Unlock()
			return Entry{}, Pos{}, frameHeader{}, err
		}
		r.off = frameOff + h.total()
		r.next = want + 1
		released, size := seg.released, seg.size
		l.mu.Unlock()
		releaseRead(seg, frameOff, r.off, released, size)
		return e, Pos{LSN: want, Segment: seg.first, Offset: frameOff}, h, nil
	}
}

// checkLocked returns the error that ends this reader, if any. Caller holds
// r.mu and Log.mu.
func (r *Reader) checkLocked() error {
	l := r.l
	if l.closed {
		return ErrClosed
	}
	if r.err != nil {
		return r.err
	}
	if first := l.firstLSNLocked(); r.next < first {
		return fmt.Errorf("%w: reader at LSN %d, but the log now starts at %d", ErrCompacted, r.next, first)
	}
	return nil
}

// scanTo reads frames of seg from off (a frame boundary) until the frame of
// want, verifying it. Bytes up to limit are complete frames.
func (r *Reader) scanTo(seg *segment, off, limit int64, want uint64, wantPayload bool, prefix int, whole func(EntryType) bool) (Entry, frameHeader, int64, error) {
	for {
		if off+frameHeaderSize > limit {
			return Entry{}, frameHeader{}, 0, fmt.Errorf("%w: %s: LSN %d not found before offset %d", ErrCorrupt, seg.path, want, limit)
		}
		b, err := r.bytesAt(seg, off, frameHeaderSize, limit)
		if err != nil {
			return Entry{}, frameHeader{}, 0, err
		}
		h, err := parseHeader(b, maxDecodeEntry)
		if err != nil {
			return Entry{}, frameHeader{}, 0, fmt.Errorf("%w: %s offset %d: %v", ErrCorrupt, seg.path, off, err)
		}
		if off+h.total() > limit {
			return Entry{}, frameHeader{}, 0, fmt.Errorf("%w: %s offset %d: frame of %d bytes runs past the written end %d", ErrCorrupt, seg.path, off, h.total(), limit)
		}
		if h.lsn < want {
			off += h.total()
			continue
		}
		if h.lsn != want {
			return Entry{}, frameHeader{}, 0, fmt.Errorf("%w: %s offset %d: found LSN %d, expected %d", ErrCorrupt, seg.path, off, h.lsn, want)
		}
		if prefix >= 0 && (whole == nil || !whole(h.typ)) {
			// The frame was verified when the log was opened or written.
			n := min(prefix, int(h.length)-bodyFixedSize)
			pb, err := r.bytesAt(seg, off+frameHeaderSize, n, limit)
			if err != nil {
				return Entry{}, frameHeader{}, 0, err
			}
			r.short = h.total() > readAheadSize
			return Entry{LSN: h.lsn, Epoch: h.epoch, Type: h.typ, Payload: append([]byte(nil), pb...)}, h, off, nil
		}
		r.short = false
		var body []byte // lsn..payload
		if h.total() <= readAheadSize {
			fb, err := r.bytesAt(seg, off, int(h.total()), limit)
			if err != nil {
				return Entry{}, frameHeader{}, 0, err
			}
			body = fb[lenCRCSize:]
		} else {
			body = make([]byte, h.length)
			if _, err := seg.f.ReadAt(body, off+lenCRCSize); err != nil {
				return Entry{}, frameHeader{}, 0, fmt.Errorf("wal: read %s at offset %d: %w", seg.path, off, err)
			}
		}
		// The frame's CRC is that of the fixed fields combined with the
		// payload's, which goes out with the entry (Entry.PayloadCRC):
		// the same one pass over the bytes gives both.
		pcrc := crc32.Checksum(body[bodyFixedSize:], castagnoli)
		if crcCombine(crc32.Checksum(body[:bodyFixedSize], castagnoli), pcrc, uint64(len(body)-bodyFixedSize)) != h.crc {
			return Entry{}, frameHeader{}, 0, fmt.Errorf("%w: %s offset %d: LSN %d: %v", ErrCorrupt, seg.path, off, want, errBadCRC)
		}
		e := Entry{LSN: h.lsn, Epoch: h.epoch, Type: h.typ, PayloadCRC: pcrc, HasCRC: wantPayload}
		if wantPayload {
			if h.total() <= readAheadSize {
				e.Payload = append([]byte(nil), body[bodyFixedSize:]...)
			} else {
				e.Payload = body[bodyFixedSize:]
			}
		}
		return e, h, off, nil
	}
}

// bytesAt returns n bytes of seg at off from the read-ahead buffer,
// refilling it with one pread when needed. The slice is valid until the
// next call.
func (r *Reader) bytesAt(seg *segment, off int64, n int, limit int64) ([]byte, error) {
	if r.bufSeg == seg && off >= r.bufOff && off+int64(n) <= r.bufOff+int64(len(r.buf)) {
		i := off - r.bufOff
		return r.buf[i : i+int64(n)], nil
	}
	size := readAheadSize
	if r.short {
		size = shortReadSize
	}
	want := int(min(int64(max(size, n)), limit-off))
	if want < n {
		return nil, fmt.Errorf("%w: %s offset %d: need %d bytes, only %d written", ErrCorrupt, seg.path, off, n, want)
	}
	if cap(r.buf) < want {
		r.buf = make([]byte, max(want, readAheadSize))
	}
	r.buf = r.buf[:want]
	r.bufSeg = nil
	if _, err := seg.f.ReadAt(r.buf, off); err != nil {
		return nil, fmt.Errorf("wal: read %s at offset %d: %w", seg.path, off, err)
	}
	r.bufSeg, r.bufOff = seg, off
	return r.buf[:n], nil
}

// Close releases the reader. Later calls return ErrClosed.
func (r *Reader) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return ErrClosed
	}
	r.closed = true
	r.buf = nil
	r.l.mu.Lock()
	delete(r.l.readers, r)
	r.l.mu.Unlock()
	return nil
}

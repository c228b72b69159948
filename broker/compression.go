package broker

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"sync"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
	"github.com/twmb/franz-go/pkg/kbin"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Compressed batches are stored as the producer sent them, but they are
// decompressed once on the way in, as Kafka does, so that a batch whose
// records do not decompress or do not parse is refused with CORRUPT_MESSAGE
// instead of being stored and breaking every consumer of the partition.
//
// Decompression is a stream read one record at a time, as Kafka reads it:
// only the record being checked is held in memory, never the whole batch.
// The decompressed size is capped at maxDecompressedRatio times the batch
// size limit, and the stream stops at the first byte past the cap, so a
// small "zip bomb" costs at most the cap in CPU and a bounded amount of
// memory (the decoder's window, itself capped, and the largest record) before
// it is refused. Nothing else decompresses records: Fetch serves the stored
// bytes and ListOffsets by timestamp reads only batch headers.

// maxDecompressedRatio bounds decompressed size relative to the configured
// maximum batch size.
const maxDecompressedRatio = 64

var (
	errBadCompressed = errors.New("compressed records do not decompress")
	// errDecompressedTooLarge: the records decompress to more than the cap.
	errDecompressedTooLarge = errors.New("compressed records decompress to more than the limit")
)

// zstdDecoders holds synchronous (concurrency 1: no goroutines) stream
// decoders for reuse. Each use sets its window and memory limit.
var zstdDecoders = sync.Pool{New: func() any {
	d, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true))
	if err != nil {
		panic(fmt.Sprintf("broker: zstd decoder: %v", err)) // only fixed, valid options
	}
	return d
}}

// xerialMagic starts snappy data framed the way the Java client writes it.
var xerialMagic = []byte{0x82, 'S', 'N', 'A', 'P', 'P', 'Y', 0}

// openRecords returns the records section of a batch as a stream of
// uncompressed bytes that fails with errDecompressedTooLarge as soon as it
// would yield more than limit bytes. Call done when finished with it.
func openRecords(codec int16, data []byte, limit int64) (r io.Reader, done func(), err error) {
	done = func() {}
	var dec io.Reader
	switch codec {
	case 1: // gzip
		zr, err := gzip.NewReader(bytes.NewReader(data))
		if err != nil {
			return nil, done, err
		}
		dec, done = zr, func() { zr.Close() }
	case 2: // snappy, xerial-framed (a raw block is decoded whole: see checkRecordsData)
		if !bytes.HasPrefix(data, xerialMagic) || len(data) < 16 {
			return nil, done, errors.New("not xerial-framed snappy")
		}
		dec = &xerialReader{rest: data[16:], left: limit}
	case 3: // lz4 frame
		dec = lz4.NewReader(bytes.NewReader(data))
	case 4: // zstd
		zd := zstdDecoders.Get().(*zstd.Decoder)
		// A window larger than the cap is never needed to decode at most
		// limit bytes; refusing it up front keeps the decoder's buffer
		// within the cap. (A bytes.Reader, unlike a bytes.Buffer, is
		// streamed rather than decoded whole.)
		window := uint64(max(limit, zstd.MinWindowSize))
		if err := zd.ResetWithOptions(bytes.NewReader(data), zstd.WithDecoderMaxWindow(window), zstd.WithDecoderMaxMemory(window)); err != nil {
			zd.Reset(nil)
			zstdDecoders.Put(zd)
			return nil, func() {}, err
		}
		dec, done = zd, func() {
			zd.Reset(nil) // drops its reference to data
			zstdDecoders.Put(zd)
		}
	default:
		return nil, done, fmt.Errorf("unknown compression codec %d", codec)
	}
	return &capReader{r: dec, left: limit}, done, nil
}

// capReader passes through at most left bytes and fails with
// errDecompressedTooLarge when the stream holds more. It asks the stream
// for one byte past the cap at most.
type capReader struct {
	r    io.Reader
	left int64
}

func (c *capReader) Read(p []byte) (int, error) {
	if c.left < 0 {
		return 0, errDecompressedTooLarge
	}
	if int64(len(p)) > c.left+1 {
		p = p[:c.left+1]
	}
	n, err := c.r.Read(p)
	c.left -= int64(n)
	if c.left < 0 {
		return n - 1, errDecompressedTooLarge
	}
	return n, err
}

// xerialReader decodes xerial-framed snappy one chunk (a raw block) at a
// time. A block's decoded length is in its header, so one that would take
// the output past left is refused before anything is allocated for it.
type xerialReader struct {
	rest []byte // chunks not yet decoded
	out  []byte // decoded, not yet read
	buf  []byte
	left int64
}

func (x *xerialReader) Read(p []byte) (int, error) {
	for len(x.out) == 0 {
		if len(x.rest) == 0 {
			return 0, io.EOF
		}
		if len(x.rest) < 4 {
			return 0, errors.New("truncated xerial snappy chunk")
		}
		n := int64(binary.BigEndian.Uint32(x.rest))
		if n > int64(len(x.rest)-4) {
			return 0, errors.New("xerial snappy chunk longer than the data")
		}
		block := x.rest[4 : 4+n]
		x.rest = x.rest[4+n:]
		size, err := s2.DecodedLen(block)
		if err != nil {
			return 0, err
		}
		if int64(size) > x.left {
			return 0, errDecompressedTooLarge
		}
		x.left -= int64(size)
		if x.buf, err = s2.Decode(x.buf[:cap(x.buf)], block); err != nil {
			return 0, err
		}
		x.out = x.buf
	}
	n := copy(p, x.out)
	x.out = x.out[n:]
	return n, nil
}

// snappyBlock decodes a raw snappy block, refusing one whose stated
// decoded length is past limit before allocating for it.
func snappyBlock(data []byte, limit int64) ([]byte, error) {
	n, err := s2.DecodedLen(data)
	if err != nil {
		return nil, err
	}
	if int64(n) > limit {
		return nil, errDecompressedTooLarge
	}
	return s2.Decode(nil, data)
}

// checkRecords decompresses a batch's records (if compressed) and checks
// that exactly numRecords records parse from them. Compressed records are
// read as a stream, capped at maxDecompressedRatio times maxBatch.
func checkRecords(raw []byte, info batchInfo, maxBatch int32) error {
	var rb kmsg.RecordBatch
	if err := rb.UnsafeReadFrom(raw); err != nil {
		return err
	}
	return checkRecordsData(info.attributes&0x07, rb.Records, info.numRecords, int64(maxBatch)*maxDecompressedRatio)
}

// checkRecordsData checks that exactly numRecords records parse from the
// records section of a batch compressed with codec, which must not
// decompress to more than limit bytes (errDecompressedTooLarge).
func checkRecordsData(codec int16, data []byte, numRecords int32, limit int64) error {
	switch {
	case codec == 0:
		return checkRecordBytes(data, numRecords)
	case codec == 2 && !bytes.HasPrefix(data, xerialMagic):
		// A raw snappy block states its decoded length up front: decode
		// it whole, within the cap, and parse it in place.
		out, err := snappyBlock(data, limit)
		if err != nil {
			return streamError(err, limit, 0, numRecords)
		}
		return checkRecordBytes(out, numRecords)
	}
	r, done, err := openRecords(codec, data, limit)
	if err != nil {
		return streamError(err, limit, 0, numRecords)
	}
	defer done()
	br := bufio.NewReader(r)
	var buf []byte
	for i := int32(0); i < numRecords; i++ {
		n, err := binary.ReadVarint(br)
		if err != nil {
			return streamError(err, limit, i, numRecords)
		}
		if n < 0 || n > math.MaxInt32 || n > limit {
			return fmt.Errorf("record %d of %d has length %d", i, numRecords, n)
		}
		buf = kbin.AppendVarint(buf[:0], int32(n))
		if buf, err = appendFull(br, buf, int(n)); err != nil {
			return streamError(err, limit, i, numRecords)
		}
		var rec kmsg.Record
		if err := rec.ReadFrom(buf); err != nil {
			return fmt.Errorf("record %d of %d does not decode: %v", i, numRecords, err)
		}
	}
	// Reading to the end also checks the codec's checksum, if it has one.
	switch _, err := br.ReadByte(); {
	case err == nil:
		return fmt.Errorf("bytes after the last of %d records", numRecords)
	case !errors.Is(err, io.EOF):
		return streamError(err, limit, numRecords, numRecords)
	}
	return nil
}

// streamError describes an error of reading record i of n from a
// decompressing stream capped at limit bytes.
func streamError(err error, limit int64, i, n int32) error {
	switch {
	case errors.Is(err, errDecompressedTooLarge),
		// A zstd frame that declares a window or a size past the cap.
		errors.Is(err, zstd.ErrWindowSizeExceeded), errors.Is(err, zstd.ErrDecoderSizeExceeded):
		return fmt.Errorf("%w (%d bytes)", errDecompressedTooLarge, limit)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return fmt.Errorf("record %d of %d is cut short", i, n)
	}
	return fmt.Errorf("%w: %v", errBadCompressed, err)
}

// appendFull appends exactly n bytes from r to buf. It grows buf as the
// bytes arrive, not by n up front: a record's length is whatever the
// producer wrote.
func appendFull(r io.Reader, buf []byte, n int) ([]byte, error) {
	const step = 64 << 10
	for n > 0 {
		k := min(n, step)
		buf = slices.Grow(buf, k)
		got, err := io.ReadFull(r, buf[len(buf):len(buf)+k])
		buf = buf[:len(buf)+got]
		if err != nil {
			return buf, err
		}
		n -= got
	}
	return buf, nil
}

// checkRecordBytes checks that exactly numRecords records parse from data.
func checkRecordBytes(data []byte, numRecords int32) error {
	for i := int32(0); i < numRecords; i++ {
		n, sz := kbin.Varint(data)
		if sz <= 0 || n < 0 || sz+int(n) > len(data) {
			return fmt.Errorf("record %d of %d is cut short", i, numRecords)
		}
		var rec kmsg.Record
		if err := rec.ReadFrom(data[:sz+int(n)]); err != nil {
			return fmt.Errorf("record %d of %d does not decode: %v", i, numRecords, err)
		}
		data = data[sz+int(n):]
	}
	if len(data) != 0 {
		return fmt.Errorf("%d bytes after the last of %d records", len(data), numRecords)
	}
	return nil
}

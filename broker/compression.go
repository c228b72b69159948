package broker

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
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
// The decompressed size is capped so a small "zip bomb" cannot exhaust
// memory.

// maxDecompressedRatio bounds decompressed size relative to the configured
// maximum batch size.
const maxDecompressedRatio = 64

var errBadCompressed = errors.New("compressed records do not decompress")

var zstdDecoder = sync.OnceValues(func() (*zstd.Decoder, error) {
	return zstd.NewReader(nil, zstd.WithDecoderConcurrency(0), zstd.WithDecoderMaxMemory(1<<30))
})

// xerialMagic starts snappy data framed the way the Java client writes it.
var xerialMagic = []byte{0x82, 'S', 'N', 'A', 'P', 'P', 'Y', 0}

// decompressRecords returns the records section of a batch uncompressed.
func decompressRecords(codec int16, data []byte, limit int) ([]byte, error) {
	limited := func(r io.Reader) ([]byte, error) {
		out, err := io.ReadAll(io.LimitReader(r, int64(limit)+1))
		if err != nil {
			return nil, err
		}
		if len(out) > limit {
			return nil, fmt.Errorf("decompresses to more than %d bytes", limit)
		}
		return out, nil
	}
	switch codec {
	case 0:
		return data, nil
	case 1: // gzip
		zr, err := gzip.NewReader(bytes.NewReader(data))
		if err != nil {
			return nil, err
		}
		defer zr.Close()
		return limited(zr)
	case 2: // snappy: raw block, or xerial-framed chunks
		if !bytes.HasPrefix(data, xerialMagic) {
			return snappyBlock(data, limit)
		}
		if len(data) < 16 {
			return nil, errors.New("short xerial snappy header")
		}
		var out []byte
		for rest := data[16:]; len(rest) > 0; {
			if len(rest) < 4 {
				return nil, errors.New("truncated xerial snappy chunk")
			}
			n := int(binary.BigEndian.Uint32(rest))
			if n < 0 || n > len(rest)-4 {
				return nil, errors.New("xerial snappy chunk longer than the data")
			}
			chunk, err := snappyBlock(rest[4:4+n], limit-len(out))
			if err != nil {
				return nil, err
			}
			out = append(out, chunk...)
			rest = rest[4+n:]
		}
		return out, nil
	case 3: // lz4 frame
		return limited(lz4.NewReader(bytes.NewReader(data)))
	case 4: // zstd
		dec, err := zstdDecoder()
		if err != nil {
			return nil, err
		}
		out, err := dec.DecodeAll(data, nil)
		if err != nil {
			return nil, err
		}
		if len(out) > limit {
			return nil, fmt.Errorf("decompresses to more than %d bytes", limit)
		}
		return out, nil
	}
	return nil, fmt.Errorf("unknown compression codec %d", codec)
}

func snappyBlock(data []byte, limit int) ([]byte, error) {
	n, err := s2.DecodedLen(data)
	if err != nil {
		return nil, err
	}
	if n > limit {
		return nil, fmt.Errorf("decompresses to more than %d bytes", limit)
	}
	return s2.Decode(nil, data)
}

// checkRecords decompresses a batch's records (if compressed) and checks
// that exactly numRecords records parse from them.
func checkRecords(raw []byte, info batchInfo, maxBatch int32) error {
	var rb kmsg.RecordBatch
	if err := rb.UnsafeReadFrom(raw); err != nil {
		return err
	}
	data, err := decompressRecords(info.attributes&0x07, rb.Records, int(maxBatch)*maxDecompressedRatio)
	if err != nil {
		return fmt.Errorf("%w: %v", errBadCompressed, err)
	}
	for i := int32(0); i < info.numRecords; i++ {
		n, sz := kbin.Varint(data)
		if sz <= 0 || n < 0 || sz+int(n) > len(data) {
			return fmt.Errorf("record %d of %d is cut short", i, info.numRecords)
		}
		var rec kmsg.Record
		if err := rec.ReadFrom(data[:sz+int(n)]); err != nil {
			return fmt.Errorf("record %d of %d does not decode: %v", i, info.numRecords, err)
		}
		data = data[sz+int(n):]
	}
	if len(data) != 0 {
		return fmt.Errorf("%d bytes after the last of %d records", len(data), info.numRecords)
	}
	return nil
}

package broker

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// batchHeaderLen is the size of a v2 RecordBatch header, up to the records.
const batchHeaderLen = 61

// batchCRCStart is where the bytes a RecordBatch's CRC-32C covers begin (the
// attributes field); the CRC itself is the 4 bytes before. The base offset
// and partition leader epoch, which the broker stamps, are outside it.
const batchCRCStart = 21

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// batchInfo is what the broker needs to know about a stored RecordBatch.
type batchInfo struct {
	baseOffset      int64
	lastOffsetDelta int32
	maxTimestamp    int64
	firstTimestamp  int64
	producerID      int64
	producerEpoch   int16
	baseSequence    int32
	numRecords      int32
	attributes      int16
}

func (b batchInfo) lastOffset() int64 { return b.baseOffset + int64(b.lastOffsetDelta) }

func (b batchInfo) lastSequence() int32 {
	if b.baseSequence < 0 {
		return -1
	}
	return int32((int64(b.baseSequence) + int64(b.lastOffsetDelta)) % (1 << 31))
}

func (b batchInfo) transactional() bool { return b.attributes&0x10 != 0 }
func (b batchInfo) control() bool       { return b.attributes&0x20 != 0 }

// parseBatch decodes the header of one RecordBatch with kmsg. It does not
// check the CRC; validateBatch does.
func parseBatch(raw []byte) (batchInfo, error) {
	var rb kmsg.RecordBatch
	if len(raw) < batchHeaderLen {
		return batchInfo{}, fmt.Errorf("record batch of %d bytes is shorter than its %d-byte header", len(raw), batchHeaderLen)
	}
	if err := rb.UnsafeReadFrom(raw); err != nil {
		return batchInfo{}, fmt.Errorf("record batch does not decode: %w", err)
	}
	return batchInfo{
		baseOffset:      rb.FirstOffset,
		lastOffsetDelta: rb.LastOffsetDelta,
		maxTimestamp:    rb.MaxTimestamp,
		firstTimestamp:  rb.FirstTimestamp,
		producerID:      rb.ProducerID,
		producerEpoch:   rb.ProducerEpoch,
		baseSequence:    rb.FirstSequence,
		numRecords:      rb.NumRecords,
		attributes:      rb.Attributes,
	}, nil
}

// parseBatchHeader decodes a RecordBatch header from the first
// batchHeaderLen (or more) bytes of a batch whose full length is size, as
// start-up replay reads it (wal.Reader.NextPrefix). It checks that the
// header's own length field agrees with size.
func parseBatchHeader(hdr []byte, size int) (batchInfo, error) {
	if len(hdr) < batchHeaderLen || size < batchHeaderLen {
		return batchInfo{}, fmt.Errorf("record batch of %d bytes is shorter than its %d-byte header", size, batchHeaderLen)
	}
	if l := int32(binary.BigEndian.Uint32(hdr[8:])); int(l) != size-12 {
		return batchInfo{}, fmt.Errorf("record batch header gives length %d, but %d bytes are stored", l, size-12)
	}
	return batchInfo{
		baseOffset:      int64(binary.BigEndian.Uint64(hdr[0:])),
		attributes:      int16(binary.BigEndian.Uint16(hdr[21:])),
		lastOffsetDelta: int32(binary.BigEndian.Uint32(hdr[23:])),
		firstTimestamp:  int64(binary.BigEndian.Uint64(hdr[27:])),
		maxTimestamp:    int64(binary.BigEndian.Uint64(hdr[35:])),
		producerID:      int64(binary.BigEndian.Uint64(hdr[43:])),
		producerEpoch:   int16(binary.BigEndian.Uint16(hdr[51:])),
		baseSequence:    int32(binary.BigEndian.Uint32(hdr[53:])),
		numRecords:      int32(binary.BigEndian.Uint32(hdr[57:])),
	}, nil
}

// errBatch carries the Kafka error code for an invalid produced batch.
type errBatch struct {
	code  *kerr.Error
	msg   string
	cause error // nil, or what msg describes
}

func (e *errBatch) Error() string { return e.code.Message + ": " + e.msg }
func (e *errBatch) Unwrap() error { return e.cause }

// splitBatches splits the Records field of a produce request into its
// RecordBatches and validates each one: magic 2, a length that matches the
// bytes, a correct CRC32C, a record count that matches lastOffsetDelta, and
// a size within maxBytes. Old message formats (magic 0 and 1) are refused
// with UNSUPPORTED_FOR_MESSAGE_FORMAT.
func splitBatches(records []byte, maxBytes int32) ([][]byte, []batchInfo, error) {
	var raws [][]byte
	var infos []batchInfo
	for len(records) > 0 {
		if len(records) < 17 {
			return nil, nil, &errBatch{code: kerr.CorruptMessage, msg: fmt.Sprintf("%d trailing bytes are not a record batch", len(records))}
		}
		length := int64(int32(binary.BigEndian.Uint32(records[8:12])))
		magic := int8(records[16])
		if magic != 2 {
			return nil, nil, &errBatch{code: kerr.UnsupportedForMessageFormat, msg: fmt.Sprintf("message format v%d (only v2 record batches are stored)", magic)}
		}
		total := 12 + length
		if length < batchHeaderLen-12 || total > int64(len(records)) {
			return nil, nil, &errBatch{code: kerr.CorruptMessage, msg: fmt.Sprintf("batch length %d does not fit the %d bytes sent", length, len(records))}
		}
		if total > int64(maxBytes) {
			return nil, nil, &errBatch{code: kerr.MessageTooLarge, msg: fmt.Sprintf("batch of %d bytes exceeds max.message.bytes %d", total, maxBytes)}
		}
		raw := records[:total]
		records = records[total:]
		if crc32.Checksum(raw[batchCRCStart:], castagnoli) != binary.BigEndian.Uint32(raw[batchCRCStart-4:batchCRCStart]) {
			return nil, nil, &errBatch{code: kerr.CorruptMessage, msg: "record batch CRC32C mismatch"}
		}
		info, err := parseBatch(raw)
		if err != nil {
			return nil, nil, &errBatch{code: kerr.CorruptMessage, msg: err.Error()}
		}
		if info.numRecords <= 0 || info.lastOffsetDelta != info.numRecords-1 {
			return nil, nil, &errBatch{code: kerr.InvalidRecord, msg: fmt.Sprintf("batch has %d records but last offset delta %d", info.numRecords, info.lastOffsetDelta)}
		}
		if info.control() {
			return nil, nil, &errBatch{code: kerr.InvalidRecord, msg: "clients may not produce control batches"}
		}
		if info.attributes&0x08 != 0 {
			return nil, nil, &errBatch{code: kerr.InvalidTimestamp, msg: "LogAppendTime batches cannot be produced"}
		}
		if err := checkRecords(raw, info, maxBytes); err != nil {
			return nil, nil, &errBatch{code: kerr.CorruptMessage, msg: err.Error(), cause: err}
		}
		raws = append(raws, raw)
		infos = append(infos, info)
	}
	if len(raws) == 0 {
		return nil, nil, &errBatch{code: kerr.InvalidRecord, msg: "produce request carries no record batch"}
	}
	return raws, infos, nil
}

// stampBatch sets the base offset and partition leader epoch of a batch in
// place. Neither field is covered by the batch CRC, so the record bytes are
// stored and served exactly as the producer sent them.
func stampBatch(raw []byte, baseOffset int64, leaderEpoch int32) {
	binary.BigEndian.PutUint64(raw[0:8], uint64(baseOffset))
	binary.BigEndian.PutUint32(raw[12:16], uint32(leaderEpoch))
}

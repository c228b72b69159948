package wal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// Frame layout (big endian), see doc.go:
//
//	u32 length | u32 crc32c | u64 lsn | u32 epoch | u8 type | payload
//
// length counts the bytes after the crc field (13 + len(payload)); the CRC
// covers the same bytes.
const (
	lenCRCSize      = 8                          // length + crc
	bodyFixedSize   = 13                         // lsn + epoch + type
	frameHeaderSize = lenCRCSize + bodyFixedSize // 21 bytes before the payload

	// maxDecodeEntry bounds the payload length that recovery and readers
	// accept from disk. It is deliberately independent of
	// Options.MaxEntryBytes, so that lowering that option never turns
	// existing, valid entries into "corrupt" ones.
	maxDecodeEntry = 1 << 30
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// frameSize is the on-disk size of an entry with a payload of n bytes.
func frameSize(n int) int { return frameHeaderSize + n }

// encodeFrameHeader encodes the header of the frame whose payload is size
// bytes with the CRC-32C payloadCRC, CRC included.
func encodeFrameHeader(lsn uint64, epoch uint32, typ EntryType, size int, payloadCRC uint32) [frameHeaderSize]byte {
	var hdr [frameHeaderSize]byte
	binary.BigEndian.PutUint32(hdr[0:4], uint32(bodyFixedSize+size))
	binary.BigEndian.PutUint64(hdr[8:16], lsn)
	binary.BigEndian.PutUint32(hdr[16:20], epoch)
	hdr[20] = byte(typ)
	crc := crcCombine(crc32.Checksum(hdr[lenCRCSize:], castagnoli), payloadCRC, uint64(size))
	binary.BigEndian.PutUint32(hdr[4:8], crc)
	return hdr
}

// payloadCRC returns the CRC-32C of the concatenation of parts (size bytes
// in all), of which the last tailLen bytes have the CRC-32C tailCRC: only
// the bytes before them are read.
func payloadCRC(parts [][]byte, size, tailLen int, tailCRC uint32) uint32 {
	head := size - tailLen
	var crc uint32
	for _, p := range parts {
		if head <= 0 {
			break
		}
		p = p[:min(len(p), head)]
		crc = crc32.Update(crc, castagnoli, p)
		head -= len(p)
	}
	return crcCombine(crc, tailCRC, uint64(tailLen))
}

// Reasons a frame does not decode. They are wrapped in ErrCorrupt by callers
// that know the file and offset.
var (
	errShortFrame = errors.New("short frame")
	errBadLength  = errors.New("invalid frame length")
	errBadCRC     = errors.New("checksum mismatch")
)

// frameHeader is the fixed part of a frame.
type frameHeader struct {
	length uint32 // bytes after the crc field
	crc    uint32
	lsn    uint64
	epoch  uint32
	typ    EntryType
}

// total is the size of the whole frame on disk.
func (h frameHeader) total() int64 { return lenCRCSize + int64(h.length) }

// parseHeader parses the first frameHeaderSize bytes of b and checks the
// length field against maxPayload. It does not verify the CRC.
func parseHeader(b []byte, maxPayload int) (frameHeader, error) {
	if len(b) < frameHeaderSize {
		return frameHeader{}, errShortFrame
	}
	h := frameHeader{
		length: binary.BigEndian.Uint32(b[0:4]),
		crc:    binary.BigEndian.Uint32(b[4:8]),
		lsn:    binary.BigEndian.Uint64(b[8:16]),
		epoch:  binary.BigEndian.Uint32(b[16:20]),
		typ:    EntryType(b[20]),
	}
	if h.length < bodyFixedSize || int64(h.length)-bodyFixedSize > int64(maxPayload) {
		return h, fmt.Errorf("%w %d", errBadLength, h.length)
	}
	return h, nil
}

// decodeFrame decodes the frame at the start of b. It returns the entry
// (whose Payload aliases b), the number of bytes the frame occupies, and an
// error if b does not start with a complete, valid frame whose payload is at
// most maxPayload bytes.
func decodeFrame(b []byte, maxPayload int) (Entry, int, error) {
	h, err := parseHeader(b, maxPayload)
	if err != nil {
		return Entry{}, 0, err
	}
	n := int(h.total())
	if len(b) < n {
		return Entry{}, 0, errShortFrame
	}
	if crc32.Checksum(b[lenCRCSize:n], castagnoli) != h.crc {
		return Entry{}, 0, errBadCRC
	}
	return Entry{LSN: h.lsn, Epoch: h.epoch, Type: h.typ, Payload: b[frameHeaderSize:n:n]}, n, nil
}

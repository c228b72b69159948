package broker

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/tandem-io/tandem/broker/wal"
)

// WAL payloads. Record batches are binary so that the Kafka RecordBatch bytes
// sit in the WAL exactly as they go to consumers:
//
//	u16 topic name length | topic name | i32 partition | RecordBatch bytes
//
// Every other entry is small and rare, so it is JSON (readable with a hex
// dump, and easy for a peer in another language to decode).

// ErrBadEntry means a WAL payload does not decode. It names the LSN.
var ErrBadEntry = errors.New("broker: undecodable WAL entry")

// batchEntryPrefix is the part of a record-batch payload before the batch,
// with room for extra more bytes after it.
func batchEntryPrefix(topic string, partition int32, extra int) []byte {
	b := make([]byte, 0, 2+len(topic)+4+extra)
	b = binary.BigEndian.AppendUint16(b, uint16(len(topic)))
	b = append(b, topic...)
	return binary.BigEndian.AppendUint32(b, uint32(partition))
}

// decodeBatchEntry splits a record-batch payload. The returned batch aliases p.
func decodeBatchEntry(p []byte) (topic string, partition int32, batch []byte, err error) {
	if len(p) < 2 {
		return "", 0, nil, fmt.Errorf("%w: short batch payload", ErrBadEntry)
	}
	n := int(binary.BigEndian.Uint16(p))
	if len(p) < 2+n+4+batchHeaderLen {
		return "", 0, nil, fmt.Errorf("%w: short batch payload (%d bytes)", ErrBadEntry, len(p))
	}
	topic = string(p[2 : 2+n])
	partition = int32(binary.BigEndian.Uint32(p[2+n:]))
	return topic, partition, p[2+n+4:], nil
}

// batchOffsetInPayload is where the RecordBatch starts inside a batch payload.
func batchOffsetInPayload(p []byte) int {
	return 2 + int(binary.BigEndian.Uint16(p)) + 4
}

type createTopicEntry struct {
	Name       string            `json:"name"`
	ID         [16]byte          `json:"id"`
	Partitions int32             `json:"partitions"`
	Configs    map[string]string `json:"configs,omitempty"`
}

type deleteTopicEntry struct {
	Name string   `json:"name"`
	ID   [16]byte `json:"id"`
}

type createPartitionsEntry struct {
	Name  string `json:"name"`
	Count int32  `json:"count"`
}

type alterConfigEntry struct {
	Name string `json:"name"`
	// Set maps a config to its new value; a nil value deletes the override.
	Set map[string]*string `json:"set"`
}

type offsetCommitEntry struct {
	Group   string              `json:"group"`
	Offsets []offsetCommitValue `json:"offsets"`
}

type offsetCommitValue struct {
	Topic       string `json:"t"`
	Partition   int32  `json:"p"`
	Offset      int64  `json:"o"`
	LeaderEpoch int32  `json:"e"`
	Metadata    string `json:"m,omitempty"`
	CommitTime  int64  `json:"ts"`
}

type producerIDEntry struct {
	// ProducerID and Epoch were handed out; NextID is the next free id.
	ProducerID int64 `json:"pid"`
	Epoch      int16 `json:"epoch"`
	NextID     int64 `json:"next"`
}

func encodeJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("broker: encoding %T: %v", v, err)) // only plain structs are encoded
	}
	return b
}

func decodeJSON(e wal.Entry, v any) error {
	if err := json.Unmarshal(e.Payload, v); err != nil {
		return fmt.Errorf("%w: lsn %d type %d: %v", ErrBadEntry, e.LSN, e.Type, err)
	}
	return nil
}

package broker

import (
	"encoding/base64"
	"encoding/binary"
	"strconv"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tandem-io/tandem/broker/sasl"
	"github.com/tandem-io/tandem/broker/wal"
)

// DescribeEntry gives a record batch's partition, offsets, count,
// compression, producer and transaction flags; a SCRAM change's users
// without their credentials; a snapshot's counts; metadata entries' JSON,
// cut at the length asked; and says when a payload does not decode.
func TestDescribeEntry(t *testing.T) {
	rb := kmsg.RecordBatch{FirstOffset: 40, LastOffsetDelta: 9, NumRecords: 10, Magic: 2, Attributes: 0x10 | 1,
		FirstTimestamp: 1733500000000, MaxTimestamp: 1733500000123, ProducerID: 7, ProducerEpoch: 2, FirstSequence: 100}
	raw := rb.AppendTo(nil)
	binary.BigEndian.PutUint32(raw[8:], uint32(len(raw)-12)) // the batch length, which AppendTo leaves to the caller
	batch := append(batchEntryPrefix("orders", 3, len(raw)), raw...)

	cred := sasl.Credential{Salt: []byte("pepper-salt"), Iterations: 4096, StoredKey: []byte("stored-key-secret"), ServerKey: []byte("server-key-secret")}
	scram := encodeJSON(scramEntry{Set: []scramSet{{User: "alice", Mechanism: "SCRAM-SHA-256", Credential: cred}},
		Delete: []scramDelete{{User: "bob", Mechanism: "SCRAM-SHA-512"}}})
	snap := encodeJSON(stateCheckpoint{LSN: 812, NextPID: 5, Topics: []checkpointTopic{{}, {}},
		ScramUsers: map[string]map[string]sasl.Credential{"alice": {"SCRAM-SHA-256": cred}}})
	topic := encodeJSON(createTopicEntry{Name: "orders", Partitions: 3})

	tests := []struct {
		e       wal.Entry
		want    string
		without []string
	}{
		{wal.Entry{Type: wal.TypeRecordBatch, Payload: batch},
			"orders/3 offsets 40-49, 10 record(s), gzip, create time 2024-12-06T15:46:40.123Z, producer 7 epoch 2 seq 100-109, transactional", nil},
		{wal.Entry{Type: wal.TypeCompactedBatch, Payload: batch}, "orders/3 offsets 40-49", nil},
		{wal.Entry{Type: wal.TypeRecordBatch, Payload: batch[:20]}, "undecodable", nil},
		{wal.Entry{Type: wal.TypeScramCredential, Payload: scram}, "set alice SCRAM-SHA-256, delete bob SCRAM-SHA-512",
			[]string{"secret", "pepper", base64.StdEncoding.EncodeToString(cred.StoredKey)}},
		{wal.Entry{Type: wal.TypeStateSnapshot, Payload: snap},
			"the state as of LSN 812 (", []string{"secret", base64.StdEncoding.EncodeToString(cred.ServerKey)}},
		{wal.Entry{Type: wal.TypeStateSnapshot, Payload: snap}, "1 SCRAM users, 2 topics; next producer id 5", nil},
		{wal.Entry{Type: wal.TypeCreateTopic, Payload: topic}, string(topic), nil},
		{wal.Entry{Type: wal.TypeNoop}, "the start of a leader's epoch", nil},
		{wal.Entry{Type: wal.TypeAlterConfig, Payload: []byte("{not json")}, "undecodable: 9 bytes that are not JSON", nil},
	}
	for _, tt := range tests {
		got := DescribeEntry(tt.e, 0)
		if !strings.Contains(got, tt.want) {
			t.Errorf("%v: %q, want it to contain %q", tt.e.Type, got, tt.want)
		}
		for _, w := range tt.without {
			if strings.Contains(got, w) {
				t.Errorf("%v: %q shows %q", tt.e.Type, got, w)
			}
		}
	}
	if got := DescribeEntry(wal.Entry{Type: wal.TypeCreateTopic, Payload: topic}, 10); got != string(topic[:10])+"... ("+strconv.Itoa(len(topic))+" bytes)" {
		t.Errorf("cut at 10 bytes: %q", got)
	}
}

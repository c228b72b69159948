package broker

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/tandem-io/tandem/broker/wal"
)

// DescribeEntry says in one line what a WAL entry holds, for people
// reading a WAL (`tandemctl wal`, the operator's pg_waldump): a record
// batch's partition, offsets, record count, compression and producer; a
// state snapshot's counts; the users and mechanisms of a SCRAM change
// (never the credentials); and for every other entry its JSON payload,
// cut after maxJSON bytes (0: whole). A payload that does not decode is
// described as such, with why.
func DescribeEntry(e wal.Entry, maxJSON int) string {
	switch e.Type {
	case wal.TypeRecordBatch, wal.TypeCompactedBatch:
		return describeBatchEntry(e.Payload)
	case wal.TypeNoop:
		if len(e.Payload) == 0 {
			return "the start of a leader's epoch"
		}
	case wal.TypeStateSnapshot:
		return describeSnapshot(e.Payload)
	case wal.TypeScramCredential:
		var se scramEntry
		if err := json.Unmarshal(e.Payload, &se); err != nil {
			return "undecodable: " + err.Error()
		}
		var parts []string
		for _, s := range se.Set {
			parts = append(parts, fmt.Sprintf("set %s %s", s.User, s.Mechanism))
		}
		for _, d := range se.Delete {
			parts = append(parts, fmt.Sprintf("delete %s %s", d.User, d.Mechanism))
		}
		return strings.Join(parts, ", ")
	}
	if !json.Valid(e.Payload) {
		return fmt.Sprintf("undecodable: %d bytes that are not JSON", len(e.Payload))
	}
	if maxJSON > 0 && len(e.Payload) > maxJSON {
		return fmt.Sprintf("%s... (%d bytes)", e.Payload[:maxJSON], len(e.Payload))
	}
	return string(e.Payload)
}

// describeBatchEntry describes a record-batch payload.
func describeBatchEntry(p []byte) string {
	topic, partition, batch, err := decodeBatchEntry(p)
	if err != nil {
		return "undecodable: " + err.Error()
	}
	bi, err := parseBatchHeader(batch, len(batch))
	if err != nil {
		return fmt.Sprintf("%s/%d: undecodable: %v", topic, partition, err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s/%d offsets %d-%d, %d record(s)", topic, partition, bi.baseOffset, bi.lastOffset(), bi.numRecords)
	if codec := bi.attributes & 0x07; codec != 0 {
		names := map[int16]string{1: "gzip", 2: "snappy", 3: "lz4", 4: "zstd"}
		name, ok := names[codec]
		if !ok {
			name = fmt.Sprintf("codec %d", codec)
		}
		b.WriteString(", " + name)
	}
	if bi.maxTimestamp >= 0 {
		kind := "create time"
		if bi.attributes&0x08 != 0 {
			kind = "log append time"
		}
		fmt.Fprintf(&b, ", %s %s", kind, time.UnixMilli(bi.maxTimestamp).UTC().Format(time.RFC3339Nano))
	}
	if bi.producerID >= 0 {
		fmt.Fprintf(&b, ", producer %d epoch %d", bi.producerID, bi.producerEpoch)
		if bi.baseSequence >= 0 {
			fmt.Fprintf(&b, " seq %d-%d", bi.baseSequence, bi.lastSequence())
		}
	}
	if bi.transactional() {
		b.WriteString(", transactional")
	}
	if bi.control() {
		b.WriteString(", control (a transaction marker)")
	}
	return b.String()
}

// describeSnapshot describes a state snapshot by what it counts, not its
// contents (which include the SCRAM credentials).
func describeSnapshot(p []byte) string {
	var cp stateCheckpoint
	if err := json.Unmarshal(p, &cp); err != nil {
		return "undecodable: " + err.Error()
	}
	counts := map[string]int{
		"topics": len(cp.Topics), "groups with offsets": len(cp.Offsets), "group memberships": len(cp.Groups),
		"ACLs": len(cp.ACLs), "quotas": len(cp.Quotas), "SCRAM users": len(cp.ScramUsers), "transactional ids": len(cp.Transactions),
	}
	names := make([]string, 0, len(counts))
	for k, n := range counts {
		if n > 0 {
			names = append(names, fmt.Sprintf("%d %s", n, k))
		}
	}
	sort.Strings(names)
	what := "nothing"
	if len(names) > 0 {
		what = strings.Join(names, ", ")
	}
	return fmt.Sprintf("the state as of LSN %d (%d bytes): %s; next producer id %d", cp.LSN, len(p), what, cp.NextPID)
}

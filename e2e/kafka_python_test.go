package e2e

import (
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"testing"
	"time"
)

// pyRecord is one [partition, offset, value] triple printed by the scripts.
type pyRecord struct {
	Partition int32
	Offset    int64
	Value     string
}

func (r *pyRecord) UnmarshalJSON(b []byte) error {
	var raw [3]any
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	p, ok1 := raw[0].(float64)
	o, ok2 := raw[1].(float64)
	v, ok3 := raw[2].(string)
	if !ok1 || !ok2 || !ok3 {
		return fmt.Errorf("record %s is not [partition, offset, value]", b)
	}
	r.Partition, r.Offset, r.Value = int32(p), int64(o), v
	return nil
}

type pyProduceResult struct {
	Sent    int        `json:"sent"`
	Records []pyRecord `json:"records"`
}

type pyConsumeResult struct {
	Count     int              `json:"count"`
	Records   []pyRecord       `json:"records"`
	Committed map[string]int64 `json:"committed"`
	TimedOut  bool             `json:"timed_out"`
}

func pyProduce(t *testing.T, b *broker, topic string, count int, acks, prefix string, extra ...string) pyProduceResult {
	t.Helper()
	var res pyProduceResult
	args := []string{python, clientScript(t, "kafka_python_produce.py"),
		"--bootstrap", b.Addr, "--topic", topic, "--count", strconv.Itoa(count),
		"--acks", acks, "--prefix", prefix}
	runScript(t, 90*time.Second, &res, append(args, extra...)...)
	if res.Sent != count || len(res.Records) != count {
		t.Fatalf("kafka-python producer reports %d sent (%d records), want %d", res.Sent, len(res.Records), count)
	}
	return res
}

func pyConsume(t *testing.T, b *broker, topic string, count int, group string) pyConsumeResult {
	t.Helper()
	args := []string{python, clientScript(t, "kafka_python_consume.py"),
		"--bootstrap", b.Addr, "--topic", topic, "--count", strconv.Itoa(count), "--timeout", "40"}
	if group != "" {
		args = append(args, "--group", group)
	}
	var res pyConsumeResult
	runScript(t, 90*time.Second, &res, args...)
	return res
}

// TestKafkaPythonProduceConsume produces with kafka-python (acks=1 and
// acks=all, plain and gzip) to a topic that the producer's Metadata request
// auto-creates, and reads everything back with a consumer that has no
// group_id.
func TestKafkaPythonProduceConsume(t *testing.T) {
	b := startBroker(t)
	tests := []struct{ acks, compression string }{
		{"1", ""},
		{"all", ""},
		// The only codec python3-kafka supports without extra modules.
		{"all", "gzip"},
	}
	for _, tc := range tests {
		name := "acks=" + tc.acks
		var extra []string
		if tc.compression != "" {
			name += "," + tc.compression
			extra = []string{"--compression", tc.compression}
		}
		t.Run(name, func(t *testing.T) {
			topic := "py-acks-" + tc.acks + tc.compression
			const n = 50
			prod := pyProduce(t, b, topic, n, tc.acks, "m-", extra...)
			// One partition (num.partitions=1): offsets 0..n-1 in send order.
			for i, r := range prod.Records {
				if r.Partition != 0 || r.Offset != int64(i) {
					t.Fatalf("message %d acknowledged at partition %d offset %d, want partition 0 offset %d", i, r.Partition, r.Offset, i)
				}
			}
			cons := pyConsume(t, b, topic, n, "")
			if cons.TimedOut {
				t.Fatalf("kafka-python consumer read %d of %d messages before its timeout", cons.Count, n)
			}
			got := make([]string, len(cons.Records))
			for i, r := range cons.Records {
				got[i] = r.Value
				if r.Offset != int64(i) {
					t.Fatalf("consumed message %d at offset %d, want %d", i, r.Offset, i)
				}
			}
			requireSameValues(t, "kafka-python consumer", got, seqValues("m-", n))
		})
	}
	b.requireAlive()
}

// TestKafkaPythonConsumerGroup: a kafka-python consumer in a group reads part
// of a 3-partition topic and commits; a second consumer in the same group
// resumes exactly after the committed offsets, so together they read every
// message once.
func TestKafkaPythonConsumerGroup(t *testing.T) {
	b := startBroker(t)
	const topic, group, n, first = "py-group", "py-group-1", 30, 10
	b.createTopic(topic, 3)
	pyProduce(t, b, topic, n, "all", "g-")

	a := pyConsume(t, b, topic, first, group)
	if a.Count != first {
		t.Fatalf("first group consumer read %d messages, want %d (timed out: %v)", a.Count, first, a.TimedOut)
	}
	second := pyConsume(t, b, topic, n-first, group)
	if second.Count != n-first {
		t.Fatalf("second group consumer read %d messages, want the %d the first one left (timed out: %v); it read %v",
			second.Count, n-first, second.TimedOut, second.Records)
	}

	// The second consumer starts at the first one's committed offsets.
	firstOffset := map[int32]int64{}
	for _, r := range second.Records {
		if _, ok := firstOffset[r.Partition]; !ok {
			firstOffset[r.Partition] = r.Offset
		}
	}
	for p, off := range firstOffset {
		want := a.Committed[strconv.Itoa(int(p))] // 0 when the first consumer read nothing there
		if off != want {
			t.Errorf("partition %d: second consumer started at offset %d, want the committed offset %d", p, off, want)
		}
	}

	// Together they read every message exactly once.
	seen := map[string]int{}
	for _, r := range append(a.Records, second.Records...) {
		seen[r.Value]++
	}
	var missing, dup []string
	for _, v := range seqValues("g-", n) {
		switch seen[v] {
		case 0:
			missing = append(missing, v)
		case 1:
		default:
			dup = append(dup, v)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 || len(dup) > 0 {
		t.Fatalf("across both consumers: missing %v, read more than once %v", missing, dup)
	}

	// The group's committed offsets are the end of every partition.
	ctx := ctxTimeout(t, 15*time.Second)
	committed, err := b.admin().FetchOffsets(ctx, group)
	if err != nil {
		t.Fatalf("OffsetFetch %s: %v", group, err)
	}
	for p, end := range b.endOffsets(topic) {
		got, ok := committed.Lookup(topic, p)
		if end > 0 && (!ok || got.Err != nil || got.At != end) {
			t.Errorf("group %s partition %d: committed %+v, want offset %d (the end)", group, p, got, end)
		}
	}
	b.requireAlive()
}

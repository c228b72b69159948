package e2e

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"
)

// timestampsPython creates two topics with kafka-python's admin client, one
// with message.timestamp.type=LogAppendTime and one with
// message.timestamp.before.max.ms of an hour, produces to both with
// explicit timestamps and reads the first back. It prints one JSON object:
//
//	create_errors: [[topic, code], ...] of create_topics
//	appended: [{"timestamp", "type"}] of the RecordMetadata of the writes
//	  to the LogAppendTime topic (timestamp 2001-02-03 given)
//	consumed: [{"timestamp", "type", "value"}] read back from it
//	bounded_old: the exception a write two hours old got ("" if none)
//	bounded_now: the exception a write of now got ("" if none)
const timestampsPython = `
import json, sys, time
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic

bootstrap, appended, bounded = sys.argv[1], sys.argv[2], sys.argv[3]
out = {}
adm = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="e2e-timestamps-admin", request_timeout_ms=20000)
resp = adm.create_topics([
    NewTopic(appended, 1, 1, topic_configs={"message.timestamp.type": "LogAppendTime"}),
    NewTopic(bounded, 1, 1, topic_configs={"message.timestamp.before.max.ms": "3600000"}),
])
out["create_errors"] = [[e[0], e[1]] for e in resp.topic_errors if e[1] != 0]
adm.close()

p = KafkaProducer(bootstrap_servers=bootstrap, client_id="e2e-timestamps", acks="all", retries=0,
                  request_timeout_ms=15000, max_block_ms=20000)
old = 981173106000  # 2001-02-03 04:05:06 UTC
futs = [p.send(appended, value=b"v%d" % i, timestamp_ms=old) for i in range(5)]
p.flush(timeout=30)
out["appended"] = []
for f in futs:
    md = f.get(timeout=30)
    out["appended"].append({"timestamp": md.timestamp})

def attempt(ts):
    try:
        p.send(bounded, value=b"x", timestamp_ms=ts).get(timeout=30)
        return ""
    except Exception as e:
        return type(e).__name__
now = int(time.time() * 1000)
out["bounded_old"] = attempt(now - 2 * 3600 * 1000)
out["bounded_now"] = attempt(now)
p.close(timeout=10)

c = KafkaConsumer(bootstrap_servers=bootstrap, client_id="e2e-timestamps-consumer", enable_auto_commit=False,
                  auto_offset_reset="earliest", fetch_max_wait_ms=200, request_timeout_ms=20000)
tp = TopicPartition(appended, 0)
c.assign([tp])
c.seek_to_beginning(tp)
out["consumed"] = []
deadline = time.time() + 30
while len(out["consumed"]) < 5 and time.time() < deadline:
    for msgs in c.poll(timeout_ms=200).values():
        for m in msgs:
            out["consumed"].append({"timestamp": m.timestamp, "type": m.timestamp_type, "value": m.value.decode()})
c.close(autocommit=False)
json.dump(out, sys.stdout)
sys.stdout.write("\n")
`

// TestLogAppendTimeWithRealClients: a topic created by kafka-python with
// message.timestamp.type=LogAppendTime gives its records the broker's
// append time, not the 2001 timestamp the producer set: kafka-python's
// RecordMetadata carries it from the produce answer, its consumer reads it
// with timestamp type 1 (LogAppendTime), and kcat (librdkafka) reads it
// too. A topic with message.timestamp.before.max.ms of an hour refuses
// kafka-python's write of two hours ago (InvalidTimestampError) and takes
// one of now.
func TestLogAppendTimeWithRealClients(t *testing.T) {
	b := startBroker(t)
	const appended, bounded = "ts-appended", "ts-bounded"
	var res struct {
		CreateErrors [][2]any `json:"create_errors"`
		Appended     []struct {
			Timestamp int64 `json:"timestamp"`
		} `json:"appended"`
		Consumed []struct {
			Timestamp int64  `json:"timestamp"`
			Type      int    `json:"type"`
			Value     string `json:"value"`
		} `json:"consumed"`
		BoundedOld string `json:"bounded_old"`
		BoundedNow string `json:"bounded_now"`
	}
	before := time.Now().Add(-time.Second).UnixMilli() // the VM's clock is the broker's too
	runScript(t, 90*time.Second, &res, python, "-c", timestampsPython, b.Addr, appended, bounded)
	after := time.Now().UnixMilli()
	if len(res.CreateErrors) > 0 {
		t.Fatalf("kafka-python create_topics with LogAppendTime and message.timestamp.before.max.ms: errors %v", res.CreateErrors)
	}
	inWindow := func(ts int64) bool { return ts >= before && ts <= after }
	if len(res.Appended) != 5 {
		t.Fatalf("kafka-python got %d RecordMetadata, want 5", len(res.Appended))
	}
	for i, md := range res.Appended {
		if !inWindow(md.Timestamp) {
			t.Fatalf("kafka-python's RecordMetadata %d has timestamp %d; want the broker's append time, %d to %d (the producer set 981173106000)",
				i, md.Timestamp, before, after)
		}
	}
	if len(res.Consumed) != 5 {
		t.Fatalf("kafka-python read %d records of %s, want 5", len(res.Consumed), appended)
	}
	for i, r := range res.Consumed {
		if r.Type != 1 || !inWindow(r.Timestamp) || r.Value != fmt.Sprintf("v%d", i) {
			t.Fatalf("kafka-python read %+v at offset %d; want value v%d with the append time (%d to %d) and timestamp type 1", r, i, i, before, after)
		}
		if r.Timestamp != res.Appended[i].Timestamp {
			t.Fatalf("kafka-python read timestamp %d at offset %d, but the produce answer said %d", r.Timestamp, i, res.Appended[i].Timestamp)
		}
	}
	if res.BoundedOld != "InvalidTimestampError" || res.BoundedNow != "" {
		t.Fatalf("writes to %s (message.timestamp.before.max.ms=3600000): two hours old got %q, now got %q; want InvalidTimestampError and success",
			bounded, res.BoundedOld, res.BoundedNow)
	}

	// kcat reads the append time of every record (%T: the record's
	// timestamp in milliseconds), and its own writes get it too.
	kcatBefore := time.Now().Add(-time.Second).UnixMilli()
	kcat(t, "k1\nk2\nk3\n", 60*time.Second, "-P", "-b", b.Addr, "-t", appended, "-z", "gzip")
	kcatAfter := time.Now().UnixMilli()
	out := kcat(t, "", 60*time.Second, "-C", "-b", b.Addr, "-t", appended, "-o", "beginning", "-e", "-f", "%o %T %s\n")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 8 {
		t.Fatalf("kcat read %d records of %s, want 8:\n%s", len(lines), appended, out)
	}
	for _, line := range lines {
		f := strings.Fields(line)
		ts, err := strconv.ParseInt(f[1], 10, 64)
		off, _ := strconv.Atoi(f[0])
		lo, hi := before, after
		if off >= 5 {
			lo, hi = kcatBefore, kcatAfter
		}
		if err != nil || ts < lo || ts > hi {
			t.Fatalf("kcat read %q; want the record's append time, %d to %d", line, lo, hi)
		}
	}
}

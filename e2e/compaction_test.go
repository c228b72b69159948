package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tandem-io/tandem/internal/testutil"
)

// Log compaction (cleanup.policy=compact, broker/compact.go) as a user of
// Kafka Connect or Schema Registry sees it: a topic that keeps the latest
// value of every key, on every node, across retention, failover and
// restarts.

// compactedRecord is one record of the compacted topic as a client read it
// (Value nil: a tombstone).
type compactedRecord struct {
	Offset int64   `json:"offset"`
	Key    string  `json:"key"`
	Value  *string `json:"value"`
}

func (r compactedRecord) String() string {
	return fmt.Sprintf("offset %d %s=%s", r.Offset, r.Key, showValue(r.Value))
}

// compactionPython is a kafka-python program (python3 -c) with four modes,
// each printing one JSON object:
//
//	create BOOTSTRAP TOPIC: KafkaAdminClient.create_topics with
//	  cleanup.policy=compact, then describe_configs: {"errors", "configs"}
//	produce BOOTSTRAP TOPIC PAIRS: sends the [key, value|null] pairs (JSON)
//	  in order, acks=all: {"offsets": [[key, offset], ...]}
//	nokey BOOTSTRAP TOPIC: sends one record without a key: {"error": name of
//	  the exception or "", "codes": error codes of the produce responses}
//	consume BOOTSTRAP TOPIC: reads partition 0 from the beginning up to its
//	  end offset: {"end", "records": [{"offset", "key", "value"}], "timed_out"}
const compactionPython = `
import io, json, logging, re, sys, time
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType, NewTopic

mode, bootstrap, topic = sys.argv[1], sys.argv[2].split(","), sys.argv[3]
out = {}
if mode == "create":
    adm = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="e2e-compaction-admin", request_timeout_ms=20000)
    resp = adm.create_topics([NewTopic(topic, 1, 3, topic_configs={"cleanup.policy": "compact"})])
    out["errors"] = [[e[0], e[1]] for e in resp.topic_errors if e[1] != 0]
    configs = {}
    for r in adm.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)]):
        for res in r.resources:
            if res[0] != 0:
                out["errors"].append([topic, res[0]])
            for entry in res[4]:
                configs[entry[0]] = entry[1]
    out["configs"] = configs
    adm.close()
elif mode == "produce":
    p = KafkaProducer(bootstrap_servers=bootstrap, client_id="e2e-compaction-producer", acks="all", retries=5,
                      request_timeout_ms=15000, max_block_ms=20000)
    futs = []
    for k, v in json.loads(sys.argv[4]):
        futs.append((k, p.send(topic, key=k.encode(), value=None if v is None else v.encode())))
    p.flush(timeout=30)
    out["offsets"] = [[k, f.get(timeout=30).offset] for k, f in futs]
    p.close(timeout=10)
elif mode == "nokey":
    buf = io.StringIO()
    lg = logging.getLogger("kafka.producer.sender")
    lg.setLevel(logging.DEBUG)
    lg.addHandler(logging.StreamHandler(buf))
    p = KafkaProducer(bootstrap_servers=bootstrap, client_id="e2e-compaction-nokey", acks="all", retries=0,
                      request_timeout_ms=15000, max_block_ms=20000)
    out["error"] = ""
    try:
        md = p.send(topic, value=b"a value without a key").get(timeout=30)
        out["offset"] = md.offset
    except Exception as e:
        out["error"] = type(e).__name__
    p.close(timeout=10)
    out["codes"] = [int(c) for c in re.findall(r"error_code=(\d+)", buf.getvalue())]
elif mode == "consume":
    c = KafkaConsumer(bootstrap_servers=bootstrap, client_id="e2e-compaction-consumer", enable_auto_commit=False,
                      auto_offset_reset="earliest", fetch_max_wait_ms=200, request_timeout_ms=20000)
    tp = TopicPartition(topic, 0)
    c.assign([tp])
    c.seek_to_beginning(tp)
    end = c.end_offsets([tp])[tp]
    records = []
    deadline = time.time() + 30
    while c.position(tp) < end and time.time() < deadline:
        for msgs in c.poll(timeout_ms=200).values():
            for m in msgs:
                records.append({"offset": m.offset, "key": None if m.key is None else m.key.decode(),
                                "value": None if m.value is None else m.value.decode()})
    out = {"end": end, "records": records, "timed_out": c.position(tp) < end}
    c.close(autocommit=False)
json.dump(out, sys.stdout)
sys.stdout.write("\n")
`

// runCompactionPython runs compactionPython in mode and decodes its output.
func runCompactionPython(t *testing.T, out any, mode string, bootstrap []string, topic string, extra ...string) {
	t.Helper()
	args := append([]string{python, "-c", compactionPython, mode, strings.Join(bootstrap, ","), topic}, extra...)
	runScript(t, 90*time.Second, out, args...)
}

// restartBrokerWith replaces node id's broker with one started with the
// harness's command line plus extra flags (the harness gives every broker
// the same flags; a metrics address and a rack differ per node).
func (c *cluster) restartBrokerWith(id int, extra ...string) {
	c.t.Helper()
	n := c.node(id)
	if err := n.broker.Stop(); err != nil {
		c.t.Fatalf("stopping broker %d: %v", id, err)
	}
	args := append([]string{
		"--node-id", fmt.Sprint(id), "--data-dir", filepath.Join(n.dir, "data"),
		"--listen", n.kafka, "--advertise", n.kafka, "--sidecar", n.sock,
		"--group-initial-rebalance-delay", "0s",
	}, c.opts.brokerFlags...)
	n.broker = testutil.Start(c.t, testutil.ProcessConfig{
		Name: fmt.Sprintf("broker-%d-with-metrics", id),
		Path: brokerPath(c.t),
		Args: append(args, extra...),
	})
	testutil.WaitTCPFor(c.t, n.kafka, 20*time.Second)
}

// brokerGauge reads one sample of a broker's /metrics.
func brokerGauge(addr, name string) (float64, error) {
	m, err := scrape(addr)
	if err != nil {
		return 0, err
	}
	v, ok := m[name]
	if !ok {
		return 0, fmt.Errorf("%s: no sample %s", addr, name)
	}
	return v, nil
}

func rackOf(id int) string { return fmt.Sprintf("rack-%d", id) }

func showValue(v *string) string {
	if v == nil {
		return "null (tombstone)"
	}
	return strconv.Quote(*v)
}

// compactedViewProblems compares what a client read from a compacted topic
// with the latest value of every key (want) and, where the producing client
// reported it, the offset of that latest write (offsets). It returns one
// line per problem, or nothing.
func compactedViewProblems(got []compactedRecord, want map[string]*string, offsets map[string]int64) []string {
	var probs []string
	seen := map[string][]compactedRecord{}
	for i, r := range got {
		if i > 0 && r.Offset <= got[i-1].Offset {
			probs = append(probs, fmt.Sprintf("offset %d comes after offset %d", r.Offset, got[i-1].Offset))
		}
		seen[r.Key] = append(seen[r.Key], r)
	}
	keys := make([]string, 0, len(want))
	for k := range want {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		rs := seen[k]
		switch {
		case len(rs) == 0:
			probs = append(probs, fmt.Sprintf("key %s is missing: its latest value %s was lost", k, showValue(want[k])))
			continue
		case len(rs) > 1:
			var vs []string
			for _, r := range rs {
				vs = append(vs, fmt.Sprintf("%s at offset %d", showValue(r.Value), r.Offset))
			}
			probs = append(probs, fmt.Sprintf("key %s is read %d times (%s): its older values were not compacted away",
				k, len(rs), strings.Join(vs, ", ")))
		}
		last := rs[len(rs)-1]
		if (last.Value == nil) != (want[k] == nil) || (last.Value != nil && *last.Value != *want[k]) {
			probs = append(probs, fmt.Sprintf("key %s ends with %s at offset %d, want its latest value %s",
				k, showValue(last.Value), last.Offset, showValue(want[k])))
		}
		if off, ok := offsets[k]; ok && last.Offset != off {
			probs = append(probs, fmt.Sprintf("key %s's latest value is at offset %d, but the producer was told %d", k, last.Offset, off))
		}
	}
	for k, rs := range seen {
		if _, ok := want[k]; !ok {
			probs = append(probs, fmt.Sprintf("key %q was never written but is read %d times", k, len(rs)))
		}
	}
	return probs
}

// requireCompactedView fails the test unless got is exactly the latest
// record of every key.
func requireCompactedView(t *testing.T, what string, got []compactedRecord, want map[string]*string, offsets map[string]int64) {
	t.Helper()
	if probs := compactedViewProblems(got, want, offsets); len(probs) > 0 {
		if len(probs) > 15 {
			probs = append(probs[:15], fmt.Sprintf("... and %d more", len(probs)-15))
		}
		t.Fatalf("%s: read %d records, want exactly the latest record of each of the %d keys:\n  %s",
			what, len(got), len(want), strings.Join(probs, "\n  "))
	}
}

// kcatCompactedRead reads topic from offset from ("beginning" or a number)
// to its end with kcat (librdkafka) bootstrapped from node id and in node
// id's rack, so that the leader sends it to node id (KIP-392; the leader
// serves it itself). It fails the test unless every record came from node
// id, per librdkafka's fetch debug log.
func kcatCompactedRead(t *testing.T, c *cluster, id int, topic, from string) []compactedRecord {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "kcat", "-C", "-b", c.node(id).kafka, "-t", topic, "-p", "0",
		"-o", from, "-e", "-X", "client.rack="+rackOf(id), "-d", "fetch", "-f", "%o|%k|%S|%s\n")
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("kcat reading %s on node %d: %v\n%s", topic, id, err, tail(stderr.String(), 40))
	}
	var out []compactedRecord
	for _, line := range strings.Split(strings.TrimSuffix(stdout.String(), "\n"), "\n") {
		if line == "" {
			continue
		}
		f := strings.SplitN(line, "|", 4)
		if len(f) != 4 {
			t.Fatalf("kcat printed %q, want offset|key|size|value", line)
		}
		off, err1 := strconv.ParseInt(f[0], 10, 64)
		size, err2 := strconv.Atoi(f[2])
		if err1 != nil || err2 != nil {
			t.Fatalf("kcat printed %q, want offset|key|size|value", line)
		}
		r := compactedRecord{Offset: off, Key: f[1]}
		if size >= 0 {
			r.Value = &f[3]
		}
		out = append(out, r)
	}
	log := stderr.String()
	servedBy := func(node int) int {
		re := regexp.MustCompile(fmt.Sprintf(`/%d: Enqueue (\d+) message\(s\) .* on %s \[0\] fetch queue`, node, regexp.QuoteMeta(topic)))
		n := 0
		for _, m := range re.FindAllStringSubmatch(log, -1) {
			k, _ := strconv.Atoi(m[1])
			n += k
		}
		return n
	}
	for _, n := range c.nodes {
		if got := servedBy(n.id); (n.id == id) != (got > 0) && len(out) > 0 {
			t.Fatalf("kcat in %s read %d records from node %d; want every record from node %d:\n%s",
				rackOf(id), got, n.id, id, tail(log, 40))
		}
	}
	return out
}

// franzCompactedRead reads topic/0 from the beginning to end with franz-go
// bootstrapped from node id and in node id's rack, and fails the test
// unless node id served every batch.
func franzCompactedRead(t *testing.T, c *cluster, id int, topic string, end int64) []compactedRecord {
	t.Helper()
	hook := &fetchServers{byNode: map[int32]int{}}
	cl := kclient(t, []string{c.node(id).kafka}, kgo.Rack(rackOf(id)), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.WithHooks(hook))
	defer cl.Close()
	ctx := ctxTimeout(t, 30*time.Second)
	var out []compactedRecord
	for len(out) == 0 || out[len(out)-1].Offset < end-1 {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("franz-go in %s read %d records of %s, the last at offset %v, and nothing up to the end offset %d within 30s",
				rackOf(id), len(out), topic, out[max(len(out)-1, 0):], end)
		}
		var errs []string
		fs.EachError(func(tp string, p int32, err error) { errs = append(errs, fmt.Sprintf("%s[%d]: %v", tp, p, err)) })
		if len(errs) > 0 {
			t.Fatalf("franz-go in %s reading %s: %s", rackOf(id), topic, strings.Join(errs, "; "))
		}
		fs.EachRecord(func(r *kgo.Record) {
			cr := compactedRecord{Offset: r.Offset, Key: string(r.Key)}
			if r.Value != nil {
				v := string(r.Value)
				cr.Value = &v
			}
			out = append(out, cr)
		})
	}
	by := hook.snapshot()
	for _, n := range c.nodes {
		if (n.id == id) != (by[int32(n.id)] > 0) {
			t.Fatalf("franz-go in %s read record batches by node %v; want every batch from node %d", rackOf(id), by, id)
		}
	}
	return out
}

// TestCompactionKeepsLatestValuePerKey: a three-node cluster (etcd
// elections) with 1 MiB WAL segments and a 2 MiB log.retention.bytes. A
// compacted topic, created with kafka-python's admin client as Kafka
// Connect creates its config topic, gets seven rounds of writes to 50 keys
// from franz-go (gzip), kcat and kafka-python, with tombstones from kcat -Z
// and from kafka-python (value=None), one key written again after its
// tombstone, and a last batch after them. The leader cleans the topic
// before retention deletes anything (min.cleanable.dirty.ratio): a reader
// then gets the latest record of each key. Then 5 MB go to an ordinary
// topic, so that retention deletes, on every node, the WAL segments that
// held those writes. Every node then serves the compacted topic (kcat and
// franz-go in that node's rack, kafka-python through the leader) with
// exactly the latest record of each key, at the offset the producer was
// given, tombstones included (delete.retention.ms is 24h); a consumer
// resuming inside a removed range gets the records kept after it; the
// topic's log start offset is still 0 while the ordinary topic's moved;
// the replicas are identical. The same holds after the leader is SIGKILLed,
// another node is elected and the old leader restarts, and again after the
// new leader compacts what its predecessor compacted (two keys written
// again). A record without a key is refused with INVALID_RECORD. Alongside,
// a topic created with retention.ms=-1 (as Kafka Streams creates its
// repartition topics) and written by kcat keeps every record on every
// node through the same retention rounds and failover: its batches are
// copied forward whole.
func TestCompactionKeepsLatestValuePerKey(t *testing.T) {
	const (
		topic   = "connect-configs"
		filler  = "page-views"
		forever = "streams-repartition" // retention.ms=-1, as Kafka Streams creates it
		nkeys   = 50
		nkept   = 300 // records written to forever
	)
	began := time.Now()
	c, _, leader, metrics := startCompactionCluster(t, "250ms")
	t.Logf("cluster up, node %d leads (%v)", leader, time.Since(began).Round(time.Millisecond))

	// 1. The compacted topic, created as Kafka Connect does it.
	var created struct {
		Errors  [][2]any          `json:"errors"`
		Configs map[string]string `json:"configs"`
	}
	runCompactionPython(t, &created, "create", c.kafkaAddrs(), topic)
	if len(created.Errors) > 0 {
		t.Fatalf("kafka-python create_topics/describe_configs of %s with cleanup.policy=compact: errors %v", topic, created.Errors)
	}
	if got := created.Configs["cleanup.policy"]; got != "compact" {
		t.Fatalf("kafka-python describe_configs: %s has cleanup.policy=%q, want compact", topic, got)
	}
	adm := kadm.NewClient(kclient(t, c.kafkaAddrs()))
	rcs, err := adm.DescribeTopicConfigs(ctxTimeout(t, 15*time.Second), topic)
	if err != nil || len(rcs) != 1 || rcs[0].Err != nil {
		t.Fatalf("DescribeConfigs %s: %v %+v", topic, err, rcs)
	}
	if v, _, _ := configValue(rcs[0], "cleanup.policy"); v != "compact" {
		t.Fatalf("franz-go DescribeConfigs: %s has cleanup.policy=%q, want compact", topic, v)
	}
	// Cleaned whenever anything is dirty: with Kafka's default ratio
	// (0.5) the last writes, a few small batches, could stay uncleaned
	// until retention, as they would in Kafka. Set through a follower,
	// which hands it to the leader (as Kafka brokers forward it to the
	// controller) and answers once the change is applied there too.
	followers := c.otherNodes(leader)
	viaFollower := kadm.NewClient(kclient(t, []string{c.node(followers[0]).kafka}))
	ac, err := viaFollower.AlterTopicConfigs(ctxTimeout(t, 15*time.Second),
		[]kadm.AlterConfig{{Op: kadm.SetConfig, Name: "min.cleanable.dirty.ratio", Value: kadm.StringPtr("0.01")}}, topic)
	if err == nil {
		err = ac[0].Err
	}
	if err != nil {
		t.Fatalf("setting min.cleanable.dirty.ratio on %s through follower node %d: %v", topic, followers[0], err)
	}
	rcs, err = viaFollower.DescribeTopicConfigs(ctxTimeout(t, 15*time.Second), topic)
	if err != nil || len(rcs) != 1 || rcs[0].Err != nil {
		t.Fatalf("DescribeConfigs %s on node %d: %v %+v", topic, followers[0], err, rcs)
	}
	if v, _, _ := configValue(rcs[0], "min.cleanable.dirty.ratio"); v != "0.01" {
		t.Fatalf("node %d answered the change of min.cleanable.dirty.ratio, then describes it as %q, want 0.01", followers[0], v)
	}
	c.createTopicRetry(filler)
	// Kafka's legacy AlterConfigs through the other follower.
	legacy := kadm.NewClient(kclient(t, []string{c.node(followers[1]).kafka}))
	lc, err := legacy.AlterTopicConfigsState(ctxTimeout(t, 15*time.Second),
		[]kadm.AlterConfig{{Name: "max.message.bytes", Value: kadm.StringPtr("2000000")}}, filler)
	if err == nil {
		err = lc[0].Err
	}
	if err != nil {
		t.Fatalf("AlterConfigs of %s through follower node %d: %v", filler, followers[1], err)
	}
	rcs, err = legacy.DescribeTopicConfigs(ctxTimeout(t, 15*time.Second), filler)
	if err != nil || len(rcs) != 1 || rcs[0].Err != nil {
		t.Fatalf("DescribeConfigs %s on node %d: %v %+v", filler, followers[1], err, rcs)
	}
	if v, _, _ := configValue(rcs[0], "max.message.bytes"); v != "2000000" {
		t.Fatalf("node %d answered AlterConfigs of %s, then describes max.message.bytes as %q, want 2000000", followers[1], filler, v)
	}
	// A topic that keeps its records forever outlives the node's retention
	// too: its batches are copied forward whole.
	cr, err := adm.CreateTopic(ctxTimeout(t, 15*time.Second), 1, -1, map[string]*string{"retention.ms": kadm.StringPtr("-1")}, forever)
	if err == nil {
		err = cr.Err
	}
	if err != nil {
		t.Fatalf("creating %s with retention.ms=-1: %v", forever, err)
	}
	var keptLines []string
	for i := range nkept {
		keptLines = append(keptLines, fmt.Sprintf("kept-%03d", i))
	}
	for i := 0; i < nkept; i += 100 { // three producers, three batches at least
		kcat(t, strings.Join(keptLines[i:i+100], "\n")+"\n", 60*time.Second, "-P", "-b", strings.Join(c.kafkaAddrs(), ","), "-t", forever, "-p", "0")
	}
	// checkKept fails the test unless a client read every record of forever.
	checkKept := func(what string, got []compactedRecord) {
		t.Helper()
		ok := len(got) == nkept
		for i := 0; ok && i < nkept; i++ {
			ok = got[i].Offset == int64(i) && got[i].Value != nil && *got[i].Value == keptLines[i]
		}
		if !ok {
			t.Fatalf("%s read %d records of %s (first %v, last %v); want all %d written, kept-000 at offset 0 to kept-%03d at offset %d",
				what, len(got), forever, got[:min(len(got), 1)], got[max(len(got)-1, 0):], nkept, nkept-1, nkept-1)
		}
	}

	want := map[string]*string{}  // the latest value of every key
	offsets := map[string]int64{} // its offset, where the producer said
	key := func(i int) string { return fmt.Sprintf("key-%02d", i) }
	val := func(round, i int) *string { v := fmt.Sprintf("r%d-%s", round, key(i)); return &v }
	written := 0
	// franz-go, gzip: compaction recompresses what it filters.
	franz := kclient(t, c.kafkaAddrs(), kgo.ProducerBatchCompression(kgo.GzipCompression()))
	franzWrite := func(round int, keys []int) {
		t.Helper()
		var recs []*kgo.Record
		for _, i := range keys {
			recs = append(recs, &kgo.Record{Topic: topic, Key: []byte(key(i)), Value: []byte(*val(round, i))})
		}
		if err := franz.ProduceSync(ctxTimeout(t, 30*time.Second), recs...).FirstErr(); err != nil {
			t.Fatalf("franz-go write of round %d to %s: %v", round, topic, err)
		}
		for j, i := range keys {
			want[key(i)], offsets[key(i)] = val(round, i), recs[j].Offset
		}
		written += len(keys)
	}
	// kcat -K: "key|value" lines; -Z: an empty value is a NULL (tombstone).
	kcatWrite := func(round int, keys []int, tombstones ...int) {
		t.Helper()
		var lines []string
		for _, i := range keys {
			if slices.Contains(tombstones, i) {
				lines = append(lines, key(i)+"|")
				want[key(i)] = nil
			} else {
				lines = append(lines, key(i)+"|"+*val(round, i))
				want[key(i)] = val(round, i)
			}
			delete(offsets, key(i)) // kcat does not print offsets
		}
		kcat(t, strings.Join(lines, "\n")+"\n", 60*time.Second, "-P", "-b", strings.Join(c.kafkaAddrs(), ","), "-t", topic, "-K", "|", "-Z")
		written += len(keys)
	}
	pyWrite := func(pairs [][2]any) {
		t.Helper()
		arg, _ := json.Marshal(pairs)
		var res struct {
			Offsets [][2]any `json:"offsets"`
		}
		runCompactionPython(t, &res, "produce", c.kafkaAddrs(), topic, string(arg))
		if len(res.Offsets) != len(pairs) {
			t.Fatalf("kafka-python acknowledged %d of %d writes", len(res.Offsets), len(pairs))
		}
		for i, p := range pairs {
			k := p[0].(string)
			if v, ok := p[1].(string); ok {
				want[k] = &v
			} else {
				want[k] = nil
			}
			offsets[k] = int64(res.Offsets[i][1].(float64))
		}
		written += len(pairs)
	}
	keysUpTo := func(n int) []int {
		out := make([]int, n)
		for i := range out {
			out[i] = i
		}
		return out
	}
	franzWrite(0, keysUpTo(nkeys))
	kcatWrite(1, keysUpTo(nkeys))
	var round2 [][2]any
	for i := range 40 {
		round2 = append(round2, [2]any{key(i), *val(2, i)})
	}
	pyWrite(round2)
	franzWrite(3, keysUpTo(25))
	kcatWrite(4, keysUpTo(10), 3, 8)                          // key-03 and key-08 deleted (kcat -Z)
	pyWrite([][2]any{{key(45), nil}, {key(46), *val(5, 46)}}) // key-45 deleted (kafka-python value=None)
	franzWrite(6, []int{8, 47})                               // key-08 written again
	// The partition's last batch, a key of its own. The last batch is
	// never cleaned nor counted as dirty (as Kafka's active segment), and
	// a pass that runs before a batch is committed does not count that
	// batch's records as later ones: had the batch that writes key-08
	// again been the last, a pass run in that moment would have kept
	// key-08's tombstone, with nothing dirty left to clean it later.
	franzWrite(6, []int{nkeys})
	if len(want) != nkeys+1 {
		t.Fatalf("test bug: %d keys written, want %d", len(want), nkeys+1)
	}
	end := endOffsetOf(t, adm, topic)
	if end != int64(written) {
		t.Fatalf("%s ends at offset %d after %d acknowledged writes", topic, end, written)
	}
	endLSN, err := brokerGauge(metrics[leader], "tandem_broker_wal_last_lsn")
	if err != nil {
		t.Fatalf("leader's broker metrics: %v", err)
	}
	// The leader cleans the topic without waiting for retention to need
	// its segments, as Kafka's log cleaner does once
	// min.cleanable.dirty.ratio of it is dirty: a reader from the start
	// soon gets only the latest record of every key, while every node's
	// WAL still starts at LSN 1 (nothing deleted).
	testutil.Eventually(t, 20*time.Second, func() error {
		if probs := compactedViewProblems(franzCompactedRead(t, c, leader, topic, end), want, offsets); len(probs) > 0 {
			return fmt.Errorf("before retention, %s is not cleaned yet (%d problems, the first: %s)", topic, len(probs), probs[0])
		}
		return nil
	})
	for _, n := range c.nodes {
		if first, err := brokerGauge(metrics[n.id], "tandem_broker_wal_first_lsn"); err != nil || first != 1 {
			t.Fatalf("node %d's WAL starts at LSN %v (%v) after cleaning; want 1: cleaning deletes nothing", n.id, first, err)
		}
	}
	t.Logf("%d writes to %s (offsets 0..%d) end at WAL LSN %.0f (%v)", written, topic, end-1, endLSN, time.Since(began).Round(time.Millisecond))

	// 2. Enough of an ordinary topic that retention deletes the segments
	// holding those writes, on every node.
	fill := kclient(t, c.kafkaAddrs(), plain)
	pad := strings.Repeat("p", 10_000)
	filled := 0
	retainPast := func(endLSN float64, leader int) {
		t.Helper()
		const fillN = 500 // 5 MB
		for i := 0; i < fillN; i += 50 {
			recs := make([]*kgo.Record, 50)
			for j := range recs {
				recs[j] = &kgo.Record{Topic: filler, Value: fmt.Appendf(nil, "%05d-%s", filled, pad)}
				filled++
			}
			if err := fill.ProduceSync(ctxTimeout(t, 30*time.Second), recs...).FirstErr(); err != nil {
				t.Fatalf("writing %s: %v", filler, err)
			}
		}
		err := testutil.Poll(40*time.Second, func() error {
			for _, n := range c.nodes {
				first, err := brokerGauge(metrics[n.id], "tandem_broker_wal_first_lsn")
				if err != nil {
					return err
				}
				if first <= endLSN {
					return fmt.Errorf("node %d's WAL still starts at LSN %.0f, at or before LSN %.0f where the writes to %s ended", n.id, first, endLSN, topic)
				}
			}
			return nil
		})
		if err != nil {
			t.Fatalf("retention did not delete the old WAL segments on every node after 5 MB more with log.retention.bytes=2 MiB: %v", err)
		}
		t.Logf("every node's WAL starts after LSN %.0f (%v)", endLSN, time.Since(began).Round(time.Millisecond))
		// tandemctl status shows where each WAL starts now: the broker
		// tells its sidecar after every deletion.
		err = testutil.Poll(10*time.Second, func() error {
			for _, n := range c.nodes {
				st, err := c.status(n.id)
				if err != nil {
					return err
				}
				first, err := brokerGauge(metrics[n.id], "tandem_broker_wal_first_lsn")
				if err != nil {
					return err
				}
				if float64(st.GetFirstLsn()) != first {
					return fmt.Errorf("node %d's sidecar status gives first LSN %d, its broker %.0f", n.id, st.GetFirstLsn(), first)
				}
			}
			return nil
		})
		if err != nil {
			t.Fatalf("after retention: %v", err)
		}
		if n, err := brokerGauge(metrics[leader], "tandem_broker_compacted_batches_total"); err != nil || n == 0 {
			t.Errorf("node %d (leader)'s tandem_broker_compacted_batches_total is %v (%v) after retention deleted the compacted topic's segments; want > 0", leader, n, err)
		}
		if n, err := brokerGauge(metrics[leader], "tandem_broker_retention_copied_batches_total"); err != nil || n == 0 {
			t.Errorf("node %d (leader)'s tandem_broker_retention_copied_batches_total is %v (%v) after retention deleted %s's segments; want > 0", leader, n, err, forever)
		}
		removed, _ := brokerGauge(metrics[leader], "tandem_broker_compaction_removed_records_total")
		copied, _ := brokerGauge(metrics[leader], "tandem_broker_retention_copied_batches_total")
		t.Logf("node %d (leader)'s metrics: %.0f records removed by compaction, %.0f batches of %s copied forward", leader, removed, copied, forever)
	}
	retainPast(endLSN, leader)

	// The ordinary topic lost its oldest records; the compacted one kept
	// its log start offset on every node.
	checkLogStarts := func(when string) {
		t.Helper()
		probe := kclient(t, c.kafkaAddrs())
		err := testutil.Poll(15*time.Second, func() error {
			for _, n := range c.nodes {
				ls, err := logStartOn(c, probe, n.id, filler, 0)
				if err != nil {
					return err
				}
				if ls == 0 {
					return fmt.Errorf("node %d: %s's log start offset is still 0", n.id, filler)
				}
			}
			return nil
		})
		if err != nil {
			t.Fatalf("%s: the ordinary topic %s kept its oldest records although retention deleted their WAL segments: %v", when, filler, err)
		}
		for _, n := range c.nodes {
			for _, tp := range []string{topic, forever} {
				ls, err := logStartOn(c, probe, n.id, tp, 0)
				if err != nil || ls != 0 {
					t.Fatalf("%s: node %d gives %s's log start offset as %d (%v), want 0: retention deleted records of a compacted or retention.ms=-1 topic", when, n.id, tp, ls, err)
				}
			}
		}
	}
	checkLogStarts("after retention")

	// 3. Every node serves exactly the latest record of each key.
	checkEveryNode := func(when string, leader int) {
		t.Helper()
		full := map[int][]compactedRecord{}
		for _, n := range c.nodes {
			full[n.id] = kcatCompactedRead(t, c, n.id, topic, "beginning")
			requireCompactedView(t, fmt.Sprintf("%s, kcat reading %s from node %d", when, topic, n.id),
				full[n.id], want, offsets)
			requireCompactedView(t, fmt.Sprintf("%s, franz-go reading %s from node %d", when, topic, n.id),
				franzCompactedRead(t, c, n.id, topic, end), want, offsets)
			checkKept(fmt.Sprintf("%s, kcat on node %d", when, n.id), kcatCompactedRead(t, c, n.id, forever, "beginning"))
			checkKept(fmt.Sprintf("%s, franz-go on node %d", when, n.id), franzCompactedRead(t, c, n.id, forever, nkept))
		}
		// A consumer resuming at an offset whose record compaction removed
		// (key-20's round-2 value) gets the records kept after it.
		const resumeAt = 120
		follower := c.otherNodes(leader)[0]
		var wantFrom []compactedRecord
		for _, r := range full[follower] {
			if r.Offset >= resumeAt {
				wantFrom = append(wantFrom, r)
			}
		}
		got := kcatCompactedRead(t, c, follower, topic, strconv.Itoa(resumeAt))
		if fmt.Sprint(got) != fmt.Sprint(wantFrom) || len(got) == 0 || got[0].Offset == resumeAt {
			t.Fatalf("%s: kcat -o %d on node %d read %d records from offset %v; want the %d records kept from offset %d on (from %v)",
				when, resumeAt, follower, len(got), got[:min(len(got), 1)], len(wantFrom), resumeAt, wantFrom[:min(len(wantFrom), 1)])
		}
		var py struct {
			End      int64             `json:"end"`
			Records  []compactedRecord `json:"records"`
			TimedOut bool              `json:"timed_out"`
		}
		runCompactionPython(t, &py, "consume", c.kafkaAddrs(), topic)
		if py.TimedOut || py.End != end {
			t.Fatalf("%s: kafka-python read %d records of %s and did not reach its end offset %d (it saw end %d)", when, len(py.Records), topic, end, py.End)
		}
		requireCompactedView(t, fmt.Sprintf("%s, kafka-python reading %s", when, topic), py.Records, want, offsets)
		verifyAfterRetention(t, c, leader, when)
	}
	checkEveryNode("after retention", leader)
	t.Logf("every node serves the compacted view (%v)", time.Since(began).Round(time.Millisecond))

	// 4. Failover: SIGKILL the leader, another node is elected, the old
	// leader comes back as a follower.
	old := leader
	c.node(old).killPair()
	testutil.Eventually(t, 30*time.Second, func() error {
		if id, _ := c.leaderNow(time.Second); id != 0 && id != old {
			leader = id
			return nil
		}
		return fmt.Errorf("no node other than the killed node %d leads", old)
	})
	t.Logf("node %d SIGKILLed; node %d leads (%v)", old, leader, time.Since(began).Round(time.Millisecond))
	c.node(old).startPair()
	testutil.Eventually(t, 60*time.Second, func() error { return c.inSync(leader) })
	t.Logf("node %d restarted and in sync (%v)", old, time.Since(began).Round(time.Millisecond))
	checkLogStarts("after failover and restart")
	checkEveryNode("after failover and restart", leader)

	// A record without a key has no place in a compacted topic.
	res := franz.ProduceSync(ctxTimeout(t, 30*time.Second), &kgo.Record{Topic: topic, Value: []byte("no key")})
	if err := res.FirstErr(); !errors.Is(err, kerr.InvalidRecord) {
		t.Fatalf("franz-go write without a key to compacted %s: error %v, want INVALID_RECORD", topic, err)
	}
	var nokey struct {
		Error string `json:"error"`
		Codes []int  `json:"codes"`
	}
	runCompactionPython(t, &nokey, "nokey", c.kafkaAddrs(), topic)
	// kafka-python 2.0.2 has no class for INVALID_RECORD (87) and raises
	// UnknownError; its debug log has the code of the produce response.
	if nokey.Error == "" || !slices.Contains(nokey.Codes, int(kerr.InvalidRecord.Code)) {
		t.Fatalf("kafka-python write without a key to compacted %s: exception %q, produce response error codes %v; want a refusal with INVALID_RECORD (%d)",
			topic, nokey.Error, nokey.Codes, kerr.InvalidRecord.Code)
	}
	if got := endOffsetOf(t, adm, topic); got != end {
		t.Fatalf("%s ends at offset %d after the refused writes without a key, want %d", topic, got, end)
	}

	// The new leader compacts too, what its predecessor already compacted
	// included: key-10 (in a batch that was filtered and recompressed) and
	// key-50 (in the batch that was last, kept whole) get new values.
	franzWrite(7, []int{10, nkeys})
	end = endOffsetOf(t, adm, topic)
	if end != int64(written) {
		t.Fatalf("%s ends at offset %d after %d acknowledged writes", topic, end, written)
	}
	endLSN, err = brokerGauge(metrics[leader], "tandem_broker_wal_last_lsn")
	if err != nil {
		t.Fatalf("leader's broker metrics: %v", err)
	}
	retainPast(endLSN, leader)
	checkLogStarts("after the new leader's retention")
	checkEveryNode("after the new leader's retention", leader)
	for _, n := range c.nodes {
		for _, p := range []*testutil.Process{n.broker, n.side} {
			if log := p.Log(); strings.Contains(log, "panic:") || strings.Contains(log, "WARNING: DATA RACE") {
				t.Fatalf("%s's log shows a panic or race:\n%s", p.Name(), tail(log, 40))
			}
		}
	}
	t.Logf("done in %v", time.Since(began).Round(time.Millisecond))
}

// startCompactionCluster starts three nodes with etcd elections, 1 MiB WAL
// segments, log.retention.bytes 2 MiB and retention checked every
// checkEvery, so that a few MB of writes make retention (and compaction)
// run. Each broker gets a metrics address (to read its WAL's first LSN) and
// a rack of its own (so that a consumer in that rack reads from it). It
// returns once a leader is elected, every node is in sync and electable.
func startCompactionCluster(t *testing.T, checkEvery string) (c *cluster, etcdURL string, leader int, metrics map[int]string) {
	t.Helper()
	etcdURL = startEtcd(t)
	c = startCluster(t, clusterOpts{
		sidecarFlags: etcdSidecarFlags(etcdURL),
		brokerFlags: []string{"--segment-bytes", strconv.Itoa(1 << 20), "--log-retention-bytes", strconv.Itoa(2 << 20),
			"--log-retention-check-interval", checkEvery},
	})
	leader, _ = c.waitLeader(30 * time.Second)
	metrics = map[int]string{}
	for _, id := range append(c.otherNodes(leader), leader) {
		metrics[id] = testutil.FreeAddr(t)
		c.restartBrokerWith(id, "--metrics-listen", metrics[id], "--rack", rackOf(id))
	}
	leader, _ = c.waitLeader(30 * time.Second)
	testutil.Eventually(t, 30*time.Second, func() error { return c.inSync(leader) })
	c.waitElectable(etcdURL)
	return c, etcdURL, leader, metrics
}

// verifyAfterRetention checks with tandemctl verify that the three
// replicas' WALs are identical over the range they all still hold (which
// retention has moved since the sidecars attached).
func verifyAfterRetention(t *testing.T, c *cluster, leader int, when string) {
	t.Helper()
	c.caughtUp(30*time.Second, leader, c.otherNodes(leader)...)
	out, err := c.verify(leader)
	if err != nil || !strings.Contains(out, "identical: 3 nodes") {
		t.Fatalf("%s: tandemctl verify does not report 3 identical nodes (%v):\n%s", when, err, out)
	}
}

// endOffsetOf is topic/0's high watermark, as ListOffsets through adm (the
// leader) gives it.
func endOffsetOf(t *testing.T, adm *kadm.Client, topic string) int64 {
	t.Helper()
	var end int64
	testutil.Eventually(t, 15*time.Second, func() error {
		l, err := adm.ListEndOffsets(ctxTimeout(t, 5*time.Second), topic)
		if err != nil {
			return err
		}
		o, ok := l.Lookup(topic, 0)
		if !ok || o.Err != nil {
			return fmt.Errorf("end offset of %s[0]: %v", topic, o.Err)
		}
		end = o.Offset
		return nil
	})
	return end
}

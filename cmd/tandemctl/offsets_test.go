package main

import (
	"encoding/json"
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// `tandemctl offsets` shows each partition's earliest, last stable and
// latest offsets, finds an offset by time, and deletes records below an
// offset only with --execute; a consumer then starts at the new earliest
// offset.
func TestOffsetsCommand(t *testing.T) {
	addr := startKafkaBroker(t, nil)
	offsets := func(args ...string) string {
		t.Helper()
		out, err := ctl(t, append([]string{"--timeout", "30s", "offsets", "--bootstrap", addr}, args...)...)
		if err != nil {
			t.Fatalf("offsets %v: %v\n%s", args, err, out)
		}
		return out
	}
	matches := func(out string, lines ...string) { t.Helper(); matchLines(t, out, lines...) }
	if out := offsets(); out != "no topics\n" {
		t.Fatalf("with no topic: %q", out)
	}
	cl := newKafkaClient(t, addr, kgo.DefaultProduceTopic("orders"), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if _, err := kadm.NewClient(cl).CreateTopic(t.Context(), 2, -1, nil, "orders"); err != nil {
		t.Fatal(err)
	}
	// Ten records a second apart on partition 0, four on partition 1.
	base := time.Now().Add(-time.Hour).Truncate(time.Second)
	var recs []*kgo.Record
	for i := range 10 {
		recs = append(recs, &kgo.Record{Partition: 0, Value: []byte{byte(i)}, Timestamp: base.Add(time.Duration(i) * time.Second)})
	}
	for i := range 4 {
		recs = append(recs, &kgo.Record{Partition: 1, Value: []byte{byte(i)}, Timestamp: base})
	}
	if err := cl.ProduceSync(t.Context(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	matches(offsets(), `TOPIC +PARTITION +EARLIEST +STABLE +LATEST`, `orders +0 +0 +10 +10`, `orders +1 +0 +4 +4`)
	out := offsets("--at", base.Add(5*time.Second).Format(time.RFC3339), "orders:0")
	matches(out, `TOPIC +PARTITION +EARLIEST +STABLE +LATEST +AT +AT-TIMESTAMP`,
		`orders +0 +0 +10 +10 +5 +`+regexp.QuoteMeta(base.Add(5*time.Second).UTC().Format(time.RFC3339Nano)))
	if strings.Contains(out, "orders  1") || strings.Contains(out, "orders 1") {
		t.Errorf("orders:0 also listed partition 1:\n%s", out)
	}
	// After every record: the latest offset, and no record's timestamp.
	matches(offsets("--at", "1m", "orders:1"), `orders +1 +0 +4 +4 +4 +-`)

	// An open transaction holds the last stable offset back.
	tx := newKafkaClient(t, addr, kgo.TransactionalID("offsets-test"), kgo.DefaultProduceTopic("orders"),
		kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err := tx.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := tx.ProduceSync(t.Context(), &kgo.Record{Partition: 1, Value: []byte("open")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	var listed []struct {
		Topic     string `json:"topic"`
		Partition int32  `json:"partition"`
		Earliest  int64  `json:"earliest"`
		Stable    int64  `json:"stable"`
		Latest    int64  `json:"latest"`
	}
	if err := json.Unmarshal([]byte(offsets("--json", "orders:1")), &listed); err != nil {
		t.Fatal(err)
	}
	if len(listed) != 1 || listed[0].Topic != "orders" || listed[0].Partition != 1 || listed[0].Earliest != 0 ||
		listed[0].Stable != 4 || listed[0].Latest != 5 {
		t.Fatalf("offsets --json orders:1 with a transaction open: %+v, want earliest 0, stable 4, latest 5", listed)
	}
	if err := tx.EndTransaction(t.Context(), kgo.TryAbort); err != nil {
		t.Fatal(err)
	}
	matches(offsets("orders:1"), `orders +1 +0 +6 +6`) // the record and the abort marker

	// Without --execute only the plan is printed.
	out = offsets("--delete-records-before", "3", "orders:0")
	matches(out, `TOPIC +PARTITION +EARLIEST +LATEST +NEW EARLIEST`, `orders +0 +0 +10 +3`)
	if !strings.Contains(out, "nothing deleted: run again with --execute") {
		t.Errorf("the dry run printed\n%s", out)
	}
	matches(offsets("orders"), `orders +0 +0 +10 +10`)
	// An offset past the end is refused, and nothing is deleted.
	if out, err := ctl(t, "offsets", "--bootstrap", addr, "--delete-records-before", "11", "--execute", "orders"); err == nil ||
		!strings.Contains(err.Error(), "orders/0: offset 11 is past its latest offset 10") {
		t.Fatalf("deleting past the end: %v\n%s", err, out)
	}
	matches(offsets("orders"), `orders +0 +0 +10 +10`, `orders +1 +0 +6 +6`)

	out = offsets("--delete-records-before", "3", "--execute", "orders:0")
	if !strings.Contains(out, "deleted: the records now start at orders/0 from 3") {
		t.Errorf("the deletion printed\n%s", out)
	}
	out = offsets("--delete-records-before", "latest", "--execute", "orders:1")
	if !strings.Contains(out, "deleted: the records now start at orders/1 from 6") {
		t.Errorf("deleting up to latest printed\n%s", out)
	}
	matches(offsets(), `orders +0 +3 +10 +10`, `orders +1 +6 +6 +6`)
	// Below the earliest offset there is nothing to delete, and it says so
	// rather than asking for --execute.
	if out := offsets("--delete-records-before", "2", "orders:0"); !strings.Contains(out, "nothing to delete: every partition already starts at or after that offset") ||
		strings.Contains(out, "--execute") {
		t.Errorf("a plan that deletes nothing printed\n%s", out)
	}

	// A consumer from the earliest offset starts at 3 on partition 0.
	c := newKafkaClient(t, addr, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{"orders": {0: kgo.NewOffset().AtStart()}}))
	var got []int64
	for len(got) < 7 {
		fs := c.PollFetches(t.Context())
		if err := fs.Err0(); err != nil {
			t.Fatal(err)
		}
		fs.EachRecord(func(r *kgo.Record) { got = append(got, r.Offset) })
	}
	if got[0] != 3 || len(got) != 7 {
		t.Fatalf("a consumer from the start read offsets %v, want 3..9", got)
	}

	// Unknown topics and partitions are errors, not empty tables.
	for _, args := range [][]string{{"nosuch"}, {"orders:7"}, {"--delete-records-before", "1", "orders:7"}} {
		if _, err := ctl(t, append([]string{"offsets", "--bootstrap", addr}, args...)...); err == nil || errors.As(err, new(usageError)) {
			t.Errorf("offsets %v: %v, want an error naming what is missing", args, err)
		}
	}
}

func TestOffsetsUsage(t *testing.T) {
	for _, args := range [][]string{
		{"offsets"}, // no --bootstrap
		{"offsets", "--bootstrap", "127.0.0.1:1", "--delete-records-before", "3"},
		{"offsets", "--bootstrap", "127.0.0.1:1", "--delete-records-before", "-3", "t"},
		{"offsets", "--bootstrap", "127.0.0.1:1", "--delete-records-before", "earliest", "t"},
		{"offsets", "--bootstrap", "127.0.0.1:1", "--delete-records-before", "3", "--json", "t"},
		{"offsets", "--bootstrap", "127.0.0.1:1", "--delete-records-before", "3", "--at", "1h", "t"},
		{"offsets", "--bootstrap", "127.0.0.1:1", "--execute", "t"},
		{"offsets", "--bootstrap", "127.0.0.1:1", "--at", "yesterday"},
		{"offsets", "--bootstrap", "127.0.0.1:1", "--at", "latest"},
		{"offsets", "--bootstrap", "127.0.0.1:1", "t:x"},
		{"offsets", "--bootstrap", "127.0.0.1:1", ":0"},
	} {
		if _, err := ctl(t, args...); !errors.As(err, new(usageError)) {
			t.Errorf("tandemctl %v: %v, want a usage error", args, err)
		}
	}
}

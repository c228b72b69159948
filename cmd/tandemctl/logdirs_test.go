package main

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tandem-io/tandem/broker"
)

// `tandemctl log-dirs` shows the node's WAL directory with its file
// system, and each partition's bytes: none for a partition never written,
// more for a partition written more; with a topic named, only its
// partitions.
func TestLogDirsCommand(t *testing.T) {
	var dataDir string
	addr := startKafkaBroker(t, func(c *broker.Config) { dataDir = c.DataDir })
	logDirs := func(args ...string) string {
		t.Helper()
		out, err := ctl(t, append([]string{"--timeout", "30s", "log-dirs", "--bootstrap", addr}, args...)...)
		if err != nil {
			t.Fatalf("log-dirs %v: %v\n%s", args, err, out)
		}
		return out
	}
	if out := logDirs(); !strings.HasSuffix(out, "no partitions\n") {
		t.Fatalf("with no topic:\n%s", out)
	}
	cl := newKafkaClient(t, addr, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if _, err := kadm.NewClient(cl).CreateTopic(t.Context(), 2, -1, nil, "a"); err != nil {
		t.Fatal(err)
	}
	if _, err := kadm.NewClient(cl).CreateTopic(t.Context(), 1, -1, nil, "b"); err != nil {
		t.Fatal(err)
	}
	produce := func(topic string, n int) {
		for i := range n {
			r := &kgo.Record{Topic: topic, Value: []byte(strings.Repeat("x", 100+i))}
			if err := cl.ProduceSync(t.Context(), r).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
	}
	produce("a", 3)
	produce("b", 9)

	var nodes []struct {
		Node        int32  `json:"node"`
		Dir         string `json:"dir"`
		TotalBytes  int64  `json:"total_bytes"`
		UsableBytes int64  `json:"usable_bytes"`
		SizeBytes   int64  `json:"size_bytes"`
		Partitions  []struct {
			Topic     string `json:"topic"`
			Partition int32  `json:"partition"`
			SizeBytes int64  `json:"size_bytes"`
			OffsetLag int64  `json:"offset_lag"`
		} `json:"partitions"`
	}
	if err := json.Unmarshal([]byte(logDirs("--json")), &nodes); err != nil {
		t.Fatal(err)
	}
	wantDir, _ := filepath.Abs(filepath.Join(dataDir, "wal"))
	if len(nodes) != 1 || nodes[0].Node != 1 || nodes[0].Dir != wantDir || nodes[0].TotalBytes <= 0 ||
		nodes[0].UsableBytes <= 0 || nodes[0].UsableBytes > nodes[0].TotalBytes || len(nodes[0].Partitions) != 3 {
		t.Fatalf("log-dirs --json: %+v, want node 1 with %s, its file system and 3 partitions", nodes, wantDir)
	}
	size := map[string]int64{}
	var sum int64
	for _, p := range nodes[0].Partitions {
		size[fmt.Sprintf("%s/%d", p.Topic, p.Partition)] = p.SizeBytes
		sum += p.SizeBytes
		if p.OffsetLag != 0 {
			t.Errorf("%s/%d: offset lag %d on a standalone broker", p.Topic, p.Partition, p.OffsetLag)
		}
	}
	if size["a/0"] <= 0 || size["a/1"] != 0 || size["b/0"] <= size["a/0"] || sum != nodes[0].SizeBytes {
		t.Fatalf("sizes %v (sum %d, the node's %d): want a/0 > 0, a/1 = 0, b/0 > a/0, and the sum", size, sum, nodes[0].SizeBytes)
	}
	out := logDirs("b")
	matchLines(t, out, `NODE +DIR +PARTITIONS +FILE SYSTEM +FREE`, `1 +`+wantDir+` +\d+(\.\d)? (B|KiB) +\d+\.\d [KMGTP]iB +\d+\.\d [KMGTP]iB \(\d+%\)`,
		`TOPIC +PARTITION +NODE 1`, `b +0 +\d+(\.\d)? (B|KiB)`)
	if strings.Contains(out, "\na ") {
		t.Errorf("log-dirs b also lists topic a:\n%s", out)
	}
	if _, err := ctl(t, "log-dirs", "--bootstrap", addr, "nosuch"); err == nil || !strings.Contains(err.Error(), "nosuch") {
		t.Errorf("log-dirs of an unknown topic: %v", err)
	}
}

func TestHumanBytes(t *testing.T) {
	for n, want := range map[int64]string{-1: "?", 0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 1536: "1.5 KiB",
		5 << 20: "5.0 MiB", 3 << 30: "3.0 GiB", 2 << 40: "2.0 TiB"} {
		if got := humanBytes(n); got != want {
			t.Errorf("humanBytes(%d) = %q, want %q", n, got, want)
		}
	}
}

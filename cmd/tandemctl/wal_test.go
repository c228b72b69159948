package main

import (
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tandem-io/tandem/broker"
)

// `tandemctl wal` prints a running broker's WAL entries (the topic, each
// record batch's partition and offsets), filters them by type and LSN, and
// sums them up; on a copy with one damaged byte in the middle it names the
// segment and offset, still lists the entries after the damage, and fails,
// where the broker refuses to start on that copy.
func TestWALCommand(t *testing.T) {
	var dataDir string
	addr := startKafkaBroker(t, func(c *broker.Config) { dataDir = c.DataDir })
	cl := newKafkaClient(t, addr, kgo.DefaultProduceTopic("orders"), kgo.ManualFlushing())
	if _, err := kadm.NewClient(cl).CreateTopic(t.Context(), 1, -1, nil, "orders"); err != nil {
		t.Fatal(err)
	}
	for b := range 3 { // three batches of ten records
		for i := range 10 {
			cl.Produce(t.Context(), &kgo.Record{Value: []byte(strconv.Itoa(b*10 + i))}, func(_ *kgo.Record, err error) {
				if err != nil {
					t.Error(err)
				}
			})
		}
		if err := cl.Flush(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	walOut := func(args ...string) string {
		t.Helper()
		out, err := ctl(t, append([]string{"wal", "--data-dir", dataDir}, args...)...)
		if err != nil {
			t.Fatalf("wal %v: %v\n%s", args, err, out)
		}
		return out
	}
	entry := regexp.MustCompile(`(?m)^(\d+) +(\d+) +(\w+) +(\d+) +(\d+) +(.*)$`)
	out := walOut()
	type line struct {
		lsn, off int
		typ, det string
	}
	var batches []line
	created := false
	for _, m := range entry.FindAllStringSubmatch(out, -1) {
		lsn, _ := strconv.Atoi(m[1])
		off, _ := strconv.Atoi(m[5])
		switch m[3] {
		case "RecordBatch":
			batches = append(batches, line{lsn, off, m[3], m[6]})
		case "CreateTopic":
			created = created || strings.Contains(m[6], `"name":"orders"`)
		}
	}
	if !created || len(batches) != 3 {
		t.Fatalf("wal printed %d record batches (want 3), the topic's creation: %v\n%s", len(batches), created, out)
	}
	for i, b := range batches {
		want := "orders/0 offsets " + strconv.Itoa(i*10) + "-" + strconv.Itoa(i*10+9) + ", 10 record(s), create time "
		if !strings.HasPrefix(b.det, want) {
			t.Errorf("batch %d: %q, want %q...", i, b.det, want)
		}
	}
	for _, want := range []string{"summary of " + filepath.Join(dataDir, "wal") + ": 1 segment file(s), ", "\nRecordBatch      3 "} {
		if !strings.Contains(out, want) {
			t.Errorf("the summary lacks %q:\n%s", want, out)
		}
	}
	// Filters: by type, from an LSN; the summary alone.
	out = walOut("--type", "recordbatch", "--from", strconv.Itoa(batches[1].lsn))
	if ms := entry.FindAllStringSubmatch(out, -1); len(ms) != 2 || ms[0][1] != strconv.Itoa(batches[1].lsn) || ms[1][3] != "RecordBatch" {
		t.Errorf("--type recordbatch --from %d printed\n%s", batches[1].lsn, out)
	}
	one := strconv.Itoa(batches[1].lsn)
	if out := walOut("--from", one, "--to", one); len(entry.FindAllString(out, -1)) != 1 || !strings.Contains(out, "1 entries, LSN "+one+" to "+one) {
		t.Errorf("--from %s --to %s printed\n%s", one, one, out)
	}
	if out := walOut("--summary"); entry.MatchString(out) || !strings.Contains(out, "RecordBatch      3 ") {
		t.Errorf("--summary printed\n%s", out)
	}

	// One flipped byte in the second batch of a copy of the data directory.
	broken := t.TempDir()
	if err := os.CopyFS(broken, os.DirFS(dataDir)); err != nil {
		t.Fatal(err)
	}
	segs, _ := filepath.Glob(filepath.Join(broken, "wal", "*.wal"))
	if len(segs) != 1 {
		t.Fatalf("segments %v", segs)
	}
	data, err := os.ReadFile(segs[0])
	if err != nil {
		t.Fatal(err)
	}
	data[batches[1].off+60] ^= 0x20
	if err := os.WriteFile(segs[0], data, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err = ctl(t, "wal", "--data-dir", broken)
	if !errors.Is(err, errCorruptWAL) {
		t.Fatalf("wal of the damaged copy: %v, want errCorruptWAL\n%s", err, out)
	}
	where := filepath.Base(segs[0]) + " offset " + strconv.Itoa(batches[1].off)
	if !strings.Contains(out, "! "+where+": checksum mismatch; ") || !strings.Contains(err.Error(), where) {
		t.Errorf("the damage is not named at %s:\n%s\n%v", where, out, err)
	}
	if !regexp.MustCompile(`(?m)^` + strconv.Itoa(batches[2].lsn) + ` .* orders/0 offsets 20-29`).MatchString(out) {
		t.Errorf("the batch after the damage is not listed:\n%s", out)
	}
	cfg := broker.DefaultConfig()
	cfg.NodeID, cfg.DataDir, cfg.Listen = 1, broken, "127.0.0.1:0"
	cfg.Logger = hclog.NewNullLogger()
	if b, err := broker.Open(cfg); err == nil {
		b.Close()
		t.Fatal("the broker opened the damaged copy")
	} else if !strings.Contains(err.Error(), "offset "+strconv.Itoa(batches[1].off)) {
		t.Errorf("the broker refuses the copy with %v, not at offset %d", err, batches[1].off)
	}
}

func TestWALUsage(t *testing.T) {
	for _, args := range [][]string{
		{"wal"},
		{"wal", "--data-dir", "x", "extra"},
		{"wal", "--data-dir", "x", "--from", "9", "--to", "3"},
		{"wal", "--data-dir", "x", "--type", "Nonsense"},
		{"wal", "--data-dir", "x", "--from", "-1"},
	} {
		if _, err := ctl(t, args...); !errors.As(err, new(usageError)) {
			t.Errorf("tandemctl %v: %v, want a usage error", args, err)
		}
	}
	if _, err := ctl(t, "wal", "--data-dir", t.TempDir()); err == nil || !strings.Contains(err.Error(), "no segment files") {
		t.Errorf("wal of an empty directory: %v", err)
	}
}

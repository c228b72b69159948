package main

import (
	"context"
	"encoding/binary"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

func TestParseBytes(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		err  bool
	}{
		{"1GiB", 1 << 30, false},
		{"512MiB", 512 << 20, false},
		{"64KiB", 64 << 10, false},
		{"1GB", 1e9, false},
		{"10MB", 10e6, false},
		{"4096", 4096, false},
		{"1.5GiB", 3 << 29, false},
		{"2G", 2 << 30, false},
		{"lots", 0, true},
		{"-1MiB", 0, true},
	}
	for _, tt := range tests {
		got, err := parseBytes(tt.in)
		if (err != nil) != tt.err || got != tt.want {
			t.Errorf("parseBytes(%q) = %d, %v; want %d, error %v", tt.in, got, err, tt.want, tt.err)
		}
	}
}

func TestParseProcStatus(t *testing.T) {
	tests := []struct {
		name     string
		in       string
		rss, hwm int64
		err      error
	}{
		{"normal", "Name:\ttandem-broker\nVmPeak:\t  900000 kB\nVmHWM:\t   204800 kB\nVmRSS:\t   102400 kB\nThreads:\t9\n", 102400, 204800, nil},
		{"kernel thread has no VmRSS", "Name:\tkthreadd\nState:\tS (sleeping)\n", 0, 0, errNoRSS},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rss, hwm, err := parseProcStatus(strings.NewReader(tt.in))
			if !errors.Is(err, tt.err) || rss != tt.rss || hwm != tt.hwm {
				t.Errorf("got %d, %d, %v; want %d, %d, %v", rss, hwm, err, tt.rss, tt.hwm, tt.err)
			}
		})
	}
}

func TestRSSWatcherOwnProcess(t *testing.T) {
	w, err := StartRSSWatcher(os.Getpid(), 1e6, nil)
	if err != nil {
		t.Fatal(err)
	}
	sum, err := w.Stop()
	if err != nil {
		t.Fatal(err)
	}
	if sum.PeakKB <= 0 || sum.LastKB <= 0 || sum.HWMKB < sum.LastKB || len(sum.Samples) < 2 {
		t.Errorf("implausible summary of our own RSS: %+v", sum)
	}
	if _, err := StartRSSWatcher(1<<30, 1e6, nil); err == nil {
		t.Error("watching a process that does not exist should fail")
	}
}

func batch(first int64, n int32) []byte {
	b := kmsg.RecordBatch{FirstOffset: first, LastOffsetDelta: n - 1, Magic: 2, NumRecords: n, Records: []byte{1, 2, 3}}
	raw := b.AppendTo(nil)
	binary.BigEndian.PutUint32(raw[8:12], uint32(len(raw)-12)) // Length counts the bytes after it
	return raw
}

func TestSplitBatches(t *testing.T) {
	two := append(batch(0, 5), batch(5, 3)...)
	tests := []struct {
		name string
		raw  []byte
		want []batchSpan
	}{
		{"empty", nil, nil},
		{"one", batch(10, 1), []batchSpan{{10, 10}}},
		{"two", two, []batchSpan{{0, 4}, {5, 7}}},
		{"truncated last batch is ignored", two[:len(two)-4], []batchSpan{{0, 4}}},
		{"garbage length", []byte{0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 1}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := splitBatches(tt.raw)
			if len(got) != len(tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Errorf("span %d = %v, want %v", i, got[i], tt.want[i])
				}
			}
		})
	}
}

func TestMeasureDiskSmall(t *testing.T) {
	cfg := DefaultDiskConfig()
	cfg.Dir = t.TempDir()
	cfg.Bytes = 4 << 20
	cfg.ChunkBytes = 1 << 20
	cfg.SmallWrites = 10
	cfg.Repeat = 1
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	r, err := measureDisk(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if r.Bytes != 4<<20 || r.MBps <= 0 || r.Latency == nil || r.Latency.Count != 10 {
		t.Errorf("unexpected result: %+v", r)
	}
	left, _ := os.ReadDir(cfg.Dir)
	if len(left) != 0 {
		t.Errorf("scratch files left behind: %v", left)
	}
}

func TestConfigValidate(t *testing.T) {
	ok := DefaultProduceConfig()
	ok.Brokers, ok.Topic = []string{"127.0.0.1:9092"}, "t"
	tests := []struct {
		name string
		mod  func(*ProduceConfig)
		bad  bool
	}{
		{"defaults with brokers", func(*ProduceConfig) {}, false},
		{"no brokers", func(c *ProduceConfig) { c.Brokers = nil }, true},
		{"acks 2", func(c *ProduceConfig) { c.Acks = 2 }, true},
		{"idempotent acks=1", func(c *ProduceConfig) { c.Idempotent = true }, true},
		{"idempotent acks=-1", func(c *ProduceConfig) { c.Idempotent, c.Acks = true, -1 }, false},
		{"records instead of duration", func(c *ProduceConfig) { c.Duration, c.Records = 0, 10 }, false},
		{"neither", func(c *ProduceConfig) { c.Duration = 0 }, true},
		{"stamp needs 8 bytes", func(c *ProduceConfig) { c.Stamp, c.RecordBytes = true, 4 }, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := ok
			tt.mod(&c)
			if err := c.Validate(); (err != nil) != tt.bad {
				t.Errorf("Validate() = %v, want error %v", err, tt.bad)
			}
			if err := c.Validate(); err != nil && !errors.Is(err, errUsage) {
				t.Errorf("validation error %v is not a usage error", err)
			}
		})
	}
}

func TestParseFollowerLag(t *testing.T) {
	status := []byte(`{"nodeId":1,"role":"ROLE_LEADER","replicas":[
		{"nodeId":2,"appliedLsn":"284","lagEntries":"266","lagSeconds":1.5},
		{"nodeId":3,"lagSeconds":0}]}`)
	tests := []struct {
		name string
		in   []byte
		node int32
		want time.Duration
		err  bool
	}{
		{"node 2", status, 2, 1500 * time.Millisecond, false},
		{"caught up", status, 3, 0, false},
		{"unknown node", status, 4, 0, true},
		{"not json", []byte("connection refused"), 2, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseFollowerLag(tt.in, tt.node)
			if (err != nil) != tt.err || got != tt.want {
				t.Errorf("got %v, %v; want %v, error %v", got, err, tt.want, tt.err)
			}
		})
	}
}

func TestCaughtUp(t *testing.T) {
	tests := []struct {
		name string
		in   string
		ok   bool
		err  bool
	}{
		{"both applied", `{"lastLsn":"550","replicas":[{"nodeId":2,"connected":true,"appliedLsn":"550"},{"nodeId":3,"connected":true,"appliedLsn":"550"}]}`, true, false},
		{"one behind", `{"lastLsn":"550","replicas":[{"nodeId":2,"connected":true,"appliedLsn":"550"},{"nodeId":3,"connected":true,"appliedLsn":"320","lagEntries":"230"}]}`, false, false},
		{"disconnected", `{"lastLsn":"550","replicas":[{"nodeId":2,"appliedLsn":"550"}]}`, false, false},
		{"empty log, zero values left out", `{"replicas":[{"nodeId":2,"connected":true}]}`, true, false},
		{"no replicas", `{"lastLsn":"5"}`, false, true},
		{"garbage", `nope`, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ok, _, err := caughtUp([]byte(tt.in))
			if ok != tt.ok || (err != nil) != tt.err {
				t.Errorf("caughtUp = %v, %v; want %v, error %v", ok, err, tt.ok, tt.err)
			}
		})
	}
}

// longestGap: the longest stretch without a read of one partition,
// counting from the window's start and up to its end.
func TestLongestGap(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(ms int, p int32) read {
		return read{at: t0.Add(time.Duration(ms) * time.Millisecond), partition: p}
	}
	reads := []read{at(-500, 0), at(100, 0), at(200, 1), at(1500, 0), at(1600, 0), at(2500, 1)}
	cases := []struct {
		p    int32
		to   int
		want time.Duration
	}{
		{0, 2000, 1400 * time.Millisecond}, // 100 -> 1500
		{1, 3000, 2300 * time.Millisecond}, // 200 -> 2500
		{0, 5000, 3400 * time.Millisecond}, // 1600 -> the window's end
		{2, 1000, time.Second},             // never read
	}
	for _, c := range cases {
		if got := longestGap(reads, c.p, t0, t0.Add(time.Duration(c.to)*time.Millisecond)); got != c.want {
			t.Errorf("partition %d up to %d ms: gap %v, want %v", c.p, c.to, got, c.want)
		}
	}
}

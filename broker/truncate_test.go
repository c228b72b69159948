package broker

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tandem-io/tandem/broker/wal"
)

// openFollower opens a broker over dir in the follower role: it has a
// sidecar socket that is never attached, so the test plays the sidecar.
func openFollower(t *testing.T, dir string, change func(*Config)) *Broker {
	t.Helper()
	cfg := DefaultConfig()
	cfg.NodeID = 2
	cfg.DataDir = dir
	cfg.Listen = "127.0.0.1:0"
	cfg.SidecarSocket = filepath.Join(t.TempDir(), "none.sock")
	cfg.Logger = hclog.New(&hclog.LoggerOptions{Name: "follower", Output: testWriter{t}})
	if change != nil {
		change(&cfg)
	}
	f, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// follow applies to f the entries of leader's WAL after f's last one, as
// the sidecar streams them.
func follow(t *testing.T, f, leader *Broker) {
	t.Helper()
	r, err := leader.wal.NewReader(f.wal.LastLSN() + 1)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var ents []wal.Entry
	for {
		e, _, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		ents = append(ents, e)
	}
	if err := f.ApplyEntries(ents); err != nil {
		t.Fatal(err)
	}
}

// syncBuffer is a bytes.Buffer that a logger and the test may use at once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// divergedFollower leaves in a data directory a closed follower whose WAL
// ends with a tail that a new leader does not have: above keep (the
// commit point, where the divergence repair truncates), the tail creates a
// topic, commits a group's offset again and another group's first one,
// and grows both partitions of topic kept. The leader, the source of every
// entry, writes a state-snapshot entry below keep if snapshot is set (a
// retention pass). The follower runs retention after the tail if
// retention is set: its state-checkpoint.json then describes the tail,
// and its WAL starts after LSN 1 (at the snapshot entry's segment, or
// keep's).
func divergedFollower(t *testing.T, snapshot, retention bool) (dir string, keep uint64) {
	t.Helper()
	segBytes := func(c *Config) { c.SegmentBytes = 1 << 20 }
	leader, addr := startBrokerWith(t, t.TempDir(), segBytes)
	dir = t.TempDir()
	f := openFollower(t, dir, func(c *Config) {
		segBytes(c)
		c.RetentionMs, c.RetentionBytes = -1, -1 // retention runs only when the test says
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cl := newClient(t, addr, kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.DisableIdempotentWrite(),
		kgo.ProducerLinger(0), kgo.ProducerBatchCompression(kgo.NoCompression()))
	adm := kadm.NewClient(cl)
	value := strings.Repeat("v", 10<<10) // about 100 batches a segment
	produce := func(topic string, part int32, n int) {
		t.Helper()
		for i := 0; i < n; i++ {
			if err := cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Partition: part, Value: []byte(value)}).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
	}
	commit := func(group string, at int64) {
		t.Helper()
		offs := kadm.Offsets{}
		offs.Add(kadm.Offset{Topic: "kept", Partition: 0, At: at, LeaderEpoch: -1})
		if _, err := adm.CommitOffsets(ctx, group, offs); err != nil {
			t.Fatal(err)
		}
	}

	createTopic(t, cl, "kept", 2)
	produce("kept", 0, 150)
	commit("g1", 10)
	follow(t, f, leader)
	keepFrom := uint64(0) // the follower's retention keeps the segment holding it
	if snapshot {
		if _, err := leader.enforceRetention(time.Now().Add(30 * 24 * time.Hour)); err != nil {
			t.Fatal(err)
		}
		keepFrom = leader.wal.LastLSN() // the state-snapshot entry
	}
	produce("kept", 0, 20)
	follow(t, f, leader)
	keep = f.wal.LastLSN()
	f.SetCommitLSN(keep)
	if keepFrom == 0 {
		keepFrom = keep
	}

	// The tail that the divergence repair drops.
	createTopic(t, cl, "dropped", 1)
	commit("g1", 99)
	commit("g2", 7)
	produce("kept", 0, 100)
	produce("kept", 1, 3)
	follow(t, f, leader)

	if retention {
		segs := f.wal.Segments()
		var kept int64
		for _, s := range segs {
			if s.LastLSN >= keepFrom {
				kept += s.Bytes
			}
		}
		f.cfg.RetentionBytes = kept
		if n, err := f.enforceRetention(time.Now()); err != nil || n == 0 {
			t.Fatalf("follower retention deleted %d segments (%v) of %+v; the test needs the first one deleted", n, err, segs)
		}
		if first := f.wal.FirstLSN(); first == 1 || first > keepFrom {
			t.Fatalf("after retention the follower's WAL starts at LSN %d; want it past 1 and at most %d", first, keepFrom)
		}
		data, err := os.ReadFile(filepath.Join(dir, checkpointName))
		if err != nil {
			t.Fatal(err)
		}
		var cp stateCheckpoint
		if err := decodeJSON(wal.Entry{Payload: data}, &cp); err != nil {
			t.Fatal(err)
		}
		if cp.LSN <= keep {
			t.Fatalf("the follower's checkpoint is at LSN %d; the test needs it above the truncation point %d", cp.LSN, keep)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return dir, keep
}

// truncateOffline drops the WAL entries in dir above keep, as a
// TruncateAfter that crashed before it rebuilt the broker's state.
func truncateOffline(t *testing.T, dir string, keep uint64) {
	t.Helper()
	w, err := wal.Open(wal.Options{Dir: filepath.Join(dir, "wal"), SegmentBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Truncate(keep); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

// When the divergence repair truncates a follower's WAL, the state rebuilt
// holds nothing of the dropped entries: no topic they created, no offset
// they committed, no partition offsets they added, whether the WAL starts
// at LSN 1 or after retention. A state checkpoint written after the
// truncation point describes the dropped entries: it is not loaded, by the
// rebuild or by a restart after a crash between the truncation and the
// rebuild, when a state-snapshot entry left in the WAL can replace it.
// When none can, the checkpoint is kept (it alone holds what the deleted
// segments held) and an error says to re-clone the node.
func TestTruncationDropsTheTailsState(t *testing.T) {
	truncate := func(t *testing.T, dir string, keep uint64) *Broker {
		f := openFollower(t, dir, nil)
		if err := f.TruncateAfter(keep); err != nil {
			t.Fatal(err)
		}
		return f
	}
	restart := func(t *testing.T, dir string, keep uint64) *Broker {
		truncateOffline(t, dir, keep)
		return openFollower(t, dir, nil)
	}
	restartTwoPasses := func(t *testing.T, dir string, keep uint64) *Broker {
		truncateOffline(t, dir, keep)
		b := openWithoutRecoveryReplay(t, dir)
		t.Cleanup(func() { b.Close() })
		return b
	}
	type layout struct {
		dir  string
		keep uint64
	}
	var fromOne, trimmed layout
	fromOne.dir, fromOne.keep = divergedFollower(t, false, false)
	trimmed.dir, trimmed.keep = divergedFollower(t, true, true)
	for _, tc := range []struct {
		name   string
		layout layout
		open   func(t *testing.T, dir string, keep uint64) *Broker
	}{
		{"WAL from LSN 1", fromOne, truncate},
		{"checkpoint above the truncation point, snapshot entry below", trimmed, truncate},
		{"restart after a truncation, checkpoint above it", trimmed, restart},
		{"restart after a truncation, state rebuilt by a second pass", trimmed, restartTwoPasses},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.CopyFS(dir, os.DirFS(tc.layout.dir)); err != nil {
				t.Fatal(err)
			}
			b := tc.open(t, dir, tc.layout.keep)
			if got := strings.Join(b.topicNames(), ","); got != "kept" {
				t.Errorf("topics after the truncation: %s; want kept only", got)
			}
			if got := b.groups.Offsets("g1"); len(got) != 1 || got[0].Offset != 10 {
				t.Errorf("group g1 offsets after the truncation: %+v; want kept/0 at 10", got)
			}
			if got := b.groups.Offsets("g2"); got != nil {
				t.Errorf("group g2 offsets after the truncation: %+v; want none (committed in the dropped tail)", got)
			}
			for part, want := range []int64{170, 0} {
				p := b.partition("kept", int32(part))
				if p == nil {
					t.Fatalf("partition kept/%d is gone", part)
				}
				if _, hw, next := p.watermarks(); hw != want || next != want {
					t.Errorf("kept/%d after the truncation: high watermark %d, log end %d; want %d, %d", part, hw, next, want, want)
				}
			}
			if tc.layout == trimmed {
				if _, err := os.Stat(filepath.Join(dir, checkpointName)); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("the checkpoint above the truncation point is still there (%v)", err)
				}
			}
		})
	}
}

// Without a state-snapshot entry in the WAL, a state checkpoint above the
// truncation point is all that says what the deleted segments held (here,
// topic kept): it is kept and loaded, and an error tells the operator to
// re-clone the node.
func TestTruncationKeepsCheckpointWithoutSnapshot(t *testing.T) {
	dir, keep := divergedFollower(t, false, true)
	var logs syncBuffer
	f := openFollower(t, dir, func(c *Config) {
		c.Logger = hclog.New(&hclog.LoggerOptions{Name: "follower", Output: io.MultiWriter(testWriter{t}, &logs)})
	})
	if err := f.TruncateAfter(keep); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, checkpointName)); err != nil {
		t.Errorf("the checkpoint, the only state for the deleted segments, was not kept: %v", err)
	}
	if f.partition("kept", 0) == nil {
		t.Error("topic kept, created in a deleted segment, is unknown after the truncation")
	}
	if l := logs.String(); !strings.Contains(l, "[ERROR]") || !strings.Contains(l, "Re-clone this node") {
		t.Errorf("no error asks to re-clone the node; logs:\n%s", l)
	}
}

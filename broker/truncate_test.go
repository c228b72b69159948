package broker

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
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

// divergedFollower leaves in a data directory a closed follower whose WAL
// ends with a tail that a new leader does not have: above keep (the
// commit point, where the divergence repair truncates), the tail creates a
// topic, commits a group's offset again and another group's first one,
// and grows both partitions of topic kept.
func divergedFollower(t *testing.T) (dir string, keep uint64) {
	t.Helper()
	segBytes := func(c *Config) { c.SegmentBytes = 1 << 20 }
	leader, addr := startBrokerWith(t, t.TempDir(), segBytes)
	dir = t.TempDir()
	f := openFollower(t, dir, segBytes)
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
	produce("kept", 0, 20)
	follow(t, f, leader)
	keep = f.wal.LastLSN()
	f.SetCommitLSN(keep)

	// The tail that the divergence repair drops.
	createTopic(t, cl, "dropped", 1)
	commit("g1", 99)
	commit("g2", 7)
	produce("kept", 0, 100)
	produce("kept", 1, 3)
	follow(t, f, leader)

	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return dir, keep
}

// When the divergence repair truncates a follower's WAL, the state rebuilt
// holds nothing of the dropped entries: no topic they created, no offset
// they committed, no partition offsets they added.
func TestTruncationDropsTheTailsState(t *testing.T) {
	truncate := func(t *testing.T, dir string, keep uint64) *Broker {
		f := openFollower(t, dir, nil)
		if err := f.TruncateAfter(keep); err != nil {
			t.Fatal(err)
		}
		return f
	}
	type layout struct {
		dir  string
		keep uint64
	}
	var fromOne layout
	fromOne.dir, fromOne.keep = divergedFollower(t)
	for _, tc := range []struct {
		name   string
		layout layout
		open   func(t *testing.T, dir string, keep uint64) *Broker
	}{
		{"WAL from LSN 1", fromOne, truncate},
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
		})
	}
}

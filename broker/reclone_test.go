package broker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tandem-io/tandem/broker/wal"
)

// After retention deleted the segments that held a topic's creation, a
// follower re-cloned from the leader's first LSN still learns the topic (from
// the state-snapshot entry the leader wrote before deleting) and serves the
// records that are left; the leader itself still knows the topic after a
// restart.
func TestRecloneAfterRetentionKeepsTopics(t *testing.T) {
	dir := t.TempDir()
	leader, addr := startBrokerWith(t, dir, func(c *Config) { c.SegmentBytes = 1 << 20 })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl := newClient(t, addr, kgo.DefaultProduceTopic("kept"), kgo.AllowAutoTopicCreation(), kgo.ProducerLinger(0), kgo.ProducerBatchCompression(kgo.NoCompression()))
	value := strings.Repeat("x", 10<<10)
	for i := 0; i < 400; i++ {
		if err := cl.ProduceSync(ctx, kgo.StringRecord(fmt.Sprintf("%04d%s", i, value))).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("segments before retention: %+v", leader.wal.Segments())
	n, err := leader.enforceRetention(time.Now().Add(30 * 24 * time.Hour))
	if err != nil || n == 0 {
		t.Fatalf("retention deleted %d segments (%v); the test needs at least one", n, err)
	}
	first := leader.wal.FirstLSN()
	if first <= 2 {
		t.Fatalf("first LSN %d after retention: the topic's creation entry is still on disk", first)
	}
	logStart, hw, _ := leader.partition("kept", 0).watermarks()

	// A follower re-cloned from the leader's first LSN.
	fcfg := DefaultConfig()
	fcfg.NodeID = 2
	fcfg.DataDir = t.TempDir()
	fcfg.Listen = "127.0.0.1:0"
	fcfg.SidecarSocket = filepath.Join(t.TempDir(), "none.sock") // follower role, never attached
	fcfg.Logger = hclog.New(&hclog.LoggerOptions{Name: "follower", Output: testWriter{t}})
	f, err := Open(fcfg)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.ResetTo(first); err != nil {
		t.Fatal(err)
	}
	r, err := leader.wal.NewReader(first)
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
	f.SetCommitLSN(f.wal.LastLSN())
	p := f.partition("kept", 0)
	if p == nil {
		t.Fatal("the re-cloned follower does not know the topic created before its first LSN")
	}
	fs, fhw, _ := p.watermarks()
	if fs != logStart || fhw != hw {
		t.Fatalf("follower log start %d, high watermark %d; leader %d, %d", fs, fhw, logStart, hw)
	}

	// The leader restarts on its trimmed WAL and still knows the topic.
	leader.Close()
	again, _ := startBrokerWith(t, dir, func(c *Config) { c.SegmentBytes = 1 << 20 })
	if again.partition("kept", 0) == nil {
		t.Fatal("after a restart the leader lost the topic whose creation retention deleted")
	}
	if s, h, _ := again.partition("kept", 0).watermarks(); s != logStart || h != hw {
		t.Fatalf("after restart: log start %d, high watermark %d; before %d, %d", s, h, logStart, hw)
	}
}

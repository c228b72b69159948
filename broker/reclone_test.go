package broker

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
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
	f := recloneFollower(t, leader)
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

package broker

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tandem-io/tandem/broker/link"
)

// On a replicated leader, retention keeps the WAL above the commit point
// (in-sync followers may still need it), up to --replica-keep-bytes.
func TestRetentionKeepsWALForInSyncFollowers(t *testing.T) {
	b, addr := unlinkedBroker(t, func(c *Config) { c.SegmentBytes = 1 << 20 })
	host, port := b.Advertised()
	b.SetClusterView(link.ClusterView{Role: link.RoleLeader, LeaderID: 1, Epoch: 1,
		Brokers: []link.BrokerInfo{{NodeID: 1, Host: host, Port: port}}, ISR: []int32{1, 2}})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl := newClient(t, addr, kgo.DefaultProduceTopic("kept"), kgo.AllowAutoTopicCreation(),
		kgo.RequiredAcks(kgo.LeaderAck()), kgo.DisableIdempotentWrite(), kgo.ProducerLinger(0),
		kgo.ProducerBatchCompression(kgo.NoCompression()))
	value := strings.Repeat("y", 10<<10)
	produce := func(from, to int) {
		for i := from; i < to; i++ {
			if err := cl.ProduceSync(ctx, kgo.StringRecord(fmt.Sprintf("%04d%s", i, value))).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Phase 1: the followers keep up (the commit point follows the WAL).
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			b.SetCommitLSN(b.wal.DurableLSN())
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()
	produce(0, 200)
	close(stop)
	<-done
	commit := b.wal.DurableLSN()
	b.SetCommitLSN(commit)
	// Phase 2: the followers stop acknowledging; acks=1 writes go on.
	produce(200, 450)
	if segs := b.wal.Segments(); len(segs) < 4 || segs[len(segs)-2].LastLSN <= commit {
		t.Fatalf("segments %+v: the test needs sealed segments above the commit point %d", segs, commit)
	}
	if _, err := b.enforceRetention(time.Now().Add(30 * 24 * time.Hour)); err != nil {
		t.Fatal(err)
	}
	if first := b.wal.FirstLSN(); first > commit+1 || first == 1 {
		t.Fatalf("after retention the WAL starts at LSN %d; want it past LSN 1 and at most %d (just above the commit point)", first, commit+1)
	}
	// Past the bound, retention deletes what a follower still needs.
	b.cfg.ReplicaKeepBytes = 1
	if _, err := b.enforceRetention(time.Now().Add(30 * 24 * time.Hour)); err != nil {
		t.Fatal(err)
	}
	if first := b.wal.FirstLSN(); first <= commit+1 {
		t.Fatalf("with --replica-keep-bytes 1 the WAL still starts at LSN %d", first)
	}
}

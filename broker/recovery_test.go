package broker

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/tandem-io/tandem/broker/group"
	"github.com/twmb/franz-go/pkg/kgo"
)

// stateDump renders everything a restart rebuilds from the WAL: topics and
// their configs, every partition's batch index and watermarks, committed
// offsets, producer ids and the idempotence windows.
func stateDump(t *testing.T, b *Broker) string {
	t.Helper()
	b.appendMu.Lock()
	defer b.appendMu.Unlock()
	var sb strings.Builder
	cp := b.snapshotLocked()
	cp.LSN = 0
	// The snapshot lists topics and offsets in map order.
	slices.SortFunc(cp.Topics, func(x, y checkpointTopic) int { return strings.Compare(x.Name, y.Name) })
	for _, offs := range cp.Offsets {
		slices.SortFunc(offs, func(x, y group.Offset) int {
			if c := strings.Compare(x.Topic, y.Topic); c != 0 {
				return c
			}
			return int(x.Partition - y.Partition)
		})
	}
	js, err := json.Marshal(cp)
	if err != nil {
		t.Fatal(err)
	}
	sb.Write(js)
	sb.WriteByte('\n')
	b.mu.RLock()
	names := make([]string, 0, len(b.topics))
	for n := range b.topics {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		for _, p := range b.topics[n].partitions {
			p.mu.RLock()
			fmt.Fprintf(&sb, "%s/%d start %d next %d hw %d batches %+v\n", n, p.id, p.logStart, p.next, p.hw, p.batches)
			p.mu.RUnlock()
		}
	}
	b.mu.RUnlock()
	if err := windowBookkeepingErr(b); err != nil {
		t.Error(err)
	}
	keys := make([]string, 0, len(b.producers))
	for k, w := range b.producers {
		keys = append(keys, fmt.Sprintf("%d %s/%d: epoch %d %+v", k.pid, k.tp.topic, k.tp.partition, w.epoch, w.entries[:w.n]))
	}
	slices.Sort(keys)
	sb.WriteString(strings.Join(keys, "\n"))
	return sb.String()
}

// A restart rebuilds the broker's state while the WAL is verified
// (recoveryReplay), reading the log once. The state must be exactly what a
// second pass through a WAL reader builds: every batch indexed at the same
// place, deleted topics gone, offsets, configs and producer windows intact.
func TestRecoveryBuildsSameStateAsReplay(t *testing.T) {
	dir := t.TempDir()
	b, addr := startBroker(t, dir)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl := newClient(t, addr, kgo.AllowAutoTopicCreation(), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	adm := kadm.NewClient(cl)
	if _, err := adm.CreateTopic(ctx, 2, 1, map[string]*string{"retention.ms": kadm.StringPtr("86400000")}, "orders"); err != nil {
		t.Fatal(err)
	}
	produceWith := func(cl *kgo.Client, topic string, n, parts int) {
		for i := 0; i < n; i++ {
			r := &kgo.Record{Topic: topic, Value: []byte(fmt.Sprintf("%s-%d", topic, i)), Partition: int32(i % parts)}
			if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
				t.Fatalf("produce to %s: %v", topic, err)
			}
		}
	}
	produce := func(topic string, n, parts int) { produceWith(cl, topic, n, parts) }
	produce("orders", 50, 2)
	// A client of its own, closed before the delete, so that no metadata
	// refresh auto-creates the topic again.
	other := newClient(t, addr, kgo.AllowAutoTopicCreation(), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	produceWith(other, "gone", 10, 1)
	other.Close()
	if _, err := adm.DeleteTopics(ctx, "gone"); err != nil {
		t.Fatal(err)
	}
	if _, err := adm.CreatePartitions(ctx, 1, "orders"); err != nil {
		t.Fatal(err)
	}
	// A new client sees the third partition at once.
	produceWith(newClient(t, addr, kgo.RecordPartitioner(kgo.ManualPartitioner())), "orders", 30, 3)
	produce("clicks", 20, 1) // auto-created
	offs := kadm.Offsets{}
	offs.Add(kadm.Offset{Topic: "orders", Partition: 0, At: 17, LeaderEpoch: -1, Metadata: "m"})
	offs.Add(kadm.Offset{Topic: "clicks", Partition: 0, At: 3, LeaderEpoch: -1})
	if _, err := adm.CommitOffsets(ctx, "billing", offs); err != nil {
		t.Fatal(err)
	}
	cl.Close()
	before := stateDump(t, b)
	b.Close()

	b2, _ := startBroker(t, dir)
	if !b2.recoveredWhileScanning {
		t.Fatal("restart did not rebuild the state during WAL recovery")
	}
	scanned := stateDump(t, b2)
	b2.Close()

	b3 := openWithoutRecoveryReplay(t, dir)
	replayed := stateDump(t, b3)
	b3.Close()

	if d := lineDiff(scanned, replayed); d != "" {
		t.Fatalf("state rebuilt during recovery differs from a reader replay (- recovery, + replay):\n%s", d)
	}
	if !strings.Contains(scanned, "orders/2 ") || strings.Contains(scanned, "gone/") || !strings.Contains(scanned, `"billing"`) {
		t.Fatalf("unexpected state after restart:\n%s", scanned)
	}
	// The high watermark on a standalone broker follows durability: before
	// the restart every batch was committed, and after it too.
	if d := lineDiff(before, scanned); d != "" {
		t.Fatalf("state after restart differs from before (- before, + after):\n%s", d)
	}
}

// openWithoutRecoveryReplay opens a broker over dir that rebuilds its state
// with a second pass through a WAL reader, as before recoveryReplay.
func openWithoutRecoveryReplay(t *testing.T, dir string) *Broker {
	t.Helper()
	testNoRecoveryReplay = true
	defer func() { testNoRecoveryReplay = false }()
	cfg := DefaultConfig()
	cfg.NodeID = 1
	cfg.DataDir = dir
	cfg.Listen = "127.0.0.1:0"
	b, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if b.recoveredWhileScanning {
		t.Fatal("testNoRecoveryReplay was ignored")
	}
	return b
}

// lineDiff lists the lines of a and b that differ, position by position.
func lineDiff(a, b string) string {
	la, lb := strings.Split(a, "\n"), strings.Split(b, "\n")
	var sb strings.Builder
	for i := 0; i < max(len(la), len(lb)); i++ {
		var x, y string
		if i < len(la) {
			x = la[i]
		}
		if i < len(lb) {
			y = lb[i]
		}
		if x != y {
			fmt.Fprintf(&sb, "- %s\n+ %s\n", x, y)
		}
	}
	return sb.String()
}

package e2e

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tandem-io/tandem/internal/testutil"
)

// Tests that change state while clients are busy with it.

// TestDeleteTopicUnderLoad deletes a topic while a producer writes to it and
// a consumer reads it. The broker keeps running, the topic stays deleted
// (also after a restart, when the WAL is replayed), and a topic created
// again under the same name starts empty.
func TestDeleteTopicUnderLoad(t *testing.T) {
	b := startBroker(t)
	const topic = "hot"
	b.createTopic(topic, 3)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var acked atomic.Int64
	prod := b.client(kgo.RecordDeliveryTimeout(5*time.Second), kgo.UnknownTopicRetries(1))
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ctx.Err() == nil; i++ {
			prod.Produce(ctx, &kgo.Record{Topic: topic, Value: fmt.Appendf(nil, "%d", i)}, func(_ *kgo.Record, err error) {
				if err == nil {
					acked.Add(1)
				}
			})
		}
	}()
	cons := b.client(kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	pollLoop(t, cons)

	testutil.Eventually(t, 30*time.Second, func() bool { return acked.Load() >= 3000 })
	adm := b.admin()
	resp, err := adm.DeleteTopics(ctxTimeout(t, 10*time.Second), topic)
	if err != nil || resp[topic].Err != nil {
		t.Fatalf("DeleteTopics under load: %v %v", err, resp[topic].Err)
	}
	// The producer now fails; let it run into the deleted topic for a while.
	at := acked.Load()
	testutil.Eventually(t, 10*time.Second, func() error {
		if n := partitionCount(t, b.client(), topic); n != -1 {
			return fmt.Errorf("deleted topic is listed with %d partitions", n)
		}
		return nil
	})
	b.requireAlive()
	cancel()
	wg.Wait()
	prod.Close()
	t.Logf("%d records acknowledged before the delete, %d in all", at, acked.Load())

	b.kill()
	b.restart()
	if n := partitionCount(t, b.client(), topic); n != -1 {
		t.Fatalf("after a restart the deleted topic is back with %d partitions", n)
	}
	b.createTopic(topic, 1)
	if ends := b.endOffsets(topic); ends[0] != 0 {
		t.Errorf("re-created topic has end offset %d, want 0", ends[0])
	}
	produceSync(t, b.client(), topic, []string{"fresh"})
	requireSameValues(t, "re-created topic", b.readAll(topic)[0], []string{"fresh"})
	b.requireNoPanic()
}

// TestRetentionWhileReading: retention removes segments while a consumer
// reads from the start. The broker does not fail; the consumer either gets
// the records (each value matching its offset) or is told the offset is out
// of range and resets to the new start.
func TestRetentionWhileReading(t *testing.T) {
	const segment, retention = 1 << 20, 2 << 20
	b := startBroker(t, "--segment-bytes", fmt.Sprint(segment), "--log-retention-bytes", fmt.Sprint(retention),
		"--log-retention-check-interval", "50ms")
	const topic = "churn"
	b.createTopic(topic, 1)
	prod := b.client(kgo.ProducerBatchCompression(kgo.NoCompression()))
	pad := strings.Repeat("p", 2000)

	// A slow reader: small fetches, always from wherever it is.
	reader := b.client(kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxBytes(16<<10), kgo.FetchMaxPartitionBytes(16<<10))
	var bad atomic.Value
	var read atomic.Int64
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			fs := reader.PollFetches(ctx)
			fs.EachError(func(_ string, _ int32, err error) {
				if !errors.Is(err, context.Canceled) && !errors.Is(err, kerr.OffsetOutOfRange) {
					bad.Store(fmt.Sprintf("fetch error: %v", err))
				}
			})
			for _, r := range fs.Records() {
				if want := fmt.Sprintf("%07d-", r.Offset); !strings.HasPrefix(string(r.Value), want) {
					bad.Store(fmt.Sprintf("offset %d holds %.8q", r.Offset, r.Value))
				}
				read.Add(1)
			}
		}
	}()
	t.Cleanup(func() { cancel(); <-done })

	const n = 4000 // ~8 MB, four times the retention size
	for i := 0; i < n; i += 200 {
		vals := make([]string, 200)
		for j := range vals {
			vals[j] = fmt.Sprintf("%07d-%s", i+j, pad)
		}
		produceSync(t, prod, topic, vals)
	}
	testutil.Eventually(t, 30*time.Second, func() error {
		lo, err := b.admin().ListStartOffsets(ctxTimeout(t, 5*time.Second), topic)
		if err != nil {
			return err
		}
		if o, _ := lo.Lookup(topic, 0); o.Offset == 0 {
			return errors.New("retention has not moved the start offset yet")
		}
		return nil
	})
	if msg := bad.Load(); msg != nil {
		t.Fatalf("reader during retention: %v", msg)
	}
	t.Logf("reader got %d records while retention ran", read.Load())
	b.requireAlive()
}

// TestGroupChurn: members join and leave a group in quick succession. When
// it settles, the remaining members hold every partition exactly once and
// the broker's description agrees.
func TestGroupChurn(t *testing.T) {
	b := startBroker(t, "--group-initial-rebalance-delay", "100ms")
	const topic, group, partitions = "churn-group", "churn-group-1", 12
	b.createTopic(topic, partitions)

	type member struct {
		cl *kgo.Client
		as *memberAssignment
	}
	start := func(i int) member {
		as := &memberAssignment{}
		cl := b.client(append(as.opts(topic), kgo.ConsumerGroup(group), kgo.ConsumeTopics(topic),
			kgo.ClientID(fmt.Sprintf("churn-%d", i)), kgo.HeartbeatInterval(200*time.Millisecond))...)
		pollLoop(t, cl)
		return member{cl, as}
	}
	members := map[int]member{}
	for i := range 5 {
		members[i] = start(i)
	}
	testutil.Eventually(t, 30*time.Second, func() error {
		g, err := describeGroup(t, b.admin(), group)
		if err != nil {
			return err
		}
		if g.State != "Stable" || len(g.Members) != 5 {
			return fmt.Errorf("state %q with %d members, waiting for Stable with 5", g.State, len(g.Members))
		}
		return nil
	})
	// Leave and join without waiting for the group to settle in between.
	for _, i := range []int{1, 3} {
		members[i].cl.Close()
		delete(members, i)
	}
	for i := 5; i < 7; i++ {
		members[i] = start(i)
	}
	members[0].cl.Close()
	delete(members, 0)

	ids := slices.Sorted(maps.Keys(members))
	testutil.Eventually(t, 60*time.Second, func() error {
		owner := map[int32]int{}
		for _, i := range ids {
			parts := members[i].as.get()
			if len(parts) == 0 {
				return fmt.Errorf("member %d has no partitions", i)
			}
			for _, p := range parts {
				if o, dup := owner[p]; dup {
					return fmt.Errorf("partition %d is held by members %d and %d", p, o, i)
				}
				owner[p] = i
			}
		}
		if len(owner) != partitions {
			return fmt.Errorf("members %v hold %d of %d partitions", ids, len(owner), partitions)
		}
		g, err := describeGroup(t, b.admin(), group)
		if err != nil {
			return err
		}
		if g.State != "Stable" || len(g.Members) != len(ids) {
			return fmt.Errorf("DescribeGroups: state %q with %d members, want Stable with %d", g.State, len(g.Members), len(ids))
		}
		return nil
	})
	b.requireAlive()
}

package e2e

import (
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tandem-io/tandem/internal/testutil"
)

// TestInitProducerIDOnFollower: Kafka clients ask any broker for an
// idempotent producer's id (franz-go takes the next broker in turn, and a
// new client starts with its seeds). A follower hands the request to the
// leader, which allocates every id, and answers with the leader's answer:
// every node hands out ids, never one twice, and a producer that knows
// only a follower writes through the leader. With no leader reachable, a
// follower answers NOT_COORDINATOR at once, which clients retry.
//
// Before, a follower answered NOT_COORDINATOR whenever it was asked: a new
// producer retried until it happened to ask the leader, and in Jepsen runs
// a few gave up within their delivery timeout ("unable to initialize a
// producer ID due to request failures: NOT_COORDINATOR").
func TestInitProducerIDOnFollower(t *testing.T) {
	c := startCluster(t, clusterOpts{}) // node 1 leads, statically
	ask := func(id int, pid int64, epoch int16) *kmsg.InitProducerIDResponse {
		t.Helper()
		cl, err := kgo.NewClient(kgo.SeedBrokers(c.node(id).kafka))
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		req := kmsg.NewPtrInitProducerIDRequest()
		req.ProducerID, req.ProducerEpoch = pid, epoch
		resp, err := req.RequestWith(ctxTimeout(t, 15*time.Second), cl.SeedBrokers()[0])
		if err != nil {
			t.Fatalf("InitProducerId to node %d: %v", id, err)
		}
		return resp
	}

	byID := map[int64]int{} // producer id -> the node that handed it out
	var fromFollower *kmsg.InitProducerIDResponse
	for round := 0; round < 2; round++ {
		for _, n := range c.nodes {
			r := ask(n.id, -1, -1)
			if err := kerr.ErrorForCode(r.ErrorCode); err != nil || r.ProducerID < 0 || r.ProducerEpoch != 0 {
				t.Fatalf("InitProducerId to node %d: id %d epoch %d, error %v; want a new id at epoch 0", n.id, r.ProducerID, r.ProducerEpoch, err)
			}
			if other, dup := byID[r.ProducerID]; dup {
				t.Fatalf("producer id %d handed out twice, by node %d and by node %d", r.ProducerID, other, n.id)
			}
			byID[r.ProducerID] = n.id
			if n.id == 2 {
				fromFollower = r
			}
		}
	}
	// A producer bumping its epoch (KIP-360) through a follower.
	r := ask(3, fromFollower.ProducerID, fromFollower.ProducerEpoch)
	if err := kerr.ErrorForCode(r.ErrorCode); err != nil || r.ProducerID != fromFollower.ProducerID || r.ProducerEpoch != 1 {
		t.Fatalf("bumping producer %d epoch 0 through node 3: id %d epoch %d, error %v; want the same id at epoch 1",
			fromFollower.ProducerID, r.ProducerID, r.ProducerEpoch, err)
	}

	// An idempotent producer seeded with a follower alone.
	const topic = "pid-through-follower"
	c.createTopicRetry(topic)
	cl := kclient(t, []string{c.node(2).kafka}, plain)
	var recs []*kgo.Record
	for i := range 100 {
		recs = append(recs, &kgo.Record{Topic: topic, Value: fmt.Appendf(nil, "v-%03d", i)})
	}
	if err := cl.ProduceSync(ctxTimeout(t, 30*time.Second), recs...).FirstErr(); err != nil {
		t.Fatalf("an idempotent producer that knows only node 2: %v", err)
	}
	c.caughtUp(30*time.Second, 1, 1, 2, 3)
	if got := readValues(t, c, 3, topic); len(got) != 100 || got[0] != "v-000" || got[99] != "v-099" {
		t.Fatalf("node 3 holds %d values of %s, want v-000..v-099", len(got), topic)
	}

	// The leader gone (a static leader: nothing takes over).
	c.node(1).killPair()
	start := time.Now()
	r = ask(2, -1, -1) // within ask's 15 s
	if r.ErrorCode != kerr.NotCoordinator.Code {
		t.Fatalf("InitProducerId to node 2 with the leader down: error %v; want NOT_COORDINATOR", kerr.ErrorForCode(r.ErrorCode))
	}
	t.Logf("%d producer ids from three nodes, none twice; with the leader down a follower answered NOT_COORDINATOR in %v",
		len(byID), time.Since(start).Round(time.Millisecond))
}

// TestIdleProducerStateExpiresOnEveryNode: with --producer-id-expiration on
// every broker, each node forgets the state of an idempotent producer that
// stopped writing (its own sweep, counted in its metrics) and keeps that of
// one that goes on; the leader no longer lists the idle one in
// DescribeProducers, and the replicas stay identical (forgetting writes
// nothing to the WAL).
func TestIdleProducerStateExpiresOnEveryNode(t *testing.T) {
	metrics := map[int]string{1: testutil.FreeAddr(t), 2: testutil.FreeAddr(t), 3: testutil.FreeAddr(t)}
	c := startCluster(t, clusterOpts{
		brokerFlags:    []string{"--producer-id-expiration", "1s", "--producer-id-expiration-check-interval", "100ms"},
		brokerFlagsFor: func(id int) []string { return []string{"--metrics-listen", metrics[id]} },
	})
	const topic = "idle-producers"
	adm := kadm.NewClient(kclient(t, []string{c.leader().kafka}))
	if _, err := adm.CreateTopic(ctxTimeout(t, 15*time.Second), 3, -1, nil, topic); err != nil {
		t.Fatal(err)
	}
	// The idle producer writes to all three partitions once, then stops.
	idle := kclient(t, c.kafkaAddrs(), kgo.RecordPartitioner(kgo.RoundRobinPartitioner()))
	produceSync(t, idle, topic, seqValues("idle-", 30))
	idlePID, _, err := idle.ProducerID(ctxTimeout(t, 10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	idle.Close()
	// The busy one writes to partition 0 throughout.
	busy := kclient(t, c.kafkaAddrs(), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	stop := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		for i := 0; ; i++ {
			r := &kgo.Record{Topic: topic, Partition: 0, Value: fmt.Appendf(nil, "busy-%d", i)}
			if err := busy.ProduceSync(ctxTimeout(t, 30*time.Second), r).FirstErr(); err != nil {
				done <- err
				return
			}
			select {
			case <-stop:
				done <- nil
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	busyPID, _, err := busy.ProducerID(ctxTimeout(t, 10*time.Second))
	if err != nil {
		t.Fatal(err)
	}

	testutil.Eventually(t, 30*time.Second, func() error {
		for id, addr := range metrics {
			m, err := scrape(addr)
			if err != nil {
				return err
			}
			windows := m[`tandem_broker_producer_state_expired_total{kind="sequence_window"}`]
			ids := m[`tandem_broker_producer_state_expired_total{kind="producer_id"}`]
			if windows < 3 || ids < 1 {
				return fmt.Errorf("node %d forgot %v sequence windows and %v producer ids, want at least 3 and 1", id, windows, ids)
			}
		}
		return nil
	})
	d, err := adm.DescribeProducers(ctxTimeout(t, 10*time.Second), kadm.TopicsSet{topic: {0: {}, 1: {}, 2: {}}})
	if err != nil {
		t.Fatal(err)
	}
	d.EachPartition(func(p kadm.DescribedProducersPartition) {
		if p.Err != nil {
			t.Fatalf("DescribeProducers %s/%d: %v", p.Topic, p.Partition, p.Err)
		}
		if _, ok := p.ActiveProducers[idlePID]; ok {
			t.Errorf("partition %d still lists the idle producer %d", p.Partition, idlePID)
		}
		if _, ok := p.ActiveProducers[busyPID]; p.Partition == 0 && !ok {
			t.Errorf("partition 0 no longer lists the busy producer %d: %v", busyPID, p.ActiveProducers)
		}
	})
	close(stop)
	if err := <-done; err != nil {
		t.Fatalf("the busy producer: %v", err)
	}
	c.caughtUp(30*time.Second, 1, 2, 3)
	c.mustVerify(1)
}

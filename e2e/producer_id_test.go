package e2e

import (
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
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

package broker

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tandem-io/tandem/broker/link"
)

// TestWritesBound: a leading broker refuses writes of its own once the
// bound its link set (the moment the sidecar's fence is due) has passed,
// even before the fence makes it a follower, as after a freeze of the
// whole pair, when the requests that waited in its sockets run before the
// overdue fence does. A bound moved on by a heartbeat gives the writes
// back; the zero bound (a sidecar that sends no heartbeats) never refuses.
func TestWritesBound(t *testing.T) {
	b, ln, _ := leaderWithoutFollowers(t)
	// kgo sends every Produce with its client's acks.
	cl := newClient(t, ln.Addr().String(), kgo.RequiredAcks(kgo.LeaderAck()), kgo.DisableIdempotentWrite())
	createTopic(t, cl, "bound", 1)
	pinned := cl.SeedBrokers()[0]

	produce := func() error {
		t.Helper()
		req := kmsg.NewPtrProduceRequest()
		req.Acks, req.TimeoutMillis = 1, 5000
		rt := kmsg.NewProduceRequestTopic()
		rt.Topic = "bound"
		rp := kmsg.NewProduceRequestTopicPartition()
		rp.Records = rawBatch(-1, -1, 0, 1)
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		resp, err := pinned.RetriableRequest(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		return kerr.ErrorForCode(resp.(*kmsg.ProduceResponse).Topics[0].Partitions[0].ErrorCode)
	}

	if err := produce(); err != nil {
		t.Fatalf("a leader with no bound refused a write: %v", err)
	}
	b.SetWritesUntil(time.Now().Add(time.Minute))
	if err := produce(); err != nil {
		t.Fatalf("a leader within its bound refused a write: %v", err)
	}
	b.SetWritesUntil(time.Now().Add(-time.Millisecond))
	if err := produce(); err != kerr.NotLeaderForPartition {
		t.Fatalf("a leader past its bound answered a write with %v, want NOT_LEADER_OR_FOLLOWER", err)
	}
	if b.appendsAllowed(b.clusterView()) {
		t.Fatal("a leader past its bound says it takes writes (tandem_broker_takes_writes)")
	}
	if v := b.clusterView(); v.Role != link.RoleLeader {
		t.Fatalf("the bound changed the view: %+v", v)
	}
	b.SetWritesUntil(time.Now().Add(time.Minute)) // a heartbeat
	if err := produce(); err != nil {
		t.Fatalf("a leader whose bound a heartbeat moved on refused a write: %v", err)
	}
	b.SetWritesUntil(time.Time{})
	if err := produce(); err != nil {
		t.Fatalf("a leader with its bound lifted refused a write: %v", err)
	}
}

var _ link.WritesBounder = (*Broker)(nil)

// leaderWithoutFollowers opens a broker that a test drives as its sidecar
// would: it serves Kafka on the returned listener and leads epoch 1 with
// no followers, so the commit point follows what is durable (every 5 ms)
// while committing is on (it starts on).
func leaderWithoutFollowers(t *testing.T) (b *Broker, ln net.Listener, committing *commitSwitch) {
	t.Helper()
	b = openFollower(t, t.TempDir(), nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go b.ServeListener(ln)
	b.SetClusterView(link.ClusterView{Role: link.RoleLeader, LeaderID: b.cfg.NodeID, Epoch: 1, Brokers: selfOnly(b, ln)})
	committing = &commitSwitch{on: true}
	stop := make(chan struct{})
	t.Cleanup(func() { close(stop) })
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
				committing.mu.Lock()
				if committing.on {
					b.SetCommitLSN(b.wal.DurableLSN())
				}
				committing.mu.Unlock()
			}
		}
	}()
	return b, ln, committing
}

// commitSwitch turns leaderWithoutFollowers' commits on and off; once
// set(false) returns, nothing more is committed.
type commitSwitch struct {
	mu sync.Mutex
	on bool
}

func (c *commitSwitch) set(on bool) {
	c.mu.Lock()
	c.on = on
	c.mu.Unlock()
}

// selfOnly is a cluster view's broker list naming only b, at ln.
func selfOnly(b *Broker, ln net.Listener) []link.BrokerInfo {
	return []link.BrokerInfo{{NodeID: b.cfg.NodeID, Host: "127.0.0.1", Port: int32(ln.Addr().(*net.TCPAddr).Port)}}
}

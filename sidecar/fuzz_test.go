package sidecar

import (
	"context"
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	linkv1 "github.com/tandem-io/tandem/gen/tandem/link/v1"
	replicationv1 "github.com/tandem-io/tandem/gen/tandem/replication/v1"
)

// The fuzz targets feed arbitrary bytes to what a sidecar does with a
// message it receives: parse it, validate it, and run it through the
// leader's or the broker link's handling. None may panic or hang; bad input
// must come out as an error. Seeds: testdata/fuzz/<target>/.

// FuzzStreamRequest: what the leader receives from a follower.
func FuzzStreamRequest(f *testing.F) {
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		var m replicationv1.StreamRequest
		if err := proto.Unmarshal(data, &m); err != nil {
			return
		}
		l := testLeader(t, time.Second)
		l.bc = &brokerConn{ctx: context.Background(), viewSig: make(chan struct{}, 1), commitSig: make(chan struct{}, 1)}
		l.history, l.durable, l.first = hist(1, 1, 2, 20, 4, 60), 100, 1
		switch p := m.GetPayload().(type) {
		case *replicationv1.StreamRequest_Hello:
			if err := validateFollowerHello(p.Hello, "c1", 1); err != nil {
				return
			}
			r, reply, err := l.handshake(p.Hello, func(error) {})
			if err != nil {
				return
			}
			if reply.GetStartLsn() == 0 || reply.GetStartLsn() > l.durable+1 {
				t.Fatalf("start LSN %d outside [1, %d]", reply.GetStartLsn(), l.durable+1)
			}
			if tr := reply.TruncateTo; tr != nil && *tr >= p.Hello.GetPosition().GetLsn() {
				t.Fatalf("truncate to %d does not shorten a log ending at %d", *tr, p.Hello.GetPosition().GetLsn())
			}
			l.disconnected(r, nil)
		case *replicationv1.StreamRequest_Ack:
			r := l.replicas[2]
			r.connected, r.sent = true, 50
			if err := l.onAck(r, p.Ack); err == nil && (r.flushed > 50 || l.commit > l.durable) {
				t.Fatalf("accepted ack %v: flushed %d, commit %d", p.Ack, r.flushed, l.commit)
			}
		case *replicationv1.StreamRequest_Heartbeat:
			l.onHeartbeat(l.replicas[2])
		case *replicationv1.StreamRequest_Leaving:
			r := l.replicas[2]
			r.connected, r.inISR, r.lastCaughtUp = true, true, time.Now()
			l.onLeaving(r, p.Leaving.GetReason())
			if r.inISR || slices.Contains(l.isr, 2) {
				t.Fatalf("follower 2 still in the ISR %v after FollowerLeaving", l.isr)
			}
		}
	})
}

// FuzzAttachRequest: what a sidecar receives from its broker.
func FuzzAttachRequest(f *testing.F) {
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		var m linkv1.AttachRequest
		if err := proto.Unmarshal(data, &m); err != nil {
			return
		}
		if h := m.GetHello(); h != nil {
			validateBrokerHello(h, 1, "test-cluster")
			return
		}
		l := testLeader(t, time.Second)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		c := newBrokerConn(ctx, &linkv1.BrokerHello{NodeId: 1}, l.log)
		c.onCommit = l.onCommitted
		c.replays[1] = make(chan *linkv1.ReplayResult, 1)
		c.checksums[3] = make(chan *linkv1.ChecksumResult, 1)
		c.pending = 1
		cancel() // a replay result for a waiter that went away must not block
		c.receive(&m)
		if l.durable > 0 && l.cache.bytesBetween(0, l.durable) == 0 && len(m.GetCommitted().GetEntries()) == 0 {
			t.Fatalf("durable moved to %d without entries", l.durable)
		}
		if st := m.GetStopping(); st != nil {
			// Nothing to hand over here (no role): the link ends.
			if got := c.stoppingState(); got == nil || got.lastLSN != st.GetLastLsn() || c.ctx.Err() == nil {
				t.Fatalf("after BrokerStopping{last_lsn %d}: stopping %+v, link ended: %v", st.GetLastLsn(), got, c.ctx.Err() != nil)
			}
		}
	})
}

// FuzzStreamResponse: what a follower receives from the leader.
func FuzzStreamResponse(f *testing.F) {
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		var m replicationv1.StreamResponse
		if err := proto.Unmarshal(data, &m); err != nil {
			return
		}
		switch p := m.GetPayload().(type) {
		case *replicationv1.StreamResponse_Entries:
			ents := p.Entries.GetEntries()
			if err := validateEntries(ents, 1, 2); err == nil {
				for i, e := range ents {
					if e.GetLsn() != uint64(i+1) || e.GetEpoch() == 0 || e.GetEpoch() > 2 {
						t.Fatalf("accepted entry %d: %v", i, e)
					}
				}
			}
		case *replicationv1.StreamResponse_Hello:
			h := p.Hello
			divergencePoint(epochHistory(h.GetEpochHistory()), h.GetLeaderLastLsn(), hist(1, 1, 2, 20), 30)
		}
	})
}

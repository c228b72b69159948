package sidecar

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	linkv1 "github.com/tandem-io/tandem/gen/tandem/link/v1"
	replicationv1 "github.com/tandem-io/tandem/gen/tandem/replication/v1"
)

// hist builds an epoch history from (epoch, start) pairs.
func hist(pairs ...uint64) epochHistory {
	var h epochHistory
	for i := 0; i+1 < len(pairs); i += 2 {
		h = append(h, &linkv1.EpochStart{Epoch: uint32(pairs[i]), StartLsn: pairs[i+1]})
	}
	return h
}

func TestDivergencePoint(t *testing.T) {
	tests := []struct {
		name                string
		leader              epochHistory
		leaderEnd           uint64
		follower            epochHistory
		followerEnd         uint64
		want                uint64
		wantKIP101          uint64 // the single KIP-101 step for the follower's last epoch
		kip101MatchesWanted bool
	}{
		{"both empty", nil, 0, nil, 0, 0, 0, true},
		{"follower empty", hist(1, 1), 50, nil, 0, 0, 0, true},
		{"follower behind, same epoch", hist(1, 1), 100, hist(1, 1), 40, 40, 100, false},
		{"identical", hist(1, 1, 2, 50), 100, hist(1, 1, 2, 50), 100, 100, 100, true},
		{"follower behind across epochs", hist(1, 1, 2, 50, 3, 80), 100, hist(1, 1, 2, 50), 60, 60, 79, false},
		// KIP-101: the follower's last epoch 1 ends at 49 on the leader.
		{"old leader with unreplicated tail", hist(1, 1, 2, 50), 100, hist(1, 1), 70, 49, 49, true},
		// The follower (an old leader of epoch 2) wrote 50..60 in epoch 2,
		// but the new leader (epoch 3) never saw epoch 2: KIP-101 alone
		// would keep 50..59 (the leader's epoch 1 ends at 59); KIP-279
		// walks down to 49.
		{"epoch the leader never had", hist(1, 1, 3, 60), 100, hist(1, 1, 2, 50), 60, 49, 59, false},
		{"follower ahead in the same epoch", hist(1, 1), 30, hist(1, 1), 40, 30, 30, true},
		{"nothing in common", hist(2, 1), 30, hist(1, 1), 40, 0, 0, true},
		{"compacted leader history", hist(3, 500), 900, hist(1, 1, 3, 400), 450, 450, 900, false},
		{"new epoch started but not written", hist(1, 1, 2, 101), 100, hist(1, 1), 100, 100, 100, true},
		// The follower was re-cloned at 100 from another leader: below 100
		// its epochs are unknown but at most 1, so it cannot hold the
		// leader's epoch-2 entries from 50.
		{"re-cloned follower below a newer leader epoch", hist(1, 1, 2, 50), 200, hist(1, 100), 150, 49, 49, true},
		{"re-cloned follower, same epoch below its first line", hist(1, 1, 2, 120), 200, hist(1, 100), 150, 119, 119, true},
		// The same on the leader's side: its history starts at 500 with
		// epoch 2, so it has no epoch-3 entry below 500.
		{"compacted leader below a newer follower epoch", hist(2, 500), 900, hist(1, 1, 3, 450), 480, 449, 900, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := divergencePoint(tt.leader, tt.leaderEnd, tt.follower, tt.followerEnd)
			if got != tt.want {
				t.Errorf("divergencePoint = %d, want %d", got, tt.want)
			}
			k := kip101EndOffset(tt.leader, tt.leaderEnd, tt.follower.lastEpoch())
			if k != tt.wantKIP101 {
				t.Errorf("kip101EndOffset = %d, want %d", k, tt.wantKIP101)
			}
			if tt.kip101MatchesWanted && min(k, tt.followerEnd) != got {
				t.Errorf("min(KIP-101 end %d, follower end %d) = %d, but the divergence point is %d",
					k, tt.followerEnd, min(k, tt.followerEnd), got)
			}
		})
	}
}

// testLeader is a leader with no network, for ISR and commit logic.
func testLeader(t *testing.T, lagMax time.Duration) *leader {
	cfg := DefaultConfig()
	cfg.NodeID, cfg.ClusterID, cfg.LeaderID = 1, "c1", 1
	cfg.Peers = map[int32]string{1: "127.0.0.1:1", 2: "127.0.0.1:2", 3: "127.0.0.1:3"}
	cfg.ReplicaLagTimeMax = lagMax
	s := &Sidecar{cfg: cfg, log: hclog.NewNullLogger(), ctx: context.Background()}
	l := newLeader(s)
	s.leader = l
	return l
}

func TestISRAndCommit(t *testing.T) {
	now := time.Now()
	lagMax := 10 * time.Second
	type rep struct {
		connected   bool
		flushed     uint64
		caughtUpAgo time.Duration // < 0: never
		wantInISR   bool
		wasInISR    bool
	}
	tests := []struct {
		name       string
		durable    uint64
		prevCommit uint64
		r2, r3     rep
		wantISR    []int32
		wantCommit uint64
	}{
		{"all caught up", 100, 0, rep{true, 100, -1, true, false}, rep{true, 100, -1, true, false}, []int32{1, 2, 3}, 100},
		{"one slightly behind stays in sync", 100, 0, rep{true, 100, -1, true, true}, rep{true, 90, time.Second, true, true}, []int32{1, 2, 3}, 90},
		{"one too far behind leaves", 100, 0, rep{true, 100, -1, true, true}, rep{true, 10, 11 * time.Second, false, true}, []int32{1, 2}, 100},
		{"never caught up is out", 100, 0, rep{true, 50, -1, false, false}, rep{false, 0, -1, false, false}, []int32{1}, 100},
		{"disconnected but recent stays", 100, 0, rep{false, 80, 2 * time.Second, true, true}, rep{true, 100, -1, true, true}, []int32{1, 2, 3}, 80},
		{"commit never moves back", 100, 95, rep{true, 100, -1, true, true}, rep{true, 90, time.Second, true, true}, []int32{1, 2, 3}, 95},
		{"leader alone", 7, 0, rep{false, 0, -1, false, false}, rep{false, 0, -1, false, false}, []int32{1}, 7},
		// Kafka's expansion rule: caught up recently (its ack reached the
		// leader's end at the previous ack), but below the commit point, so
		// it does not join yet: electing it would lose entries 61-100.
		{"joins only at the commit point", 100, 100, rep{true, 60, 0, false, false}, rep{true, 100, -1, true, true}, []int32{1, 3}, 100},
		{"joins once it holds the commit point", 120, 100, rep{true, 100, 0, true, false}, rep{true, 120, -1, true, true}, []int32{1, 2, 3}, 100},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := testLeader(t, lagMax)
			l.durable, l.commit = tt.durable, tt.prevCommit
			for id, r := range map[int32]rep{2: tt.r2, 3: tt.r3} {
				x := l.replicas[id]
				x.connected, x.flushed, x.inISR = r.connected, r.flushed, r.wasInISR
				if r.caughtUpAgo >= 0 {
					x.lastCaughtUp = now.Add(-r.caughtUpAgo)
				}
			}
			l.updateLocked(now)
			if !slices.Equal(l.isr, tt.wantISR) {
				t.Errorf("ISR = %v, want %v", l.isr, tt.wantISR)
			}
			if l.commit != tt.wantCommit {
				t.Errorf("commit = %d, want %d", l.commit, tt.wantCommit)
			}
			for id, r := range map[int32]rep{2: tt.r2, 3: tt.r3} {
				if l.replicas[id].inISR != r.wantInISR {
					t.Errorf("node %d inISR = %v, want %v", id, l.replicas[id].inISR, r.wantInISR)
				}
			}
		})
	}
}

// A leader that did not run for longer than half the lag bound (SIGSTOP, a
// VM pause) does not count that time against its followers: it would
// otherwise drop every follower from the ISR the moment it resumed, before
// it read the acknowledgements they sent meanwhile (seen in a soak run:
// the ISR shrank to the leader alone, published in etcd). A follower that
// really stopped still leaves once the leader has run for the lag bound.
func TestLeaderPauseDoesNotCountAgainstFollowers(t *testing.T) {
	lagMax := 2 * time.Second
	l := testLeader(t, lagMax)
	t0 := time.Now().Add(time.Minute) // after newLeader's own evaluation
	l.durable, l.commit = 100, 98
	for _, id := range []int32{2, 3} {
		r := l.replicas[id]
		r.connected, r.flushed, r.inISR, r.lastCaughtUp = true, 98, true, t0
	}
	l.updateLocked(t0.Add(100 * time.Millisecond))
	// Paused for 2.3 s, more than the lag bound: both stay.
	now := t0.Add(2400 * time.Millisecond)
	l.updateLocked(now)
	if !slices.Equal(l.isr, []int32{1, 2, 3}) {
		t.Fatalf("ISR right after a 2.3 s pause of the leader = %v, want [1 2 3]", l.isr)
	}
	// Node 2 acknowledges the leader's end; node 3 never does again. The
	// leader now runs, evaluating every 500 ms.
	l.replicas[2].flushed = 100
	for i := 0; i < 5; i++ {
		now = now.Add(500 * time.Millisecond)
		l.updateLocked(now)
	}
	if !slices.Equal(l.isr, []int32{1, 2}) {
		t.Fatalf("ISR 2.5 s of running time later = %v, want [1 2] (node 3 stopped acknowledging)", l.isr)
	}
}

// A follower under steady load is never exactly at the leader's end, but it
// reaches where the leader was at its previous ack: that counts as caught
// up (Kafka's lastCaughtUpTime rule), so it stays in the ISR.
func TestAckCaughtUpRule(t *testing.T) {
	l := testLeader(t, 100*time.Millisecond)
	r := l.replicas[2]
	l.durable = 10
	r.connected, r.sent = true, 10
	if err := l.onAck(r, &replicationv1.Ack{WrittenLsn: 10, FlushedLsn: 10, AppliedLsn: 10}); err != nil {
		t.Fatal(err)
	}
	if !r.inISR {
		t.Fatal("caught-up follower not in ISR")
	}
	for i := uint64(1); i <= 5; i++ {
		prevEnd := l.durable
		l.durable += 10
		r.sent = l.durable
		r.lastCaughtUp = time.Now().Add(-time.Hour) // only the rule can bring it back
		r.lastAckTime = time.Now()
		if err := l.onAck(r, &replicationv1.Ack{WrittenLsn: prevEnd, FlushedLsn: prevEnd, AppliedLsn: prevEnd}); err != nil {
			t.Fatal(err)
		}
		if !r.inISR {
			t.Fatalf("round %d: follower at the previous end left the ISR", i)
		}
	}
	if err := l.onAck(r, &replicationv1.Ack{FlushedLsn: l.durable + 1}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("ack beyond what was sent: %v, want InvalidArgument", err)
	}
}

func TestFollowerHelloValidation(t *testing.T) {
	good := func() *replicationv1.FollowerHello {
		return &replicationv1.FollowerHello{
			ClusterId: "c1", NodeId: 2, StreamId: DefaultStreamID,
			Position:     &replicationv1.Position{StreamId: DefaultStreamID, Epoch: 2, Lsn: 30},
			EpochHistory: hist(1, 1, 2, 20),
		}
	}
	tests := []struct {
		name     string
		mutate   func(h *replicationv1.FollowerHello)
		wantCode codes.Code
		wantMsg  []string
	}{
		{"valid", func(*replicationv1.FollowerHello) {}, codes.OK, nil},
		{"empty stream id is the node stream", func(h *replicationv1.FollowerHello) { h.StreamId = ""; h.Position.StreamId = "" }, codes.OK, nil},
		{"cluster id mismatch", func(h *replicationv1.FollowerHello) { h.ClusterId = "other" }, codes.FailedPrecondition,
			[]string{`"c1"`, `"other"`, "cluster id mismatch", "node 2", "node 1 (leader)"}},
		{"no node id", func(h *replicationv1.FollowerHello) { h.NodeId = 0 }, codes.InvalidArgument, nil},
		{"unknown stream", func(h *replicationv1.FollowerHello) { h.StreamId = "topic-a/0" }, codes.InvalidArgument, nil},
		{"history not ascending", func(h *replicationv1.FollowerHello) { h.EpochHistory = hist(2, 1, 1, 20) }, codes.InvalidArgument, nil},
		{"history beyond end", func(h *replicationv1.FollowerHello) { h.EpochHistory = hist(1, 1, 2, 40) }, codes.InvalidArgument, nil},
		{"position epoch wrong", func(h *replicationv1.FollowerHello) { h.Position.Epoch = 1 }, codes.InvalidArgument, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := good()
			tt.mutate(h)
			err := validateFollowerHello(h, "c1", 1)
			if status.Code(err) != tt.wantCode {
				t.Fatalf("code = %v (%v), want %v", status.Code(err), err, tt.wantCode)
			}
			for _, m := range tt.wantMsg {
				if !strings.Contains(status.Convert(err).Message(), m) {
					t.Errorf("message %q does not mention %s", status.Convert(err).Message(), m)
				}
			}
		})
	}
}

func TestHandshakeRefusals(t *testing.T) {
	l := testLeader(t, time.Second)
	l.bc = &brokerConn{ctx: context.Background(), viewSig: make(chan struct{}, 1), commitSig: make(chan struct{}, 1)}
	l.history, l.durable, l.first = hist(1, 1), 10, 1
	hello := func(id int32) *replicationv1.FollowerHello {
		return &replicationv1.FollowerHello{ClusterId: "c1", NodeId: id, Position: &replicationv1.Position{}}
	}
	noop := func(error) {}
	if _, _, err := l.handshake(hello(9), noop); status.Code(err) != codes.PermissionDenied {
		t.Errorf("unknown node: %v, want PermissionDenied", err)
	}
	if _, _, err := l.handshake(hello(1), noop); status.Code(err) != codes.InvalidArgument {
		t.Errorf("leader's own id: %v, want InvalidArgument", err)
	}
	_, reply, err := l.handshake(hello(2), noop)
	if err != nil {
		t.Fatal(err)
	}
	if reply.GetStartLsn() != 1 || reply.TruncateTo != nil || reply.ResetTo != nil {
		t.Errorf("reply = %v", reply)
	}
	if _, _, err := l.handshake(hello(2), noop); status.Code(err) != codes.AlreadyExists {
		t.Errorf("second stream for node 2: %v, want AlreadyExists", err)
	}
	// A follower whose WAL starts at 55 (retention deleted older segments;
	// its epoch 5 started at 50) diverged at 49: it cannot truncate below
	// its first entry, so it wipes its WAL and re-clones from the leader's
	// first entry (1), which brings it the state of entries 1-49 too.
	l.replicas[2].connected = false
	l.durable = 100
	h := hello(2)
	h.Position, h.FirstLsn, h.EpochHistory = &replicationv1.Position{Epoch: 5, Lsn: 60}, 55, hist(5, 50)
	// A follower with a newer epoch than the leader's is refused: this
	// leader is stale and must not make it truncate.
	if _, _, err := l.handshake(h, noop); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("follower with a newer epoch: %v, want FailedPrecondition", err)
	}
	l.epoch = 6 // promoted to epoch 6, no entry of it written yet
	h.Position, h.FirstLsn, h.EpochHistory = &replicationv1.Position{Epoch: 5, Lsn: 60}, 55, hist(5, 50)
	_, reply, err = l.handshake(h, noop)
	if err != nil {
		t.Fatal(err)
	}
	// truncate_to says where it diverged (after 49, where the leader's
	// epoch 2 began), so that it can tell whether it loses committed
	// entries; reset_to wins.
	if reply.ResetTo == nil || reply.GetResetTo() != 1 || reply.GetTruncateTo() != 49 || reply.GetStartLsn() != 1 {
		t.Errorf("reply = %v, want reset to 1, truncate_to 49", reply)
	}
	// A follower re-cloned at 100 from another leader (its history: epoch 1
	// from 100) against this leader, whose epoch 2 started at 50: the
	// follower's entries are all of epoch 1 or lower, so it holds none of
	// the leader's 50-99 and must re-clone, not resume at 100.
	l.replicas[2].connected = false
	l.history, l.durable, l.first, l.epoch = hist(1, 1, 2, 50), 200, 1, 2
	h.Position, h.FirstLsn, h.EpochHistory = &replicationv1.Position{Epoch: 1, Lsn: 150}, 100, hist(1, 100)
	_, reply, err = l.handshake(h, noop)
	if err != nil {
		t.Fatal(err)
	}
	if reply.ResetTo == nil || reply.GetResetTo() != 1 || reply.GetStartLsn() != 1 {
		t.Errorf("re-cloned follower of another leader: reply = %v, want reset to 1", reply)
	}
	// The leader's WAL starts at 5 now: an empty follower must re-clone.
	l.first = 5
	_, reply, err = l.handshake(hello(3), noop)
	if err != nil {
		t.Fatal(err)
	}
	if reply.ResetTo == nil || reply.GetResetTo() != 5 || reply.GetStartLsn() != 5 {
		t.Errorf("reply = %v, want reset to 5", reply)
	}
	// Retention deleted more since the broker's hello, and the broker
	// said so (StorageState): the follower re-clones from there at once.
	l.replicas[3].connected = false
	l.bc = &brokerConn{hello: &linkv1.BrokerHello{FirstLsn: 5}}
	l.bc.storage.Store(&linkv1.StorageState{FirstLsn: 40})
	_, reply, err = l.handshake(hello(3), noop)
	if err != nil {
		t.Fatal(err)
	}
	if reply.ResetTo == nil || reply.GetResetTo() != 40 || reply.GetStartLsn() != 40 {
		t.Errorf("after the broker reported its WAL starting at 40: reply = %v, want reset to 40", reply)
	}
}

func TestParsePeersAndValidate(t *testing.T) {
	p, err := ParsePeers("1=127.0.0.1:9192, 2=127.0.0.1:9193,3=h3:9194")
	if err != nil || len(p) != 3 || p[3] != "h3:9194" {
		t.Fatalf("ParsePeers = %v, %v", p, err)
	}
	if FormatPeers(p) != "1=127.0.0.1:9192,2=127.0.0.1:9193,3=h3:9194" {
		t.Errorf("FormatPeers = %q", FormatPeers(p))
	}
	for _, bad := range []string{"1", "x=h:1", "1=h", "1=h:1,1=h:2", "0=h:1"} {
		if _, err := ParsePeers(bad); err == nil {
			t.Errorf("ParsePeers(%q) accepted", bad)
		}
	}
	base := func() Config {
		c := DefaultConfig()
		c.NodeID, c.ClusterID, c.BrokerSocket, c.Listen, c.Peers, c.LeaderID = 2, "c", "/x/s.sock", "127.0.0.1:0", p, 1
		return c
	}
	tests := []struct {
		name   string
		mutate func(c *Config)
		ok     bool
	}{
		{"valid", func(*Config) {}, true},
		{"no leader", func(c *Config) { c.LeaderID = 0 }, false},
		{"leader not a peer", func(c *Config) { c.LeaderID = 7 }, false},
		{"node not a peer", func(c *Config) { c.NodeID = 7 }, false},
		{"etcd with a preferred leader", func(c *Config) { c.EtcdEndpoints = []string{"http://e:2379"} }, true},
		{"etcd without --leader", func(c *Config) { c.EtcdEndpoints, c.LeaderID = []string{"http://e:2379"}, 0 }, true},
		{"etcd, leader not a peer", func(c *Config) { c.EtcdEndpoints, c.LeaderID = []string{"http://e:2379"}, 7 }, false},
		{"etcd, lease too short", func(c *Config) { c.EtcdEndpoints, c.LeaseTTL = []string{"http://e:2379"}, time.Second }, false},
		{"timeout below heartbeat", func(c *Config) { c.PeerTimeout = c.HeartbeatInterval }, false},
		{"standalone", func(c *Config) { c.Peers, c.LeaderID = nil, 0 }, true},
		{"no cluster id", func(c *Config) { c.ClusterID = "" }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := base()
			tt.mutate(&c)
			if err := c.Validate(); (err == nil) != tt.ok {
				t.Errorf("Validate() = %v, want ok=%v", err, tt.ok)
			}
		})
	}
}

func TestEntryCache(t *testing.T) {
	c := newEntryCache(100)
	c.reset(11)
	mk := func(from, to uint64, size int) []*linkv1.Entry {
		var out []*linkv1.Entry
		for l := from; l <= to; l++ {
			out = append(out, &linkv1.Entry{Lsn: l, Epoch: 1, Payload: make([]byte, size)})
		}
		return out
	}
	c.add(mk(11, 20, 10)) // 100 bytes: fits
	if ents, ok := c.get(11, 25); !ok || len(ents) != 2 || ents[0].GetLsn() != 11 {
		t.Fatalf("get(11) = %d entries, %v", len(ents), ok)
	}
	if ents, ok := c.get(21, 25); !ok || len(ents) != 0 {
		t.Fatalf("get(21) = %d entries, %v", len(ents), ok)
	}
	c.add(mk(21, 25, 10)) // evicts 11..15
	if _, ok := c.get(15, 100); ok {
		t.Fatal("evicted entry still served")
	}
	if ents, ok := c.get(16, 1); !ok || len(ents) != 1 {
		t.Fatalf("a batch always holds at least one entry: %d, %v", len(ents), ok)
	}
	if got := c.bytesBetween(10, 25); got != 150 {
		t.Errorf("bytesBetween = %d, want 150 (100 cached + 5 estimated)", got)
	}
	c.add(mk(40, 40, 5)) // a gap restarts the cache
	if _, ok := c.get(25, 10); ok {
		t.Fatal("cache kept entries across a gap")
	}
}

// A follower that comes back holding less than the commit point (its
// broker restarted empty, or was re-cloned) leaves the ISR at once, not
// after replica-lag-time-max: an in-sync replica may be elected, and this
// one lacks committed entries.
func TestReconnectBelowCommitLeavesISR(t *testing.T) {
	l := testLeader(t, 10*time.Second)
	l.bc = &brokerConn{ctx: context.Background(), viewSig: make(chan struct{}, 1), commitSig: make(chan struct{}, 1)}
	l.history, l.durable, l.first = hist(1, 1), 100, 1
	now := time.Now()
	for _, id := range []int32{2, 3} {
		r := l.replicas[id]
		r.connected, r.sent, r.flushed, r.lastCaughtUp = true, 100, 100, now
	}
	l.updateLocked(now)
	if !slices.Equal(l.isr, []int32{1, 2, 3}) || l.commit != 100 {
		t.Fatalf("ISR %v commit %d, want [1 2 3] and 100", l.isr, l.commit)
	}
	l.replicas[2].connected = false // its broker restarted with an empty WAL
	h := &replicationv1.FollowerHello{ClusterId: "c1", NodeId: 2, Position: &replicationv1.Position{}}
	if _, _, err := l.handshake(h, func(error) {}); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(l.isr, []int32{1, 3}) {
		t.Fatalf("ISR %v after node 2 came back empty, want [1 3]", l.isr)
	}
}

// The rest of a replay whose caller gave up (its follower's stream ended
// during catch-up) is dropped; it must not close the leader's broker link,
// which would disconnect every other follower too. An answer to a request
// never made is still a protocol error.
func TestAbandonedReplayAnswerIsDropped(t *testing.T) {
	c := newBrokerConn(context.Background(), &linkv1.BrokerHello{NodeId: 1}, hclog.NewNullLogger())
	c.nextID.Store(5) // five requests made; none waits now
	answer := func(id uint64) error {
		return c.receive(&linkv1.AttachRequest{Payload: &linkv1.AttachRequest_ReplayResult{ReplayResult: &linkv1.ReplayResult{
			RequestId: id, Status: linkv1.ReplayStatus_REPLAY_STATUS_OK}}})
	}
	if err := answer(3); err != nil {
		t.Fatalf("late chunk of abandoned replay 3: %v, want it dropped", err)
	}
	for _, id := range []uint64{0, 9} {
		if err := answer(id); !errors.Is(err, errBadBrokerMessage) {
			t.Errorf("replay result for request %d, never made: %v, want errBadBrokerMessage", id, err)
		}
	}
}

// A follower that hears nothing from its leader (a silent partition: the
// TCP connection stays up) is not ready once the lag bound passes, although
// it applied everything it last heard of: the leader drops it from the ISR
// then, long before --peer-timeout ends the stream.
func TestFollowerNotReadyWhenTheLeaderIsSilent(t *testing.T) {
	cfg := DefaultConfig()
	cfg.NodeID, cfg.ClusterID, cfg.LeaderID = 2, "c1", 1
	cfg.Peers = map[int32]string{1: "127.0.0.1:1", 2: "127.0.0.1:2"}
	s := &Sidecar{cfg: cfg, log: hclog.NewNullLogger(), ctx: context.Background()}
	f := newFollower(s)
	f.streaming, f.applied, f.leaderLast = true, 10, 10
	f.heardAt.Store(time.Now().UnixNano())
	if ok, why := f.ready(); !ok {
		t.Fatalf("streaming and caught up, heard from the leader just now: not ready (%s)", why)
	}
	f.heardAt.Store(time.Now().Add(-cfg.ReplicaLagTimeMax - cfg.HeartbeatInterval).UnixNano())
	if ok, why := f.ready(); ok || !strings.Contains(why, "nothing heard from the leader") {
		t.Fatalf("silent leader: ready=%v (%q), want not ready, saying why", ok, why)
	}
}

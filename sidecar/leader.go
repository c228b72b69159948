package sidecar

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	linkv1 "github.com/tandem-io/tandem/gen/tandem/link/v1"
	replicationv1 "github.com/tandem-io/tandem/gen/tandem/replication/v1"
)

// leader is the leader sidecar's state: the local broker's WAL position, the
// cache of recent entries, every follower's progress, the ISR and the
// commit point.
type leader struct {
	s     *Sidecar
	log   hclog.Logger
	cache *entryCache
	ctx   context.Context // ends with this leadership (role.go)
	// catchup holds back followers outside the ISR (nil: no limit;
	// throttle.go).
	catchup *catchupThrottle

	mu      sync.Mutex
	bc      *brokerConn // nil while the broker is detached
	epoch   uint32
	self    *linkv1.BrokerInfo
	first   uint64 // broker WAL's oldest LSN (as last reported)
	durable uint64 // broker WAL's durable end: the leader's own flushed LSN
	// evaluated is when updateLocked last ran (isrLoop runs it every
	// isrInterval, acknowledgements in between).
	evaluated time.Time
	// tookBytes is the payload bytes of every entry the broker pushed in
	// this leadership (throttle.go's catchupProgress compares it with what
	// a throttled follower is sent).
	tookBytes uint64
	history   epochHistory
	commit    uint64
	// brokerCommit is the commit point the local broker reports it serves;
	// followers are sent min(commit, brokerCommit) once the broker has
	// reported one (brokerAcks), so they never expose a record first.
	brokerCommit uint64
	brokerAcks   bool
	isr          []int32 // sorted, this node included
	replicas     map[int32]*replica
	changed      chan struct{} // closed and replaced when durable, commit or cluster change
	version      uint64        // bumped when the brokers list or the ISR changes
	closed       bool          // leadership ended (role.go): no broker, no followers
	// handingOver: this sidecar stops and hands the leadership over; the
	// broker's views say so, and it appends nothing of its own
	// (Sidecar.handOverOnClose).
	handingOver bool
	// peersChecked: the next broker attachment needs no peer check (the
	// role began with a promotion or an election win, which polled the
	// peers just before). checking: a peer check runs; the broker stays
	// fenced and followers are refused until it ends (checkPeersThenLead).
	peersChecked bool
	checking     *brokerConn
	// pinnedISR is the ISR last published in etcd (election.go; nil
	// without etcd, every peer when a new leader could not read it). Its
	// members count for the commit point even after they left the ISR
	// here (or before they connected), until the smaller ISR is published.
	pinnedISR []int32
	// durTimes remembers when pushes of durable entries arrived, for the
	// followers' apply lag (applylag.go).
	durTimes durableTimes
}

// replica is the leader's view of one follower. Guarded by leader.mu.
type replica struct {
	id        int32
	addr      string
	broker    *linkv1.BrokerInfo
	connected bool
	stop      context.CancelCauseFunc // closes the current stream

	sent, written, flushed, applied uint64
	lastHeard                       time.Time
	lastCaughtUp                    time.Time
	connectedAt                     time.Time // when the current stream opened
	endAtLastAck                    uint64
	lastAckTime                     time.Time
	inISR                           bool
	unverified                      bool          // told to truncate or wipe, no ack since (not caught up)
	leaving                         bool          // sent FollowerLeaving: out of the ISR until its next hello
	ackSig                          chan struct{} // cap 1
	applyLag                        time.Duration // at the last ack that moved applied (applylag.go)
}

func newLeader(s *Sidecar) *leader {
	l := &leader{
		s:        s,
		log:      s.log.Named("leader"),
		cache:    newEntryCache(s.cfg.CacheBytes),
		catchup:  newCatchupThrottle(s.cfg.CatchupBytesPerSec, s.cfg.BatchBytes),
		epoch:    1,
		replicas: map[int32]*replica{},
		changed:  make(chan struct{}),
		isr:      []int32{s.cfg.NodeID},
	}
	for id, addr := range s.cfg.Peers {
		if id != s.cfg.NodeID {
			l.replicas[id] = &replica{id: id, addr: addr, ackSig: make(chan struct{}, 1)}
		}
	}
	return l
}

// broadcastLocked wakes every follower stream.
func (l *leader) broadcastLocked() {
	close(l.changed)
	l.changed = make(chan struct{})
}

// brokerAttached starts leading with the attached broker's WAL, after
// checking with the peers that none holds more of the log
// (checkPeersThenLead).
func (l *leader) brokerAttached(c *brokerConn) {
	l.mu.Lock()
	check := !l.peersChecked
	l.peersChecked = false
	if check {
		l.checking = c
	}
	l.mu.Unlock()
	if check {
		l.s.goFunc(func() { l.checkPeersThenLead(c) })
		return
	}
	l.startLeading(c)
}

// startLeading makes c the leader's broker: it gets the leader view and
// pushes its durable entries from here on.
func (l *leader) startLeading(c *brokerConn) {
	h := c.hello
	l.mu.Lock()
	if l.closed || l.bc == c || c.ctx.Err() != nil {
		l.mu.Unlock()
		return
	}
	l.bc = c
	l.first, l.durable = h.GetFirstLsn(), h.GetDurableLsn()
	l.history = epochHistory(h.GetEpochHistory()).clone()
	l.epoch = max(l.epoch, l.history.lastEpoch(), 1)
	l.self = &linkv1.BrokerInfo{NodeId: l.s.cfg.NodeID, Host: h.GetAdvertisedHost(), Port: h.GetAdvertisedPort(), Rack: h.GetRack()}
	if l.commit > l.durable {
		// The broker came back with less than we had committed (its WAL
		// was replaced); the commit point cannot exceed what it holds.
		l.log.Warn("broker holds less than the last commit point", "commit_lsn", l.commit, "durable_lsn", l.durable)
		l.commit = l.durable
	}
	l.cache.reset(l.durable + 1)
	c.onCommit = l.onCommitted
	c.onCommitApplied = l.onCommitApplied
	l.version++
	l.updateLocked(time.Now())
	c.setView(l.viewLocked())
	c.setCommit(l.commit)
	l.broadcastLocked()
	l.mu.Unlock()
	if err := c.subscribe(c.ctx, h.GetDurableLsn()+1); err != nil {
		l.log.Error("asking the broker to push entries failed", "error", err)
	}
	l.log.Info("leading", "epoch", l.epoch, "durable_lsn", h.GetDurableLsn(), "followers", len(l.replicas))
}

// brokerDetached closes every follower stream: they reconnect and resume
// from their own positions once the broker is back.
func (l *leader) brokerDetached(c *brokerConn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.bc != c {
		return
	}
	l.bc = nil
	for _, r := range l.replicas {
		if r.stop != nil {
			r.stop(errors.New("the leader's broker detached"))
		}
	}
	l.broadcastLocked()
}

// onCommitApplied records the commit point the local broker serves and
// lets the follower streams forward it.
func (l *leader) onCommitApplied(lsn uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.brokerAcks = true
	if lsn > l.brokerCommit {
		l.brokerCommit = lsn
		l.broadcastLocked()
	}
}

// followerCommitLocked is the commit point followers may serve up to.
func (l *leader) followerCommitLocked() uint64 {
	if l.brokerAcks {
		return min(l.commit, l.brokerCommit)
	}
	return l.commit
}

// onCommitted takes entries that became durable in the leader's broker.
func (l *leader) onCommitted(ce *linkv1.CommittedEntries) {
	ents := ce.GetEntries()
	if len(ents) == 0 {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if first := ents[0].GetLsn(); first != l.durable+1 {
		l.log.Error("broker pushed entries out of order; ignoring them", "first_lsn", first, "expected", l.durable+1)
		return
	}
	var took uint64
	for i, e := range ents {
		if i > 0 && e.GetLsn() != ents[i-1].GetLsn()+1 {
			l.log.Error("broker pushed a batch with a gap; ignoring it", "lsn", e.GetLsn(), "previous", ents[i-1].GetLsn())
			return
		}
		l.history = l.history.observe(e.GetEpoch(), e.GetLsn())
		took += uint64(len(e.GetPayload()))
	}
	l.cache.add(ents)
	l.tookBytes += took
	l.durable = ents[len(ents)-1].GetLsn()
	now := time.Now()
	l.durTimes.note(ents[0].GetLsn(), l.durable, now)
	l.updateLocked(now)
	l.broadcastLocked()
}

// updateLocked re-evaluates the ISR and the commit point, and tells the
// local broker about changes.
//
// A follower is in sync while it was caught up to the leader's durable end
// within ReplicaLagTimeMax (Kafka's rule). The commit point is the lowest
// flushed LSN among in-sync replicas, the leader's own durable LSN
// included, and never moves backwards. With etcd, the members of the ISR
// last published there (pinnedISR) hold it back too, in sync or not.
func (l *leader) updateLocked(now time.Time) {
	lagMax := l.s.cfg.ReplicaLagTimeMax
	if gap := now.Sub(l.evaluated); !l.evaluated.IsZero() && gap > lagMax/2 && gap > 2*isrInterval(lagMax) {
		// This process did not run for a while (SIGSTOP, a VM pause, a
		// machine out of CPU): the followers' acknowledgements of that
		// time are still unread in its sockets. Measured against that
		// gap, every follower would look out of date and leave the ISR
		// at once, leaving the leader alone in it (and, published in
		// etcd, the only node that may be elected). The lag clock counts
		// the time this leader was running: each follower's last
		// caught-up time moves forward by the gap.
		l.log.Warn("this node did not run for a while; the time does not count against its followers' lag",
			"gap", gap.Round(time.Millisecond))
		for _, r := range l.replicas {
			if !r.lastCaughtUp.IsZero() {
				r.lastCaughtUp = r.lastCaughtUp.Add(gap)
			}
		}
	}
	l.evaluated = now
	isr := []int32{l.s.cfg.NodeID}
	commit := l.durable
	for _, r := range l.replicas {
		if r.connected && !r.unverified && !r.leaving && r.flushed >= l.durable {
			r.lastCaughtUp = now
		}
		in := !r.leaving && !r.lastCaughtUp.IsZero() && now.Sub(r.lastCaughtUp) <= lagMax
		if in && !r.inISR && r.flushed < l.commit {
			// Kafka's rule for ISR expansion: a follower joins only once it
			// holds everything committed, so that any in-sync replica can
			// be elected without losing an acknowledged entry.
			in = false
		}
		if in != r.inISR {
			if in {
				l.log.Info("follower joined the ISR", "node_id", r.id, "flushed_lsn", r.flushed, "leader_lsn", l.durable)
			} else if r.leaving {
				l.log.Info("follower left the ISR (it is stopping on purpose)", "node_id", r.id,
					"flushed_lsn", r.flushed, "leader_lsn", l.durable)
			} else {
				l.log.Warn("follower left the ISR (not caught up within replica-lag-time-max)", "node_id", r.id,
					"flushed_lsn", r.flushed, "leader_lsn", l.durable, "last_caught_up", r.lastCaughtUp.Format(time.RFC3339Nano),
					"connected", r.connected)
			}
			r.inISR = in
			l.s.metrics.isrChanged(r.id, in)
		}
		if in {
			isr = append(isr, r.id)
			commit = min(commit, r.flushed)
		} else if slices.Contains(l.pinnedISR, r.id) {
			// Still in the ISR published in etcd, so it may be elected:
			// the commit point waits for it until the smaller ISR is
			// published (Kafka persists an ISR change before the high
			// watermark uses it).
			commit = min(commit, r.flushed)
		}
	}
	for _, id := range l.pinnedISR {
		if id != l.s.cfg.NodeID && l.replicas[id] == nil {
			// A member of the published ISR this leader has no replica
			// for (not in its --peers): nothing is known of what it
			// holds, and it may be elected, so the commit point waits
			// until this leader publishes its own ISR.
			commit = 0
		}
	}
	slices.Sort(isr)
	if !slices.Equal(isr, l.isr) {
		l.isr = isr
		l.version++
		if l.bc != nil {
			l.bc.setView(l.viewLocked())
		}
		l.broadcastLocked()
	}
	if commit > l.commit {
		l.commit = commit
		if l.bc != nil {
			l.bc.setCommit(commit)
		}
		l.broadcastLocked()
	}
}

// brokersLocked lists every known broker, sorted by node id: this node's,
// each follower's as it said when it connected to this leader, and, for a
// follower that has not connected yet, the address an earlier cluster view
// gave (brokers.go). A new leader's first views would otherwise list only
// its own broker until the followers connect, and a Kafka client that
// asked it then would forget every other broker.
func (l *leader) brokersLocked() []*linkv1.BrokerInfo {
	var out []*linkv1.BrokerInfo
	if l.self != nil {
		out = l.s.knownBrokers(l.self)
	}
	for _, r := range l.replicas {
		if r.broker == nil {
			continue
		}
		if i := slices.IndexFunc(out, func(b *linkv1.BrokerInfo) bool { return b.GetNodeId() == r.id }); i >= 0 {
			out[i] = r.broker
		} else {
			out = append(out, r.broker)
		}
	}
	slices.SortFunc(out, func(a, b *linkv1.BrokerInfo) int { return int(a.GetNodeId()) - int(b.GetNodeId()) })
	l.s.noteBrokers(out)
	return out
}

// viewLocked is the local broker's cluster view.
func (l *leader) viewLocked() *linkv1.ClusterView {
	return &linkv1.ClusterView{
		Role:     linkv1.Role_ROLE_LEADER,
		LeaderId: l.s.cfg.NodeID,
		Epoch:    l.epoch,
		Brokers:  l.brokersLocked(),
		Isr:      slices.Clone(l.isr),

		HandingOver:  l.handingOver,
		FenceAfterMs: l.s.detachedFenceMs(),

		HeartbeatIntervalMs: l.s.heartbeatIntervalMs(),
	}
}

// beginHandOver marks the leadership as being handed over and returns the
// broker's view that says so; nil when bc is no longer this leader's
// broker.
func (l *leader) beginHandOver(bc *brokerConn) *linkv1.ClusterView {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed || l.bc != bc {
		return nil
	}
	l.handingOver = true
	return l.viewLocked()
}

// endHandOver lifts the handing-over view: the broker takes writes again.
func (l *leader) endHandOver() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.handingOver {
		return
	}
	l.handingOver = false
	if l.bc != nil {
		l.bc.setView(l.viewLocked())
	}
}

// clusterLocked is the cluster as followers see it.
func (l *leader) clusterLocked() *replicationv1.ClusterUpdate {
	return &replicationv1.ClusterUpdate{
		LeaderId: l.s.cfg.NodeID,
		Epoch:    l.epoch,
		Brokers:  l.brokersLocked(),
		Isr:      slices.Clone(l.isr),
	}
}

// isrInterval is how often isrLoop re-evaluates the ISR.
func isrInterval(lagMax time.Duration) time.Duration {
	return min(max(lagMax/4, 50*time.Millisecond), time.Second)
}

// isrLoop re-evaluates the ISR regularly, so that a follower that stopped
// acknowledging leaves it even when nothing else happens.
func (l *leader) isrLoop() {
	t := time.NewTicker(isrInterval(l.s.cfg.ReplicaLagTimeMax))
	defer t.Stop()
	for {
		select {
		case <-t.C:
			l.mu.Lock()
			l.updateLocked(time.Now())
			l.mu.Unlock()
		case <-l.ctx.Done():
			return
		}
	}
}

// handshake validates a follower's hello, registers its stream and builds
// the LeaderHello. It returns the replica and the first LSN to send.
func (l *leader) handshake(h *replicationv1.FollowerHello, stop context.CancelCauseFunc) (*replica, *replicationv1.LeaderHello, error) {
	return l.handshakeAgreed(h, stop, math.MaxUint64)
}

// handshakeAgreed is handshake where the logs are known to agree at most
// up to agreed (lastEntryCheck).
func (l *leader) handshakeAgreed(h *replicationv1.FollowerHello, stop context.CancelCauseFunc, agreed uint64) (*replica, *replicationv1.LeaderHello, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	id := h.GetNodeId()
	r := l.replicas[id]
	switch {
	case id == l.s.cfg.NodeID:
		return nil, nil, status.Errorf(codes.InvalidArgument, "node %d is this leader's own id", id)
	case r == nil:
		l.log.Error("refusing a follower with an unknown node id", "node_id", id, "peers", FormatPeers(l.s.cfg.Peers))
		return nil, nil, status.Errorf(codes.PermissionDenied,
			"node %d is not in the leader's --peers (%s)", id, FormatPeers(l.s.cfg.Peers))
	case r.connected:
		l.log.Error("refusing a second stream for a connected follower", "node_id", id)
		return nil, nil, status.Errorf(codes.AlreadyExists, "node %d is already connected to the leader", id)
	case l.closed:
		return nil, nil, status.Errorf(codes.Unavailable, "node %d is no longer the leader", l.s.cfg.NodeID)
	case l.bc == nil:
		return nil, nil, status.Error(codes.Unavailable, "the leader's broker is not attached yet; retry")
	}
	fEnd := h.GetPosition().GetLsn()
	fHist := epochHistory(h.GetEpochHistory())
	if fe := fHist.lastEpoch(); fe > l.epoch {
		// This leader is stale: never make a node of a newer epoch
		// truncate. Discovery makes this node step down.
		l.log.Warn("a follower has a newer epoch than this leader; refusing it", "node_id", id, "follower_epoch", fe, "epoch", l.epoch)
		l.s.noteEpoch(fe)
		return nil, nil, status.Errorf(codes.FailedPrecondition,
			"node %d leads epoch %d but node %d's WAL has epoch %d: this leader is stale", l.s.cfg.NodeID, l.epoch, id, fe)
	}
	x := min(divergencePoint(l.history, l.durable, fHist, fEnd), agreed)
	reply := &replicationv1.LeaderHello{
		ClusterId:     l.s.cfg.ClusterID,
		LeaderId:      l.s.cfg.NodeID,
		Epoch:         l.epoch,
		EpochHistory:  l.history.clone(),
		LeaderLastLsn: l.durable,
		CommitLsn:     l.followerCommitLocked(),
		UncleanEpoch:  l.s.knownUncleanEpoch(),
	}
	start := x + 1
	switch {
	case x < fEnd && start < h.GetFirstLsn():
		// The follower would have to truncate below its own first entry
		// (its WAL was re-cloned earlier): it wipes it and re-clones from
		// this leader's oldest entry, so that it also gets the state
		// snapshot entries that follow it (a replica started after LSN 1
		// learns topics and offsets from them).
		next := max(l.firstLocked(), 1)
		start = next
		reply.ResetTo = &next
		t := x // where it diverged: the follower checks what it loses
		reply.TruncateTo = &t
		l.log.Warn("follower diverged below its oldest entry; it will wipe its WAL and re-clone", "node_id", id,
			"follower_first_lsn", h.GetFirstLsn(), "follower_lsn", fEnd, "diverged_after", x, "next_lsn", next)
	case x < fEnd:
		t := x
		reply.TruncateTo = &t
		l.log.Warn("follower diverged from the leader; it will truncate", "node_id", id,
			"follower_lsn", fEnd, "truncate_to", x, "dropped_entries", fEnd-x)
	}
	if first := l.firstLocked(); start < first {
		next := first
		reply.ResetTo = &next
		start = next
		l.log.Warn("follower needs entries the leader's WAL no longer holds; it will re-clone",
			"node_id", id, "follower_lsn", fEnd, "leader_first_lsn", first)
	}
	reply.StartLsn = start
	if b := h.GetBroker(); b != nil && b.GetHost() != "" {
		b.NodeId = id
		if r.broker == nil || !equalBroker(r.broker, b) {
			r.broker = b
			l.version++
			if l.bc != nil {
				l.bc.setView(l.viewLocked())
			}
		}
	}
	reply.Cluster = l.clusterLocked()
	now := time.Now()
	r.connected, r.stop, r.connectedAt, r.leaving = true, stop, now, false
	r.sent, r.written, r.flushed, r.applied = start-1, start-1, start-1, start-1
	r.unverified = reply.TruncateTo != nil || reply.ResetTo != nil
	if r.unverified {
		// It drops entries first (ours reconnects, and its next hello is
		// checked again by lastEntryCheck): its entries up to start-1
		// agree with this leader's by epoch only, and one that refuses to
		// drop committed entries never acks. Until its first ack it is
		// not caught up and holds nothing past the commit point for sure,
		// so it neither joins the ISR nor moves the commit point.
		held := min(start-1, l.commit)
		r.written, r.flushed, r.applied = held, held, held
	}
	if start-1 < l.commit && r.inISR {
		// It comes back holding less than what was committed (its broker
		// restarted empty, or was re-cloned or truncated): it leaves the
		// ISR now instead of after replica-lag-time-max, so that it is
		// not elected without those entries. It joins again once its
		// flushed LSN reaches the commit point.
		r.lastCaughtUp = time.Time{}
		l.log.Warn("follower holds less than the commit point; it leaves the ISR until it catches up", "node_id", id,
			"follower_lsn", start-1, "commit_lsn", l.commit)
	}
	r.lastHeard, r.endAtLastAck, r.lastAckTime = now, l.durable, now
	l.updateLocked(now)
	l.broadcastLocked()
	l.s.metrics.followerConnected(id)
	l.log.Info("follower connected", "node_id", id, "follower_lsn", fEnd, "start_lsn", start, "leader_lsn", l.durable)
	return r, reply, nil
}

// lastEntryCheck compares the follower's last entry with the leader's
// entry at the same LSN (FollowerHello.last_checksum) when the epoch
// histories say the two logs agree up to it, and returns the LSN up to
// which they may still agree: MaxUint64 when the entries match or there is
// nothing to compare, otherwise the LSN before that epoch's entries (the
// later of the two logs' starts of it). Entries with the same LSN and
// epoch differ only when two nodes led the same epoch (two promotions at
// once without etcd) or when this leader lost entries it had replicated
// (an OS crash under --fsync interval or none) and wrote others in their
// place; the follower then truncates, reconnects, and is checked again one
// epoch lower, until the logs agree. It runs before the handshake because
// it asks the leader's broker for the checksum (a round trip on the link).
func (l *leader) lastEntryCheck(ctx context.Context, h *replicationv1.FollowerHello) uint64 {
	want := h.LastChecksum
	fEnd := h.GetPosition().GetLsn()
	if want == nil || fEnd == 0 {
		return math.MaxUint64
	}
	fHist := epochHistory(h.GetEpochHistory())
	l.mu.Lock()
	hist, bc := l.history.clone(), l.bc
	x := divergencePoint(l.history, l.durable, fHist, fEnd)
	first := l.firstLocked()
	l.mu.Unlock()
	if x != fEnd || fEnd < first || bc == nil {
		return math.MaxUint64 // truncated below fEnd anyway, or nothing here to compare with
	}
	res, err := bc.checksum(ctx, fEnd, fEnd)
	if err == nil && res.GetError() != "" {
		err = errors.New(res.GetError())
	}
	if err != nil {
		l.log.Warn("could not read this leader's entry to compare with the follower's last one; streaming without the check",
			"node_id", h.GetNodeId(), "lsn", fEnd, "error", err)
		return math.MaxUint64
	}
	if res.GetChecksum() == *want {
		return math.MaxUint64
	}
	below := max(hist.startOf(fEnd), fHist.startOf(fEnd))
	agreed := uint64(0)
	if below > 0 {
		agreed = below - 1
	}
	epoch, _ := hist.epochAt(fEnd)
	l.log.Error("the follower's entry differs from the leader's at the same LSN and epoch (two leaders of one epoch, or a leader that lost replicated entries); the follower drops that epoch's entries and gets the leader's",
		"node_id", h.GetNodeId(), "lsn", fEnd, "epoch", epoch, "agreed_up_to", agreed)
	return agreed
}

// commitEntryCheck reports whether this leader holds the follower's entry
// at the commit point the follower knows (FollowerHello.commit_lsn), with
// the same checksum: then a truncation below that point loses nothing, the
// follower gets the same entries back (LeaderHello.commit_agrees). It asks
// the broker only when the logs may diverge below that point (agreed is
// lastEntryCheck's answer).
func (l *leader) commitEntryCheck(ctx context.Context, h *replicationv1.FollowerHello, agreed uint64) bool {
	c, want := h.GetCommitLsn(), h.CommitChecksum
	if c == 0 || want == nil {
		return false
	}
	l.mu.Lock()
	x := min(divergencePoint(l.history, l.durable, epochHistory(h.GetEpochHistory()), h.GetPosition().GetLsn()), agreed)
	first, durable, bc := l.firstLocked(), l.durable, l.bc
	l.mu.Unlock()
	if x >= c || c < first || c > durable || bc == nil {
		return false // no truncation below it, or this leader does not hold it
	}
	res, err := bc.checksum(ctx, c, c)
	if err == nil && res.GetError() != "" {
		err = errors.New(res.GetError())
	}
	if err != nil {
		l.log.Warn("could not read this leader's entry at the follower's commit point", "node_id", h.GetNodeId(), "lsn", c, "error", err)
		return false
	}
	return res.GetChecksum() == *want
}

func equalBroker(a, b *linkv1.BrokerInfo) bool {
	return a.GetNodeId() == b.GetNodeId() && a.GetHost() == b.GetHost() && a.GetPort() == b.GetPort() && a.GetRack() == b.GetRack()
}

// disconnected marks r's stream gone.
func (l *leader) disconnected(r *replica, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	r.connected, r.stop = false, nil
	l.updateLocked(time.Now())
	if errors.Is(err, errFollowerLeft) {
		l.log.Info("follower disconnected", "node_id", r.id, "flushed_lsn", r.flushed, "error", err)
		return
	}
	l.log.Warn("follower disconnected", "node_id", r.id, "flushed_lsn", r.flushed, "error", err)
}

// onAck records a follower's progress.
func (l *leader) onAck(r *replica, a *replicationv1.Ack) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if a.GetFlushedLsn() > r.sent || a.GetWrittenLsn() > r.sent || a.GetAppliedLsn() > r.sent {
		return status.Errorf(codes.InvalidArgument, "ack (written %d, flushed %d, applied %d) beyond the last LSN sent (%d)",
			a.GetWrittenLsn(), a.GetFlushedLsn(), a.GetAppliedLsn(), r.sent)
	}
	now := time.Now()
	if a.GetAppliedLsn() > r.applied {
		// The oldest entry this ack newly covers waited longest.
		r.applyLag = 0
		if t, ok := l.durTimes.since(r.applied + 1); ok {
			r.applyLag = now.Sub(t)
			l.s.metrics.applyLag(r.id, r.applyLag)
		}
	}
	r.written = max(r.written, a.GetWrittenLsn())
	r.flushed = max(r.flushed, a.GetFlushedLsn())
	r.applied = max(r.applied, a.GetAppliedLsn())
	r.lastHeard = now
	r.unverified = false // it dropped what it was told to and says where it is
	// Kafka's lastCaughtUpTime: caught up now, or caught up to where the
	// leader was at the previous ack (so that a follower under steady load,
	// never exactly at the end, still counts as keeping up).
	if r.flushed >= l.durable {
		r.lastCaughtUp = now
	} else if r.flushed >= r.endAtLastAck && r.lastAckTime.After(r.lastCaughtUp) {
		r.lastCaughtUp = r.lastAckTime
	}
	r.endAtLastAck, r.lastAckTime = l.durable, now
	l.updateLocked(now)
	select {
	case r.ackSig <- struct{}{}:
	default:
	}
	return nil
}

// errFollowerLeft ends a stream whose follower sent FollowerLeaving.
var errFollowerLeft = errors.New("sidecar: the follower is leaving")

// onLeaving takes a follower that stops on purpose out of the ISR at once
// (FollowerLeaving), as Kafka's controlled shutdown does, instead of
// after replica-lag-time-max: acks=all writes then stop waiting for it. With
// etcd the commit point still waits for it until the smaller ISR is
// published (pinnedISR).
func (l *leader) onLeaving(r *replica, reason string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.log.Info("follower is stopping on purpose; it leaves the ISR now", "node_id", r.id, "reason", reason,
		"flushed_lsn", r.flushed, "leader_lsn", l.durable, "was_in_isr", r.inISR)
	r.leaving = true
	r.lastCaughtUp = time.Time{} // back, it joins again once caught up
	l.updateLocked(time.Now())
}

// onHeartbeat records that the follower is alive.
func (l *leader) onHeartbeat(r *replica) {
	l.mu.Lock()
	defer l.mu.Unlock()
	r.lastHeard = time.Now()
}

// entriesFrom returns entries from `from` on: about maxBytes from the cache,
// or, when the cache no longer holds `from`, about max(maxBytes,
// replayBytes) replayed from the broker's WAL. No entries means nothing new.
func (l *leader) entriesFrom(ctx context.Context, from uint64, maxBytes, replayBytes int) ([]*linkv1.Entry, error) {
	if ents, ok := l.cache.get(from, maxBytes); ok {
		return ents, nil
	}
	l.mu.Lock()
	bc := l.bc
	l.mu.Unlock()
	if bc == nil {
		return nil, status.Error(codes.Unavailable, "the leader's broker detached")
	}
	ents, err := bc.replay(ctx, from, max(maxBytes, replayBytes))
	var rse *replayStatusError
	if errors.As(err, &rse) && rse.Status == linkv1.ReplayStatus_REPLAY_STATUS_COMPACTED {
		l.mu.Lock()
		l.first = max(l.first, rse.FirstLSN)
		l.mu.Unlock()
		return nil, status.Errorf(codes.FailedPrecondition,
			"the leader's WAL no longer holds LSN %d (it starts at %d); reconnect to re-clone", from, rse.FirstLSN)
	}
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "reading the leader's WAL from LSN %d: %v", from, err)
	}
	return ents, nil
}

// commitOnlyDelay is how long a new commit point may wait for entries to
// travel with before the leader sends it to a follower on its own; it only
// waits while batches are sent more often than this.
const commitOnlyDelay = 2 * time.Millisecond

// catchupProgressWindows: a throttled follower's catch-up is checked for
// progress over windows of this many --replica-lag-time-max (30 s by
// default; throttle.go's catchupProgress).
const catchupProgressWindows = 3

// replayAheadBatches: a follower that needs entries older than the cache
// has them read from the broker's WAL this many batches at a time, then
// sent a batch at a time. Each replay is a round trip through the broker,
// which waits its turn on a machine busy with producers; one batch per
// round trip held such a follower to a few dozen batches a second (about
// 45 MB/s on the 2-core test machine while the leader took writes at full
// speed). It costs up to this many batches of memory per follower catching
// up.
const replayAheadBatches = 8

// takeBatch splits off the first entries of ents, about maxBytes of
// payload (at least one entry when there is one), and returns the rest.
func takeBatch(ents []*linkv1.Entry, maxBytes int) (batch, rest []*linkv1.Entry) {
	size, n := 0, 0
	for n < len(ents) && (n == 0 || size+len(ents[n].GetPayload()) <= maxBytes) {
		size += len(ents[n].GetPayload())
		n++
	}
	if n == len(ents) {
		return ents, nil
	}
	return ents[:n:n], ents[n:]
}

// inflight is one batch sent and not yet acknowledged.
type inflight struct {
	last  uint64
	bytes int
}

// serve streams entries to one follower until the stream ends. It is the
// only goroutine that sends on stream; recvErr delivers the receiver's end.
func (l *leader) serve(ctx context.Context, stream replicationv1.ReplicationService_StreamServer, r *replica, start uint64, recvErr <-chan error) error {
	cfg := l.s.cfg
	next := start
	var window []inflight
	windowBytes := 0
	var sentCommit uint64
	var sentVersion uint64
	lastSend := time.Now()
	tick := time.NewTicker(min(cfg.HeartbeatInterval, time.Second))
	defer tick.Stop()
	// While entries flow faster than one batch per commitOnlyDelay, a new
	// commit point waits (at most commitOnlyDelay) to go to the follower
	// with the next entries; that saves a message, and the follower's
	// message to its broker, per batch. When batches are further apart
	// than that, the next one is not coming soon, and the commit point goes
	// at once, alone, in a heartbeat.
	var commitSince time.Time // when the commit point first differed from sentCommit
	var lastEntries time.Time
	entriesGap := time.Duration(math.MaxInt64) // between the last two batches sent
	commitDue := time.NewTimer(time.Hour)
	commitDue.Stop()
	defer commitDue.Stop()
	// throttleDue ends a wait for --catchup-bytes-per-sec.
	throttleDue := time.NewTimer(time.Hour)
	throttleDue.Stop()
	defer throttleDue.Stop()
	holdBack := false    // the next batch waits for throttleDue
	var sentBytes uint64 // payload bytes sent on this stream
	// replayed holds entries from next on, fetched and not sent yet: a
	// replay from the broker's WAL reads replayAheadBatches at a time, and
	// they go out a batch at a time (a cache hit is one batch).
	var replayed []*linkv1.Entry
	var progress catchupProgress
	progressWindow := catchupProgressWindows * cfg.ReplicaLagTimeMax

	send := func(m *replicationv1.StreamResponse) error {
		if err := stream.Send(m); err != nil {
			return err
		}
		lastSend = time.Now()
		return nil
	}
	for {
		l.mu.Lock()
		changed := l.changed
		commit, version, durable, epoch, took := l.followerCommitLocked(), l.version, l.durable, l.epoch, l.tookBytes
		flushed, lastHeard, inISR := r.flushed, r.lastHeard, r.inISR
		var cluster *replicationv1.ClusterUpdate
		if version != sentVersion {
			cluster = l.clusterLocked()
		}
		l.mu.Unlock()

		for len(window) > 0 && window[0].last <= flushed {
			windowBytes -= window[0].bytes
			window = window[1:]
		}
		if time.Since(lastHeard) > cfg.PeerTimeout {
			return status.Errorf(codes.DeadlineExceeded, "nothing heard from node %d for %s (--peer-timeout)", r.id, cfg.PeerTimeout)
		}
		if cluster != nil {
			if err := send(&replicationv1.StreamResponse{Payload: &replicationv1.StreamResponse_Cluster{Cluster: cluster}}); err != nil {
				return err
			}
			sentVersion = version
		}
		throttled := l.catchup != nil && !inISR
		wasHeld := holdBack
		holdBack = false
		if throttled && next <= durable && windowBytes < cfg.WindowBytes {
			if d := l.catchup.wait(time.Now()); d > 0 {
				holdBack = true
				throttleDue.Reset(d)
				if !wasHeld {
					l.s.metrics.catchupThrottled(r.id)
				}
			}
		}
		if throttled {
			if tookIn, sentIn, over, behind := progress.observe(time.Now(), progressWindow, took, sentBytes, holdBack); behind {
				secs := over.Seconds()
				l.log.Warn("follower is not catching up: the leader takes in more bytes per second than --catchup-bytes-per-sec lets it receive, so it stays out of the ISR until the limit is raised above the produce rate or producers slow down",
					"follower", r.id, "received_bytes_per_sec", int64(float64(sentIn)/secs), "leader_bytes_per_sec", int64(float64(tookIn)/secs),
					"catchup_bytes_per_sec", l.s.cfg.CatchupBytesPerSec, "over", over.Round(time.Millisecond))
				l.s.metrics.catchupNotGaining(r.id)
			}
		} else {
			progress = catchupProgress{}
		}
		if next <= durable && windowBytes < cfg.WindowBytes && !holdBack {
			maxBytes := min(cfg.BatchBytes, cfg.WindowBytes-windowBytes)
			if len(replayed) == 0 {
				var err error
				if replayed, err = l.entriesFrom(ctx, next, maxBytes, replayAheadBatches*cfg.BatchBytes); err != nil {
					return err
				}
			}
			var ents []*linkv1.Entry
			ents, replayed = takeBatch(replayed, maxBytes)
			if len(ents) > 0 {
				size := 0
				for _, e := range ents {
					size += len(e.GetPayload())
				}
				// Record what is sent before sending: the follower's ack can
				// reach the receiver goroutine before Send returns here.
				l.mu.Lock()
				r.sent = ents[len(ents)-1].GetLsn()
				l.mu.Unlock()
				if err := send(&replicationv1.StreamResponse{Payload: &replicationv1.StreamResponse_Entries{Entries: &replicationv1.EntriesBatch{
					Entries: ents, CommitLsn: commit}}}); err != nil {
					return err
				}
				sentCommit, commitSince = commit, time.Time{}
				if !lastEntries.IsZero() {
					entriesGap = lastSend.Sub(lastEntries)
				}
				lastEntries = lastSend // set by send
				l.s.metrics.sent(r.id, size)
				sentBytes += uint64(size)
				if throttled {
					l.catchup.charge(lastSend, size)
				}
				last := ents[len(ents)-1].GetLsn()
				window = append(window, inflight{last: last, bytes: size})
				windowBytes += size
				next = last + 1
				continue
			}
		}
		now := time.Now()
		sendHeartbeat := now.Sub(lastSend) >= cfg.HeartbeatInterval
		if commit != sentCommit {
			if commitSince.IsZero() {
				commitSince = now
			}
			if wait := commitOnlyDelay - now.Sub(commitSince); wait > 0 && !sendHeartbeat && entriesGap < commitOnlyDelay {
				commitDue.Reset(wait)
			} else {
				sendHeartbeat = true
			}
		}
		if sendHeartbeat {
			if err := send(&replicationv1.StreamResponse{Payload: &replicationv1.StreamResponse_Heartbeat{Heartbeat: &replicationv1.LeaderHeartbeat{
				SentUnixNanos: time.Now().UnixNano(), LeaderLastLsn: durable, CommitLsn: commit, Epoch: epoch}}}); err != nil {
				return err
			}
			sentCommit, commitSince = commit, time.Time{}
			commitDue.Stop()
		}
		select {
		case <-changed:
		case <-r.ackSig:
		case <-commitDue.C:
		case <-throttleDue.C:
		case <-tick.C:
		case err := <-recvErr:
			return err
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
}

// replicationServer implements tandem.replication.v1.ReplicationService.
type replicationServer struct {
	replicationv1.UnimplementedReplicationServiceServer
	s *Sidecar
}

// Stream serves one follower.
func (rs *replicationServer) Stream(stream replicationv1.ReplicationService_StreamServer) error {
	s := rs.s
	first, err := recvWithTimeout(stream.Context(), stream.Recv, s.cfg.PeerTimeout)
	if err != nil {
		return err
	}
	hello := first.GetHello()
	if hello == nil {
		s.log.Warn("replication stream did not start with a hello", "got", fmt.Sprintf("%T", first.GetPayload()))
		return status.Error(codes.InvalidArgument, "tandem.replication.v1: the first message must be a FollowerHello")
	}
	if err := validateFollowerHello(hello, s.cfg.ClusterID, s.cfg.NodeID); err != nil {
		s.log.Error("refusing follower", "node_id", hello.GetNodeId(), "error", status.Convert(err).Message())
		return err
	}
	l, f := s.roles()
	if l == nil {
		return notLeaderError(s.cfg.NodeID, f, s.cfg.Peers)
	}
	ctx, cancel := context.WithCancelCause(stream.Context())
	defer cancel(nil)
	stopOnShutdown := context.AfterFunc(s.ctx, func() { cancel(errors.New("the leader's sidecar is shutting down")) })
	defer stopOnShutdown()
	agreed := l.lastEntryCheck(ctx, hello)
	commitAgrees := l.commitEntryCheck(ctx, hello, agreed)
	r, reply, err := l.handshakeAgreed(hello, cancel, agreed)
	if err != nil {
		return err
	}
	reply.CommitAgrees = commitAgrees
	if err := stream.Send(&replicationv1.StreamResponse{Payload: &replicationv1.StreamResponse_Hello{Hello: reply}}); err != nil {
		l.disconnected(r, err)
		return err
	}
	recvErr := make(chan error, 1)
	go func() {
		for {
			m, err := stream.Recv()
			if err != nil {
				recvErr <- err
				return
			}
			switch p := m.GetPayload().(type) {
			case *replicationv1.StreamRequest_Ack:
				if err := l.onAck(r, p.Ack); err != nil {
					recvErr <- err
					return
				}
			case *replicationv1.StreamRequest_Heartbeat:
				l.onHeartbeat(r)
			case *replicationv1.StreamRequest_Leaving:
				l.onLeaving(r, p.Leaving.GetReason())
				recvErr <- errFollowerLeft
				return
			default:
				recvErr <- status.Errorf(codes.InvalidArgument, "unexpected %T after the hello", m.GetPayload())
				return
			}
		}
	}()
	err = l.serve(ctx, stream, r, reply.GetStartLsn(), recvErr)
	l.disconnected(r, err)
	if errors.Is(err, errFollowerLeft) {
		return nil
	}
	if st, ok := status.FromError(err); ok && st.Code() != codes.Unknown {
		return err
	}
	msg := err.Error()
	if cause := context.Cause(ctx); cause != nil {
		msg = cause.Error()
	}
	return status.Error(codes.Unavailable, msg)
}

// notLeaderError refuses a replication stream on a node that does not lead;
// f is its follower role, if it has one. During a failover the followers
// dial the node they last knew as leader until they learn of the next one,
// so this is a transient refusal: UNAVAILABLE, as for a leader that has
// just stopped leading, and the follower retries with backoff. It names the
// leader this node follows, if it knows one.
func notLeaderError(self int32, f *follower, peers map[int32]string) error {
	if f == nil || f.leaderID <= 0 {
		return status.Errorf(codes.Unavailable, "node %d is not the leader and knows of none yet (an election may be running); retry", self)
	}
	return status.Errorf(codes.Unavailable, "node %d is not the leader: it follows node %d at %s", self, f.leaderID, peers[f.leaderID])
}

// validateFollowerHello checks what can be checked without the leader's
// state. A cluster id mismatch is FAILED_PRECONDITION with both ids named.
func validateFollowerHello(h *replicationv1.FollowerHello, clusterID string, leaderID int32) error {
	if h.GetClusterId() != clusterID {
		return status.Errorf(codes.FailedPrecondition,
			"cluster id mismatch: node %d (leader) is in cluster %q but node %d says it is in cluster %q (check --cluster-id on both)",
			leaderID, clusterID, h.GetNodeId(), h.GetClusterId())
	}
	if h.GetNodeId() <= 0 {
		return status.Errorf(codes.InvalidArgument, "hello has no valid node id (%d)", h.GetNodeId())
	}
	sid := h.GetStreamId()
	if sid != "" && sid != DefaultStreamID {
		return status.Errorf(codes.InvalidArgument, "unknown stream id %q (only %q exists)", sid, DefaultStreamID)
	}
	if p := h.GetPosition(); p.GetStreamId() != "" && p.GetStreamId() != DefaultStreamID {
		return status.Errorf(codes.InvalidArgument, "unknown position stream id %q", p.GetStreamId())
	}
	last := h.GetPosition().GetLsn()
	if err := validateHistory(h.GetEpochHistory(), last); err != nil {
		return err
	}
	if e, ok := epochHistory(h.GetEpochHistory()).epochAt(last); last > 0 && ok && e != h.GetPosition().GetEpoch() {
		return status.Errorf(codes.InvalidArgument, "position epoch %d does not match the epoch history (%d at LSN %d)",
			h.GetPosition().GetEpoch(), e, last)
	}
	return nil
}

// firstLocked is the oldest LSN in this leader broker's WAL, as far as the
// sidecar knows: from the broker's hello, raised by each retention
// deletion it reports (StorageState) and by a replay that found entries
// gone. Caller holds l.mu.
func (l *leader) firstLocked() uint64 {
	if l.bc != nil {
		return max(l.first, l.bc.firstLSN())
	}
	return l.first
}

package sidecar

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	linkv1 "github.com/tandem-io/tandem/gen/tandem/link/v1"
	replicationv1 "github.com/tandem-io/tandem/gen/tandem/replication/v1"
)

// Reconnect backoff of a follower: capped exponential with jitter.
const (
	followerMinBackoff = 100 * time.Millisecond
	followerMaxBackoff = 5 * time.Second
)

// follower is the follower sidecar: it streams from the leader into its
// broker while the broker is attached.
type follower struct {
	s          *Sidecar
	log        hclog.Logger
	ctx        context.Context // ends when this node stops following this leader (role.go)
	leaderID   int32           // 0 while the leader is unknown (an election runs)
	leaderAddr string

	// heardAt is when the last message from the leader arrived (unix ns).
	heardAt atomic.Int64

	mu           sync.Mutex
	streaming    bool
	epoch        uint32
	leaderLast   uint64
	commit       uint64
	written      uint64
	applied      uint64
	lastCaughtUp time.Time
	lastErr      string
	cluster      *replicationv1.ClusterUpdate
}

func newFollower(s *Sidecar) *follower {
	return &follower{
		s:          s,
		log:        s.log.Named("follower"),
		leaderID:   s.cfg.LeaderID,
		leaderAddr: s.cfg.Peers[s.cfg.LeaderID],
	}
}

// run follows the leader whenever the broker is attached, until shutdown.
func (f *follower) run() {
	if f.leaderAddr == "" {
		f.log.Info("no leader known yet; waiting for one")
	}
	for {
		bc, sig := f.s.currentBroker()
		if bc == nil || bc.ctx.Err() != nil {
			select {
			case <-sig:
				continue
			case <-f.ctx.Done():
				return
			}
		}
		if f.leaderAddr == "" {
			// No leader to stream from (an election runs): the broker
			// must still stop taking writes.
			var retry <-chan time.Time
			if err := bc.fence(f.ctx, f.fenceView(bc)); err != nil && f.ctx.Err() == nil {
				f.log.Warn("could not confirm the broker's follower view; retrying", "error", err)
				retry = time.After(followerMaxBackoff)
			}
			select {
			case <-sig:
			case <-retry:
			case <-f.ctx.Done():
				return
			}
			continue
		}
		f.followWhileAttached(bc)
		if f.ctx.Err() != nil {
			return
		}
	}
}

// followWhileAttached keeps a stream to the leader up (with backoff) until
// the broker detaches or the sidecar stops.
func (f *follower) followWhileAttached(bc *brokerConn) {
	ctx, cancel := context.WithCancel(f.ctx)
	defer cancel()
	stop := context.AfterFunc(bc.ctx, cancel)
	defer stop()
	// A broker that led before (its sidecar died, or this node stepped
	// down) still has a leader view: it must refuse writes before anything
	// else, and must not take the leader's entries as a leader (role.go).
	if err := bc.fence(ctx, f.fenceView(bc)); err != nil {
		f.log.Warn("could not confirm the broker's follower view", "error", err)
		return
	}
	delay := followerMinBackoff
	for attempt := 1; ctx.Err() == nil; attempt++ {
		f.s.metrics.streamAttempt()
		streamed, err := f.streamOnce(ctx, bc)
		f.mu.Lock()
		f.streaming = false
		if err != nil {
			f.lastErr = err.Error()
		}
		f.mu.Unlock()
		if ctx.Err() != nil {
			return
		}
		if streamed {
			delay, attempt = followerMinBackoff, 1
		}
		d := delay/2 + rand.N(delay/2+1)
		switch {
		case status.Code(err) == codes.FailedPrecondition || status.Code(err) == codes.PermissionDenied:
			f.log.Error("the leader refused this follower", "leader_id", f.leaderID, "leader", f.leaderAddr,
				"error", status.Convert(err).Message(), "retry_in", d.Round(time.Millisecond))
		case streamed || attempt == 1 || attempt%10 == 0:
			f.log.Warn("replication stream to the leader ended; reconnecting", "leader_id", f.leaderID,
				"leader", f.leaderAddr, "attempt", attempt, "error", err, "retry_in", d.Round(time.Millisecond))
		default:
			f.log.Debug("cannot reach the leader; retrying", "leader", f.leaderAddr, "attempt", attempt, "error", err)
		}
		delay = min(delay*2, followerMaxBackoff)
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return
		}
	}
}

// streamOnce runs one replication stream. streamed reports whether the
// leader accepted the hello (which resets the backoff).
func (f *follower) streamOnce(ctx context.Context, bc *brokerConn) (streamed bool, err error) {
	cfg := f.s.cfg
	// Entries handed to the broker on the previous stream must be answered
	// before the hello, so that the position we announce is the real one.
	last, hist, err := bc.waitDrained(ctx)
	if err != nil {
		return false, err
	}
	conn, err := grpc.NewClient(f.leaderAddr, clientOptions(f.s, "peer")...)
	if err != nil {
		return false, fmt.Errorf("sidecar: dialing leader %s: %w", f.leaderAddr, err)
	}
	defer conn.Close()
	sctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stream, err := replicationv1.NewReplicationServiceClient(conn).Stream(sctx)
	if err != nil {
		return false, err
	}
	epoch, _ := hist.epochAt(last)
	h := bc.hello
	// The checksum of the last entry lets the leader tell an entry of the
	// same LSN and epoch that is not the same (lastEntryCheck).
	var lastSum *uint64
	if last > 0 && last >= h.GetFirstLsn() {
		if res, err := bc.checksum(ctx, last, last); err != nil || res.GetError() != "" {
			f.log.Debug("no checksum of the last entry for the hello", "lsn", last, "error", err, "broker_error", res.GetError())
		} else {
			sum := res.GetChecksum()
			lastSum = &sum
		}
	}
	hello := &replicationv1.FollowerHello{
		ClusterId:    cfg.ClusterID,
		NodeId:       cfg.NodeID,
		StreamId:     DefaultStreamID,
		Position:     &replicationv1.Position{StreamId: DefaultStreamID, Epoch: epoch, Lsn: last},
		EpochHistory: hist,
		FirstLsn:     h.GetFirstLsn(),
		Broker:       &linkv1.BrokerInfo{NodeId: cfg.NodeID, Host: h.GetAdvertisedHost(), Port: h.GetAdvertisedPort(), Rack: h.GetRack()},
		LastChecksum: lastSum,
	}
	if err := stream.Send(&replicationv1.StreamRequest{Payload: &replicationv1.StreamRequest_Hello{Hello: hello}}); err != nil {
		return false, err
	}
	first, err := recvWithTimeout(sctx, stream.Recv, cfg.PeerTimeout)
	if err != nil {
		return false, err
	}
	lh := first.GetHello()
	if lh == nil {
		return false, fmt.Errorf("sidecar: the leader answered the hello with %T", first.GetPayload())
	}
	if lh.GetClusterId() != cfg.ClusterID {
		return false, status.Errorf(codes.FailedPrecondition,
			"cluster id mismatch: this node (%d) is in cluster %q but the leader at %s says it is in cluster %q (check --cluster-id on both)",
			cfg.NodeID, cfg.ClusterID, f.leaderAddr, lh.GetClusterId())
	}
	if mine := hist.lastEpoch(); lh.GetEpoch() < mine {
		f.s.noteEpoch(mine)
		return false, status.Errorf(codes.FailedPrecondition,
			"node %d at %s leads epoch %d but this node's WAL already has epoch %d: refusing to follow a stale leader",
			lh.GetLeaderId(), f.leaderAddr, lh.GetEpoch(), mine)
	}
	if lh.GetLeaderId() != f.leaderID {
		return false, fmt.Errorf("sidecar: %s answered as leader %d, expected %d", f.leaderAddr, lh.GetLeaderId(), f.leaderID)
	}
	switch {
	case lh.ResetTo != nil:
		f.log.Warn("the leader no longer holds the entries this node needs; wiping the WAL to re-clone",
			"last_lsn", last, "next_lsn", lh.GetResetTo())
		if err := bc.reset(sctx, lh.GetResetTo()); err != nil {
			return true, err
		}
	case lh.TruncateTo != nil && lh.GetTruncateTo() < last:
		f.mu.Lock()
		known := f.commit
		f.mu.Unlock()
		if lh.GetTruncateTo() < known {
			// Only possible when the leader lost entries it had committed
			// (for example --fsync interval or none and a power failure).
			f.log.Error("the leader's log is shorter than the commit point this node knew: acknowledged entries are being dropped",
				"commit_lsn", known, "truncate_to", lh.GetTruncateTo(), "lost_entries", known-lh.GetTruncateTo())
		}
		f.log.Warn("this node's WAL diverged from the leader's; truncating", "last_lsn", last,
			"truncate_to", lh.GetTruncateTo(), "dropped_entries", last-lh.GetTruncateTo())
		if err := bc.truncate(sctx, lh.GetTruncateTo()); err != nil {
			return true, err
		}
		// Reconnect rather than stream on: the next hello carries the
		// checksum of the new last entry, so the leader checks that the
		// logs really agree there (lastEntryCheck).
		return true, fmt.Errorf("sidecar: truncated this node's WAL after LSN %d; reconnecting so that the leader checks the entry there", lh.GetTruncateTo())
	}
	last, _, err = bc.waitDrained(sctx)
	if err != nil {
		return true, err
	}
	if lh.GetStartLsn() != last+1 {
		return true, fmt.Errorf("sidecar: the leader starts at LSN %d but the broker's WAL ends at %d", lh.GetStartLsn(), last)
	}
	f.log.Info("streaming from the leader", "leader_id", lh.GetLeaderId(), "epoch", lh.GetEpoch(),
		"from_lsn", lh.GetStartLsn(), "leader_lsn", lh.GetLeaderLastLsn(), "commit_lsn", lh.GetCommitLsn())

	ackSig := make(chan struct{}, 1)
	signal := func() {
		select {
		case ackSig <- struct{}{}:
		default:
		}
	}
	f.mu.Lock()
	f.streaming, f.lastErr = true, ""
	f.heardAt.Store(time.Now().UnixNano()) // the leader's hello
	f.epoch, f.leaderLast, f.commit = lh.GetEpoch(), lh.GetLeaderLastLsn(), lh.GetCommitLsn()
	f.written, f.applied = last, last
	f.noteProgressLocked()
	f.mu.Unlock()
	f.setCluster(bc, lh.GetCluster(), lh.GetEpoch())
	// The broker holds the leader's entries up to last (the handshake
	// checked them, and truncated what differed), and gets every later one
	// from this stream: a commit point is forwarded up to there only, so
	// that it never covers entries of the broker's own that the leader
	// never had (written after the position it announced, refused below).
	verified := last
	f.setCommit(bc, lh.GetCommitLsn(), verified)

	bc.mu.Lock()
	bc.onApplied = func(lsn uint64) {
		f.mu.Lock()
		f.applied = max(f.applied, lsn)
		f.noteProgressLocked()
		f.mu.Unlock()
		signal()
	}
	// A refused batch ends the stream at once: the next one starts from
	// the broker's real position (waitDrained), whether or not the leader
	// has more entries to send that would run into the error.
	bc.onApplyErr = func(err error) { cancel(err) }
	bc.mu.Unlock()
	defer func() {
		bc.mu.Lock()
		bc.onApplied, bc.onApplyErr = nil, nil
		bc.mu.Unlock()
	}()

	// The sender: acks and heartbeats. The only goroutine that sends after
	// the hello.
	var wg sync.WaitGroup
	lastHeard := make(chan struct{}, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := f.sendAcks(sctx, stream, ackSig, lastHeard); err != nil {
			cancel(err)
		}
	}()
	defer wg.Wait()
	defer cancel(nil)

	next := last + 1
	for {
		m, err := stream.Recv()
		if err != nil {
			if cause := context.Cause(sctx); cause != nil && sctx.Err() != nil {
				return true, cause
			}
			return true, err
		}
		f.heardAt.Store(time.Now().UnixNano())
		select {
		case lastHeard <- struct{}{}:
		default:
		}
		f.s.metrics.heardLeader()
		switch p := m.GetPayload().(type) {
		case *replicationv1.StreamResponse_Entries:
			ents := p.Entries.GetEntries()
			received := 0
			for _, e := range ents {
				received += len(e.GetPayload())
			}
			f.s.metrics.receivedBytes(received)
			if err := validateEntries(ents, next, lh.GetEpoch()); err != nil {
				return true, err
			}
			if len(ents) > 0 {
				if err := bc.apply(sctx, ents); err != nil {
					return true, err
				}
				next = ents[len(ents)-1].GetLsn() + 1
				f.mu.Lock()
				f.written = next - 1
				f.leaderLast = max(f.leaderLast, next-1)
				f.mu.Unlock()
				// No ack for "written" alone: the ack sent when the broker
				// has flushed the entries (onApplied) reports both, and the
				// leader commits on flushed. One ack per batch instead of two.
			}
			if len(ents) > 0 {
				verified = next - 1
			}
			f.setCommit(bc, p.Entries.GetCommitLsn(), verified)
		case *replicationv1.StreamResponse_Heartbeat:
			hb := p.Heartbeat
			f.mu.Lock()
			f.leaderLast = max(f.leaderLast, hb.GetLeaderLastLsn())
			f.noteProgressLocked()
			f.mu.Unlock()
			f.setCommit(bc, hb.GetCommitLsn(), verified)
		case *replicationv1.StreamResponse_Cluster:
			f.setCluster(bc, p.Cluster, p.Cluster.GetEpoch())
		default:
			return true, fmt.Errorf("sidecar: unexpected %T from the leader", m.GetPayload())
		}
	}
}

// validateEntries checks that a batch from the leader continues the log.
func validateEntries(ents []*linkv1.Entry, next uint64, epoch uint32) error {
	for _, e := range ents {
		if e.GetLsn() != next {
			return fmt.Errorf("sidecar: the leader sent LSN %d where %d was expected", e.GetLsn(), next)
		}
		if e.GetEpoch() > epoch || e.GetEpoch() == 0 {
			return fmt.Errorf("sidecar: the leader sent LSN %d with epoch %d (leader epoch %d)", e.GetLsn(), e.GetEpoch(), epoch)
		}
		next++
	}
	return nil
}

// noteProgressLocked records that the follower is caught up when it is.
func (f *follower) noteProgressLocked() {
	if f.applied >= f.leaderLast {
		f.lastCaughtUp = time.Now()
	}
}

// setCommit records the leader's commit point lsn and forwards it to the
// broker, capped at upTo: the last LSN the broker is known to hold from
// this leader.
func (f *follower) setCommit(bc *brokerConn, lsn, upTo uint64) {
	f.mu.Lock()
	f.commit = max(f.commit, lsn)
	c := min(f.commit, upTo)
	f.mu.Unlock()
	bc.setCommit(c)
}

// setCluster passes the leader's cluster view to the broker.
func (f *follower) setCluster(bc *brokerConn, c *replicationv1.ClusterUpdate, epoch uint32) {
	if c == nil {
		return
	}
	f.mu.Lock()
	f.cluster = c
	f.mu.Unlock()
	bc.setView(&linkv1.ClusterView{
		Role:     linkv1.Role_ROLE_FOLLOWER,
		LeaderId: c.GetLeaderId(),
		Epoch:    max(epoch, c.GetEpoch()),
		Brokers:  c.GetBrokers(),
		Isr:      c.GetIsr(),
	})
}

// sendAcks sends an Ack whenever progress changes and a heartbeat every
// HeartbeatInterval, and ends the stream when the leader has been silent
// for PeerTimeout.
func (f *follower) sendAcks(ctx context.Context, stream replicationv1.ReplicationService_StreamClient, ackSig, heard <-chan struct{}) error {
	cfg := f.s.cfg
	tick := time.NewTicker(min(cfg.HeartbeatInterval, time.Second))
	defer tick.Stop()
	var sentW, sentA uint64
	lastSend, lastHeard := time.Now(), time.Now()
	for {
		select {
		case <-ackSig:
		case <-heard:
			lastHeard = time.Now()
			continue
		case <-tick.C:
		case <-ctx.Done():
			return nil
		}
		if time.Since(lastHeard) > cfg.PeerTimeout {
			return status.Errorf(codes.DeadlineExceeded, "nothing heard from the leader for %s (--peer-timeout)", cfg.PeerTimeout)
		}
		f.mu.Lock()
		w, a := f.written, f.applied
		f.mu.Unlock()
		if w != sentW || a != sentA {
			if err := stream.Send(&replicationv1.StreamRequest{Payload: &replicationv1.StreamRequest_Ack{Ack: &replicationv1.Ack{
				WrittenLsn: w, FlushedLsn: a, AppliedLsn: a}}}); err != nil {
				return err
			}
			sentW, sentA, lastSend = w, a, time.Now()
			continue
		}
		if time.Since(lastSend) >= cfg.HeartbeatInterval {
			if err := stream.Send(&replicationv1.StreamRequest{Payload: &replicationv1.StreamRequest_Heartbeat{Heartbeat: &replicationv1.FollowerHeartbeat{
				SentUnixNanos: time.Now().UnixNano(), AppliedLsn: a}}}); err != nil {
				return err
			}
			lastSend = time.Now()
		}
	}
}

// ready reports whether the follower streams within the lag bound.
func (f *follower) ready() (bool, string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.streaming {
		if f.lastErr != "" {
			return false, "not streaming from the leader: " + f.lastErr
		}
		return false, "not streaming from the leader"
	}
	// A leader sends something at least every heartbeat interval; a
	// follower that heard nothing for longer than the lag bound (or one and
	// a half intervals) is cut off, and the leader will drop it from the
	// ISR: not ready, long before --peer-timeout ends the stream.
	silent := max(f.s.cfg.ReplicaLagTimeMax, f.s.cfg.HeartbeatInterval*3/2)
	if since := time.Since(time.Unix(0, f.heardAt.Load())); since > silent {
		return false, fmt.Sprintf("nothing heard from the leader for %s", since.Round(time.Millisecond))
	}
	if f.applied < f.leaderLast && time.Since(f.lastCaughtUp) > f.s.cfg.ReplicaLagTimeMax {
		return false, fmt.Sprintf("lagging: applied %d of the leader's %d, last caught up %s ago",
			f.applied, f.leaderLast, time.Since(f.lastCaughtUp).Round(time.Millisecond))
	}
	return true, ""
}

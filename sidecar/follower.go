package sidecar

import (
	"context"
	"errors"
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
	// left: this node told the leader it stops following (FollowerLeaving)
	// and has not been answered a hello since. The leader took it out of
	// the ISR at once and may have committed entries without it, whatever
	// the last ISR in cluster says (promoteCheck).
	left bool
}

// Committed entries are never dropped.
//
// A follower truncates its WAL when its log diverged from the leader's
// (truncate_to). A clean leader holds every entry that was committed
// before it (it was in the ISR, or holds the most of the log), and a
// truncation below the follower's commit point then only drops entries
// that come back unchanged: the leader says so after comparing its entry at
// that point with the follower's (LeaderHello.commit_agrees). A leader
// that does not hold them is one whose WAL lost a tail (a power failure
// under --fsync interval or none, a data directory restored from an older
// copy or wiped) and that led again because no peer answered its start-up
// check (startcheck.go), or one promoted with --force. Only the second was
// asked for by an operator (LeaderHello.unclean_epoch newer than this
// node's last epoch). Entries no client was answered for (an epoch's
// no-op, a state snapshot) do not count: a node that led alone and wrote
// nothing else may drop its epoch's first entry. Otherwise the follower
// refuses, keeps its WAL, stays
// out of the ISR and logs what to do. PostgreSQL does the same in spirit:
// a standby that is ahead of its primary is not rewound automatically.
//
// The commit point a follower knows is what its broker said it served
// (brokerConn.served: its hello, after a restart from its checkpoint file,
// then every AppliedUpTo and ChecksumResult), not the leader's commit
// point, which may lie
// past entries of this WAL that the leader never had.

// firstAcknowledged returns the LSN of the first entry in (after, upTo] of
// this node's WAL that a client was answered for: any but an epoch's no-op
// and a state snapshot. 0 when there is none; upTo (the safe answer) when
// the entries cannot be read.
func firstAcknowledged(ctx context.Context, log hclog.Logger, bc *brokerConn, after, upTo uint64) uint64 {
	for from := after + 1; from <= upTo; {
		ents, err := bc.replay(ctx, from, 64<<10)
		if err == nil && len(ents) == 0 {
			err = fmt.Errorf("no entry at LSN %d", from)
		}
		if err != nil {
			log.Warn("could not read the committed entries the leader would drop", "from_lsn", from, "error", err)
			return upTo
		}
		for _, e := range ents {
			if e.GetLsn() > upTo {
				return 0
			}
			switch e.GetType() {
			case linkv1.EntryType_ENTRY_TYPE_NOOP, linkv1.EntryType_ENTRY_TYPE_STATE_SNAPSHOT:
			default:
				return e.GetLsn()
			}
		}
		from = ents[len(ents)-1].GetLsn() + 1
	}
	return 0
}

// errKeepsCommitted is the follower's refusal to drop committed entries.
var errKeepsCommitted = errors.New("sidecar: refusing to drop entries that were committed")

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
		// A broker that cannot write (a full disk) refuses every batch the
		// leader sends; the streams keep being accepted, but the retries
		// back off as if they were not, until an append works again.
		storageErr, _ := bc.storageFailure()
		if streamed && storageErr == "" {
			delay, attempt = followerMinBackoff, 1
		}
		d := delay/2 + rand.N(delay/2+1)
		switch {
		case storageErr != "":
			if attempt == 1 || attempt%10 == 0 {
				f.log.Warn("the broker cannot write the leader's entries; retrying with backoff until it can", "leader_id", f.leaderID,
					"attempt", attempt, "error", storageErr, "retry_in", d.Round(time.Millisecond))
			}
		case errors.Is(err, errKeepsCommitted):
			if attempt == 1 || attempt%10 == 0 {
				f.log.Error("not following the leader", "leader_id", f.leaderID, "error", err, "retry_in", d.Round(time.Millisecond))
			}
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
	// When this node stops following because its sidecar shuts down or its
	// broker detached, the stream outlives ctx by up to leaveGrace: the
	// sender first tells the leader (FollowerLeaving), which takes this
	// node out of the ISR at once and ends the call. A role change ends
	// the stream at once, saying nothing (see leaveReason).
	sctx, cancel := context.WithCancelCause(context.WithoutCancel(ctx))
	defer cancel(nil)
	stopGrace := context.AfterFunc(ctx, func() {
		if f.leaveReason(bc) == "" {
			cancel(context.Cause(ctx))
			return
		}
		t := time.AfterFunc(leaveGrace, func() { cancel(context.Cause(ctx)) })
		context.AfterFunc(sctx, func() { t.Stop() })
	})
	defer stopGrace()
	// work ends with ctx or the stream: what goes to the broker stops as
	// soon as this node stops following.
	work, workDone := context.WithCancel(ctx)
	defer workDone()
	defer context.AfterFunc(sctx, workDone)()
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
	// The commit point its broker served (the checksum answer above brought
	// it up to date), and its entry there, so that the leader can say
	// whether it holds the same (commitEntryCheck).
	known := min(bc.served.Load(), last)
	var commitLSN, commitSum *uint64
	if known > 0 && known >= h.GetFirstLsn() {
		if res, err := bc.checksum(ctx, known, known); err != nil || res.GetError() != "" {
			f.log.Debug("no checksum of the committed entry for the hello", "lsn", known, "error", err, "broker_error", res.GetError())
		} else {
			sum := res.GetChecksum()
			commitLSN, commitSum = &known, &sum
		}
	}
	hello := &replicationv1.FollowerHello{
		CommitLsn:      commitLSN,
		CommitChecksum: commitSum,
		ClusterId:      cfg.ClusterID,
		NodeId:         cfg.NodeID,
		StreamId:       DefaultStreamID,
		Position:       &replicationv1.Position{StreamId: DefaultStreamID, Epoch: epoch, Lsn: last},
		EpochHistory:   hist,
		FirstLsn:       h.GetFirstLsn(),
		Broker:         &linkv1.BrokerInfo{NodeId: cfg.NodeID, Host: h.GetAdvertisedHost(), Port: h.GetAdvertisedPort(), Rack: h.GetRack()},
		LastChecksum:   lastSum,
	}
	if err := stream.Send(&replicationv1.StreamRequest{Payload: &replicationv1.StreamRequest_Hello{Hello: hello}}); err != nil {
		return false, err
	}
	first, err := recvWithTimeout(work, stream.Recv, cfg.PeerTimeout)
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
	if u := lh.GetUncleanEpoch(); u > 0 {
		if err := f.s.noteUncleanEpoch(u); err != nil {
			f.log.Error("could not persist the leader's unclean epoch", "unclean_epoch", u, "error", err)
		}
	}
	// What the leader asks this node to drop, against what its broker
	// served as committed (see "Committed entries are never dropped").
	// reset_to alone is a follower behind the leader's retention: what it
	// holds is the leader's history, not a divergence.
	if lh.TruncateTo != nil && lh.GetTruncateTo() < known {
		keep := lh.GetTruncateTo()
		switch {
		case commitLSN != nil && lh.GetCommitAgrees():
			// The leader holds the same entry at the commit point: what goes
			// comes back unchanged.
		case lh.GetUncleanEpoch() > hist.lastEpoch():
			f.log.Error("dropping committed entries: the leader's lineage began with an unclean promotion after this node's last epoch",
				"commit_lsn", known, "keep_up_to", keep, "lost_entries", known-keep, "unclean_epoch", lh.GetUncleanEpoch(),
				"wal_last_epoch", hist.lastEpoch())
		case firstAcknowledged(ctx, f.log, bc, keep, known) == 0:
			// Only entries no client was answered for (the first entry of
			// an epoch this node led alone, say): nothing acknowledged goes.
			f.log.Info("dropping committed entries that no client was answered for", "commit_lsn", known, "keep_up_to", keep)
		default:
			keepIt := fmt.Sprintf("stop node %d's pair and promote the node that holds the most (tandemctl promote)", lh.GetLeaderId())
			giveUp := "promote a node with --force, or wipe this node's data directory so that it re-clones from the leader"
			if len(cfg.EtcdEndpoints) > 0 {
				keepIt = fmt.Sprintf("stop node %d's pair and delete the ISR it published (tandemctl forget-isr --etcd-endpoints ... --etcd-prefix %s): the node that holds the most is elected", lh.GetLeaderId(), cfg.EtcdPrefix)
				giveUp = "wipe this node's data directory so that it re-clones from the leader"
			}
			return false, fmt.Errorf("%w: leader node %d (epoch %d, its WAL to LSN %d) would have this node drop its entries after LSN %d, "+
				"but this node served entries up to LSN %d as committed (acknowledged to acks=all producers) and the leader does not hold them "+
				"(its WAL lost a tail or was wiped), and no unclean promotion was asked for since this node's epoch %d. "+
				"This node keeps its WAL and does not follow. To keep the entries: %s. To give them up: %s",
				errKeepsCommitted, lh.GetLeaderId(), lh.GetEpoch(), lh.GetLeaderLastLsn(), keep, known, hist.lastEpoch(), keepIt, giveUp)
		}
	}
	switch {
	case lh.ResetTo != nil:
		f.log.Warn("the leader no longer holds the entries this node needs; wiping the WAL to re-clone",
			"last_lsn", last, "next_lsn", lh.GetResetTo())
		if err := bc.reset(work, lh.GetResetTo()); err != nil {
			return true, err
		}
	case lh.TruncateTo != nil && lh.GetTruncateTo() < last:
		f.log.Warn("this node's WAL diverged from the leader's; truncating", "last_lsn", last,
			"truncate_to", lh.GetTruncateTo(), "dropped_entries", last-lh.GetTruncateTo())
		if err := bc.truncate(work, lh.GetTruncateTo()); err != nil {
			return true, err
		}
		// Reconnect rather than stream on: the next hello carries the
		// checksum of the new last entry, so the leader checks that the
		// logs really agree there (lastEntryCheck).
		return true, fmt.Errorf("sidecar: truncated this node's WAL after LSN %d; reconnecting so that the leader checks the entry there", lh.GetTruncateTo())
	}
	last, _, err = bc.waitDrained(work)
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
	f.mu.Lock()
	f.left = false // the hello's ISR is the leader's, without this node if it left
	f.mu.Unlock()
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
	bc.onApplyErr = func(err error) {
		if f.leaveReason(bc) != "" {
			return // leaving: the stream stays up for the FollowerLeaving
		}
		cancel(err)
	}
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
		if err := f.sendAcks(sctx, ctx, bc, stream, ackSig, lastHeard); err != nil {
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
			if ctx.Err() != nil {
				return true, context.Cause(ctx)
			}
			return true, err
		}
		if ctx.Err() != nil || f.leaveReason(bc) != "" {
			// Leaving (ctx ends a moment after the broker detached or the
			// sidecar began to shut down): nothing more goes to the
			// broker (a role change that ended ctx counts on that); wait
			// for the leader to end the call.
			continue
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
				if err := bc.apply(work, ents); err != nil {
					if ctx.Err() != nil || f.leaveReason(bc) != "" {
						// Leaving, as above, while the entries went to
						// the broker: the stream stays up until the leader
						// has the FollowerLeaving (the next message
						// skips the checks that would end it).
						continue
					}
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
	f.s.noteBrokers(c.GetBrokers())
	bc.setView(&linkv1.ClusterView{
		Role:     linkv1.Role_ROLE_FOLLOWER,
		LeaderId: c.GetLeaderId(),
		Epoch:    max(epoch, c.GetEpoch()),
		Brokers:  c.GetBrokers(),
		Isr:      c.GetIsr(),
	})
}

// leaveGrace bounds how long a follower that stops following waits for the
// leader to end the stream after its FollowerLeaving.
const leaveGrace = time.Second

// leaveReason says why this node, whose following ended, tells the leader
// it leaves (FollowerLeaving): its sidecar shuts down or bc detached.
// Empty for a role change (this node leads now, or follows a newer
// leader): then it must say nothing. The old leader would take it out of
// its ISR at once and could acknowledge acks=all writes without it until
// it learns of the new epoch, writes the new leader lacks; kept in the ISR,
// the silent node holds the old leader's commit point back, as before.
func (f *follower) leaveReason(bc *brokerConn) string {
	switch {
	case f.s.crashed.Load():
		return "" // a test's crash (export_test.go)
	case f.s.ctx.Err() != nil:
		return "its sidecar is shutting down"
	case bc.ctx.Err() != nil:
		return "its broker detached"
	}
	return ""
}

// sendAcks sends an Ack whenever progress changes and a heartbeat every
// HeartbeatInterval, and ends the stream when the leader has been silent
// for PeerTimeout. When following ends because the sidecar shuts down or
// bc detached (leaveReason), it sends FollowerLeaving and half-closes the
// stream.
func (f *follower) sendAcks(ctx, following context.Context, bc *brokerConn, stream replicationv1.ReplicationService_StreamClient, ackSig, heard <-chan struct{}) error {
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
		case <-following.Done():
			reason := f.leaveReason(bc)
			if reason == "" {
				return nil // a role change: the stream ends now
			}
			f.log.Info("telling the leader that this node stops following it", "leader_id", f.leaderID, "reason", reason)
			f.mu.Lock()
			f.left = true // before the leader can act on it
			f.mu.Unlock()
			if err := stream.Send(&replicationv1.StreamRequest{Payload: &replicationv1.StreamRequest_Leaving{
				Leaving: &replicationv1.FollowerLeaving{Reason: reason}}}); err != nil {
				return err
			}
			return stream.CloseSend()
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

package sidecar

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	adminv1 "github.com/tandem-io/tandem/gen/tandem/admin/v1"
)

// Manual promotion and epoch discovery.
//
// Promote (tandemctl promote) makes a follower the leader of a new epoch:
// one more than the highest epoch the node or any peer knows of. First it
// asks every peer for its status, then it decides whether the node may lack
// acknowledged writes (promoteCheck):
//
//   - the leader answers (a planned switchover): the node must be in the
//     leader's ISR and hold the leader's commit point. Entries above the
//     commit point (acks=0/1 writes) may be lost, as in Kafka;
//   - the leader does not answer: no answering peer may hold more of the
//     log (a later last epoch, or the same one and a higher LSN) or know a
//     commit point past this node's WAL end. When every follower answered,
//     that is enough: an acks=-1 write reached the leader and at least
//     min.insync.replicas-1 followers, so the follower with the most of the
//     log holds it. When a follower is missing too, the node's own knowledge
//     must do, and it must be fresh: in the last ISR it heard, holding the
//     last commit point it knows, heard from the leader within
//     --replica-lag-time-max (past that, the leader may have dropped it
//     from the ISR and committed writes it lacks), and not having told the
//     leader since that it stopped following (FollowerLeaving: the leader
//     then drops it from the ISR at once).
//
// A refused promotion says why (FAILED_PRECONDITION) and names a better
// candidate when it knows one. force promotes anyway: an unclean promotion,
// logged at error level and counted.
//
// Discovery: every --epoch-poll-interval each sidecar asks every peer for
// its status. A node that sees a higher epoch than its own stops taking
// writes at once (if it led) and follows the leader of that epoch; so
// followers learn about a promotion, and an old leader that comes back (or
// was cut off) steps down and repairs its log as a follower. Two leaders in
// the same epoch cannot come from one promotion; if an operator manages it
// (two forced promotions at once), the node with the higher id steps down.

// ErrPromote is returned when a promotion is refused.
var ErrPromote = errors.New("sidecar: promotion refused")

// promoteWait bounds how long Promote waits for the broker to re-attach
// under the new role before answering.
const promoteWait = 10 * time.Second

// promotePollTimeout bounds how long Promote waits for each peer's status.
const promotePollTimeout = 2 * time.Second

// Promote makes this node the leader of a new epoch.
func (a *adminServer) Promote(ctx context.Context, req *adminv1.PromoteRequest) (*adminv1.PromoteResponse, error) {
	epoch, err := a.s.Promote(ctx, req.GetForce())
	if errors.Is(err, ErrPromote) {
		return nil, status.Error(codes.FailedPrecondition, err.Error())
	}
	if errors.Is(err, ErrClosing) {
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	return &adminv1.PromoteResponse{LeaderId: a.s.cfg.NodeID, Epoch: epoch}, nil
}

// Promote makes this node the leader with epoch = highest known + 1 and
// returns the new epoch (or the current one when it already leads).
func (s *Sidecar) Promote(ctx context.Context, force bool) (uint32, error) {
	if s.cfg.Standalone() {
		return 0, fmt.Errorf("%w: node %d is standalone (no --peers): it always leads", ErrPromote, s.cfg.NodeID)
	}
	if l, _ := s.roles(); l != nil {
		return s.currentEpoch(), nil
	}
	if len(s.cfg.EtcdEndpoints) > 0 {
		return 0, fmt.Errorf("%w: node %d runs with --etcd-endpoints: the etcd election picks the leader (stop the current leader's pair to fail over)",
			ErrPromote, s.cfg.NodeID)
	}
	pc := &peerConns{s: s}
	views := s.pollPeers(ctx, pc, promotePollTimeout)
	pc.close()
	for _, v := range views {
		s.noteEpoch(v.epoch)
	}
	bc, _ := s.currentBroker()
	// The check and the switch happen under the role lock, so that no role
	// change (a newer epoch found by discovery) comes between them.
	s.roleMu.Lock()
	epoch, unclean, err := s.promoteCheck(force, views)
	if err == nil {
		// An unclean epoch is marked before the switch, so that the state
		// file the switch writes holds it and the first follower hello
		// already carries it; a failed switch takes the mark back.
		s.stateMu.Lock()
		prev := s.uncleanEpoch
		if unclean {
			s.uncleanEpoch = max(prev, epoch)
		}
		s.stateMu.Unlock()
		err = s.switchRoleLocked(s.cfg.NodeID, epoch, "promoted through the admin API")
		if err != nil {
			s.stateMu.Lock()
			s.uncleanEpoch = prev
			s.stateMu.Unlock()
		}
	}
	s.roleMu.Unlock()
	if errors.Is(err, errStaleEpoch) {
		err = fmt.Errorf("%w: %v; retry", ErrPromote, err)
	}
	if err != nil {
		return 0, err
	}
	// Answer once the broker re-attached under the new role and got its
	// leader view (or promoteWait passed).
	deadline := time.Now().Add(promoteWait)
	for bc != nil && time.Now().Before(deadline) && ctx.Err() == nil {
		l, _ := s.roles()
		if l == nil {
			return 0, fmt.Errorf("%w: node %d lost leadership right after the promotion (a higher epoch appeared)", ErrPromote, s.cfg.NodeID)
		}
		l.mu.Lock()
		ok := l.bc != nil
		l.mu.Unlock()
		if ok {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	return epoch, nil
}

// logEnd returns the attached broker's WAL end as this attachment knows it
// and the epoch of its last entry: what promotion and election compare
// across nodes (logAhead).
func (c *brokerConn) logEnd() (uint64, uint32) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lastLSN, c.history.lastEpoch()
}

// logAhead reports whether a log ending at (epoch, lsn) goes further than
// one ending at (myEpoch, myLSN).
func logAhead(epoch uint32, lsn uint64, myEpoch uint32, myLSN uint64) bool {
	return epoch > myEpoch || (epoch == myEpoch && lsn > myLSN)
}

// promoteCheck decides whether this follower may be promoted, given the
// peers' answers, and returns the new epoch (see the comment at the top of
// this file). Caller holds s.roleMu.
func (s *Sidecar) promoteCheck(force bool, views []peerView) (epoch uint32, unclean bool, err error) {
	_, f := s.roles()
	if f == nil {
		return 0, false, fmt.Errorf("%w: node %d changed role during the promotion; retry", ErrPromote, s.cfg.NodeID)
	}
	id := s.cfg.NodeID
	bc, _ := s.currentBroker()
	f.mu.Lock()
	epoch, commit, cluster, leaderID, left := f.epoch, f.commit, f.cluster, f.leaderID, f.left
	f.mu.Unlock()
	if leaderID == 0 && cluster != nil {
		leaderID = cluster.GetLeaderId()
	}
	heard := f.heardAt.Load()
	var last uint64
	var logEpoch, peerEpoch uint32
	var problems []string
	for _, v := range views {
		peerEpoch = max(peerEpoch, v.epoch)
	}
	var live *adminv1.StatusResponse // a leader that answered, newest epoch
	for _, v := range views {
		if v.leader && v.epoch >= epoch && (live == nil || v.epoch > live.GetEpoch()) {
			live = v.st
		}
	}
	if bc == nil {
		// Not even --force: the new epoch must be newer than every epoch in
		// this node's WAL, and without the broker they are unknown (a
		// sidecar that restarted while the others were down may know none),
		// so it could lead an epoch its WAL already holds entries of.
		return 0, false, fmt.Errorf("%w: node %d's broker is not attached (its WAL position and epochs are unknown); start it, or wait until tandemctl status shows it linked, and promote again",
			ErrPromote, id)
	} else if msg, _ := bc.storageFailure(); msg != "" {
		// Not even --force: a leader that cannot write takes no writes.
		return 0, false, fmt.Errorf("%w: node %d's broker cannot write its WAL (%s); free space or repair the device first (tandemctl status shows when it writes again)",
			ErrPromote, id, msg)
	} else {
		// The broker's WAL end as this attachment knows it, not the
		// follower's applied LSN: that may come from an earlier attachment
		// of a broker that came back with a shorter WAL.
		last, logEpoch = bc.logEnd()
	}
	switch {
	case bc == nil:
	case live != nil:
		// A planned switchover: the leader knows the ISR and commit point.
		if !slices.Contains(live.GetIsr(), id) {
			problems = append(problems, fmt.Sprintf("the leader, node %d (epoch %d), does not list it in its ISR %v", live.GetNodeId(), live.GetEpoch(), live.GetIsr()))
		}
		if last < live.GetCommitLsn() {
			problems = append(problems, fmt.Sprintf("its WAL ends at LSN %d, before leader %d's commit point %d", last, live.GetNodeId(), live.GetCommitLsn()))
		}
	default:
		answered := map[int32]bool{}
		for _, v := range views {
			st := v.st
			if !st.GetLinked() {
				continue // its broker is not attached: its log is unknown
			}
			answered[v.id] = true
			if logAhead(st.GetWalLastEpoch(), st.GetLastLsn(), logEpoch, last) {
				problems = append(problems, fmt.Sprintf("node %d holds more of the log (to LSN %d in epoch %d; this node: to LSN %d in epoch %d): promote node %d instead",
					v.id, st.GetLastLsn(), st.GetWalLastEpoch(), last, logEpoch, v.id))
			} else if st.GetCommitLsn() > last {
				problems = append(problems, fmt.Sprintf("node %d knows commit point %d, past this node's WAL end (LSN %d)", v.id, st.GetCommitLsn(), last))
			}
		}
		var missing []int32
		for pid := range s.cfg.Peers {
			if pid != id && pid != leaderID && !answered[pid] {
				missing = append(missing, pid)
			}
		}
		slices.Sort(missing)
		if len(missing) == 0 {
			break // every follower answered and none is further (above)
		}
		// A follower did not answer either: it may hold writes this node
		// lacks, so this node's own knowledge must show that it cannot.
		switch {
		case cluster == nil:
			problems = append(problems, fmt.Sprintf("nodes %v did not answer and it has not heard an ISR from a leader since it started", missing))
		case !slices.Contains(cluster.GetIsr(), id):
			problems = append(problems, fmt.Sprintf("it is not in the last ISR it heard from leader %d (%v)", cluster.GetLeaderId(), cluster.GetIsr()))
		case left:
			problems = append(problems, fmt.Sprintf("its broker detached since it last streamed from leader %d, and it told the leader so, which took it out of the ISR at once: the leader may have committed writes it lacks since",
				cluster.GetLeaderId()))
		}
		if last < commit {
			problems = append(problems, fmt.Sprintf("its WAL ends at LSN %d, before the last commit point it knows (%d)", last, commit))
		}
		lagMax := s.cfg.ReplicaLagTimeMax
		if since := time.Since(time.Unix(0, heard)); heard == 0 || since > lagMax {
			ago := "since it last changed role"
			if heard != 0 {
				ago = "for " + since.Round(time.Second).String()
			}
			problems = append(problems, fmt.Sprintf("nodes %v did not answer and it has not heard from leader %d %s (more than --replica-lag-time-max %s): the leader may have dropped it from the ISR and committed writes it lacks since; bring those nodes back first",
				missing, leaderID, ago, lagMax))
		}
	}
	next := max(epoch, logEpoch, peerEpoch, s.knownEpoch.Load()) + 1
	if len(problems) > 0 {
		if !force {
			return 0, false, fmt.Errorf("%w: node %d is not a safe leader: %s; promoting it could lose acknowledged writes (use --force for an unclean promotion)",
				ErrPromote, id, joinProblems(problems))
		}
		s.uncleanPromotions.Add(1)
		s.log.Error("UNCLEAN PROMOTION: promoting a node that may lack acknowledged writes; entries only the old leader had will be truncated there when it rejoins, and other followers drop committed entries this node lacks (the epoch is marked unclean)",
			"node_id", id, "epoch", next, "problems", joinProblems(problems), "wal_last_lsn", last, "known_commit_lsn", commit,
			"unclean_promotions", s.uncleanPromotions.Load())
	}
	s.log.Info("promoting this node", "epoch", next, "wal_last_lsn", last, "known_commit_lsn", commit, "peers_answered", len(views), "force", force)
	return next, len(problems) > 0, nil
}

func joinProblems(p []string) string {
	out := ""
	for i, x := range p {
		if i > 0 {
			out += "; "
		}
		out += x
	}
	return out
}

// UncleanPromotions counts forced promotions of nodes that were not known
// to be in sync since the sidecar started.
func (s *Sidecar) UncleanPromotions() uint64 { return s.uncleanPromotions.Load() }

// peerView is one peer's answer to a discovery poll.
type peerView struct {
	id     int32
	leader bool
	epoch  uint32
	leadID int32
	st     *adminv1.StatusResponse
}

// quietClientOptions are clientOptions without per-call logging: discovery
// polls every peer every second, and a dead peer is expected there.
func (s *Sidecar) quietClientOptions() []grpc.DialOption {
	opts := append(ClientOptions(hclog.NewNullLogger(), s.cfg.MaxMessageBytes), s.metrics.dialOptions()...)
	if s.tls != nil && s.tls.client != nil {
		opts = append(opts, grpc.WithTransportCredentials(s.tls.client))
	}
	return opts
}

// peerConns caches one client connection per peer for discovery.
type peerConns struct {
	s     *Sidecar
	mu    sync.Mutex
	conns map[int32]*grpc.ClientConn
}

func (pc *peerConns) get(id int32) (*grpc.ClientConn, error) {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	if c := pc.conns[id]; c != nil {
		return c, nil
	}
	c, err := grpc.NewClient(pc.s.cfg.Peers[id], pc.s.quietClientOptions()...)
	if err != nil {
		return nil, err
	}
	if pc.conns == nil {
		pc.conns = map[int32]*grpc.ClientConn{}
	}
	pc.conns[id] = c
	return c, nil
}

func (pc *peerConns) close() {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	for _, c := range pc.conns {
		c.Close()
	}
	pc.conns = nil
}

// pollPeers asks every other peer for its status (at most timeout each, in
// parallel) and returns the answers.
func (s *Sidecar) pollPeers(ctx context.Context, pc *peerConns, timeout time.Duration) []peerView {
	var mu sync.Mutex
	var out []peerView
	var wg sync.WaitGroup
	for id := range s.cfg.Peers {
		if id == s.cfg.NodeID {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := pc.get(id)
			if err != nil {
				return
			}
			cctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			st, err := adminv1.NewAdminServiceClient(conn).Status(cctx, &adminv1.StatusRequest{})
			if err != nil || st.GetClusterId() != s.cfg.ClusterID || st.GetNodeId() != id {
				return
			}
			mu.Lock()
			out = append(out, peerView{id: id, leader: st.GetRole() == adminv1.Role_ROLE_LEADER, epoch: st.GetEpoch(), leadID: st.GetLeaderId(), st: st})
			mu.Unlock()
		}()
	}
	wg.Wait()
	return out
}

// newestLeader picks, among the answers, the highest epoch and who leads
// it (a node that says it leads wins over followers' reports; among leaders
// of the same epoch the lowest id).
func newestLeader(views []peerView) (leaderID int32, epoch uint32) {
	for _, v := range views {
		id := v.leadID
		if v.leader {
			id = v.id
		}
		switch {
		case v.epoch > epoch:
			leaderID, epoch = id, v.epoch
		case v.epoch == epoch && v.leader && (leaderID == 0 || v.id < leaderID):
			leaderID = v.id
		}
	}
	return leaderID, epoch
}

// discoveryLoop polls the peers and follows a higher epoch when one shows
// up (see the comment at the top of this file).
func (s *Sidecar) discoveryLoop() {
	t := time.NewTicker(s.cfg.EpochPollInterval)
	defer t.Stop()
	pc := &peerConns{s: s}
	defer pc.close()
	for {
		select {
		case <-t.C:
		case <-s.ctx.Done():
			return
		}
		s.discoverOnce(s.ctx, pc)
	}
}

// discoverOnce runs one discovery round.
func (s *Sidecar) discoverOnce(ctx context.Context, pc *peerConns) {
	views := s.pollPeers(ctx, pc, max(s.cfg.EpochPollInterval, time.Second))
	leaderID, epoch := newestLeader(views)
	if epoch == 0 {
		return
	}
	s.noteEpoch(epoch)
	mine := s.currentEpoch()
	l, f := s.roles()
	switch {
	case epoch > mine:
		if leaderID == s.cfg.NodeID {
			leaderID = 0 // a report about this node's own old term
		}
		if err := s.followNewerEpoch(leaderID, epoch, fmt.Sprintf("node %d leads epoch %d, newer than this node's %d", leaderID, epoch, mine)); err != nil && !errors.Is(err, ErrClosing) {
			s.log.Error("following the newer epoch failed", "error", err)
		}
	case epoch == mine && l != nil && leaderID != 0 && leaderID < s.cfg.NodeID:
		s.log.Error("two leaders in one epoch; the node with the higher id steps down", "epoch", epoch, "other_leader", leaderID)
		if err := s.switchRole(leaderID, epoch, "two leaders in one epoch"); err != nil && !errors.Is(err, ErrClosing) {
			s.log.Error("stepping down failed", "error", err)
		}
	case epoch == mine && f != nil && f.leaderID == 0 && leaderID != 0 && leaderID != s.cfg.NodeID:
		if err := s.switchRole(leaderID, epoch, fmt.Sprintf("node %d leads epoch %d", leaderID, epoch)); err != nil && !errors.Is(err, ErrClosing) {
			s.log.Error("following the leader failed", "error", err)
		}
	}
}

package sidecar

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	linkv1 "github.com/tandem-io/tandem/gen/tandem/link/v1"
)

// Role changes: promotion, fencing and following a new leader.
//
// At any moment a sidecar either leads (s.leader set) or follows
// (s.follower set; its leader may be unknown while an election runs). Both
// fields are guarded by s.mu; read them with s.roles(). A role change
// (switchRole, serialized by s.roleMu) goes:
//
//  1. stop the old role: cancel its goroutines and wait for them; a leader
//     also closes every follower stream and refuses new ones;
//  2. fence: when leadership is lost, send the broker a follower view and
//     wait for the broker to have applied it (a round trip on the ordered
//     link queue), so the broker refuses Produce from that moment on;
//  3. persist (leader id, epoch) in the state file, so that a restart
//     does not go back to the --leader flag;
//  4. start the new role;
//  5. when this node starts or stops leading, close the broker link: the
//     broker re-attaches at once with a fresh hello (its real WAL end and
//     epoch history), and the new role starts from there. A new leader's
//     first cluster view carries the new epoch, so the broker writes the
//     epoch's first entry (a no-op) and the epoch is in its WAL history.
//
// Lock order: s.roleMu, then s.mu (then leader.mu / follower.mu, then
// brokerConn.mu).

// stateFileName is the sidecar's state file inside --data-dir.
const stateFileName = "sidecar-state.json"

// roleState is what the state file holds: the last leader this node knew
// and its epoch, and the newest epoch known to have begun with an unclean
// promotion (follower.go, "Committed entries are never dropped").
type roleState struct {
	LeaderID     int32  `json:"leader_id"`
	Epoch        uint32 `json:"epoch"`
	UncleanEpoch uint32 `json:"unclean_epoch,omitempty"`
}

// errRoleChange closes a broker link so that the broker re-attaches under
// the new role.
var errRoleChange = errors.New("sidecar: role changed; the broker re-attaches with a fresh hello")

// errStaleEpoch refuses to lead an epoch that is not newer than every
// epoch this node knows.
var errStaleEpoch = errors.New("sidecar: the epoch to lead is no longer the newest")

// ErrClosing is returned for a role change asked during shutdown.
var ErrClosing = errors.New("sidecar: shutting down")

// roles returns the current leader or follower (exactly one is non-nil).
func (s *Sidecar) roles() (*leader, *follower) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.leader, s.follower
}

// statePath is the state file's path.
func (s *Sidecar) statePath() string { return filepath.Join(s.cfg.DataDir, stateFileName) }

// loadState reads the state file; ok is false when there is none.
func (s *Sidecar) loadState() (roleState, bool, error) {
	data, err := os.ReadFile(s.statePath())
	if errors.Is(err, os.ErrNotExist) {
		return roleState{}, false, nil
	}
	if err != nil {
		return roleState{}, false, fmt.Errorf("sidecar: reading state file: %w", err)
	}
	var st roleState
	if err := json.Unmarshal(data, &st); err != nil {
		return roleState{}, false, fmt.Errorf("sidecar: state file %s is not valid JSON (delete it to fall back to --leader): %w", s.statePath(), err)
	}
	return st, true, nil
}

// saveState writes the state file atomically (temp file, fsync, rename,
// fsync of the directory), with the unclean epoch this node knows.
func (s *Sidecar) saveState(st roleState) error {
	s.stateMu.Lock()
	defer s.stateMu.Unlock()
	st.UncleanEpoch = s.uncleanEpoch
	return s.writeStateLocked(st)
}

// knownUncleanEpoch is the newest epoch this node knows to have begun with
// an unclean promotion (0: none).
func (s *Sidecar) knownUncleanEpoch() uint32 {
	s.stateMu.Lock()
	defer s.stateMu.Unlock()
	return s.uncleanEpoch
}

// noteUncleanEpoch records that epoch began with an unclean promotion, in
// memory and in the state file, so that this node passes it on when it
// leads (also after a restart). Older epochs than the one known are
// ignored.
func (s *Sidecar) noteUncleanEpoch(epoch uint32) error {
	s.stateMu.Lock()
	defer s.stateMu.Unlock()
	if epoch <= s.uncleanEpoch {
		return nil
	}
	s.uncleanEpoch = epoch
	st, _, err := s.loadState()
	if err != nil {
		return err
	}
	st.UncleanEpoch = epoch
	return s.writeStateLocked(st)
}

// writeStateLocked writes st as the state file. Caller holds s.stateMu.
func (s *Sidecar) writeStateLocked(st roleState) error {
	if err := os.MkdirAll(s.cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("sidecar: creating --data-dir: %w", err)
	}
	data, _ := json.Marshal(st)
	tmp := s.statePath() + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("sidecar: writing state file: %w", err)
	}
	_, err = f.Write(append(data, '\n'))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, s.statePath())
	}
	if err != nil {
		return fmt.Errorf("sidecar: writing state file: %w", err)
	}
	if d, err := os.Open(s.cfg.DataDir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// noteEpoch records that epoch exists somewhere in the cluster.
func (s *Sidecar) noteEpoch(epoch uint32) {
	for {
		old := s.knownEpoch.Load()
		if epoch <= old || s.knownEpoch.CompareAndSwap(old, epoch) {
			return
		}
	}
}

// currentEpoch is the epoch this node works in (0 when unknown).
func (s *Sidecar) currentEpoch() uint32 {
	l, f := s.roles()
	if l != nil {
		l.mu.Lock()
		defer l.mu.Unlock()
		return l.epoch
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.epoch
}

// currentLeader is the leader this node follows or is (0 when unknown).
func (s *Sidecar) currentLeader() int32 {
	l, f := s.roles()
	if l != nil {
		return s.cfg.NodeID
	}
	return f.leaderID
}

// installRoleLocked creates and starts the role for (leaderID, epoch).
// peersChecked says that the peers were just polled and none holds more of
// the log than this node (a promotion or an election win): a leader then
// skips its own start-up check (leader.brokerAttached) for the first broker
// attachment. Caller holds s.roleMu and not s.mu.
func (s *Sidecar) installRoleLocked(leaderID int32, epoch uint32, peersChecked bool) error {
	ctx, cancel := context.WithCancel(s.ctx)
	var l *leader
	var f *follower
	if leaderID == s.cfg.NodeID {
		l = newLeader(s)
		l.ctx = ctx
		l.epoch = max(epoch, 1)
		l.peersChecked = peersChecked
		if s.election != nil {
			l.pinnedISR = s.election.takePinned()
		}
	} else {
		f = newFollower(s)
		f.ctx = ctx
		f.leaderID, f.leaderAddr = leaderID, s.cfg.Peers[leaderID]
		f.epoch = epoch
	}
	s.noteEpoch(epoch)
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		cancel()
		return ErrClosing
	}
	s.leader, s.follower = l, f
	s.roleCancel = cancel
	s.roleWG = &sync.WaitGroup{}
	wg := s.roleWG
	wg.Add(1)
	s.wg.Add(1)
	s.mu.Unlock()
	go func() {
		defer s.wg.Done()
		defer wg.Done()
		if l != nil {
			l.isrLoop()
		} else {
			f.run()
		}
	}()
	return nil
}

// switchRole makes this node lead in epoch (leaderID == this node) or
// follow leaderID in epoch (0: the leader is not known yet). See the
// comment at the top of this file.
func (s *Sidecar) switchRole(leaderID int32, epoch uint32, reason string) error {
	s.roleMu.Lock()
	defer s.roleMu.Unlock()
	return s.switchRoleLocked(leaderID, epoch, reason)
}

// followNewerEpoch is switchRole for a report of a newer epoch than this
// node's (peer discovery): it does nothing if, by the time it holds the
// role lock, this node already works in that epoch or a later one, or has
// been elected for it and is about to lead it (it may have won that very
// epoch's election while the peers were being polled, and the peers may
// have learnt of the win from etcd before this node switched to it).
func (s *Sidecar) followNewerEpoch(leaderID int32, epoch uint32, reason string) error {
	s.roleMu.Lock()
	defer s.roleMu.Unlock()
	if s.currentEpoch() >= epoch || (s.election != nil && s.election.taking.Load() >= epoch) {
		return nil
	}
	return s.switchRoleLocked(leaderID, epoch, reason)
}

// switchRoleLocked is switchRole with roleMu held.
func (s *Sidecar) switchRoleLocked(leaderID int32, epoch uint32, reason string) error {
	oldL, oldF := s.roles()
	s.mu.Lock()
	cancel, wg, closed := s.roleCancel, s.roleWG, s.closed
	s.mu.Unlock()
	if closed {
		return ErrClosing
	}
	lead := leaderID == s.cfg.NodeID
	if oldL != nil && lead {
		return nil // already leading
	}
	if oldF != nil && !lead && oldF.leaderID == leaderID && oldF.currentEpoch() >= epoch {
		return nil // already following that leader in that epoch
	}
	oldEpoch := s.currentEpoch()
	if lead && (epoch <= oldEpoch || epoch < s.knownEpoch.Load()) {
		// A newer epoch showed up after this one was chosen (peer
		// discovery or the etcd election runs concurrently): leading an
		// older epoch than the cluster's would be fenced at once.
		return fmt.Errorf("%w: asked to lead epoch %d, but this node works in epoch %d and knows epoch %d",
			errStaleEpoch, epoch, oldEpoch, s.knownEpoch.Load())
	}
	if oldL != nil {
		s.log.Warn("stepping down: this node no longer takes writes", "old_epoch", oldEpoch,
			"new_leader", leaderID, "new_epoch", epoch, "reason", reason)
	} else {
		s.log.Info("changing role", "old_leader", oldF.leaderID, "old_epoch", oldEpoch,
			"new_leader", leaderID, "new_epoch", epoch, "reason", reason)
	}
	if cancel != nil {
		cancel()
	}
	if oldL != nil {
		oldL.stop()
	}
	if wg != nil {
		wg.Wait()
	}
	bc, _ := s.currentBroker()
	if oldL != nil && bc != nil {
		v := &linkv1.ClusterView{Role: linkv1.Role_ROLE_FOLLOWER, LeaderId: leaderID, Epoch: max(epoch, oldEpoch)}
		if leaderID == 0 {
			v.LeaderId = -1
		}
		fctx, fcancel := context.WithTimeout(s.ctx, fenceTimeout)
		err := bc.fence(fctx, v)
		fcancel()
		if err != nil {
			s.log.Error("could not confirm that the broker stopped taking writes; closing its link (it keeps the follower view it was sent, if it got it)", "error", err)
			// Before the role is seen to change: the broker may write
			// until its own fence, and the term this ends must hold the
			// lease until then (awaitBrokerFence).
			s.noteLinkEnd(bc)
		} else {
			s.log.Info("broker fenced: it refuses writes from now on", "epoch", v.Epoch)
		}
	}
	if epoch > 0 || leaderID > 0 {
		if err := s.saveState(roleState{LeaderID: leaderID, Epoch: epoch}); err != nil {
			s.log.Error("could not persist the new leader and epoch; a restart may go back to an older leader", "error", err)
		}
	}
	if err := s.installRoleLocked(leaderID, epoch, true); err != nil {
		return err
	}
	if oldL != nil || lead {
		// The broker re-attaches under the new role. Look again: a broker
		// that attached while the old role was being stopped was handed to
		// no leader, and would stay unseen by this one.
		if nb, _ := s.currentBroker(); nb != nil && nb != bc {
			s.noteLinkEnd(nb)
			nb.stop(errRoleChange)
		}
		if bc != nil {
			s.noteLinkEnd(bc) // again, now that the link really ends
			bc.stop(errRoleChange)
		}
	}
	if lead {
		s.log.Info("this node is now the leader", "epoch", epoch, "reason", reason)
	}
	return nil
}

// fenceTimeout bounds the wait for a broker to confirm its follower view
// when stepping down (a frozen broker must not block the role change; it
// gets the view again when it re-attaches).
const fenceTimeout = 2 * time.Second

// fence sends the broker view v through the ordered queue and waits until
// the broker has applied it: the broker handles a cluster view before it
// reads the next message, and answers the checksum request sent after it.
func (c *brokerConn) fence(ctx context.Context, v *linkv1.ClusterView) error {
	_, err := c.fenceAt(ctx, v)
	return err
}

// fenceAt is fence, and returns the broker's answer, whose last_lsn is
// where its WAL ended once it had applied v.
func (c *brokerConn) fenceAt(ctx context.Context, v *linkv1.ClusterView) (*linkv1.ChecksumResult, error) {
	c.storeView(v)
	if err := c.enqueue(ctx, &linkv1.AttachResponse{Payload: &linkv1.AttachResponse_ClusterView{ClusterView: v}}); err != nil {
		return nil, err
	}
	res, err := c.checksum(ctx, 1, 1)
	if err == nil {
		c.confirmedView(v)
	}
	return res, err
}

// stop ends this leadership: every follower stream is closed and new ones
// are refused; the broker is no longer told anything by this leader.
func (l *leader) stop() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = true
	l.bc = nil
	for _, r := range l.replicas {
		if r.stop != nil {
			r.stop(errors.New("this node is no longer the leader"))
		}
	}
	l.broadcastLocked()
}

// currentEpoch is the epoch the follower works in.
func (f *follower) currentEpoch() uint32 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.epoch
}

// initialRole decides how this node starts: standalone nodes lead; with
// etcd the election decides (the node follows an unknown leader until
// then); with a static --leader the state file wins over the flag, and a
// first discovery round (about a second) over both, so that an old leader
// that restarts after a promotion elsewhere never takes writes again.
func (s *Sidecar) initialRole() (int32, uint32, error) {
	if s.cfg.Standalone() {
		return s.cfg.NodeID, 0, nil
	}
	st, ok, err := s.loadState()
	if err != nil {
		return 0, 0, err
	}
	if ok && st.UncleanEpoch > 0 {
		s.stateMu.Lock()
		s.uncleanEpoch = max(s.uncleanEpoch, st.UncleanEpoch)
		s.stateMu.Unlock()
	}
	leaderID, epoch := s.cfg.LeaderID, uint32(0)
	if len(s.cfg.EtcdEndpoints) > 0 {
		leaderID = 0
		if ok {
			epoch = st.Epoch
		}
	} else if ok {
		if _, known := s.cfg.Peers[st.LeaderID]; known && st.LeaderID != leaderID {
			s.log.Info("starting with the leader from the state file, not --leader", "state_file", s.statePath(),
				"leader_id", st.LeaderID, "epoch", st.Epoch, "flag_leader", s.cfg.LeaderID)
		}
		if _, known := s.cfg.Peers[st.LeaderID]; known || st.LeaderID == 0 {
			leaderID, epoch = st.LeaderID, st.Epoch
		}
	}
	s.noteEpoch(epoch)
	ctx, cancel := context.WithTimeout(s.ctx, 1500*time.Millisecond)
	defer cancel()
	pc := &peerConns{s: s}
	defer pc.close()
	if pl, pe := newestLeader(s.pollPeers(ctx, pc, time.Second)); pe > epoch {
		if pl == s.cfg.NodeID && len(s.cfg.EtcdEndpoints) > 0 {
			pl = 0 // with etcd, only the election makes this node lead
		}
		if pl == s.cfg.NodeID {
			// A static leader restarted with no state file: its
			// followers still follow it.
			s.log.Info("the peers say this node leads; starting as the leader", "epoch", pe, "own_epoch", epoch)
		} else {
			s.log.Info("a peer knows a newer epoch; following it", "leader_id", pl, "epoch", pe, "own_epoch", epoch)
		}
		leaderID, epoch = pl, pe
		s.noteEpoch(pe)
	}
	// Whatever this node starts with is what it knows: write it down now,
	// not only at its next role change. A node that came back and learnt
	// of a newer epoch from its peers used to keep the older state file;
	// started again later with no peer up, it went back to that file's
	// leader (itself, say) and led in the newer epoch that another node
	// had begun: two leaders of one epoch, whose entries the epoch
	// histories cannot tell apart. Before any epoch exists, --leader
	// alone decides, and stays changeable.
	if epoch > 0 && (!ok || st.LeaderID != leaderID || st.Epoch != epoch) {
		if err := s.saveState(roleState{LeaderID: leaderID, Epoch: epoch}); err != nil {
			s.log.Error("could not persist the leader and epoch this node starts with; a restart with no peer up may go back to an older leader", "error", err)
		}
	}
	return leaderID, epoch, nil
}

// startFailover starts epoch discovery and, with etcd, the election's
// campaign (the election itself is made in Open).
func (s *Sidecar) startFailover() {
	if s.cfg.Standalone() {
		return
	}
	s.goFunc(s.discoveryLoop)
	if s.election != nil {
		s.goFunc(s.election.run)
	}
}

// fenceView is the follower view a broker gets as soon as it attaches to
// a follower sidecar, before the leader's own cluster update arrives.
func (f *follower) fenceView(bc *brokerConn) *linkv1.ClusterView {
	f.mu.Lock()
	defer f.mu.Unlock()
	v := &linkv1.ClusterView{Role: linkv1.Role_ROLE_FOLLOWER, LeaderId: f.leaderID, Epoch: f.epoch}
	if v.LeaderId == 0 {
		v.LeaderId = -1
	}
	if f.cluster != nil {
		v.Brokers, v.Isr = f.cluster.GetBrokers(), f.cluster.GetIsr()
	} else {
		h := bc.hello
		v.Brokers = f.s.knownBrokers(&linkv1.BrokerInfo{NodeId: f.s.cfg.NodeID, Host: h.GetAdvertisedHost(), Port: h.GetAdvertisedPort(), Rack: h.GetRack()})
	}
	return v
}

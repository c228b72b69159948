package sidecar

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"go.uber.org/zap"
)

// Automatic failover through etcd (--etcd-endpoints).
//
// Keys, under --etcd-prefix (default /tandem/<cluster-id>/):
//
//	election/<lease>  concurrency.Election keys: the oldest one is the
//	                  leader. Its value is JSON {"node_id","epoch","addr"};
//	                  the epoch is 0 for the instant between winning and
//	                  proclaiming the new epoch.
//	epoch             the last epoch handed out (decimal), written only by
//	                  the elected node (a transaction that checks it still
//	                  holds the election key).
//	isr               JSON {"leader_id","epoch","isr"}: the leader's ISR,
//	                  written the same way whenever it changes.
//
// Every sidecar holds one etcd session (a lease of --lease-ttl, default 6s,
// kept alive by the etcd client and renewed explicitly every TTL/6 so that
// the sidecar knows when the last renewal succeeded). A follower campaigns
// while all of these hold, and withdraws as soon as one stops holding:
//
//   - its broker is attached and can write its WAL;
//   - its broker's WAL reaches the last commit point the follower heard
//     from a leader (a broker that came back with a shorter WAL lacks
//     acknowledged writes; elected, it would make the others drop them);
//   - it is in the published ISR (or no ISR was ever published).
//
// The reason a follower does not campaign is logged ("not campaigning").
// The winner first asks its peers for their status; if a peer in the
// published ISR, with its broker attached, holds more of the log, the
// winner resigns and that peer is elected instead (peerHoldsMore: this
// covers a node that lost its WAL's tail together with its sidecar's
// memory of the commit point). The winner then computes epoch = max(stored epoch, every epoch it has seen) +
// 1, stores it, proclaims it, and becomes leader (role.go). Followers learn
// the new leader by observing the election (and, as a fallback, by polling
// their peers, promote.go).
//
// Commit point of a new leader: until it publishes its own ISR (about
// 100 ms after its broker attaches), every member of the ISR published
// before it won holds back its commit point, connected or not (any of
// them may be elected next). When it cannot read that ISR (etcd error, or
// the key holds no valid ISR) every node in --peers holds it back; when
// there is no ISR key at all (no leader was ever elected through etcd
// under this prefix) nothing is pinned.
//
// Fencing: a leader whose last successful renewal is older than TTL/2
// steps down at once (its broker gets a follower view and refuses writes),
// well before the lease can expire and another node can be elected. A
// leader whose etcd session ends for any other reason (etcd says the lease
// is gone, expired or revoked; the election key was lost; etcd errors)
// steps down too as soon as the session ends, logged at error level with
// the cause, before its lease is revoked and before a new session starts:
// a node does not go on leading without holding the election key. (A lease
// revoked from outside, e.g. etcdctl lease revoke, is noticed at the next
// renewal, at most TTL/6 later; another node may be elected in a newer
// epoch meanwhile.) A leader whose broker stays detached for a whole TTL
// resigns too, so that a node that cannot take writes does not hold the
// cluster; so does a leader whose broker reports for a whole TTL that it
// cannot write its WAL (a full disk: StorageState on the link). A node
// whose broker cannot write does not campaign, and a new leader does not
// hand the election to such a peer however much of the log it holds.
//
// Failover time after a leader dies without revoking its lease (SIGKILL,
// power loss, network cut): at most TTL until the lease expires, plus the
// election (a few etcd round trips) and the new leader's broker
// re-attaching (about 100-200 ms), plus followers reconnecting (about
// --epoch-poll-interval at worst). With the default 6s TTL that is about
// 6-7 s; a clean stop revokes the lease and fails over in well under a
// second. A leader cut off from etcd for less than a TTL revokes its lease
// as soon as the cut heals (giveUpLease), rather than let the renewals it
// sent during the cut keep it a TTL longer.

// electionRenewFraction: the sidecar renews its lease every TTL/6.
const electionRenewFraction = 6

// leaderValue is the election key's value.
type leaderValue struct {
	NodeID int32  `json:"node_id"`
	Epoch  uint32 `json:"epoch"`
	Addr   string `json:"addr"`
}

// isrValue is the published ISR.
type isrValue struct {
	LeaderID int32   `json:"leader_id"`
	Epoch    uint32  `json:"epoch"`
	ISR      []int32 `json:"isr"`
}

// errLeaseLost ends an etcd session whose lease could not be renewed.
var errLeaseLost = errors.New("sidecar: etcd lease not renewed in time")

// election runs the etcd side of automatic failover.
type election struct {
	s   *Sidecar
	log hclog.Logger
	ttl time.Duration

	lastRenew atomic.Int64            // UnixNano when the last successful renewal was sent
	started   atomic.Bool             // the first campaign happened (headStart)
	pinned    atomic.Pointer[[]int32] // ISR published before this node won; taken by the new leader
	failovers atomic.Uint64
	// taking is the epoch this node was elected for, from the moment it is
	// stored in etcd until that leadership ends (0: none). Peers learn of
	// the win from etcd and may report it before this node has switched
	// to it; peer discovery must not take such a report for someone
	// else's newer term (followNewerEpoch).
	taking atomic.Uint32
	// brokerStopping wakes the lead loop when the broker says it stops
	// (Sidecar.brokerStopping), so that the handover starts at once.
	brokerStopping chan struct{} // cap 1
	// revokers are the goroutines still giving up the leases of ended
	// sessions (giveUpLease); run waits for them before closing the
	// client.
	revokers sync.WaitGroup
}

func newElection(s *Sidecar) *election {
	return &election{s: s, log: s.log.Named("election"), ttl: s.cfg.LeaseTTL, brokerStopping: make(chan struct{}, 1)}
}

func (e *election) key(name string) string { return e.s.cfg.EtcdPrefix + name }

// takePinned returns (once) the ISR published before this node won.
func (e *election) takePinned() []int32 {
	if p := e.pinned.Swap(nil); p != nil {
		return *p
	}
	return nil
}

// run keeps an etcd session and campaigns until the sidecar stops.
func (e *election) run() {
	s := e.s
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   s.cfg.EtcdEndpoints,
		DialTimeout: 2 * time.Second,
		Logger:      zap.NewNop(),
		Context:     s.ctx,
	})
	if err != nil {
		e.log.Error("cannot create the etcd client; automatic failover is off", "endpoints", s.cfg.EtcdEndpoints, "error", err)
		return
	}
	defer cli.Close()
	defer e.revokers.Wait()
	e.log.Info("automatic failover through etcd", "endpoints", s.cfg.EtcdEndpoints, "prefix", s.cfg.EtcdPrefix, "lease_ttl", e.ttl)
	for attempt := 1; s.ctx.Err() == nil; attempt++ {
		err := e.term(cli)
		if s.ctx.Err() != nil {
			return
		}
		if attempt == 1 || attempt%10 == 0 || !errors.Is(err, context.DeadlineExceeded) {
			e.log.Warn("etcd session ended; starting a new one", "error", err, "attempt", attempt)
		}
		t := time.NewTimer(500 * time.Millisecond)
		select {
		case <-t.C:
		case <-s.ctx.Done():
			t.Stop()
			return
		}
	}
}

// term is one etcd session: lease, observe, campaign, lead.
func (e *election) term(cli *clientv3.Client) error {
	s := e.s
	ctx, cancel := context.WithCancelCause(s.ctx)
	defer cancel(nil)
	ttlSec := int64(max(e.ttl/time.Second, 1))
	sent := time.Now()
	gctx, gcancel := context.WithTimeout(ctx, e.ttl/2)
	lease, err := cli.Grant(gctx, ttlSec)
	gcancel()
	if err != nil {
		return fmt.Errorf("sidecar: etcd lease grant: %w", err)
	}
	e.lastRenew.Store(sent.UnixNano())
	sess, err := concurrency.NewSession(cli, concurrency.WithLease(lease.ID), concurrency.WithContext(ctx))
	if err != nil {
		return fmt.Errorf("sidecar: etcd session: %w", err)
	}
	defer func() {
		// Give the key up at once (a clean handover); harmless when the
		// lease is already gone. Not before a broker that may still take
		// writes has fenced itself, though.
		sess.Orphan()
		s.awaitBrokerFence()
		e.giveUpLease(cli, lease.ID, time.Unix(0, e.lastRenew.Load()))
	}()
	el := concurrency.NewElection(sess, e.key("election/"))

	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel(nil)
	wg.Add(3)
	go func() { defer wg.Done(); e.renew(ctx, cancel, cli, lease.ID) }()
	go func() { defer wg.Done(); e.watchdog(ctx, cancel) }()
	go func() { defer wg.Done(); e.observe(ctx, el) }()
	err = e.campaignLoop(ctx, cli, el, lease.ID)
	if c := context.Cause(ctx); c != nil {
		err = c
	}
	if err == nil {
		err = errors.New("sidecar: the etcd session ended")
	}
	cancel(err)
	e.stepDownAtTermEnd(err)
	return err
}

// giveUpLease revokes the lease of a session that ended, whose last
// successful renewal was sent at renewed, so that its election key goes
// at once. When etcd cannot be reached (a network cut), it keeps trying in
// the background, while the next session starts, until etcd answers or
// the lease has surely expired (two TTLs after renewed). Expiry alone is
// not enough: the renewals this node sent during the cut wait in its TCP
// connection to etcd, and when the network comes back they arrive and
// renew the lease, which then holds the election key a whole TTL more with
// nobody leading (15-minute soaks with a 3 s TTL saw 4.5-4.9 s without a
// leader after cuts of the leader from etcd shorter than the TTL; 3.6 s at
// most once this was fixed). The revocation sent after them on the same
// connection takes the lease away as soon as they have been read. A
// candidate cut off from etcd gives its queued key up the same way.
func (e *election) giveUpLease(cli *clientv3.Client, id clientv3.LeaseID, renewed time.Time) {
	gone := func(err error) bool { return err == nil || errors.Is(err, rpctypes.ErrLeaseNotFound) }
	rctx, rcancel := context.WithTimeout(context.Background(), time.Second)
	_, err := cli.Revoke(rctx, id)
	rcancel()
	deadline := renewed.Add(2 * e.ttl)
	if gone(err) || e.s.ctx.Err() != nil || time.Now().After(deadline) {
		return
	}
	e.log.Warn("cannot revoke the ended etcd session's lease; retrying in the background until it has expired",
		"lease", fmt.Sprintf("%x", int64(id)), "error", err, "until", deadline.Format(time.RFC3339Nano))
	start := time.Now()
	e.revokers.Add(1)
	go func() {
		defer e.revokers.Done()
		for time.Now().Before(deadline) {
			// One long attempt rather than many short ones: a request
			// cancelled while the connection is cut is cancelled again
			// as soon as it arrives.
			ctx, cancel := context.WithDeadline(e.s.ctx, deadline)
			_, err := cli.Revoke(ctx, id)
			cancel()
			if gone(err) {
				e.log.Info("revoked the ended etcd session's lease once etcd answered again",
					"lease", fmt.Sprintf("%x", int64(id)), "after", time.Since(start).Round(time.Millisecond))
				return
			}
			if !sleepCtx(e.s.ctx, 100*time.Millisecond) {
				return
			}
		}
	}()
}

// stepDownAtTermEnd fences this node when its etcd session ends while it
// leads, whatever ended it (the lease expired or was revoked, the election
// key was lost, etcd errors). It runs before the session's lease is
// revoked and before a new session starts: without it the node would keep
// taking writes while holding no election key, and another node could be
// elected meanwhile.
func (e *election) stepDownAtTermEnd(cause error) {
	if e.s.ctx.Err() != nil {
		return // shutting down: the role ends with the sidecar
	}
	if l, _ := e.s.roles(); l == nil {
		return
	}
	e.log.Error("the etcd session ended while this node leads; stepping down (its broker stops taking writes) before another node can be elected",
		"cause", cause)
	e.stepDown("etcd session ended while leading: " + cause.Error())
}

// renew renews the lease every TTL/6 and records when a renewal that
// succeeded was sent.
func (e *election) renew(ctx context.Context, cancel context.CancelCauseFunc, cli *clientv3.Client, id clientv3.LeaseID) {
	t := time.NewTicker(e.ttl / electionRenewFraction)
	defer t.Stop()
	for {
		if err := e.renewOnce(ctx, cli, id); errors.Is(err, errLeaseLost) {
			cancel(err)
			return
		}
		select {
		case <-t.C:
		case <-ctx.Done():
			return
		}
	}
}

// renewOnce renews the lease once and records when the renewal was sent.
// It returns errLeaseLost when the lease is gone.
func (e *election) renewOnce(ctx context.Context, cli *clientv3.Client, id clientv3.LeaseID) error {
	sent := time.Now()
	// A slow answer still counts (it renews from when it was sent); the
	// watchdog, not this timeout, decides when to step down.
	rctx, rcancel := context.WithTimeout(ctx, e.ttl/3)
	r, err := cli.KeepAliveOnce(rctx, id)
	rcancel()
	switch {
	case err == nil && r.TTL > 0:
		e.lastRenew.Store(sent.UnixNano())
		return nil
	case errors.Is(err, rpctypes.ErrLeaseNotFound) || (err == nil && r.TTL <= 0):
		return fmt.Errorf("%w: etcd no longer has the lease (it expired or was revoked)", errLeaseLost)
	}
	return err
}

// watchdog makes a leader step down when its lease was not renewed for
// TTL/2, and ends the session when it was not renewed for TTL.
func (e *election) watchdog(ctx context.Context, cancel context.CancelCauseFunc) {
	t := time.NewTicker(min(100*time.Millisecond, e.ttl/20))
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-ctx.Done():
			return
		}
		age := time.Since(time.Unix(0, e.lastRenew.Load()))
		if l, _ := e.s.roles(); l != nil && age > e.ttl/2 {
			e.log.Error("the etcd lease was not renewed for half its TTL; stepping down before another node can be elected",
				"since_last_renewal", age.Round(time.Millisecond), "lease_ttl", e.ttl)
			e.stepDown("etcd lease not renewed for half its TTL")
			cancel(errLeaseLost)
			return
		}
		if age > e.ttl {
			cancel(errLeaseLost)
			return
		}
	}
}

// stepDown fences this node: it follows an unknown leader in its epoch
// until the election says who leads.
func (e *election) stepDown(reason string) {
	if err := e.s.switchRole(0, e.s.currentEpoch(), reason); err != nil && !errors.Is(err, ErrClosing) {
		e.log.Error("stepping down failed", "error", err)
	}
}

// observe follows the election's leader value.
func (e *election) observe(ctx context.Context, el *concurrency.Election) {
	s := e.s
	for resp := range el.Observe(ctx) {
		if len(resp.Kvs) == 0 {
			continue
		}
		var v leaderValue
		if err := json.Unmarshal(resp.Kvs[0].Value, &v); err != nil {
			e.log.Error("the election key holds something that is not a Tandem leader value", "key", string(resp.Kvs[0].Key), "error", err)
			continue
		}
		if v.Epoch == 0 || v.NodeID == s.cfg.NodeID {
			continue
		}
		if _, ok := s.cfg.Peers[v.NodeID]; !ok {
			e.log.Error("the elected leader is not in --peers", "leader_id", v.NodeID)
			continue
		}
		s.noteEpoch(v.Epoch)
		if v.Epoch >= s.currentEpoch() && (s.currentLeader() != v.NodeID || v.Epoch > s.currentEpoch()) {
			e.log.Info("etcd names a new leader", "leader_id", v.NodeID, "epoch", v.Epoch, "addr", v.Addr)
			if err := s.switchRole(v.NodeID, v.Epoch, "elected through etcd"); err != nil && !errors.Is(err, ErrClosing) {
				e.log.Error("following the elected leader failed", "error", err)
			}
		}
	}
}

// eligible reports whether this node may campaign: it follows, its broker
// is attached and can write its WAL, its broker's WAL reaches the last
// commit point this node knows, and it is in the published ISR (or none
// was published).
func (e *election) eligible(ctx context.Context, cli *clientv3.Client) (bool, string) {
	s := e.s
	l, f := s.roles()
	if l != nil {
		return false, "leading"
	}
	bc, why := s.brokerUnfitToLead()
	if why != "" {
		return false, why
	}
	if last, commit := walEndAndCommit(f, bc); last < commit {
		// It lacks acknowledged writes: elected, it would make the others
		// truncate them.
		return false, fmt.Sprintf("its WAL ends at LSN %d, before the commit point %d it knows (it lacks acknowledged writes)", last, commit)
	}
	v, found, err := e.publishedISR(ctx, cli)
	if err != nil {
		return false, err.Error()
	}
	if !found {
		return true, ""
	}
	s.noteEpoch(v.Epoch)
	if !slices.Contains(v.ISR, s.cfg.NodeID) {
		return false, fmt.Sprintf("not in the ISR %v published by leader %d in epoch %d", v.ISR, v.LeaderID, v.Epoch)
	}
	return true, ""
}

// brokerUnfitToLead returns the attached broker, and why this node could
// not lead with it now ("" when it could): none is attached, it is
// stopping, the sidecar is shutting down, or the broker cannot write its
// WAL. Only what this node knows locally, so that it can be asked again at
// the last moment before taking the leader's role.
func (s *Sidecar) brokerUnfitToLead() (*brokerConn, string) {
	bc, _ := s.currentBroker()
	if bc == nil {
		return nil, "broker not attached"
	}
	if bc.stoppingState() != nil {
		return bc, "its broker is stopping"
	}
	if s.shuttingDown.Load() {
		// A sidecar that handed its leadership over as it stops must not
		// take it back: its broker re-attaches meanwhile.
		return bc, "the sidecar is shutting down"
	}
	if msg, _ := bc.storageFailure(); msg != "" {
		return bc, "the broker cannot write its WAL: " + msg
	}
	return bc, ""
}

// publishedISR reads the ISR published in etcd; found is false when none
// was ever published.
func (e *election) publishedISR(ctx context.Context, cli *clientv3.Client) (v isrValue, found bool, err error) {
	gctx, cancel := context.WithTimeout(ctx, e.ttl/2)
	defer cancel()
	r, err := cli.Get(gctx, e.key("isr"))
	if err != nil {
		return v, false, fmt.Errorf("reading the ISR: %w", err)
	}
	if len(r.Kvs) == 0 {
		return v, false, nil
	}
	if err := json.Unmarshal(r.Kvs[0].Value, &v); err != nil {
		return v, false, errors.New("the published ISR is not valid JSON")
	}
	return v, true, nil
}

// peerHoldsMore asks the peers for their status after this node won the
// election and returns one that is in the published ISR (any peer when
// none was published), has its broker attached and able to write its WAL,
// follows, and holds more of the log than this node: a later last epoch,
// or the same one and a higher LSN (0 when there is none, or none
// answered within TTL/4). Such a peer is the better leader: this node may
// have lost the tail of its WAL (a power loss under --fsync interval or
// none, which its sidecar, restarted with it, cannot know), or simply be a
// few entries behind; if this node led, the peer would drop what it holds
// beyond this node's log. The peer campaigns too (it is eligible by the
// same rules), so resigning hands it the election. A peer that does not
// campaign (it cannot reach etcd, or is not eligible) would never take the
// election, and this node would resign to it again and again while nobody
// led: it is passed over. As a follower it then drops what it holds beyond
// this node's log, unless that was committed, which it refuses
// (errKeepsCommitted).
func (e *election) peerHoldsMore(ctx context.Context, cli *clientv3.Client) (int32, string) {
	s := e.s
	bc, _ := s.currentBroker()
	if bc == nil {
		return 0, ""
	}
	last, epoch := bc.logEnd()
	v, found, err := e.publishedISR(ctx, cli)
	if err != nil {
		return 0, ""
	}
	candidates, err := e.candidates(ctx, cli)
	if err != nil {
		return 0, ""
	}
	pc := &peerConns{s: s}
	defer pc.close()
	for _, p := range s.pollPeers(ctx, pc, e.ttl/4) {
		st := p.st
		if p.leader || !st.GetLinked() || st.GetStorageError() != "" || (found && !slices.Contains(v.ISR, p.id)) {
			continue
		}
		if logAhead(st.GetWalLastEpoch(), st.GetLastLsn(), epoch, last) {
			if !candidates[p.id] {
				e.log.Warn("a peer holds more of the log but does not campaign (it may not reach etcd); leading anyway",
					"peer", p.id, "peer_last_lsn", st.GetLastLsn(), "peer_last_epoch", st.GetWalLastEpoch(),
					"last_lsn", last, "last_epoch", epoch)
				continue
			}
			return p.id, fmt.Sprintf("node %d holds the log to LSN %d in epoch %d; this node to LSN %d in epoch %d",
				p.id, st.GetLastLsn(), st.GetWalLastEpoch(), last, epoch)
		}
	}
	return 0, ""
}

// candidates are the nodes that hold a key in the election: those
// campaigning, and the winner.
func (e *election) candidates(ctx context.Context, cli *clientv3.Client) (map[int32]bool, error) {
	gctx, cancel := context.WithTimeout(ctx, e.ttl/4)
	defer cancel()
	r, err := cli.Get(gctx, e.key("election/"), clientv3.WithPrefix())
	if err != nil {
		return nil, err
	}
	out := map[int32]bool{}
	for _, kv := range r.Kvs {
		var v leaderValue
		if json.Unmarshal(kv.Value, &v) == nil {
			out[v.NodeID] = true
		}
	}
	return out, nil
}

// walEndAndCommit returns the attached broker's WAL end (what it announced
// as durable when it attached, plus what it was handed since, lowered by
// truncations and refused batches) and the last commit point the follower
// heard from a leader. The follower's applied LSN is not used: it may come
// from an earlier attachment of a broker that came back with a shorter WAL.
// The commit point is read first: the WAL end only grows while entries
// flow, so a commit point it has reached is never reported above it.
func walEndAndCommit(f *follower, bc *brokerConn) (last, commit uint64) {
	f.mu.Lock()
	commit = f.commit
	f.mu.Unlock()
	bc.mu.Lock()
	last = bc.lastLSN
	bc.mu.Unlock()
	return last, commit
}

// campaignLoop campaigns whenever eligible, leads when elected, and
// returns when the session must end.
func (e *election) campaignLoop(ctx context.Context, cli *clientv3.Client, el *concurrency.Election, id clientv3.LeaseID) error {
	s := e.s
	poll := 200 * time.Millisecond
	lastReason := ""
	e.headStart(ctx, cli)
	for ctx.Err() == nil {
		ok, why := e.eligible(ctx, cli)
		if !ok {
			if why != lastReason && why != "leading" {
				e.log.Info("not campaigning", "reason", why)
				lastReason = why
			}
			if !sleepCtx(ctx, poll) {
				return nil
			}
			continue
		}
		lastReason = ""
		cctx, ccancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		val, _ := json.Marshal(leaderValue{NodeID: s.cfg.NodeID, Addr: s.cfg.Peers[s.cfg.NodeID]})
		go func() { done <- el.Campaign(cctx, string(val)) }()
		var err error
	wait:
		for {
			select {
			case err = <-done:
				break wait
			case <-time.After(poll):
				if ok, why := e.eligible(ctx, cli); !ok {
					e.log.Info("withdrawing from the election", "reason", why)
					if err := e.withdraw(ctx, cli, ccancel, done, id); err != nil {
						return err // ending the session revokes the key
					}
					err = errWithdrawn
					break wait
				}
			case <-ctx.Done():
				ccancel()
				<-done
				return nil
			}
		}
		ccancel()
		if errors.Is(err, errWithdrawn) {
			continue
		}
		if err != nil {
			return fmt.Errorf("sidecar: campaigning: %w", err)
		}
		if err := e.lead(ctx, cli, el, id); err != nil {
			return err
		}
	}
	return nil
}

var errWithdrawn = errors.New("sidecar: withdrew from the election")

// testHookElected, set only by tests, runs after this node won the
// election and proclaimed its epoch, just before it checks its broker a
// last time and takes the leader's role.
var testHookElected func(nodeID int32)

// withdraw ends a campaign that this node gives up (cancel and done are
// the campaign's), and deletes any election key this session holds.
// Campaign may have won just before it was cancelled: it then returned
// nil and holds the key. Or its first write may have reached etcd after
// its context ended: it then returned an error and never learned of the
// key. Either way the key would stay, kept alive by this session, ahead
// of every later candidate: no other node could be elected, however long
// the cluster stayed without a leader, until this session ended. When the
// key cannot be deleted, withdraw returns an error, and the caller ends
// the session (revoking its lease deletes the key).
func (e *election) withdraw(ctx context.Context, cli *clientv3.Client, cancel context.CancelFunc, done <-chan error, id clientv3.LeaseID) error {
	cancel()
	won := <-done == nil
	gctx, gcancel := context.WithTimeout(ctx, e.ttl/2)
	defer gcancel()
	r, err := cli.Get(gctx, e.key("election/"), clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		return fmt.Errorf("sidecar: withdrawing from the election: %w", err)
	}
	for _, kv := range r.Kvs {
		if kv.Lease != int64(id) {
			continue
		}
		if _, err := cli.Delete(gctx, string(kv.Key)); err != nil {
			return fmt.Errorf("sidecar: withdrawing from the election: deleting %s: %w", kv.Key, err)
		}
		e.log.Warn("gave up an election key this node held as it withdrew", "key", string(kv.Key), "won_as_it_withdrew", won)
	}
	return nil
}

// headStart gives the --leader node of a brand-new cluster (no ISR ever
// published) a head start of one lease TTL: the other nodes wait that long
// before they campaign, so the first leader is the one the operator named
// unless it is down.
func (e *election) headStart(ctx context.Context, cli *clientv3.Client) {
	s := e.s
	if s.cfg.LeaderID == 0 || s.cfg.LeaderID == s.cfg.NodeID || e.started.Swap(true) {
		return
	}
	gctx, cancel := context.WithTimeout(ctx, e.ttl/2)
	r, err := cli.Get(gctx, e.key("isr"), clientv3.WithCountOnly())
	cancel()
	if err != nil || r.Count > 0 {
		return
	}
	e.log.Info("new cluster: giving the --leader node a head start in the election", "leader", s.cfg.LeaderID, "wait", e.ttl)
	sleepCtx(ctx, e.ttl)
}

// lead runs after winning the election: it checks that this node may still
// lead, hands out the next epoch, proclaims it, promotes this node and
// publishes the ISR until leadership ends. It returns an error to end the
// session (which resigns).
func (e *election) lead(ctx context.Context, cli *clientv3.Client, el *concurrency.Election, id clientv3.LeaseID) error {
	s := e.s
	if ok, why := e.eligible(ctx, cli); !ok {
		e.log.Warn("elected but no longer eligible; resigning", "reason", why)
		return errWithdrawn
	}
	if peer, why := e.peerHoldsMore(ctx, cli); peer != 0 {
		e.log.Warn("elected, but a peer in the ISR holds more of the log; resigning so that it leads", "peer", peer, "detail", why)
		return errWithdrawn
	}
	// Lead on a freshly renewed lease: the watchdog counts from the last
	// renewal, which may be old when etcd was slow (at its own start).
	if err := e.renewOnce(ctx, cli, id); err != nil {
		return fmt.Errorf("sidecar: renewing the lease before leading: %w", err)
	}
	gctx, cancel := context.WithTimeout(ctx, e.ttl/2)
	r, err := cli.Get(gctx, e.key("epoch"))
	cancel()
	if err != nil {
		return fmt.Errorf("sidecar: reading the epoch: %w", err)
	}
	var stored uint64
	if len(r.Kvs) > 0 {
		stored, _ = strconv.ParseUint(string(r.Kvs[0].Value), 10, 32)
	}
	var brokerEpoch uint32
	if bc, _ := s.currentBroker(); bc != nil {
		bc.mu.Lock()
		brokerEpoch = bc.history.lastEpoch()
		bc.mu.Unlock()
	}
	epoch := max(uint32(stored), s.knownEpoch.Load(), s.currentEpoch(), brokerEpoch) + 1
	mine := clientv3.Compare(clientv3.CreateRevision(el.Key()), "=", el.Rev())
	gctx, cancel = context.WithTimeout(ctx, e.ttl/2)
	tr, err := cli.Txn(gctx).If(mine).Then(clientv3.OpPut(e.key("epoch"), strconv.FormatUint(uint64(epoch), 10))).Commit()
	cancel()
	if err != nil {
		return fmt.Errorf("sidecar: storing epoch %d: %w", epoch, err)
	}
	if !tr.Succeeded {
		return errors.New("sidecar: lost the election key before storing the epoch")
	}
	e.taking.Store(epoch)
	defer e.taking.Store(0)
	val, _ := json.Marshal(leaderValue{NodeID: s.cfg.NodeID, Epoch: epoch, Addr: s.cfg.Peers[s.cfg.NodeID]})
	gctx, cancel = context.WithTimeout(ctx, e.ttl/2)
	err = el.Proclaim(gctx, string(val))
	cancel()
	if err != nil {
		return fmt.Errorf("sidecar: proclaiming epoch %d: %w", epoch, err)
	}
	// The ISR the previous leader published stays pinned (it holds back
	// the commit point) until this leader publishes its own.
	gctx, cancel = context.WithTimeout(ctx, e.ttl/2)
	r, err = cli.Get(gctx, e.key("isr"))
	cancel()
	pinned := e.pinnedFrom(r, err)
	if testHookElected != nil {
		testHookElected(s.cfg.NodeID)
	}
	// Look at the broker once more: the checks and etcd round trips since
	// the campaign was won take up to a quarter of the TTL, and a broker
	// that crashed meanwhile would leave this node leading with nothing
	// behind it until the detached-broker rule below resigns, a whole TTL
	// later. Resigning now lets another in-sync node be elected at once;
	// the epoch handed out above is simply never used.
	if _, why := s.brokerUnfitToLead(); why != "" {
		e.log.Warn("elected, but no longer fit to lead; resigning before taking the leader's role", "epoch", epoch, "reason", why)
		return errWithdrawn
	}
	e.failovers.Add(1)
	e.log.Info("won the etcd election", "epoch", epoch, "pinned_isr", fmt.Sprint(pinned))
	e.pinned.Store(&pinned)
	if err := s.switchRole(s.cfg.NodeID, epoch, "won the etcd election"); err != nil {
		return err
	}
	var published []int32
	var detachedSince, storageFailingSince time.Time
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-e.brokerStopping:
		case <-ctx.Done():
			return context.Cause(ctx)
		}
		l, _ := s.roles()
		if l == nil {
			return errors.New("sidecar: no longer the leader")
		}
		l.mu.Lock()
		isr, lepoch, attached, bc := slices.Clone(l.isr), l.epoch, l.bc != nil, l.bc
		l.mu.Unlock()
		if lepoch != epoch {
			return fmt.Errorf("sidecar: leading epoch %d, elected for %d", lepoch, epoch)
		}
		if !attached {
			if detachedSince.IsZero() {
				detachedSince = time.Now()
			} else if time.Since(detachedSince) > e.ttl {
				e.log.Error("the broker has been detached for a whole lease TTL; resigning so that another node can lead", "lease_ttl", e.ttl)
				e.stepDown("broker detached while leading")
				return errors.New("sidecar: resigned: broker detached")
			}
			continue
		}
		detachedSince = time.Time{}
		if st := bc.stoppingState(); st != nil && e.handOver(l, bc, st) {
			return errors.New("sidecar: resigned: " + st.what())
		}
		if msg, _ := bc.storageFailure(); msg != "" {
			// A leader that cannot write takes no writes; an in-sync
			// follower that can should lead instead (as a Kafka broker
			// whose only log directory fails shuts down and its
			// partitions move). A TTL first, so that a moment's failure
			// does not cost a failover.
			if storageFailingSince.IsZero() {
				storageFailingSince = time.Now()
			} else if time.Since(storageFailingSince) > e.ttl {
				e.log.Error("the broker has not been able to write its WAL for a whole lease TTL; resigning so that an in-sync follower can lead",
					"lease_ttl", e.ttl, "error", msg)
				e.stepDown("broker cannot write its WAL")
				return errors.New("sidecar: resigned: broker cannot write its WAL")
			}
		} else {
			storageFailingSince = time.Time{}
		}
		if slices.Equal(isr, published) {
			continue
		}
		if time.Since(time.Unix(0, e.lastRenew.Load())) > e.ttl/2 {
			// The watchdog is stepping this node down (its lease was not
			// renewed for half its TTL): an ISR published now would
			// outlive its leadership.
			continue
		}
		data, _ := json.Marshal(isrValue{LeaderID: s.cfg.NodeID, Epoch: epoch, ISR: isr})
		gctx, cancel := context.WithTimeout(ctx, e.ttl/2)
		tr, err := cli.Txn(gctx).If(mine).Then(clientv3.OpPut(e.key("isr"), string(data))).Commit()
		cancel()
		if err != nil {
			e.log.Warn("publishing the ISR failed; retrying", "isr", fmt.Sprint(isr), "error", err)
			continue
		}
		if !tr.Succeeded {
			e.stepDown("lost the etcd election key")
			return errors.New("sidecar: lost the election key")
		}
		published = isr
		l.mu.Lock()
		l.pinnedISR = isr
		l.updateLocked(time.Now())
		l.mu.Unlock()
		e.log.Info("published the ISR", "isr", fmt.Sprint(isr), "epoch", epoch)
	}
}

// handOver runs while this node leads and its broker is stopping on
// purpose (BrokerStopping, st): Kafka's controlled shutdown, which moves
// leadership before the broker goes. It reports whether this node resigned.
// Once every other ISR member holds the broker's last entry and the broker
// serves the commit point up to it (or stoppingHandOverMax after the broker
// said it stops, whatever they hold)
// it steps down, ends the link (the broker exits), and the caller ends the
// etcd session, whose revoked lease frees the election key at once: an
// in-sync follower is elected without waiting out the lease, and, when the
// followers had caught up, it holds every entry this leader wrote, acks=1
// writes included. With no other node in the ISR there is nobody to hand
// over to: the link ends, and the rule for a detached broker (resign after
// one lease TTL) applies.
func (e *election) handOver(l *leader, bc *brokerConn, st *brokerStop) bool {
	// Followers acknowledge within milliseconds: look often, so that
	// producers, which get NOT_LEADER_OR_FOLLOWER meanwhile, do not back
	// off further than they must.
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		others, behind, unanswered := e.handOverState(l, st)
		waited := time.Since(st.at)
		switch {
		case others == 0 && st.bySidecar:
			// The ISR shrank since the sidecar looked: nobody can take
			// over, so the broker goes on as when its sidecar is gone.
			e.log.Warn("the sidecar is stopping, but no other node is in the ISR to lead instead; the broker goes on without it as after a crash",
				"last_lsn", st.lastLSN)
			l.endHandOver()
			bc.stopping.CompareAndSwap(st, nil)
			return false
		case others == 0:
			e.log.Warn("the broker is stopping, but no other node is in the ISR to lead instead; writes stop until it is back (this node resigns after one lease TTL)",
				"last_lsn", st.lastLSN)
			bc.stop(errBrokerStopping)
			return false
		case (len(behind) > 0 || unanswered) && waited < stoppingHandOverMax:
			select {
			case <-tick.C:
				continue
			case <-l.ctx.Done():
				return false // leadership ended meanwhile: nothing to hand over
			}
		case len(behind) > 0:
			e.log.Warn(st.what()+"; resigning although some in-sync followers do not hold the broker's last entry yet (acks=1 writes they lack are lost)",
				"last_lsn", st.lastLSN, "behind", fmt.Sprint(behind), "waited", waited.Round(time.Millisecond))
		case unanswered:
			e.log.Warn(st.what()+"; resigning although the broker does not serve the commit point up to its last entry yet (acks=all writes still waiting there fail, and their producers retry)",
				"last_lsn", st.lastLSN, "waited", waited.Round(time.Millisecond))
		default:
			e.log.Info(st.what()+" and every in-sync follower holds the broker's last entry; resigning so that one of them leads",
				"last_lsn", st.lastLSN, "waited", waited.Round(time.Millisecond))
		}
		// stepDown fences the broker with a follower view (leader
		// unknown) before the link ends: a broker whose sidecar stopped
		// takes no writes until the sidecar is back and follows the new
		// leader.
		e.stepDown(st.what())
		bc.stop(errBrokerStopping)
		return true
	}
}

// handOverState is what handOver waits for: how many other nodes are in
// the ISR, which of them do not hold the broker's last entry yet, and
// whether the broker does not serve the commit point up to that entry yet
// (acks=all writes may still wait there: stepping down would fail them,
// and their producers would write them again).
func (e *election) handOverState(l *leader, st *brokerStop) (others int, behind []int32, unanswered bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, id := range l.isr {
		if id == e.s.cfg.NodeID {
			continue
		}
		others++
		if r := l.replicas[id]; r == nil || r.flushed < st.lastLSN {
			behind = append(behind, id)
		}
	}
	return others, behind, l.brokerAcks && l.brokerCommit < st.lastLSN
}

// pinnedFrom decides, from the read of the published ISR (r, err), which
// nodes hold back the new leader's commit point until it publishes its own
// ISR: every member of the published ISR (any of them may be elected next,
// so none may miss an entry this leader acknowledges).
//
// When the published ISR cannot be known (the read failed, or the key
// holds something else than an ISR) every node in --peers is pinned: an
// old-ISR member might otherwise miss acknowledged writes and still be
// elected. When etcd says there is no ISR key, no leader was ever elected
// through etcd under this prefix (a new cluster): nothing is pinned, as
// before, and the commit point follows this leader's own ISR at once.
func (e *election) pinnedFrom(r *clientv3.GetResponse, err error) []int32 {
	all := func(why string) []int32 {
		ids := make([]int32, 0, len(e.s.cfg.Peers))
		for id := range e.s.cfg.Peers {
			ids = append(ids, id)
		}
		slices.Sort(ids)
		e.log.Warn("the published ISR is unknown; every peer holds back the commit point until this leader publishes its own ISR",
			"reason", why, "pinned", fmt.Sprint(ids))
		return ids
	}
	if err != nil {
		return all("reading the ISR: " + err.Error())
	}
	if len(r.Kvs) == 0 {
		return nil
	}
	var v isrValue
	if err := json.Unmarshal(r.Kvs[0].Value, &v); err != nil {
		return all("the published ISR is not valid JSON: " + err.Error())
	}
	if len(v.ISR) == 0 {
		return all("the published ISR has no members")
	}
	for _, id := range v.ISR {
		if _, ok := e.s.cfg.Peers[id]; !ok {
			e.log.Error("the published ISR names a node that is not in --peers; the commit point waits until this leader publishes its own ISR",
				"node_id", id, "isr", fmt.Sprint(v.ISR))
		}
	}
	return v.ISR
}

// sleepCtx waits d or until ctx is done (false then).
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

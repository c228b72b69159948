package sidecar

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// The leader's check when its broker attaches.
//
// A leader ships only entries that are durable in its broker's WAL, so no
// follower can hold an entry its leader lacks, except when the leader lost
// the tail of its WAL: a power failure under --fsync interval or none (the
// page cache was not yet written), or a WAL restored from an older copy or
// wiped by mistake. A sidecar restarted with it no longer knows the commit
// point either. If such a leader simply led again, its followers would
// truncate to its shorter log (the divergence rule) and entries
// acknowledged to acks=-1 producers would be gone from every node.
//
// So when a leader's broker attaches (a static leader's start-up, and a
// broker that comes back under a running leader sidecar, static or etcd),
// the leader first asks every peer for its status, and leads only if its
// broker's WAL reaches the commit point this leader had reached and no
// answering peer holds more of the log (a later last epoch, or the same
// epoch and a higher LSN) or knows a commit point past its WAL end.
// Otherwise it steps down: it follows no one (its state file says so, so a
// restart does not make it lead again), its broker stays fenced, and the
// log names the peer to promote (tandemctl promote on that node; with
// etcd, the election picks it: a winner that finds an in-sync peer holding
// more resigns). PostgreSQL does the same in spirit: a primary refuses a
// standby whose WAL is ahead of its own ("requested starting point is
// ahead of the WAL flush position"), rather than rewinding the standby.
//
// It also steps down, whatever the peers say, when its broker's WAL holds
// entries of a later epoch than the one it was to lead: another node led
// after the term this node knows of (its state file was written before it
// learnt of that, or is gone), and leading would continue that node's
// epoch with entries of its own, two leaders under one epoch, a divergence
// the epoch histories (KIP-101) cannot see.
//
// Peers that do not answer are not waited for beyond promotePollTimeout:
// with every peer down there is nothing to compare with, and the node leads
// (as it always did). A leader that begins with a promotion or an etcd
// election win skips the check for its first attachment (both polled the
// peers just before).

// checkPeersThenLead polls the peers, then leads with c or steps down.
func (l *leader) checkPeersThenLead(c *brokerConn) {
	defer func() {
		l.mu.Lock()
		if l.checking == c {
			l.checking = nil
		}
		l.mu.Unlock()
	}()
	ctx, cancel := context.WithTimeout(l.ctx, promotePollTimeout+time.Second)
	defer cancel()
	defer context.AfterFunc(c.ctx, cancel)() // a broker that detaches ends the check early
	pc := &peerConns{s: l.s}
	views := l.s.pollPeers(ctx, pc, promotePollTimeout)
	pc.close()
	if l.ctx.Err() != nil || c.ctx.Err() != nil {
		return
	}
	myLSN := c.hello.GetDurableLsn()
	myEpoch := epochHistory(c.hello.GetEpochHistory()).lastEpoch()
	var problems []string
	var better int32
	l.mu.Lock()
	if l.commit > myLSN {
		problems = append(problems, fmt.Sprintf("this leader had committed up to LSN %d", l.commit))
	}
	l.mu.Unlock()
	for _, v := range views {
		l.s.noteEpoch(v.epoch)
		st := v.st
		switch {
		case logAhead(st.GetWalLastEpoch(), st.GetLastLsn(), myEpoch, myLSN):
			problems = append(problems, fmt.Sprintf("node %d holds more of the log (to LSN %d in epoch %d; this node: to LSN %d in epoch %d)",
				v.id, st.GetLastLsn(), st.GetWalLastEpoch(), myLSN, myEpoch))
			if better == 0 || st.GetLinked() {
				better = v.id
			}
		case st.GetCommitLsn() > myLSN:
			problems = append(problems, fmt.Sprintf("node %d knows commit point %d, past this node's WAL end (LSN %d)",
				v.id, st.GetCommitLsn(), myLSN))
		}
	}
	l.mu.Lock()
	leadEpoch, leadCommit := l.epoch, l.commit
	l.mu.Unlock()
	if myEpoch > leadEpoch {
		// This node was to lead an older term than its own WAL has seen:
		// another node led after the term this node knows of (a state
		// file written before it learnt of that, or none). Leading would
		// continue that node's epoch with different entries, which no
		// epoch history can tell apart from its own.
		reason := fmt.Sprintf("its broker's WAL holds entries of epoch %d, newer than the epoch this node was to lead (%d, from its state file or --leader): another node led after this node's last known term, and leading now would put this node's entries under that node's epoch %d, where no replica could tell them apart; promote the node that should lead (tandemctl --sidecar HOST:PORT promote; a promotion begins a new epoch), and this node follows it",
			myEpoch, leadEpoch, myEpoch)
		l.log.Error("NOT LEADING: "+reason, "durable_lsn", myLSN, "wal_last_epoch", myEpoch, "epoch", leadEpoch)
		if err := l.s.stepDownLeaderless(l, leadEpoch, leadCommit, reason); err != nil && !errors.Is(err, ErrClosing) {
			l.log.Error("stepping down failed", "error", err)
		}
		return
	}
	if len(problems) == 0 {
		l.log.Info("no peer holds more of the log; leading with this broker", "durable_lsn", myLSN, "wal_last_epoch", myEpoch, "peers_answered", len(views))
		l.startLeading(c)
		return
	}
	l.mu.Lock()
	epoch, commit := l.epoch, l.commit
	l.mu.Unlock()
	hint := "promote the node that holds the most of the log (tandemctl --sidecar HOST:PORT promote)"
	switch {
	case len(l.s.cfg.EtcdEndpoints) > 0:
		hint = "the etcd election makes a node that holds more lead"
	case better != 0:
		hint = fmt.Sprintf("promote node %d (tandemctl --sidecar %s promote)", better, l.s.cfg.Peers[better])
	}
	reason := fmt.Sprintf("its broker's WAL ends at LSN %d (epoch %d), short of what was replicated: %s; it lost the tail of its WAL (a power failure under --fsync interval or none?) and leading would make the followers drop it; %s, and this node catches up from it",
		myLSN, myEpoch, strings.Join(problems, "; "), hint)
	l.log.Error("NOT LEADING: "+reason, "durable_lsn", myLSN, "wal_last_epoch", myEpoch)
	if err := l.s.stepDownLeaderless(l, epoch, commit, reason); err != nil && !errors.Is(err, ErrClosing) {
		l.log.Error("stepping down failed", "error", err)
	}
}

// stepDownLeaderless makes this node, while l is its leader role, follow
// no one in epoch, and records why on the new follower (readiness and
// tandemctl status show it). The follower keeps the commit point the
// leader had reached: with etcd, a node whose WAL ends below the commit
// point it knows does not campaign (election.go), so it does not win the
// next election with the log it just refused to lead with.
func (s *Sidecar) stepDownLeaderless(l *leader, epoch uint32, commit uint64, reason string) error {
	s.roleMu.Lock()
	defer s.roleMu.Unlock()
	if cur, _ := s.roles(); cur != l {
		return nil // the role changed meanwhile (a newer epoch was found)
	}
	if err := s.switchRoleLocked(0, epoch, reason); err != nil {
		return err
	}
	if _, f := s.roles(); f != nil {
		f.mu.Lock()
		f.lastErr = "stepped down: " + reason
		f.commit = max(f.commit, commit)
		f.mu.Unlock()
	}
	return nil
}

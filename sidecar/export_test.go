package sidecar

import (
	"context"
	"errors"
	"time"

	"github.com/hashicorp/go-hclog"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// SetConnectionTimeout sets the handshake bound of servers opened from now
// on, for a test, and returns a function that restores it.
func SetConnectionTimeout(d time.Duration) (restore func()) {
	old := connectionTimeout
	connectionTimeout = d
	return func() { connectionTimeout = old }
}

// Crash stops the sidecar as a crash would look to its peers: as a
// follower it does not tell its leader that it leaves (FollowerLeaving), so
// the leader keeps it in the ISR until the lag bound.
func (s *Sidecar) Crash() error {
	s.crashed.Store(true)
	return s.Close()
}

// EndBrokerLink ends the attached broker's link from the sidecar's side,
// as a link error would, and leaves the broker to re-attach on its own.
func (s *Sidecar) EndBrokerLink() {
	if bc, _ := s.currentBroker(); bc != nil {
		bc.stop(errors.New("test: link ended"))
	}
}

// CampaignEligibility asks the election of a sidecar running with
// --etcd-endpoints whether it may campaign now, and why not (what it logs
// as "not campaigning").
func (s *Sidecar) CampaignEligibility(ctx context.Context) (bool, string, error) {
	cli, err := clientv3.New(clientv3.Config{Endpoints: s.cfg.EtcdEndpoints, DialTimeout: 2 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return false, "", err
	}
	defer cli.Close()
	ok, why := s.election.eligible(ctx, cli)
	return ok, why, nil
}

// ISRRead is what a newly elected leader read at <prefix>isr: an error,
// no key (Present false), or the key's value.
type ISRRead struct {
	Err     error
	Present bool
	Value   string
}

// CommitAfterElection runs, with no network, what node cfg.NodeID does
// after winning the election (lead, then installRoleLocked): it pins the
// nodes the ISR read calls for, then leads with its broker's WAL ending at
// durable while the followers in flushed are connected and caught up to
// the given LSNs (the others have not connected yet). It returns the
// commit point the leader computes.
func CommitAfterElection(cfg Config, read ISRRead, durable uint64, flushed map[int32]uint64) uint64 {
	s := &Sidecar{cfg: cfg, log: hclog.NewNullLogger(), ctx: context.Background()}
	e := newElection(s)
	s.election = e
	r := &clientv3.GetResponse{}
	if read.Present {
		r.Kvs = []*mvccpb.KeyValue{{Key: []byte(e.key("isr")), Value: []byte(read.Value)}}
	}
	pinned := e.pinnedFrom(r, read.Err)
	e.pinned.Store(&pinned)
	l := newLeader(s)
	l.pinnedISR = e.takePinned()
	l.durable = durable
	now := time.Now()
	for id, lsn := range flushed {
		rep := l.replicas[id]
		rep.connected, rep.sent, rep.flushed, rep.lastCaughtUp = true, lsn, lsn, now
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.updateLocked(now)
	return l.commit
}

// Withdraw runs, for a test, what a sidecar's election does when it gives
// up a campaign in a session of lease id: cancel and done are the campaign
// in flight (its cancel function and the channel its result goes to).
// prefix and ttl are the sidecar's --etcd-prefix and lease TTL.
func Withdraw(ctx context.Context, cli *clientv3.Client, prefix string, ttl time.Duration,
	cancel context.CancelFunc, done <-chan error, id clientv3.LeaseID) error {
	s := &Sidecar{cfg: Config{EtcdPrefix: prefix, LeaseTTL: ttl}, log: hclog.NewNullLogger()}
	return newElection(s).withdraw(ctx, cli, cancel, done, id)
}

// SetElectedHook makes every sidecar of this process call f(node id) after
// it won the election and proclaimed its epoch, just before it checks its
// broker a last time and takes the leader's role. It returns a function
// that removes the hook; set it before any sidecar starts.
func SetElectedHook(f func(nodeID int32)) (restore func()) {
	testHookElected = f
	return func() { testHookElected = nil }
}

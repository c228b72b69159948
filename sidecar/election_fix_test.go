package sidecar_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/tandem-io/tandem/broker/link"
	adminv1 "github.com/tandem-io/tandem/gen/tandem/admin/v1"
	"github.com/tandem-io/tandem/internal/testutil"
	"github.com/tandem-io/tandem/sidecar"
	"github.com/tandem-io/tandem/sidecar/sidecartest"
)

// etcdTestPrefix is the etcd prefix of sidecartest clusters.
const etcdTestPrefix = "/tandem/test-cluster/"

// etcdClient returns a client of the test's etcd, closed at the end.
func etcdClient(t *testing.T, url string) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{url}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// electionKey is one key of the election in etcd: its value (node_id,
// epoch) and its lease.
type electionKey struct {
	NodeID int32  `json:"node_id"`
	Epoch  uint32 `json:"epoch"`
	lease  clientv3.LeaseID
}

// electionKeys returns the election's keys, oldest (the leader) first.
func electionKeys(cli *clientv3.Client) ([]electionKey, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	r, err := cli.Get(ctx, etcdTestPrefix+"election/", clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByCreateRevision, clientv3.SortAscend))
	if err != nil {
		return nil, err
	}
	var out []electionKey
	for _, kv := range r.Kvs {
		var k electionKey
		if err := json.Unmarshal(kv.Value, &k); err != nil {
			return nil, fmt.Errorf("election key %s: %v", kv.Key, err)
		}
		k.lease = clientv3.LeaseID(kv.Lease)
		out = append(out, k)
	}
	return out, nil
}

// waitPublishedISR waits until the ISR in etcd is isr (JSON, e.g. "[1,2,3]").
func waitPublishedISR(t *testing.T, cli *clientv3.Client, isr string) {
	t.Helper()
	testutil.Eventually(t, 20*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		r, err := cli.Get(ctx, etcdTestPrefix+"isr")
		if err != nil {
			return err
		}
		if len(r.Kvs) == 0 || !strings.Contains(string(r.Kvs[0].Value), `"isr":`+isr) {
			return fmt.Errorf("published ISR: %v", r.Kvs)
		}
		return nil
	})
}

// keepISR reads the ISR published in etcd now and returns a func that
// publishes it again. Tests use it for followers that crash rather than stop:
// a follower that stops cleanly tells the leader, which publishes the
// smaller ISR at once (FollowerLeaving); one that crashes stays in the ISR
// until the lag bound, and a leader that dies meanwhile leaves it there.
func keepISR(t *testing.T, cli *clientv3.Client) (restore func()) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r, err := cli.Get(ctx, etcdTestPrefix+"isr")
	if err != nil || len(r.Kvs) != 1 {
		t.Fatalf("reading the published ISR: %v %v", r, err)
	}
	val := string(r.Kvs[0].Value)
	return func() {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := cli.Put(ctx, etcdTestPrefix+"isr", val); err != nil {
			t.Fatalf("publishing the ISR %s again: %v", val, err)
		}
	}
}

// waitOnlyCandidate waits until id's key is the only one in the election
// (the others withdrew).
func waitOnlyCandidate(t *testing.T, cli *clientv3.Client, id int32) electionKey {
	t.Helper()
	var only electionKey
	testutil.Eventually(t, 20*time.Second, func() error {
		keys, err := electionKeys(cli)
		if err != nil {
			return err
		}
		if len(keys) != 1 || keys[0].NodeID != id {
			return fmt.Errorf("election keys %+v, want only node %d's", keys, id)
		}
		only = keys[0]
		return nil
	})
	return only
}

// roleWatch samples every sidecar's Status until stopped and records
// what an operator watching `tandemctl status` would see.
type roleWatch struct {
	stop chan struct{}
	wg   sync.WaitGroup

	mu          sync.Mutex
	sameEpoch   []string       // samples with two leaders of one epoch
	wasFollower map[int32]bool // some sample showed the node as a follower
	led         map[int32]bool // some sample showed the node leading
}

func watchRoles(t *testing.T, c *sidecartest.Cluster) *roleWatch {
	t.Helper()
	admins := map[int32]adminv1.AdminServiceClient{}
	for _, id := range c.IDs() {
		admins[id] = c.Admin(id)
	}
	w := &roleWatch{stop: make(chan struct{}), wasFollower: map[int32]bool{}, led: map[int32]bool{}}
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			leaders := map[uint32][]int32{}
			for id, a := range admins {
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				st, err := a.Status(ctx, &adminv1.StatusRequest{})
				cancel()
				if err != nil {
					continue
				}
				w.mu.Lock()
				switch st.GetRole() {
				case adminv1.Role_ROLE_LEADER:
					leaders[st.GetEpoch()] = append(leaders[st.GetEpoch()], id)
					w.led[id] = true
				case adminv1.Role_ROLE_FOLLOWER:
					w.wasFollower[id] = true
				}
				w.mu.Unlock()
			}
			for epoch, ids := range leaders {
				if len(ids) > 1 {
					slices.Sort(ids)
					w.mu.Lock()
					w.sameEpoch = append(w.sameEpoch, fmt.Sprintf("nodes %v all lead epoch %d at %s", ids, epoch, time.Now().Format(time.StampMilli)))
					w.mu.Unlock()
				}
			}
			select {
			case <-tick.C:
			case <-w.stop:
				return
			}
		}
	}()
	t.Cleanup(w.close)
	return w
}

func (w *roleWatch) close() {
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	w.wg.Wait()
}

// A leader whose etcd lease disappears (here revoked by hand, as etcd
// does when it expires) no longer holds the election, so it must stop
// taking writes before a new session starts. The followers' brokers are
// down, so no other node is elected and nothing else (an election
// observed, peer discovery) can make the old leader step down: only the
// end of its own session can. It then campaigns again and is re-elected in
// a new epoch, and nothing is lost.
func TestEtcdLeaderStepsDownWhenItsLeaseIsGone(t *testing.T) {
	c, url := etcdCluster(t, nil)
	cli := etcdClient(t, url)
	waitPublishedISR(t, cli, "[1,2,3]")

	// The followers' brokers go down: they withdraw from the election.
	c.StopBroker(2)
	c.StopBroker(3)
	key := waitOnlyCandidate(t, cli, 1)
	if key.Epoch != 1 {
		t.Fatalf("election value %+v, want node 1 in epoch 1", key)
	}

	w := watchRoles(t, c)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	_, err := cli.Revoke(ctx, key.lease)
	cancel()
	if err != nil {
		t.Fatalf("revoking the leader's lease %x: %v", key.lease, err)
	}

	// Within a couple of seconds node 1 no longer leads epoch 1: neither
	// its sidecar's status nor its broker's view says so.
	admin := c.Admin(1)
	b1 := c.Nodes[1].Broker
	if err := testutil.Poll(3*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		st, err := admin.Status(ctx, &adminv1.StatusRequest{})
		if err != nil {
			return err
		}
		if st.GetRole() == adminv1.Role_ROLE_LEADER && st.GetEpoch() == 1 {
			return fmt.Errorf("node 1's status: leader of epoch 1")
		}
		if v := b1.View(); v.Role == link.RoleLeader && v.Epoch == 1 {
			return fmt.Errorf("node 1's broker: leader of epoch 1 (it takes writes)")
		}
		return nil
	}); err != nil {
		t.Fatalf("3s after its lease was revoked, the old leader still leads in its old term: %v", err)
	}

	// It campaigns again (the only eligible node) and etcd names it the
	// leader of a new epoch.
	id, epoch := leaderOf(t, c, 0)
	if id != 1 || epoch != 2 {
		t.Fatalf("after the revoked lease: node %d leads epoch %d, want node 1 re-elected in epoch 2", id, epoch)
	}
	testutil.Eventually(t, 10*time.Second, func() error {
		keys, err := electionKeys(cli)
		if err != nil {
			return err
		}
		if len(keys) == 0 || keys[0].NodeID != 1 || keys[0].Epoch != 2 {
			return fmt.Errorf("election keys %+v, want node 1 first, in epoch 2", keys)
		}
		return nil
	})

	c.StartBroker(2)
	c.StartBroker(3)
	c.WaitCaughtUp(20)
	c.Nodes[1].Broker.Produce(t, 10, 100)
	c.WaitCaughtUp(30)
	c.AssertIdentical(30)

	w.close()
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.wasFollower[1] {
		t.Errorf("node 1 was never seen as a follower after its lease was revoked: it was not fenced")
	}
	if len(w.sameEpoch) > 0 {
		t.Errorf("two leaders in one epoch: %v", w.sameEpoch)
	}
}

// A follower whose broker comes back with a shorter WAL than the commit
// point its sidecar knows (here: entries 11-20 gone, as when the WAL is
// restored from an older copy) lacks acknowledged writes; it stays in the
// published ISR (the leader is gone and cannot shrink it), yet it must not
// campaign. The follower that holds everything is elected instead, and no
// acknowledged entry is lost.
func TestEtcdFollowerBelowCommitPointDoesNotCampaign(t *testing.T) {
	c, url := etcdCluster(t, func(cfg *sidecar.Config) {
		// The ISR stays [1,2,3] through the followers' short outage.
		cfg.ReplicaLagTimeMax = time.Minute
	})
	want := c.Checksums(20)[1]
	cli := etcdClient(t, url)
	waitPublishedISR(t, cli, "[1,2,3]")
	restoreISR := keepISR(t, cli)

	// The followers' brokers crash; then the leader's pair stops (its
	// lease is revoked). No node can lead; the ISR in etcd is [1,2,3].
	c.StopBroker(2)
	c.StopBroker(3)
	waitOnlyCandidate(t, cli, 1)
	c.StopSidecar(1)
	c.StopBroker(1)
	restoreISR()
	waitPublishedISR(t, cli, "[1,2,3]")

	// Node 2's broker comes back without entries 11-20.
	cutWAL(t, c, 2, 10)
	w := watchRoles(t, c)
	c.StartBroker(2)
	testutil.Eventually(t, 10*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		ok, why, err := c.Nodes[2].Sidecar.CampaignEligibility(ctx)
		if err != nil {
			return err
		}
		if ok || !strings.Contains(why, "its WAL ends at LSN 10, before the commit point 20 it knows") {
			return fmt.Errorf("node 2 (WAL ends at 10, knows commit 20): may campaign %v, reason %q", ok, why)
		}
		return nil
	})

	// Node 3 holds everything: it is elected, and node 2 gets 11-20 back.
	c.StartBroker(3)
	id, epoch := leaderOf(t, c, 1)
	if id != 3 || epoch != 2 {
		t.Fatalf("leader: node %d epoch %d, want node 3 in epoch 2", id, epoch)
	}
	c.WaitCaughtUp(20)
	for node, sum := range c.Checksums(20) {
		if sum != want {
			t.Errorf("node %d: checksum of [1, 20] %x, want %x (the acknowledged entries)", node, sum, want)
		}
	}
	w.close()
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.led[2] {
		t.Errorf("node 2 led with a WAL that lacked committed entries")
	}
}

// A new leader that cannot read the ISR published in etcd must not let
// its commit point (every broker's high watermark) pass entries that a
// member of the old ISR lacks: that member may be elected next. Every
// node in --peers holds it back until the new leader publishes its own
// ISR. Node 1 leads here with its WAL at 100; node 2 is connected and
// caught up, node 3 has not connected yet.
func TestNewLeaderPinsEveryPeerWhenThePublishedISRIsUnknown(t *testing.T) {
	cfg := sidecar.DefaultConfig()
	cfg.NodeID, cfg.ClusterID, cfg.LeaderID = 1, "c1", 1
	cfg.Peers = map[int32]string{1: "127.0.0.1:1", 2: "127.0.0.1:2", 3: "127.0.0.1:3"}
	cfg.EtcdEndpoints = []string{"http://127.0.0.1:1"}
	cfg.EtcdPrefix = "/t/"
	flushed := map[int32]uint64{2: 100}
	for _, tt := range []struct {
		name string
		read sidecar.ISRRead
		want uint64
	}{
		{"ISR read failed", sidecar.ISRRead{Err: errors.New("context deadline exceeded")}, 0},
		{"ISR is not JSON", sidecar.ISRRead{Present: true, Value: "garbage"}, 0},
		{"ISR has no members", sidecar.ISRRead{Present: true, Value: `{"leader_id":2,"epoch":4,"isr":[]}`}, 0},
		// Node 3 was in the old ISR: it may be elected, so it holds the
		// commit point (it has confirmed nothing to this leader yet).
		{"published ISR [1 2 3]", sidecar.ISRRead{Present: true, Value: `{"leader_id":2,"epoch":4,"isr":[1,2,3]}`}, 0},
		// Node 4 is not in this leader's --peers (it never connects
		// here): what it holds is unknown, so the commit point waits.
		{"published ISR names a node not in --peers", sidecar.ISRRead{Present: true, Value: `{"leader_id":2,"epoch":4,"isr":[1,2,4]}`}, 0},
		// Node 3 had left the ISR: only nodes 1 and 2 count.
		{"published ISR [1 2]", sidecar.ISRRead{Present: true, Value: `{"leader_id":2,"epoch":4,"isr":[1,2]}`}, 100},
		// No ISR was ever published (a new cluster): nothing is pinned.
		{"no ISR key", sidecar.ISRRead{}, 100},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := sidecar.CommitAfterElection(cfg, tt.read, 100, flushed); got != tt.want {
				t.Errorf("commit point %d, want %d", got, tt.want)
			}
		})
	}
}

// waitCandidates waits until the election's keys belong to ids, in that
// order (the first one leads, the others queue behind it).
func waitCandidates(t *testing.T, cli *clientv3.Client, ids ...int32) {
	t.Helper()
	testutil.Eventually(t, 20*time.Second, func() error {
		keys, err := electionKeys(cli)
		if err != nil {
			return err
		}
		var got []int32
		for _, k := range keys {
			got = append(got, k.NodeID)
		}
		if !slices.Equal(got, ids) {
			return fmt.Errorf("election keys of nodes %v, want %v", got, ids)
		}
		return nil
	})
}

// A node that lost the tail of its WAL together with its sidecar's memory
// (a power loss under --fsync interval) still looks eligible: it is in the
// published ISR and knows no commit point. When it wins the election it
// asks its peers, finds one in the ISR holding more of the log, and gives
// the election up to it, so the acknowledged entries it lacks survive.
func TestEtcdWinnerDefersToPeerHoldingMore(t *testing.T) {
	c, url := etcdCluster(t, func(cfg *sidecar.Config) {
		cfg.LeaseTTL = 6 * time.Second      // time to line up the candidates below
		cfg.ReplicaLagTimeMax = time.Minute // the ISR stays [1,2,3]
	})
	want := c.Checksums(20)[1]
	cli := etcdClient(t, url)
	waitPublishedISR(t, cli, "[1,2,3]")

	// Node 2 goes down with its WAL cut back to LSN 10; node 3's broker
	// stops (node 3 withdraws); then node 1's broker stops, so node 1 can
	// no longer serve its followers and resigns after a whole lease TTL.
	c.StopBroker(2)
	c.StopSidecar(2)
	cutWAL(t, c, 2, 10)
	c.StopBroker(3)
	waitOnlyCandidate(t, cli, 1)
	w := watchRoles(t, c)
	c.StopBroker(1)

	// Node 2 comes back knowing nothing of the commit point, and queues
	// behind node 1; node 3's broker comes back and queues behind node 2.
	c.StartSidecar(2)
	c.StartBroker(2)
	waitCandidates(t, cli, 1, 2)
	c.StartBroker(3)
	waitCandidates(t, cli, 1, 2, 3)

	// Node 1 resigns: node 2 wins first, sees node 3 holding LSNs 1-20,
	// and resigns; node 3 leads and node 2 catches up from it.
	testutil.Eventually(t, 30*time.Second, func() error {
		st := statusOf(t, c, 3)
		if st.GetRole() != adminv1.Role_ROLE_LEADER || st.GetEpoch() < 2 {
			return fmt.Errorf("node 3 is %s in epoch %d", st.GetRole(), st.GetEpoch())
		}
		return nil
	})
	c.StartBroker(1)
	testutil.Eventually(t, 30*time.Second, func() error {
		for _, id := range c.IDs() {
			if got := c.Nodes[id].Broker.WAL().LastLSN(); got < 20 {
				return fmt.Errorf("node %d holds %d entries", id, got)
			}
		}
		return nil
	})
	w.close()
	if got := c.Checksums(20); got[1] != want || got[2] != want || got[3] != want {
		t.Fatalf("checksums of LSNs 1-20 after the election: %v, want %x everywhere (entries 11-20 were committed)", got, want)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.led[2] {
		t.Error("node 2, holding 10 of 20 committed entries, led")
	}
	if len(w.sameEpoch) > 0 {
		t.Errorf("two leaders in one epoch: %v", w.sameEpoch)
	}
}

// A winner does not resign to a peer that holds more of the log but does
// not campaign: that peer would never take the election, and the winner
// would resign to it again and again while nobody led. Found by the e2e
// test of a leader cut off from etcd only (e2e/partition_test.go): the old
// leader, still reachable by its peers, held one uncommitted entry more
// than they did, and no node led until its link to etcd came back.
//
// Here node 1 leads and writes 5 entries that its followers never get
// (their sidecars are down; the ISR stays [1,2,3] and the commit point at
// 20). Its sidecar then restarts pointed at an etcd that is not there: it
// can follow but never campaign. Node 2 or 3 must lead, and node 1 must
// drop its 5 uncommitted entries and follow.
func TestEtcdWinnerPassesOverPeerThatDoesNotCampaign(t *testing.T) {
	c, url := etcdCluster(t, func(cfg *sidecar.Config) {
		cfg.ReplicaLagTimeMax = time.Minute // the ISR stays [1,2,3]
	})
	cli := etcdClient(t, url)
	waitPublishedISR(t, cli, "[1,2,3]")
	committed := c.Checksums(20)[1]

	for _, id := range []int32{2, 3} {
		// Crashed, they do not tell the leader that they leave: the ISR
		// stays [1,2,3], and the commit point at 20.
		c.Nodes[id].Sidecar.Crash()
		c.Nodes[id].Sidecar = nil
	}
	c.Nodes[1].Broker.Produce(t, 5, 100) // LSNs 21-25, on node 1 only
	if got := c.Nodes[1].Broker.WAL().LastLSN(); got != 25 {
		t.Fatalf("node 1 holds %d entries, want 25", got)
	}
	c.StopSidecar(1)
	c.Nodes[1].Config.EtcdEndpoints = []string{"http://" + testutil.FreeAddr(t)} // nothing listens there
	c.StartSidecar(1)
	c.StartSidecar(2)
	c.StartSidecar(3)

	var leader int32
	var epoch uint32
	testutil.Eventually(t, 30*time.Second, func() error {
		for _, id := range []int32{2, 3} {
			if st := statusOf(t, c, id); st.GetRole() == adminv1.Role_ROLE_LEADER && st.GetEpoch() >= 2 {
				leader, epoch = id, st.GetEpoch()
				return nil
			}
		}
		return errors.New("neither node 2 nor node 3 leads")
	})
	waitRole(t, c, leader, link.RoleLeader, epoch).Produce(t, 3, 100) // LSNs 21-23 of the new epoch
	testutil.Eventually(t, 30*time.Second, func() error {
		for _, id := range c.IDs() {
			if got := c.Nodes[id].Broker.WAL().LastLSN(); got != 23 {
				return fmt.Errorf("node %d holds %d entries, want 23", id, got)
			}
		}
		return nil
	})
	if got := c.Checksums(20); got[1] != committed || got[2] != committed || got[3] != committed {
		t.Fatalf("checksums of the 20 committed entries: %v, want %x everywhere", got, committed)
	}
	c.AssertIdentical(23)
}

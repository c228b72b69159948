package sidecar_test

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/tandem-io/tandem/broker/link"
	"github.com/tandem-io/tandem/internal/testutil"
	"github.com/tandem-io/tandem/sidecar"
	"github.com/tandem-io/tandem/sidecar/sidecartest"
)

// startEtcd runs a one-member etcd (/usr/bin/etcd) on free ports with a
// temp data dir for the test and returns its client URL.
func startEtcd(t *testing.T) string {
	t.Helper()
	client, peer := testutil.FreeAddr(t), testutil.FreeAddr(t)
	cu, pu := "http://"+client, "http://"+peer
	cmd := exec.Command("/usr/bin/etcd", "--name", "t", "--data-dir", filepath.Join(t.TempDir(), "etcd"),
		"--listen-client-urls", cu, "--advertise-client-urls", cu,
		"--listen-peer-urls", pu, "--initial-advertise-peer-urls", pu,
		"--initial-cluster", "t="+pu, "--log-level", "error")
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting etcd: %v", err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	testutil.WaitTCPFor(t, client, 20*time.Second)
	return cu
}

// leaderOf waits until exactly one running broker has a leader view and
// returns its id and epoch.
func leaderOf(t *testing.T, c *sidecartest.Cluster, skip int32) (int32, uint32) {
	t.Helper()
	var id int32
	var epoch uint32
	testutil.Eventually(t, 20*time.Second, func() error {
		id, epoch = 0, 0
		for _, n := range c.Nodes {
			if n.Broker == nil || n.ID == skip {
				continue
			}
			if v := n.Broker.View(); v.Role == link.RoleLeader {
				if id != 0 {
					return fmt.Errorf("two leaders: %d and %d", id, n.ID)
				}
				id, epoch = n.ID, v.Epoch
			}
		}
		if id == 0 {
			return fmt.Errorf("no leader")
		}
		return nil
	})
	return id, epoch
}

// etcdCluster starts etcd and three nodes that elect their leader through
// it (2 s leases; tweak may change more), checks that --leader 1 won the
// first election thanks to its head start in a new cluster, and writes 20
// entries that every node holds. It returns the cluster and etcd's URL.
func etcdCluster(t *testing.T, tweak func(*sidecar.Config)) (*sidecartest.Cluster, string) {
	t.Helper()
	url := startEtcd(t)
	c := sidecartest.NewCluster(t, 3, 1, func(cfg *sidecar.Config) {
		cfg.EtcdEndpoints = []string{url}
		cfg.LeaseTTL = 2 * time.Second
		cfg.EpochPollInterval = 200 * time.Millisecond
		if tweak != nil {
			tweak(cfg)
		}
	})
	c.StartAll()
	if id, epoch := leaderOf(t, c, 0); id != 1 || epoch != 1 {
		t.Fatalf("first leader: node %d epoch %d, want node 1 epoch 1", id, epoch)
	}
	c.Nodes[1].Broker.Produce(t, 20, 100)
	c.WaitCaughtUp(20)
	return c, url
}

func TestEtcdElectionFailover(t *testing.T) {
	c, url := etcdCluster(t, nil)
	// Followers are electable once the leader published them in the ISR.
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{url}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	testutil.Eventually(t, 20*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		r, err := cli.Get(ctx, "/tandem/test-cluster/isr")
		if err != nil {
			return err
		}
		if len(r.Kvs) == 0 || !strings.Contains(string(r.Kvs[0].Value), `"isr":[1,2,3]`) {
			return fmt.Errorf("published ISR: %v", r.Kvs)
		}
		return nil
	})

	// The leader's sidecar stops (its lease is revoked): an in-sync
	// follower is elected in a new epoch.
	c.StopSidecar(1)
	id, epoch := leaderOf(t, c, 1)
	if id == 1 || epoch != 2 {
		t.Fatalf("after the leader left: node %d epoch %d, want node 2 or 3 in epoch 2", id, epoch)
	}
	// The old leader's broker still thinks it leads until its sidecar is
	// back: then it is fenced and follows.
	c.StartSidecar(1)
	testutil.Eventually(t, 20*time.Second, func() bool {
		v := c.Nodes[1].Broker.View()
		return v.Role == link.RoleFollower && v.LeaderID == id && v.Epoch == epoch
	})
	c.Nodes[id].Broker.Produce(t, 10, 100)
	c.WaitCaughtUp(30)
	c.AssertIdentical(30)
}

package e2e

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	adminv1 "github.com/tandem-io/tandem/gen/tandem/admin/v1"
	"github.com/tandem-io/tandem/internal/testutil"
)

// A cluster of real broker+sidecar process pairs on 127.0.0.1 (or each pair
// in a network namespace of its own: clusterOpts.net), for tests of
// replication, commit rules and failover. Every node has its own data
// directory, socket and logs under the test's temp dir.

type clusterOpts struct {
	nodes        int      // default 3
	leader       int      // static leader, default 1
	clusterID    string   // default "e2e"
	brokerFlags  []string // appended to every broker's command line
	sidecarFlags []string // appended to every sidecar's command line
	// brokerFlagsFor, when set, gives flags for node id's broker alone
	// (after brokerFlags), e.g. its own --metrics-listen address.
	brokerFlagsFor func(id int) []string
	// sidecarFlagsFor is the same for node id's sidecar (after
	// sidecarFlags).
	sidecarFlagsFor func(id int) []string
	// peerAddr, when set, gives the address node self's sidecar is told
	// for peer's sidecar (--peers), e.g. a proxy in between.
	peerAddr func(self, peer int, addr string) string
	// prepare, when set, runs for every node before its processes start
	// (e.g. to mount a file system on its data directory, n.dir/data).
	prepare func(n *node)
	// net, when set, runs node i in net's host "n<i>" (its own network
	// namespace and address) instead of on 127.0.0.1, so that the test can
	// cut the network between nodes.
	net *testutil.Network
}

type node struct {
	id      int
	kafka   string // broker's Kafka address
	sidecar string // sidecar's gRPC address
	dir     string
	sock    string
	host    *testutil.Host // nil unless the cluster runs on a testutil.Network
	broker  *testutil.Process
	side    *testutil.Process
}

type cluster struct {
	t     *testing.T
	opts  clusterOpts
	nodes []*node // nodes[i].id == i+1
}

// startCluster starts every pair and waits until every follower is in sync.
func startCluster(t *testing.T, opts clusterOpts) *cluster {
	t.Helper()
	if opts.nodes == 0 {
		opts.nodes = 3
	}
	if opts.leader == 0 {
		opts.leader = 1
	}
	if opts.clusterID == "" {
		opts.clusterID = "e2e"
	}
	c := &cluster{t: t, opts: opts}
	base := t.TempDir()
	for i := 1; i <= opts.nodes; i++ {
		n := &node{id: i, dir: filepath.Join(base, fmt.Sprintf("node-%d", i))}
		if opts.net != nil {
			n.host = opts.net.Host(fmt.Sprintf("n%d", i))
			n.kafka, n.sidecar = n.host.Addr(9092), n.host.Addr(7400)
		} else {
			n.kafka, n.sidecar = testutil.FreeAddr(t), testutil.FreeAddr(t)
		}
		// Unix socket paths are limited to 108 bytes; keep them short.
		n.sock = filepath.Join(shortTempDir(t), "s.sock")
		c.nodes = append(c.nodes, n)
	}
	for _, n := range c.nodes {
		if opts.prepare != nil {
			opts.prepare(n)
		}
		brokerFlags := slices.Clone(opts.brokerFlags)
		if opts.brokerFlagsFor != nil {
			brokerFlags = append(brokerFlags, opts.brokerFlagsFor(n.id)...)
		}
		sidecarFlags := slices.Clone(opts.sidecarFlags)
		if opts.sidecarFlagsFor != nil {
			sidecarFlags = append(sidecarFlags, opts.sidecarFlagsFor(n.id)...)
		}
		n.side = testutil.Start(t, n.wrap(testutil.ProcessConfig{
			Name: fmt.Sprintf("sidecar-%d", n.id),
			Path: testutil.Bin(t, "tandem-sidecar"),
			Args: append([]string{
				"--node-id", fmt.Sprint(n.id), "--cluster-id", opts.clusterID,
				"--broker-socket", n.sock, "--listen", n.sidecar,
				"--peers", c.peersFor(n.id), "--leader", fmt.Sprint(opts.leader),
				"--heartbeat-interval", "500ms", "--peer-timeout", "3s",
			}, sidecarFlags...),
		}))
		n.broker = testutil.Start(t, n.wrap(testutil.ProcessConfig{
			Name: fmt.Sprintf("broker-%d", n.id),
			Path: brokerPath(t),
			Args: append([]string{
				"--node-id", fmt.Sprint(n.id), "--data-dir", filepath.Join(n.dir, "data"),
				"--listen", n.kafka, "--advertise", n.kafka, "--sidecar", n.sock,
				"--group-initial-rebalance-delay", "0s",
			}, brokerFlags...),
		}))
	}
	for _, n := range c.nodes {
		testutil.WaitTCPFor(t, n.kafka, 20*time.Second)
		testutil.WaitTCPFor(t, n.sidecar, 20*time.Second)
	}
	c.waitInSync(30 * time.Second)
	return c
}

// peersFor is node id's sidecar's --peers (opts.peerAddr applied).
func (c *cluster) peersFor(id int) string {
	var peers []string
	for _, p := range c.nodes {
		addr := p.sidecar
		if c.opts.peerAddr != nil {
			addr = c.opts.peerAddr(id, p.id, addr)
		}
		peers = append(peers, fmt.Sprintf("%d=%s", p.id, addr))
	}
	return strings.Join(peers, ",")
}

// shortTempDir is a fresh directory with a short path (for Unix sockets).
func shortTempDir(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("mktemp", "-d", "/tmp/tdm.XXXXXX").Output()
	if err != nil {
		t.Fatal(err)
	}
	dir := strings.TrimSpace(string(out))
	t.Cleanup(func() { exec.Command("rm", "-rf", dir).Run() })
	return dir
}

func (c *cluster) node(id int) *node { return c.nodes[id-1] }

// wrap runs cfg in n's network namespace when the cluster has one.
func (n *node) wrap(cfg testutil.ProcessConfig) testutil.ProcessConfig {
	if n.host == nil {
		return cfg
	}
	return n.host.Wrap(cfg)
}

func (c *cluster) leader() *node { return c.node(c.opts.leader) }

// kafkaAddrs lists every broker (clients bootstrap from all of them).
func (c *cluster) kafkaAddrs() []string {
	var out []string
	for _, n := range c.nodes {
		out = append(out, n.kafka)
	}
	return out
}

// status asks one sidecar for its admin status.
func (c *cluster) status(id int) (*adminv1.StatusResponse, error) {
	conn, err := grpc.NewClient(c.node(id).sidecar, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	return adminv1.NewAdminServiceClient(conn).Status(ctx, &adminv1.StatusRequest{})
}

// waitInSync waits until the leader reports every follower connected, in
// the ISR and caught up to its last LSN, and every node linked.
func (c *cluster) waitInSync(timeout time.Duration) {
	c.t.Helper()
	testutil.Eventually(c.t, timeout, func() error { return c.inSync(c.opts.leader) })
}

func (c *cluster) inSync(leaderID int) error {
	st, err := c.status(leaderID)
	if err != nil {
		return err
	}
	if !st.Linked {
		return fmt.Errorf("leader %d not linked to its broker", leaderID)
	}
	if len(st.Replicas) != len(c.nodes)-1 {
		return fmt.Errorf("leader sees %d replicas, want %d", len(st.Replicas), len(c.nodes)-1)
	}
	for _, r := range st.Replicas {
		if !r.Connected || !r.InIsr || r.AppliedLsn < st.LastLsn {
			return fmt.Errorf("replica %d: connected=%v in_isr=%v applied=%d, leader last=%d",
				r.NodeId, r.Connected, r.InIsr, r.AppliedLsn, st.LastLsn)
		}
	}
	return nil
}

// caughtUp waits until every listed node's WAL ends at the leader's last LSN.
func (c *cluster) caughtUp(timeout time.Duration, leaderID int, ids ...int) {
	c.t.Helper()
	testutil.Eventually(c.t, timeout, func() error {
		ls, err := c.status(leaderID)
		if err != nil {
			return err
		}
		for _, id := range ids {
			st, err := c.status(id)
			if err != nil {
				return err
			}
			if st.LastLsn != ls.LastLsn {
				return fmt.Errorf("node %d at LSN %d, leader %d at %d", id, st.LastLsn, leaderID, ls.LastLsn)
			}
		}
		return nil
	})
}

// verify runs `tandemctl verify` against a node and returns its output and
// whether it reported the replicas identical (exit status 0).
func (c *cluster) verify(id int, extra ...string) (string, error) {
	args := append([]string{"--sidecar", c.node(id).sidecar, "verify"}, extra...)
	out, err := exec.Command(testutil.Bin(c.t, "tandemctl"), args...).CombinedOutput()
	return string(out), err
}

// mustVerify fails the test unless the nodes verify identical.
func (c *cluster) mustVerify(id int, extra ...string) string {
	c.t.Helper()
	out, err := c.verify(id, extra...)
	if err != nil {
		c.t.Fatalf("tandemctl verify: %v\n%s", err, out)
	}
	return out
}

// killPair SIGKILLs both processes of a node; startPair starts them again on
// their old data.
func (n *node) killPair() {
	n.broker.Kill()
	n.side.Kill()
}

// stopPair sends SIGTERM to both processes of a node at once, as
// Kubernetes stops a pod's containers, and waits for both; the error says
// which did not exit cleanly.
func (n *node) stopPair() error {
	var wg sync.WaitGroup
	var brokerErr, sideErr error
	wg.Add(2)
	go func() { defer wg.Done(); brokerErr = n.broker.Stop() }()
	go func() { defer wg.Done(); sideErr = n.side.Stop() }()
	wg.Wait()
	if brokerErr != nil || sideErr != nil {
		return fmt.Errorf("node %d: SIGTERM: broker %v, sidecar %v (want both to exit cleanly)", n.id, brokerErr, sideErr)
	}
	return nil
}

func (n *node) startPair() {
	n.side.MustRestart()
	n.broker.MustRestart()
}

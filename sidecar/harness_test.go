package sidecar

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"

	"github.com/tandem-io/tandem/broker/link"
	"github.com/tandem-io/tandem/broker/wal"
	adminv1 "github.com/tandem-io/tandem/gen/tandem/admin/v1"
	"github.com/tandem-io/tandem/internal/testutil"
)

// memBroker is a small, real implementation of link.Broker for tests: it
// keeps a real wal.Log on disk and no Kafka state. Leaders append with
// produce; followers get entries through the link, as the real broker does.
type memBroker struct {
	id   int32
	host string
	port int32
	dir  string
	w    *wal.Log

	mu     sync.Mutex
	view   link.ClusterView
	commit uint64
	views  int
}

func openMemBroker(t *testing.T, id int32, dir string) *memBroker {
	t.Helper()
	w, err := wal.Open(wal.Options{Dir: dir, Sync: wal.SyncNone, Logger: testLogger(t, fmt.Sprintf("wal-%d", id))})
	if err != nil {
		t.Fatalf("opening WAL of node %d: %v", id, err)
	}
	return &memBroker{id: id, host: "127.0.0.1", port: 9090 + id, dir: dir, w: w}
}

func (b *memBroker) NodeID() int32                  { return b.id }
func (b *memBroker) Advertised() (string, int32)    { return b.host, b.port }
func (b *memBroker) WAL() *wal.Log                  { return b.w }
func (b *memBroker) TruncateAfter(lsn uint64) error { return b.w.Truncate(lsn) }
func (b *memBroker) ResetTo(next uint64) error      { return b.w.Reset(next) }

func (b *memBroker) ApplyEntries(ents []wal.Entry) error {
	for _, e := range ents {
		if _, err := b.w.AppendEntry(e); err != nil {
			return err
		}
	}
	return b.w.WaitDurable(context.Background(), ents[len(ents)-1].LSN)
}

func (b *memBroker) SetClusterView(v link.ClusterView) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.view = v
	b.views++
}

func (b *memBroker) SetCommitLSN(lsn uint64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.commit = max(b.commit, lsn)
}

func (b *memBroker) Commit() uint64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.commit
}

func (b *memBroker) View() link.ClusterView {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.view
}

// produce appends n entries as the leader does (in the view's epoch).
func (b *memBroker) produce(t *testing.T, n int, size int) {
	t.Helper()
	v := b.View()
	if v.Role != link.RoleLeader {
		t.Fatalf("node %d is not leader (role %v)", b.id, v.Role)
	}
	var last uint64
	for i := 0; i < n; i++ {
		payload := make([]byte, size)
		copy(payload, fmt.Sprintf("node %d entry %d", b.id, b.w.LastLSN()+1))
		pos, err := b.w.Append(v.Epoch, wal.TypeRecordBatch, payload)
		if err != nil {
			t.Fatalf("append on node %d: %v", b.id, err)
		}
		last = pos.LSN
	}
	if err := b.w.WaitDurable(context.Background(), last); err != nil {
		t.Fatal(err)
	}
}

// node is one broker+sidecar pair in a test cluster.
type node struct {
	id       int32
	dir      string
	socket   string
	addr     string
	cfg      Config
	sc       *Sidecar
	broker   *memBroker
	stopLink context.CancelFunc
	linkDone chan struct{}
}

type cluster struct {
	t      *testing.T
	nodes  map[int32]*node
	peers  map[int32]string
	leader int32
}

func testLogger(t *testing.T, name string) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Name: name, Level: hclog.Debug, Output: testWriter{t}})
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p[:len(p)-1]))
	return len(p), nil
}

// newCluster prepares n nodes (not started) with node `leader` leading.
func newCluster(t *testing.T, n int, leader int32, tweak func(*Config)) *cluster {
	c := &cluster{t: t, nodes: map[int32]*node{}, peers: map[int32]string{}, leader: leader}
	base := t.TempDir()
	for i := int32(1); i <= int32(n); i++ {
		c.peers[i] = testutil.FreeAddr(t)
	}
	for i := int32(1); i <= int32(n); i++ {
		dir := filepath.Join(base, fmt.Sprintf("node-%d", i))
		cfg := DefaultConfig()
		cfg.NodeID, cfg.ClusterID, cfg.LeaderID = i, "test-cluster", leader
		cfg.BrokerSocket = filepath.Join(dir, "run", "sidecar.sock")
		cfg.Listen = c.peers[i]
		cfg.Peers = c.peers
		cfg.HeartbeatInterval = 200 * time.Millisecond
		cfg.PeerTimeout = 2 * time.Second
		cfg.ReplicaLagTimeMax = 2 * time.Second
		cfg.BatchBytes = 16 << 10
		cfg.WindowBytes = 64 << 10
		cfg.CacheBytes = 128 << 10
		if tweak != nil {
			tweak(&cfg)
		}
		c.nodes[i] = &node{id: i, dir: dir, socket: cfg.BrokerSocket, addr: c.peers[i], cfg: cfg}
	}
	t.Cleanup(c.close)
	return c
}

func (c *cluster) startAll() {
	for _, id := range c.ids() {
		c.startSidecar(id)
		c.startBroker(id)
	}
}

func (c *cluster) ids() []int32 {
	var ids []int32
	for id := range c.nodes {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

func (c *cluster) startSidecar(id int32) {
	n := c.nodes[id]
	cfg := n.cfg
	cfg.Logger = testLogger(c.t, fmt.Sprintf("sidecar-%d", id))
	sc, err := Open(cfg)
	if err != nil {
		c.t.Fatalf("starting sidecar %d: %v", id, err)
	}
	n.sc = sc
}

func (c *cluster) stopSidecar(id int32) {
	n := c.nodes[id]
	if n.sc != nil {
		n.sc.Close()
		n.sc = nil
	}
}

func (c *cluster) startBroker(id int32) {
	n := c.nodes[id]
	n.broker = openMemBroker(c.t, id, filepath.Join(n.dir, "wal"))
	ctx, cancel := context.WithCancel(context.Background())
	n.stopLink, n.linkDone = cancel, make(chan struct{})
	go func() {
		defer close(n.linkDone)
		link.Run(ctx, n.socket, n.broker, testLogger(c.t, fmt.Sprintf("link-%d", id)))
	}()
}

func (c *cluster) stopBroker(id int32) {
	n := c.nodes[id]
	if n.broker == nil {
		return
	}
	n.stopLink()
	<-n.linkDone
	n.broker.w.Close()
	n.broker = nil
}

func (c *cluster) close() {
	for _, id := range c.ids() {
		c.stopBroker(id)
		c.stopSidecar(id)
	}
}

// admin returns an admin client for node id's sidecar.
func (c *cluster) admin(id int32) adminv1.AdminServiceClient {
	conn, err := grpc.NewClient(c.peers[id], ClientOptions(hclog.NewNullLogger(), 16<<20)...)
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { conn.Close() })
	return adminv1.NewAdminServiceClient(conn)
}

// waitLeader waits until the leader's broker has its leader view.
func (c *cluster) waitLeader() *memBroker {
	b := c.nodes[c.leader].broker
	testutil.Eventually(c.t, 10*time.Second, func() bool { return b.View().Role == link.RoleLeader })
	return b
}

// waitCaughtUp waits until every running broker holds lsn entries and the
// commit point reached lsn everywhere.
func (c *cluster) waitCaughtUp(lsn uint64) {
	c.t.Helper()
	testutil.Eventually(c.t, 20*time.Second, func() error {
		for _, id := range c.ids() {
			b := c.nodes[id].broker
			if b == nil {
				continue
			}
			if got := b.w.LastLSN(); got != lsn {
				return fmt.Errorf("node %d has LSN %d, want %d", id, got, lsn)
			}
			if got := b.Commit(); got != lsn {
				return fmt.Errorf("node %d has commit %d, want %d", id, got, lsn)
			}
		}
		return nil
	})
}

// checksums returns every running node's checksum of [1, upto] through
// the admin API.
func (c *cluster) checksums(upto uint64) map[int32]uint64 {
	c.t.Helper()
	out := map[int32]uint64{}
	for _, id := range c.ids() {
		if c.nodes[id].broker == nil {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		r, err := c.admin(id).Checksum(ctx, &adminv1.ChecksumRequest{FromLsn: 1, ToLsn: upto})
		cancel()
		if err != nil {
			c.t.Fatalf("checksum on node %d: %v", id, err)
		}
		out[id] = r.GetChecksum()
	}
	return out
}

func (c *cluster) assertIdentical(upto uint64) {
	c.t.Helper()
	sums := c.checksums(upto)
	var first uint64
	for i, id := range c.ids() {
		s, ok := sums[id]
		if !ok {
			continue
		}
		if i == 0 {
			first = s
		} else if s != first {
			c.t.Fatalf("checksums of [1, %d] differ: %v", upto, sums)
		}
	}
}

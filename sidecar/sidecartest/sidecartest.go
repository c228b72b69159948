// Package sidecartest runs Tandem sidecars in-process for tests: a Cluster
// of sidecar+broker pairs on 127.0.0.1 in which each broker is a MemBroker,
// a small real implementation of link.Broker that keeps a real wal.Log on
// disk and no Kafka state. Tests of the sidecar and of tandemctl use it;
// tests that need Kafka clients run the real binaries instead.
package sidecartest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"

	"github.com/tandem-io/tandem/broker/link"
	"github.com/tandem-io/tandem/broker/wal"
	adminv1 "github.com/tandem-io/tandem/gen/tandem/admin/v1"
	"github.com/tandem-io/tandem/internal/testutil"
	"github.com/tandem-io/tandem/sidecar"
)

// MemBroker implements link.Broker over a real WAL. A leader appends with
// Produce; a follower gets entries through the link as the real broker
// does. Like the real broker it remembers the commit point across a
// restart (a checkpoint file next to the WAL directory, written at Close)
// and reports it in its hello (link.Committer).
type MemBroker struct {
	id   int32
	host string
	port int32
	w    *wal.Log
	ckpt string // commit checkpoint file

	mu     sync.Mutex
	view   link.ClusterView
	commit uint64

	stopping chan struct{} // closed by Cluster.StopBrokerCleanly (link.Stopper)
}

// OpenMemBroker opens (or creates) the WAL in dir for node id (SyncNone,
// default segment size).
func OpenMemBroker(t testing.TB, id int32, dir string) *MemBroker {
	return OpenMemBrokerWith(t, id, wal.Options{Dir: dir})
}

// OpenMemBrokerWith opens the WAL with opts (Sync is forced to SyncNone
// and Logger is set).
func OpenMemBrokerWith(t testing.TB, id int32, opts wal.Options) *MemBroker {
	t.Helper()
	opts.Sync, opts.Logger = wal.SyncNone, Logger(t, fmt.Sprintf("wal-%d", id))
	w, err := wal.Open(opts)
	if err != nil {
		t.Fatalf("opening WAL of node %d: %v", id, err)
	}
	b := &MemBroker{id: id, host: "127.0.0.1", port: 9090 + id, w: w,
		ckpt:     filepath.Join(filepath.Dir(opts.Dir), fmt.Sprintf("membroker-%d-commit", id)),
		stopping: make(chan struct{})}
	if data, err := os.ReadFile(b.ckpt); err == nil {
		c, _ := strconv.ParseUint(strings.TrimSpace(string(data)), 10, 64)
		b.commit = min(c, w.DurableLSN()) // never more than is on disk
	}
	return b
}

// NodeID implements link.Broker.
func (b *MemBroker) NodeID() int32 { return b.id }

// Advertised implements link.Broker.
func (b *MemBroker) Advertised() (string, int32) { return b.host, b.port }

// WAL implements link.Broker.
func (b *MemBroker) WAL() *wal.Log { return b.w }

// TruncateAfter implements link.Broker. As the real broker does, the
// commit point it knows drops with the entries (an unclean promotion can
// cut committed entries away).
func (b *MemBroker) TruncateAfter(lsn uint64) error {
	err := b.w.Truncate(lsn)
	b.capCommit()
	return err
}

// ResetTo implements link.Broker.
func (b *MemBroker) ResetTo(next uint64) error {
	err := b.w.Reset(next)
	b.capCommit()
	return err
}

// capCommit lowers the commit point to the WAL's end.
func (b *MemBroker) capCommit() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.commit = min(b.commit, b.w.LastLSN())
}

// ApplyEntries implements link.Broker: append unchanged, wait until durable.
func (b *MemBroker) ApplyEntries(ents []wal.Entry) error {
	for _, e := range ents {
		if _, err := b.w.AppendEntry(e); err != nil {
			return err
		}
	}
	return b.w.WaitDurable(context.Background(), ents[len(ents)-1].LSN)
}

// SetClusterView implements link.Broker.
func (b *MemBroker) SetClusterView(v link.ClusterView) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.view = v
}

// SetCommitLSN implements link.Broker.
func (b *MemBroker) SetCommitLSN(lsn uint64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.commit = max(b.commit, lsn)
}

// Stopping implements link.Stopper: it is closed by StopBrokerCleanly.
func (b *MemBroker) Stopping() <-chan struct{} { return b.stopping }

// CommitLSN implements link.Committer.
func (b *MemBroker) CommitLSN() uint64 { return b.Commit() }

// Commit is the highest commit point the sidecar announced.
func (b *MemBroker) Commit() uint64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.commit
}

// View is the last cluster view the sidecar sent.
func (b *MemBroker) View() link.ClusterView {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.view
}

// Close writes the commit checkpoint and closes the WAL.
func (b *MemBroker) Close() error {
	if err := os.WriteFile(b.ckpt, []byte(strconv.FormatUint(b.Commit(), 10)+"\n"), 0o600); err != nil {
		b.w.Close()
		return err
	}
	return b.w.Close()
}

// Produce appends n entries of size bytes as the leader does (in the
// view's epoch) and waits until they are durable.
func (b *MemBroker) Produce(t testing.TB, n int, size int) {
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

// TryProduce appends one entry of size bytes when the broker's view lets
// it write (it leads, and its sidecar is not handing the leadership over),
// under the lock SetClusterView takes, as the real broker appends under
// appendMu: once a view that fences it is applied, nothing more is
// appended. It returns the entry's LSN, or 0 when the view refuses.
func (b *MemBroker) TryProduce(size int) (uint64, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.view.Role != link.RoleLeader || b.view.HandingOver {
		return 0, nil
	}
	pos, err := b.w.Append(b.view.Epoch, wal.TypeRecordBatch, make([]byte, size))
	return pos.LSN, err
}

// Node is one sidecar+broker pair of a Cluster.
type Node struct {
	ID      int32
	Dir     string
	Socket  string
	Addr    string         // sidecar --listen address
	Config  sidecar.Config // used at the next StartSidecar
	Sidecar *sidecar.Sidecar
	Broker  *MemBroker

	stopLink context.CancelFunc
	linkDone chan struct{}
}

// Cluster is a set of nodes in one test.
type Cluster struct {
	t      testing.TB
	Nodes  map[int32]*Node
	Peers  map[int32]string
	Leader int32
	// SegmentBytes, when set, is the WAL segment size of brokers started
	// from now on (small segments let tests delete old WAL).
	SegmentBytes int64
}

// Logger returns an hclog logger writing to t.Log.
func Logger(t testing.TB, name string) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Name: name, Level: hclog.Debug, Output: testWriter{t}})
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p[:len(p)-1]))
	return len(p), nil
}

// NewCluster prepares n nodes (not started) with node leader leading, on
// free ports, with short timeouts and small batches so that tests exercise
// batching, the window and the cache. tweak may change every node's config.
// The cluster is closed at the end of the test.
func NewCluster(t testing.TB, n int, leader int32, tweak func(*sidecar.Config)) *Cluster {
	c := &Cluster{t: t, Nodes: map[int32]*Node{}, Peers: map[int32]string{}, Leader: leader}
	base := t.TempDir()
	for i := int32(1); i <= int32(n); i++ {
		c.Peers[i] = testutil.FreeAddr(t)
	}
	for i := int32(1); i <= int32(n); i++ {
		dir := filepath.Join(base, fmt.Sprintf("node-%d", i))
		cfg := sidecar.DefaultConfig()
		cfg.NodeID, cfg.ClusterID, cfg.LeaderID = i, "test-cluster", leader
		cfg.BrokerSocket = filepath.Join(dir, "run", "sidecar.sock")
		cfg.Listen = c.Peers[i]
		cfg.Peers = c.Peers
		cfg.HeartbeatInterval = 200 * time.Millisecond
		cfg.PeerTimeout = 2 * time.Second
		cfg.ReplicaLagTimeMax = 2 * time.Second
		cfg.BatchBytes = 16 << 10
		cfg.WindowBytes = 64 << 10
		cfg.CacheBytes = 128 << 10
		if tweak != nil {
			tweak(&cfg)
		}
		c.Nodes[i] = &Node{ID: i, Dir: dir, Socket: cfg.BrokerSocket, Addr: c.Peers[i], Config: cfg}
	}
	t.Cleanup(c.Close)
	return c
}

// IDs lists the node ids in order.
func (c *Cluster) IDs() []int32 {
	var ids []int32
	for id := range c.Nodes {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// StartAll starts every node's sidecar and broker.
func (c *Cluster) StartAll() {
	for _, id := range c.IDs() {
		c.StartSidecar(id)
		c.StartBroker(id)
	}
}

// WriteStateFile writes node id's sidecar state file (its sidecar stopped)
// as a node that had been promoted to lead epoch would have it: for a test
// that hands a node a WAL of a later epoch than it ever led, which a
// sidecar with no such file refuses to lead (leading would reuse an epoch
// another node began).
func (c *Cluster) WriteStateFile(id, leader int32, epoch uint32) {
	n := c.Nodes[id]
	dir := n.Config.DataDir
	if dir == "" {
		dir = filepath.Dir(n.Socket)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		c.t.Fatal(err)
	}
	data := fmt.Sprintf("{\"leader_id\":%d,\"epoch\":%d}\n", leader, epoch)
	if err := os.WriteFile(filepath.Join(dir, "sidecar-state.json"), []byte(data), 0o600); err != nil {
		c.t.Fatal(err)
	}
}

// StartSidecar starts node id's sidecar.
func (c *Cluster) StartSidecar(id int32) {
	n := c.Nodes[id]
	cfg := n.Config
	cfg.Logger = Logger(c.t, fmt.Sprintf("sidecar-%d", id))
	sc, err := sidecar.Open(cfg)
	if err != nil {
		c.t.Fatalf("starting sidecar %d: %v", id, err)
	}
	n.Sidecar = sc
}

// StopSidecar stops node id's sidecar.
func (c *Cluster) StopSidecar(id int32) {
	n := c.Nodes[id]
	if n.Sidecar != nil {
		n.Sidecar.Close()
		n.Sidecar = nil
	}
}

// StartBroker opens node id's WAL and attaches it to the sidecar socket
// with link.Run.
func (c *Cluster) StartBroker(id int32) {
	n := c.Nodes[id]
	n.Broker = OpenMemBrokerWith(c.t, id, wal.Options{Dir: filepath.Join(n.Dir, "wal"), SegmentBytes: c.SegmentBytes})
	ctx, cancel := context.WithCancel(context.Background())
	n.stopLink, n.linkDone = cancel, make(chan struct{})
	b, log := n.Broker, Logger(c.t, fmt.Sprintf("link-%d", id))
	go func() {
		defer close(n.linkDone)
		link.Run(ctx, n.Socket, b, log)
	}()
}

// StopBroker detaches node id's broker and closes its WAL.
func (c *Cluster) StopBroker(id int32) {
	n := c.Nodes[id]
	if n.Broker == nil {
		return
	}
	n.stopLink()
	<-n.linkDone
	n.Broker.Close()
	n.Broker = nil
}

// StopBrokerCleanly stops node id's broker as the real broker stops on
// SIGTERM (a controlled shutdown, link.Stopper): the caller has stopped
// appending to its WAL; the link tells the sidecar, which may hand the
// leadership over before it ends the link; then the WAL is closed. Like
// the real broker it gives the sidecar at most 5 s. It reports whether the
// sidecar released the broker (ended the link) within them, and how long
// that took.
func (c *Cluster) StopBrokerCleanly(id int32) (released bool, took time.Duration) {
	n := c.Nodes[id]
	start := time.Now()
	close(n.Broker.stopping)
	select {
	case <-n.linkDone:
		released = true
	case <-time.After(5 * time.Second):
	}
	took = time.Since(start)
	c.StopBroker(id)
	return released, took
}

// Close stops every node.
func (c *Cluster) Close() {
	for _, id := range c.IDs() {
		c.StopBroker(id)
		c.StopSidecar(id)
	}
}

// Admin returns an admin client for node id's sidecar.
func (c *Cluster) Admin(id int32) adminv1.AdminServiceClient {
	conn, err := grpc.NewClient(c.Peers[id], sidecar.ClientOptions(hclog.NewNullLogger(), 16<<20)...)
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { conn.Close() })
	return adminv1.NewAdminServiceClient(conn)
}

// WaitLeader waits until the leader's broker got its leader view.
func (c *Cluster) WaitLeader() *MemBroker {
	c.t.Helper()
	b := c.Nodes[c.Leader].Broker
	testutil.Eventually(c.t, 10*time.Second, func() bool { return b.View().Role == link.RoleLeader })
	return b
}

// WaitCaughtUp waits until every running broker holds exactly lsn entries
// and knows commit point lsn.
func (c *Cluster) WaitCaughtUp(lsn uint64) {
	c.t.Helper()
	testutil.Eventually(c.t, 20*time.Second, func() error {
		for _, id := range c.IDs() {
			b := c.Nodes[id].Broker
			if b == nil {
				continue
			}
			if got := b.WAL().LastLSN(); got != lsn {
				return fmt.Errorf("node %d has LSN %d, want %d", id, got, lsn)
			}
			if got := b.Commit(); got != lsn {
				return fmt.Errorf("node %d has commit %d, want %d", id, got, lsn)
			}
		}
		return nil
	})
}

// Checksums returns every running node's checksum of [1, upto] through the
// admin API.
func (c *Cluster) Checksums(upto uint64) map[int32]uint64 {
	return c.ChecksumsFrom(1, upto)
}

// ChecksumsFrom returns every running node's checksum of [from, upto].
func (c *Cluster) ChecksumsFrom(from, upto uint64) map[int32]uint64 {
	c.t.Helper()
	out := map[int32]uint64{}
	for _, id := range c.IDs() {
		if c.Nodes[id].Broker == nil {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		r, err := c.Admin(id).Checksum(ctx, &adminv1.ChecksumRequest{FromLsn: from, ToLsn: upto})
		cancel()
		if err != nil {
			c.t.Fatalf("checksum on node %d: %v", id, err)
		}
		out[id] = r.GetChecksum()
	}
	return out
}

// AssertIdentical fails the test unless every running node has the same
// checksum of [1, upto].
func (c *Cluster) AssertIdentical(upto uint64) {
	c.t.Helper()
	c.AssertIdenticalFrom(1, upto)
}

// AssertIdenticalFrom fails the test unless every running node has the
// same checksum of [from, upto].
func (c *Cluster) AssertIdenticalFrom(from, upto uint64) {
	c.t.Helper()
	sums := c.ChecksumsFrom(from, upto)
	distinct := map[uint64]bool{}
	for _, s := range sums {
		distinct[s] = true
	}
	if len(distinct) > 1 {
		c.t.Fatalf("checksums of [%d, %d] differ: %v", from, upto, sums)
	}
}

package sidecar_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/tandem-io/tandem/broker/link"
	"github.com/tandem-io/tandem/broker/wal"
	"github.com/tandem-io/tandem/internal/testutil"
	"github.com/tandem-io/tandem/sidecar/sidecartest"
)

// racingBroker is a broker that led epoch 1 and, when the follower view
// reaches it, has just written three more epoch-1 entries after the
// position its hello announced (as a broker whose writes raced its fence
// would). It records every commit point it is handed that covers one of
// its own entries the leader never had.
type racingBroker struct {
	*sidecartest.MemBroker
	t    *testing.T
	once sync.Once

	mu  sync.Mutex
	bad []string
}

func (b *racingBroker) SetClusterView(v link.ClusterView) {
	if v.Role == link.RoleFollower {
		b.once.Do(func() {
			for i := 0; i < 3; i++ {
				if _, err := b.WAL().Append(1, wal.TypeRecordBatch, fmt.Appendf(nil, "raced %d", i)); err != nil {
					b.t.Error(err)
				}
			}
		})
	}
	b.MemBroker.SetClusterView(v)
}

func (b *racingBroker) SetCommitLSN(lsn uint64) {
	var epoch uint32
	for _, es := range b.WAL().EpochHistory() {
		if es.StartLSN <= lsn {
			epoch = es.Epoch
		}
	}
	if lsn > 5 && epoch == 1 {
		b.mu.Lock()
		b.bad = append(b.bad, fmt.Sprintf("commit point %d served over this WAL's own epoch-1 entry (the leader has epoch 2 there)", lsn))
		b.mu.Unlock()
	}
	b.MemBroker.SetCommitLSN(lsn)
}

// writeWAL writes entries with the given epochs (epoch-2 entries with
// payloads only the leader has).
func writeWAL(t *testing.T, dir string, epochs []uint32) {
	t.Helper()
	w, err := wal.Open(wal.Options{Dir: dir, Sync: wal.SyncNone})
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range epochs {
		p := fmt.Appendf(nil, "shared %d", i+1)
		if e == 2 {
			p = fmt.Appendf(nil, "leader's epoch 2, %d", i+1)
		}
		if _, err := w.Append(e, wal.TypeRecordBatch, p); err != nil {
			t.Fatal(err)
		}
	}
	w.Close()
}

// A follower's broker may hold entries past the position its sidecar
// announced that the leader never had. The commit point the sidecar
// forwards stops at what the broker is known to hold from this leader, and
// the broker serves none above an entry it refused as diverged, so a
// consumer reading from this follower never sees those entries: they are
// truncated, and the leader's come instead.
func TestCommitPointNeverCoversEntriesTheLeaderNeverHad(t *testing.T) {
	c := sidecartest.NewCluster(t, 2, 2, nil)
	// Node 2 leads: 1-5 in epoch 1, 6-10 in epoch 2. Node 1 has 1-5.
	writeWAL(t, filepath.Join(c.Nodes[2].Dir, "wal"), []uint32{1, 1, 1, 1, 1, 2, 2, 2, 2, 2})
	writeWAL(t, filepath.Join(c.Nodes[1].Dir, "wal"), []uint32{1, 1, 1, 1, 1})
	c.WriteStateFile(2, 2, 2) // as its promotion to epoch 2 left it
	c.StartSidecar(2)
	c.StartBroker(2)
	c.WaitLeader()

	c.StartSidecar(1)
	mb := sidecartest.OpenMemBrokerWith(t, 1, wal.Options{Dir: filepath.Join(c.Nodes[1].Dir, "wal")})
	rb := &racingBroker{MemBroker: mb, t: t}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); link.Run(ctx, c.Nodes[1].Socket, rb, sidecartest.Logger(t, "link-1")) }()
	defer func() { cancel(); <-done; mb.Close() }()

	testutil.Eventually(t, 20*time.Second, func() bool { return mb.WAL().LastLSN() == 10 && mb.Commit() == 10 })
	rb.mu.Lock()
	defer rb.mu.Unlock()
	if len(rb.bad) > 0 {
		t.Fatalf("the follower's broker was handed a commit point over entries the leader never had: %v", rb.bad)
	}
	want, err := c.Nodes[2].Broker.WAL().Checksum(1, 10)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := mb.WAL().Checksum(1, 10); err != nil || got != want {
		t.Fatalf("node 1's WAL checksum %x (%v), the leader's %x", got, err, want)
	}
}

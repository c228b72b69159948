package sidecar_test

import (
	"testing"

	"github.com/tandem-io/tandem/sidecar"
	"github.com/tandem-io/tandem/sidecar/sidecartest"
)

// BenchmarkCatchUp measures how fast a follower that was down catches up:
// b.N entries of 4 KB are written on the leader while the follower's broker
// is away, then the follower re-attaches; MB/s is the catch-up rate
// (replayed from the leader's WAL through the link, streamed, appended
// through the follower's link). WALs run with SyncNone.
func BenchmarkCatchUp(b *testing.B) {
	const size = 4000
	c := sidecartest.NewCluster(b, 2, 1, func(cfg *sidecar.Config) {
		d := sidecar.DefaultConfig()
		cfg.BatchBytes, cfg.WindowBytes, cfg.CacheBytes = d.BatchBytes, d.WindowBytes, d.CacheBytes
	})
	c.StartAll()
	l := c.WaitLeader()
	c.StopBroker(2)
	l.Produce(b, b.N, size)
	b.SetBytes(size)
	b.ResetTimer()
	c.StartBroker(2)
	c.WaitCaughtUp(l.WAL().LastLSN())
}

// BenchmarkStream measures steady-state replication: b.N entries of 16 KB
// written on the leader while two followers stream them; MB/s is the rate
// at which both followers hold everything (all in one process, WALs with
// SyncNone).
func BenchmarkStream(b *testing.B) {
	const size = 16 << 10
	c := sidecartest.NewCluster(b, 3, 1, func(cfg *sidecar.Config) {
		d := sidecar.DefaultConfig()
		cfg.BatchBytes, cfg.WindowBytes, cfg.CacheBytes = d.BatchBytes, d.WindowBytes, d.CacheBytes
	})
	c.StartAll()
	l := c.WaitLeader()
	b.SetBytes(size)
	b.ResetTimer()
	for done := 0; done < b.N; done += 100 {
		l.Produce(b, min(100, b.N-done), size)
	}
	c.WaitCaughtUp(l.WAL().LastLSN())
}

// Package gctune sets the garbage collector target of Tandem's long-running
// processes (tandem-broker, tandem-sidecar).
//
// Both keep a small live heap (a few MiB of indexes and state, plus the
// sidecar's cache of recent entries) while tens of MB per second of entries
// pass through them. With Go's default GOGC=100 that means a collection
// every few megabytes, several per second under load; with one scheduler
// thread per process (scripts/cluster.sh shares the cores) the collector's
// mark phase then competes with the very goroutines that move entries, and
// replication lag grows in steps. Measured on the 2-core test machine,
// follower apply lag at 48,000 records/s: p50 200-400 ms with GOGC=100,
// about 20 ms with GOGC=400 (docs/benchmarks.md). The price is memory: the
// heap may grow to about five times the live heap before a collection,
// instead of twice.
package gctune

import (
	"os"
	"runtime/debug"
)

// DefaultPercent is the GOGC value used when the environment sets none.
const DefaultPercent = 400

// Apply sets GOGC to DefaultPercent unless the GOGC environment variable
// is set (then Go already applied it, and it wins).
func Apply() {
	if _, set := os.LookupEnv("GOGC"); set {
		return
	}
	debug.SetGCPercent(DefaultPercent)
}

package broker

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/hashicorp/go-hclog"
	"go.uber.org/goleak"

	"github.com/tandem-io/tandem/broker/wal"
)

// A broker whose WAL is corrupt in the middle refuses to open with
// wal.ErrCorrupt, and leaves nothing running behind it (until 2026-12-07
// the group coordinator's goroutine stayed).
func TestOpenRefusingACorruptWALLeavesNothingRunning(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	dir := t.TempDir()
	w, err := wal.Open(wal.Options{Dir: filepath.Join(dir, "wal"), PreallocateBytes: -1})
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := w.Append(1, wal.TypeNoop, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	// The second byte of the first entry's LSN: its CRC no longer
	// matches, and valid entries follow.
	seg := filepath.Join(dir, "wal", "00000000000000000001.wal")
	data, err := os.ReadFile(seg)
	if err != nil {
		t.Fatal(err)
	}
	data[9] ^= 1
	if err := os.WriteFile(seg, data, 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.NodeID, cfg.DataDir, cfg.Listen = 1, dir, "127.0.0.1:0"
	cfg.Logger = hclog.New(&hclog.LoggerOptions{Name: "broker", Output: testWriter{t}, Level: hclog.Info})
	b, err := Open(cfg)
	if err == nil {
		b.Close()
		t.Fatal("the broker opened a corrupt WAL")
	}
	if !errors.Is(err, wal.ErrCorrupt) {
		t.Fatalf("Open: %v, want wal.ErrCorrupt", err)
	}
}

package broker

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/tandem-io/tandem/broker/wal"
)

// The commit checkpoint a restarted replica serves from reads back what was
// written, never more than the WAL holds durably, and nothing from a file
// that does not parse; no temporary file is left behind.
func TestCommitCheckpointReadsBackWhatWasWritten(t *testing.T) {
	dir := t.TempDir()
	b, _ := startBroker(t, dir)
	var last wal.Pos
	for range 3 {
		p, err := b.wal.Append(1, wal.TypeNoop, nil)
		if err != nil {
			t.Fatal(err)
		}
		last = p
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.wal.WaitDurable(ctx, last.LSN); err != nil {
		t.Fatal(err)
	}
	durable := b.wal.DurableLSN()

	if err := b.writeCommitCheckpoint(durable - 1); err != nil {
		t.Fatal(err)
	}
	if got := b.loadCommitCheckpoint(); got != durable-1 {
		t.Errorf("checkpoint %d read back as %d", durable-1, got)
	}
	if _, err := os.Stat(b.commitCheckpointPath() + ".tmp"); !os.IsNotExist(err) {
		t.Errorf("temporary checkpoint file left behind (stat: %v)", err)
	}

	if err := b.writeCommitCheckpoint(durable + 100); err != nil {
		t.Fatal(err)
	}
	if got := b.loadCommitCheckpoint(); got != durable {
		t.Errorf("checkpoint above the durable LSN %d read back as %d, want it capped", durable, got)
	}

	if err := os.WriteFile(b.commitCheckpointPath(), []byte("not a number\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := b.loadCommitCheckpoint(); got != 0 {
		t.Errorf("unreadable checkpoint read back as %d, want 0 (unknown)", got)
	}
}

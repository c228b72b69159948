package conformance_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/tandem-io/tandem/broker/link"
	"github.com/tandem-io/tandem/broker/link/conformance"
	"github.com/tandem-io/tandem/broker/wal"
	linkv1 "github.com/tandem-io/tandem/gen/tandem/link/v1"
	"github.com/tandem-io/tandem/internal/testutil"
	"github.com/tandem-io/tandem/sidecar/sidecartest"
)

// TestLinkRunConforms runs the suite in-process against link.Run with a
// broker that keeps only a WAL (sidecartest.MemBroker).
func TestLinkRunConforms(t *testing.T) {
	var b *sidecartest.MemBroker
	conformance.Run(t, conformance.Target{
		NodeID: 3,
		Start: func(t testing.TB, sock string) {
			b = sidecartest.OpenMemBroker(t, 3, filepath.Join(t.TempDir(), "wal"))
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() {
				defer close(done)
				link.Run(ctx, sock, b, sidecartest.Logger(t, "link"))
			}()
			t.Cleanup(func() {
				cancel()
				<-done
				b.Close()
			})
		},
		Produce: func(t testing.TB, n int) {
			testutil.Eventually(t, 10*time.Second, func() bool { return b.View().Role == link.RoleLeader })
			b.Produce(t, n, 100)
		},
		TryProduce: func(t testing.TB) error {
			if lsn, err := b.TryProduce(100); err != nil || lsn == 0 {
				return fmt.Errorf("refused (LSN %d, error %v)", lsn, err)
			}
			return nil
		},
	})
}

// TestChecksumMatchesWAL: the suite's Checksum is the WAL's.
func TestChecksumMatchesWAL(t *testing.T) {
	w, err := wal.Open(wal.Options{Dir: t.TempDir(), Sync: wal.SyncNone})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	var ents []*linkv1.Entry
	for i, typ := range []wal.EntryType{wal.TypeRecordBatch, wal.TypeCreateTopic, wal.TypeNoop, wal.TypeOffsetCommit} {
		payload := fmt.Appendf(nil, "payload %d", i)
		epoch := uint32(1 + i/2)
		pos, err := w.Append(epoch, typ, payload)
		if err != nil {
			t.Fatal(err)
		}
		ents = append(ents, link.EntryToProto(wal.Entry{LSN: pos.LSN, Epoch: epoch, Type: typ, Payload: payload}))
	}
	for _, r := range [][2]int{{1, 4}, {2, 3}, {4, 4}} {
		got, err := w.Checksum(uint64(r[0]), uint64(r[1]))
		if err != nil {
			t.Fatal(err)
		}
		if want := conformance.Checksum(ents[r[0]-1 : r[1]]); got != want {
			t.Errorf("checksum of [%d, %d]: WAL %016x, conformance %016x", r[0], r[1], got, want)
		}
	}
}

package broker

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	itest "github.com/tandem-io/tandem/internal/testutil"
)

// Produce request buffers are pooled by power-of-two size: a request gets a
// buffer of exactly its length, a returned buffer is handed out again, and
// sizes outside the pooled range are plain allocations.
func TestFramePool(t *testing.T) {
	for _, n := range []int{8, 1 << 16, 1<<16 + 1, 1_000_000, 1 << 24, 1<<24 + 1} {
		buf := getFrame(n)
		if len(buf) != n {
			t.Fatalf("getFrame(%d) has length %d", n, len(buf))
		}
		pooled := n >= 1<<minPooledFrame && n <= 1<<maxPooledFrame
		if pooled && cap(buf)&(cap(buf)-1) != 0 {
			t.Fatalf("getFrame(%d): capacity %d is not a power of two", n, cap(buf))
		}
		if !pooled && cap(buf) != n {
			t.Fatalf("getFrame(%d): capacity %d, want a plain allocation", n, cap(buf))
		}
	}
	// A returned buffer comes back for the next request of its class
	// (sync.Pool may drop it under GC, so try a few times).
	reused := false
	for i := 0; i < 10 && !reused; i++ {
		a := getFrame(300_000)
		a[0] = 0xAB
		putFrame(a)
		b := getFrame(270_000)
		reused = &a[:1][0] == &b[:1][0]
		putFrame(b)
	}
	if !reused {
		t.Fatal("a returned 512 KiB buffer was never handed out again")
	}
}

// frameHeader is the size field of a request frame of size bytes.
func frameHeader(size int) []byte {
	return binary.BigEndian.AppendUint32(nil, uint32(size))
}

// TestAnnouncedFramesDoNotReserveMemory: twenty connections each announce
// a 100 MiB request and send nothing more. Before 2026-12-06 the broker
// allocated every announced frame whole, 2,000 MiB of heap for 20 idle
// connections. Now frames beyond a shared budget (256 MiB) grow as their
// bytes arrive.
func TestAnnouncedFramesDoNotReserveMemory(t *testing.T) {
	_, addr := startBrokerWith(t, t.TempDir(), func(c *Config) { c.MaxRequestBytes = 100 << 20 })
	// Live heap after a collection: the frames the connections' reads
	// hold, whatever earlier tests left mapped.
	var ms runtime.MemStats
	live := func() uint64 {
		runtime.GC()
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	before := live()
	for range 20 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		if _, err := c.Write(append(frameHeader(100<<20-1), 0, 0, 0, 9, 0, 0, 0, 1)); err != nil {
			t.Fatal(err)
		}
	}
	// Watch the heap for a while: the announcements are read at once.
	var most uint64
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		now := live()
		most = max(most, now-min(now, before))
	}
	t.Logf("the live heap grew by at most %d MiB for 20 connections announcing 100 MiB each", most>>20)
	if most > 600<<20 {
		t.Fatalf("the live heap grew by %d MiB for 20 connections that sent 8 bytes of 100 MiB requests each", most>>20)
	}
}

// TestLargeRequestWhileFramesAreAnnounced: while two stalled 128 MiB
// announcements hold the whole budget, a 3 MiB record is produced (its
// request takes the growing path) and read back intact.
func TestLargeRequestWhileFramesAreAnnounced(t *testing.T) {
	_, addr := startBrokerWith(t, t.TempDir(), func(c *Config) {
		c.MaxRequestBytes = frameClaimBudget / 2
		c.MaxMessageBytes = 8 << 20
	})
	for range 2 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		if _, err := c.Write(frameHeader(frameClaimBudget / 2)); err != nil {
			t.Fatal(err)
		}
	}
	if err := itest.Poll(10*time.Second, func() error {
		if n := frameClaims.Load(); n != frameClaimBudget {
			return fmt.Errorf("announced frames hold %d bytes of the budget of %d", n, frameClaimBudget)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	value := make([]byte, 3<<20)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range value {
		value[i] = byte(rng.Uint32())
	}
	cl := newClient(t, addr, kgo.DefaultProduceTopic("large"), kgo.AllowAutoTopicCreation(),
		kgo.ProducerBatchCompression(kgo.NoCompression()), kgo.ProducerBatchMaxBytes(8<<20), kgo.MaxBufferedBytes(64<<20))
	done := make(chan error, 1)
	go func() { done <- cl.ProduceSync(t.Context(), &kgo.Record{Value: value}).FirstErr() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("3 MiB record: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("3 MiB record not acknowledged within 30 s")
	}
	got := consumeAll(t, addr, "large", 1)
	if len(got) != 1 || got[0] != string(value) {
		t.Fatalf("read back %d records, the first of %d bytes; want the 3 MiB value intact", len(got), len(got[0]))
	}
}

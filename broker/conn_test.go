package broker

import "testing"

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

package grpcwire

import (
	"math/bits"
	"sync"

	"google.golang.org/grpc/mem"
)

// Pool is the buffer pool of every connection carrying WAL entries.
//
// gRPC-Go's default pool has power-of-two classes up to 1 MiB and clears a
// buffer every time it hands one out. A replication message is a 1 MiB
// batch plus framing, so with the default pool every message needed a
// fresh, zeroed allocation, on both sides of both hops: that zeroing and
// the garbage collection it caused were a quarter of a sidecar's CPU at
// 50 MB/s. This pool has classes up to 64 MiB (larger messages, up to
// the 68 MiB limit, are allocated as they come) and does not clear: gRPC overwrites what it uses of a buffer (a message is
// read in full or encoded in full before anyone looks at it), which is
// what gRPC's own non-zeroing pools rely on too.
var Pool mem.BufferPool = &pool{}

const (
	minClass = 8  // 256 bytes
	maxClass = 26 // 64 MiB
)

type pool struct {
	classes [maxClass - minClass + 1]sync.Pool
}

func classOf(n int) int {
	c := bits.Len(uint(n - 1))
	return max(c, minClass)
}

func (p *pool) Get(length int) *[]byte {
	c := classOf(length)
	if length <= 0 || c > maxClass {
		b := make([]byte, length)
		return &b
	}
	if bp, ok := p.classes[c-minClass].Get().(*[]byte); ok {
		*bp = (*bp)[:length]
		return bp
	}
	b := make([]byte, length, 1<<c)
	return &b
}

func (p *pool) Put(bp *[]byte) {
	n := cap(*bp)
	c := bits.Len(uint(n)) - 1
	if c < minClass || c > maxClass || n != 1<<c {
		return // not one of ours
	}
	*bp = (*bp)[:0]
	p.classes[c-minClass].Put(bp)
}

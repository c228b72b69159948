package wal

import (
	"hash/crc32"
	"math/rand/v2"
	"testing"
)

func TestCRCCombineMatchesTheWholeChecksum(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	data := make([]byte, 3<<20)
	for i := range data {
		data[i] = byte(r.Uint32())
	}
	check := func(a, b []byte) {
		t.Helper()
		whole := crc32.Update(crc32.Checksum(a, castagnoli), castagnoli, b)
		got := crcCombine(crc32.Checksum(a, castagnoli), crc32.Checksum(b, castagnoli), uint64(len(b)))
		if got != whole {
			t.Fatalf("crcCombine of %d and %d bytes = %#08x, want %#08x", len(a), len(b), got, whole)
		}
	}
	check(nil, nil)
	check(data[:10], nil)
	check(nil, data[:10])
	check(data[:1], data[1:2])
	check(data[:13], data[13:1<<20]) // a frame header's fields, then a large payload
	check(data[:1<<20], data[1<<20:])
	for range 500 {
		n := r.IntN(len(data))
		cut := r.IntN(n + 1)
		check(data[:cut], data[cut:n])
	}
}

func TestXPow8nIsRepeatedMultiplication(t *testing.T) {
	// x^(8n) step by step: multiply x^0 by x^8 n times.
	x8 := xPow8n(1)
	p := uint32(1) << 31
	for n := uint64(0); n < 300; n++ {
		if got := xPow8n(n); got != p {
			t.Fatalf("xPow8n(%d) = %#08x, want %#08x", n, got, p)
		}
		p = gfMul(p, x8)
	}
}

func BenchmarkCRCCombine(b *testing.B) {
	for b.Loop() {
		crcCombine(0x12345678, 0x9abcdef0, 1<<20)
	}
}

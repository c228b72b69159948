package wal

import "hash/crc32"

// CRC-32C arithmetic for combining checksums.
//
// A frame's CRC covers its fixed header fields and its payload. The
// payload's CRC is computed before the LSN is known (outside the log's
// lock), and part of it often is known already: a Kafka record batch
// carries the CRC-32C of its bytes from offset 21 on, which the broker
// verified when the request arrived. crcCombine joins CRCs of adjacent
// pieces without reading the bytes again:
//
//	crc(A || B) = crcCombine(crc(A), crc(B), len(B))
//
// CRCs are polynomials over GF(2), and appending n bytes to A multiplies
// A's part by x^(8n) modulo the CRC polynomial; the pre- and post-
// conditioning (the inverted bits) of the standard CRC cancel out in the
// sum. Bits are reflected, as in the CRC-32C value itself: the highest bit
// of a uint32 is the coefficient of x^0.

// castagnoliReflected is the CRC-32C polynomial, bit-reflected
// (crc32.Castagnoli).
const castagnoliReflected = crc32.Castagnoli

// gfMul returns a*b modulo the CRC-32C polynomial (reflected bit order).
func gfMul(a, b uint32) uint32 {
	var p uint32
	for m := uint32(1) << 31; m != 0; m >>= 1 {
		if a&m != 0 {
			p ^= b
			if a&(m-1) == 0 {
				break
			}
		}
		// b *= x
		if b&1 != 0 {
			b = b>>1 ^ castagnoliReflected
		} else {
			b >>= 1
		}
	}
	return p
}

// xPow2k[k] is x^(2^k) modulo the polynomial: x^(8n) for any uint64 n
// needs k up to 3+63.
var xPow2k = func() (t [67]uint32) {
	t[0] = 1 << 30 // x^1
	for k := 1; k < len(t); k++ {
		t[k] = gfMul(t[k-1], t[k-1])
	}
	return t
}()

// xPow8n returns x^(8n) modulo the polynomial.
func xPow8n(n uint64) uint32 {
	p := uint32(1) << 31 // x^0
	for k := 3; n != 0; k, n = k+1, n>>1 {
		if n&1 != 0 {
			p = gfMul(xPow2k[k], p)
		}
	}
	return p
}

// crcCombine returns the CRC-32C of A || B from crcA = CRC-32C(A),
// crcB = CRC-32C(B) and lenB = len(B).
func crcCombine(crcA, crcB uint32, lenB uint64) uint32 {
	if lenB == 0 {
		return crcA
	}
	return gfMul(xPow8n(lenB), crcA) ^ crcB
}

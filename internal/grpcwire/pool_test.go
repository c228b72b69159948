package grpcwire

import (
	"bytes"
	"testing"

	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// The pool hands out buffers of the asked length, reuses returned ones of
// the same class, and ignores buffers it did not make.
func TestPool(t *testing.T) {
	for _, n := range []int{1, 255, 256, 257, 1 << 20, 1<<20 + 100, 64 << 20, 64<<20 + 1} {
		b := Pool.Get(n)
		if len(*b) != n {
			t.Fatalf("Get(%d) has length %d", n, len(*b))
		}
		if n <= 64<<20 && cap(*b)&(cap(*b)-1) != 0 {
			t.Fatalf("Get(%d): capacity %d is not a power of two", n, cap(*b))
		}
		Pool.Put(b)
	}
	odd := make([]byte, 1000)
	Pool.Put(&odd) // not a power of two: dropped, no panic
	reused := false
	for i := 0; i < 10 && !reused; i++ {
		a := Pool.Get(1<<20 + 50)
		(*a)[0] = 1
		first := &(*a)[0]
		Pool.Put(a)
		b := Pool.Get(2 << 20)
		reused = &(*b)[0] == first
		Pool.Put(b)
	}
	if !reused {
		t.Fatal("a returned 2 MiB buffer was never handed out again")
	}
}

// The codec round-trips messages of every size class, from a single buffer
// and from several (as a message split across reads arrives).
func TestCodecRoundTrip(t *testing.T) {
	for _, n := range []int{0, 10, smallMessage, 1 << 20, 3<<20 + 7} {
		in := wrapperspb.Bytes(bytes.Repeat([]byte{0x5a, 0x01}, n/2))
		data, err := Codec.Marshal(in)
		if err != nil {
			t.Fatalf("Marshal(%d bytes): %v", n, err)
		}
		want, _ := proto.Marshal(in)
		if got := data.Materialize(); !bytes.Equal(got, want) {
			t.Fatalf("%d bytes: encoding differs from proto.Marshal", n)
		}
		out := &wrapperspb.BytesValue{}
		if err := Codec.Unmarshal(data, out); err != nil || !bytes.Equal(out.GetValue(), in.GetValue()) {
			t.Fatalf("%d bytes: single-buffer round trip: %v", n, err)
		}
		var split mem.BufferSlice
		for b := want; len(b) > 0; b = b[min(len(b), 1000):] {
			split = append(split, mem.SliceBuffer(b[:min(len(b), 1000)]))
		}
		out2 := &wrapperspb.BytesValue{}
		if err := Codec.Unmarshal(split, out2); err != nil || !bytes.Equal(out2.GetValue(), in.GetValue()) {
			t.Fatalf("%d bytes: split round trip: %v", n, err)
		}
		data.Free()
	}
	if _, err := Codec.Marshal("not a message"); err == nil {
		t.Fatal("Marshal of a string succeeded")
	}
	if err := Codec.Unmarshal(mem.BufferSlice{mem.SliceBuffer([]byte{0xff, 0xff})}, &wrapperspb.BytesValue{}); err == nil {
		t.Fatal("Unmarshal of garbage succeeded")
	}
}

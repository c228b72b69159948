package grpcwire

import (
	"fmt"

	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
)

// Codec is the protobuf codec of every connection carrying WAL entries.
// The wire format is gRPC's standard "proto" one; what differs from
// gRPC-Go's built-in codec is where the bytes go: messages are encoded
// into Pool's buffers (not cleared first), and a received message that
// arrived in one buffer is decoded in place instead of being copied into
// another one first (protobuf copies the bytes fields it decodes, so the
// buffer can go back to the pool right after). The messages that carry
// entries in bulk are decoded with one copy instead of two, and encoded
// without copying their payloads (entries.go).
var Codec encoding.CodecV2 = codec{}

// smallMessage: below this, a message is marshalled into a plain slice
// (pooling costs more than it saves), as gRPC's own codec does.
const smallMessage = 1 << 10

type codec struct{}

func (codec) Name() string { return "proto" }

func (codec) Marshal(v any) (mem.BufferSlice, error) {
	m, ok := v.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("grpcwire: cannot marshal %T: not a proto.Message", v)
	}
	if out, ok := marshalEntries(v); ok {
		return out, nil
	}
	size := proto.Size(m)
	opts := proto.MarshalOptions{UseCachedSize: true} // size was just computed
	if size < smallMessage {
		b, err := opts.Marshal(m)
		if err != nil {
			return nil, err
		}
		return mem.BufferSlice{mem.SliceBuffer(b)}, nil
	}
	buf := Pool.Get(size)
	out, err := opts.MarshalAppend((*buf)[:0], m)
	if err != nil {
		Pool.Put(buf)
		return nil, err
	}
	*buf = out
	return mem.BufferSlice{mem.NewBuffer(buf, Pool)}, nil
}

func (codec) Unmarshal(data mem.BufferSlice, v any) error {
	m, ok := v.(proto.Message)
	if !ok {
		return fmt.Errorf("grpcwire: cannot unmarshal into %T: not a proto.Message", v)
	}
	if done, err := unmarshalEntries(data, v); done {
		return err
	}
	if len(data) == 1 {
		return proto.Unmarshal(data[0].ReadOnlyData(), m)
	}
	buf := data.MaterializeToBuffer(Pool)
	defer buf.Free()
	return proto.Unmarshal(buf.ReadOnlyData(), m)
}

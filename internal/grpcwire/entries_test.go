package grpcwire

import (
	"bytes"
	"math"
	"math/rand"
	"testing"

	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	linkv1 "github.com/tandem-io/tandem/gen/tandem/link/v1"
	replicationv1 "github.com/tandem-io/tandem/gen/tandem/replication/v1"
)

func randomEntries(r *rand.Rand, n int) []*linkv1.Entry {
	ents := make([]*linkv1.Entry, n)
	for i := range ents {
		p := make([]byte, r.Intn(3)*r.Intn(20000)) // some empty
		r.Read(p)
		ents[i] = &linkv1.Entry{
			Lsn:     r.Uint64() >> uint(r.Intn(64)),
			Epoch:   uint32(r.Int63n(math.MaxUint32 + 1)),
			Type:    linkv1.EntryType(r.Intn(10)),
			Payload: p,
		}
		if r.Intn(3) > 0 { // the checksum is optional; 0 is a checksum too
			crc := uint32(r.Int63n(math.MaxUint32+1)) >> uint(r.Intn(33))
			ents[i].PayloadCrc32C = &crc
		}
	}
	return ents
}

// entryMessages are the four entry-carrying messages, filled at random.
func entryMessages(r *rand.Rand) []proto.Message {
	return []proto.Message{
		&linkv1.AttachRequest{Payload: &linkv1.AttachRequest_Committed{Committed: &linkv1.CommittedEntries{
			Entries: randomEntries(r, 1+r.Intn(40)), DurableLsn: r.Uint64()}}},
		&linkv1.AttachResponse{Payload: &linkv1.AttachResponse_Apply{Apply: &linkv1.ApplyEntries{
			Entries: randomEntries(r, 1+r.Intn(40)), CommitLsn: r.Uint64() >> uint(r.Intn(64))}}},
		&replicationv1.StreamResponse{Payload: &replicationv1.StreamResponse_Entries{Entries: &replicationv1.EntriesBatch{
			Entries: randomEntries(r, 1+r.Intn(40)), CommitLsn: r.Uint64() >> 3}}},
		&linkv1.AttachRequest{Payload: &linkv1.AttachRequest_ReplayResult{ReplayResult: &linkv1.ReplayResult{
			RequestId: r.Uint64() >> uint(r.Intn(64)), Status: linkv1.ReplayStatus(r.Intn(6) - 1),
			Entries: randomEntries(r, 1+r.Intn(40)), Done: r.Intn(2) == 0, EndOfLog: r.Intn(2) == 0,
			FirstLsn: r.Uint64() >> uint(r.Intn(64)), DurableLsn: r.Uint64() >> uint(r.Intn(64))}}},
	}
}

// split cuts b into buffers of random sizes, as gRPC hands over a message
// that arrived in several HTTP/2 frames.
func split(r *rand.Rand, b []byte) mem.BufferSlice {
	var out mem.BufferSlice
	for len(b) > 0 {
		n := min(len(b), 1+r.Intn(40000))
		out = append(out, mem.SliceBuffer(bytes.Clone(b[:n])))
		b = b[n:]
	}
	return out
}

// What the codec decodes from an entry-carrying message is exactly what
// proto.Unmarshal decodes, whichever way gRPC split the bytes, and the
// payloads point into one buffer of the decoded message's own.
func TestEntryMessagesDecodeLikeProto(t *testing.T) {
	r := rand.New(rand.NewSource(1))
	for i := 0; i < 200; i++ {
		for _, want := range entryMessages(r) {
			wire, err := proto.Marshal(want)
			if err != nil {
				t.Fatal(err)
			}
			if !decodeEntries(wire, want.ProtoReflect().New().Interface()) {
				t.Fatalf("%T of %d bytes was not taken by the entry decoder", want, len(wire))
			}
			data := split(r, wire)
			got := want.ProtoReflect().New().Interface()
			if err := Codec.Unmarshal(data, got); err != nil {
				t.Fatalf("Unmarshal %T: %v", want, err)
			}
			if !proto.Equal(got, want) {
				t.Fatalf("%T decoded differently from what was marshalled", want)
			}
			for _, b := range data {
				b.Free() // gRPC reuses them; the decoded message must not care
			}
			if !proto.Equal(got, want) {
				t.Fatalf("%T changed when the received buffers were reused", want)
			}
		}
	}
}

// Anything but the usual shape goes to proto.Unmarshal: the result, unknown
// fields and errors included, is protobuf's.
func TestEntryMessagesOtherShapesFallBack(t *testing.T) {
	r := rand.New(rand.NewSource(2))
	big := randomEntries(r, 3)
	big[0].Payload = make([]byte, 2*minAliasBytes)
	msg := &linkv1.AttachRequest{Payload: &linkv1.AttachRequest_Committed{Committed: &linkv1.CommittedEntries{Entries: big, DurableLsn: 7}}}
	wire, err := proto.Marshal(msg)
	if err != nil {
		t.Fatal(err)
	}
	withUnknown := protowire.AppendTag(bytes.Clone(wire), 99, protowire.VarintType)
	withUnknown = protowire.AppendVarint(withUnknown, 5)
	failed := &linkv1.AttachRequest{Payload: &linkv1.AttachRequest_ReplayResult{ReplayResult: &linkv1.ReplayResult{
		RequestId: 3, Status: linkv1.ReplayStatus_REPLAY_STATUS_ERROR, Entries: big, Done: true, Error: "disk on fire"}}}
	failedWire, err := proto.Marshal(failed)
	if err != nil {
		t.Fatal(err)
	}
	replay := &linkv1.AttachRequest{Payload: &linkv1.AttachRequest_ReplayResult{ReplayResult: &linkv1.ReplayResult{
		RequestId: 3, Entries: big, Done: true, DurableLsn: 9}}}
	replayWire, err := proto.Marshal(replay)
	if err != nil {
		t.Fatal(err)
	}
	// done given twice (protobuf keeps the last), and request_id sent with
	// the wrong wire type (protobuf keeps it as an unknown field).
	doneTwice := protowire.AppendVarint(protowire.AppendTag(nil, replayDone, protowire.VarintType), 0)
	doneTwice = wrapReplay(append(replayBody(t, replayWire), doneTwice...))
	wrongType := protowire.AppendFixed32(protowire.AppendTag(nil, replayRequestID, protowire.Fixed32Type), 1)
	wrongType = wrapReplay(append(replayBody(t, replayWire), wrongType...))
	twice := append(bytes.Clone(wire), wire...) // protobuf merges the two
	for name, b := range map[string][]byte{
		"unknown field": withUnknown, "replay with an error": failedWire, "field twice": twice,
		"replay field twice": doneTwice, "replay field of another wire type": wrongType,
	} {
		if decodeEntries(b, &linkv1.AttachRequest{}) {
			t.Fatalf("%s: taken by the entry decoder", name)
		}
		want := &linkv1.AttachRequest{}
		if err := proto.Unmarshal(b, want); err != nil {
			t.Fatalf("%s: proto.Unmarshal: %v", name, err)
		}
		got := &linkv1.AttachRequest{}
		if err := Codec.Unmarshal(split(r, b), got); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !proto.Equal(got, want) || !bytes.Equal(got.ProtoReflect().GetUnknown(), want.ProtoReflect().GetUnknown()) {
			t.Fatalf("%s: decoded differently from proto.Unmarshal", name)
		}
	}
	// A message cut short is an error, as from protobuf.
	if err := Codec.Unmarshal(split(r, wire[:len(wire)-10]), &linkv1.AttachRequest{}); err == nil {
		t.Fatal("a truncated message decoded without error")
	}
}

// replayBody returns the ReplayResult inside an AttachRequest's encoding.
func replayBody(t *testing.T, wire []byte) []byte {
	t.Helper()
	num, typ, n := protowire.ConsumeTag(wire)
	body, m := protowire.ConsumeBytes(wire[n:])
	if num != attachRequestReplay || typ != protowire.BytesType || m < 0 {
		t.Fatal("not an encoded AttachRequest.replay_result")
	}
	return bytes.Clone(body)
}

// wrapReplay encodes body as an AttachRequest's replay_result.
func wrapReplay(body []byte) []byte {
	return protowire.AppendBytes(protowire.AppendTag(nil, attachRequestReplay, protowire.BytesType), body)
}

// An append to a decoded payload never writes over the next one.
func TestEntryPayloadCapacity(t *testing.T) {
	ents := []*linkv1.Entry{{Lsn: 1, Payload: bytes.Repeat([]byte("a"), minAliasBytes)}, {Lsn: 2, Payload: []byte("bbbb")}}
	wire, err := proto.Marshal(&linkv1.AttachResponse{Payload: &linkv1.AttachResponse_Apply{Apply: &linkv1.ApplyEntries{Entries: ents}}})
	if err != nil {
		t.Fatal(err)
	}
	got := &linkv1.AttachResponse{}
	if err := Codec.Unmarshal(mem.BufferSlice{mem.SliceBuffer(wire)}, got); err != nil {
		t.Fatal(err)
	}
	first := got.GetApply().GetEntries()[0].GetPayload()
	_ = append(first, 'x', 'x', 'x', 'x', 'x', 'x', 'x', 'x', 'x', 'x')
	if p := got.GetApply().GetEntries()[1].GetPayload(); string(p) != "bbbb" {
		t.Fatalf("second payload is %q after an append to the first", p)
	}
}

// Whatever bytes arrive, the entry decoder either declines or agrees with
// proto.Unmarshal.
func FuzzEntryDecoder(f *testing.F) {
	r := rand.New(rand.NewSource(3))
	for _, m := range entryMessages(r) {
		b, err := proto.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b[:min(len(b), 3000)])
	}
	f.Add([]byte{0x12, 0x05, 0x0a, 0x03, 0x08, 0x01, 0x22})
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, newMsg := range []func() proto.Message{
			func() proto.Message { return &linkv1.AttachRequest{} },
			func() proto.Message { return &linkv1.AttachResponse{} },
			func() proto.Message { return &replicationv1.StreamResponse{} },
		} {
			got := newMsg()
			if !decodeEntries(b, got) {
				continue
			}
			want := newMsg()
			if err := proto.Unmarshal(b, want); err != nil {
				t.Fatalf("%T: the entry decoder accepted what proto.Unmarshal rejects: %v", got, err)
			}
			if !proto.Equal(got, want) {
				t.Fatalf("%T: decoded differently from proto.Unmarshal", got)
			}
		}
	})
}

// BenchmarkUnmarshalEntries decodes a 1 MiB CommittedEntries message
// received as 16 KiB HTTP/2 frames: with the codec, and the way it was
// done before (joined in a pooled buffer, then proto.Unmarshal).
func BenchmarkUnmarshalEntries(b *testing.B) {
	ents := make([]*linkv1.Entry, 64)
	for i := range ents {
		ents[i] = &linkv1.Entry{Lsn: uint64(i + 1), Epoch: 1, Type: 1, Payload: bytes.Repeat([]byte{byte(i)}, 16<<10)}
	}
	wire, err := proto.Marshal(&linkv1.AttachRequest{Payload: &linkv1.AttachRequest_Committed{Committed: &linkv1.CommittedEntries{Entries: ents}}})
	if err != nil {
		b.Fatal(err)
	}
	var data mem.BufferSlice
	for off := 0; off < len(wire); off += 16 << 10 {
		data = append(data, mem.SliceBuffer(wire[off:min(off+16<<10, len(wire))]))
	}
	b.Run("codec", func(b *testing.B) {
		b.SetBytes(int64(len(wire)))
		for b.Loop() {
			if err := Codec.Unmarshal(data, &linkv1.AttachRequest{}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("proto", func(b *testing.B) {
		b.SetBytes(int64(len(wire)))
		for b.Loop() {
			buf := data.MaterializeToBuffer(Pool)
			if err := proto.Unmarshal(buf.ReadOnlyData(), &linkv1.AttachRequest{}); err != nil {
				b.Fatal(err)
			}
			buf.Free()
		}
	})
}

// The entry-carrying messages are encoded to exactly proto.Marshal's bytes,
// zero fields, empty and short payloads and negative enum values included.
func TestEntryMessagesEncodeLikeProto(t *testing.T) {
	r := rand.New(rand.NewSource(4))
	for i := 0; i < 200; i++ {
		msgs := entryMessages(r)
		// Zero values and odd ones in the first message's entries.
		ents := msgs[0].(*linkv1.AttachRequest).GetCommitted().Entries
		ents[0] = &linkv1.Entry{}
		if len(ents) > 1 {
			ents[1] = &linkv1.Entry{Lsn: 1, Type: linkv1.EntryType(-3), Payload: []byte("short")}
		}
		msgs = append(msgs,
			&linkv1.AttachRequest{Payload: &linkv1.AttachRequest_Committed{Committed: &linkv1.CommittedEntries{}}},
			&replicationv1.StreamResponse{Payload: &replicationv1.StreamResponse_Entries{Entries: &replicationv1.EntriesBatch{CommitLsn: 9}}})
		for _, m := range msgs {
			if _, ok := marshalEntries(m); !ok {
				t.Fatalf("%T not taken by the entry encoder", m)
			}
			encodesLikeProto(t, m)
		}
	}
}

// encodesLikeProto checks that the codec encodes m to proto.Marshal's bytes.
func encodesLikeProto(t *testing.T, m proto.Message) {
	t.Helper()
	want, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	data, err := Codec.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	if got := data.Materialize(); !bytes.Equal(got, want) {
		t.Fatalf("%T: %d bytes, proto.Marshal gives %d (or other bytes)", m, len(got), len(want))
	}
}

// Messages the entry encoder does not know go to proto.Marshal.
func TestEntryEncoderDeclines(t *testing.T) {
	unknown := &linkv1.AttachResponse{Payload: &linkv1.AttachResponse_Apply{Apply: &linkv1.ApplyEntries{
		Entries: []*linkv1.Entry{{Lsn: 1, Payload: make([]byte, 1000)}}}}}
	unknown.GetApply().Entries[0].ProtoReflect().SetUnknown(protowire.AppendVarint(protowire.AppendTag(nil, 77, protowire.VarintType), 1))
	for _, m := range []proto.Message{
		unknown,
		&linkv1.AttachRequest{Payload: &linkv1.AttachRequest_Applied{Applied: &linkv1.AppliedUpTo{Lsn: 5}}},
		&linkv1.AttachRequest{Payload: &linkv1.AttachRequest_Committed{}},
		&linkv1.AttachRequest{Payload: &linkv1.AttachRequest_ReplayResult{}},
		&linkv1.AttachRequest{Payload: &linkv1.AttachRequest_ReplayResult{ReplayResult: &linkv1.ReplayResult{
			Status: linkv1.ReplayStatus_REPLAY_STATUS_ERROR, Error: "read failed"}}},
		&replicationv1.StreamRequest{},
	} {
		if _, ok := marshalEntries(m); ok {
			t.Fatalf("%T (%v) taken by the entry encoder", m, m)
		}
		encodesLikeProto(t, m)
	}
}

// BenchmarkMarshalEntries encodes a 1 MiB EntriesBatch of 64 entries with
// the codec, and as before (proto.MarshalAppend into a pooled buffer).
func BenchmarkMarshalEntries(b *testing.B) {
	ents := make([]*linkv1.Entry, 64)
	for i := range ents {
		ents[i] = &linkv1.Entry{Lsn: uint64(i + 1), Epoch: 1, Type: 1, Payload: bytes.Repeat([]byte{byte(i)}, 16<<10)}
	}
	m := &replicationv1.StreamResponse{Payload: &replicationv1.StreamResponse_Entries{Entries: &replicationv1.EntriesBatch{Entries: ents, CommitLsn: 64}}}
	size := proto.Size(m)
	b.Run("codec", func(b *testing.B) {
		b.SetBytes(int64(size))
		for b.Loop() {
			data, err := Codec.Marshal(m)
			if err != nil {
				b.Fatal(err)
			}
			data.Free()
		}
	})
	b.Run("proto", func(b *testing.B) {
		b.SetBytes(int64(size))
		for b.Loop() {
			buf := Pool.Get(size)
			out, err := proto.MarshalOptions{}.MarshalAppend((*buf)[:0], m)
			if err != nil {
				b.Fatal(err)
			}
			*buf = out
			Pool.Put(buf)
		}
	})
}

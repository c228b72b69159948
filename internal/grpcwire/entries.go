package grpcwire

import (
	"bytes"

	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	linkv1 "github.com/tandem-io/tandem/gen/tandem/link/v1"
	replicationv1 "github.com/tandem-io/tandem/gen/tandem/replication/v1"
)

// The four messages that carry WAL entries in bulk (a leader broker's
// committed entries to its sidecar and its answers to the sidecar's
// replays, the leader sidecar's batches to a follower, a follower
// sidecar's entries to its broker) are decoded here
// rather than by protobuf: protobuf copies every bytes field out of the
// buffer it decodes, and a message gRPC received in several buffers has
// to be joined into one first, so each payload byte was copied twice
// after the kernel handed it over. unmarshalEntries copies the received
// message once, into a buffer of its own, and lets the entries' payloads
// point into it (the buffer lives as long as any of them does; nothing
// writes to a received payload).
//
// It only handles the exact shape our own peers send: a oneof case that
// carries entries, each Entry with fields 1-5, every other field once and
// with its declared wire type, no unknown fields, no error string.
// Anything else (another oneof case, a field it does not know, a singular
// field given twice, malformed input) is decoded from the same bytes by
// proto.Unmarshal, which accepts everything protobuf does and reports
// errors as usual. So the result is always what proto.Unmarshal gives.

// Field numbers, from proto/tandem/link/v1/link.proto and
// proto/tandem/replication/v1/replication.proto.
const (
	attachRequestCommitted = 2 // AttachRequest.committed (CommittedEntries)
	attachRequestReplay    = 3 // AttachRequest.replay_result (ReplayResult)
	attachResponseApply    = 3 // AttachResponse.apply (ApplyEntries)
	streamResponseEntries  = 2 // StreamResponse.entries (EntriesBatch)
	listEntries            = 1 // CommittedEntries/ApplyEntries/EntriesBatch.entries
	listLSN                = 2 // CommittedEntries.durable_lsn, EntriesBatch.commit_lsn
	entryLSN               = 1
	entryEpoch             = 2
	entryType              = 3
	entryPayload           = 4
	entryPayloadCRC        = 5 // fixed32, optional

	// ReplayResult: entries are field 3; fields 1, 2 and 4-7 are varints
	// (request_id, status, done, end_of_log, first_lsn, durable_lsn);
	// field 8 is the error string, only set on a failed replay.
	replayRequestID  = 1
	replayStatus     = 2
	replayEntries    = 3
	replayDone       = 4
	replayEndOfLog   = 5
	replayFirstLSN   = 6
	replayDurableLSN = 7
)

// minAliasBytes: smaller messages (acks, commit points, heartbeats) go to
// proto.Unmarshal; there is nothing to save on them.
const minAliasBytes = 4 << 10

// unmarshalEntries decodes data into v when v is one of the entry-carrying
// messages and data is large enough to matter. It reports whether it
// decoded v (successfully or with err); when it returns false, v is
// untouched and the caller decodes as usual.
func unmarshalEntries(data mem.BufferSlice, v any) (bool, error) {
	switch v.(type) {
	case *linkv1.AttachRequest, *linkv1.AttachResponse, *replicationv1.StreamResponse:
	default:
		return false, nil
	}
	if data.Len() < minAliasBytes {
		return false, nil
	}
	// One copy, into memory that is never returned to a pool: the
	// decoded payloads keep pointing into it.
	buf := join(data)
	if decodeEntries(buf, v) {
		return true, nil
	}
	return true, proto.Unmarshal(buf, v.(proto.Message))
}

// join copies data into one new slice. bytes.Join allocates it without
// zeroing it first (mem.BufferSlice.Materialize zeroes, then copies: at
// hundreds of MB/s the zeroing cost as much as the copy saved).
func join(data mem.BufferSlice) []byte {
	parts := make([][]byte, len(data))
	for i, b := range data {
		parts[i] = b.ReadOnlyData()
	}
	return bytes.Join(parts, nil)
}

// decodeEntries fills v from buf if buf has the usual shape (see above),
// aliasing the payloads. It returns false, with v untouched, otherwise.
func decodeEntries(buf []byte, v any) bool {
	var want protowire.Number
	switch v.(type) {
	case *linkv1.AttachRequest:
		want = attachRequestCommitted
	case *linkv1.AttachResponse:
		want = attachResponseApply
	case *replicationv1.StreamResponse:
		want = streamResponseEntries
	default:
		return false
	}
	num, typ, n := protowire.ConsumeTag(buf)
	if n < 0 || typ != protowire.BytesType {
		return false
	}
	_, request := v.(*linkv1.AttachRequest)
	if num != want && !(request && num == attachRequestReplay) {
		return false
	}
	inner, m := protowire.ConsumeBytes(buf[n:])
	if m < 0 || n+m != len(buf) {
		return false // malformed, or more fields after it
	}
	if request && num == attachRequestReplay {
		rr, ok := decodeReplayResult(inner)
		if ok {
			v.(*linkv1.AttachRequest).Payload = &linkv1.AttachRequest_ReplayResult{ReplayResult: rr}
		}
		return ok
	}
	ents, lsn, _, ok := decodeEntryList(inner)
	if !ok {
		return false
	}
	switch x := v.(type) {
	case *linkv1.AttachRequest:
		x.Payload = &linkv1.AttachRequest_Committed{Committed: &linkv1.CommittedEntries{Entries: ents, DurableLsn: lsn}}
	case *linkv1.AttachResponse:
		x.Payload = &linkv1.AttachResponse_Apply{Apply: &linkv1.ApplyEntries{Entries: ents, CommitLsn: lsn}}
	case *replicationv1.StreamResponse:
		x.Payload = &replicationv1.StreamResponse_Entries{Entries: &replicationv1.EntriesBatch{Entries: ents, CommitLsn: lsn}}
	}
	return true
}

// decodeEntryList decodes the body of CommittedEntries, ApplyEntries or
// EntriesBatch: repeated Entry (field 1) and an optional uint64 (field 2).
func decodeEntryList(b []byte) (ents []*linkv1.Entry, lsn uint64, haveLSN, ok bool) {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, 0, false, false
		}
		b = b[n:]
		switch {
		case num == listEntries && typ == protowire.BytesType:
			body, m := protowire.ConsumeBytes(b)
			if m < 0 {
				return nil, 0, false, false
			}
			e, ok := decodeEntry(body)
			if !ok {
				return nil, 0, false, false
			}
			ents = append(ents, e)
			b = b[m:]
		case num == listLSN && typ == protowire.VarintType && !haveLSN:
			v, m := protowire.ConsumeVarint(b)
			if m < 0 {
				return nil, 0, false, false
			}
			lsn, haveLSN = v, true
			b = b[m:]
		default:
			return nil, 0, false, false
		}
	}
	return ents, lsn, haveLSN, true
}

// decodeReplayResult decodes the body of a ReplayResult that has no error
// string, the payloads of its entries pointing into b.
func decodeReplayResult(b []byte) (*linkv1.ReplayResult, bool) {
	rr := &linkv1.ReplayResult{}
	var seen [replayDurableLSN + 1]bool
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, false
		}
		b = b[n:]
		if num == replayEntries && typ == protowire.BytesType {
			body, m := protowire.ConsumeBytes(b)
			if m < 0 {
				return nil, false
			}
			e, ok := decodeEntry(body)
			if !ok {
				return nil, false
			}
			rr.Entries = append(rr.Entries, e)
			b = b[m:]
			continue
		}
		// Every other field taken here is a varint, given once.
		if num < replayRequestID || num > replayDurableLSN || num == replayEntries ||
			typ != protowire.VarintType || seen[num] {
			return nil, false
		}
		seen[num] = true
		v, m := protowire.ConsumeVarint(b)
		if m < 0 {
			return nil, false
		}
		b = b[m:]
		switch num {
		case replayRequestID:
			rr.RequestId = v
		case replayStatus:
			rr.Status = linkv1.ReplayStatus(int32(v))
		case replayDone:
			rr.Done = protowire.DecodeBool(v)
		case replayEndOfLog:
			rr.EndOfLog = protowire.DecodeBool(v)
		case replayFirstLSN:
			rr.FirstLsn = v
		case replayDurableLSN:
			rr.DurableLsn = v
		}
	}
	return rr, true
}

// decodeEntry decodes one Entry, its payload pointing into b.
func decodeEntry(b []byte) (*linkv1.Entry, bool) {
	e := &linkv1.Entry{}
	var seen [entryPayloadCRC + 1]bool
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 || num < entryLSN || num > entryPayloadCRC || seen[num] {
			return nil, false
		}
		seen[num] = true
		b = b[n:]
		var m int
		switch {
		case num == entryPayload && typ == protowire.BytesType:
			var p []byte
			p, m = protowire.ConsumeBytes(b)
			if m > 0 && len(p) > 0 {
				// Capacity cut to the payload: an append to it can never
				// write over the bytes that follow in the buffer.
				e.Payload = p[:len(p):len(p)]
			}
		case num == entryPayloadCRC && typ == protowire.Fixed32Type:
			var v uint32
			v, m = protowire.ConsumeFixed32(b)
			e.PayloadCrc32C = &v
		case num <= entryType && typ == protowire.VarintType:
			var v uint64
			v, m = protowire.ConsumeVarint(b)
			switch num {
			case entryLSN:
				e.Lsn = v
			case entryEpoch:
				e.Epoch = uint32(v)
			case entryType:
				e.Type = linkv1.EntryType(int32(v))
			}
		default:
			return nil, false
		}
		if m < 0 {
			return nil, false
		}
		b = b[m:]
	}
	return e, true
}

// minScatterPayload: payloads at least this long are sent from where they
// are; shorter ones are copied next to the field headers.
const minScatterPayload = 512

// marshalEntries encodes the entry-carrying messages without copying their
// payloads: the result is the field headers, in slices of one small
// buffer, interleaved with the payload slices themselves (gRPC copies them
// into its frames; proto.Marshal would first have copied them into one
// buffer). The bytes are exactly proto.Marshal's. It returns false for
// every other message, and for one with unknown fields, which proto.Marshal
// then encodes.
func marshalEntries(v any) (mem.BufferSlice, bool) {
	var top protowire.Number
	entField := protowire.Number(listEntries)
	var ents []*linkv1.Entry
	var pre, post []byte // the message's other fields, before and after its entries
	var parts []proto.Message
	switch x := v.(type) {
	case *linkv1.AttachRequest:
		switch p := x.GetPayload().(type) {
		case *linkv1.AttachRequest_Committed:
			if p.Committed == nil {
				return nil, false
			}
			top, ents = attachRequestCommitted, p.Committed.GetEntries()
			post = appendVarintField(nil, listLSN, p.Committed.GetDurableLsn())
			parts = []proto.Message{x, p.Committed}
		case *linkv1.AttachRequest_ReplayResult:
			rr := p.ReplayResult
			if rr == nil || rr.Error != "" {
				return nil, false
			}
			top, entField, ents = attachRequestReplay, replayEntries, rr.GetEntries()
			pre = appendVarintField(pre, replayRequestID, rr.RequestId)
			pre = appendVarintField(pre, replayStatus, uint64(int64(rr.Status)))
			post = appendVarintField(post, replayDone, protowire.EncodeBool(rr.Done))
			post = appendVarintField(post, replayEndOfLog, protowire.EncodeBool(rr.EndOfLog))
			post = appendVarintField(post, replayFirstLSN, rr.FirstLsn)
			post = appendVarintField(post, replayDurableLSN, rr.DurableLsn)
			parts = []proto.Message{x, rr}
		default:
			return nil, false
		}
	case *linkv1.AttachResponse:
		a, ok := x.GetPayload().(*linkv1.AttachResponse_Apply)
		if !ok || a.Apply == nil {
			return nil, false
		}
		top, ents = attachResponseApply, a.Apply.GetEntries()
		post = appendVarintField(nil, listLSN, a.Apply.GetCommitLsn())
		parts = []proto.Message{x, a.Apply}
	case *replicationv1.StreamResponse:
		e, ok := x.GetPayload().(*replicationv1.StreamResponse_Entries)
		if !ok || e.Entries == nil {
			return nil, false
		}
		top, ents = streamResponseEntries, e.Entries.GetEntries()
		post = appendVarintField(nil, listLSN, e.Entries.GetCommitLsn())
		parts = []proto.Message{x, e.Entries}
	default:
		return nil, false
	}
	for _, p := range parts {
		if len(p.ProtoReflect().GetUnknown()) > 0 {
			return nil, false
		}
	}
	// Sizes first: every length prefix comes before what it measures.
	bodies := make([]int, len(ents))
	list := len(pre) + len(post)
	for i, e := range ents {
		if e == nil || len(e.ProtoReflect().GetUnknown()) > 0 {
			return nil, false
		}
		bodies[i] = entryBodySize(e)
		list += protowire.SizeTag(entField) + protowire.SizeBytes(bodies[i])
	}
	// At most 45 header bytes per entry plus the top and the other
	// fields: hdr never grows, so the slices taken from it stay valid.
	hdr := make([]byte, 0, 16+len(pre)+len(post)+len(ents)*(45+minScatterPayload))
	var out mem.BufferSlice
	from := 0
	cut := func() {
		if len(hdr) > from {
			out = append(out, mem.SliceBuffer(hdr[from:len(hdr):len(hdr)]))
			from = len(hdr)
		}
	}
	hdr = protowire.AppendTag(hdr, top, protowire.BytesType)
	hdr = protowire.AppendVarint(hdr, uint64(list))
	hdr = append(hdr, pre...)
	for i, e := range ents {
		hdr = protowire.AppendTag(hdr, entField, protowire.BytesType)
		hdr = protowire.AppendVarint(hdr, uint64(bodies[i]))
		if e.Lsn != 0 {
			hdr = protowire.AppendTag(hdr, entryLSN, protowire.VarintType)
			hdr = protowire.AppendVarint(hdr, e.Lsn)
		}
		if e.Epoch != 0 {
			hdr = protowire.AppendTag(hdr, entryEpoch, protowire.VarintType)
			hdr = protowire.AppendVarint(hdr, uint64(e.Epoch))
		}
		if e.Type != 0 {
			hdr = protowire.AppendTag(hdr, entryType, protowire.VarintType)
			hdr = protowire.AppendVarint(hdr, uint64(int64(e.Type)))
		}
		if p := e.Payload; len(p) > 0 {
			hdr = protowire.AppendTag(hdr, entryPayload, protowire.BytesType)
			hdr = protowire.AppendVarint(hdr, uint64(len(p)))
			if len(p) < minScatterPayload {
				hdr = append(hdr, p...)
			} else {
				cut()
				out = append(out, mem.SliceBuffer(p))
			}
		}
		if e.PayloadCrc32C != nil {
			hdr = protowire.AppendTag(hdr, entryPayloadCRC, protowire.Fixed32Type)
			hdr = protowire.AppendFixed32(hdr, *e.PayloadCrc32C)
		}
	}
	hdr = append(hdr, post...)
	cut()
	return out, true
}

// appendVarintField appends field num with value v as protobuf encodes a
// proto3 scalar: nothing when v is 0.
func appendVarintField(b []byte, num protowire.Number, v uint64) []byte {
	if v == 0 {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, v)
}

// entryBodySize is the encoded size of e's fields.
func entryBodySize(e *linkv1.Entry) int {
	n := 0
	if e.Lsn != 0 {
		n += protowire.SizeTag(entryLSN) + protowire.SizeVarint(e.Lsn)
	}
	if e.Epoch != 0 {
		n += protowire.SizeTag(entryEpoch) + protowire.SizeVarint(uint64(e.Epoch))
	}
	if e.Type != 0 {
		n += protowire.SizeTag(entryType) + protowire.SizeVarint(uint64(int64(e.Type)))
	}
	if len(e.Payload) > 0 {
		n += protowire.SizeTag(entryPayload) + protowire.SizeBytes(len(e.Payload))
	}
	if e.PayloadCrc32C != nil {
		n += protowire.SizeTag(entryPayloadCRC) + protowire.SizeFixed32()
	}
	return n
}

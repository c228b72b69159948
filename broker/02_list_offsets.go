package broker

// ListOffsets (key 2), v0-v7.
//
// Timestamp -2 (earliest) gives the log start offset, -1 (latest) the high
// watermark, or for isolation level 1 (read_committed) the last stable
// offset (txn.go): consumers never see past them. -3 (v7, max timestamp)
// gives the last offset of the batch with the highest timestamp. A
// timestamp >= 0 gives the first offset whose record timestamp is at least
// that: exact for uncompressed batches, the batch's base offset for
// compressed ones (the broker does not decompress) and for LogAppendTime
// ones (all their records have the batch's time); -1 when no committed
// record is that recent. v0 answers with the old-style offset list.
//
// Only the leader answers a consumer (NOT_LEADER_OR_FOLLOWER elsewhere, as
// Kafka does): a follower's watermarks may trail the leader's, by much
// after a restart, and a client whose metadata still names a former
// leader would otherwise take them for the partition's. Replica id -2,
// Kafka's debugging id, may ask any node for its own offsets.
//
// A new leader's high watermark trails for a moment: entries it took from
// the old leader count as committed only when its followers have acked
// them in the new epoch. Until then it answers "latest" (and a timestamp
// or max-timestamp lookup that finds nothing committed) with
// OFFSET_NOT_AVAILABLE, LEADER_NOT_AVAILABLE before v5, as Kafka does
// (KIP-207), and clients ask again: an end offset it gave meanwhile could
// lie below the one the old leader gave, and a consumer starting at the
// end would read again records it was told were already there.

import (
	"math"

	"github.com/twmb/franz-go/pkg/kbin"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tandem-io/tandem/broker/link"
)

func init() { register(kmsg.ListOffsets.Int16(), 0, 7, handleListOffsets) }

func handleListOffsets(b *Broker, rc *reqCtx, req kmsg.Request) func() kmsg.Response {
	r := req.(*kmsg.ListOffsetsRequest)
	resp := r.ResponseKind().(*kmsg.ListOffsetsResponse)
	view := b.clusterView()
	answers := takesWrites(view) || r.ReplicaID == -2
	// Entries below epochStart were written in earlier epochs. Kafka's
	// debugging id gets the offsets as they are.
	var epochStart uint64
	if view.Role == link.RoleLeader && r.ReplicaID != -2 {
		epochStart = b.epochStartLSN(view.Epoch)
	}
	notAvailable := kerr.OffsetNotAvailable.Code
	if r.Version < 5 {
		notAvailable = kerr.LeaderNotAvailable.Code
	}
	for _, rt := range r.Topics {
		st := kmsg.NewListOffsetsResponseTopic()
		st.Topic = rt.Topic
		mayDescribe := b.allowedTopic(rc, kmsg.ACLOperationDescribe, rt.Topic)
		for _, rp := range rt.Partitions {
			sp := kmsg.NewListOffsetsResponseTopicPartition()
			sp.Partition = rp.Partition
			sp.Timestamp = -1
			sp.Offset = -1
			sp.LeaderEpoch = int32(view.Epoch)
			if !mayDescribe {
				sp.ErrorCode = kerr.TopicAuthorizationFailed.Code
				st.Partitions = append(st.Partitions, sp)
				continue
			}
			p := b.partition(rt.Topic, rp.Partition)
			if p == nil {
				sp.ErrorCode = kerr.UnknownTopicOrPartition.Code
				st.Partitions = append(st.Partitions, sp)
				continue
			}
			if !answers {
				sp.ErrorCode = kerr.NotLeaderForPartition.Code
				st.Partitions = append(st.Partitions, sp)
				continue
			}
			sp.Offset, sp.Timestamp = b.offsetForTime(p, rp.Timestamp)
			if rp.Timestamp == -1 && r.IsolationLevel == 1 {
				sp.Offset = p.lso()
			}
			// Latest and max timestamp can change when the old leader's records
			// commit; a lookup that found a committed record cannot.
			if (rp.Timestamp == -1 || rp.Timestamp == -3 || rp.Timestamp >= 0 && sp.Offset < 0) && p.hwBehindEpochStart(epochStart) {
				sp.ErrorCode = notAvailable
				sp.Offset, sp.Timestamp = -1, -1
			}
			if r.Version == 0 && sp.ErrorCode == 0 {
				sp.OldStyleOffsets = []int64{sp.Offset}
			}
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	return now(resp)
}

// epochStartLSN is the LSN of the first entry of this node's leader epoch
// (the entry SetClusterView writes when a term begins), or the largest LSN
// if that entry is not written yet: every entry in the log is then from
// an earlier epoch.
func (b *Broker) epochStartLSN(epoch uint32) uint64 {
	h := b.wal.EpochHistory()
	if len(h) > 0 && h[len(h)-1].Epoch == epoch {
		return h[len(h)-1].StartLSN
	}
	return math.MaxUint64
}

// hwBehindEpochStart says whether p has records from before epochStart
// (an earlier leader's) that are not yet committed: the high watermark is
// below where the partition ended when this node's term began (KIP-207's
// "high watermark lagging behind the epoch start offset"). False for
// epochStart 0.
func (p *partition) hwBehindEpochStart(epochStart uint64) bool {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.hw >= p.next {
		return false
	}
	i := p.findLocked(p.hw)
	return i < len(p.batches) && p.batches[i].pos.LSN < epochStart
}

// offsetForTime resolves a ListOffsets timestamp to (offset, timestamp).
func (b *Broker) offsetForTime(p *partition, ts int64) (int64, int64) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	switch ts {
	case -2:
		return p.logStart, -1
	case -1:
		return p.hw, -1
	case -3:
		best, bestTs := int64(-1), int64(-1)
		for _, ref := range p.batches {
			if ref.base >= p.hw {
				break
			}
			if ref.maxTs > bestTs {
				best, bestTs = ref.last, ref.maxTs
			}
		}
		return best, bestTs
	}
	for _, ref := range p.batches {
		if ref.base >= p.hw {
			break
		}
		if ref.maxTs < ts {
			continue
		}
		// The first batch may begin below the log start offset
		// (DeleteRecords): nothing below it is answered.
		if off, rts, ok := b.exactOffsetForTime(ref, ts); ok {
			return max(off, p.logStart), rts
		}
		return max(ref.base, p.logStart), ref.maxTs
	}
	return -1, -1
}

// exactOffsetForTime finds the first record of an uncompressed CreateTime
// batch with a timestamp >= ts.
func (b *Broker) exactOffsetForTime(ref batchRef, ts int64) (int64, int64, bool) {
	raw, err := b.wal.ReadRange(ref.pos, int(ref.poff), int(ref.size), nil)
	if err != nil {
		return 0, 0, false
	}
	var rb kmsg.RecordBatch
	if err := rb.ReadFrom(raw); err != nil || rb.Attributes&0x07 != 0 || rb.Attributes&0x08 != 0 {
		// Compressed, or LogAppendTime: every record has the batch's
		// max timestamp, and the batch's base offset is the answer.
		return 0, 0, false
	}
	data := rb.Records
	for i := int32(0); i < rb.NumRecords && len(data) > 0; i++ {
		var rec kmsg.Record
		// A record is a varint length followed by that many bytes.
		n, sz := kbin.Varint(data)
		if sz <= 0 || int(n) < 0 || sz+int(n) > len(data) {
			return 0, 0, false
		}
		if err := rec.ReadFrom(data[:sz+int(n)]); err != nil {
			return 0, 0, false
		}
		data = data[sz+int(n):]
		if rts := rb.FirstTimestamp + rec.TimestampDelta64; rts >= ts {
			return rb.FirstOffset + int64(rec.OffsetDelta), rts, true
		}
	}
	return 0, 0, false
}

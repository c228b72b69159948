package broker

// OffsetForLeaderEpoch (key 23), v0-v4.
//
// Consumers (and KIP-320 truncation detection in clients) ask where a leader
// epoch ended in a partition. The answer comes from the WAL's epoch history:
// the end of epoch E is the first offset written in a later epoch, or the
// log end offset if E is the current epoch. An epoch older than any this
// node knows is answered with the oldest epoch it has.

import (
	"sort"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func init() { register(kmsg.OffsetForLeaderEpoch.Int16(), 0, 4, handleOffsetForLeaderEpoch) }

func handleOffsetForLeaderEpoch(b *Broker, rc *reqCtx, req kmsg.Request) func() kmsg.Response {
	r := req.(*kmsg.OffsetForLeaderEpochRequest)
	var resp *kmsg.OffsetForLeaderEpochResponse
	b.readWhole(rc.ctx, func() { resp = b.offsetsForLeaderEpochs(rc, r) })
	return now(resp)
}

// offsetsForLeaderEpochs answers r from the state as it is now.
func (b *Broker) offsetsForLeaderEpochs(rc *reqCtx, r *kmsg.OffsetForLeaderEpochRequest) *kmsg.OffsetForLeaderEpochResponse {
	resp := r.ResponseKind().(*kmsg.OffsetForLeaderEpochResponse)
	hist := b.wal.EpochHistory()
	for _, rt := range r.Topics {
		st := kmsg.NewOffsetForLeaderEpochResponseTopic()
		st.Topic = rt.Topic
		mayDescribe := b.allowedTopic(rc, kmsg.ACLOperationDescribe, rt.Topic)
		for _, rp := range rt.Partitions {
			sp := kmsg.NewOffsetForLeaderEpochResponseTopicPartition()
			sp.Partition = rp.Partition
			sp.LeaderEpoch = -1
			sp.EndOffset = -1
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
			// The last epoch <= the requested one, and the LSN where the next began.
			i := sort.Search(len(hist), func(i int) bool { return int64(hist[i].Epoch) > int64(rp.LeaderEpoch) })
			p.mu.RLock()
			switch {
			case len(hist) == 0 || i == len(hist):
				sp.LeaderEpoch = int32(b.clusterView().Epoch)
				if len(hist) > 0 {
					sp.LeaderEpoch = int32(hist[len(hist)-1].Epoch)
				}
				sp.EndOffset = p.next
			default:
				if i > 0 {
					sp.LeaderEpoch = int32(hist[i-1].Epoch)
				} else {
					sp.LeaderEpoch = int32(hist[0].Epoch)
				}
				endLSN := hist[i].StartLSN
				// Compaction's copies (compact.go) sit at later LSNs
				// than their offsets; they hold old, stable records and
				// count as written before the epoch ended.
				j := sort.Search(len(p.batches), func(j int) bool { return !p.batches[j].compacted && p.batches[j].pos.LSN >= endLSN })
				if j < len(p.batches) {
					sp.EndOffset = p.batches[j].base
				} else {
					sp.EndOffset = p.next
				}
			}
			p.mu.RUnlock()
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	return resp
}

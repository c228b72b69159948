package broker

// DescribeProducers (key 61), v0.
//
// The producers a partition holds state for (Kafka's
// `kafka-transactions.sh describe-producers` and find-hanging; kadm's
// DescribeProducers): each idempotent or transactional producer's id,
// epoch, last sequence and last timestamp (the max timestamp of its last
// batch, as Kafka's), and the first offset of its open transaction on the
// partition (-1 for none). The
// leader answers (NOT_LEADER_OR_FOLLOWER elsewhere, as Kafka's partition
// leaders do); Read on the topic with --acls.

import (
	"sort"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func init() { register(kmsg.DescribeProducers.Int16(), 0, 0, handleDescribeProducers) }

func handleDescribeProducers(b *Broker, rc *reqCtx, req kmsg.Request) func() kmsg.Response {
	r := req.(*kmsg.DescribeProducersRequest)
	resp := r.ResponseKind().(*kmsg.DescribeProducersResponse)
	leader := b.isLeader()
	for _, t := range r.Topics {
		rt := kmsg.NewDescribeProducersResponseTopic()
		rt.Topic = t.Topic
		mayRead := b.allowedTopic(rc, kmsg.ACLOperationRead, t.Topic)
		for _, part := range t.Partitions {
			rp := kmsg.NewDescribeProducersResponseTopicPartition()
			rp.Partition = part
			p := b.partition(t.Topic, part)
			switch {
			case !mayRead:
				rp.ErrorCode = kerr.TopicAuthorizationFailed.Code
			case p == nil:
				rp.ErrorCode = kerr.UnknownTopicOrPartition.Code
			case !leader:
				rp.ErrorCode = kerr.NotLeaderForPartition.Code
			default:
				rp.ActiveProducers = b.activeProducers(p, tp{t.Topic, part})
			}
			rt.Partitions = append(rt.Partitions, rp)
		}
		resp.Topics = append(resp.Topics, rt)
	}
	return now(resp)
}

// activeProducers lists the producers partition p (named k) holds state for.
func (b *Broker) activeProducers(p *partition, k tp) []kmsg.DescribeProducersResponseTopicPartitionActiveProducer {
	byPID := map[int64]*kmsg.DescribeProducersResponseTopicPartitionActiveProducer{}
	get := func(pid int64) *kmsg.DescribeProducersResponseTopicPartitionActiveProducer {
		ap := byPID[pid]
		if ap == nil {
			v := kmsg.NewDescribeProducersResponseTopicPartitionActiveProducer()
			v.ProducerID, v.ProducerEpoch, v.LastSequence = pid, -1, -1
			v.LastTimestamp, v.CurrentTxnStartOffset = -1, -1
			ap = &v
			byPID[pid] = ap
		}
		return ap
	}
	b.appendMu.Lock()
	for pid, w := range b.tpWindows[k] {
		ap := get(pid)
		ap.ProducerEpoch, ap.LastSequence = int32(w.epoch), w.lastSeq()
		if w.n > 0 {
			ap.LastTimestamp = w.entries[w.n-1].maxTs
		}
	}
	p.mu.RLock()
	for _, t := range p.openTxns {
		if t.marker < 0 {
			ap := get(t.pid)
			ap.CurrentTxnStartOffset = t.first
			if ap.ProducerEpoch < 0 {
				ap.ProducerEpoch = int32(b.pidEpochs[t.pid])
			}
		}
	}
	p.mu.RUnlock()
	b.appendMu.Unlock()
	out := make([]kmsg.DescribeProducersResponseTopicPartitionActiveProducer, 0, len(byPID))
	for _, ap := range byPID {
		out = append(out, *ap)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ProducerID < out[j].ProducerID })
	return out
}

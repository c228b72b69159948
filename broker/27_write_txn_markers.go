package broker

// WriteTxnMarkers (key 27), v0-v1.
//
// In Kafka the transaction coordinator sends it to the partitions' leaders;
// Tandem's coordinator writes its markers itself (txn.go), so here it is
// only the operator's way to abort a transaction before its timeout
// (Kafka's Admin.abortTransaction, KIP-664; `kafka-transactions.sh abort`;
// `tandemctl transactions --abort`). An abort marker for a producer whose
// transaction the coordinator holds open at that epoch aborts the whole
// transaction through the coordinator, on every partition, with the epoch
// bumped so that the producer is fenced; one for a partition where the
// producer has records of a transaction the coordinator does not hold open
// (a hanging transaction) writes the abort marker there. Commit markers are
// refused (INVALID_TXN_STATE): only the producer commits. It needs
// ClusterAction on the cluster with --acls, as in Kafka, and the leader
// (NOT_LEADER_OR_FOLLOWER elsewhere).

import (
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func init() { register(kmsg.WriteTxnMarkers.Int16(), 0, 1, handleWriteTxnMarkers) }

func handleWriteTxnMarkers(b *Broker, rc *reqCtx, req kmsg.Request) func() kmsg.Response {
	r := req.(*kmsg.WriteTxnMarkersRequest)
	resp := r.ResponseKind().(*kmsg.WriteTxnMarkersResponse)
	allowed := b.allowedCluster(rc, kmsg.ACLOperationClusterAction)
	leader := b.isLeader()
	gen := b.commitGeneration()
	var last uint64
	b.appendMu.Lock()
	for _, m := range r.Markers {
		rm := kmsg.NewWriteTxnMarkersResponseMarker()
		rm.ProducerID = m.ProducerID
		code := func() *kerr.Error {
			switch {
			case !allowed:
				return kerr.ClusterAuthorizationFailed
			case !leader:
				return kerr.NotLeaderForPartition
			case m.Committed:
				return kerr.InvalidTxnState
			}
			// The coordinator's open transaction of this producer, if any.
			for _, s := range b.txns {
				if s.PID != m.ProducerID || s.State != txnOngoing {
					continue
				}
				if m.ProducerEpoch != s.Epoch {
					return kerr.InvalidProducerEpoch
				}
				epoch := s.Epoch
				if epoch < maxProducerEpoch {
					epoch++
				}
				b.log.Warn("aborting a transaction on an operator's request", "transactional_id", s.ID, "producer_id", s.PID,
					"open_for", time.Since(time.UnixMilli(s.StartMs)).Round(time.Millisecond), "client", rc.clientID, "host", rc.host)
				lsn, err := b.endTxnLocked(s, false, epoch)
				if err != nil {
					return kerr.NotLeaderForPartition
				}
				last = max(last, lsn)
				return nil
			}
			return nil
		}()
		for _, t := range m.Topics {
			rt := kmsg.NewWriteTxnMarkersResponseMarkerTopic()
			rt.Topic = t.Topic
			for _, part := range t.Partitions {
				rp := kmsg.NewWriteTxnMarkersResponseMarkerTopicPartition()
				rp.Partition = part
				c := code
				if c == nil {
					var lsn uint64
					lsn, c = b.abortHangingLocked(m.ProducerID, m.ProducerEpoch, t.Topic, part)
					last = max(last, lsn)
				}
				if c != nil {
					rp.ErrorCode = c.Code
				}
				rt.Partitions = append(rt.Partitions, rp)
			}
			rm.Topics = append(rm.Topics, rt)
		}
		resp.Markers = append(resp.Markers, rm)
	}
	b.appendMu.Unlock()
	if last == 0 {
		return now(resp)
	}
	return func() kmsg.Response {
		if code := b.waitTxn(rc, last, gen); code != nil {
			for i := range resp.Markers {
				for j := range resp.Markers[i].Topics {
					for k := range resp.Markers[i].Topics[j].Partitions {
						if p := &resp.Markers[i].Topics[j].Partitions[k]; p.ErrorCode == 0 {
							p.ErrorCode = kerr.NotLeaderForPartition.Code
						}
					}
				}
			}
		}
		return resp
	}
}

// abortHangingLocked writes an abort marker on a partition where the
// producer still has records of a transaction without a marker (after the
// coordinator's abort above, none is left). It returns the marker's LSN, 0
// when nothing was open. Caller holds appendMu.
func (b *Broker) abortHangingLocked(pid int64, epoch int16, topic string, part int32) (uint64, *kerr.Error) {
	p := b.partition(topic, part)
	if p == nil {
		return 0, kerr.UnknownTopicOrPartition
	}
	p.mu.RLock()
	open := p.unmarkedLocked(pid) >= 0
	base := p.next
	p.mu.RUnlock()
	if !open {
		return 0, nil
	}
	b.log.Warn("writing an abort marker for a hanging transaction on an operator's request", "producer_id", pid, "topic", topic, "partition", part)
	raw := controlBatch(pid, epoch, false, time.Now().UnixMilli())
	stampBatch(raw, base, int32(b.clusterView().Epoch))
	lsn, err := b.appendBatchLocked(topic, part, raw)
	if err != nil {
		return 0, kerr.NotLeaderForPartition
	}
	return lsn, nil
}

package broker

// Fetch (key 1), v4-v12.
//
// Returns whole stored RecordBatches, byte for byte as they were produced,
// from the batch holding the requested offset up to the high watermark: a
// consumer never sees a record that is not committed. A read_committed
// consumer (isolation level 1) gets records up to the last stable offset
// only, and the aborted transactions among them (txn.go). Partition max bytes and
// the request's MaxBytes (within --fetch-max-bytes, Kafka's fetch.max.bytes) bound
// the answer, except that the first batch found
// is always returned whole so that a consumer can always make progress
// (KIP-74). If fewer than MinBytes are available the request waits up to
// MaxWaitMs for the high watermark of any partition to move (long poll).
//
// Batches are located through the per-partition index (offset -> WAL
// position) and read with one positioned read each; no segment is scanned or
// loaded whole. Fetch sessions (KIP-227, fetch_session.go) let a consumer
// name its partitions once and get answers listing only what changed. Any
// node serves Fetch up
// to its own high watermark, followers included (KIP-392 follower reads):
// the leader points a consumer that sends its rack (v11+) to an in-sync
// follower in the same rack through PreferredReadReplica.

import (
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tandem-io/tandem/broker/link"
	"github.com/tandem-io/tandem/broker/quota"
)

func init() { register(kmsg.Fetch.Int16(), 4, 12, handleFetch) }

func handleFetch(b *Broker, rc *reqCtx, req kmsg.Request) func() kmsg.Response {
	r := req.(*kmsg.FetchRequest)
	return func() kmsg.Response {
		full, sess, incremental, code := b.fetchSessions.begin(r)
		if code != 0 {
			resp := r.ResponseKind().(*kmsg.FetchResponse)
			resp.ErrorCode = code
			return resp
		}
		var denied map[string]bool // topics the principal may not read
		for _, t := range full.Topics {
			if !b.allowedTopic(rc, kmsg.ACLOperationRead, t.Topic) {
				if denied == nil {
					denied = map[string]bool{}
				}
				denied[t.Topic] = true
			}
		}
		deadline := time.Now().Add(time.Duration(r.MaxWaitMillis) * time.Millisecond)
		for {
			wake := b.hwNotify.wait()
			var resp *kmsg.FetchResponse
			var n int
			var failed bool
			b.readWhole(rc.ctx, func() { resp, n, failed = b.fetchOnce(full, denied) })
			if n >= int(r.MinBytes) || failed || !time.Now().Before(deadline) || rc.ctx.Err() != nil {
				if sess != nil {
					b.fetchSessions.finish(sess, resp, incremental)
				}
				// Client quotas count the records answered (48_client_quotas.go).
				if t := b.throttle(rc, quota.ConsumerByteRate, n); t > 0 {
					resp.ThrottleMillis = int32(t.Milliseconds())
					if r.Version < 8 { // before KIP-219
						sleepCtx(rc.ctx, t)
					}
				}
				return resp
			}
			t := time.NewTimer(time.Until(deadline))
			select {
			case <-wake:
			case <-t.C:
			case <-rc.ctx.Done():
			}
			t.Stop()
		}
	}
}

// fetchOnce builds one answer from what is committed now. It returns the
// response, the record bytes in it, and whether some partition failed (an
// error is answered at once, as Kafka does). Topics in denied get
// TOPIC_AUTHORIZATION_FAILED.
func (b *Broker) fetchOnce(r *kmsg.FetchRequest, denied map[string]bool) (*kmsg.FetchResponse, int, bool) {
	resp := r.ResponseKind().(*kmsg.FetchResponse)
	// The consumer's MaxBytes (v3+), within the node's --fetch-max-bytes
	// (Kafka's fetch.max.bytes, KIP-541).
	budget := int(r.MaxBytes)
	if r.Version < 3 || budget <= 0 || budget > int(b.cfg.FetchMaxBytes) {
		budget = int(b.cfg.FetchMaxBytes)
	}
	total := 0
	failed := false
	for _, rt := range r.Topics {
		st := kmsg.NewFetchResponseTopic()
		st.Topic = rt.Topic
		st.TopicID = rt.TopicID
		for _, rp := range rt.Partitions {
			sp := kmsg.NewFetchResponseTopicPartition()
			sp.Partition = rp.Partition
			sp.HighWatermark = -1
			sp.LastStableOffset = -1
			sp.LogStartOffset = -1
			sp.PreferredReadReplica = -1
			if denied[rt.Topic] {
				sp.ErrorCode = kerr.TopicAuthorizationFailed.Code
				failed = true
				st.Partitions = append(st.Partitions, sp)
				continue
			}
			p := b.partition(rt.Topic, rp.Partition)
			if p == nil {
				sp.ErrorCode = kerr.UnknownTopicOrPartition.Code
				failed = true
				st.Partitions = append(st.Partitions, sp)
				continue
			}
			logStart, hw, lso, next := p.fetchOffsets()
			sp.HighWatermark = hw
			sp.LastStableOffset = lso
			sp.LogStartOffset = logStart
			if rp.FetchOffset < logStart || rp.FetchOffset > next {
				sp.ErrorCode = kerr.OffsetOutOfRange.Code
				failed = true
				st.Partitions = append(st.Partitions, sp)
				continue
			}
			if pref := b.preferredReadReplica(r.Rack); pref >= 0 {
				// KIP-392: send the consumer to an in-sync follower in its
				// rack; this answer carries no records.
				sp.PreferredReadReplica = pref
				sp.RecordBatches = []byte{}
				st.Partitions = append(st.Partitions, sp)
				failed = true // answer now, as Kafka does
				continue
			}
			limit := int(rp.PartitionMaxBytes)
			if limit > budget {
				limit = budget
			}
			upTo := hw
			if r.IsolationLevel == 1 {
				// read_committed: up to the last stable offset, with the
				// aborted transactions among the records so that the
				// client drops theirs (txn.go).
				upTo = lso
				sp.AbortedTransactions = []kmsg.FetchResponseTopicPartitionAbortedTransaction{}
				for _, a := range p.abortedBetween(rp.FetchOffset, upTo) {
					at := kmsg.NewFetchResponseTopicPartitionAbortedTransaction()
					at.ProducerID, at.FirstOffset = a.pid, a.first
					sp.AbortedTransactions = append(sp.AbortedTransactions, at)
				}
			}
			data, err := b.readBatches(p, rp.FetchOffset, upTo, limit, total == 0)
			if err != nil {
				b.log.Warn("reading batches for fetch failed", "topic", rt.Topic, "partition", rp.Partition, "offset", rp.FetchOffset, "error", err)
				sp.ErrorCode = kerr.KafkaStorageError.Code
				failed = true
			}
			if data == nil {
				data = []byte{} // an empty record set, not a null one (librdkafka rejects null)
			}
			sp.RecordBatches = data
			total += len(data)
			budget -= len(data)
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	return resp, total, failed
}

// preferredReadReplica picks, on the leader, an in-sync follower in the
// consumer's rack when the leader is not in that rack itself (KIP-392).
// It returns -1 when the consumer should read here.
func (b *Broker) preferredReadReplica(rack string) int32 {
	if rack == "" || rack == b.cfg.Rack {
		return -1
	}
	view := b.clusterView()
	if view.Role != link.RoleLeader {
		return -1
	}
	insync := map[int32]bool{}
	for _, id := range view.ISR {
		insync[id] = true
	}
	for _, bi := range view.Brokers {
		if bi.Rack == rack && insync[bi.NodeID] && bi.NodeID != b.cfg.NodeID {
			return bi.NodeID
		}
	}
	return -1
}

// readBatches returns the stored batches of p from the one holding offset,
// below hw, within limit bytes (the first batch always, if first is set).
func (b *Broker) readBatches(p *partition, offset, hw int64, limit int, first bool) ([]byte, error) {
	p.mu.RLock()
	i := p.findLocked(offset)
	var refs []batchRef
	size := 0
	for ; i < len(p.batches) && p.batches[i].base < hw; i++ {
		ref := p.batches[i]
		if size+int(ref.size) > limit && !(first && len(refs) == 0) {
			break
		}
		refs = append(refs, ref)
		size += int(ref.size)
	}
	p.mu.RUnlock()
	if len(refs) == 0 {
		return nil, nil
	}
	// Each batch is read straight into the answer (wal.ReadRange).
	out := make([]byte, 0, size)
	for _, ref := range refs {
		var err error
		if out, err = b.wal.ReadRange(ref.pos, int(ref.poff), int(ref.size), out); err != nil {
			if len(out) > 0 {
				return out, nil
			}
			return nil, err
		}
	}
	return out, nil
}

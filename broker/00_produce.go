package broker

// Produce (key 0), v3-v9 (record batches of message format v2 only).
//
// Each partition's batches are validated (magic 2, length, CRC32C, record
// count), checked against the idempotent producer's sequence window (all of
// a partition's batches before any is written: one refused batch refuses
// the partition's whole record set, as in Kafka), stamped
// with their base offset and leader epoch (fields outside the batch CRC, so
// the records stay byte for byte what the producer sent) and appended to the
// WAL as one entry per batch. Compressed batches are stored compressed. A
// topic's timestamp configs apply before (timestamps.go): LogAppendTime
// stamps the batch header with the append time (its CRC is computed
// again), and CreateTime bounds refuse a batch with INVALID_TIMESTAMP.
//
// When the response is sent depends on acks:
//   - acks=0: never (Kafka semantics: no response at all); if a partition
//     fails, the connection is closed once the earlier requests are
//     answered, as Kafka does, so that the client refreshes its metadata;
//   - acks=1: once the batch is durable on this node under the fsync policy,
//     whatever the request's timeout (Kafka applies it to acks=-1 only);
//   - acks=-1: once the commit point passes the batch, i.e. every in-sync
//     replica has it. If the ISR is smaller than min.insync.replicas the
//     batch is refused at once with NOT_ENOUGH_REPLICAS; if the request
//     times out while the ISR is too small, NOT_ENOUGH_REPLICAS_AFTER_APPEND,
//     otherwise REQUEST_TIMED_OUT.
//
// Idempotence (KIP-98): a batch whose producer id, epoch and sequence range
// match one of the last five batches of that producer on that partition is a
// retry; it is not written again and is answered with its original offset. A
// sequence that does not follow the last one is refused with
// OUT_OF_ORDER_SEQUENCE_NUMBER; an older producer epoch with
// INVALID_PRODUCER_EPOCH. As in Kafka, a producer the partition has no
// state for (it never wrote there, or retention deleted its batches before
// a restart) may start at any sequence, and a new epoch must start at 0.
//
// A follower answers NOT_LEADER_OR_FOLLOWER for every partition. A
// partition whose topic is deleted (or deleted and created again) while
// the request is handled gets UNKNOWN_TOPIC_OR_PARTITION, nothing written.

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tandem-io/tandem/broker/quota"
	"github.com/tandem-io/tandem/broker/wal"
)

func init() { register(kmsg.Produce.Int16(), 3, 9, handleProduce) }

func handleProduce(b *Broker, rc *reqCtx, req kmsg.Request) func() kmsg.Response {
	respond := produce(b, rc, req)
	// Client quotas count the request's size (48_client_quotas.go).
	t := b.throttle(rc, quota.ProducerByteRate, rc.size)
	if t <= 0 || respond == nil {
		return respond // acks=0: nothing to answer, the mute alone holds the client
	}
	old := rc.version < 6 // before KIP-219: the client does not wait by itself
	return func() kmsg.Response {
		resp := respond().(*kmsg.ProduceResponse)
		resp.ThrottleMillis = int32(t.Milliseconds())
		if old {
			sleepCtx(rc.ctx, t)
		}
		return resp
	}
}

// produce appends the request's batches and returns its answer.
func produce(b *Broker, rc *reqCtx, req kmsg.Request) func() kmsg.Response {
	r := req.(*kmsg.ProduceRequest)
	resp := r.ResponseKind().(*kmsg.ProduceResponse)
	start := time.Now()

	var lastLSN uint64
	type waiter struct {
		p     *kmsg.ProduceResponseTopicPartition
		topic string
	}
	var waiting []waiter
	gen := b.commitGeneration() // before appending: see waitCommit
	leader := b.isLeader()
	view := b.clusterView()
	// A transactional producer needs Write on its transactional id too.
	txnAllowed := r.TransactionID == nil || b.allowed(rc, kmsg.ACLOperationWrite, kmsg.ACLResourceTypeTransactionalId, *r.TransactionID)
	for i := range r.Topics {
		rt := &r.Topics[i]
		st := kmsg.NewProduceResponseTopic()
		st.Topic = rt.Topic
		mayWrite := b.allowedTopic(rc, kmsg.ACLOperationWrite, rt.Topic)
		for j := range rt.Partitions {
			rp := &rt.Partitions[j]
			sp := kmsg.NewProduceResponseTopicPartition()
			sp.Partition = rp.Partition
			sp.BaseOffset = -1
			sp.LogAppendTime = -1
			sp.LogStartOffset = -1
			var known *partition // the partition, once it is known to exist
			code := func() *kerr.Error {
				switch {
				case r.Acks != 0 && r.Acks != 1 && r.Acks != -1:
					return kerr.InvalidRequiredAcks
				case !txnAllowed:
					return kerr.TransactionalIDAuthorizationFailed
				case !mayWrite:
					return kerr.TopicAuthorizationFailed
				case !leader:
					return kerr.NotLeaderForPartition
				}
				p := b.partition(rt.Topic, rp.Partition)
				if p == nil {
					return kerr.UnknownTopicOrPartition
				}
				known = p
				if r.Acks == -1 && len(view.ISR) < b.minISR(rt.Topic) {
					return kerr.NotEnoughReplicas
				}
				raws, infos, err := splitBatches(rp.Records, b.maxMessageBytes(rt.Topic))
				if err != nil {
					var eb *errBatch
					if errors.As(err, &eb) {
						if errors.Is(err, errDecompressedTooLarge) {
							// A "zip bomb", or a client compressing far more than
							// max.message.bytes into one batch: worth an operator's look.
							b.log.Warn("produce refused: batch decompresses past the cap", "topic", rt.Topic, "partition", rp.Partition,
								"client", rc.clientID, "host", rc.host, "max_message_bytes", b.maxMessageBytes(rt.Topic), "ratio", maxDecompressedRatio, "error", err)
						} else {
							b.log.Debug("produce refused", "topic", rt.Topic, "partition", rp.Partition, "client", rc.clientID, "error", err)
						}
						return eb.code
					}
					return kerr.CorruptMessage
				}
				if b.topicCompacts(rt.Topic) {
					for i, raw := range raws {
						if err := checkKeys(raw, infos[i], int64(b.maxMessageBytes(rt.Topic))*maxDecompressedRatio); err != nil {
							b.log.Debug("produce refused", "topic", rt.Topic, "partition", rp.Partition, "client", rc.clientID, "error", err)
							return kerr.InvalidRecord
						}
					}
				}
				appendTime, err := applyTimestampRules(b.timestampRulesOf(rt.Topic), raws, infos, time.Now().UnixMilli(),
					int64(b.maxMessageBytes(rt.Topic))*maxDecompressedRatio)
				if err != nil {
					b.log.Debug("produce refused", "topic", rt.Topic, "partition", rp.Partition, "client", rc.clientID, "error", err)
					var eb *errBatch
					if errors.As(err, &eb) {
						return eb.code
					}
					return kerr.CorruptMessage
				}
				base, lsn, code := b.appendBatches(p, rt.Topic, rp.Partition, raws, infos, r.TransactionID)
				if code == kerr.UnknownTopicOrPartition {
					known = nil // deleted meanwhile
				}
				if code != nil {
					return code
				}
				sp.BaseOffset, sp.LogAppendTime = base, appendTime
				if lsn > lastLSN {
					lastLSN = lsn
				}
				return nil
			}()
			if known != nil {
				// With an error too, as Kafka does: a client that gets
				// OUT_OF_ORDER_SEQUENCE_NUMBER tells records lost from
				// records that retention removed by it.
				sp.LogStartOffset, _, _ = known.watermarks()
			}
			if code != nil {
				sp.ErrorCode = code.Code
			}
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	for i := range resp.Topics {
		for j := range resp.Topics[i].Partitions {
			if resp.Topics[i].Partitions[j].ErrorCode == 0 {
				waiting = append(waiting, waiter{&resp.Topics[i].Partitions[j], resp.Topics[i].Topic})
			}
		}
	}
	if r.Acks == 0 {
		// No answer to carry the error: as Kafka does, close the
		// connection, so that the client refreshes its metadata (finds
		// the new leader, learns the topic is gone) and reconnects.
		var failed []string
		for _, st := range resp.Topics {
			for _, sp := range st.Partitions {
				if sp.ErrorCode != 0 {
					failed = append(failed, fmt.Sprintf("%s/%d: %s", st.Topic, sp.Partition, kerr.ErrorForCode(sp.ErrorCode)))
				}
			}
		}
		if len(failed) > 0 {
			b.log.Info("closing connection after a failed acks=0 produce, so that the client refreshes its metadata",
				"client", rc.clientID, "host", rc.host, "failed", len(failed), "first", failed[0])
			rc.closeConn = true
		}
		return nil
	}
	acks := r.Acks
	timeout := time.Duration(r.TimeoutMillis) * time.Millisecond
	return func() kmsg.Response {
		if lastLSN == 0 {
			return resp
		}
		var err error
		if acks == 1 {
			// As in Kafka, the request's timeout applies to waiting for
			// replicas only: a timeout answer to records that were written
			// would make a client retry them and write them twice.
			err = b.wal.WaitDurable(rc.ctx, lastLSN)
		} else {
			ctx, cancel := context.WithTimeout(rc.ctx, timeout)
			defer cancel()
			if err = b.wal.WaitDurable(ctx, lastLSN); err == nil {
				err = b.waitCommit(ctx, lastLSN, gen)
			}
			if err == nil {
				// Kafka: the high watermark passed the batch, but if the
				// ISR shrank below min.insync.replicas meanwhile, fewer
				// copies than promised exist.
				isr := len(b.clusterView().ISR)
				for _, w := range waiting {
					if isr < b.minISR(w.topic) {
						w.p.ErrorCode = kerr.NotEnoughReplicasAfterAppend.Code
					}
				}
			}
		}
		if err != nil {
			code := kerr.RequestTimedOut
			switch {
			case errors.Is(err, wal.ErrClosed), errors.Is(err, ErrClosed), errors.Is(err, ErrFenced):
				code = kerr.NotLeaderForPartition
			case acks == -1:
				isr := len(b.clusterView().ISR)
				for _, w := range waiting {
					if isr < b.minISR(w.topic) {
						code = kerr.NotEnoughReplicasAfterAppend
					}
				}
			}
			for _, w := range waiting {
				w.p.ErrorCode = code.Code
			}
		}
		b.metrics.observeProduce(acks, time.Since(start))
		return resp
	}
}

// appendBatches appends the batches of one partition. It returns the base
// offset of the first batch (the one the client is told) and the LSN of the
// last entry written. p is the partition the request was checked against;
// if the topic was deleted (and maybe created again) since, nothing is
// written and the answer is UNKNOWN_TOPIC_OR_PARTITION. The role is checked
// again under appendMu: a node that learnt it follows (SetClusterView) while
// the request was being handled writes nothing, and the batches get the
// epoch of the view they are written in.
func (b *Broker) appendBatches(p *partition, topicName string, part int32, raws [][]byte, infos []batchInfo, txnID *string) (int64, uint64, *kerr.Error) {
	b.appendMu.Lock()
	defer b.appendMu.Unlock()
	view := b.clusterView()
	if !b.appendsAllowed(view) {
		return -1, 0, kerr.NotLeaderForPartition
	}
	epoch := int32(view.Epoch)
	// Topics are created and deleted under appendMu: from here on the
	// partition stays, and p.next is the offset the next batch gets.
	if b.partition(topicName, part) != p {
		return -1, 0, kerr.UnknownTopicOrPartition
	}
	// Every batch is checked before any is written, as Kafka validates a
	// partition's whole record set: one refused batch refuses them all.
	if code := b.checkTransactionalLocked(topicName, part, infos, txnID); code != nil {
		return -1, 0, code
	}
	dups, code := b.checkSequencesLocked(tp{topicName, part}, infos)
	if code != nil {
		return -1, 0, code
	}
	for _, raw := range raws {
		if n := 2 + len(topicName) + 4 + len(raw); n > b.wal.MaxEntryBytes() { // see batchEntryPrefix
			b.log.Warn("produce refused: a batch is larger than a WAL entry may be", "topic", topicName, "partition", part,
				"bytes", n, "limit", b.wal.MaxEntryBytes())
			return -1, 0, kerr.MessageTooLarge
		}
	}
	firstBase := int64(-1)
	var lsn uint64
	for i, raw := range raws {
		if orig := dups[i]; orig != nil {
			// A retry: not written again, but answered like the
			// original, once the original's entry is durable and (for
			// acks=-1) committed. After a failover the original may be
			// here only because the old leader shipped it.
			if firstBase < 0 {
				firstBase = orig.baseOffset
			}
			lsn = max(lsn, orig.lsn)
			continue
		}
		p.mu.RLock()
		base := p.next
		p.mu.RUnlock()
		stampBatch(raw, base, epoch)
		l, err := b.appendBatchLocked(topicName, part, raw)
		if err != nil {
			// The batches before it are written: a storage failure
			// cannot be undone.
			b.log.Error("appending to the WAL failed", "topic", topicName, "partition", part, "error", err)
			if errors.Is(err, wal.ErrTooLarge) {
				return -1, lsn, kerr.MessageTooLarge
			}
			return -1, lsn, kerr.KafkaStorageError
		}
		lsn = l
		b.metrics.bytesIn.Add(float64(len(raw)))
		b.metrics.recordsIn.Add(float64(infos[i].numRecords))
		if firstBase < 0 {
			firstBase = base
		}
	}
	return firstBase, lsn, nil
}

// checkSequencesLocked applies the idempotent producer rules to the
// batches of one partition's record set, each batch checked as if the new
// batches before it were written already (Kafka's ProducerAppendInfo). It
// returns, by index, the original of each batch that is a retry (nil for a
// batch to write). Caller holds appendMu.
func (b *Broker) checkSequencesLocked(t tp, infos []batchInfo) ([]*seqEntry, *kerr.Error) {
	dups := make([]*seqEntry, len(infos))
	type producer struct {
		w        *seqWindow // a copy, with the set's new batches added
		epoch    int16
		hasEpoch bool
	}
	var seen map[int64]*producer
	for i, info := range infos {
		if info.producerID < 0 {
			continue
		}
		pr := seen[info.producerID]
		if pr == nil {
			pr = &producer{}
			if w := b.producers[producerKey{info.producerID, t}]; w != nil {
				c := *w
				pr.w = &c
			}
			pr.epoch, pr.hasEpoch = b.pidEpochs[info.producerID]
			if seen == nil {
				seen = make(map[int64]*producer)
			}
			seen[info.producerID] = pr
		}
		orig, dup, code := checkSequence(pr.w, pr.epoch, pr.hasEpoch, info)
		if code != nil {
			return nil, code
		}
		if dup {
			if orig.lsn == 0 {
				// A repeat of a batch earlier in this set: as in Kafka,
				// retries are recognised against what is written only.
				return nil, kerr.OutOfOrderSequenceNumber
			}
			dups[i] = &orig
			continue
		}
		// What applyBatchLocked will record once the batch is written.
		if pr.w == nil || pr.w.epoch != info.producerEpoch {
			pr.w = &seqWindow{epoch: info.producerEpoch}
		}
		pr.w.add(seqEntry{firstSeq: info.baseSequence, lastSeq: info.lastSequence()})
		if !pr.hasEpoch || pr.epoch < info.producerEpoch {
			pr.epoch, pr.hasEpoch = info.producerEpoch, true
		}
	}
	return dups, nil
}

// checkSequence applies the idempotent producer rules to one batch, given
// the producer's window on the partition (nil if none) and its latest
// epoch (if known). For a retry it returns the original batch.
func checkSequence(w *seqWindow, epoch int16, hasEpoch bool, info batchInfo) (seqEntry, bool, *kerr.Error) {
	if hasEpoch && info.producerEpoch < epoch {
		return seqEntry{}, false, kerr.InvalidProducerEpoch
	}
	if info.baseSequence < 0 {
		return seqEntry{}, false, kerr.InvalidRecord
	}
	if w == nil {
		// No state for this producer on this partition: it never wrote
		// here, or its batches were in WAL segments that retention
		// deleted before a restart. Kafka accepts any sequence then
		// (KIP-360); the next batches are checked against this one.
		return seqEntry{}, false, nil
	}
	if w.epoch != info.producerEpoch {
		if info.baseSequence != 0 {
			return seqEntry{}, false, kerr.OutOfOrderSequenceNumber
		}
		return seqEntry{}, false, nil
	}
	if orig, dup := w.duplicate(info.baseSequence, info.lastSequence()); dup {
		return orig, true, nil
	}
	if want := int32((int64(w.lastSeq()) + 1) % (1 << 31)); info.baseSequence != want {
		return seqEntry{}, false, kerr.OutOfOrderSequenceNumber
	}
	return seqEntry{}, false, nil
}

// checkTransactionalLocked checks a partition's batches against the
// transaction coordinator: transactional batches only with the request's
// transactional id, from its current producer id and epoch, into a
// partition added to its ongoing transaction (else the partition could
// hold records of a transaction that never ends). Caller holds appendMu.
func (b *Broker) checkTransactionalLocked(topicName string, part int32, infos []batchInfo, txnID *string) *kerr.Error {
	for _, info := range infos {
		if !info.transactional() {
			continue
		}
		if txnID == nil {
			return kerr.InvalidTxnState // transactional records need the request's transactional id
		}
		s := b.txns[*txnID]
		if code := txnError(s, info.producerID, info.producerEpoch, kerr.InvalidProducerEpoch); code != nil {
			if code == kerr.InvalidProducerEpoch && s != nil && info.producerEpoch > s.Epoch {
				return kerr.InvalidTxnState
			}
			return code
		}
		if s.State != txnOngoing || !s.hasPartition(topicName, part) {
			return kerr.InvalidTxnState
		}
	}
	return nil
}

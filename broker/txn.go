package broker

// Kafka transactions (KIP-98): the transaction coordinator and the
// partitions' view of transactions.
//
// The leader is the transaction coordinator for every transactional id, as
// it is the group coordinator (FindCoordinator names it for both). The
// coordinator's state is one txnState per transactional id; every change
// is a WAL entry (TypeTransaction) holding the id's whole new state, so
// every replica, a restarted broker and a promoted follower hold the same
// state (Kafka's __transaction_state, replayed). A transaction ends in
// three steps, all appended under appendMu:
//
//  1. a prepare_commit or prepare_abort state,
//  2. a commit or abort marker (a control record batch, as Kafka writes it)
//     on every partition where the producer wrote in the transaction,
//  3. a complete_commit or complete_abort state, which for a commit also
//     carries the transaction's consumer offsets (TxnOffsetCommit) into
//     the groups.
//
// If the leader dies between 1 and 3, whichever node leads next finds the
// prepared state and writes the missing markers and the completion
// (txnJanitor): the outcome the client was told can only be the prepared
// one. The janitor also aborts transactions that outlive their timeout,
// bumping the producer epoch so that the stale producer is fenced, as
// Kafka's coordinator does.
//
// Partitions learn of transactions from the record batches themselves, so
// this state is rebuilt from the WAL like the offset index: a
// transactional batch opens its producer's transaction on the partition (at
// its base offset) and a marker closes it; an abort adds the range to the
// partition's aborted list. The last stable offset (LSO) is the first
// offset of the oldest open transaction, or the high watermark: consumers
// with isolation.level=read_committed read up to it, and get the aborted
// ranges in their answer so that they drop those records.

import (
	"encoding/binary"
	"hash/crc32"
	"sort"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/tandem-io/tandem/broker/group"
	"github.com/tandem-io/tandem/broker/wal"
)

// Transaction states, as Kafka names them.
const (
	txnEmpty          = "empty"
	txnOngoing        = "ongoing"
	txnPrepareCommit  = "prepare_commit"
	txnPrepareAbort   = "prepare_abort"
	txnCompleteCommit = "complete_commit"
	txnCompleteAbort  = "complete_abort"
	// txnDead is written for a transactional id that expired
	// (TransactionalIDExpiration): applying it forgets the id.
	txnDead = "dead"
)

// maxProducerEpoch is the last epoch handed out before a producer gets a
// new id (Kafka keeps one epoch spare).
const maxProducerEpoch = 32766

// txnState is one transactional id's coordinator state, and the payload of
// a TypeTransaction entry (JSON).
type txnState struct {
	ID        string `json:"id"`
	PID       int64  `json:"pid"`
	Epoch     int16  `json:"epoch"`
	TimeoutMs int32  `json:"timeout_ms"`
	State     string `json:"state"`
	// Partitions added to the ongoing transaction (AddPartitionsToTxn).
	Partitions []txnPartition `json:"partitions,omitempty"`
	// Groups added to it (AddOffsetsToTxn).
	Groups []string `json:"groups,omitempty"`
	// Offsets are the transaction's consumer offsets by group
	// (TxnOffsetCommit): pending while the transaction is open, applied to
	// the groups by the complete_commit entry that carries them.
	Offsets map[string][]offsetCommitValue `json:"offsets,omitempty"`
	// LastEpoch is the epoch before the current one when the current one
	// came from a bump its own producer may claim (KIP-588): its own
	// InitProducerId (whose answer may have been lost) or the
	// coordinator's abort of its expired transaction. -1 (or absent) when
	// another producer of the id took over: then the old epoch is fenced.
	LastEpoch *int16 `json:"last_epoch,omitempty"`
	// StartMs is when the transaction began (the leader's clock), for its
	// timeout.
	StartMs int64 `json:"start_ms,omitempty"`
	// NextPID, when set, is the next free producer id after this entry
	// (a new id was handed out).
	NextPID int64 `json:"next_pid,omitempty"`
	// UpdatedMs is when the leader wrote this state (its clock): an id
	// with no transaction open expires TransactionalIDExpiration after it.
	UpdatedMs int64 `json:"updated_ms,omitempty"`
}

type txnPartition struct {
	Topic     string `json:"t"`
	Partition int32  `json:"p"`
}

func (s *txnState) clone() *txnState {
	c := *s
	c.Partitions = append([]txnPartition(nil), s.Partitions...)
	c.Groups = append([]string(nil), s.Groups...)
	if s.Offsets != nil {
		c.Offsets = make(map[string][]offsetCommitValue, len(s.Offsets))
		for g, o := range s.Offsets {
			c.Offsets[g] = append([]offsetCommitValue(nil), o...)
		}
	}
	return &c
}

func (s *txnState) hasPartition(t string, p int32) bool {
	for _, x := range s.Partitions {
		if x.Topic == t && x.Partition == p {
			return true
		}
	}
	return false
}

func (s *txnState) hasGroup(g string) bool {
	for _, x := range s.Groups {
		if x == g {
			return true
		}
	}
	return false
}

// begin turns an empty or completed state into an ongoing
// transaction starting now.
func (s *txnState) begin(now time.Time) {
	if s.State != txnOngoing {
		s.State = txnOngoing
		s.Partitions, s.Groups, s.Offsets = nil, nil, nil
		s.StartMs = now.UnixMilli()
	}
}

// applyTxnLocked folds a TypeTransaction entry into the coordinator state.
// Caller holds appendMu.
func (b *Broker) applyTxnLocked(e wal.Entry) error {
	var s txnState
	if err := decodeJSON(e, &s); err != nil {
		return err
	}
	if s.State == txnCompleteCommit {
		for g, offs := range s.Offsets {
			b.groups.Restore(g, groupOffsets(offs))
		}
	}
	if s.State == txnCompleteCommit || s.State == txnCompleteAbort {
		s.Offsets = nil // applied or dropped
	}
	if s.State == txnDead {
		delete(b.txns, s.ID)
		return nil
	}
	b.txns[s.ID] = &s
	if ep, ok := b.pidEpochs[s.PID]; !ok || ep < s.Epoch {
		b.pidEpochs[s.PID] = s.Epoch
	}
	b.notePIDIdle(s.PID, time.Now())
	if s.NextPID > b.nextPID {
		b.nextPID = s.NextPID
	}
	if s.PID >= b.nextPID {
		b.nextPID = s.PID + 1
	}
	return nil
}

func groupOffsets(vs []offsetCommitValue) []group.Offset {
	offs := make([]group.Offset, len(vs))
	for i, v := range vs {
		offs[i] = group.Offset{Topic: v.Topic, Partition: v.Partition, Offset: v.Offset,
			LeaderEpoch: v.LeaderEpoch, Metadata: v.Metadata, CommitTimeMs: v.CommitTime}
	}
	return offs
}

// appendTxnLocked appends s as the id's new state, stamped with the time.
// Caller holds appendMu.
func (b *Broker) appendTxnLocked(s *txnState) (uint64, error) {
	s.UpdatedMs = time.Now().UnixMilli()
	return b.appendLocked(wal.TypeTransaction, encodeJSON(s))
}

// endTxnLocked ends s's transaction (commit or abort) at the given producer
// epoch: the prepared state, a marker on every partition where the
// producer has an open transaction, and the completed state. It returns
// the last LSN written. Caller holds appendMu.
func (b *Broker) endTxnLocked(s *txnState, commit bool, epoch int16) (uint64, error) {
	prep := s.clone()
	prep.Epoch = epoch
	prep.NextPID = 0
	prep.State = txnPrepareAbort
	if commit {
		prep.State = txnPrepareCommit
	}
	if _, err := b.appendTxnLocked(prep); err != nil {
		return 0, err
	}
	return b.completeTxnLocked(prep)
}

// completeTxnLocked writes the markers and the completed state of a
// prepared transaction. Markers go to the partitions where the producer's
// transaction is still open, so completing a transaction that a former
// leader half completed writes only what is missing. Caller holds
// appendMu.
func (b *Broker) completeTxnLocked(prep *txnState) (uint64, error) {
	commit := prep.State == txnPrepareCommit
	view := b.clusterView()
	var lsn uint64
	for _, tpn := range prep.Partitions {
		p := b.partition(tpn.Topic, tpn.Partition)
		if p == nil {
			continue // deleted meanwhile
		}
		p.mu.RLock()
		open := p.unmarkedLocked(prep.PID) >= 0
		base := p.next
		p.mu.RUnlock()
		if !open {
			continue
		}
		raw := controlBatch(prep.PID, prep.Epoch, commit, time.Now().UnixMilli())
		stampBatch(raw, base, int32(view.Epoch))
		l, err := b.appendBatchLocked(tpn.Topic, tpn.Partition, raw)
		if err != nil {
			return 0, err
		}
		lsn = l
	}
	done := prep.clone()
	done.Partitions, done.Groups = nil, nil // as Kafka: a completed transaction holds no partitions
	done.State = txnCompleteAbort
	if commit {
		done.State = txnCompleteCommit
	}
	if !commit {
		done.Offsets = nil
	}
	l, err := b.appendTxnLocked(done)
	if err != nil {
		return 0, err
	}
	if commit {
		b.metrics.transactions.WithLabelValues("commit").Inc()
	} else {
		b.metrics.transactions.WithLabelValues("abort").Inc()
	}
	return max(lsn, l), nil
}

// Control records (Kafka's EndTransactionMarker): key = version int16 (0),
// type int16 (0 abort, 1 commit); value = version int16 (0), coordinator
// epoch int32.
const (
	markerAbort  = 0
	markerCommit = 1
	// controlRecordLen is the size of the one record of a marker batch
	// that controlBatch writes: its length varint and 16 bytes.
	controlRecordLen = 17
)

// controlBatch builds a commit or abort marker batch of one record for a
// producer: transactional and control attributes, no sequence, its CRC
// set. The caller stamps its base offset and leader epoch.
func controlBatch(pid int64, epoch int16, commit bool, ts int64) []byte {
	typ := int16(markerAbort)
	if commit {
		typ = markerCommit
	}
	raw := make([]byte, batchHeaderLen, batchHeaderLen+controlRecordLen)
	binary.BigEndian.PutUint32(raw[8:12], uint32(batchHeaderLen+controlRecordLen-12))
	raw[16] = 2                                           // magic
	binary.BigEndian.PutUint16(raw[21:23], 0x10|0x20)     // transactional, control
	binary.BigEndian.PutUint32(raw[23:27], 0)             // last offset delta
	binary.BigEndian.PutUint64(raw[27:35], uint64(ts))    // first timestamp
	binary.BigEndian.PutUint64(raw[35:43], uint64(ts))    // max timestamp
	binary.BigEndian.PutUint64(raw[43:51], uint64(pid))   // producer id
	binary.BigEndian.PutUint16(raw[51:53], uint16(epoch)) // producer epoch
	binary.BigEndian.PutUint32(raw[53:57], 0xffffffff)    // base sequence -1
	binary.BigEndian.PutUint32(raw[57:61], 1)             // one record
	// The record: length 16 (zigzag 32), attributes, timestamp delta and
	// offset delta 0, key of 4 bytes, value of 6 bytes, no headers.
	raw = append(raw, 32, 0, 0, 0, 8, 0, 0, byte(typ>>8), byte(typ), 12, 0, 0, 0, 0, 0, 0, 0)
	binary.BigEndian.PutUint32(raw[17:21], crc32.Checksum(raw[batchCRCStart:], castagnoli))
	return raw
}

// markerType returns the type of a control batch's marker (markerAbort or
// markerCommit) from the batch bytes (at least the first record), or false
// when the record is not a marker.
func markerType(raw []byte) (int16, bool) {
	if len(raw) < batchHeaderLen+1 {
		return 0, false
	}
	rec := raw[batchHeaderLen:]
	// length, attributes (1 byte), timestamp delta, offset delta, key length
	_, n := binary.Varint(rec)
	if n <= 0 || len(rec) < n+1 {
		return 0, false
	}
	rec = rec[n+1:]
	for range 2 {
		_, n = binary.Varint(rec)
		if n <= 0 {
			return 0, false
		}
		rec = rec[n:]
	}
	klen, n := binary.Varint(rec)
	if n <= 0 || klen < 4 || len(rec) < n+4 {
		return 0, false
	}
	k := rec[n:]
	return int16(binary.BigEndian.Uint16(k[2:4])), true
}

// abortedTxn is an aborted transaction's range on one partition: its
// records from first up to the marker at last.
type abortedTxn struct {
	pid   int64
	first int64
	last  int64
}

// openTxn is a transaction of one producer on one partition: from its
// first record until its marker is committed. Until then it holds the last
// stable offset at its first record, even once the marker is written: the
// marker, and the decision before it, may still be lost with a leader that
// dies, and the transaction then aborted by the next one, so that a
// consumer must not have read its records as committed.
type openTxn struct {
	pid    int64
	first  int64
	marker int64 // offset of its marker, -1 while it has none
}

// unmarkedLocked returns the index of pid's transaction without a marker,
// or -1. Caller holds p.mu.
func (p *partition) unmarkedLocked(pid int64) int {
	for i, t := range p.openTxns {
		if t.pid == pid && t.marker < 0 {
			return i
		}
	}
	return -1
}

// applyTxnBatchLocked updates a partition's transactions for a
// transactional batch. Caller holds p.mu.
func (p *partition) applyTxnBatchLocked(info batchInfo, raw []byte) {
	if !info.transactional() {
		return
	}
	i := p.unmarkedLocked(info.producerID)
	if info.control() {
		if i < 0 {
			return // no record of this transaction is stored here
		}
		p.openTxns[i].marker = info.baseOffset
		if t, ok := markerType(raw); ok && t == markerAbort {
			p.aborted = append(p.aborted, abortedTxn{pid: info.producerID, first: p.openTxns[i].first, last: info.baseOffset})
		}
		p.dropEndedTxnsLocked()
		return
	}
	if i < 0 {
		p.openTxns = append(p.openTxns, openTxn{pid: info.producerID, first: info.baseOffset, marker: -1})
	}
}

// dropEndedTxnsLocked forgets the transactions whose marker is committed
// (below the high watermark). Caller holds p.mu.
func (p *partition) dropEndedTxnsLocked() {
	kept := p.openTxns[:0]
	for _, t := range p.openTxns {
		if t.marker < 0 || t.marker >= p.hw {
			kept = append(kept, t)
		}
	}
	clear(p.openTxns[len(kept):])
	p.openTxns = kept
}

// lsoLocked is the partition's last stable offset: the first offset of its
// oldest open transaction, at most the high watermark. Caller holds p.mu.
func (p *partition) lsoLocked() int64 {
	lso := p.hw
	for _, t := range p.openTxns {
		if t.marker < 0 || t.marker >= p.hw {
			lso = min(lso, t.first)
		}
	}
	return max(lso, p.logStart)
}

// pruneAbortedLocked forgets aborted ranges below the log start offset.
// Caller holds p.mu.
func (p *partition) pruneAbortedLocked() {
	i := sort.Search(len(p.aborted), func(i int) bool { return p.aborted[i].last >= p.logStart })
	if i > 0 {
		p.aborted = append(p.aborted[:0:0], p.aborted[i:]...)
	}
}

// abortedBetween lists the aborted transactions with records in [from,
// to), for a read_committed Fetch.
func (p *partition) abortedBetween(from, to int64) []abortedTxn {
	p.mu.RLock()
	defer p.mu.RUnlock()
	var out []abortedTxn
	i := sort.Search(len(p.aborted), func(i int) bool { return p.aborted[i].last >= from })
	for ; i < len(p.aborted); i++ {
		if a := p.aborted[i]; a.first < to {
			out = append(out, a)
		}
	}
	return out
}

// txnJanitor runs on every broker and acts while it leads: it completes
// transactions that a former leader prepared but did not complete, and
// aborts those that outlived their timeout.
func (b *Broker) txnJanitor() {
	t := time.NewTicker(b.cfg.TransactionCheckInterval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			if b.isLeader() {
				b.tidyTransactions(time.Now())
			}
		case <-b.ctx.Done():
			return
		}
	}
}

// tidyTransactions completes prepared transactions, aborts expired ones
// and forgets transactional ids idle for TransactionalIDExpiration.
func (b *Broker) tidyTransactions(now time.Time) {
	b.appendMu.Lock()
	defer b.appendMu.Unlock()
	ids := make([]string, 0, len(b.txns))
	for id := range b.txns {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		s := b.txns[id]
		var err error
		switch {
		case s.State == txnPrepareCommit || s.State == txnPrepareAbort:
			b.log.Info("completing a transaction that a former leader prepared", "transactional_id", id, "state", s.State)
			_, err = b.completeTxnLocked(s.clone())
		case s.State == txnOngoing && now.UnixMilli()-s.StartMs > int64(s.TimeoutMs):
			// Kafka aborts with the epoch bumped, which fences the
			// producer that let it expire until it asks for the new
			// epoch with InitProducerId (KIP-588: LastEpoch).
			epoch := s.Epoch
			if epoch < maxProducerEpoch {
				epoch++
			}
			last := s.Epoch
			s = s.clone()
			s.LastEpoch = &last
			b.log.Warn("aborting a transaction past its timeout", "transactional_id", id, "producer_id", s.PID,
				"timeout", time.Duration(s.TimeoutMs)*time.Millisecond)
			b.metrics.transactions.WithLabelValues("timeout").Inc()
			_, err = b.endTxnLocked(s, false, epoch)
		case s.State != txnOngoing && s.UpdatedMs > 0 &&
			now.Sub(time.UnixMilli(s.UpdatedMs)) > b.cfg.TransactionalIDExpiration:
			// Kafka's transactional.id.expiration.ms: applications that
			// make up a new id for every run (or every checkpoint) would
			// otherwise leave their ids here forever.
			b.log.Info("forgetting an idle transactional id", "transactional_id", id, "producer_id", s.PID,
				"idle", now.Sub(time.UnixMilli(s.UpdatedMs)).Round(time.Second))
			_, err = b.appendTxnLocked(&txnState{ID: id, PID: s.PID, Epoch: s.Epoch, State: txnDead})
		}
		if err != nil {
			b.log.Warn("tidying transactions failed; will retry", "transactional_id", id, "error", err)
			return
		}
	}
}

// txnError checks that a request's producer id and epoch are the
// transactional id's current ones; a stale epoch gets fenced.
func txnError(s *txnState, pid int64, epoch int16, fenced *kerr.Error) *kerr.Error {
	switch {
	case s == nil || s.PID != pid:
		return kerr.InvalidProducerIDMapping
	case epoch != s.Epoch:
		return fenced
	}
	return nil
}

// fencedError is what a transaction coordinator request of the given
// version gets for a stale producer epoch: PRODUCER_FENCED, which clients
// take as fatal, since KIP-588 (Kafka 2.7) from version since on;
// INVALID_PRODUCER_EPOCH before it.
func fencedError(version, since int16) *kerr.Error {
	if version >= since {
		return kerr.ProducerFenced
	}
	return kerr.InvalidProducerEpoch
}

// openTransactions counts the transactions not yet ended and how long the
// oldest of them has run (for the metrics).
func (b *Broker) openTransactions(now time.Time) (int, time.Duration) {
	b.appendMu.Lock()
	defer b.appendMu.Unlock()
	n, oldest := 0, time.Duration(0)
	for _, s := range b.txns {
		switch s.State {
		case txnOngoing, txnPrepareCommit, txnPrepareAbort:
			n++
			oldest = max(oldest, now.Sub(time.UnixMilli(s.StartMs)))
		}
	}
	return n, oldest
}

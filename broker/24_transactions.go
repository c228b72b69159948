package broker

// The transaction APIs a producer calls on its transaction coordinator,
// the leader (txn.go):
//
//   - AddPartitionsToTxn (key 24), v0-v3: adds partitions to the ongoing
//     transaction (starting it), before the producer writes to them.
//   - AddOffsetsToTxn (key 25), v0-v3: adds a consumer group, before
//     TxnOffsetCommit.
//   - EndTxn (key 26), v0-v3: commits or aborts.
//   - TxnOffsetCommit (key 28), v0-v3: consumer offsets that take effect
//     only if the transaction commits (exactly-once consume-transform-
//     produce).
//
// Each change is a WAL entry answered once committed. Followers answer
// NOT_COORDINATOR, and clients ask FindCoordinator again. The producer id
// and epoch must be the transactional id's current ones
// (INVALID_PRODUCER_ID_MAPPING; PRODUCER_FENCED, INVALID_PRODUCER_EPOCH
// before KIP-588's versions: a newer producer fenced this one, or the
// coordinator aborted its expired transaction); a transaction in the
// middle of completing answers CONCURRENT_TRANSACTIONS, which clients
// retry.

import (
	"context"
	"errors"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func init() {
	register(kmsg.AddPartitionsToTxn.Int16(), 0, 3, handleAddPartitionsToTxn)
	register(kmsg.AddOffsetsToTxn.Int16(), 0, 3, handleAddOffsetsToTxn)
	register(kmsg.EndTxn.Int16(), 0, 3, handleEndTxn)
	register(kmsg.TxnOffsetCommit.Int16(), 0, 3, handleTxnOffsetCommit)
}

// txnCheckLocked finds a transactional id's state for a request of its
// producer. Caller holds appendMu.
func (b *Broker) txnCheckLocked(tid string, pid int64, epoch int16, fenced *kerr.Error) (*txnState, *kerr.Error) {
	s := b.txns[tid]
	if code := txnError(s, pid, epoch, fenced); code != nil {
		return nil, code
	}
	if s.State == txnPrepareCommit || s.State == txnPrepareAbort {
		return nil, kerr.ConcurrentTransactions
	}
	return s, nil
}

// waitTxn waits until the entry at lsn is committed, and maps a failure to
// the answer clients retry.
func (b *Broker) waitTxn(rc *reqCtx, lsn uint64, gen uint64) *kerr.Error {
	ctx, cancel := context.WithTimeout(rc.ctx, 30*time.Second)
	defer cancel()
	if err := b.wal.WaitDurable(ctx, lsn); err != nil {
		return kerr.RequestTimedOut
	}
	if err := b.waitCommit(ctx, lsn, gen); err != nil {
		// Leadership lost (fenced) or the in-sync replicas did not
		// confirm it in time: the client finds the coordinator again.
		return kerr.NotCoordinator
	}
	return nil
}

func handleAddPartitionsToTxn(b *Broker, rc *reqCtx, req kmsg.Request) func() kmsg.Response {
	r := req.(*kmsg.AddPartitionsToTxnRequest)
	resp := r.ResponseKind().(*kmsg.AddPartitionsToTxnResponse)
	codes := make([][]*kerr.Error, len(r.Topics))
	for i, t := range r.Topics {
		codes[i] = make([]*kerr.Error, len(t.Partitions))
	}
	answer := func(all *kerr.Error) kmsg.Response {
		for i, t := range r.Topics {
			rt := kmsg.NewAddPartitionsToTxnResponseTopic()
			rt.Topic = t.Topic
			for j, p := range t.Partitions {
				rp := kmsg.NewAddPartitionsToTxnResponseTopicPartition()
				rp.Partition = p
				if c := codes[i][j]; c != nil {
					rp.ErrorCode = c.Code
				} else if all != nil {
					rp.ErrorCode = all.Code
				}
				rt.Partitions = append(rt.Partitions, rp)
			}
			resp.Topics = append(resp.Topics, rt)
		}
		return resp
	}
	if !b.allowed(rc, kmsg.ACLOperationWrite, kmsg.ACLResourceTypeTransactionalId, r.TransactionalID) {
		return now(answer(kerr.TransactionalIDAuthorizationFailed))
	}
	if !b.isLeader() {
		return now(answer(kerr.NotCoordinator))
	}
	failed := false
	for i, t := range r.Topics {
		mayWrite := b.allowedTopic(rc, kmsg.ACLOperationWrite, t.Topic)
		for j, p := range t.Partitions {
			switch {
			case !mayWrite:
				codes[i][j], failed = kerr.TopicAuthorizationFailed, true
			case b.partition(t.Topic, p) == nil:
				codes[i][j], failed = kerr.UnknownTopicOrPartition, true
			}
		}
	}
	if failed {
		return now(answer(kerr.OperationNotAttempted))
	}
	gen := b.commitGeneration()
	b.appendMu.Lock()
	s, code := b.txnCheckLocked(r.TransactionalID, r.ProducerID, r.ProducerEpoch, fencedError(r.Version, 2))
	if code != nil {
		b.appendMu.Unlock()
		return now(answer(code))
	}
	ns := s.clone()
	ns.NextPID = 0
	ns.begin(time.Now())
	changed := s.State != txnOngoing
	for _, t := range r.Topics {
		for _, p := range t.Partitions {
			if !ns.hasPartition(t.Topic, p) {
				ns.Partitions = append(ns.Partitions, txnPartition{Topic: t.Topic, Partition: p})
				changed = true
			}
		}
	}
	if !changed {
		b.appendMu.Unlock()
		return now(answer(nil))
	}
	lsn, err := b.appendTxnLocked(ns)
	b.appendMu.Unlock()
	if err != nil {
		return now(answer(kerr.NotCoordinator))
	}
	return func() kmsg.Response { return answer(b.waitTxn(rc, lsn, gen)) }
}

func handleAddOffsetsToTxn(b *Broker, rc *reqCtx, req kmsg.Request) func() kmsg.Response {
	r := req.(*kmsg.AddOffsetsToTxnRequest)
	resp := r.ResponseKind().(*kmsg.AddOffsetsToTxnResponse)
	fail := func(code *kerr.Error) func() kmsg.Response {
		resp.ErrorCode = code.Code
		return now(resp)
	}
	switch {
	case !b.allowed(rc, kmsg.ACLOperationWrite, kmsg.ACLResourceTypeTransactionalId, r.TransactionalID):
		return fail(kerr.TransactionalIDAuthorizationFailed)
	case !b.allowedGroup(rc, kmsg.ACLOperationRead, r.Group):
		return fail(kerr.GroupAuthorizationFailed)
	case !b.isLeader():
		return fail(kerr.NotCoordinator)
	}
	gen := b.commitGeneration()
	b.appendMu.Lock()
	s, code := b.txnCheckLocked(r.TransactionalID, r.ProducerID, r.ProducerEpoch, fencedError(r.Version, 2))
	if code != nil {
		b.appendMu.Unlock()
		return fail(code)
	}
	if s.State == txnOngoing && s.hasGroup(r.Group) {
		b.appendMu.Unlock()
		return now(resp)
	}
	ns := s.clone()
	ns.NextPID = 0
	ns.begin(time.Now())
	if !ns.hasGroup(r.Group) {
		ns.Groups = append(ns.Groups, r.Group)
	}
	lsn, err := b.appendTxnLocked(ns)
	b.appendMu.Unlock()
	if err != nil {
		return fail(kerr.NotCoordinator)
	}
	return func() kmsg.Response {
		if code := b.waitTxn(rc, lsn, gen); code != nil {
			resp.ErrorCode = code.Code
		}
		return resp
	}
}

func handleEndTxn(b *Broker, rc *reqCtx, req kmsg.Request) func() kmsg.Response {
	r := req.(*kmsg.EndTxnRequest)
	resp := r.ResponseKind().(*kmsg.EndTxnResponse)
	fail := func(code *kerr.Error) func() kmsg.Response {
		resp.ErrorCode = code.Code
		return now(resp)
	}
	switch {
	case !b.allowed(rc, kmsg.ACLOperationWrite, kmsg.ACLResourceTypeTransactionalId, r.TransactionalID):
		return fail(kerr.TransactionalIDAuthorizationFailed)
	case !b.isLeader():
		return fail(kerr.NotCoordinator)
	}
	gen := b.commitGeneration()
	b.appendMu.Lock()
	s, code := b.txnCheckLocked(r.TransactionalID, r.ProducerID, r.ProducerEpoch, fencedError(r.Version, 2))
	if code != nil {
		b.appendMu.Unlock()
		return fail(code)
	}
	var lsn uint64
	var err error
	switch {
	case s.State == txnOngoing:
		lsn, err = b.endTxnLocked(s, r.Commit, s.Epoch)
	case s.State == txnCompleteCommit && r.Commit, s.State == txnCompleteAbort && !r.Commit:
		// A retry of the EndTxn that completed it: the same answer, once
		// the completion is committed.
		lsn = b.lastApplied
	default:
		b.appendMu.Unlock()
		return fail(kerr.InvalidTxnState)
	}
	b.appendMu.Unlock()
	if errors.Is(err, ErrNotLeader) {
		// The node stepped down since the check above (a failover): the
		// client ends the transaction at the new coordinator.
		b.log.Warn("ending a transaction failed: this node no longer leads (the client retries at the new coordinator)",
			"transactional_id", r.TransactionalID)
		return fail(kerr.NotCoordinator)
	}
	if err != nil {
		b.log.Error("ending a transaction failed", "transactional_id", r.TransactionalID, "error", err)
		return fail(kerr.NotCoordinator)
	}
	return func() kmsg.Response {
		if code := b.waitTxn(rc, lsn, gen); code != nil {
			resp.ErrorCode = code.Code
		}
		return resp
	}
}

func handleTxnOffsetCommit(b *Broker, rc *reqCtx, req kmsg.Request) func() kmsg.Response {
	r := req.(*kmsg.TxnOffsetCommitRequest)
	resp := r.ResponseKind().(*kmsg.TxnOffsetCommitResponse)
	codes := make([][]*kerr.Error, len(r.Topics))
	for i, t := range r.Topics {
		codes[i] = make([]*kerr.Error, len(t.Partitions))
	}
	answer := func(all *kerr.Error) kmsg.Response {
		for i, t := range r.Topics {
			rt := kmsg.NewTxnOffsetCommitResponseTopic()
			rt.Topic = t.Topic
			for j, p := range t.Partitions {
				rp := kmsg.NewTxnOffsetCommitResponseTopicPartition()
				rp.Partition = p.Partition
				if c := codes[i][j]; c != nil {
					rp.ErrorCode = c.Code
				} else if all != nil {
					rp.ErrorCode = all.Code
				}
				rt.Partitions = append(rt.Partitions, rp)
			}
			resp.Topics = append(resp.Topics, rt)
		}
		return resp
	}
	switch {
	case !b.allowed(rc, kmsg.ACLOperationWrite, kmsg.ACLResourceTypeTransactionalId, r.TransactionalID):
		return now(answer(kerr.TransactionalIDAuthorizationFailed))
	case !b.allowedGroup(rc, kmsg.ACLOperationRead, r.Group):
		return now(answer(kerr.GroupAuthorizationFailed))
	case !b.isLeader():
		return now(answer(kerr.NotCoordinator))
	}
	var offs []offsetCommitValue
	nowMs := time.Now().UnixMilli()
	for i, t := range r.Topics {
		mayRead := b.allowedTopic(rc, kmsg.ACLOperationRead, t.Topic)
		for j, p := range t.Partitions {
			switch {
			case !mayRead:
				codes[i][j] = kerr.TopicAuthorizationFailed
			case b.partition(t.Topic, p.Partition) == nil:
				codes[i][j] = kerr.UnknownTopicOrPartition
			default:
				v := offsetCommitValue{Topic: t.Topic, Partition: p.Partition, Offset: p.Offset, LeaderEpoch: p.LeaderEpoch, CommitTime: nowMs}
				if r.Version < 2 {
					v.LeaderEpoch = -1
				}
				if p.Metadata != nil {
					v.Metadata = *p.Metadata
				}
				offs = append(offs, v)
			}
		}
	}
	if r.Version >= 3 && r.Generation >= 0 {
		// KIP-447: the producer commits for a member of the group's
		// current generation.
		if c := b.groups.CheckTxnCommit(r.Group, r.Generation, r.MemberID, r.InstanceID); c != 0 {
			return now(answer(kerr.ErrorForCode(c).(*kerr.Error)))
		}
	}
	if len(offs) == 0 {
		return now(answer(nil))
	}
	gen := b.commitGeneration()
	b.appendMu.Lock()
	s, code := b.txnCheckLocked(r.TransactionalID, r.ProducerID, r.ProducerEpoch, fencedError(r.Version, 3))
	if code == nil && s.State != txnOngoing {
		code = kerr.InvalidTxnState // AddOffsetsToTxn comes first
	}
	if code != nil {
		b.appendMu.Unlock()
		return now(answer(code))
	}
	ns := s.clone()
	ns.NextPID = 0
	if !ns.hasGroup(r.Group) {
		ns.Groups = append(ns.Groups, r.Group)
	}
	if ns.Offsets == nil {
		ns.Offsets = map[string][]offsetCommitValue{}
	}
	merged := ns.Offsets[r.Group]
	for _, v := range offs {
		replaced := false
		for k := range merged {
			if merged[k].Topic == v.Topic && merged[k].Partition == v.Partition {
				merged[k], replaced = v, true
			}
		}
		if !replaced {
			merged = append(merged, v)
		}
	}
	ns.Offsets[r.Group] = merged
	lsn, err := b.appendTxnLocked(ns)
	b.appendMu.Unlock()
	if err != nil {
		return now(answer(kerr.NotCoordinator))
	}
	return func() kmsg.Response { return answer(b.waitTxn(rc, lsn, gen)) }
}

package broker

// InitProducerId (key 22), v0-v4.
//
// Hands out producer ids for idempotent producers. Each allocation is a WAL
// entry, so an id is never handed out twice, across restarts and failovers.
// A producer that presents its current id and epoch (KIP-360, v3+) gets the
// same id with the epoch bumped, and starts its sequences again at 0; at the
// last epoch (32766) it gets a new id instead, and so does one whose id
// this node no longer knows (idle state expires: producer_expiry.go).
//
// A retry of the last bump (the producer presents the epoch just before the
// one that bump handed out, because the answer was lost or was
// REQUEST_TIMED_OUT) gets the same id and epoch again, as Kafka's
// transaction coordinator answers a retry with its last producer epoch. The
// bump took effect when its entry was appended, so without this the
// producer could neither go on with its old epoch (fenced) nor get the new
// one. The retry appends the same entry again and waits for it like a
// bump, so its answer is committed too. Any other epoch is
// INVALID_PRODUCER_EPOCH.
//
// A follower forwards an idempotent producer's request to the leader and
// answers with the leader's answer (forwardInitProducerID).
//
// With a transactional id the leader, as the transaction coordinator
// (txn.go), hands out that id's producer id with its epoch bumped (a new id
// the first time), which fences every earlier producer of the id; an
// ongoing transaction of the id is aborted first. A transaction in the
// middle of completing answers CONCURRENT_TRANSACTIONS, which clients
// retry. A producer presenting its id and current epoch bumps it; one
// presenting the epoch before (the answer to its bump was lost, or the
// coordinator aborted its expired transaction with a bump) gets the
// current one, KIP-588; any other gets PRODUCER_FENCED.

import (
	"context"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tandem-io/tandem/broker/acl"
	"github.com/tandem-io/tandem/broker/wal"
)

func init() { register(kmsg.InitProducerID.Int16(), 0, 4, handleInitProducerID) }

func handleInitProducerID(b *Broker, rc *reqCtx, req kmsg.Request) func() kmsg.Response {
	r := req.(*kmsg.InitProducerIDRequest)
	resp := r.ResponseKind().(*kmsg.InitProducerIDResponse)
	resp.ProducerID = -1
	resp.ProducerEpoch = -1
	if r.TransactionalID != nil && *r.TransactionalID != "" {
		return b.initTransactionalProducer(rc, r, resp)
	}
	// An idempotent producer needs IDEMPOTENT_WRITE on the cluster, or
	// WRITE on some topic (Kafka 3.0, KIP-679).
	if b.authz != nil && !b.quietlyAllowed(rc, kmsg.ACLOperationIdempotentWrite, kmsg.ACLResourceTypeCluster, acl.ClusterName) &&
		!b.allowedAny(rc, kmsg.ACLOperationWrite, kmsg.ACLResourceTypeTopic) {
		b.denied(rc, kmsg.ACLOperationIdempotentWrite, kmsg.ACLResourceTypeCluster, acl.ClusterName)
		resp.ErrorCode = kerr.ClusterAuthorizationFailed.Code
		return now(resp)
	}
	if !b.isLeader() {
		return b.forwardInitProducerID(rc, r, resp)
	}
	gen := b.commitGeneration() // before appending: see waitCommit
	b.appendMu.Lock()
	pid, epoch := b.nextPID, int16(0)
	if r.ProducerID >= 0 {
		cur, ok := b.pidEpochs[r.ProducerID]
		switch {
		case ok && r.ProducerEpoch == cur && cur < 32766:
			pid, epoch = r.ProducerID, cur+1
		case ok && r.ProducerEpoch == cur:
			// Epochs exhausted: a new id (pid, epoch = nextPID, 0).
		case ok && r.ProducerEpoch == cur-1 && b.pidBumps[r.ProducerID] == cur:
			pid, epoch = r.ProducerID, cur // a retry of the last bump
		case !ok:
			// An id this node does not know: forgotten after
			// --producer-id-expiration (producer_expiry.go). A new id,
			// as Kafka hands any idempotent producer.
		default:
			b.appendMu.Unlock()
			resp.ErrorCode = kerr.InvalidProducerEpoch.Code
			return now(resp)
		}
	}
	next := b.nextPID
	if pid == b.nextPID {
		next = pid + 1
	}
	lsn, err := b.appendLocked(wal.TypeProducerID, encodeJSON(producerIDEntry{ProducerID: pid, Epoch: epoch, NextID: next}))
	b.appendMu.Unlock()
	if err != nil {
		b.log.Error("allocating a producer id failed", "error", err)
		resp.ErrorCode = kerr.KafkaStorageError.Code
		return now(resp)
	}
	return func() kmsg.Response {
		ctx, cancel := context.WithTimeout(rc.ctx, 30*time.Second)
		defer cancel()
		if err := b.wal.WaitDurable(ctx, lsn); err != nil {
			resp.ErrorCode = kerr.RequestTimedOut.Code
			return resp
		}
		if err := b.waitCommit(ctx, lsn, gen); err != nil {
			resp.ErrorCode = kerr.RequestTimedOut.Code
			return resp
		}
		resp.ProducerID, resp.ProducerEpoch = pid, epoch
		return resp
	}
}

// forwardInitProducerID answers an idempotent producer's InitProducerId on
// a follower with the leader's answer. In Kafka any broker hands out
// producer ids, and clients send this request to any broker (franz-go
// takes the next one in turn); here only the leader can, since every id is
// a WAL entry. Answering NOT_COORDINATOR instead made a new producer retry
// until it happened to pick the leader, and a few gave up within their
// delivery timeout (seen in Jepsen runs). With no leader known, or none
// reachable, the answer is still NOT_COORDINATOR, which clients retry.
func (b *Broker) forwardInitProducerID(rc *reqCtx, r *kmsg.InitProducerIDRequest, resp *kmsg.InitProducerIDResponse) func() kmsg.Response {
	return func() kmsg.Response {
		ctx, cancel := context.WithTimeout(rc.ctx, 10*time.Second)
		defer cancel()
		got, err := b.handToLeader(ctx, rc, r)
		if err != nil {
			b.log.Warn("could not hand InitProducerId to the leader; the client retries", "error", err)
			resp.ErrorCode = kerr.NotCoordinator.Code
			return resp
		}
		return got
	}
}

// initTransactionalProducer is InitProducerId for a transactional id.
func (b *Broker) initTransactionalProducer(rc *reqCtx, r *kmsg.InitProducerIDRequest, resp *kmsg.InitProducerIDResponse) func() kmsg.Response {
	tid := *r.TransactionalID
	if !b.allowed(rc, kmsg.ACLOperationWrite, kmsg.ACLResourceTypeTransactionalId, tid) {
		resp.ErrorCode = kerr.TransactionalIDAuthorizationFailed.Code
		return now(resp)
	}
	if !b.isLeader() {
		resp.ErrorCode = kerr.NotCoordinator.Code
		return now(resp)
	}
	if r.TransactionTimeoutMillis <= 0 || time.Duration(r.TransactionTimeoutMillis)*time.Millisecond > b.cfg.TransactionMaxTimeout {
		resp.ErrorCode = kerr.InvalidTransactionTimeout.Code
		return now(resp)
	}
	gen := b.commitGeneration() // before appending: see waitCommit
	b.appendMu.Lock()
	cur := b.txns[tid]
	var s *txnState
	claim := false // the producer claims the epoch bumped for it (KIP-588)
	if cur == nil {
		s = &txnState{ID: tid, PID: b.nextPID, State: txnEmpty, NextPID: b.nextPID + 1}
	} else {
		if cur.State == txnPrepareCommit || cur.State == txnPrepareAbort {
			b.appendMu.Unlock()
			resp.ErrorCode = kerr.ConcurrentTransactions.Code
			return now(resp)
		}
		if r.ProducerID >= 0 {
			// KIP-360 and KIP-588: a producer that presents its id and
			// epoch bumps its own epoch, or claims the one bumped for it
			// (its lost answer, or the abort of its expired
			// transaction); any other is fenced.
			switch {
			case r.ProducerID == cur.PID && r.ProducerEpoch == cur.Epoch:
			case r.ProducerID == cur.PID && cur.LastEpoch != nil && r.ProducerEpoch == *cur.LastEpoch:
				claim = true
			default:
				b.appendMu.Unlock()
				resp.ErrorCode = fencedError(r.Version, 4).Code
				return now(resp)
			}
		}
		s = cur.clone()
		s.NextPID = 0
	}
	if claim && cur.State != txnOngoing {
		// The epoch is the producer's already: answered as it stands,
		// once what made it is committed.
		lsn := b.lastApplied
		b.appendMu.Unlock()
		return b.answerProducerID(rc, resp, lsn, gen, cur.PID, cur.Epoch)
	}
	var lsn uint64
	var err error
	if cur != nil {
		epoch := cur.Epoch + 1
		if cur.State == txnOngoing {
			// The abort markers carry the new epoch: the old producer is
			// fenced from here on.
			b.log.Info("aborting the ongoing transaction of a re-initialised transactional id",
				"transactional_id", tid, "producer_id", cur.PID)
			if _, err = b.endTxnLocked(cur, false, min(epoch, maxProducerEpoch)); err != nil {
				b.appendMu.Unlock()
				b.log.Error("aborting a transaction failed", "transactional_id", tid, "error", err)
				resp.ErrorCode = kerr.KafkaStorageError.Code
				return now(resp)
			}
			s = b.txns[tid].clone()
			s.NextPID = 0
		}
		s.LastEpoch = nil // a new producer of the id: the old epochs are fenced
		if r.ProducerID >= 0 {
			last := epoch - 1 // its own bump: a retry may claim it
			s.LastEpoch = &last
		}
		if epoch > maxProducerEpoch {
			// Epochs exhausted: a new producer id.
			s.PID, epoch = b.nextPID, 0
			s.NextPID = b.nextPID + 1
			s.LastEpoch = nil
		}
		s.Epoch = epoch
	}
	s.State = txnEmpty
	s.TimeoutMs = r.TransactionTimeoutMillis
	s.Partitions, s.Groups, s.Offsets, s.StartMs = nil, nil, nil, 0
	lsn, err = b.appendTxnLocked(s)
	b.appendMu.Unlock()
	if err != nil {
		b.log.Error("initialising a transactional producer failed", "transactional_id", tid, "error", err)
		resp.ErrorCode = kerr.KafkaStorageError.Code
		return now(resp)
	}
	return b.answerProducerID(rc, resp, lsn, gen, s.PID, s.Epoch)
}

// answerProducerID answers with the producer id and epoch once the entry
// at lsn is committed.
func (b *Broker) answerProducerID(rc *reqCtx, resp *kmsg.InitProducerIDResponse, lsn, gen uint64, pid int64, epoch int16) func() kmsg.Response {
	return func() kmsg.Response {
		if code := b.waitTxn(rc, lsn, gen); code != nil {
			resp.ErrorCode = code.Code
			return resp
		}
		resp.ProducerID, resp.ProducerEpoch = pid, epoch
		return resp
	}
}

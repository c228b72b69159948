package broker

// InitProducerId (key 22), v0-v4.
//
// Hands out producer ids for idempotent producers. Each allocation is a WAL
// entry, so an id is never handed out twice, across restarts and failovers.
// A producer that presents its current id and epoch (KIP-360, v3+) gets the
// same id with the epoch bumped, and starts its sequences again at 0; at the
// last epoch (32766) it gets a new id instead.
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
// Transactional ids are refused: transactions are not supported.

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
	if r.TransactionalID != nil {
		resp.ErrorCode = kerr.TransactionalIDAuthorizationFailed.Code
		return now(resp)
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
		resp.ErrorCode = kerr.NotCoordinator.Code
		return now(resp)
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

package broker

// The transaction APIs operators call (Kafka's kafka-transactions.sh,
// kadm's ListTransactions and DescribeTransactions):
//
//   - DescribeTransactions (key 65), v0: state, timeout, start time,
//     producer id and epoch, and partitions of each transactional id.
//   - ListTransactions (key 66), v0-v1: the transactional ids, filtered by
//     state, producer id and (v1) how long they have been running.
//
// The leader hosts every transaction coordinator, so it answers both;
// followers list nothing and answer DescribeTransactions with
// NOT_COORDINATOR (clients ask FindCoordinator first). Ids the principal
// may not Describe are left out of lists and refused in descriptions.

import (
	"sort"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func init() {
	register(kmsg.DescribeTransactions.Int16(), 0, 0, handleDescribeTransactions)
	register(kmsg.ListTransactions.Int16(), 0, 1, handleListTransactions)
}

// kafkaTxnState is a state's name in Kafka's admin APIs.
func kafkaTxnState(s string) string {
	switch s {
	case txnEmpty:
		return "Empty"
	case txnOngoing:
		return "Ongoing"
	case txnPrepareCommit:
		return "PrepareCommit"
	case txnPrepareAbort:
		return "PrepareAbort"
	case txnCompleteCommit:
		return "CompleteCommit"
	case txnCompleteAbort:
		return "CompleteAbort"
	}
	return s
}

// txnSnapshot copies the coordinator state.
func (b *Broker) txnSnapshot() []*txnState {
	b.appendMu.Lock()
	out := make([]*txnState, 0, len(b.txns))
	for _, s := range b.txns {
		out = append(out, s.clone())
	}
	b.appendMu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

func handleListTransactions(b *Broker, rc *reqCtx, req kmsg.Request) func() kmsg.Response {
	r := req.(*kmsg.ListTransactionsRequest)
	resp := r.ResponseKind().(*kmsg.ListTransactionsResponse)
	states := map[string]bool{}
	for _, f := range r.StateFilters {
		switch f {
		case "Empty", "Ongoing", "PrepareCommit", "PrepareAbort", "CompleteCommit", "CompleteAbort":
			states[f] = true
		default:
			resp.UnknownStateFilters = append(resp.UnknownStateFilters, f)
		}
	}
	pids := map[int64]bool{}
	for _, p := range r.ProducerIDFilters {
		pids[p] = true
	}
	if !b.isLeader() {
		return now(resp)
	}
	nowMs := time.Now().UnixMilli()
	for _, s := range b.txnSnapshot() {
		st := kafkaTxnState(s.State)
		switch {
		case len(r.StateFilters) > 0 && !states[st],
			len(pids) > 0 && !pids[s.PID],
			r.DurationFilterMillis >= 0 && r.Version >= 1 && (s.State != txnOngoing || nowMs-s.StartMs < r.DurationFilterMillis),
			!b.quietlyAllowed(rc, kmsg.ACLOperationDescribe, kmsg.ACLResourceTypeTransactionalId, s.ID):
			continue
		}
		ts := kmsg.NewListTransactionsResponseTransactionState()
		ts.TransactionalID, ts.ProducerID, ts.TransactionState = s.ID, s.PID, st
		resp.TransactionStates = append(resp.TransactionStates, ts)
	}
	return now(resp)
}

func handleDescribeTransactions(b *Broker, rc *reqCtx, req kmsg.Request) func() kmsg.Response {
	r := req.(*kmsg.DescribeTransactionsRequest)
	resp := r.ResponseKind().(*kmsg.DescribeTransactionsResponse)
	leader := b.isLeader()
	byID := map[string]*txnState{}
	if leader {
		for _, s := range b.txnSnapshot() {
			byID[s.ID] = s
		}
	}
	for _, id := range r.TransactionalIDs {
		ts := kmsg.NewDescribeTransactionsResponseTransactionState()
		ts.TransactionalID = id
		ts.ProducerID, ts.ProducerEpoch, ts.StartTimestamp = -1, -1, -1
		s := byID[id]
		switch {
		case !b.allowed(rc, kmsg.ACLOperationDescribe, kmsg.ACLResourceTypeTransactionalId, id):
			ts.ErrorCode = kerr.TransactionalIDAuthorizationFailed.Code
		case !leader:
			ts.ErrorCode = kerr.NotCoordinator.Code
		case s == nil:
			ts.ErrorCode = kerr.TransactionalIDNotFound.Code
		default:
			ts.State = kafkaTxnState(s.State)
			ts.TimeoutMillis = s.TimeoutMs
			ts.ProducerID, ts.ProducerEpoch = s.PID, s.Epoch
			if s.State == txnOngoing || s.State == txnPrepareCommit || s.State == txnPrepareAbort {
				ts.StartTimestamp = s.StartMs
			}
			byTopic := map[string][]int32{}
			var topics []string
			for _, p := range s.Partitions {
				if _, ok := byTopic[p.Topic]; !ok {
					topics = append(topics, p.Topic)
				}
				byTopic[p.Topic] = append(byTopic[p.Topic], p.Partition)
			}
			for _, t := range topics {
				tt := kmsg.NewDescribeTransactionsResponseTransactionStateTopic()
				tt.Topic, tt.Partitions = t, byTopic[t]
				ts.Topics = append(ts.Topics, tt)
			}
		}
		resp.TransactionStates = append(resp.TransactionStates, ts)
	}
	return now(resp)
}

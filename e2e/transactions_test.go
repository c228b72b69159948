package e2e

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	adminv1 "github.com/tandem-io/tandem/gen/tandem/admin/v1"
	"github.com/tandem-io/tandem/internal/testutil"
)

// Kafka transactions (KIP-98) on three real broker+sidecar pairs, with real
// clients: franz-go's transactional producer and GroupTransactSession,
// sarama's transactional producer, and consumers of franz-go, sarama and
// librdkafka (kcat) that read with isolation.level=read_committed (only
// committed records, up to the last stable offset) or read_uncommitted
// (everything). The leader is the transaction coordinator; every node
// serves Fetch with the same last-stable-offset logic, which the franz-go
// consumers check by reading from followers (KIP-392 racks: node 2 is in
// rack r2, node 3 in r3, the leader in none).

// startTxnCluster starts three pairs (fast failover flags) and restarts the
// brokers of nodes 2 and 3 in racks r2 and r3, so that a consumer in rack
// rN reads from node N (the harness gives every broker the same flags).
func startTxnCluster(t *testing.T) *cluster {
	t.Helper()
	c := startCluster(t, clusterOpts{sidecarFlags: failoverSidecarFlags()})
	for _, id := range []int{2, 3} {
		n := c.node(id)
		if err := n.broker.Stop(); err != nil {
			t.Fatalf("stopping broker %d: %v", id, err)
		}
		n.broker = testutil.Start(t, testutil.ProcessConfig{
			Name: fmt.Sprintf("broker-%d-rack-r%d", id, id),
			Path: brokerPath(t),
			Args: []string{
				"--node-id", fmt.Sprint(id), "--data-dir", filepath.Join(n.dir, "data"),
				"--listen", n.kafka, "--advertise", n.kafka, "--sidecar", n.sock,
				"--group-initial-rebalance-delay", "0s", "--rack", fmt.Sprintf("r%d", id),
			},
		})
		testutil.WaitTCPFor(t, n.kafka, 20*time.Second)
	}
	c.waitInSync(30 * time.Second)
	return c
}

// createTxnTopic creates a topic with partitions partitions, replicated to
// every node, through any node that answers.
func createTxnTopic(t *testing.T, c *cluster, topic string, partitions int32) {
	t.Helper()
	adm := kadm.NewClient(kclient(t, c.kafkaAddrs()))
	resp, err := adm.CreateTopic(ctxTimeout(t, 15*time.Second), partitions, -1, nil, topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		t.Fatalf("CreateTopic %s: %v (%s)", topic, err, resp.ErrMessage)
	}
}

// txnProducer returns a franz-go transactional producer (records go to the
// partition they name), seeded with seeds.
func txnProducer(t *testing.T, seeds []string, id string, timeout time.Duration) *kgo.Client {
	t.Helper()
	return kclient(t, seeds, kgo.TransactionalID(id), kgo.TransactionTimeout(timeout),
		kgo.RecordPartitioner(kgo.ManualPartitioner()), plain)
}

// txnRecords returns perPartition records for every partition of topic,
// valued "prefix-pP-I".
func txnRecords(topic, prefix string, partitions int32, perPartition int) []*kgo.Record {
	var out []*kgo.Record
	for i := range perPartition {
		for p := range partitions {
			out = append(out, &kgo.Record{Topic: topic, Partition: p, Value: fmt.Appendf(nil, "%s-p%d-%d", prefix, p, i)})
		}
	}
	return out
}

// txnOutcome is what the producing client learnt of a transaction.
type txnOutcome int

const (
	txnOpen      txnOutcome = iota // not ended (yet): none of its records may be read
	txnCommitted                   // EndTransaction(TryCommit) succeeded
	txnAborted                     // aborted, or refused definitively: none of its records may be read
	txnUnknown                     // the commit failed without a definite answer: all or none
)

func (o txnOutcome) String() string {
	return [...]string{"open", "committed", "aborted", "unknown"}[o]
}

// txnLedger records every record produced in a topic (each value once), with
// the outcome of its transaction, to compute what consumers must read.
type txnLedger struct {
	partitions int32
	recs       []ledgerRecord
	outcome    map[string]txnOutcome // by transaction name
}

type ledgerRecord struct {
	txn       string // "" for a record produced outside any transaction
	partition int32
	offset    int64
	value     string
}

func newTxnLedger(partitions int32) *txnLedger {
	return &txnLedger{partitions: partitions, outcome: map[string]txnOutcome{}}
}

// add records acknowledged records of transaction txn ("" for none).
func (l *txnLedger) add(t *testing.T, txn string, recs []*kgo.Record) {
	t.Helper()
	for _, r := range recs {
		for _, o := range l.recs {
			if o.partition == r.Partition && o.offset == r.Offset {
				t.Fatalf("two records acknowledged at partition %d offset %d: %q and %q", r.Partition, r.Offset, o.value, r.Value)
			}
		}
		l.recs = append(l.recs, ledgerRecord{txn: txn, partition: r.Partition, offset: r.Offset, value: string(r.Value)})
	}
}

// runTxn produces recs in one transaction with cl and ends it (commit or
// abort), failing the test on any error, and records it as name.
func (l *txnLedger) runTxn(t *testing.T, cl *kgo.Client, name string, recs []*kgo.Record, commit kgo.TransactionEndTry) {
	t.Helper()
	if err := cl.BeginTransaction(); err != nil {
		t.Fatalf("transaction %s: BeginTransaction: %v", name, err)
	}
	if err := cl.ProduceSync(ctxTimeout(t, 60*time.Second), recs...).FirstErr(); err != nil {
		t.Fatalf("transaction %s: produce: %v", name, err)
	}
	l.add(t, name, recs)
	if err := cl.EndTransaction(ctxTimeout(t, 60*time.Second), commit); err != nil {
		t.Fatalf("transaction %s: EndTransaction(commit=%v): %v", name, bool(commit), err)
	}
	l.outcome[name] = txnAborted
	if commit {
		l.outcome[name] = txnCommitted
	}
}

// want returns, per partition in offset order, the values a consumer must
// read: with readCommitted, the records of committed transactions and
// those produced outside any; else every record. present says, for each transaction of unknown outcome, whether the
// consumer found it (all of its records or none, checked by checkUnknown).
func (l *txnLedger) want(readCommitted bool, present map[string]bool) map[int32][]string {
	recs := slices.Clone(l.recs)
	sort.Slice(recs, func(i, j int) bool { return recs[i].offset < recs[j].offset })
	out := map[int32][]string{}
	for p := range l.partitions {
		out[p] = []string{}
	}
	for _, r := range recs {
		keep := true
		if readCommitted && r.txn != "" {
			switch l.outcome[r.txn] {
			case txnOpen, txnAborted:
				keep = false
			case txnUnknown:
				keep = present[r.txn]
			}
		}
		if keep {
			out[r.partition] = append(out[r.partition], r.value)
		}
	}
	return out
}

// checkUnknown fails unless got (values read with read_committed) holds
// either every record or no record of each transaction of unknown outcome,
// and returns which ones it holds.
func (l *txnLedger) checkUnknown(t *testing.T, what string, got map[int32][]string) map[string]bool {
	t.Helper()
	seen := map[string]bool{}
	for _, vs := range got {
		for _, v := range vs {
			seen[v] = true
		}
	}
	present := map[string]bool{}
	for name, o := range l.outcome {
		if o != txnUnknown {
			continue
		}
		var in, out []string
		for _, r := range l.recs {
			if r.txn != name {
				continue
			}
			if seen[r.value] {
				in = append(in, r.value)
			} else {
				out = append(out, r.value)
			}
		}
		if len(in) > 0 && len(out) > 0 {
			t.Fatalf("%s: transaction %s (commit outcome unknown to the client) is partly visible: %d records read %s, %d not %s",
				what, name, len(in), abbrev(in), len(out), abbrev(out))
		}
		present[name] = len(in) > 0
	}
	return present
}

// requireView fails unless got holds exactly want in every partition.
func requireView(t *testing.T, what string, got, want map[int32][]string) {
	t.Helper()
	for p := range want {
		requireSameValues(t, fmt.Sprintf("%s, partition %d", what, p), got[p], want[p])
	}
	for p := range got {
		if _, ok := want[p]; !ok {
			t.Fatalf("%s: read %d values from partition %d, which should not exist", what, len(got[p]), p)
		}
	}
}

// endMarkers produces, in a committed transaction of cl, one record
// "end-pP" to every partition, after which nothing more is produced: a
// consumer that has read every partition's end marker has read everything
// before it.
func (l *txnLedger) endMarkers(t *testing.T, cl *kgo.Client, topic string) {
	t.Helper()
	var recs []*kgo.Record
	for p := range l.partitions {
		recs = append(recs, &kgo.Record{Topic: topic, Partition: p, Value: fmt.Appendf(nil, "end-p%d", p)})
	}
	l.runTxn(t, cl, "end", recs, kgo.TryCommit)
}

// readView consumes topic from the start, seeded with seed only (and in
// rack when not empty), at the isolation level, until it has read the
// "end-pP" marker of each of partitions partitions, and returns the values
// read by partition in the order read, and how many record batches each
// node served.
func readView(t *testing.T, seed, rack, topic string, partitions int32, level kgo.IsolationLevel, timeout time.Duration) (map[int32][]string, map[int32]int) {
	t.Helper()
	hook := &fetchServers{byNode: map[int32]int{}}
	opts := []kgo.Opt{
		kgo.SeedBrokers(seed), kgo.ClientID("e2e-" + t.Name()),
		kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(level), kgo.FetchMaxWait(500 * time.Millisecond),
		kgo.RetryTimeout(20 * time.Second), kgo.WithHooks(hook),
	}
	if rack != "" {
		opts = append(opts, kgo.Rack(rack))
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		t.Fatalf("kgo.NewClient: %v", err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	got := map[int32][]string{}
	ended := map[int32]bool{}
	for int32(len(ended)) < partitions {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("reading %s from %s (rack %q): %d of %d partitions read to their end marker within %v; read so far: %v",
				topic, seed, rack, len(ended), partitions, timeout, got)
		}
		var errs []string
		fs.EachError(func(topic string, p int32, err error) {
			errs = append(errs, fmt.Sprintf("%s[%d]: %v", topic, p, err))
		})
		if len(errs) > 0 {
			t.Fatalf("reading %s from %s: fetch errors: %s", topic, seed, strings.Join(errs, "; "))
		}
		fs.EachRecord(func(r *kgo.Record) {
			got[r.Partition] = append(got[r.Partition], string(r.Value))
			if string(r.Value) == fmt.Sprintf("end-p%d", r.Partition) {
				ended[r.Partition] = true
			}
		})
	}
	return got, hook.snapshot()
}

// requireServedBy fails unless node id served every record batch read.
func requireServedBy(t *testing.T, what string, by map[int32]int, id int32) {
	t.Helper()
	for n, k := range by {
		if n != id && k > 0 {
			t.Fatalf("%s: record batches read by serving node = %v; want every batch from node %d", what, by, id)
		}
	}
	if by[id] == 0 {
		t.Fatalf("%s: record batches read by serving node = %v; want every batch from node %d", what, by, id)
	}
}

// stableOffsets sends a read_committed Fetch from offset 0 for every
// partition of topic straight to node id (with cl, seeded with that node),
// and returns the high watermark and last stable offset it answers.
func stableOffsets(ctx context.Context, cl *kgo.Client, id int32, topic string, partitions int32) (hw, lso map[int32]int64, err error) {
	req := kmsg.NewPtrFetchRequest()
	req.Version = 11
	req.ReplicaID = -1
	req.MaxWaitMillis = 0
	req.MinBytes = 1
	req.MaxBytes = 1 << 20
	req.IsolationLevel = 1
	rt := kmsg.NewFetchRequestTopic()
	rt.Topic = topic
	for p := range partitions {
		rp := kmsg.NewFetchRequestTopicPartition()
		rp.Partition = p
		rp.FetchOffset = 0
		rp.PartitionMaxBytes = 1 << 10
		rp.CurrentLeaderEpoch = -1
		rt.Partitions = append(rt.Partitions, rp)
	}
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctx, cl.Broker(int(id)))
	if err != nil {
		return nil, nil, err
	}
	if err := kerr.ErrorForCode(resp.ErrorCode); err != nil {
		return nil, nil, err
	}
	hw, lso = map[int32]int64{}, map[int32]int64{}
	for _, t := range resp.Topics {
		for _, sp := range t.Partitions {
			if err := kerr.ErrorForCode(sp.ErrorCode); err != nil {
				return nil, nil, fmt.Errorf("partition %d: %w", sp.Partition, err)
			}
			hw[sp.Partition], lso[sp.Partition] = sp.HighWatermark, sp.LastStableOffset
		}
	}
	return hw, lso, nil
}

// committedAndEnd lists the last stable offsets (ListOffsets latest,
// read_committed) and high watermarks of topic, from its leader.
func committedAndEnd(ctx context.Context, adm *kadm.Client, topic string) (lso, hw map[int32]int64, err error) {
	get := func(list func(context.Context, ...string) (kadm.ListedOffsets, error)) (map[int32]int64, error) {
		l, err := list(ctx, topic)
		if err != nil {
			return nil, err
		}
		if err := l.Error(); err != nil {
			return nil, err
		}
		out := map[int32]int64{}
		l.Each(func(o kadm.ListedOffset) { out[o.Partition] = o.Offset })
		return out, nil
	}
	if lso, err = get(adm.ListCommittedOffsets); err != nil {
		return nil, nil, err
	}
	hw, err = get(adm.ListEndOffsets)
	return lso, hw, err
}

// waitNoOpenTxn waits until no transaction holds back topic: its last
// stable offset (ListOffsets read_committed, on its leader) is its high
// watermark in every partition.
func waitNoOpenTxn(t *testing.T, adm *kadm.Client, topic string, partitions int32, timeout time.Duration) {
	t.Helper()
	testutil.Eventually(t, timeout, func() error {
		lso, hw, err := committedAndEnd(ctxTimeout(t, 10*time.Second), adm, topic)
		if err != nil {
			return err
		}
		for p := range partitions {
			if lso[p] != hw[p] {
				return fmt.Errorf("partition %d: last stable offset (read_committed latest offset) %d, high watermark %d", p, lso[p], hw[p])
			}
		}
		return nil
	})
}

// TestTransactionsFranzGoReadCommittedOnEveryNode: a franz-go transactional
// producer commits and aborts transactions on a 3-partition topic, with
// records of a plain (non-transactional) producer in between. While a
// transaction is open, the last stable offset of every partition, on the
// leader (ListOffsets read_committed) and on each follower (Fetch), stops
// at its first record. Afterwards read_committed consumers reading from
// each node (the leader, and followers through their racks) read exactly
// the committed and plain records, each once and in order, and none of the
// aborted ones; a read_uncommitted consumer reads them all.
func TestTransactionsFranzGoReadCommittedOnEveryNode(t *testing.T) {
	c := startTxnCluster(t)
	const topic, parts = "txn-franz", 3
	createTxnTopic(t, c, topic, parts)
	l := newTxnLedger(parts)
	prod := txnProducer(t, c.kafkaAddrs(), "franz-txn", 30*time.Second)
	plainProd := kclient(t, c.kafkaAddrs(), kgo.RecordPartitioner(kgo.ManualPartitioner()), plain)
	producePlain := func(prefix string) {
		recs := txnRecords(topic, prefix, parts, 2)
		if err := plainProd.ProduceSync(ctxTimeout(t, 60*time.Second), recs...).FirstErr(); err != nil {
			t.Fatalf("plain produce %s: %v", prefix, err)
		}
		l.add(t, "", recs)
	}

	l.runTxn(t, prod, "t0", txnRecords(topic, "t0", parts, 4), kgo.TryCommit)
	l.runTxn(t, prod, "t1", txnRecords(topic, "t1", parts, 4), kgo.TryAbort)
	producePlain("plain0")
	l.runTxn(t, prod, "t2", txnRecords(topic, "t2", parts, 3), kgo.TryCommit)
	l.runTxn(t, prod, "t3", txnRecords(topic, "t3", parts, 5), kgo.TryAbort)
	l.runTxn(t, prod, "t4", txnRecords(topic, "t4", parts, 1), kgo.TryAbort)
	l.runTxn(t, prod, "t5", txnRecords(topic, "t5", parts, 4), kgo.TryCommit)

	// An open transaction t6, and plain records after it: the last stable
	// offset of each partition is t6's first offset there, on every node.
	if err := prod.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	open := txnRecords(topic, "t6", parts, 3)
	if err := prod.ProduceSync(ctxTimeout(t, 60*time.Second), open...).FirstErr(); err != nil {
		t.Fatalf("transaction t6: produce: %v", err)
	}
	l.add(t, "t6", open)
	producePlain("plain1")
	firstOpen := map[int32]int64{}
	for _, r := range open {
		if o, ok := firstOpen[r.Partition]; !ok || r.Offset < o {
			firstOpen[r.Partition] = r.Offset
		}
	}
	adm := kadm.NewClient(kclient(t, c.kafkaAddrs()))
	var hw map[int32]int64
	testutil.Eventually(t, 20*time.Second, func() error {
		var lso map[int32]int64
		var err error
		if lso, hw, err = committedAndEnd(ctxTimeout(t, 10*time.Second), adm, topic); err != nil {
			return err
		}
		for p := range int32(parts) {
			if lso[p] != firstOpen[p] || hw[p] <= lso[p] {
				return fmt.Errorf("with t6 open, partition %d: read_committed latest offset %d, high watermark %d; want %d (t6's first offset) below the high watermark",
					p, lso[p], hw[p], firstOpen[p])
			}
		}
		return nil
	})
	for _, id := range []int32{1, 2, 3} {
		cl := kclient(t, []string{c.node(int(id)).kafka})
		testutil.Eventually(t, 20*time.Second, func() error {
			nhw, nlso, err := stableOffsets(ctxTimeout(t, 10*time.Second), cl, id, topic, parts)
			if err != nil {
				return err
			}
			for p := range int32(parts) {
				if nhw[p] != hw[p] || nlso[p] != firstOpen[p] {
					return fmt.Errorf("with t6 open, node %d answers partition %d with high watermark %d, last stable offset %d; want %d and %d",
						id, p, nhw[p], nlso[p], hw[p], firstOpen[p])
				}
			}
			return nil
		})
	}
	if err := prod.EndTransaction(ctxTimeout(t, 60*time.Second), kgo.TryCommit); err != nil {
		t.Fatalf("transaction t6: commit: %v", err)
	}
	l.outcome["t6"] = txnCommitted
	l.endMarkers(t, prod, topic)
	// Kafka writes the markers after answering EndTxn: the last stable
	// offset catches up with the high watermark soon after.
	waitNoOpenTxn(t, adm, topic, parts, 20*time.Second)

	wantCommitted := l.want(true, nil)
	for _, v := range []struct {
		id   int32
		rack string
	}{{1, ""}, {2, "r2"}, {3, "r3"}} {
		what := fmt.Sprintf("read_committed consumer reading from node %d", v.id)
		got, by := readView(t, c.node(int(v.id)).kafka, v.rack, topic, parts, kgo.ReadCommitted(), 30*time.Second)
		requireView(t, what, got, wantCommitted)
		requireServedBy(t, what, by, v.id)
	}
	got, by := readView(t, c.node(2).kafka, "r2", topic, parts, kgo.ReadUncommitted(), 30*time.Second)
	requireView(t, "read_uncommitted consumer reading from node 2", got, l.want(false, nil))
	requireServedBy(t, "read_uncommitted consumer reading from node 2", by, 2)
	for _, n := range c.nodes {
		(&broker{t: t, Proc: n.broker}).requireAlive()
	}
}

// TestTransactionsSurviveFailover: the leader (transaction coordinator) is
// SIGKILLed while a franz-go producer has a transaction open (its records
// written, not ended) and while a second producer's transaction (timeout
// 3s) is left hanging. Node 2 is promoted. The first producer ends its
// transaction as an application would: commit, and if that fails, abort
// and produce the batch again in a new transaction; then it carries on. On
// the new leader and on node 3, read_committed consumers read every record
// of every transaction the producer saw committed, exactly once and in
// order, none of an aborted one, and all or none of one whose commit
// outcome the producer could not know. The hanging transaction does not
// hold them back: the new leader's janitor aborts it at its timeout,
// fencing its producer, whose late commit then fails, and a new producer
// of its transactional id carries on.
func TestTransactionsSurviveFailover(t *testing.T) {
	c := startTxnCluster(t)
	const topic, parts = "txn-failover", 3
	createTxnTopic(t, c, topic, parts)
	l := newTxnLedger(parts)
	prod := txnProducer(t, c.kafkaAddrs(), "failover-app", 10*time.Second)
	hang := txnProducer(t, c.kafkaAddrs(), "hanging", 3*time.Second)

	l.runTxn(t, prod, "a0", txnRecords(topic, "a0", parts, 3), kgo.TryCommit)
	l.runTxn(t, prod, "a1", txnRecords(topic, "a1", parts, 3), kgo.TryAbort)
	l.runTxn(t, prod, "a2", txnRecords(topic, "a2", parts, 3), kgo.TryCommit)

	// a3.1 is open when the leader dies, and so is the hanging one.
	if err := prod.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	a31 := txnRecords(topic, "a3.1", parts, 3)
	if err := prod.ProduceSync(ctxTimeout(t, 60*time.Second), a31...).FirstErr(); err != nil {
		t.Fatalf("transaction a3.1: produce: %v", err)
	}
	l.add(t, "a3.1", a31)
	if err := hang.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	hung := txnRecords(topic, "hung", parts, 2)
	if err := hang.ProduceSync(ctxTimeout(t, 60*time.Second), hung...).FirstErr(); err != nil {
		t.Fatalf("hanging transaction: produce: %v", err)
	}
	l.add(t, "hung", hung) // never committed by anyone
	c.node(1).killPair()

	// The producer ends a3.1 while node 2 is promoted.
	ended := make(chan error, 1)
	go func() { ended <- prod.EndTransaction(context.Background(), kgo.TryCommit) }()
	out, err := c.promoteNode(2)
	if err != nil || !strings.Contains(out, "node 2 is leader in epoch 2") {
		t.Fatalf("tandemctl promote: %v\n%s", err, out)
	}
	c.waitRole(30*time.Second, 2, adminv1.Role_ROLE_LEADER, 2, 2)
	c.waitRole(30*time.Second, 3, adminv1.Role_ROLE_FOLLOWER, 2, 2)
	var endErr error
	select {
	case endErr = <-ended:
	case <-time.After(90 * time.Second):
		t.Fatal("EndTransaction of a3.1 did not return within 90s of the failover")
	}
	if endErr == nil {
		l.outcome["a3.1"] = txnCommitted
		t.Log("a3.1: the commit across the failover succeeded")
	} else {
		// A definitive refusal (say, the new leader aborted it at its
		// timeout and fenced the epoch) means it did not commit; else the
		// outcome is unknown.
		var ke *kerr.Error
		if errors.As(endErr, &ke) && !ke.Retriable {
			l.outcome["a3.1"] = txnAborted
		} else {
			l.outcome["a3.1"] = txnUnknown
		}
		t.Logf("a3.1: the commit across the failover failed (%v; outcome %v); aborting and producing the batch again", endErr, l.outcome["a3.1"])
		if err := prod.EndTransaction(ctxTimeout(t, 60*time.Second), kgo.TryAbort); err != nil {
			t.Logf("aborting a3.1 after its failed commit: %v", err)
		}
		if err := prod.BeginTransaction(); err != nil {
			// Fenced for good: a new producer takes over the
			// transactional id, as an application would start one.
			t.Logf("the producer cannot begin another transaction (%v); a new one takes over", err)
			prod.Close()
			prod = txnProducer(t, c.kafkaAddrs(), "failover-app", 10*time.Second)
		} else if err := prod.EndTransaction(ctxTimeout(t, 60*time.Second), kgo.TryAbort); err != nil {
			t.Fatalf("ending an empty transaction: %v", err)
		}
		l.runTxn(t, prod, "a3.2", txnRecords(topic, "a3.2", parts, 3), kgo.TryCommit)
	}
	l.runTxn(t, prod, "a4", txnRecords(topic, "a4", parts, 2), kgo.TryCommit)
	l.runTxn(t, prod, "a5", txnRecords(topic, "a5", parts, 2), kgo.TryAbort)

	// The new leader aborts the hanging transaction at its timeout: the
	// last stable offset reaches the high watermark everywhere.
	adm := kadm.NewClient(kclient(t, []string{c.node(2).kafka, c.node(3).kafka}))
	waitNoOpenTxn(t, adm, topic, parts, 30*time.Second)
	if !logHasLine(c.node(2).broker.Log(), "aborting a transaction past its timeout", "transactional_id=hanging") {
		t.Errorf("the new leader's log does not show it aborting the hanging transaction:\n%s", c.node(2).broker.LogTail(40))
	}
	// Its producer was fenced: a late commit fails, and adds nothing.
	if err := hang.EndTransaction(ctxTimeout(t, 60*time.Second), kgo.TryCommit); err == nil {
		t.Fatal("the hanging producer committed after the new leader aborted its transaction at its timeout")
	} else {
		t.Logf("the hanging producer's late commit: %v", err)
	}
	// A new producer of the id (an application restarted) carries on.
	next := txnProducer(t, []string{c.node(3).kafka}, "hanging", 3*time.Second)
	l.runTxn(t, next, "hung-next", txnRecords(topic, "hung-next", parts, 2), kgo.TryCommit)
	l.endMarkers(t, prod, topic)

	var present map[string]bool
	for _, v := range []struct {
		id   int32
		rack string
	}{{2, ""}, {3, "r3"}} {
		what := fmt.Sprintf("after the failover, read_committed consumer reading from node %d", v.id)
		got, by := readView(t, c.node(int(v.id)).kafka, v.rack, topic, parts, kgo.ReadCommitted(), 45*time.Second)
		p := l.checkUnknown(t, what, got)
		if present != nil && !maps.Equal(present, p) {
			t.Fatalf("%s: transactions of unknown outcome found %v, but %v on the other node", what, p, present)
		}
		present = p
		requireView(t, what, got, l.want(true, present))
		requireServedBy(t, what, by, v.id)
	}
	got, _ := readView(t, c.node(3).kafka, "r3", topic, parts, kgo.ReadUncommitted(), 45*time.Second)
	requireView(t, "after the failover, read_uncommitted consumer reading from node 3", got, l.want(false, nil))

	c.caughtUp(30*time.Second, 2, 3)
	t.Log(c.mustVerify(2, "--peers", c.peersArg(2, 3)))
	for _, id := range []int{2, 3} {
		(&broker{t: t, Proc: c.node(id).broker}).requireAlive()
	}
}

// logHasLine reports whether some line of log holds every one of subs.
func logHasLine(log string, subs ...string) bool {
	for _, line := range strings.Split(log, "\n") {
		all := true
		for _, s := range subs {
			if !strings.Contains(line, s) {
				all = false
				break
			}
		}
		if all {
			return true
		}
	}
	return false
}

// TestTransactionsSarama: a sarama transactional producer (idempotent,
// acks=all, one request in flight) bootstrapped on a follower commits one
// transaction, aborts one and commits another; a sarama consumer with
// IsolationLevel=ReadCommitted reads only the committed ones, at the
// offsets the producer was given, and a read_uncommitted one reads all.
func TestTransactionsSarama(t *testing.T) {
	c := startCluster(t, clusterOpts{})
	const topic = "txn-sarama"
	c.createTopic(topic)

	cfg := saramaConfig()
	cfg.Producer.Idempotent = true
	cfg.Producer.Transaction.ID = "sarama-txn"
	cfg.Net.MaxOpenRequests = 1
	cfg.Producer.RequiredAcks = sarama.WaitForAll
	prod, err := sarama.NewSyncProducer([]string{c.node(3).kafka}, cfg)
	if err != nil {
		t.Fatalf("sarama.NewSyncProducer: %v", err)
	}
	defer prod.Close()
	if !prod.IsTransactional() {
		t.Fatal("the sarama producer is not transactional")
	}
	type sent struct {
		value  string
		offset int64
	}
	var all, committed []sent
	runTxn := func(name string, n int, commit bool) {
		t.Helper()
		if err := prod.BeginTxn(); err != nil {
			t.Fatalf("%s: BeginTxn: %v", name, err)
		}
		var msgs []*sarama.ProducerMessage
		for i := range n {
			msgs = append(msgs, &sarama.ProducerMessage{Topic: topic, Value: sarama.StringEncoder(fmt.Sprintf("%s-%d", name, i))})
		}
		if err := prod.SendMessages(msgs); err != nil {
			t.Fatalf("%s: SendMessages: %v", name, err)
		}
		end := prod.AbortTxn
		if commit {
			end = prod.CommitTxn
		}
		if err := end(); err != nil {
			t.Fatalf("%s: ending (commit=%v): %v", name, commit, err)
		}
		for _, m := range msgs {
			v, _ := m.Value.Encode()
			all = append(all, sent{string(v), m.Offset})
			if commit {
				committed = append(committed, sent{string(v), m.Offset})
			}
		}
	}
	runTxn("s-committed", 5, true)
	runTxn("s-aborted", 5, false)
	runTxn("s-committed-again", 5, true)

	read := func(level sarama.IsolationLevel, want []sent) {
		t.Helper()
		ccfg := saramaConfig()
		ccfg.Consumer.IsolationLevel = level
		cons, err := sarama.NewConsumer([]string{c.node(2).kafka}, ccfg)
		if err != nil {
			t.Fatalf("sarama.NewConsumer: %v", err)
		}
		defer cons.Close()
		pc, err := cons.ConsumePartition(topic, 0, sarama.OffsetOldest)
		if err != nil {
			t.Fatalf("ConsumePartition: %v", err)
		}
		defer pc.Close()
		var got []sent
		timeout := time.After(30 * time.Second)
		// The last record of the topic is the last one wanted: any other
		// record comes before it.
		for len(got) == 0 || got[len(got)-1] != want[len(want)-1] {
			select {
			case m := <-pc.Messages():
				got = append(got, sent{string(m.Value), m.Offset})
			case err := <-pc.Errors():
				t.Fatalf("isolation level %d: %v", level, err)
			case <-timeout:
				t.Fatalf("isolation level %d: read %v in 30s, want %v", level, got, want)
			}
		}
		if !slices.Equal(got, want) {
			t.Fatalf("isolation level %d: read %v, want %v", level, got, want)
		}
	}
	read(sarama.ReadCommitted, committed)
	read(sarama.ReadUncommitted, all)
}

// TestTransactionsKcat: librdkafka (kcat) reads a 2-partition topic where
// franz-go committed and aborted transactions: with
// isolation.level=read_committed only the committed records, with
// read_uncommitted all of them.
func TestTransactionsKcat(t *testing.T) {
	c := startCluster(t, clusterOpts{})
	const topic, parts = "txn-kcat", 2
	createTxnTopic(t, c, topic, parts)
	l := newTxnLedger(parts)
	prod := txnProducer(t, c.kafkaAddrs(), "kcat-txn", 30*time.Second)
	l.runTxn(t, prod, "k0", txnRecords(topic, "k0", parts, 5), kgo.TryCommit)
	l.runTxn(t, prod, "k1", txnRecords(topic, "k1", parts, 5), kgo.TryAbort)
	l.runTxn(t, prod, "k2", txnRecords(topic, "k2", parts, 5), kgo.TryCommit)
	l.runTxn(t, prod, "k3", txnRecords(topic, "k3", parts, 3), kgo.TryAbort)
	// kcat -e stops at the last stable offset: wait for the last markers.
	waitNoOpenTxn(t, kadm.NewClient(kclient(t, c.kafkaAddrs())), topic, parts, 20*time.Second)

	for _, tc := range []struct {
		level string
		want  map[int32][]string
	}{
		{"read_committed", l.want(true, nil)},
		{"read_uncommitted", l.want(false, nil)},
	} {
		out := kcat(t, "", 60*time.Second, "-C", "-b", c.node(2).kafka, "-t", topic, "-o", "beginning", "-e", "-q",
			"-X", "isolation.level="+tc.level, "-f", "%p %s\n")
		got := map[int32][]string{}
		for _, line := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
			if line == "" {
				continue
			}
			ps, v, ok := strings.Cut(line, " ")
			p, err := strconv.Atoi(ps)
			if !ok || err != nil {
				t.Fatalf("kcat printed %q", line)
			}
			got[int32(p)] = append(got[int32(p)], v)
		}
		requireView(t, "kcat isolation.level="+tc.level, got, tc.want)
	}
}

// TestTransactionsGroupTransactSession: consume-transform-produce with
// franz-go's GroupTransactSession. A first session copies records of a
// 2-partition input topic to an output topic (same partition), committing
// the output and the group's offsets together, and "crashes" (closes) in
// the middle of a transaction whose records it produced; a second session
// with the same transactional id fences it (its open transaction is
// aborted) and carries on from the committed offsets. The output read with
// read_committed holds every input record exactly once, in order, and the
// group's committed offsets are the input's end offsets. Last, a
// transaction that commits an offset for the group holds it back from
// OffsetFetch with RequireStable (UNSTABLE_OFFSET_COMMIT) until it ends.
func TestTransactionsGroupTransactSession(t *testing.T) {
	c := startCluster(t, clusterOpts{})
	const in, out, group, parts, n = "etl-in", "etl-out", "etl", 2, 200
	createTxnTopic(t, c, in, parts)
	createTxnTopic(t, c, out, parts)
	input := map[int32][]string{}
	var inRecs []*kgo.Record
	for i := range n {
		p := int32(i % parts)
		v := fmt.Sprintf("in-%d", i)
		input[p] = append(input[p], v)
		inRecs = append(inRecs, &kgo.Record{Topic: in, Partition: p, Value: []byte(v)})
	}
	plainProd := kclient(t, c.kafkaAddrs(), kgo.RecordPartitioner(kgo.ManualPartitioner()), plain)
	if err := plainProd.ProduceSync(ctxTimeout(t, 60*time.Second), inRecs...).FirstErr(); err != nil {
		t.Fatalf("producing the input: %v", err)
	}

	copied := 0 // input records whose copy committed
	crashedCopies := 0
	session := func(name string, stopAt int, crash bool) {
		s, err := kgo.NewGroupTransactSession(
			kgo.SeedBrokers(c.kafkaAddrs()...), kgo.ClientID("e2e-"+name),
			kgo.TransactionalID("etl-txn"), kgo.TransactionTimeout(10*time.Second),
			kgo.ConsumerGroup(group), kgo.ConsumeTopics(in),
			kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
			kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.FetchMaxWait(200*time.Millisecond),
			kgo.RecordPartitioner(kgo.ManualPartitioner()), plain,
			kgo.RetryTimeout(20*time.Second), kgo.RecordDeliveryTimeout(30*time.Second),
		)
		if err != nil {
			t.Fatalf("%s: NewGroupTransactSession: %v", name, err)
		}
		defer s.Close()
		ctx := ctxTimeout(t, 60*time.Second)
		for {
			done := copied >= stopAt
			if done && !crash {
				return
			}
			fs := s.PollRecords(ctx, 20) // several transactions, not one
			if ctx.Err() != nil {
				t.Fatalf("%s: copied %d of %d records within 60s", name, copied, stopAt)
			}
			var errs []string
			fs.EachError(func(topic string, p int32, err error) {
				errs = append(errs, fmt.Sprintf("%s[%d]: %v", topic, p, err))
			})
			if len(errs) > 0 {
				t.Fatalf("%s: fetch errors: %s", name, strings.Join(errs, "; "))
			}
			recs := fs.Records()
			if len(recs) == 0 {
				continue
			}
			if err := s.Begin(); err != nil {
				t.Fatalf("%s: Begin: %v", name, err)
			}
			outRecs := make([]*kgo.Record, len(recs))
			for i, r := range recs {
				outRecs[i] = &kgo.Record{Topic: out, Partition: r.Partition, Value: r.Value}
			}
			if err := s.ProduceSync(ctx, outRecs...).FirstErr(); err != nil {
				t.Fatalf("%s: producing copies: %v", name, err)
			}
			if done {
				// The crash: the copies are written, the transaction is
				// neither committed nor aborted.
				crashedCopies = len(outRecs)
				return
			}
			committed, err := s.End(ctx, kgo.TryCommit)
			if err != nil {
				t.Fatalf("%s: End: %v", name, err)
			}
			if committed {
				copied += len(recs)
			}
		}
	}
	session("first", n/2, true)
	if crashedCopies == 0 || copied >= n {
		t.Fatalf("the first session copied %d of %d records and left %d uncommitted copies; want some of each", copied, n, crashedCopies)
	}
	t.Logf("the first session committed copies of %d records, then crashed with %d copies in its open transaction", copied, crashedCopies)
	session("second", n, false)
	if copied != n {
		t.Fatalf("the sessions committed copies of %d records, want %d", copied, n)
	}

	// End markers after the copies, to read the output to its end.
	var ends []*kgo.Record
	for p := range int32(parts) {
		ends = append(ends, &kgo.Record{Topic: out, Partition: p, Value: fmt.Appendf(nil, "end-p%d", p)})
	}
	if err := plainProd.ProduceSync(ctxTimeout(t, 60*time.Second), ends...).FirstErr(); err != nil {
		t.Fatalf("producing end markers: %v", err)
	}
	got, _ := readView(t, c.node(2).kafka, "", out, parts, kgo.ReadCommitted(), 30*time.Second)
	want := map[int32][]string{}
	for p, vs := range input {
		want[p] = append(slices.Clone(vs), fmt.Sprintf("end-p%d", p))
	}
	requireView(t, "read_committed output", got, want)
	got, _ = readView(t, c.node(2).kafka, "", out, parts, kgo.ReadUncommitted(), 30*time.Second)
	total := 0
	for _, vs := range got {
		total += len(vs)
	}
	if total != n+parts+crashedCopies {
		t.Fatalf("read_uncommitted output holds %d records, want %d: the %d copies, %d end markers and the %d copies of the aborted transaction",
			total, n+parts+crashedCopies, n, parts, crashedCopies)
	}

	adm := kadm.NewClient(kclient(t, c.kafkaAddrs()))
	offs, err := adm.FetchOffsets(kadm.RequireStable(ctxTimeout(t, 15*time.Second)), group)
	if err != nil {
		t.Fatalf("OffsetFetch %s: %v", group, err)
	}
	sum := int64(0)
	for p := range int32(parts) {
		o, ok := offs.Lookup(in, p)
		if !ok || o.Err != nil || o.At != int64(len(input[p])) {
			t.Fatalf("group %s, %s[%d]: committed %+v (found %v), want offset %d", group, in, p, o, ok, len(input[p]))
		}
		sum += o.At
	}
	if sum != n {
		t.Fatalf("group %s committed offsets summing to %d, want %d", group, sum, n)
	}

	// A transaction that commits offsets for the group (sent as a
	// transactional producer sends them) holds them back from readers
	// that require stable offsets until it ends: UNSTABLE_OFFSET_COMMIT
	// for its partition, the others unaffected; once committed, its offset.
	raw := kclient(t, c.kafkaAddrs())
	rctx := ctxTimeout(t, 30*time.Second)
	initReq := kmsg.NewPtrInitProducerIDRequest()
	initReq.TransactionalID = kmsg.StringPtr("etl-rewind")
	initReq.TransactionTimeoutMillis = 30000
	initResp, err := initReq.RequestWith(rctx, raw)
	if err == nil {
		err = kerr.ErrorForCode(initResp.ErrorCode)
	}
	if err != nil {
		t.Fatalf("InitProducerId: %v", err)
	}
	pid, epoch := initResp.ProducerID, initResp.ProducerEpoch
	addReq := kmsg.NewPtrAddOffsetsToTxnRequest()
	addReq.TransactionalID, addReq.ProducerID, addReq.ProducerEpoch, addReq.Group = "etl-rewind", pid, epoch, group
	addResp, err := addReq.RequestWith(rctx, raw)
	if err == nil {
		err = kerr.ErrorForCode(addResp.ErrorCode)
	}
	if err != nil {
		t.Fatalf("AddOffsetsToTxn: %v", err)
	}
	const rewound = 7
	commitReq := kmsg.NewPtrTxnOffsetCommitRequest()
	commitReq.TransactionalID, commitReq.Group, commitReq.ProducerID, commitReq.ProducerEpoch = "etl-rewind", group, pid, epoch
	ct := kmsg.NewTxnOffsetCommitRequestTopic()
	ct.Topic = in
	cp := kmsg.NewTxnOffsetCommitRequestTopicPartition()
	cp.Partition, cp.Offset = 0, rewound
	ct.Partitions = append(ct.Partitions, cp)
	commitReq.Topics = append(commitReq.Topics, ct)
	commitResp, err := commitReq.RequestWith(rctx, raw)
	if err == nil {
		for _, rt := range commitResp.Topics {
			for _, rp := range rt.Partitions {
				if err == nil {
					err = kerr.ErrorForCode(rp.ErrorCode)
				}
			}
		}
	}
	if err != nil {
		t.Fatalf("TxnOffsetCommit: %v", err)
	}
	offs, err = adm.FetchOffsets(kadm.RequireStable(ctxTimeout(t, 15*time.Second)), group)
	if err != nil {
		t.Fatalf("OffsetFetch %s with a transaction open: %v", group, err)
	}
	if o, _ := offs.Lookup(in, 0); !errors.Is(o.Err, kerr.UnstableOffsetCommit) {
		t.Fatalf("with a transaction holding offsets of %s[0], OffsetFetch (require stable) answers %+v, want %v", in, o, kerr.UnstableOffsetCommit)
	}
	if o, _ := offs.Lookup(in, 1); o.Err != nil || o.At != int64(len(input[1])) {
		t.Fatalf("with a transaction holding offsets of %s[0] only, OffsetFetch (require stable) answers %+v for %s[1], want offset %d", in, o, in, len(input[1]))
	}
	endReq := kmsg.NewPtrEndTxnRequest()
	endReq.TransactionalID, endReq.ProducerID, endReq.ProducerEpoch, endReq.Commit = "etl-rewind", pid, epoch, true
	endResp, err := endReq.RequestWith(rctx, raw)
	if err == nil {
		err = kerr.ErrorForCode(endResp.ErrorCode)
	}
	if err != nil {
		t.Fatalf("EndTxn: %v", err)
	}
	offs, err = adm.FetchOffsets(kadm.RequireStable(ctxTimeout(t, 15*time.Second)), group)
	if err != nil {
		t.Fatalf("OffsetFetch %s after the commit: %v", group, err)
	}
	if o, _ := offs.Lookup(in, 0); o.Err != nil || o.At != rewound {
		t.Fatalf("after the transaction committed offset %d for %s[0], OffsetFetch answers %+v", rewound, in, o)
	}
}

// TestTransactionsFencedProducer: a franz-go transactional producer is
// fenced, as Kafka fences one, first by a newer producer of its
// transactional id (InitProducerId aborts its open transaction and bumps
// the epoch), then, under another id, by the coordinator aborting its
// transaction at its timeout. Each time its records stay invisible to
// read_committed consumers, its late commit fails with PRODUCER_FENCED
// (what Kafka 2.7+ answers EndTxn v2+ for an old epoch; franz-go treats it
// as fatal, so that the application replaces the producer, where it
// retries INVALID_PRODUCER_EPOCH by re-initialising the same producer,
// KIP-588), and a new producer of the id carries on.
func TestTransactionsFencedProducer(t *testing.T) {
	c := startCluster(t, clusterOpts{})
	const topic, parts = "txn-fenced", 2
	createTxnTopic(t, c, topic, parts)
	l := newTxnLedger(parts)

	// Fenced by a newer producer.
	zombie := txnProducer(t, c.kafkaAddrs(), "fenced", 30*time.Second)
	l.runTxn(t, zombie, "z0", txnRecords(topic, "z0", parts, 2), kgo.TryCommit)
	if err := zombie.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	z1 := txnRecords(topic, "z1", parts, 2)
	if err := zombie.ProduceSync(ctxTimeout(t, 60*time.Second), z1...).FirstErr(); err != nil {
		t.Fatalf("transaction z1: produce: %v", err)
	}
	l.add(t, "z1", z1) // aborted by its successor
	successor := txnProducer(t, c.kafkaAddrs(), "fenced", 30*time.Second)
	l.runTxn(t, successor, "s0", txnRecords(topic, "s0", parts, 2), kgo.TryCommit)
	if err := zombie.EndTransaction(ctxTimeout(t, 60*time.Second), kgo.TryCommit); !errors.Is(err, kerr.ProducerFenced) {
		t.Errorf("the commit of a producer fenced by a newer one returned %v, want %v", err, kerr.ProducerFenced)
	}

	// Fenced by its transaction's timeout.
	late := txnProducer(t, c.kafkaAddrs(), "fenced-timeout", 2*time.Second)
	l.runTxn(t, late, "l0", txnRecords(topic, "l0", parts, 2), kgo.TryCommit)
	if err := late.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	l1 := txnRecords(topic, "l1", parts, 2)
	if err := late.ProduceSync(ctxTimeout(t, 60*time.Second), l1...).FirstErr(); err != nil {
		t.Fatalf("transaction l1: produce: %v", err)
	}
	l.add(t, "l1", l1) // aborted at its timeout
	adm := kadm.NewClient(kclient(t, c.kafkaAddrs()))
	waitNoOpenTxn(t, adm, topic, parts, 30*time.Second)
	if err := late.EndTransaction(ctxTimeout(t, 60*time.Second), kgo.TryCommit); !errors.Is(err, kerr.ProducerFenced) {
		t.Errorf("the commit of a producer whose transaction the coordinator aborted at its timeout returned %v, want %v", err, kerr.ProducerFenced)
	}
	next := txnProducer(t, c.kafkaAddrs(), "fenced-timeout", 30*time.Second)
	l.runTxn(t, next, "l2", txnRecords(topic, "l2", parts, 2), kgo.TryCommit)

	l.endMarkers(t, successor, topic)
	got, _ := readView(t, c.node(2).kafka, "", topic, parts, kgo.ReadCommitted(), 30*time.Second)
	requireView(t, "read_committed consumer", got, l.want(true, nil))
	got, _ = readView(t, c.node(2).kafka, "", topic, parts, kgo.ReadUncommitted(), 30*time.Second)
	requireView(t, "read_uncommitted consumer", got, l.want(false, nil))
}

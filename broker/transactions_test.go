package broker

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func txnProducer(t *testing.T, addr, id, topic string, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	return newClient(t, addr, append([]kgo.Opt{kgo.TransactionalID(id), kgo.DefaultProduceTopic(topic),
		kgo.RecordPartitioner(kgo.RoundRobinPartitioner())}, opts...)...)
}

// runTxn produces values in one transaction and ends it.
func runTxn(t *testing.T, cl *kgo.Client, commit bool, values ...string) {
	t.Helper()
	ctx := t.Context()
	if err := cl.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	for _, v := range values {
		if err := cl.ProduceSync(ctx, kgo.StringRecord(v)).FirstErr(); err != nil {
			t.Fatalf("producing %s: %v", v, err)
		}
	}
	if err := cl.EndTransaction(ctx, kgo.TransactionEndTry(commit)); err != nil {
		t.Fatalf("ending the transaction (commit %v): %v", commit, err)
	}
}

// readAll reads topic from the start until it has seen want records or
// quiet passes without one, with the given isolation level.
func readAll(t *testing.T, addr, topic string, committed bool, want int, quiet time.Duration, opts ...kgo.Opt) []string {
	t.Helper()
	iso := kgo.ReadUncommitted()
	if committed {
		iso = kgo.ReadCommitted()
	}
	cl := newClient(t, addr, append([]kgo.Opt{kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(iso), kgo.FetchMaxWait(100 * time.Millisecond)}, opts...)...)
	defer cl.Close()
	var got []string
	deadline := time.Now().Add(20 * time.Second)
	last := time.Now()
	for time.Now().Before(deadline) && len(got) < want && time.Since(last) < quiet {
		ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
		fs := cl.PollFetches(ctx)
		cancel()
		fs.EachRecord(func(r *kgo.Record) {
			got = append(got, string(r.Value))
			last = time.Now()
		})
	}
	sort.Strings(got)
	return got
}

func values(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s-%02d", prefix, i)
	}
	return out
}

func sortedJoin(parts ...[]string) []string {
	var out []string
	for _, p := range parts {
		out = append(out, p...)
	}
	sort.Strings(out)
	return out
}

// A read_committed consumer sees the records of committed transactions and
// none of aborted ones; a read_uncommitted consumer sees both. The same
// holds after a restart, which rebuilds the aborted ranges from the WAL.
func TestTransactionsCommitAndAbort(t *testing.T) {
	dir := t.TempDir()
	b, addr := startBroker(t, dir)
	admin := newClient(t, addr)
	createTopic(t, admin, "tx", 3)
	p := txnProducer(t, addr, "app-1", "tx")
	c1, a1, c2 := values("commit1", 10), values("abort", 10), values("commit2", 5)
	runTxn(t, p, true, c1...)
	runTxn(t, p, false, a1...)
	runTxn(t, p, true, c2...)
	wantCommitted := sortedJoin(c1, c2)
	if got := readAll(t, addr, "tx", true, len(wantCommitted)+1, 2*time.Second); !slices.Equal(got, wantCommitted) {
		t.Fatalf("read_committed got %d records %v, want %d %v", len(got), got, len(wantCommitted), wantCommitted)
	}
	all := sortedJoin(c1, a1, c2)
	if got := readAll(t, addr, "tx", false, len(all)+1, 2*time.Second); !slices.Equal(got, all) {
		t.Fatalf("read_uncommitted got %d records, want %d", len(got), len(all))
	}
	p.Close()
	admin.Close()
	b.Close()
	_, addr = startBroker(t, dir)
	if got := readAll(t, addr, "tx", true, len(wantCommitted)+1, 2*time.Second); !slices.Equal(got, wantCommitted) {
		t.Fatalf("after a restart read_committed got %d records, want %d", len(got), len(wantCommitted))
	}
	// The transactional id carries on after the restart with a new epoch.
	p = txnProducer(t, addr, "app-1", "tx")
	c3 := values("commit3", 3)
	runTxn(t, p, true, c3...)
	want := sortedJoin(wantCommitted, c3)
	if got := readAll(t, addr, "tx", true, len(want)+1, 2*time.Second); !slices.Equal(got, want) {
		t.Fatalf("after the restart's transaction read_committed got %v, want %v", got, want)
	}
}

func listLatest(t *testing.T, cl *kgo.Client, topic string, isolation int8) int64 {
	t.Helper()
	req := kmsg.NewPtrListOffsetsRequest()
	req.IsolationLevel = isolation
	rt := kmsg.NewListOffsetsRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewListOffsetsRequestTopicPartition()
	rp.Partition, rp.Timestamp = 0, -1
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(t.Context(), cl)
	if err != nil || resp.Topics[0].Partitions[0].ErrorCode != 0 {
		t.Fatalf("ListOffsets: %v %+v", err, resp)
	}
	return resp.Topics[0].Partitions[0].Offset
}

// An open transaction holds read_committed consumers at its first offset
// (the last stable offset), also for records written after it outside the
// transaction, until it ends.
func TestOpenTransactionHoldsLastStableOffset(t *testing.T) {
	_, addr := startBroker(t, t.TempDir())
	admin := newClient(t, addr)
	createTopic(t, admin, "lso", 1)
	plain := newClient(t, addr, kgo.DefaultProduceTopic("lso"))
	if err := plain.ProduceSync(t.Context(), kgo.StringRecord("before")).FirstErr(); err != nil {
		t.Fatal(err)
	}
	p := txnProducer(t, addr, "app-lso", "lso")
	if err := p.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := p.ProduceSync(t.Context(), kgo.StringRecord("in-txn")).FirstErr(); err != nil {
		t.Fatal(err)
	}
	if err := plain.ProduceSync(t.Context(), kgo.StringRecord("after")).FirstErr(); err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, addr, "lso", true, 3, time.Second); !slices.Equal(got, []string{"before"}) {
		t.Fatalf("read_committed with a transaction open got %v, want only [before]", got)
	}
	if got := readAll(t, addr, "lso", false, 3, time.Second); len(got) != 3 {
		t.Fatalf("read_uncommitted got %v, want all three", got)
	}
	if lso, hw := listLatest(t, admin, "lso", 1), listLatest(t, admin, "lso", 0); lso != 1 || hw != 3 {
		t.Fatalf("latest offsets: read_committed %d, read_uncommitted %d; want 1 (the transaction's first offset) and 3", lso, hw)
	}
	if err := p.EndTransaction(t.Context(), kgo.TryCommit); err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, addr, "lso", true, 3, 2*time.Second); !slices.Equal(got, []string{"after", "before", "in-txn"}) {
		t.Fatalf("read_committed after the commit got %v", got)
	}
	// The commit marker takes an offset of its own.
	if lso := listLatest(t, admin, "lso", 1); lso != 4 {
		t.Fatalf("latest read_committed offset after the commit %d, want 4", lso)
	}
}

// A transaction left open past its timeout is aborted by the coordinator,
// which fences its producer: its commit fails, and no consumer sees it.
func TestTransactionTimeoutAborts(t *testing.T) {
	b, addr := startBrokerWith(t, t.TempDir(), func(c *Config) { c.TransactionCheckInterval = 50 * time.Millisecond })
	admin := newClient(t, addr)
	createTopic(t, admin, "slow", 1)
	p := txnProducer(t, addr, "app-slow", "slow", kgo.TransactionTimeout(500*time.Millisecond))
	if err := p.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := p.ProduceSync(t.Context(), kgo.StringRecord("too-late")).FirstErr(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for listLatest(t, admin, "slow", 1) != 2 {
		if time.Now().After(deadline) {
			t.Fatalf("the expired transaction was not aborted: read_committed latest offset %d", listLatest(t, admin, "slow", 1))
		}
		time.Sleep(50 * time.Millisecond)
	}
	err := p.EndTransaction(t.Context(), kgo.TryCommit)
	if err == nil {
		t.Fatal("committing a transaction that the coordinator aborted succeeded")
	}
	t.Logf("commit after the timeout: %v", err)
	if got := readAll(t, addr, "slow", true, 1, time.Second); len(got) != 0 {
		t.Fatalf("read_committed got %v from an aborted transaction", got)
	}
	if got := testutil.ToFloat64(b.metrics.transactions.WithLabelValues("timeout")); got != 1 {
		t.Fatalf("transactions_total{result=timeout} = %v, want 1", got)
	}
}

// A second producer with the same transactional id fences the first: the
// first one's open transaction is aborted and it can no longer commit.
func TestNewProducerFencesOldOne(t *testing.T) {
	_, addr := startBroker(t, t.TempDir())
	admin := newClient(t, addr)
	createTopic(t, admin, "fence", 1)
	old := txnProducer(t, addr, "app-fence", "fence")
	if err := old.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := old.ProduceSync(t.Context(), kgo.StringRecord("zombie")).FirstErr(); err != nil {
		t.Fatal(err)
	}
	fresh := txnProducer(t, addr, "app-fence", "fence")
	runTxn(t, fresh, true, "fresh")
	if err := old.EndTransaction(t.Context(), kgo.TryCommit); err == nil {
		t.Fatal("the fenced producer committed")
	} else {
		t.Logf("fenced producer's commit: %v", err)
	}
	if got := readAll(t, addr, "fence", true, 2, time.Second); !slices.Equal(got, []string{"fresh"}) {
		t.Fatalf("read_committed got %v, want [fresh]", got)
	}
}

// Offsets committed in a transaction (TxnOffsetCommit) take effect with
// its commit, are dropped with its abort, and are unstable for a consumer
// that asks for stable offsets (KIP-447) while it is open.
func TestTransactionalOffsetCommit(t *testing.T) {
	_, addr := startBroker(t, t.TempDir())
	admin := newClient(t, addr)
	createTopic(t, admin, "in", 1)
	createTopic(t, admin, "out", 1)
	p := txnProducer(t, addr, "app-eos", "out")
	ctx := t.Context()
	commitOffset := func(off int64, commit bool, checkOpen func()) {
		t.Helper()
		if err := p.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		if err := p.ProduceSync(ctx, kgo.StringRecord(fmt.Sprint("out-", off))).FirstErr(); err != nil {
			t.Fatal(err)
		}
		pid, epoch, err := p.ProducerID(ctx)
		if err != nil {
			t.Fatal(err)
		}
		ao := kmsg.NewPtrAddOffsetsToTxnRequest()
		ao.TransactionalID, ao.ProducerID, ao.ProducerEpoch, ao.Group = "app-eos", pid, epoch, "eos-group"
		if resp, err := ao.RequestWith(ctx, p); err != nil || resp.ErrorCode != 0 {
			t.Fatalf("AddOffsetsToTxn: %v %+v", err, resp)
		}
		oc := kmsg.NewPtrTxnOffsetCommitRequest()
		oc.TransactionalID, oc.Group, oc.ProducerID, oc.ProducerEpoch = "app-eos", "eos-group", pid, epoch
		oc.Generation = -1
		ot := kmsg.NewTxnOffsetCommitRequestTopic()
		ot.Topic = "in"
		op := kmsg.NewTxnOffsetCommitRequestTopicPartition()
		op.Partition, op.Offset = 0, off
		ot.Partitions = append(ot.Partitions, op)
		oc.Topics = append(oc.Topics, ot)
		resp, err := oc.RequestWith(ctx, p)
		if err != nil || resp.Topics[0].Partitions[0].ErrorCode != 0 {
			t.Fatalf("TxnOffsetCommit: %v %+v", err, resp)
		}
		checkOpen()
		if err := p.EndTransaction(ctx, kgo.TransactionEndTry(commit)); err != nil {
			t.Fatal(err)
		}
	}
	fetchOffset := func(stable bool) (int64, *kerr.Error) {
		t.Helper()
		req := kmsg.NewPtrOffsetFetchRequest()
		req.Group, req.RequireStable = "eos-group", stable
		rt := kmsg.NewOffsetFetchRequestTopic()
		rt.Topic, rt.Partitions = "in", []int32{0}
		req.Topics = append(req.Topics, rt)
		req.Version = 7
		resp, err := req.RequestWith(ctx, admin)
		if err != nil {
			t.Fatal(err)
		}
		sp := resp.Topics[0].Partitions[0]
		var e *kerr.Error
		if sp.ErrorCode != 0 {
			e = kerr.ErrorForCode(sp.ErrorCode).(*kerr.Error)
		}
		return sp.Offset, e
	}
	commitOffset(5, true, func() {
		if off, e := fetchOffset(true); !errors.Is(e, kerr.UnstableOffsetCommit) {
			t.Fatalf("stable OffsetFetch during the transaction: offset %d, error %v; want UNSTABLE_OFFSET_COMMIT", off, e)
		}
		if off, e := fetchOffset(false); e != nil || off != -1 {
			t.Fatalf("OffsetFetch during the transaction: offset %d, error %v; want -1 (nothing committed yet)", off, e)
		}
	})
	if off, e := fetchOffset(true); e != nil || off != 5 {
		t.Fatalf("after the commit: offset %d, error %v; want 5", off, e)
	}
	commitOffset(9, false, func() {})
	if off, e := fetchOffset(true); e != nil || off != 5 {
		t.Fatalf("after an aborted transaction: offset %d, error %v; want 5 still", off, e)
	}
}

// A transaction that a leader prepared but did not complete (it died
// between the prepare entry and the markers) is completed by the janitor,
// with the outcome that was prepared.
func TestPreparedTransactionIsCompleted(t *testing.T) {
	dir := t.TempDir()
	b, addr := startBrokerWith(t, dir, func(c *Config) { c.TransactionCheckInterval = time.Hour })
	admin := newClient(t, addr)
	createTopic(t, admin, "prep", 2)
	p := txnProducer(t, addr, "app-prep", "prep")
	if err := p.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	vals := values("prepared", 4)
	for _, v := range vals {
		if err := p.ProduceSync(t.Context(), kgo.StringRecord(v)).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	// What a leader that died right after the prepare entry leaves.
	b.appendMu.Lock()
	prep := b.txns["app-prep"].clone()
	prep.State = txnPrepareCommit
	if _, err := b.appendTxnLocked(prep); err != nil {
		b.appendMu.Unlock()
		t.Fatal(err)
	}
	b.appendMu.Unlock()
	p.Close()
	admin.Close()
	b.Close()
	b, addr = startBrokerWith(t, dir, func(c *Config) { c.TransactionCheckInterval = 50 * time.Millisecond })
	if got := readAll(t, addr, "prep", true, len(vals), 5*time.Second); !slices.Equal(got, vals) {
		t.Fatalf("read_committed got %v, want the prepared transaction's %v", got, vals)
	}
	b.appendMu.Lock()
	state := b.txns["app-prep"].State
	b.appendMu.Unlock()
	if state != txnCompleteCommit {
		t.Fatalf("transaction state %s, want %s", state, txnCompleteCommit)
	}
}

// Transactional requests need the transactional id's producer: a wrong
// producer id or epoch, or a partition not added to the transaction, is
// refused and nothing is written.
func TestTransactionalProduceChecks(t *testing.T) {
	_, addr := startBroker(t, t.TempDir())
	cl := newClient(t, addr)
	createTopic(t, cl, "chk", 1)
	init := kmsg.NewPtrInitProducerIDRequest()
	tid := "app-chk"
	init.TransactionalID, init.TransactionTimeoutMillis = &tid, 60000
	ir, err := init.RequestWith(t.Context(), cl)
	if err != nil || ir.ErrorCode != 0 {
		t.Fatalf("InitProducerId: %v %+v", err, ir)
	}
	produce := func(epoch int16) int16 {
		req := kmsg.NewPtrProduceRequest()
		req.TransactionID = &tid
		req.Acks, req.TimeoutMillis = -1, 5000
		rt := kmsg.NewProduceRequestTopic()
		rt.Topic = "chk"
		rp := kmsg.NewProduceRequestTopicPartition()
		raw := rawBatch(ir.ProducerID, epoch, 0, 1)
		raw[22] |= 0x10 // transactional
		fixBatchCRC(raw)
		rp.Records = raw
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		resp, err := req.RequestWith(t.Context(), cl)
		if err != nil {
			t.Fatal(err)
		}
		return resp.Topics[0].Partitions[0].ErrorCode
	}
	if code := produce(ir.ProducerEpoch); code != kerr.InvalidTxnState.Code {
		t.Fatalf("produce into a partition not added: %v, want INVALID_TXN_STATE", kerr.ErrorForCode(code))
	}
	ap := kmsg.NewPtrAddPartitionsToTxnRequest()
	ap.TransactionalID, ap.ProducerID, ap.ProducerEpoch = tid, ir.ProducerID, ir.ProducerEpoch+1
	at := kmsg.NewAddPartitionsToTxnRequestTopic()
	at.Topic, at.Partitions = "chk", []int32{0}
	ap.Topics = append(ap.Topics, at)
	if resp, err := ap.RequestWith(t.Context(), cl); err != nil || resp.Topics[0].Partitions[0].ErrorCode != kerr.ProducerFenced.Code {
		t.Fatalf("AddPartitionsToTxn with a wrong epoch: %v %+v", err, resp)
	}
	ap = kmsg.NewPtrAddPartitionsToTxnRequest() // the client rewrote the first one (v4 batching)
	ap.TransactionalID, ap.ProducerID, ap.ProducerEpoch = tid, ir.ProducerID, ir.ProducerEpoch
	ap.Topics = append(ap.Topics, at)
	if resp, err := ap.RequestWith(t.Context(), cl); err != nil || resp.Topics[0].Partitions[0].ErrorCode != 0 {
		t.Fatalf("AddPartitionsToTxn: %v %+v", err, resp)
	}
	if code := produce(ir.ProducerEpoch); code != 0 {
		t.Fatalf("transactional produce: %v", kerr.ErrorForCode(code))
	}
	end := kmsg.NewPtrEndTxnRequest()
	end.TransactionalID, end.ProducerID, end.ProducerEpoch, end.Commit = tid, ir.ProducerID+1, ir.ProducerEpoch, true
	if resp, err := end.RequestWith(t.Context(), cl); err != nil || resp.ErrorCode != kerr.InvalidProducerIDMapping.Code {
		t.Fatalf("EndTxn with another producer id: %v %+v", err, resp)
	}
	end.ProducerID = ir.ProducerID
	for range 2 { // the second is a retry: the same answer
		if resp, err := end.RequestWith(t.Context(), cl); err != nil || resp.ErrorCode != 0 {
			t.Fatalf("EndTxn: %v %+v", err, resp)
		}
	}
	end.Commit = false
	if resp, err := end.RequestWith(t.Context(), cl); err != nil || resp.ErrorCode != kerr.InvalidTxnState.Code {
		t.Fatalf("aborting a committed transaction: %v %+v", err, resp)
	}
	init.TransactionTimeoutMillis = int32((time.Hour).Milliseconds())
	if resp, err := init.RequestWith(t.Context(), cl); err != nil || resp.ErrorCode != kerr.InvalidTransactionTimeout.Code {
		t.Fatalf("InitProducerId with a timeout past the maximum: %v %+v", err, resp)
	}
}

// The marker batches the coordinator writes are valid record batches that
// decode as Kafka's end transaction markers.
func TestControlBatch(t *testing.T) {
	for _, commit := range []bool{true, false} {
		raw := controlBatch(42, 7, commit, 1234)
		recs, infos, err := splitBatches(append([]byte(nil), raw...), 1<<20)
		if err == nil || len(recs) != 0 {
			// Clients may not produce control batches: splitBatches
			// refuses them, after checking the CRC and the header.
			t.Fatalf("splitBatches accepted a control batch: %v %v", infos, err)
		}
		var rb kmsg.RecordBatch
		if err := rb.ReadFrom(raw); err != nil {
			t.Fatal(err)
		}
		if rb.ProducerID != 42 || rb.ProducerEpoch != 7 || rb.Attributes != 0x30 || rb.NumRecords != 1 {
			t.Fatalf("marker batch header %+v", rb)
		}
		if !batchCRCOK(raw) {
			t.Fatal("marker batch CRC does not match")
		}
		typ, ok := markerType(raw)
		if want := int16(markerAbort); commit {
			want = markerCommit
			if !ok || typ != want {
				t.Fatalf("marker type %d %v, want %d", typ, ok, want)
			}
		} else if !ok || typ != want {
			t.Fatalf("marker type %d %v, want %d", typ, ok, want)
		}
		var rec kmsg.Record
		if err := rec.ReadFrom(rb.Records); err != nil {
			t.Fatal(err)
		}
		if len(rec.Key) != 4 || len(rec.Value) != 6 {
			t.Fatalf("marker record key %x value %x", rec.Key, rec.Value)
		}
	}
}

func fixBatchCRC(raw []byte) {
	binary.BigEndian.PutUint32(raw[17:21], crc32c(raw[batchCRCStart:]))
}

func batchCRCOK(raw []byte) bool {
	return binary.BigEndian.Uint32(raw[17:21]) == crc32c(raw[batchCRCStart:])
}

// Operators see transactions through ListTransactions and
// DescribeTransactions (kadm, as kafka-transactions.sh).
func TestListAndDescribeTransactions(t *testing.T) {
	_, addr := startBroker(t, t.TempDir())
	cl := newClient(t, addr)
	createTopic(t, cl, "ops", 2)
	adm := kadm.NewClient(cl)
	p := txnProducer(t, addr, "app-ops", "ops")
	if err := p.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	for _, v := range values("ops", 2) {
		if err := p.ProduceSync(t.Context(), kgo.StringRecord(v)).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	pid, _, err := p.ProducerID(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	listed, err := adm.ListTransactions(t.Context(), nil, []string{"Ongoing"})
	if err != nil {
		t.Fatal(err)
	}
	if l, ok := listed["app-ops"]; !ok || l.ProducerID != pid || l.State != "Ongoing" || len(listed) != 1 {
		t.Fatalf("ListTransactions(Ongoing) = %+v, want app-ops ongoing with producer id %d", listed, pid)
	}
	described, err := adm.DescribeTransactions(t.Context(), "app-ops", "no-such-id")
	if err != nil {
		t.Fatal(err)
	}
	d := described["app-ops"]
	if d.Err != nil || d.State != "Ongoing" || d.ProducerID != pid || d.StartTimestamp <= 0 || len(d.Topics["ops"]) != 2 {
		t.Fatalf("DescribeTransactions(app-ops) = %+v", d)
	}
	if e := described["no-such-id"].Err; !errors.Is(e, kerr.TransactionalIDNotFound) {
		t.Fatalf("DescribeTransactions of an unknown id: %v, want TRANSACTIONAL_ID_NOT_FOUND", e)
	}
	if err := p.EndTransaction(t.Context(), kgo.TryCommit); err != nil {
		t.Fatal(err)
	}
	listed, err = adm.ListTransactions(t.Context(), nil, []string{"Ongoing"})
	if err != nil || len(listed) != 0 {
		t.Fatalf("ListTransactions(Ongoing) after the commit = %+v, %v; want none", listed, err)
	}
	described, err = adm.DescribeTransactions(t.Context(), "app-ops")
	if err != nil || described["app-ops"].State != "CompleteCommit" {
		t.Fatalf("DescribeTransactions after the commit = %+v, %v", described, err)
	}
}

// A transaction's records stay above the last stable offset until its
// marker is committed, not merely written: a leader that dies before the
// marker reaches the followers leaves the transaction to be aborted by
// the next one.
func TestLastStableOffsetWaitsForCommittedMarker(t *testing.T) {
	p := newPartition("t", 0)
	data := func(pid, base int64, n int32) {
		raw := rawBatch(pid, 0, 0, int(n))
		binary.BigEndian.PutUint64(raw[0:8], uint64(base))
		raw[22] |= 0x10
		info, err := parseBatch(raw)
		if err != nil {
			t.Fatal(err)
		}
		p.mu.Lock()
		p.next = info.lastOffset() + 1
		p.applyTxnBatchLocked(info, raw)
		p.mu.Unlock()
	}
	marker := func(pid, base int64, commit bool) {
		raw := controlBatch(pid, 0, commit, 0)
		binary.BigEndian.PutUint64(raw[0:8], uint64(base))
		info, err := parseBatch(raw)
		if err != nil {
			t.Fatal(err)
		}
		p.mu.Lock()
		p.next = base + 1
		p.applyTxnBatchLocked(info, raw)
		p.mu.Unlock()
	}
	setHW := func(hw int64) {
		p.mu.Lock()
		p.setHWLocked(hw)
		p.mu.Unlock()
	}
	data(7, 0, 3) // offsets 0-2, producer 7
	data(8, 3, 2) // offsets 3-4, producer 8
	setHW(5)
	if lso := p.lso(); lso != 0 {
		t.Fatalf("with two open transactions: LSO %d, want 0", lso)
	}
	marker(7, 5, true)
	if lso := p.lso(); lso != 0 {
		t.Fatalf("with producer 7's commit marker written but not committed: LSO %d, want 0", lso)
	}
	setHW(6)
	if lso := p.lso(); lso != 3 {
		t.Fatalf("with the marker committed: LSO %d, want 3 (producer 8's first offset)", lso)
	}
	data(7, 6, 1) // producer 7's next transaction
	marker(8, 7, false)
	setHW(8)
	if lso := p.lso(); lso != 6 {
		t.Fatalf("LSO %d, want 6 (producer 7's second transaction)", lso)
	}
	if got := p.abortedBetween(0, 8); len(got) != 1 || got[0] != (abortedTxn{pid: 8, first: 3, last: 7}) {
		t.Fatalf("aborted transactions %+v, want producer 8's, offsets 3 to 7", got)
	}
	if got := p.abortedBetween(0, 3); len(got) != 0 {
		t.Fatalf("aborted transactions below offset 3: %+v, want none", got)
	}
	marker(7, 8, true)
	setHW(9)
	if lso := p.lso(); lso != 9 || len(p.openTxns) != 0 {
		t.Fatalf("with every transaction ended: LSO %d, open %+v; want 9 and none", lso, p.openTxns)
	}
}

// With --acls a transactional producer needs Write on its transactional id
// besides Write on the topic; without it, it cannot even start.
func TestTransactionACLs(t *testing.T) {
	addr, admin := startACLBroker(t, "paid")
	createACLs(t, admin, kadm.NewACLs().Allow("User:alice").Topics("paid").Operations(kadm.OpWrite, kadm.OpDescribe, kadm.OpRead))
	start := func() error {
		cl := newClient(t, addr, loginAs("alice"), kgo.TransactionalID("alice-app"), kgo.DefaultProduceTopic("paid"),
			kgo.RecordRetries(1), kgo.RequestRetries(1))
		defer cl.Close()
		if err := cl.BeginTransaction(); err != nil {
			return err
		}
		if err := cl.ProduceSync(t.Context(), kgo.StringRecord("x")).FirstErr(); err != nil {
			return err
		}
		return cl.EndTransaction(t.Context(), kgo.TryCommit)
	}
	if err := start(); !errors.Is(err, kerr.TransactionalIDAuthorizationFailed) {
		t.Fatalf("without Write on the transactional id: %v, want TRANSACTIONAL_ID_AUTHORIZATION_FAILED", err)
	}
	createACLs(t, admin, kadm.NewACLs().Allow("User:alice").TransactionalIDs("alice-app").Operations(kadm.OpWrite, kadm.OpDescribe))
	if err := start(); err != nil {
		t.Fatalf("with Write on the transactional id: %v", err)
	}
	// The refused attempt wrote nothing: only the committed record is there.
	if got := readAll(t, addr, "paid", true, 2, 2*time.Second, loginAs("admin")); !slices.Equal(got, []string{"x"}) {
		t.Fatalf("read_committed got %v, want [x]", got)
	}
}

// The transaction coordinator's state goes into state checkpoints (which
// stand in for WAL segments that retention deleted) and comes back from
// them whole: an open transaction with its partitions and pending offsets.
func TestTransactionsInStateCheckpoint(t *testing.T) {
	b, addr := startBroker(t, t.TempDir())
	cl := newClient(t, addr)
	createTopic(t, cl, "cp", 2)
	p := txnProducer(t, addr, "app-cp", "cp")
	runTxn(t, p, true, "a", "b")
	if err := p.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := p.ProduceSync(t.Context(), kgo.StringRecord("open")).FirstErr(); err != nil {
		t.Fatal(err)
	}
	pid, epoch, err := p.ProducerID(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	ao := kmsg.NewPtrAddOffsetsToTxnRequest()
	ao.TransactionalID, ao.ProducerID, ao.ProducerEpoch, ao.Group = "app-cp", pid, epoch, "g"
	if resp, err := ao.RequestWith(t.Context(), p); err != nil || resp.ErrorCode != 0 {
		t.Fatalf("AddOffsetsToTxn: %v %+v", err, resp)
	}
	oc := kmsg.NewPtrTxnOffsetCommitRequest()
	oc.TransactionalID, oc.Group, oc.ProducerID, oc.ProducerEpoch, oc.Generation = "app-cp", "g", pid, epoch, -1
	ot := kmsg.NewTxnOffsetCommitRequestTopic()
	ot.Topic = "cp"
	op := kmsg.NewTxnOffsetCommitRequestTopicPartition()
	op.Partition, op.Offset = 1, 42
	ot.Partitions = append(ot.Partitions, op)
	oc.Topics = append(oc.Topics, ot)
	if resp, err := oc.RequestWith(t.Context(), p); err != nil || resp.Topics[0].Partitions[0].ErrorCode != 0 {
		t.Fatalf("TxnOffsetCommit: %v %+v", err, resp)
	}
	b.appendMu.Lock()
	cp := b.snapshotLocked()
	want := b.txns["app-cp"].clone()
	b.appendMu.Unlock()
	data, err := json.Marshal(cp)
	if err != nil {
		t.Fatal(err)
	}
	var back stateCheckpoint
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatal(err)
	}
	b2, _ := startBroker(t, t.TempDir())
	b2.appendMu.Lock()
	b2.restoreCheckpointLocked(back)
	got := b2.txns["app-cp"]
	b2.appendMu.Unlock()
	if got == nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("restored %+v, want %+v", got, want)
	}
	if got.State != txnOngoing || len(got.Partitions) == 0 || got.Offsets["g"][0].Offset != 42 {
		t.Fatalf("restored state lacks the open transaction: %+v", got)
	}
}

// KIP-588: a producer whose transaction the coordinator aborted at its
// timeout is fenced (PRODUCER_FENCED) until it claims the bumped epoch
// with InitProducerId, presenting its old one; a producer that another
// producer of the id replaced cannot claim anything.
func TestTimedOutProducerRecoversFencedDoesNot(t *testing.T) {
	_, addr := startBrokerWith(t, t.TempDir(), func(c *Config) { c.TransactionCheckInterval = 50 * time.Millisecond })
	cl := newClient(t, addr)
	createTopic(t, cl, "rec", 1)
	tid := "app-rec"
	initReq := func(pid int64, epoch int16) (*kmsg.InitProducerIDResponse, error) {
		r := kmsg.NewPtrInitProducerIDRequest()
		r.TransactionalID, r.TransactionTimeoutMillis = &tid, 300
		r.ProducerID, r.ProducerEpoch = pid, epoch
		return r.RequestWith(t.Context(), cl)
	}
	add := func(pid int64, epoch int16) int16 {
		ap := kmsg.NewPtrAddPartitionsToTxnRequest()
		ap.TransactionalID, ap.ProducerID, ap.ProducerEpoch = tid, pid, epoch
		at := kmsg.NewAddPartitionsToTxnRequestTopic()
		at.Topic, at.Partitions = "rec", []int32{0}
		ap.Topics = append(ap.Topics, at)
		resp, err := ap.RequestWith(t.Context(), cl)
		if err != nil {
			t.Fatal(err)
		}
		return resp.Topics[0].Partitions[0].ErrorCode
	}
	first, err := initReq(-1, -1)
	if err != nil || first.ErrorCode != 0 {
		t.Fatalf("InitProducerId: %v %+v", err, first)
	}
	pid, epoch := first.ProducerID, first.ProducerEpoch
	if code := add(pid, epoch); code != 0 {
		t.Fatalf("AddPartitionsToTxn: %v", kerr.ErrorForCode(code))
	}
	// The transaction expires (300 ms) and is aborted with the epoch bumped.
	deadline := time.Now().Add(10 * time.Second)
	for add(pid, epoch) != kerr.ProducerFenced.Code {
		if time.Now().After(deadline) {
			t.Fatal("the expired transaction's producer was not fenced")
		}
		time.Sleep(50 * time.Millisecond)
	}
	again, err := initReq(pid, epoch)
	if err != nil || again.ErrorCode != 0 || again.ProducerID != pid || again.ProducerEpoch != epoch+1 {
		t.Fatalf("the timed-out producer claiming its bumped epoch: %v %+v, want producer %d epoch %d", err, again, pid, epoch+1)
	}
	retry, err := initReq(pid, epoch)
	if err != nil || retry.ErrorCode != 0 || retry.ProducerEpoch != epoch+1 {
		t.Fatalf("a retry of the claim: %v %+v, want epoch %d again", err, retry, epoch+1)
	}
	if code := add(pid, epoch+1); code != 0 {
		t.Fatalf("AddPartitionsToTxn after the claim: %v", kerr.ErrorForCode(code))
	}
	// Another producer of the id takes over: the first one's epoch is fenced for good.
	other, err := initReq(-1, -1)
	if err != nil || other.ErrorCode != 0 || other.ProducerEpoch != epoch+2 {
		t.Fatalf("a new producer of the id: %v %+v", err, other)
	}
	if resp, err := initReq(pid, epoch+1); err != nil || resp.ErrorCode != kerr.ProducerFenced.Code {
		t.Fatalf("the replaced producer re-initialising: %v %+v, want PRODUCER_FENCED", err, resp)
	}
	if code := add(pid, epoch+1); code != kerr.ProducerFenced.Code {
		t.Fatalf("the replaced producer's AddPartitionsToTxn: %v, want PRODUCER_FENCED", kerr.ErrorForCode(code))
	}
}

// WriteTxnMarkers (an operator's abort, KIP-664) writes an abort marker on
// a partition where a producer has records of a transaction the
// coordinator does not hold open: a hanging transaction stops holding the
// last stable offset. Commit markers are refused.
func TestWriteTxnMarkersAbortsHangingTransaction(t *testing.T) {
	b, addr := startBroker(t, t.TempDir())
	cl := newClient(t, addr)
	createTopic(t, cl, "hang", 1)
	p := txnProducer(t, addr, "app-hang", "hang")
	if err := p.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := p.ProduceSync(t.Context(), kgo.StringRecord("h")).FirstErr(); err != nil {
		t.Fatal(err)
	}
	pid, epoch, err := p.ProducerID(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	// What a coordinator that lost track of the transaction leaves: the
	// partition's records without a marker, the id not open.
	b.appendMu.Lock()
	b.txns["app-hang"].State = txnCompleteAbort
	b.appendMu.Unlock()
	if lso := listLatest(t, cl, "hang", 1); lso != 0 {
		t.Fatalf("LSO %d with the hanging transaction, want 0", lso)
	}
	write := func(commit bool) int16 {
		req := kmsg.NewPtrWriteTxnMarkersRequest()
		m := kmsg.NewWriteTxnMarkersRequestMarker()
		m.ProducerID, m.ProducerEpoch, m.Committed = pid, epoch, commit
		mt := kmsg.NewWriteTxnMarkersRequestMarkerTopic()
		mt.Topic, mt.Partitions = "hang", []int32{0}
		m.Topics = append(m.Topics, mt)
		req.Markers = append(req.Markers, m)
		resp, err := req.RequestWith(t.Context(), cl)
		if err != nil {
			t.Fatal(err)
		}
		return resp.Markers[0].Topics[0].Partitions[0].ErrorCode
	}
	if code := write(true); code != kerr.InvalidTxnState.Code {
		t.Fatalf("a commit marker: %v, want INVALID_TXN_STATE", kerr.ErrorForCode(code))
	}
	if code := write(false); code != 0 {
		t.Fatalf("an abort marker: %v", kerr.ErrorForCode(code))
	}
	if lso, hw := listLatest(t, cl, "hang", 1), listLatest(t, cl, "hang", 0); lso != 2 || hw != 2 {
		t.Fatalf("after the abort marker: LSO %d, high watermark %d; want 2 and 2", lso, hw)
	}
	if got := readAll(t, addr, "hang", true, 1, time.Second); len(got) != 0 {
		t.Fatalf("read_committed got %v of the aborted transaction", got)
	}
}

// DescribeProducers lists a partition's producers with their epoch, last
// sequence, last timestamp and the first offset of an open transaction.
func TestDescribeProducers(t *testing.T) {
	_, addr := startBroker(t, t.TempDir())
	cl := newClient(t, addr)
	createTopic(t, cl, "dp", 1)
	plain := newClient(t, addr, kgo.DefaultProduceTopic("dp"))
	last := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for i, v := range []string{"x", "y"} {
		r := &kgo.Record{Value: []byte(v), Timestamp: last.Add(time.Duration(i-1) * time.Hour)}
		if err := plain.ProduceSync(t.Context(), r).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	plainPID, _, err := plain.ProducerID(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	p := txnProducer(t, addr, "app-dp", "dp")
	if err := p.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := p.ProduceSync(t.Context(), kgo.StringRecord("t")).FirstErr(); err != nil {
		t.Fatal(err)
	}
	txnPID, _, err := p.ProducerID(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	described, err := kadm.NewClient(cl).DescribeProducers(t.Context(), kadm.TopicsSet{"dp": {0: {}}})
	if err != nil {
		t.Fatal(err)
	}
	dp, ok := described["dp"].Partitions[0]
	if !ok || dp.Err != nil || len(dp.ActiveProducers) != 2 {
		t.Fatalf("DescribeProducers: %+v", described)
	}
	got := dp.ActiveProducers
	if a := got[plainPID]; a.LastSequence != 1 || a.CurrentTxnStartOffset != -1 || a.LastTimestamp != last.UnixMilli() {
		t.Fatalf("the idempotent producer: %+v, want last sequence 1, last timestamp %d (its last record's) and no transaction", a, last.UnixMilli())
	}
	if a := got[txnPID]; a.LastSequence != 0 || a.CurrentTxnStartOffset != 2 {
		t.Fatalf("the transactional producer: %+v, want last sequence 0 and its transaction from offset 2", a)
	}
}

// A transactional id unused for transactional.id.expiration.ms with no
// transaction open is forgotten: its next producer starts with a new
// producer id. An id with a transaction open is not.
func TestTransactionalIDExpires(t *testing.T) {
	_, addr := startBrokerWith(t, t.TempDir(), func(c *Config) {
		c.TransactionCheckInterval = 50 * time.Millisecond
		c.TransactionalIDExpiration = 300 * time.Millisecond
	})
	cl := newClient(t, addr)
	createTopic(t, cl, "exp", 1)
	p := txnProducer(t, addr, "app-exp", "exp")
	runTxn(t, p, true, "one")
	firstPID, _, err := p.ProducerID(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	open := txnProducer(t, addr, "app-open", "exp", kgo.TransactionTimeout(time.Minute))
	if err := open.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := open.ProduceSync(t.Context(), kgo.StringRecord("open")).FirstErr(); err != nil {
		t.Fatal(err)
	}
	adm := kadm.NewClient(cl)
	deadline := time.Now().Add(10 * time.Second)
	for {
		d, err := adm.DescribeTransactions(t.Context(), "app-exp")
		if err != nil {
			t.Fatal(err)
		}
		if errors.Is(d["app-exp"].Err, kerr.TransactionalIDNotFound) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the idle transactional id was not forgotten: %+v", d["app-exp"])
		}
		time.Sleep(50 * time.Millisecond)
	}
	if d, err := adm.DescribeTransactions(t.Context(), "app-open"); err != nil || d["app-open"].State != "Ongoing" {
		t.Fatalf("the id with a transaction open: %+v, %v; want it still Ongoing", d["app-open"], err)
	}
	p.Close()
	p = txnProducer(t, addr, "app-exp", "exp")
	runTxn(t, p, true, "two")
	if pid, _, err := p.ProducerID(t.Context()); err != nil || pid == firstPID {
		t.Fatalf("after expiry the id got producer id %d (%v), want a new one (not %d)", pid, err, firstPID)
	}
	if err := open.EndTransaction(t.Context(), kgo.TryCommit); err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, addr, "exp", true, 3, 2*time.Second); !slices.Equal(got, []string{"one", "open", "two"}) {
		t.Fatalf("read_committed got %v", got)
	}
}

// The metrics show how many transactions are open and how long the oldest
// has run, which is what an alert on stuck read_committed consumers needs.
func TestOpenTransactionMetrics(t *testing.T) {
	b, addr := startBroker(t, t.TempDir())
	cl := newClient(t, addr)
	createTopic(t, cl, "met", 1)
	open, oldest := func() float64 {
		n, _ := b.openTransactions(time.Now())
		return float64(n)
	}, func() time.Duration {
		_, d := b.openTransactions(time.Now())
		return d
	}
	if open() != 0 || oldest() != 0 {
		t.Fatalf("with no transaction: %v open, oldest %v", open(), oldest())
	}
	p := txnProducer(t, addr, "app-met", "met")
	if err := p.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := p.ProduceSync(t.Context(), kgo.StringRecord("m")).FirstErr(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	if open() != 1 || oldest() < 200*time.Millisecond {
		t.Fatalf("with one transaction open 200ms: %v open, oldest %v", open(), oldest())
	}
	if err := p.EndTransaction(t.Context(), kgo.TryCommit); err != nil {
		t.Fatal(err)
	}
	if open() != 0 || oldest() != 0 {
		t.Fatalf("after the commit: %v open, oldest %v", open(), oldest())
	}
	if got := testutil.ToFloat64(b.metrics.transactions.WithLabelValues("commit")); got != 1 {
		t.Fatalf("transactions_total{result=commit} = %v, want 1", got)
	}
	if n, err := testutil.GatherAndCount(b.metrics.reg, "tandem_broker_transactions_open", "tandem_broker_transaction_oldest_open_seconds"); err != nil || n != 2 {
		t.Fatalf("registered open-transaction gauges: %d, %v", n, err)
	}
}

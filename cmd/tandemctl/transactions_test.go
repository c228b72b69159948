package main

import (
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// `tandemctl transactions` lists the open transaction with its partitions,
// filters by state and age, and shows it completed after the commit.
func TestTransactionsCommand(t *testing.T) {
	addr := startKafkaBroker(t, nil)
	txns := func(args ...string) string {
		t.Helper()
		out, err := ctl(t, append([]string{"--timeout", "30s", "transactions", "--bootstrap", addr}, args...)...)
		if err != nil {
			t.Fatalf("transactions %v: %v", args, err)
		}
		return out
	}
	if out := txns(); out != "no transactions\n" {
		t.Fatalf("with no transactional producer: %q", out)
	}
	adm, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		t.Fatal(err)
	}
	defer adm.Close()
	if _, err := kadm.NewClient(adm).CreateTopic(t.Context(), 2, -1, nil, "orders"); err != nil {
		t.Fatal(err)
	}
	p, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.TransactionalID("billing"), kgo.DefaultProduceTopic("orders"),
		kgo.TransactionTimeout(time.Minute), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if err := p.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	for _, part := range []int32{1, 0} {
		if err := p.ProduceSync(t.Context(), &kgo.Record{Partition: part, Value: []byte("x")}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	out := txns()
	want := regexp.MustCompile(`(?m)^TRANSACTIONAL ID +STATE +PRODUCER ID +EPOCH +TIMEOUT +OPEN FOR +PARTITIONS\nbilling +Ongoing +\d+ +0 +1m0s +\d+s +orders/0,orders/1\n$`)
	if !want.MatchString(out) {
		t.Fatalf("transactions printed\n%s", out)
	}
	if out := txns("--older-than", "1h"); out != "no transactions\n" {
		t.Fatalf("--older-than 1h printed %q", out)
	}
	if out := txns("--state", "CompleteCommit"); out != "no transactions\n" {
		t.Fatalf("--state CompleteCommit with the transaction open printed %q", out)
	}
	if err := p.EndTransaction(t.Context(), kgo.TryCommit); err != nil {
		t.Fatal(err)
	}
	out = txns("--state", "Ongoing,CompleteCommit")
	if !strings.Contains(out, "billing") || !strings.Contains(out, "CompleteCommit") || strings.Contains(out, "orders/") {
		t.Fatalf("after the commit printed\n%s", out)
	}
	if _, err := ctl(t, "transactions", "--bootstrap", addr, "extra"); err == nil {
		t.Fatal("an argument was accepted")
	}
}

// `tandemctl transactions --abort` ends an open transaction at once: the
// records are aborted for read_committed consumers, the producer is
// fenced, and a second abort has nothing left to do.
func TestTransactionsAbortCommand(t *testing.T) {
	addr := startKafkaBroker(t, nil)
	adm, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		t.Fatal(err)
	}
	defer adm.Close()
	if _, err := kadm.NewClient(adm).CreateTopic(t.Context(), 2, -1, nil, "stuck"); err != nil {
		t.Fatal(err)
	}
	p, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.TransactionalID("stuck-app"), kgo.DefaultProduceTopic("stuck"),
		kgo.TransactionTimeout(10*time.Minute), kgo.RecordPartitioner(kgo.RoundRobinPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if err := p.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"a", "b"} {
		if err := p.ProduceSync(t.Context(), kgo.StringRecord(v)).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	out, err := ctl(t, "--timeout", "30s", "transactions", "--bootstrap", addr, "--abort", "stuck-app")
	if err != nil || !strings.HasPrefix(out, "aborted transaction stuck-app") {
		t.Fatalf("--abort: %v\n%s", err, out)
	}
	if out, err := ctl(t, "--timeout", "30s", "transactions", "--bootstrap", addr, "--state", "Ongoing"); err != nil || out != "no transactions\n" {
		t.Fatalf("open transactions after the abort: %v\n%s", err, out)
	}
	if err := p.EndTransaction(t.Context(), kgo.TryCommit); err == nil {
		t.Fatal("the producer committed a transaction an operator aborted")
	}
	// Nothing of it is readable read_committed; the end offsets moved
	// past it (the markers).
	ends, err := kadm.NewClient(adm).ListCommittedOffsets(t.Context(), "stuck")
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	ends.Each(func(o kadm.ListedOffset) { total += o.Offset })
	if total != 4 { // two records and two abort markers
		t.Fatalf("read_committed end offsets add up to %d, want 4", total)
	}
	c, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ConsumeTopics("stuck"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	if fs := c.PollFetches(ctx); fs.NumRecords() != 0 {
		t.Fatalf("read_committed read %d records of the aborted transaction", fs.NumRecords())
	}
	if _, err := ctl(t, "transactions", "--bootstrap", addr, "--abort", "stuck-app"); err == nil || !strings.Contains(err.Error(), "not Ongoing") {
		t.Fatalf("a second abort: %v, want a refusal naming its state", err)
	}
}

package main

import (
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

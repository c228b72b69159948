package sidecar_test

import (
	"context"
	"errors"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/tandem-io/tandem/sidecar"
)

// A node that withdraws from the election leaves no key behind, however
// its campaign ended: a key left there, kept alive by the node's session,
// would stand ahead of every other candidate, and no node could be
// elected until that session ended (seen in a soak run: 90 s without a
// leader after the ISR shrank while a node that had just won withdrew).
func TestWithdrawLeavesNoElectionKey(t *testing.T) {
	cli := etcdClient(t, startEtcd(t))
	ctx := t.Context()
	const prefix = "/tandem/withdraw-test/"
	ttl := 3 * time.Second

	// holders lists the leases of the keys in the election.
	holders := func() []int64 {
		t.Helper()
		r, err := cli.Get(ctx, prefix+"election/", clientv3.WithPrefix())
		if err != nil {
			t.Fatal(err)
		}
		var ids []int64
		for _, kv := range r.Kvs {
			ids = append(ids, kv.Lease)
		}
		return ids
	}
	session := func() *concurrency.Session {
		t.Helper()
		s, err := concurrency.NewSession(cli, concurrency.WithTTL(int(ttl/time.Second)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	campaign := func(s *concurrency.Session) (context.CancelFunc, chan error) {
		cctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- concurrency.NewElection(s, prefix+"election/").Campaign(cctx, "v") }()
		return cancel, done
	}

	// 1. The campaign won just as the node withdrew: Campaign returned nil
	// and holds the key; Withdraw must give it up.
	a := session()
	cancel, done := campaign(a)
	waitHolders(t, holders, 1)
	won := make(chan error, 1)
	won <- <-done // Campaign returned (won) before the withdrawal
	if err := sidecar.Withdraw(ctx, cli, prefix, ttl, cancel, won, a.Lease()); err != nil {
		t.Fatal(err)
	}
	if ids := holders(); len(ids) != 0 {
		t.Fatalf("after withdrawing a won campaign the election holds keys of leases %v", ids)
	}

	// 2. The campaign's key reached etcd but Campaign never learned of it
	// (its context ended first): a key under the session's lease that the
	// election object does not know.
	b := session()
	if _, err := cli.Put(ctx, prefix+"election/orphan", "v", clientv3.WithLease(b.Lease())); err != nil {
		t.Fatal(err)
	}
	failed := make(chan error, 1)
	failed <- context.Canceled
	if err := sidecar.Withdraw(ctx, cli, prefix, ttl, func() {}, failed, b.Lease()); err != nil {
		t.Fatal(err)
	}
	if ids := holders(); len(ids) != 0 {
		t.Fatalf("after withdrawing, the election holds keys of leases %v", ids)
	}

	// 3. A campaign waiting behind another node's key: Withdraw cancels it
	// and removes only this session's key; the other node keeps its own.
	c, d := session(), session()
	cancelC, doneC := campaign(c)
	waitHolders(t, holders, 1)
	cancelD, doneD := campaign(d)
	waitHolders(t, holders, 2)
	if err := sidecar.Withdraw(ctx, cli, prefix, ttl, cancelD, doneD, d.Lease()); err != nil {
		t.Fatal(err)
	}
	if ids := holders(); len(ids) != 1 || ids[0] != int64(c.Lease()) {
		t.Fatalf("after node d withdrew, the election holds keys of leases %v; want only node c's %d", ids, c.Lease())
	}
	cancelC()
	if err := <-doneC; err != nil && !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
}

// waitHolders waits until the election holds n keys.
func waitHolders(t *testing.T, holders func() []int64, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for len(holders()) != n {
		if time.Now().After(deadline) {
			t.Fatalf("the election holds %d keys, want %d", len(holders()), n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

package sidecar_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/tandem-io/tandem/broker/link"
	adminv1 "github.com/tandem-io/tandem/gen/tandem/admin/v1"
	"github.com/tandem-io/tandem/internal/testutil"
	"github.com/tandem-io/tandem/sidecar"
	"github.com/tandem-io/tandem/sidecar/sidecartest"
)

// stallProxy forwards TCP connections to a target. While it is stalled it
// forwards nothing either way, and delivers what was held, in order, once
// it resumes: what a network cut does to a TCP connection that outlives
// it, whose segments the kernel retransmits once the cut heals.
type stallProxy struct {
	ln      net.Listener
	target  string
	mu      sync.Mutex
	stalled bool
	resumed *sync.Cond
	conns   []net.Conn
}

func startStallProxy(t *testing.T, target string) *stallProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &stallProxy{ln: ln, target: target}
	p.resumed = sync.NewCond(&p.mu)
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		p.mu.Lock()
		p.stalled = false
		p.resumed.Broadcast()
		for _, c := range p.conns {
			c.Close()
		}
		p.mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp", target)
			if err != nil {
				in.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, in, out)
			p.mu.Unlock()
			wg.Add(2)
			go func() { defer wg.Done(); p.pipe(out, in) }()
			go func() { defer wg.Done(); p.pipe(in, out) }()
		}
	}()
	return p
}

// pipe copies from src to dst, holding each chunk while the proxy is
// stalled.
func (p *stallProxy) pipe(dst, src net.Conn) {
	defer dst.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			for p.stalled {
				p.resumed.Wait()
			}
			p.mu.Unlock()
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				src.Close()
			}
			return
		}
	}
}

func (p *stallProxy) stall(on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stalled = on
	p.resumed.Broadcast()
}

// A leader cut off from etcd for less than a lease TTL steps down after
// half a TTL, and its attempt to revoke its lease then times out; the
// renewals it sent meanwhile wait in its TCP connection to etcd and renew
// its lease when the cut heals, which would keep its election key, and
// nobody leading, for one more whole TTL. Its sidecar
// revokes the lease as soon as etcd can be reached again, so another
// in-sync node is elected then. (Two soak runs saw 4.5 s without a leader,
// with a 3 s TTL, after 2 s cuts of the leader from etcd.) The TTL here is
// 8 s: a lease kept alive by the late renewals would hold the election
// for 8 s after the cut heals, twice as long as the test waits.
func TestLeaderCutOffFromEtcdGivesItsLeaseUpWhenTheCutHeals(t *testing.T) {
	const ttl = 8 * time.Second
	url := startEtcd(t)
	proxy := startStallProxy(t, strings.TrimPrefix(url, "http://"))
	c := sidecartest.NewCluster(t, 3, 1, func(cfg *sidecar.Config) {
		cfg.EtcdEndpoints = []string{url}
		if cfg.NodeID == 1 {
			cfg.EtcdEndpoints = []string{"http://" + proxy.ln.Addr().String()}
		}
		cfg.LeaseTTL = ttl
		cfg.EpochPollInterval = 200 * time.Millisecond
	})
	c.StartAll()
	if id, _ := waitISRPublished(t, c, url); id != 1 {
		t.Fatalf("node %d published the ISR; want node 1, the --leader", id)
	}
	c.Nodes[1].Broker.Produce(t, 20, 100)
	c.WaitCaughtUp(20)
	// Nodes 2 and 3 campaign (after node 1's head start of one TTL in a
	// new cluster): each holds a key, queued behind node 1's.
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{url}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	testutil.Eventually(t, 2*ttl, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		r, err := cli.Get(ctx, "/tandem/test-cluster/election/", clientv3.WithPrefix(), clientv3.WithCountOnly())
		if err != nil {
			return err
		}
		if r.Count != 3 {
			return fmt.Errorf("%d nodes hold election keys, want 3", r.Count)
		}
		return nil
	})

	// Cut node 1 off from etcd; it steps down within half a TTL of its
	// last renewal, and its broker takes no writes.
	cut := time.Now()
	proxy.stall(true)
	testutil.Eventually(t, ttl, func() error {
		st, err := c.Admin(1).Status(context.Background(), &adminv1.StatusRequest{})
		if err != nil {
			return err
		}
		if st.GetRole() == adminv1.Role_ROLE_LEADER || c.Nodes[1].Broker.View().Role == link.RoleLeader {
			return errors.New("node 1 still leads")
		}
		return nil
	})
	stepped := time.Since(cut)
	// The cut heals after node 1's one-second attempt to revoke its lease
	// as its session ended has given up (its request, and the cancellation
	// of it, wait in the connection with the renewals), but before the
	// lease could expire: its last renewal was at most TTL/6 before the
	// cut, and it stepped down half a TTL after that renewal.
	time.Sleep(1500 * time.Millisecond)
	proxy.stall(false)
	healed := time.Now()
	t.Logf("node 1 stepped down %v after the cut; the cut healed after %v", stepped.Round(time.Millisecond), healed.Sub(cut).Round(time.Millisecond))

	var next int32
	for next == 0 && time.Since(healed) < ttl/2 {
		for _, id := range []int32{2, 3} {
			if c.Nodes[id].Broker.View().Role == link.RoleLeader {
				next = id
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	if next == 0 {
		t.Fatalf("no node led within %v of the cut healing: node 1's lease, renewed by its late renewals, still holds the election", ttl/2)
	}
	t.Logf("node %d leads %v after the cut healed", next, time.Since(healed).Round(time.Millisecond))
	c.Nodes[next].Broker.Produce(t, 10, 100)
	c.WaitCaughtUp(30)
	c.AssertIdentical(30)
}

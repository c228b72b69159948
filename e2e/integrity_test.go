package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// flippingProxy forwards TCP connections to target and flips one bit, once
// over all connections, in the middle of the first run of 256 copies of
// mark that the server sends: a byte inside a record's value, not in the
// HTTP/2 or protobuf framing around it, as a faulty NIC, switch or memory
// would damage it where TCP's checksum misses it.
type flippingProxy struct {
	ln      net.Listener
	target  string
	mark    byte
	flipped atomic.Int32
	wg      sync.WaitGroup
}

func startFlippingProxy(t *testing.T, target string, mark byte) *flippingProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &flippingProxy{ln: ln, target: target, mark: mark}
	p.wg.Add(1)
	go p.serve()
	t.Cleanup(func() {
		ln.Close()
		p.wg.Wait()
	})
	return p
}

func (p *flippingProxy) serve() {
	defer p.wg.Done()
	var conns sync.WaitGroup
	defer conns.Wait()
	var open []net.Conn
	var mu sync.Mutex
	defer func() {
		mu.Lock()
		for _, c := range open {
			c.Close()
		}
		mu.Unlock()
	}()
	for {
		in, err := p.ln.Accept()
		if err != nil {
			return
		}
		out, err := net.Dial("tcp", p.target)
		if err != nil {
			in.Close()
			continue
		}
		mu.Lock()
		open = append(open, in, out)
		mu.Unlock()
		conns.Add(2)
		go func() { // client to server, unchanged
			defer conns.Done()
			io.Copy(out, in)
			out.Close()
		}()
		go func() { // server to client, one bit flipped once
			defer conns.Done()
			defer in.Close()
			run := bytes.Repeat([]byte{p.mark}, 256)
			buf := make([]byte, 64<<10)
			for {
				n, err := out.Read(buf)
				if n > 0 {
					if i := bytes.Index(buf[:n], run); i >= 0 && p.flipped.Load() == 0 && p.flipped.CompareAndSwap(0, 1) {
						buf[i+len(run)/2] ^= 0x04
					}
					if _, werr := in.Write(buf[:n]); werr != nil {
						return
					}
				}
				if err != nil {
					return
				}
			}
		}()
	}
}

// A record damaged on the way from the leader's sidecar to a follower's
// (one bit flipped inside a record's value, which TCP, HTTP/2 and protobuf
// all pass on) is refused by the follower's broker with a clear error,
// because the entry's checksum, read from the leader's WAL, travels with
// it; the follower reconnects, gets it again intact, and ends up
// byte-identical to the leader, with every record readable from it
// unchanged.
func TestDamagedEntryOnTheWireIsRefusedAndResent(t *testing.T) {
	var proxy *flippingProxy
	c := startCluster(t, clusterOpts{peerAddr: func(self, peer int, addr string) string {
		if self == 2 && peer == 1 {
			proxy = startFlippingProxy(t, addr, 'Z')
			return proxy.ln.Addr().String()
		}
		return addr
	}})
	const topic, n = "integrity", 200
	c.createTopic(topic)
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.leader().kafka), kgo.DefaultProduceTopic(topic),
		kgo.RequiredAcks(kgo.AllISRAcks()), kgo.ProducerBatchCompression(kgo.NoCompression()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	want := make([]string, n)
	for i := range want {
		want[i] = fmt.Sprintf("%d-%s", i, strings.Repeat("Z", 2000))
		if err := cl.ProduceSync(ctx, kgo.StringRecord(want[i])).FirstErr(); err != nil {
			t.Fatalf("produce %d: %v", i, err)
		}
	}
	c.caughtUp(30*time.Second, 1, 2, 3)
	if proxy.flipped.Load() != 1 {
		t.Fatal("the proxy between node 2 and the leader never damaged a record: the test did not test anything")
	}
	if log := c.node(2).broker.Log(); !strings.Contains(log, "does not match its checksum") {
		t.Fatalf("node 2's broker did not refuse the damaged entry; its log:\n%s", tail(log, 40))
	}
	if out := c.mustVerify(1); !strings.Contains(out, "identical") {
		t.Fatalf("tandemctl verify:\n%s", out)
	}
	got := consumeFrom(t, c.node(2).kafka, topic, n)
	if len(got) != n {
		t.Fatalf("read %d records from node 2, want %d", len(got), n)
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("record %d read from node 2 differs from what was produced (%d bytes, want %d)", i, len(got[i]), len(want[i]))
		}
	}
	var errs []error
	for _, nd := range c.nodes {
		if strings.Contains(nd.side.Log(), "panic") || strings.Contains(nd.broker.Log(), "panic") {
			errs = append(errs, fmt.Errorf("node %d logged a panic", nd.id))
		}
	}
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
}

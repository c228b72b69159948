package broker

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	itest "github.com/tandem-io/tandem/internal/testutil"
)

// TestCloseResetsUnansweredConnections: when the broker stops, a client
// connection that has had answers ends the orderly way (the client reads
// EOF between requests and reconnects), and one that has had none, or only
// its ApiVersions answer, is reset. Given an orderly end before its first
// answer, franz-go decides TLS or SASL is misconfigured, does not retry,
// and fails the records it was sending: in the soak, producers that had
// just dialled a leader stopping on SIGTERM lost writes that way. Given a
// reset, they dial again.
func TestCloseResetsUnansweredConnections(t *testing.T) {
	b, addr := startBroker(t, t.TempDir())
	dial := func(reqs ...kmsg.Request) net.Conn {
		t.Helper()
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		f := kmsg.NewRequestFormatter(kmsg.FormatterClientID("t"))
		for i, req := range reqs {
			if _, err := c.Write(f.AppendRequest(nil, req, int32(i))); err != nil {
				t.Fatal(err)
			}
			var size [4]byte
			if _, err := io.ReadFull(c, size[:]); err != nil {
				t.Fatalf("reading the answer to %s: %v", kmsg.NameForKey(req.Key()), err)
			}
			if _, err := io.ReadFull(c, make([]byte, binary.BigEndian.Uint32(size[:]))); err != nil {
				t.Fatalf("reading the answer to %s: %v", kmsg.NameForKey(req.Key()), err)
			}
		}
		return c
	}
	answered := dial(kmsg.NewPtrApiVersionsRequest(), kmsg.NewPtrMetadataRequest())
	versionsOnly := dial(kmsg.NewPtrApiVersionsRequest())
	fresh := dial()
	itest.Eventually(t, 5*time.Second, func() error {
		if n := b.connLim.count(); n != 3 {
			return fmt.Errorf("the broker has accepted %d of the 3 connections", n)
		}
		return nil
	})

	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		conn net.Conn
		want error
	}{
		{"answered", answered, io.EOF},
		{"answered only ApiVersions", versionsOnly, syscall.ECONNRESET},
		{"unanswered", fresh, syscall.ECONNRESET},
	} {
		c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.conn.Read(make([]byte, 1)); !errors.Is(err, c.want) {
			t.Errorf("reading the %s connection after Close: %v, want %v", c.name, err, c.want)
		}
	}
}

// TestClientDialingAStoppingBrokerIsNotToldTLSIsWrong: franz-go dials a
// broker that stops between accepting the connection and answering
// ApiVersions. Its produce fails (there is no other broker), but as a
// connection failure it retries, not as "is TLS missing?", which it gives
// up on at once.
func TestClientDialingAStoppingBrokerIsNotToldTLSIsWrong(t *testing.T) {
	b, addr := startBroker(t, t.TempDir())
	var dialed atomic.Int32
	dial := func(ctx context.Context, network, host string) (net.Conn, error) {
		n := dialed.Add(1)
		c, err := (&net.Dialer{}).DialContext(ctx, network, host)
		if err != nil || n > 1 {
			return c, err
		}
		// The broker has accepted this first connection; it stops
		// before the client sends anything.
		for deadline := time.Now().Add(5 * time.Second); b.connLim.count() == 0 && time.Now().Before(deadline); {
			time.Sleep(time.Millisecond)
		}
		b.Close()
		return c, nil
	}
	cl := newClient(t, addr, kgo.Dialer(dial), kgo.RecordDeliveryTimeout(3*time.Second),
		kgo.RetryTimeout(3*time.Second), kgo.DefaultProduceTopic("t"))
	err := cl.ProduceSync(context.Background(), &kgo.Record{Value: []byte("v")}).FirstErr()
	if err == nil {
		t.Fatal("a produce to a stopped broker succeeded")
	}
	var firstEOF *kgo.ErrFirstReadEOF
	if errors.As(err, &firstEOF) {
		t.Fatalf("the client was told: %v", err)
	}
	if n := dialed.Load(); n < 2 {
		t.Fatalf("the client dialled %d times, want it to dial again after the reset; its error: %v", n, err)
	}
	t.Logf("dialled %d times; the produce failed with: %v", dialed.Load(), err)
}

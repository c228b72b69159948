package broker

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync/atomic"
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
		c, err := itest.KafkaExchange(addr, reqs...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
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
	itest.CheckConnEnds(t, "Close", answered, versionsOnly, fresh)
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

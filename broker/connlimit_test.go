package broker

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	itest "github.com/tandem-io/tandem/internal/testutil"
)

func TestParseConnectionOverrides(t *testing.T) {
	got, err := ParseConnectionOverrides(" 10.0.0.7:500, ::1:20,[fe80::1]:0 ,")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int{"10.0.0.7": 500, "::1": 20, "fe80::1": 0}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Fatalf("got %v, want %v", got, want)
		}
	}
	for _, bad := range []string{"10.0.0.7", "broker-1:5", "10.0.0.7:-1", "10.0.0.7:many", ":5"} {
		if _, err := ParseConnectionOverrides(bad); err == nil {
			t.Errorf("%q: parsed, want an error", bad)
		}
	}
}

// dialFrom connects to addr from the local address ip (any 127.0.0.0/8
// address reaches the loopback listener on Linux).
func dialFrom(t *testing.T, ip, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial %s from %s: %v", addr, ip, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// apiVersions sends an ApiVersions v0 request on c and reads the answer's
// size: it reports whether the broker serves the connection.
func apiVersions(c net.Conn) error {
	req := []byte{0, 18, 0, 0, 0, 0, 0, 7, 0, 4, 't', 'e', 's', 't'} // key 18, v0, correlation 7, client id "test"
	frame := binary.BigEndian.AppendUint32(nil, uint32(len(req)))
	c.SetDeadline(time.Now().Add(10 * time.Second))
	defer c.SetDeadline(time.Time{})
	if _, err := c.Write(append(frame, req...)); err != nil {
		return err
	}
	var size [4]byte
	if _, err := io.ReadFull(c, size[:]); err != nil {
		return err
	}
	_, err := io.CopyN(io.Discard, c, int64(binary.BigEndian.Uint32(size[:])))
	return err
}

// requireServed dials from ip and fails unless the broker answers.
func requireServed(t *testing.T, ip, addr string) net.Conn {
	t.Helper()
	c := dialFrom(t, ip, addr)
	if err := apiVersions(c); err != nil {
		t.Fatalf("connection from %s not served: %v", ip, err)
	}
	return c
}

// requireRefused dials from ip and fails unless the broker resets the
// connection without answering (not a timeout, not an orderly close). The
// reset can come before the dial has returned.
func requireRefused(t *testing.T, ip, addr string) {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err == nil {
		defer c.Close()
		err = apiVersions(c)
	}
	var ne net.Error
	switch {
	case err == nil:
		t.Fatalf("connection from %s served, want it reset", ip)
	case errors.As(err, &ne) && ne.Timeout():
		t.Fatalf("connection from %s neither served nor reset within 10s: %v", ip, err)
	case !errors.Is(err, syscall.ECONNRESET):
		t.Fatalf("connection from %s: %v, want it reset", ip, err)
	}
}

// TestProducerMeetingTheConnectionLimitRetries: a franz-go producer whose
// connection to the broker is refused over --max-connections dials again
// after its backoff, and writes once a connection slot is free. (Refused
// connections were closed the orderly way until 2026-12-07: franz-go took
// that for a TLS mistake and failed the record at once, with "broker closed
// the connection immediately during api versions negotiation ... is TLS
// missing?".)
func TestProducerMeetingTheConnectionLimitRetries(t *testing.T) {
	b, addr := startBrokerWith(t, t.TempDir(), func(c *Config) { c.MaxConnections = 3 })
	// Two of the three slots are taken: the producer's seed connection
	// gets the third, and its connections to node 1 (InitProducerId, then
	// the produce) are refused until the held ones close.
	held := []net.Conn{requireServed(t, "127.0.0.1", addr), requireServed(t, "127.0.0.1", addr)}
	released := make(chan struct{})
	go func() {
		defer close(released)
		time.Sleep(time.Second)
		for _, c := range held {
			c.Close()
		}
	}()
	cl := newClient(t, addr, kgo.DefaultProduceTopic("conn-limit"), kgo.AllowAutoTopicCreation(),
		kgo.RecordDeliveryTimeout(20*time.Second))
	err := cl.ProduceSync(t.Context(), &kgo.Record{Value: []byte("v")}).FirstErr()
	select {
	case <-released:
	default:
		t.Fatalf("the produce ended while every connection slot was taken: %v", err)
	}
	if err != nil {
		t.Fatalf("produce: %v", err)
	}
	if n := testutil.ToFloat64(b.metrics.connRefused.WithLabelValues(refusedMaxConnections)); n == 0 {
		t.Fatal("no connection of the producer's was refused")
	}
	// The record is there: the partition ends after it. (Asked on one
	// connection: a consumer needs more than the limit allows.)
	cl.Close()
	lo := latestOffsetRequest("conn-limit")
	var end int64
	if err := itest.Poll(10*time.Second, func() error {
		resp, err := newClient(t, addr).SeedBrokers()[0].Request(t.Context(), lo)
		if err != nil {
			return err
		}
		p := resp.(*kmsg.ListOffsetsResponse).Topics[0].Partitions[0]
		if p.ErrorCode != 0 {
			return kerr.ErrorForCode(p.ErrorCode)
		}
		end = p.Offset
		return nil
	}); err != nil || end != 1 {
		t.Fatalf("end offset of conn-limit: %d, %v; want 1", end, err)
	}
}

// TestMaxConnections: with --max-connections 6, six connections are served
// and a seventh is reset at once; once they close, a real client produces
// and consumes.
func TestMaxConnections(t *testing.T) {
	b, addr := startBrokerWith(t, t.TempDir(), func(c *Config) { c.MaxConnections = 6 })
	var held []net.Conn
	for range 6 {
		held = append(held, requireServed(t, "127.0.0.1", addr))
	}
	requireRefused(t, "127.0.0.1", addr)
	requireRefused(t, "127.0.0.2", addr)
	if got := testutil.ToFloat64(b.metrics.connRefused.WithLabelValues(refusedMaxConnections)); got != 2 {
		t.Fatalf("tandem_broker_connections_refused_total{reason=max_connections} = %v, want 2", got)
	}
	if got := b.connLim.count(); got != 6 {
		t.Fatalf("%d connections counted, want 6", got)
	}
	for _, c := range held {
		c.Close()
	}
	if err := itest.Poll(10*time.Second, func() error {
		if n := b.connLim.count(); n != 0 {
			return errors.New("connections still counted after they closed")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	cl := newClient(t, addr, kgo.DefaultProduceTopic("conn-limit"), kgo.AllowAutoTopicCreation())
	if err := cl.ProduceSync(t.Context(), &kgo.Record{Value: []byte("after")}).FirstErr(); err != nil {
		t.Fatalf("produce once the connections closed: %v", err)
	}
	if got := consumeAll(t, addr, "conn-limit", 1); len(got) != 1 || got[0] != "after" {
		t.Fatalf("consumed %q, want [after]", got)
	}
}

// TestMaxConnectionsPerIP: --max-connections-per-ip 2 with overrides
// 127.0.0.2:4 and 127.0.0.3:0. Each address gets its own count.
func TestMaxConnectionsPerIP(t *testing.T) {
	b, addr := startBrokerWith(t, t.TempDir(), func(c *Config) {
		c.MaxConnectionsPerIP = 2
		c.MaxConnectionsPerIPOverrides = map[string]int{"127.0.0.2": 4, "127.0.0.3": 0}
	})
	// Kafka's tools see the limits as broker configs. (Asked on the
	// client's seed connection alone: a client that opened more from
	// 127.0.0.1 would be refused over the limit, dial again, and take the
	// slots the checks below count on.)
	adm := newClient(t, addr)
	dc := kmsg.NewPtrDescribeConfigsRequest()
	rr := kmsg.NewDescribeConfigsRequestResource()
	rr.ResourceType, rr.ResourceName = kmsg.ConfigResourceTypeBroker, "1"
	dc.Resources = append(dc.Resources, rr)
	resp, err := adm.SeedBrokers()[0].Request(t.Context(), dc)
	if err != nil || len(resp.(*kmsg.DescribeConfigsResponse).Resources) != 1 || resp.(*kmsg.DescribeConfigsResponse).Resources[0].ErrorCode != 0 {
		t.Fatalf("describe broker configs: %v %+v", err, resp)
	}
	want := map[string]string{"max.connections.per.ip": "2", "max.connections.per.ip.overrides": "127.0.0.2:4,127.0.0.3:0"}
	for _, c := range resp.(*kmsg.DescribeConfigsResponse).Resources[0].Configs {
		if w, ok := want[c.Name]; ok {
			if c.Value == nil || *c.Value != w {
				t.Errorf("%s = %v, want %s", c.Name, c.Value, w)
			}
			delete(want, c.Name)
		}
	}
	if len(want) > 0 {
		t.Errorf("broker configs lack %v", want)
	}
	adm.Close()
	if err := itest.Poll(10*time.Second, func() error {
		if n := b.connLim.count(); n != 0 {
			return fmt.Errorf("%d connections still counted after the client closed", n)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	one := []net.Conn{requireServed(t, "127.0.0.1", addr), requireServed(t, "127.0.0.1", addr)}
	requireRefused(t, "127.0.0.1", addr)
	for range 4 {
		requireServed(t, "127.0.0.2", addr)
	}
	requireRefused(t, "127.0.0.2", addr)
	requireRefused(t, "127.0.0.3", addr)
	requireServed(t, "127.0.0.4", addr) // another address, the default limit
	if got := testutil.ToFloat64(b.metrics.connRefused.WithLabelValues(refusedPerIP)); got != 3 {
		t.Fatalf("tandem_broker_connections_refused_total{reason=max_connections_per_ip} = %v, want 3", got)
	}
	// A slot freed is a slot taken again.
	one[0].Close()
	if err := itest.Poll(10*time.Second, func() error {
		c := dialFrom(t, "127.0.0.1", addr)
		defer c.Close()
		return apiVersions(c)
	}); err != nil {
		t.Fatalf("127.0.0.1 not served again after one of its connections closed: %v", err)
	}
}

// TestAutomaticMaxConnections: without --max-connections the limit leaves
// the WAL's segments and the reserve out of the open-file limit, and moves
// with the number of segments.
func TestAutomaticMaxConnections(t *testing.T) {
	b, addr := startBrokerWith(t, t.TempDir(), func(c *Config) { c.SegmentBytes = 1 << 20 })
	if b.connLim.nofile == 0 {
		t.Fatal("open-file limit unknown")
	}
	before, segs := b.connLim.limit(), b.wal.SegmentCount()
	if want := b.connLim.nofile - segs - fdReserve; before != max(want, minAutoConnections) {
		t.Fatalf("automatic limit %d, want %d (open-file limit %d, %d segments)", before, want, b.connLim.nofile, segs)
	}
	// Write three more segments' worth.
	cl := newClient(t, addr, kgo.DefaultProduceTopic("fill"), kgo.AllowAutoTopicCreation(),
		kgo.ProducerBatchCompression(kgo.NoCompression()))
	value := make([]byte, 100<<10)
	for b.wal.SegmentCount() < segs+3 {
		if err := cl.ProduceSync(t.Context(), &kgo.Record{Value: value}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	if after := b.connLim.limit(); after != before-(b.wal.SegmentCount()-segs) {
		t.Fatalf("with %d more segments the limit is %d, was %d", b.wal.SegmentCount()-segs, after, before)
	}
}

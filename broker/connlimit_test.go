package broker

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

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

// requireRefused dials from ip and fails unless the broker closes the
// connection without answering (not a timeout).
func requireRefused(t *testing.T, ip, addr string) {
	t.Helper()
	c := dialFrom(t, ip, addr)
	err := apiVersions(c)
	var ne net.Error
	switch {
	case err == nil:
		t.Fatalf("connection from %s served, want it closed", ip)
	case errors.As(err, &ne) && ne.Timeout():
		t.Fatalf("connection from %s neither served nor closed within 10s: %v", ip, err)
	}
}

// TestMaxConnections: with --max-connections 6, six connections are served
// and a seventh is closed at once; once they close, a real client produces
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
	// Kafka's tools see the limits as broker configs.
	adm := newClient(t, addr)
	rcs, err := kadm.NewClient(adm).DescribeBrokerConfigs(t.Context(), 1)
	if err != nil || len(rcs) != 1 || rcs[0].Err != nil {
		t.Fatalf("describe broker configs: %v %+v", err, rcs)
	}
	want := map[string]string{"max.connections.per.ip": "2", "max.connections.per.ip.overrides": "127.0.0.2:4,127.0.0.3:0"}
	for _, c := range rcs[0].Configs {
		if w, ok := want[c.Key]; ok {
			if c.Value == nil || *c.Value != w {
				t.Errorf("%s = %v, want %s", c.Key, c.Value, w)
			}
			delete(want, c.Key)
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

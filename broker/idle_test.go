package broker

import (
	"bufio"
	"encoding/binary"
	"io"
	"net"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// --connections-max-idle (connections.max.idle.ms): a connection that
// sends nothing for that long is closed, one that keeps sending requests
// is not, and a client whose connection was closed reconnects by itself.
func TestConnectionsMaxIdle(t *testing.T) {
	const idle = 300 * time.Millisecond
	_, addr := startBrokerWith(t, t.TempDir(), func(c *Config) { c.ConnectionsMaxIdle = idle })

	// Silent: closed after the idle time.
	start := time.Now()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("a silent connection: read %v; want EOF (closed by the broker)", err)
	}
	if d := time.Since(start); d < idle {
		t.Fatalf("closed after %v, before the idle time %v", d, idle)
	}

	// Busy: one request every idle/3 keeps the same connection open for
	// five idle times.
	busy, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	f := kmsg.NewRequestFormatter(kmsg.FormatterClientID("busy"))
	r := bufio.NewReader(busy)
	for i := int32(0); i < 15; i++ {
		busy.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := busy.Write(f.AppendRequest(nil, kmsg.NewPtrApiVersionsRequest(), i)); err != nil {
			t.Fatalf("request %d on a busy connection: %v", i, err)
		}
		var sz [4]byte
		if _, err := io.ReadFull(r, sz[:]); err != nil {
			t.Fatalf("answer %d on a busy connection: %v", i, err)
		}
		if _, err := io.CopyN(io.Discard, r, int64(binary.BigEndian.Uint32(sz[:]))); err != nil {
			t.Fatal(err)
		}
		time.Sleep(idle / 3)
	}

	// A client left idle past the time reconnects on its next request.
	cl := newClient(t, addr, kgo.AllowAutoTopicCreation())
	if err := cl.ProduceSync(t.Context(), &kgo.Record{Topic: "idle", Value: []byte("v")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * idle)
	if err := cl.ProduceSync(t.Context(), &kgo.Record{Topic: "idle", Value: []byte("v")}).FirstErr(); err != nil {
		t.Fatalf("producing after the connection went idle: %v", err)
	}
}

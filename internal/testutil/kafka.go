package testutil

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// KafkaExchange dials the Kafka listener at addr and sends reqs one at a
// time, reading (and discarding) each answer, for tests that need a raw
// connection in a given state: fresh, past ApiVersions, past a first
// answer. The caller closes the connection.
func KafkaExchange(addr string, reqs ...kmsg.Request) (net.Conn, error) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	f := kmsg.NewRequestFormatter(kmsg.FormatterClientID("testutil"))
	for i, req := range reqs {
		if err := exchange(c, f.AppendRequest(nil, req, int32(i))); err != nil {
			c.Close()
			return nil, fmt.Errorf("testutil: %s: %w", kmsg.NameForKey(req.Key()), err)
		}
	}
	return c, nil
}

// exchange writes one request frame to c and reads one answer frame.
func exchange(c net.Conn, frame []byte) error {
	if _, err := c.Write(frame); err != nil {
		return err
	}
	var size [4]byte
	if _, err := io.ReadFull(c, size[:]); err != nil {
		return fmt.Errorf("reading the answer: %w", err)
	}
	if _, err := io.ReadFull(c, make([]byte, binary.BigEndian.Uint32(size[:]))); err != nil {
		return fmt.Errorf("reading the answer: %w", err)
	}
	return nil
}

// CheckConnEnds checks how a broker that has gone (after says how) ended
// three client connections: one that had an answer beyond ApiVersions must
// end the orderly way (EOF), and one that had only its ApiVersions answer
// and one that had none must be reset, so that franz-go dials again rather
// than deciding TLS or SASL is misconfigured.
func CheckConnEnds(t testing.TB, after string, answered, versionsOnly, fresh net.Conn) {
	t.Helper()
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
			t.Errorf("reading the %s connection after %s: %v, want %v", c.name, after, err, c.want)
		}
	}
}

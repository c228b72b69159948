package e2e

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tandem-io/tandem/internal/testutil"
)

// These tests write Kafka frames by hand on purpose: the frames are invalid,
// which no client library would produce.

// reqHeader returns a Kafka request header v1: api key, api version,
// correlation id, client id (int16 length + bytes).
func reqHeader(key, version int16, corr int32, clientID string) []byte {
	b := binary.BigEndian.AppendUint16(nil, uint16(key))
	b = binary.BigEndian.AppendUint16(b, uint16(version))
	b = binary.BigEndian.AppendUint32(b, uint32(corr))
	b = binary.BigEndian.AppendUint16(b, uint16(len(clientID)))
	return append(b, clientID...)
}

// sizePrefixed returns body preceded by its int32 length, i.e. one frame.
func sizePrefixed(body []byte) []byte {
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(body))), body...)
}

func concat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

// closedByPeer reads from c until the broker closes it or timeout passes. It
// returns nil when the broker closed the connection without sending anything.
func closedByPeer(c net.Conn, timeout time.Duration) error {
	_ = c.SetReadDeadline(time.Now().Add(timeout))
	got, err := io.ReadAll(c)
	switch {
	case err == nil || errors.Is(err, syscall.ECONNRESET):
		if len(got) > 0 {
			return fmt.Errorf("broker answered %d bytes (%x) instead of just closing", len(got), got[:min(len(got), 64)])
		}
		return nil
	case errors.Is(err, os.ErrDeadlineExceeded):
		return fmt.Errorf("connection still open %v after the bad frame (read %d bytes)", timeout, len(got))
	default:
		return fmt.Errorf("read: %v", err)
	}
}

// TestMalformedFrames sends invalid frames on raw TCP connections. For each,
// the broker must close that connection, write a log line about it, and
// keep serving every other client; it must never crash.
func TestMalformedFrames(t *testing.T) {
	b := startBroker(t)
	const topic = "bystander"
	b.createTopic(topic, 1)

	// A well-behaved client connected before the garbage arrives.
	bystander := b.client(kgo.DefaultProduceTopic(topic), kgo.ConsumeTopics(topic))
	produceSync(t, bystander, topic, []string{"before"})

	garbageBody := bytes.Repeat([]byte{0x7f}, 64)
	tests := []struct {
		name  string
		bytes []byte
	}{
		{"huge size prefix", concat([]byte{0x7f, 0xff, 0xff, 0xff}, reqHeader(3, 0, 1, "e2e"))},
		{"negative size prefix", concat([]byte{0xff, 0xff, 0xff, 0xf0}, reqHeader(3, 0, 1, "e2e"))},
		{"zero-length frame", []byte{0, 0, 0, 0}},
		{"truncated header", sizePrefixed([]byte{0x00, 0x03, 0x00})},
		{"client id longer than the frame", sizePrefixed(concat(reqHeader(3, 1, 1, "")[:8], []byte{0x03, 0xe8}, []byte("abc")))},
		{"unknown api key", sizePrefixed(reqHeader(32000, 0, 1, "e2e"))},
		{"unsupported metadata version", sizePrefixed(concat(reqHeader(3, 999, 1, "e2e"), garbageBody))},
		{"produce with a garbage body", sizePrefixed(concat(reqHeader(0, 7, 1, "e2e"), garbageBody))},
		{"fetch with a truncated body", sizePrefixed(concat(reqHeader(1, 4, 1, "e2e"), []byte{0xff, 0xff, 0xff, 0xff, 0, 0}))},
		{"http request", []byte("GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.DialTimeout("tcp", b.Addr, 5*time.Second)
			if err != nil {
				t.Fatalf("dial: %v", err)
			}
			defer c.Close()
			client := c.LocalAddr().String()
			// A write error means the broker already closed the connection.
			if _, err := c.Write(tc.bytes); err == nil {
				if err := closedByPeer(c, 10*time.Second); err != nil {
					t.Errorf("%s: %v", tc.name, err)
				}
			}
			b.requireAlive()
			// The broker says which connection it dropped (its log names the
			// client address).
			if err := testutil.Poll(3*time.Second, func() bool { return strings.Contains(b.Proc.Log(), client) }); err != nil {
				t.Errorf("%s: no broker log line names the client %s whose connection was closed", tc.name, client)
			}
		})
	}

	// The bystander and a brand-new client still work.
	produceSync(t, bystander, topic, []string{"after"})
	got := consumeN(t, bystander, 2, 20*time.Second)
	requireSameValues(t, "bystander after the garbage", values(got), []string{"before", "after"})
	fresh := b.client(kgo.ConsumeTopics(topic))
	requireSameValues(t, "new client after the garbage", values(consumeN(t, fresh, 2, 20*time.Second)), []string{"before", "after"})
	b.requireAlive()
}

// TestApiVersionsNegotiation: a client that asks for an ApiVersions version
// newer than the broker knows gets UNSUPPORTED_VERSION (35) with the
// broker's ranges in a v0 response, on a connection that stays open so the
// client can retry with a version the broker supports (KIP-511; librdkafka
// and franz-go rely on this).
func TestApiVersionsNegotiation(t *testing.T) {
	b := startBroker(t)
	c, err := net.DialTimeout("tcp", b.Addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer c.Close()

	// ApiVersions v127 with a flexible (v2) header: empty tagged fields,
	// then a v3-style body (compact strings, tagged fields).
	req := concat(reqHeader(18, 127, 42, "e2e"), []byte{0},
		[]byte{4}, []byte("e2e"), []byte{2}, []byte("1"), []byte{0})
	if _, err := c.Write(sizePrefixed(req)); err != nil {
		t.Fatalf("write: %v", err)
	}
	corr, body := readResponse(t, c)
	if corr != 42 {
		t.Fatalf("response correlation id %d, want 42", corr)
	}
	if len(body) < 2 || int16(binary.BigEndian.Uint16(body)) != 35 {
		t.Fatalf("ApiVersions v127 answered %x, want error code 35 (UNSUPPORTED_VERSION) first", body[:min(len(body), 16)])
	}
	if !apiVersionsHas(body, 18) {
		t.Errorf("UNSUPPORTED_VERSION response does not list the ApiVersions (18) range in v0 form: %x", body[:min(len(body), 64)])
	}

	// Retry on the same connection with v0.
	if _, err := c.Write(sizePrefixed(reqHeader(18, 0, 43, "e2e"))); err != nil {
		t.Fatalf("write ApiVersions v0 after the error (connection closed?): %v", err)
	}
	corr, body = readResponse(t, c)
	if corr != 43 || len(body) < 2 || binary.BigEndian.Uint16(body) != 0 {
		t.Fatalf("ApiVersions v0: correlation %d, body %x; want 43 and error code 0", corr, body[:min(len(body), 16)])
	}
	for _, key := range []int16{0, 1, 2, 3, 8, 9, 10, 11, 12, 13, 14, 15, 16, 18, 19, 20, 22, 32, 37} {
		if !apiVersionsHas(body, key) {
			t.Errorf("ApiVersions v0 response does not list API key %d", key)
		}
	}
	b.requireAlive()
}

// readResponse reads one response frame: it returns the correlation id and
// the rest (for ApiVersions the header is always v0, with no tagged fields).
func readResponse(t *testing.T, c net.Conn) (int32, []byte) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	var size [4]byte
	if _, err := io.ReadFull(c, size[:]); err != nil {
		t.Fatalf("read response size: %v", err)
	}
	n := binary.BigEndian.Uint32(size[:])
	if n < 4 || n > 1<<20 {
		t.Fatalf("response size %d is not plausible", n)
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatalf("read response of %d bytes: %v", n, err)
	}
	return int32(binary.BigEndian.Uint32(buf)), buf[4:]
}

// apiVersionsHas reports whether a v0 ApiVersions response body (error code,
// then an int32-counted array of key/min/max int16 triples) lists key.
func apiVersionsHas(body []byte, key int16) bool {
	if len(body) < 6 {
		return false
	}
	n := int(int32(binary.BigEndian.Uint32(body[2:])))
	rest := body[6:]
	for i := 0; i < n && len(rest) >= 6; i++ {
		if int16(binary.BigEndian.Uint16(rest)) == key {
			return true
		}
		rest = rest[6:]
	}
	return false
}

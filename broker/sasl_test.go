package broker

import (
	"bufio"
	"encoding/binary"
	"io"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	promtest "github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	fsasl "github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/tandem-io/tandem/broker/sasl"
	"github.com/tandem-io/tandem/internal/certs"
)

// writeUsers writes a users file with user -> password.
func writeUsers(t *testing.T, users map[string]string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "users.json")
	var u sasl.Users
	for name, pw := range users {
		if err := u.SetPassword(name, pw, 4096); err != nil {
			t.Fatal(err)
		}
	}
	if err := u.Save(path); err != nil {
		t.Fatal(err)
	}
	return path
}

// With --sasl-users a client logs in with PLAIN or SCRAM (franz-go, SASL
// handshake v1 and SaslAuthenticate) and then produces and consumes; a
// wrong password is refused, counted and logged; a client that does not
// log in has its connection closed at its first request after
// ApiVersions.
func TestSASLLogin(t *testing.T) {
	users := writeUsers(t, map[string]string{"alice": "secret"})
	var logs syncBuffer
	b, addr := startBrokerWith(t, t.TempDir(), func(c *Config) {
		c.SASLUsersFile = users
		c.Logger = hclog.New(&hclog.LoggerOptions{Name: "broker", Output: &logs, Level: hclog.Info})
	})
	for _, m := range []fsasl.Mechanism{
		plain.Auth{User: "alice", Pass: "secret"}.AsMechanism(),
		scram.Auth{User: "alice", Pass: "secret"}.AsSha256Mechanism(),
		scram.Auth{User: "alice", Pass: "secret"}.AsSha512Mechanism(),
	} {
		if err := roundTrip(t, addr, "sasl-"+strings.ToLower(m.Name()), kgo.SASL(m)); err != nil {
			t.Fatalf("%s: %v", m.Name(), err)
		}
	}
	for _, m := range []fsasl.Mechanism{
		plain.Auth{User: "alice", Pass: "wrong"}.AsMechanism(),
		scram.Auth{User: "alice", Pass: "wrong"}.AsSha512Mechanism(),
		scram.Auth{User: "mallory", Pass: "secret"}.AsSha256Mechanism(),
	} {
		if err := roundTrip(t, addr, "sasl-refused", kgo.SASL(m)); err == nil {
			t.Fatalf("%s with a wrong password or user: served", m.Name())
		}
	}
	if n := promtest.ToFloat64(b.metrics.saslFailures); n < 3 {
		t.Fatalf("tandem_broker_sasl_login_failures_total is %v after three refused logins", n)
	}
	if !strings.Contains(logs.String(), "SASL login refused") {
		t.Fatalf("no log line for the refused logins:\n%s", logs.String())
	}
	if err := roundTrip(t, addr, "sasl-none"); err == nil {
		t.Fatal("a client without SASL was served")
	}
	if !strings.Contains(logs.String(), "before the SASL login") {
		t.Fatalf("no log line for the client without SASL:\n%s", logs.String())
	}
}

// kafka-python 2.0's way: SaslHandshake v0, then the SASL messages as bare
// size-prefixed frames (PLAIN's success is an empty one), then Kafka
// requests on the same connection. A wrong password closes the connection.
func TestSASLHandshakeV0(t *testing.T) {
	users := writeUsers(t, map[string]string{"alice": "secret"})
	_, addr := startBrokerWith(t, t.TempDir(), func(c *Config) { c.SASLUsersFile = users })
	f := kmsg.NewRequestFormatter(kmsg.FormatterClientID("v0"))
	login := func(password string) (net.Conn, *bufio.Reader, error) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		c.SetDeadline(time.Now().Add(10 * time.Second))
		r := bufio.NewReader(c)
		hs := kmsg.NewPtrSASLHandshakeRequest()
		hs.Version, hs.Mechanism = 0, "PLAIN"
		if _, err := c.Write(f.AppendRequest(nil, hs, 1)); err != nil {
			t.Fatal(err)
		}
		body := readSized(t, r)
		resp := kmsg.NewPtrSASLHandshakeResponse()
		resp.Version = 0
		if err := resp.ReadFrom(body[4:]); err != nil || resp.ErrorCode != 0 {
			t.Fatalf("handshake v0: %v, error code %d", err, resp.ErrorCode)
		}
		token := "\x00alice\x00" + password
		if _, err := c.Write(binary.BigEndian.AppendUint32(nil, uint32(len(token)))); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Write([]byte(token)); err != nil {
			t.Fatal(err)
		}
		var sz [4]byte
		if _, err := io.ReadFull(r, sz[:]); err != nil {
			return c, r, err
		}
		if binary.BigEndian.Uint32(sz[:]) != 0 {
			t.Fatalf("PLAIN success answered with %d bytes, want an empty message", binary.BigEndian.Uint32(sz[:]))
		}
		return c, r, nil
	}
	c, r, err := login("secret")
	if err != nil {
		t.Fatalf("bare PLAIN login: %v", err)
	}
	md := kmsg.NewPtrMetadataRequest()
	md.Version = 4
	if _, err := c.Write(f.AppendRequest(nil, md, 2)); err != nil {
		t.Fatal(err)
	}
	body := readSized(t, r)
	mresp := kmsg.NewPtrMetadataResponse()
	mresp.Version = 4
	if err := mresp.ReadFrom(body[4:]); err != nil || len(mresp.Brokers) != 1 {
		t.Fatalf("Metadata after the bare login: %v, %d brokers", err, len(mresp.Brokers))
	}
	if _, _, err := login("wrong"); err == nil {
		t.Fatal("a wrong password got an answer instead of a closed connection")
	}
}

// readSized reads one size-prefixed frame.
func readSized(t *testing.T, r *bufio.Reader) []byte {
	t.Helper()
	var sz [4]byte
	if _, err := io.ReadFull(r, sz[:]); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, binary.BigEndian.Uint32(sz[:]))
	if _, err := io.ReadFull(r, buf); err != nil {
		t.Fatal(err)
	}
	return buf
}

// SASL_SSL: TLS and a SASL login together.
func TestSASLOverTLS(t *testing.T) {
	set, err := certs.WriteNodeSet(certs.SetOptions{Dir: filepath.Join(t.TempDir(), "certs"), Nodes: []int32{1}, Hosts: []string{"127.0.0.1"}})
	if err != nil {
		t.Fatal(err)
	}
	users := writeUsers(t, map[string]string{"alice": "secret"})
	_, addr := startBrokerWith(t, t.TempDir(), func(c *Config) {
		c.SASLUsersFile = users
		c.TLSCertFile, c.TLSKeyFile = set.NodeCrt[1], set.NodeKey[1]
	})
	tlsOpt := kgo.DialTLSConfig(tlsClientConfig(t, set.CA))
	if err := roundTrip(t, addr, "sasl-ssl", tlsOpt, kgo.SASL(scram.Auth{User: "alice", Pass: "secret"}.AsSha256Mechanism())); err != nil {
		t.Fatalf("SASL_SSL: %v", err)
	}
	if err := roundTrip(t, addr, "sasl-ssl", tlsOpt); err == nil {
		t.Fatal("TLS without the SASL login was served")
	}
}

// Before a client has logged in, a request frame may be at most 512 KiB
// (Kafka's sasl.server.max.receive.size): only ApiVersions and the SASL
// requests may come then. A larger one closes the connection with a log
// line naming the limit; once logged in, the client sends large requests.
func TestSASLFrameLimitBeforeLogin(t *testing.T) {
	users := writeUsers(t, map[string]string{"alice": "secret"})
	var logs syncBuffer
	_, addr := startBrokerWith(t, t.TempDir(), func(c *Config) {
		c.SASLUsersFile = users
		c.MaxMessageBytes = 2 << 20
		c.Logger = hclog.New(&hclog.LoggerOptions{Name: "broker", Output: &logs, Level: hclog.Info})
	})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	frame := binary.BigEndian.AppendUint32(nil, 600<<10)
	frame = append(frame, 0, 0, 0, 9, 0, 0, 0, 1) // Produce v9, correlation id 1
	if _, err := c.Write(frame); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := c.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("a 600 KiB frame before the login: read %d bytes, %v; want the connection closed", n, err)
	}
	if want := "frame size 614400 outside [8, 524288] (before the SASL login, sasl.server.max.receive.size)"; !strings.Contains(logs.String(), want) {
		t.Fatalf("log lacks %q:\n%s", want, logs.String())
	}
	// Logged in, a request of about 1.5 MiB goes through.
	cl := newClient(t, addr, kgo.SASL(plain.Auth{User: "alice", Pass: "secret"}.AsMechanism()),
		kgo.DefaultProduceTopic("after-login"), kgo.AllowAutoTopicCreation(), kgo.ProducerBatchCompression(kgo.NoCompression()),
		kgo.ProducerBatchMaxBytes(2<<20))
	if err := cl.ProduceSync(t.Context(), &kgo.Record{Value: make([]byte, 1536<<10)}).FirstErr(); err != nil {
		t.Fatalf("1.5 MiB record after the login: %v", err)
	}
}

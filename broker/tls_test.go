package broker

import (
	"context"
	"crypto/tls"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	promtest "github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tandem-io/tandem/internal/certs"
)

// tlsClientConfig trusts the CA in ca and, when pair names a certificate
// and key, presents them.
func tlsClientConfig(t *testing.T, ca string, pair ...string) *tls.Config {
	t.Helper()
	pool, err := certs.LoadPool(ca)
	if err != nil {
		t.Fatal(err)
	}
	c := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	if len(pair) == 2 {
		cert, err := tls.LoadX509KeyPair(pair[0], pair[1])
		if err != nil {
			t.Fatal(err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c
}

// roundTrip produces one record to topic through a new client with opts
// and reads it back; it returns the first error.
func roundTrip(t *testing.T, addr, topic string, opts ...kgo.Opt) error {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(addr), kgo.RequestRetries(1), kgo.RetryTimeout(3 * time.Second), kgo.RecordDeliveryTimeout(3 * time.Second),
		kgo.ConsumeTopics(topic), kgo.DefaultProduceTopic(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.AllowAutoTopicCreation()}, opts...)...)
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := cl.ProduceSync(ctx, kgo.StringRecord("over TLS")).FirstErr(); err != nil {
		return err
	}
	fs := cl.PollFetches(ctx)
	if err := fs.Err0(); err != nil {
		return err
	}
	if recs := fs.Records(); len(recs) == 0 || string(recs[0].Value) != "over TLS" {
		return errors.New("the record did not come back")
	}
	return nil
}

// With --tls-cert and --tls-key the Kafka listener speaks TLS: a client
// that trusts the CA produces and consumes; a plaintext client, or one that
// does not trust the CA, is refused at the handshake with an error-level
// log line naming it, and the broker goes on serving. With
// --tls-client-auth, a client must also present a certificate signed by a
// CA of --tls-ca.
func TestKafkaListenerTLS(t *testing.T) {
	dir := t.TempDir()
	set, err := certs.WriteNodeSet(certs.SetOptions{Dir: filepath.Join(dir, "certs"), Nodes: []int32{1}, Hosts: []string{"127.0.0.1"}})
	if err != nil {
		t.Fatal(err)
	}
	stranger, err := certs.WriteNodeSet(certs.SetOptions{Dir: filepath.Join(dir, "stranger"), Nodes: []int32{1}, Hosts: []string{"127.0.0.1"}})
	if err != nil {
		t.Fatal(err)
	}
	trusting := kgo.DialTLSConfig(tlsClientConfig(t, set.CA))

	t.Run("server certificate", func(t *testing.T) {
		var logs syncBuffer
		b, addr := startBrokerWith(t, filepath.Join(dir, "data1"), func(c *Config) {
			c.TLSCertFile, c.TLSKeyFile = set.NodeCrt[1], set.NodeKey[1]
			c.Logger = hclog.New(&hclog.LoggerOptions{Name: "broker", Output: &logs, Level: hclog.Info})
		})
		if err := roundTrip(t, addr, "tls", trusting); err != nil {
			t.Fatalf("client trusting the CA: %v", err)
		}
		if err := roundTrip(t, addr, "tls"); err == nil {
			t.Fatal("a plaintext client got an answer from the TLS listener")
		}
		if !strings.Contains(logs.String(), "refused a Kafka connection: TLS handshake failed") {
			t.Fatalf("no log line for the plaintext client; log:\n%s", logs.String())
		}
		if n := promtest.ToFloat64(b.metrics.tlsFailures); n < 1 {
			t.Fatalf("tandem_broker_tls_handshake_failures_total is %v after a plaintext client", n)
		}
		if err := roundTrip(t, addr, "tls", kgo.DialTLSConfig(tlsClientConfig(t, stranger.CA))); err == nil {
			t.Fatal("a client trusting another CA accepted the broker's certificate")
		}
		if err := roundTrip(t, addr, "tls", trusting); err != nil {
			t.Fatalf("after the refusals: %v", err)
		}
	})

	t.Run("client certificates required", func(t *testing.T) {
		_, addr := startBrokerWith(t, filepath.Join(dir, "data2"), func(c *Config) {
			c.TLSCertFile, c.TLSKeyFile, c.TLSCAFile, c.TLSClientAuth = set.NodeCrt[1], set.NodeKey[1], set.CA, true
		})
		if err := roundTrip(t, addr, "mtls", trusting); err == nil {
			t.Fatal("a client without a certificate was served")
		}
		if err := roundTrip(t, addr, "mtls", kgo.DialTLSConfig(tlsClientConfig(t, set.CA, stranger.Admin[0], stranger.Admin[1]))); err == nil {
			t.Fatal("a client with a certificate from another CA was served")
		}
		if err := roundTrip(t, addr, "mtls", kgo.DialTLSConfig(tlsClientConfig(t, set.CA, set.Admin[0], set.Admin[1]))); err != nil {
			t.Fatalf("client with a certificate signed by the CA: %v", err)
		}
	})

	t.Run("bad configuration", func(t *testing.T) {
		for _, tc := range []struct {
			name   string
			change func(*Config)
			want   string
		}{
			{"certificate without key", func(c *Config) { c.TLSCertFile = set.NodeCrt[1] }, "go together"},
			{"CA without TLS", func(c *Config) { c.TLSCAFile = set.CA }, "needs TLS"},
			{"client authentication without a CA", func(c *Config) {
				c.TLSCertFile, c.TLSKeyFile, c.TLSClientAuth = set.NodeCrt[1], set.NodeKey[1], true
			}, "needs the CA file"},
			{"key of another certificate", func(c *Config) { c.TLSCertFile, c.TLSKeyFile = set.NodeCrt[1], stranger.NodeKey[1] }, "loading certificate"},
			{"CA file without a certificate", func(c *Config) {
				c.TLSCertFile, c.TLSKeyFile, c.TLSCAFile = set.NodeCrt[1], set.NodeKey[1], set.NodeKey[1]
			}, "holds no PEM certificate"},
		} {
			cfg := DefaultConfig()
			cfg.NodeID, cfg.DataDir = 1, t.TempDir()
			cfg.Logger = hclog.NewNullLogger()
			tc.change(&cfg)
			b, err := Open(cfg)
			if err == nil {
				b.Close()
				t.Fatalf("%s: the broker opened", tc.name)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("%s: %v; want an error saying %q", tc.name, err, tc.want)
			}
		}
	})
}

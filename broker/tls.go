package broker

// TLS on the Kafka listener (--tls-cert, --tls-key, --tls-ca,
// --tls-client-auth).
//
// With a certificate and key, every connection to Listen starts with a TLS
// handshake (TLS 1.2 or newer), as on a Kafka listener with
// security.protocol SSL; nothing else changes, and Metadata advertises the
// same addresses, so every broker of a cluster must use TLS or none must.
// The CA file is the broker's trust store, as Kafka's ssl.truststore: a
// follower that connects to the leader's Kafka listener (to have a topic
// created) verifies the leader's certificate with it, presenting its own;
// with client authentication (ssl.client.auth=required) every client must
// present a certificate signed by one of its CAs. The certificate and key
// are re-read when their files change (certs.KeyPair); the CA file is read
// at start. docs/security.md is the operator's guide.

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/tandem-io/tandem/internal/certs"
)

// tlsHandshakeTimeout bounds a client's TLS handshake: a connection that
// does not finish it in time is closed.
const tlsHandshakeTimeout = 10 * time.Second

// loadTLS returns the listener's TLS configuration and the one this broker
// dials other brokers with; both nil without TLS.
func loadTLS(cfg Config, log hclog.Logger) (server, client *tls.Config, err error) {
	if cfg.TLSCertFile == "" {
		return nil, nil, nil
	}
	check := func(leaf *x509.Certificate) error {
		if time.Now().After(leaf.NotAfter) {
			return fmt.Errorf("certificate %s expired on %s", cfg.TLSCertFile, leaf.NotAfter.Format(time.RFC3339))
		}
		return nil
	}
	kp, err := certs.NewKeyPair(cfg.TLSCertFile, cfg.TLSKeyFile, check, log)
	if err != nil {
		return nil, nil, fmt.Errorf("broker: TLS: %w", err)
	}
	var pool *x509.CertPool // nil: the system's roots
	if cfg.TLSCAFile != "" {
		if pool, err = certs.LoadPool(cfg.TLSCAFile); err != nil {
			return nil, nil, fmt.Errorf("broker: TLS CA: %w", err)
		}
	}
	server = &tls.Config{
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return kp.Get(), nil },
		MinVersion:     tls.VersionTLS12,
	}
	if cfg.TLSClientAuth {
		server.ClientCAs, server.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	client = &tls.Config{
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return kp.Get(), nil },
		RootCAs:              pool,
		MinVersion:           tls.VersionTLS12,
	}
	leaf := kp.Get().Leaf
	log.Info("Kafka listener uses TLS", "subject", leaf.Subject.String(), "dns_names", fmt.Sprint(leaf.DNSNames),
		"ip_addresses", fmt.Sprint(leaf.IPAddresses), "not_after", leaf.NotAfter.Format(time.RFC3339),
		"ca", cfg.TLSCAFile, "client_certificates_required", cfg.TLSClientAuth)
	return server, client, nil
}

// tlsHandshake runs the server side of a client's TLS handshake on c. A
// failure is logged (at error level once per client host every 30 s, so a
// misconfigured client retrying cannot flood the log) and returned.
func (b *Broker) tlsHandshake(c net.Conn) (net.Conn, error) {
	tc := tls.Server(c, b.tls)
	ctx, cancel := context.WithTimeout(b.ctx, tlsHandshakeTimeout)
	defer cancel()
	err := tc.HandshakeContext(ctx)
	if err == nil {
		return tc, nil
	}
	remote := c.RemoteAddr().String()
	probe := errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || b.ctx.Err() != nil
	if !probe {
		b.metrics.tlsFailures.Inc()
	}
	switch {
	case probe:
		// A TCP probe or port check that connects and hangs up.
		b.log.Debug("connection closed before the TLS handshake", "client", remote)
	case b.tlsLog.Loud(remote):
		b.log.Error("refused a Kafka connection: TLS handshake failed (the client must use TLS, security.protocol=SSL, trust this broker's certificate, and present its own signed by --tls-ca when --tls-client-auth is set)",
			"client", remote, "error", err)
	default:
		b.log.Debug("refused a Kafka connection: TLS handshake failed", "client", remote, "error", err)
	}
	return nil, err
}

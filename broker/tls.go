package broker

// TLS on the Kafka listener (--tls-cert, --tls-key, --tls-client-ca).
//
// With a certificate and key, every connection to Listen starts with a TLS
// handshake (TLS 1.2 or newer), as on a Kafka listener with
// security.protocol SSL; nothing else changes, and Metadata advertises the
// same addresses, so every broker of a cluster must use TLS or none must.
// With a client CA, a client must present a certificate signed by it
// (ssl.client.auth=required). The certificate and key are re-read when
// their files change (certs.KeyPair); the client CA file is read at start.
// docs/security.md is the operator's guide.

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

// loadTLS returns the listener's TLS configuration, nil without TLS.
func loadTLS(cfg Config, log hclog.Logger) (*tls.Config, error) {
	if cfg.TLSCertFile == "" {
		return nil, nil
	}
	check := func(leaf *x509.Certificate) error {
		if time.Now().After(leaf.NotAfter) {
			return fmt.Errorf("certificate %s expired on %s", cfg.TLSCertFile, leaf.NotAfter.Format(time.RFC3339))
		}
		return nil
	}
	kp, err := certs.NewKeyPair(cfg.TLSCertFile, cfg.TLSKeyFile, check, log)
	if err != nil {
		return nil, fmt.Errorf("broker: TLS: %w", err)
	}
	c := &tls.Config{
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return kp.Get(), nil },
		MinVersion:     tls.VersionTLS12,
	}
	if cfg.TLSClientCAFile != "" {
		pool, err := certs.LoadPool(cfg.TLSClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("broker: TLS client CA: %w", err)
		}
		c.ClientCAs, c.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	leaf := kp.Get().Leaf
	log.Info("Kafka listener uses TLS", "subject", leaf.Subject.String(), "dns_names", fmt.Sprint(leaf.DNSNames),
		"ip_addresses", fmt.Sprint(leaf.IPAddresses), "not_after", leaf.NotAfter.Format(time.RFC3339),
		"client_certificates_required", c.ClientAuth == tls.RequireAndVerifyClientCert)
	return c, nil
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
	switch {
	case errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || b.ctx.Err() != nil:
		// A TCP probe or port check that connects and hangs up.
		b.log.Debug("connection closed before the TLS handshake", "client", remote)
	case b.tlsLog.Loud(remote):
		b.log.Error("refused a Kafka connection: TLS handshake failed (the client must use TLS, security.protocol=SSL, trust this broker's certificate, and present its own when --tls-client-ca is set)",
			"client", remote, "error", err)
	default:
		b.log.Debug("refused a Kafka connection: TLS handshake failed", "client", remote, "error", err)
	}
	return nil, err
}

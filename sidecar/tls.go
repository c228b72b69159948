package sidecar

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/tandem-io/tandem/internal/certs"
)

// Mutual TLS between sidecars (--tls-cert, --tls-key, --tls-ca).
//
// When configured, everything on --listen is TLS: replication, the admin API
// and health. The server requires a client certificate signed by --tls-ca
// (a plaintext client, or one with a certificate from another CA, fails the
// TLS handshake), and a follower verifies the leader's certificate against
// --tls-ca for the leader's host name from --peers (or --tls-server-name).
// A node certificate made by internal/certs (tandemctl certs) also names its
// node (tandem://node/ID); a replication peer presenting one must say hello
// with that node id (see auth.go). The certificate and key files are
// re-read when they change (certs.KeyPair), so rotation needs no restart; the CA
// file is read at start. Probes that cannot do mutual TLS use the
// optional plaintext --health-listen port, which serves grpc.health.v1 only.
// docs/security.md is the operator's guide.

// ErrTLS prefixes TLS configuration errors.
var ErrTLS = errors.New("sidecar: TLS")

// TLSFiles names the PEM files of a TLS identity.
type TLSFiles struct {
	// CertFile and KeyFile: this side's certificate and key (required on a
	// sidecar; a tandemctl talking to a mutual-TLS sidecar needs them too).
	CertFile, KeyFile string
	// CAFile: the CA certificates that peers' certificates must chain to.
	CAFile string
	// ServerName: the name expected in the server's certificate. Empty
	// means the host part of the address dialed.
	ServerName string
}

// Enabled reports whether any TLS file is set.
func (f TLSFiles) Enabled() bool { return f.CertFile != "" || f.KeyFile != "" || f.CAFile != "" }

func (f TLSFiles) validate() error {
	switch {
	case f.CertFile == "" || f.KeyFile == "" || f.CAFile == "":
		return fmt.Errorf("%w: --tls-cert, --tls-key and --tls-ca go together (got cert %q, key %q, ca %q)",
			ErrConfig, f.CertFile, f.KeyFile, f.CAFile)
	}
	return nil
}

func loadPool(file string) (*x509.CertPool, error) {
	pool, err := certs.LoadPool(file)
	if err != nil {
		return nil, fmt.Errorf("%w: --tls-ca: %v", ErrTLS, err)
	}
	return pool, nil
}

func loadPair(f TLSFiles) (tls.Certificate, error) {
	c, err := tls.LoadX509KeyPair(f.CertFile, f.KeyFile)
	if err != nil {
		return c, fmt.Errorf("%w: loading --tls-cert %s / --tls-key %s: %v", ErrTLS, f.CertFile, f.KeyFile, err)
	}
	return c, nil
}

// ClientTLSConfig builds the TLS configuration of a Tandem client: verify
// the server against f.CAFile (for f.ServerName, or the dialed host), and
// present f.CertFile/f.KeyFile when set (a sidecar's --listen requires a
// client certificate).
func ClientTLSConfig(f TLSFiles) (*tls.Config, error) {
	if f.CAFile == "" {
		return nil, fmt.Errorf("%w: a TLS client needs the CA certificate (--tls-ca)", ErrConfig)
	}
	if (f.CertFile == "") != (f.KeyFile == "") {
		return nil, fmt.Errorf("%w: --tls-cert and --tls-key go together", ErrConfig)
	}
	pool, err := loadPool(f.CAFile)
	if err != nil {
		return nil, err
	}
	c := &tls.Config{RootCAs: pool, ServerName: f.ServerName, MinVersion: tls.VersionTLS12}
	if f.CertFile != "" {
		cert, err := loadPair(f)
		if err != nil {
			return nil, err
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c, nil
}

// ClientCredentials returns gRPC transport credentials for a client of a
// TLS sidecar (tandemctl, tests). Handshake failures are logged to log
// (nil: not logged) naming the server.
func ClientCredentials(f TLSFiles, log hclog.Logger) (credentials.TransportCredentials, error) {
	c, err := ClientTLSConfig(f)
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = hclog.NewNullLogger()
	}
	return newLoggedCreds(credentials.NewTLS(c), log), nil
}

// loggedCreds wraps TLS transport credentials so that every failed
// handshake is an hclog line naming the other side: gRPC itself only
// reports it through its own logger (server side) or as a dial error
// buried in a retry loop (client side).
type loggedCreds struct {
	credentials.TransportCredentials
	log  hclog.Logger
	loud *certs.HandshakeLog
}

func newLoggedCreds(c credentials.TransportCredentials, log hclog.Logger) *loggedCreds {
	return &loggedCreds{TransportCredentials: c, log: log, loud: &certs.HandshakeLog{}}
}

func (c *loggedCreds) ServerHandshake(raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	conn, info, err := c.TransportCredentials.ServerHandshake(raw)
	if err != nil {
		remote := raw.RemoteAddr().String()
		switch {
		case errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed):
			// A TCP probe or port check that connects and hangs up.
			c.log.Debug("connection closed before the TLS handshake", "remote", remote)
		case c.loud.Loud(remote):
			c.log.Error("refused a connection: TLS handshake failed (peers must use TLS with a certificate signed by --tls-ca)",
				"remote", remote, "error", err)
		default:
			c.log.Debug("refused a connection: TLS handshake failed", "remote", remote, "error", err)
		}
	}
	return conn, info, err
}

func (c *loggedCreds) ClientHandshake(ctx context.Context, authority string, raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	conn, info, err := c.TransportCredentials.ClientHandshake(ctx, authority, raw)
	if err != nil && ctx.Err() == nil {
		if c.loud.Loud(authority) {
			c.log.Error("TLS handshake with peer failed (it must present a certificate signed by --tls-ca for its host name, and accept ours)",
				"peer", authority, "remote", raw.RemoteAddr().String(), "error", err)
		} else {
			c.log.Debug("TLS handshake with peer failed", "peer", authority, "error", err)
		}
	}
	return conn, info, err
}

func (c *loggedCreds) Clone() credentials.TransportCredentials {
	return &loggedCreds{TransportCredentials: c.TransportCredentials.Clone(), log: c.log, loud: c.loud}
}

// tlsSetup holds a sidecar's TLS credentials (nil fields: plaintext).
type tlsSetup struct {
	server credentials.TransportCredentials
	client credentials.TransportCredentials
}

// loadTLS reads the certificate files named in cfg. Both are nil without
// TLS. The certificate and key are re-read when their files change (see
// certs.KeyPair), so a rotated certificate is used without a restart; the CA file
// is read once.
func loadTLS(cfg *Config, log hclog.Logger) (*tlsSetup, error) {
	if !cfg.TLS.Enabled() {
		return &tlsSetup{}, nil
	}
	log = log.Named("tls")
	check := func(leaf *x509.Certificate) error {
		if id, ok := certs.NodeIDFromCert(leaf); ok && id != cfg.NodeID {
			return fmt.Errorf("%w: --tls-cert %s was issued to node %d, but this is node %d", ErrConfig, cfg.TLS.CertFile, id, cfg.NodeID)
		}
		if time.Now().After(leaf.NotAfter) {
			return fmt.Errorf("%w: --tls-cert %s expired on %s", ErrTLS, cfg.TLS.CertFile, leaf.NotAfter.Format(time.RFC3339))
		}
		return nil
	}
	kp, err := certs.NewKeyPair(cfg.TLS.CertFile, cfg.TLS.KeyFile, check, log)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrTLS, err)
	}
	pool, err := loadPool(cfg.TLS.CAFile)
	if err != nil {
		return nil, err
	}
	sc := &tls.Config{
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return kp.Get(), nil },
		ClientCAs:      pool,
		ClientAuth:     tls.RequireAndVerifyClientCert,
		MinVersion:     tls.VersionTLS12,
	}
	cc := &tls.Config{
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return kp.Get(), nil },
		RootCAs:              pool,
		ServerName:           cfg.TLS.ServerName,
		MinVersion:           tls.VersionTLS12,
	}
	leaf := kp.Get().Leaf
	log.Info("mutual TLS on --listen", "subject", leaf.Subject.String(), "not_after", leaf.NotAfter.Format(time.RFC3339),
		"ca", cfg.TLS.CAFile, "server_name", cfg.TLS.ServerName)
	return &tlsSetup{
		server: newLoggedCreds(credentials.NewTLS(sc), log),
		client: newLoggedCreds(credentials.NewTLS(cc), log),
	}, nil
}

// peerCertificate returns the verified client certificate of the peer of
// a server call, or nil (plaintext).
func peerCertificate(ctx context.Context) *x509.Certificate {
	p, ok := peer.FromContext(ctx)
	if !ok || p.AuthInfo == nil {
		return nil
	}
	ti, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(ti.State.VerifiedChains) == 0 || len(ti.State.VerifiedChains[0]) == 0 {
		return nil
	}
	return ti.State.VerifiedChains[0][0]
}

// plaintextHint makes the error of a plaintext dial to a TLS peer say so:
// gRPC only reports that the connection closed before the server's
// preface, which the follower's log then shows as it is.
func plaintextHint(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	cs, err := streamer(ctx, desc, cc, method, opts...)
	if st, ok := status.FromError(err); ok && st.Code() == codes.Unavailable && strings.Contains(st.Message(), "server preface") {
		err = status.Errorf(codes.Unavailable, "%s (the peer %s closed the connection at once: does it require TLS? this node has no --tls-cert)",
			st.Message(), cc.Target())
	}
	return cs, err
}

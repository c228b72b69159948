package sidecar

import (
	"context"
	"crypto/subtle"
	"fmt"
	"net"
	"net/url"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/auth"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/selector"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	adminv1 "github.com/tandem-io/tandem/gen/tandem/admin/v1"
	replicationv1 "github.com/tandem-io/tandem/gen/tandem/replication/v1"
	"github.com/tandem-io/tandem/internal/certs"
)

// Who may do what on --listen (docs/security.md):
//
//   - With TLS, only holders of a certificate signed by --tls-ca connect at
//     all (tls.go). A replication peer whose certificate names a Tandem
//     identity must say hello as that node (peerIdentityInterceptor).
//   - With --admin-token, every tandem.admin.v1 call except Status needs
//     the metadata "authorization: Bearer <token>" (go-grpc-middleware's
//     auth interceptor behind a selector). New admin methods are protected
//     by default; Status, health and replication never ask for the token.

// adminOpenMethods are the admin calls that need no token.
var adminOpenMethods = map[string]bool{
	"Status": true,
}

// needsAdminToken selects the calls that the token protects.
func needsAdminToken(_ context.Context, c interceptors.CallMeta) bool {
	return c.Service == adminv1.AdminService_ServiceDesc.ServiceName && !adminOpenMethods[c.Method]
}

// checkAdminToken is the auth.AuthFunc of protected admin calls.
func (s *Sidecar) checkAdminToken(ctx context.Context) (context.Context, error) {
	method, _ := grpc.Method(ctx)
	token, err := auth.AuthFromMD(ctx, "bearer")
	if err == nil && subtle.ConstantTimeCompare([]byte(token), []byte(s.cfg.AdminToken)) != 1 {
		err = status.Error(codes.Unauthenticated, "wrong admin token")
	}
	if err != nil {
		s.log.Named("auth").Warn("refused an admin call: missing or wrong token (tandemctl --token or $TANDEM_ADMIN_TOKEN)",
			"method", method, "remote", remoteAddr(ctx), "error", status.Convert(err).Message())
		return nil, status.Errorf(codes.Unauthenticated, "%s needs the admin token (authorization: Bearer <token>; tandemctl --token or $TANDEM_ADMIN_TOKEN): %s",
			method, status.Convert(err).Message())
	}
	return ctx, nil
}

func remoteAddr(ctx context.Context) string {
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		return p.Addr.String()
	}
	return ""
}

// securityServerOptions are the options --listen adds to serverOptions:
// TLS credentials, the admin token check and the peer identity check.
func (s *Sidecar) securityServerOptions() []grpc.ServerOption {
	var opts []grpc.ServerOption
	if s.tls.server != nil {
		opts = append(opts, grpc.Creds(s.tls.server), grpc.ChainStreamInterceptor(s.peerIdentityInterceptor))
	}
	if s.cfg.AdminToken != "" {
		match := selector.MatchFunc(needsAdminToken)
		opts = append(opts,
			grpc.ChainUnaryInterceptor(selector.UnaryServerInterceptor(auth.UnaryServerInterceptor(s.checkAdminToken), match)),
			grpc.ChainStreamInterceptor(selector.StreamServerInterceptor(auth.StreamServerInterceptor(s.checkAdminToken), match)))
		if s.tls.server == nil {
			s.log.Warn("--admin-token is set without TLS: the token crosses the network in plaintext; configure --tls-cert, --tls-key and --tls-ca")
		}
	}
	return opts
}

// peerIdentityInterceptor checks, on a replication stream, that a peer
// whose certificate carries a Tandem identity (tandem://node/ID, made by
// internal/certs) says hello with that node id: a node's key cannot be used
// to impersonate another node, and the admin certificate cannot replicate.
func (s *Sidecar) peerIdentityInterceptor(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if info.FullMethod != replicationv1.ReplicationService_Stream_FullMethodName {
		return handler(srv, ss)
	}
	cert := peerCertificate(ss.Context())
	if cert == nil || !hasTandemIdentity(cert.URIs) {
		return handler(srv, ss)
	}
	id, ok := certs.NodeIDFromCert(cert)
	if !ok {
		s.log.Named("auth").Error("refusing a replication stream: the peer's certificate is not a node certificate",
			"remote", remoteAddr(ss.Context()), "subject", cert.Subject.String())
		return status.Errorf(codes.PermissionDenied, "certificate %q is not a node certificate; only nodes may replicate", cert.Subject.String())
	}
	return handler(srv, &identityStream{ServerStream: ss, s: s, certID: id})
}

func hasTandemIdentity(uris []*url.URL) bool {
	for _, u := range uris {
		if u.Scheme == "tandem" {
			return true
		}
	}
	return false
}

// identityStream checks the first message (the hello) against the node id
// of the peer's certificate.
type identityStream struct {
	grpc.ServerStream
	s       *Sidecar
	certID  int32
	checked bool
}

func (is *identityStream) RecvMsg(m any) error {
	if err := is.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	if is.checked {
		return nil
	}
	is.checked = true
	if h := m.(*replicationv1.StreamRequest).GetHello(); h != nil && h.GetNodeId() != is.certID {
		is.s.log.Named("auth").Error("refusing a replication peer that claims another node's id",
			"claimed_node_id", h.GetNodeId(), "certificate_node_id", is.certID, "remote", remoteAddr(is.Context()))
		return status.Errorf(codes.PermissionDenied, "hello says node %d but the TLS certificate belongs to node %d", h.GetNodeId(), is.certID)
	}
	return nil
}

// listenHealth opens the plaintext --health-listen port, if configured.
func (s *Sidecar) listenHealth() error {
	if s.cfg.HealthListen == "" {
		return nil
	}
	ln, err := net.Listen("tcp", s.cfg.HealthListen)
	if err != nil {
		return fmt.Errorf("sidecar: listening on --health-listen %s: %w", s.cfg.HealthListen, err)
	}
	s.healthLn = ln
	// Health requests are tiny; nothing else is served here.
	s.healthSrv = grpc.NewServer(grpc.MaxRecvMsgSize(64<<10), grpc.ConnectionTimeout(connectionTimeout))
	healthpb.RegisterHealthServer(s.healthSrv, s.health)
	return nil
}

// serveHealth serves --health-listen until Close.
func (s *Sidecar) serveHealth() {
	if s.healthSrv == nil {
		return
	}
	s.log.Info("serving plaintext health checks", "health_listen", s.healthLn.Addr().String())
	s.goFunc(func() {
		if err := s.healthSrv.Serve(s.healthLn); err != nil && err != grpc.ErrServerStopped {
			s.log.Error("health server stopped", "error", err)
		}
	})
}

// HealthAddr is the --health-listen address, or nil when not configured.
func (s *Sidecar) HealthAddr() net.Addr {
	if s.healthLn == nil {
		return nil
	}
	return s.healthLn.Addr()
}

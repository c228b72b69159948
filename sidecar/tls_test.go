package sidecar_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	adminv1 "github.com/tandem-io/tandem/gen/tandem/admin/v1"
	replicationv1 "github.com/tandem-io/tandem/gen/tandem/replication/v1"
	"github.com/tandem-io/tandem/internal/certs"
	"github.com/tandem-io/tandem/internal/testutil"
	"github.com/tandem-io/tandem/sidecar"
	"github.com/tandem-io/tandem/sidecar/sidecartest"
)

// tlsCluster writes certificates for nodes 1..n into a fresh directory and
// returns them; tlsFor gives node id's TLS settings.
func tlsCluster(t *testing.T, n int) (*certs.SetFiles, func(id int32) sidecar.TLSFiles) {
	t.Helper()
	var ids []int32
	for i := int32(1); i <= int32(n); i++ {
		ids = append(ids, i)
	}
	f, err := certs.WriteNodeSet(certs.SetOptions{Dir: filepath.Join(t.TempDir(), "tls"), Nodes: ids, Hosts: []string{"127.0.0.1"}, Shared: true})
	if err != nil {
		t.Fatal(err)
	}
	return f, func(id int32) sidecar.TLSFiles {
		return sidecar.TLSFiles{CertFile: f.NodeCrt[id], KeyFile: f.NodeKey[id], CAFile: f.CA}
	}
}

// dial connects to a sidecar with the given TLS files (plaintext when empty).
func dial(t *testing.T, addr string, files sidecar.TLSFiles) *grpc.ClientConn {
	t.Helper()
	opts := sidecar.ClientOptions(hclog.NewNullLogger(), 1<<20)
	if files.Enabled() {
		creds, err := sidecar.ClientCredentials(files, sidecartest.Logger(t, "client-tls"))
		if err != nil {
			t.Fatal(err)
		}
		opts = append(opts, grpc.WithTransportCredentials(creds))
	}
	conn, err := grpc.NewClient(addr, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func TestMutualTLSReplicates(t *testing.T) {
	f, tlsFor := tlsCluster(t, 3)
	c := sidecartest.NewCluster(t, 3, 1, func(cfg *sidecar.Config) {
		cfg.TLS = tlsFor(cfg.NodeID)
		cfg.HealthListen = "127.0.0.1:0"
	})
	c.StartAll()
	c.WaitLeader().Produce(t, 20, 100)
	c.WaitCaughtUp(20)

	admin := sidecar.TLSFiles{CertFile: f.Admin[0], KeyFile: f.Admin[1], CAFile: f.CA}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := adminv1.NewAdminServiceClient(dial(t, c.Peers[1], admin)).Status(ctx, &adminv1.StatusRequest{})
	if err != nil {
		t.Fatalf("status over mutual TLS with the admin certificate: %v", err)
	}
	if len(st.GetReplicas()) != 2 || !st.GetReplicas()[0].GetConnected() || !st.GetReplicas()[1].GetConnected() {
		t.Fatalf("replicas over TLS: %v", st.GetReplicas())
	}

	// Plaintext or server-only TLS clients fail the handshake on --listen...
	for name, files := range map[string]sidecar.TLSFiles{
		"plaintext":             {},
		"no client certificate": {CAFile: f.CA},
	} {
		_, err := adminv1.NewAdminServiceClient(dial(t, c.Peers[1], files)).Status(ctx, &adminv1.StatusRequest{})
		if status.Code(err) != codes.Unavailable {
			t.Errorf("%s client: %v, want Unavailable (handshake refused)", name, err)
		}
	}
	// ...while the plaintext --health-listen port answers probes.
	hc := healthpb.NewHealthClient(dial(t, c.Nodes[1].Sidecar.HealthAddr().String(), sidecar.TLSFiles{}))
	testutil.Eventually(t, 10*time.Second, func() error {
		r, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: sidecar.ReadinessService})
		if err != nil {
			return err
		}
		if r.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			return fmt.Errorf("readiness %v", r.GetStatus())
		}
		return nil
	})
	// The health port serves nothing else.
	_, err = adminv1.NewAdminServiceClient(dial(t, c.Nodes[1].Sidecar.HealthAddr().String(), sidecar.TLSFiles{})).Status(ctx, &adminv1.StatusRequest{})
	if status.Code(err) != codes.Unimplemented {
		t.Errorf("admin on --health-listen: %v, want Unimplemented", err)
	}
}

func TestTLSRefusesStrangers(t *testing.T) {
	_, tlsFor := tlsCluster(t, 3)
	_, otherFor := tlsCluster(t, 3) // a second CA
	tests := []struct {
		name   string
		files  func(id int32) sidecar.TLSFiles
		reason string // expected in node 2's not-ready reason
	}{
		{"certificate from another CA", otherFor, "authority"},
		{"no TLS", func(int32) sidecar.TLSFiles { return sidecar.TLSFiles{} }, "Unavailable"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := sidecartest.NewCluster(t, 2, 1, func(cfg *sidecar.Config) {
				if cfg.NodeID == 1 {
					cfg.TLS = tlsFor(1)
				} else {
					cfg.TLS = tc.files(cfg.NodeID)
				}
			})
			c.StartAll()
			c.WaitLeader().Produce(t, 5, 10)
			// The follower reports why it is not streaming.
			st2 := func() (*adminv1.StatusResponse, error) {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				return adminv1.NewAdminServiceClient(dial(t, c.Peers[2], tc.files(2))).Status(ctx, &adminv1.StatusRequest{})
			}
			testutil.Eventually(t, 10*time.Second, func() error {
				st, err := st2()
				if err != nil {
					return err
				}
				if st.GetStreaming() || !strings.Contains(st.GetNotReadyReason(), tc.reason) {
					return fmt.Errorf("streaming %v, not ready because %q", st.GetStreaming(), st.GetNotReadyReason())
				}
				return nil
			})
			if got := c.Nodes[2].Broker.WAL().LastLSN(); got != 0 {
				t.Fatalf("the refused follower got %d entries", got)
			}
		})
	}
}

func TestCertificateIdentityMustMatchHello(t *testing.T) {
	f, tlsFor := tlsCluster(t, 3)
	c := sidecartest.NewCluster(t, 3, 1, func(cfg *sidecar.Config) { cfg.TLS = tlsFor(cfg.NodeID) })
	c.StartSidecar(1)
	c.StartBroker(1)
	c.WaitLeader()

	hello := func(files sidecar.TLSFiles, nodeID int32) error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		stream, err := replicationv1.NewReplicationServiceClient(dial(t, c.Peers[1], files)).Stream(ctx)
		if err != nil {
			return err
		}
		if err := stream.Send(&replicationv1.StreamRequest{Payload: &replicationv1.StreamRequest_Hello{Hello: &replicationv1.FollowerHello{
			ClusterId: "test-cluster", NodeId: nodeID, Position: &replicationv1.Position{}}}}); err != nil && !errors.Is(err, io.EOF) {
			return err
		}
		// A stream the sidecar ended before the hello arrived (it can
		// refuse a certificate at once) makes Send return io.EOF; the
		// status it ended with comes from Recv, as grpc-go documents.
		_, err = stream.Recv()
		return err
	}
	admin := sidecar.TLSFiles{CertFile: f.Admin[0], KeyFile: f.Admin[1], CAFile: f.CA}
	tests := []struct {
		name  string
		files sidecar.TLSFiles
		id    int32
		want  codes.Code
	}{
		{"node 2's certificate claiming node 3", tlsFor(2), 3, codes.PermissionDenied},
		{"admin certificate", admin, 2, codes.PermissionDenied},
		{"shared certificate (no identity) as node 3", sidecar.TLSFiles{CertFile: f.Shared[0], KeyFile: f.Shared[1], CAFile: f.CA}, 3, codes.OK},
		{"node 2 as itself", tlsFor(2), 2, codes.OK},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := hello(tc.files, tc.id); status.Code(err) != tc.want {
				t.Fatalf("hello: %v, want %v", err, tc.want)
			}
		})
	}
}

func TestAdminToken(t *testing.T) {
	c := sidecartest.NewCluster(t, 2, 1, func(cfg *sidecar.Config) { cfg.AdminToken = "s3cret" })
	c.StartAll()
	c.WaitLeader().Produce(t, 3, 10)
	c.WaitCaughtUp(3)
	a := c.Admin(2)
	call := func(token string, fn func(ctx context.Context) error) error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if token != "" {
			ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
		}
		return fn(ctx)
	}
	promote := func(ctx context.Context) error {
		_, err := a.Promote(ctx, &adminv1.PromoteRequest{})
		return err
	}
	checksum := func(ctx context.Context) error {
		_, err := a.Checksum(ctx, &adminv1.ChecksumRequest{FromLsn: 1, ToLsn: 3})
		return err
	}
	st := func(ctx context.Context) error {
		_, err := a.Status(ctx, &adminv1.StatusRequest{})
		return err
	}
	health := func(ctx context.Context) error {
		conn := dial(t, c.Peers[2], sidecar.TLSFiles{})
		_, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
		return err
	}
	tests := []struct {
		name   string
		token  string
		fn     func(context.Context) error
		unauth bool
	}{
		{"promote without token", "", promote, true},
		{"promote with a wrong token", "guess", promote, true},
		{"checksum without token", "", checksum, true},
		{"checksum with token", "s3cret", checksum, false},
		{"promote with token gets past auth", "s3cret", promote, false},
		{"status stays open", "", st, false},
		{"health stays open", "", health, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := call(tc.token, tc.fn)
			if got := status.Code(err) == codes.Unauthenticated; got != tc.unauth {
				t.Fatalf("err = %v, want unauthenticated %v", err, tc.unauth)
			}
			if tc.unauth && !strings.Contains(err.Error(), "admin token") {
				t.Fatalf("refusal does not say what is missing: %v", err)
			}
		})
	}
}

// TestHelloIdentityChecks: with a real follower streaming, the leader
// refuses a second stream claiming the same node id, an id outside
// --peers and another cluster id, and the real follower is not disturbed.
func TestHelloIdentityChecks(t *testing.T) {
	c := sidecartest.NewCluster(t, 2, 1, nil)
	c.StartAll()
	c.WaitLeader().Produce(t, 5, 10)
	c.WaitCaughtUp(5)
	hello := func(cluster string, id int32) error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		stream, err := replicationv1.NewReplicationServiceClient(dial(t, c.Peers[1], sidecar.TLSFiles{})).Stream(ctx)
		if err != nil {
			return err
		}
		if err := stream.Send(&replicationv1.StreamRequest{Payload: &replicationv1.StreamRequest_Hello{Hello: &replicationv1.FollowerHello{
			ClusterId: cluster, NodeId: id, Position: &replicationv1.Position{}}}}); err != nil {
			return err
		}
		_, err = stream.Recv()
		return err
	}
	tests := []struct {
		name    string
		cluster string
		id      int32
		want    codes.Code
	}{
		{"an id already connected", "test-cluster", 2, codes.AlreadyExists},
		{"an id not in --peers", "test-cluster", 9, codes.PermissionDenied},
		{"the leader's own id", "test-cluster", 1, codes.InvalidArgument},
		{"another cluster", "other-cluster", 2, codes.FailedPrecondition},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := hello(tc.cluster, tc.id); status.Code(err) != tc.want {
				t.Fatalf("hello as node %d of %q: %v, want %v", tc.id, tc.cluster, err, tc.want)
			}
		})
	}
	c.Nodes[1].Broker.Produce(t, 5, 10)
	c.WaitCaughtUp(10) // the real follower kept streaming
}

// TestCertificateRotation: new certificate files are picked up by the next
// handshakes without a restart.
func TestCertificateRotation(t *testing.T) {
	f, tlsFor := tlsCluster(t, 1)
	c := sidecartest.NewCluster(t, 1, 1, func(cfg *sidecar.Config) { cfg.TLS = tlsFor(cfg.NodeID) })
	c.StartSidecar(1)
	cc, err := sidecar.ClientTLSConfig(sidecar.TLSFiles{CertFile: f.Admin[0], KeyFile: f.Admin[1], CAFile: f.CA})
	if err != nil {
		t.Fatal(err)
	}
	serial := func() (string, error) {
		conn, err := tls.Dial("tcp", c.Peers[1], cc)
		if err != nil {
			return "", err
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].SerialNumber.String(), nil
	}
	before, err := serial()
	if err != nil {
		t.Fatal(err)
	}
	ca, err := certs.LoadCA(f.CA, filepath.Join(filepath.Dir(f.CA), "ca.key"))
	if err != nil {
		t.Fatal(err)
	}
	// A renewed certificate is picked up.
	renewed, err := ca.IssueNode(1, []string{"127.0.0.1"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := renewed.Write(filepath.Dir(f.CA), "node-1"); err != nil {
		t.Fatal(err)
	}
	b, _ := pem.Decode(renewed.CertPEM)
	leaf, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, func() error {
		s, err := serial()
		if err != nil {
			return err
		}
		if s != leaf.SerialNumber.String() {
			return fmt.Errorf("serving serial %s (the first was %s), want the renewed %s", s, before, leaf.SerialNumber)
		}
		return nil
	})
}

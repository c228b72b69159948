package sidecar_test

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	adminv1 "github.com/tandem-io/tandem/gen/tandem/admin/v1"
	replicationv1 "github.com/tandem-io/tandem/gen/tandem/replication/v1"
	"github.com/tandem-io/tandem/internal/testutil"
	"github.com/tandem-io/tandem/sidecar"
	"github.com/tandem-io/tandem/sidecar/sidecartest"
)

func TestClusterIDMismatchRefused(t *testing.T) {
	c := sidecartest.NewCluster(t, 2, 1, nil)
	c.Nodes[2].Config.ClusterID = "someone-elses-cluster"
	c.StartAll()
	c.WaitLeader().Produce(t, 5, 10)

	// The follower reports the refusal (and logs it at error level).
	testutil.Eventually(t, 10*time.Second, func() bool {
		st, err := c.Admin(2).Status(context.Background(), &adminv1.StatusRequest{})
		return err == nil && strings.Contains(st.GetNotReadyReason(), "cluster id mismatch") &&
			strings.Contains(st.GetNotReadyReason(), `"test-cluster"`) &&
			strings.Contains(st.GetNotReadyReason(), `"someone-elses-cluster"`)
	})
	if got := c.Nodes[2].Broker.WAL().LastLSN(); got != 0 {
		t.Fatalf("the refused follower got %d entries", got)
	}
	st, err := c.Admin(1).Status(context.Background(), &adminv1.StatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range st.GetReplicas() {
		if r.GetConnected() {
			t.Errorf("refused follower %d shows as connected", r.GetNodeId())
		}
	}

	// Directly: the leader answers FAILED_PRECONDITION naming both ids.
	err = helloAnswer(t, c.Peers[1], &replicationv1.FollowerHello{ClusterId: "other", NodeId: 2, Position: &replicationv1.Position{}})
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), `"test-cluster"`) || !strings.Contains(err.Error(), `"other"`) {
		t.Fatalf("hello from another cluster: %v, want FailedPrecondition naming both ids", err)
	}
}

// A node that does not lead refuses a replication stream with UNAVAILABLE
// (retry: during a failover followers dial the old leader until they learn
// of the new one) and names the leader it follows.
func TestNonLeaderRefusesStreamAsUnavailable(t *testing.T) {
	c := sidecartest.NewCluster(t, 3, 1, nil)
	c.StartAll()
	c.WaitLeader().Produce(t, 5, 10)

	err := helloAnswer(t, c.Peers[2], &replicationv1.FollowerHello{ClusterId: "test-cluster", NodeId: 3, Position: &replicationv1.Position{}})
	want := "node 2 is not the leader: it follows node 1 at " + c.Peers[1]
	if status.Code(err) != codes.Unavailable || status.Convert(err).Message() != want {
		t.Fatalf("hello to a follower: %v, want Unavailable %q", err, want)
	}
}

// helloAnswer opens a replication stream to the sidecar at addr, says
// hello, and returns the error that ends the stream instead of an answer
// (nil if the sidecar answers the hello).
func helloAnswer(t *testing.T, addr string, hello *replicationv1.FollowerHello) error {
	t.Helper()
	conn, err := grpc.NewClient(addr, sidecar.ClientOptions(hclog.NewNullLogger(), 1<<20)...)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	stream, err := replicationv1.NewReplicationServiceClient(conn).Stream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&replicationv1.StreamRequest{Payload: &replicationv1.StreamRequest_Hello{Hello: hello}}); err != nil {
		t.Fatal(err)
	}
	_, err = stream.Recv()
	return err
}

// rawCodec sends bytes as they are, to put garbage inside a valid gRPC call.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error)      { return *(v.(*[]byte)), nil }
func (rawCodec) Unmarshal(data []byte, v any) error { *(v.(*[]byte)) = data; return nil }
func (rawCodec) Name() string                       { return "proto" }

func TestGarbageOnReplicationPort(t *testing.T) {
	c := sidecartest.NewCluster(t, 2, 1, nil)
	c.StartAll()
	c.WaitLeader()
	addr := c.Peers[1]

	// Not HTTP/2 at all.
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	nc.Write([]byte("GET / HTTP/1.0\r\n\r\n\x00\xff\xfe garbage \x01\x02"))
	nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 512)
	nc.Read(buf) // whatever the server says, it must not crash
	nc.Close()

	// A valid gRPC call whose message does not parse, and one that is a
	// valid protobuf but not a hello.
	conn, err := grpc.NewClient(addr, sidecar.ClientOptions(hclog.NewNullLogger(), 1<<20)...)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for _, payload := range [][]byte{
		{0xff, 0xff, 0xff, 0xff, 0x0f, 0x01, 0x02},
		{0x12, 0x00}, // StreamRequest{ack: {}}
		[]byte("\x0a\x05hello"),
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		s, err := conn.NewStream(ctx, &grpc.StreamDesc{ClientStreams: true, ServerStreams: true},
			"/tandem.replication.v1.ReplicationService/Stream", grpc.ForceCodec(rawCodec{}))
		if err != nil {
			cancel()
			t.Fatal(err)
		}
		p := payload
		if err := s.SendMsg(&p); err != nil {
			cancel()
			t.Fatal(err)
		}
		var out []byte
		err = s.RecvMsg(&out)
		cancel()
		if code := status.Code(err); code == codes.OK || code == codes.DeadlineExceeded {
			t.Fatalf("garbage %x: got %v, want a gRPC error", payload, err)
		}
		t.Logf("garbage %x -> %v", payload, err)
	}
	// Still serving.
	if _, err := c.Admin(1).Status(context.Background(), &adminv1.StatusRequest{}); err != nil {
		t.Fatalf("sidecar not serving after garbage: %v", err)
	}
}

func TestSocketPermissions(t *testing.T) {
	c := sidecartest.NewCluster(t, 1, 1, nil)
	c.StartSidecar(1)
	fi, err := lstat(c.Nodes[1].Socket)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode %v, want 0600", fi.Mode().Perm())
	}
	di, err := lstat(dirOf(c.Nodes[1].Socket))
	if err != nil {
		t.Fatal(err)
	}
	if di.Mode().Perm() != 0o700 {
		t.Errorf("socket directory mode %v, want 0700", di.Mode().Perm())
	}
	// A crashed sidecar leaves its socket behind: the next one starts anyway.
	c.StopSidecar(1)
	ln, err := net.Listen("unix", c.Nodes[1].Socket)
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	if _, err := lstat(c.Nodes[1].Socket); err != nil {
		t.Fatalf("stale socket not left behind: %v", err)
	}
	c.StartSidecar(1)
	// A second sidecar on the same live socket is refused.
	cfg := c.Nodes[1].Config
	cfg.Listen = "127.0.0.1:0"
	if s, err := sidecar.Open(cfg); err == nil {
		s.Close()
		t.Fatal("second sidecar on a live socket started")
	}
}

func lstat(p string) (os.FileInfo, error) { return os.Lstat(p) }
func dirOf(p string) string               { return filepath.Dir(p) }

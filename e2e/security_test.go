package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/grpc"

	adminv1 "github.com/tandem-io/tandem/gen/tandem/admin/v1"
	"github.com/tandem-io/tandem/internal/certs"
	"github.com/tandem-io/tandem/internal/testutil"
	"github.com/tandem-io/tandem/sidecar"
)

// Security end to end: real broker and sidecar processes with mutual TLS
// between sidecars (certificates from internal/certs), and the admin token.

// tlsNode is one broker+sidecar pair of a TLS test cluster.
type tlsNode struct {
	id            int
	kafka, listen string
	files         sidecar.TLSFiles // empty: plaintext
	side, broker  *testutil.Process
}

// startTLSPairs starts a broker+sidecar pair per entry of files (node i+1
// gets files[i]; node 1 leads), all on 127.0.0.1.
func startTLSPairs(t *testing.T, files []sidecar.TLSFiles) []*tlsNode {
	t.Helper()
	base := t.TempDir()
	var nodes []*tlsNode
	var peers []string
	for i, f := range files {
		n := &tlsNode{id: i + 1, kafka: testutil.FreeAddr(t), listen: testutil.FreeAddr(t), files: f}
		nodes = append(nodes, n)
		peers = append(peers, fmt.Sprintf("%d=%s", n.id, n.listen))
	}
	for _, n := range nodes {
		sock := filepath.Join(shortTempDir(t), "s.sock")
		args := []string{"--node-id", fmt.Sprint(n.id), "--cluster-id", "e2e-tls", "--broker-socket", sock,
			"--listen", n.listen, "--peers", strings.Join(peers, ","), "--leader", "1",
			"--heartbeat-interval", "500ms", "--peer-timeout", "3s"}
		if n.files.Enabled() {
			args = append(args, "--tls-cert", n.files.CertFile, "--tls-key", n.files.KeyFile, "--tls-ca", n.files.CAFile)
		}
		n.side = testutil.Start(t, testutil.ProcessConfig{Name: fmt.Sprintf("sidecar-%d", n.id), Path: testutil.Bin(t, "tandem-sidecar"), Args: args})
		n.broker = testutil.Start(t, testutil.ProcessConfig{
			Name: fmt.Sprintf("broker-%d", n.id),
			Path: brokerPath(t),
			Args: []string{"--node-id", fmt.Sprint(n.id), "--data-dir", filepath.Join(base, fmt.Sprintf("node-%d", n.id)),
				"--listen", n.kafka, "--advertise", n.kafka, "--sidecar", sock},
		})
	}
	for _, n := range nodes {
		testutil.WaitTCPFor(t, n.kafka, 20*time.Second)
		testutil.WaitTCPFor(t, n.listen, 20*time.Second)
	}
	return nodes
}

// tlsStatus asks a sidecar for its status with the given client TLS files.
func tlsStatus(addr string, files sidecar.TLSFiles) (*adminv1.StatusResponse, error) {
	opts := sidecar.ClientOptions(hclog.NewNullLogger(), 1<<20)
	if files.Enabled() {
		creds, err := sidecar.ClientCredentials(files, nil)
		if err != nil {
			return nil, err
		}
		opts = append(opts, grpc.WithTransportCredentials(creds))
	}
	conn, err := grpc.NewClient(addr, opts...)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	return adminv1.NewAdminServiceClient(conn).Status(ctx, &adminv1.StatusRequest{})
}

// TestSecurityStrangersCannotJoin: node 2 (certificate from the cluster's
// CA) joins; node 3, with a certificate from another CA or with no TLS at
// all, is refused, gets no data, and both sides log the refusal.
func TestSecurityStrangersCannotJoin(t *testing.T) {
	dir := t.TempDir()
	good, err := certs.WriteNodeSet(certs.SetOptions{Dir: filepath.Join(dir, "good"), Nodes: []int32{1, 2, 3}, Hosts: []string{"127.0.0.1"}})
	if err != nil {
		t.Fatal(err)
	}
	other, err := certs.WriteNodeSet(certs.SetOptions{Dir: filepath.Join(dir, "other"), Nodes: []int32{3}, Hosts: []string{"127.0.0.1"}})
	if err != nil {
		t.Fatal(err)
	}
	node := func(f *certs.SetFiles, id int32) sidecar.TLSFiles {
		return sidecar.TLSFiles{CertFile: f.NodeCrt[id], KeyFile: f.NodeKey[id], CAFile: f.CA}
	}
	admin := sidecar.TLSFiles{CertFile: good.Admin[0], KeyFile: good.Admin[1], CAFile: good.CA}
	tests := []struct {
		name       string
		stranger   sidecar.TLSFiles
		leaderLog  string // in the leader sidecar's log
		strangeLog string // in node 3's sidecar log
	}{
		{"certificate from another CA", node(other, 3),
			"refused a connection: TLS handshake failed", "TLS handshake with peer failed"},
		{"no TLS", sidecar.TLSFiles{},
			"first record does not look like a TLS handshake", "does it require TLS?"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			nodes := startTLSPairs(t, []sidecar.TLSFiles{node(good, 1), node(good, 2), tc.stranger})
			leader := nodes[0]

			cl, err := kgo.NewClient(kgo.SeedBrokers(leader.kafka), kgo.AllowAutoTopicCreation(),
				kgo.RecordDeliveryTimeout(30*time.Second))
			if err != nil {
				t.Fatal(err)
			}
			defer cl.Close()
			ctx := ctxTimeout(t, 30*time.Second)
			for i := 0; i < 5; i++ {
				if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "secure", Value: fmt.Appendf(nil, "v%d", i)}).FirstErr(); err != nil {
					t.Fatalf("produce: %v", err)
				}
			}

			// Node 2 is in sync; node 3 never connects.
			testutil.Eventually(t, 30*time.Second, func() error {
				st, err := tlsStatus(leader.listen, admin)
				if err != nil {
					return err
				}
				for _, r := range st.GetReplicas() {
					switch {
					case r.GetNodeId() == 2 && (!r.GetConnected() || !r.GetInIsr() || r.GetAppliedLsn() < st.GetLastLsn()):
						return fmt.Errorf("node 2 not in sync: %v", r)
					case r.GetNodeId() == 3 && r.GetConnected():
						t.Fatalf("node 3 (%s) connected to the leader", tc.name)
					}
				}
				return nil
			})
			st3, err := tlsStatus(nodes[2].listen, tc.stranger)
			if err != nil {
				t.Fatalf("status of node 3: %v", err)
			}
			if st3.GetStreaming() || st3.GetLastLsn() != 0 {
				t.Fatalf("node 3 streaming=%v last_lsn=%d, want no data", st3.GetStreaming(), st3.GetLastLsn())
			}
			testutil.Eventually(t, 20*time.Second, func() error {
				if !strings.Contains(leader.side.Log(), tc.leaderLog) {
					return fmt.Errorf("leader sidecar log lacks %q", tc.leaderLog)
				}
				if !strings.Contains(nodes[2].side.Log(), tc.strangeLog) {
					return fmt.Errorf("node 3 sidecar log lacks %q", tc.strangeLog)
				}
				return nil
			})
		})
	}
}

// TestSecurityAdminToken: with --admin-token-file on the sidecars,
// `tandemctl promote` without the token is refused (Unauthenticated), and
// with it (flag or $TANDEM_ADMIN_TOKEN) gets past authentication; status
// needs no token.
func TestSecurityAdminToken(t *testing.T) {
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("e2e-s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := startCluster(t, clusterOpts{nodes: 2, sidecarFlags: []string{"--admin-token-file", tokenFile}})
	tandemctl := func(env []string, args ...string) (string, error) {
		cmd := exec.Command(testutil.Bin(t, "tandemctl"), append([]string{"--sidecar", c.node(2).sidecar}, args...)...)
		cmd.Env = append(os.Environ(), env...)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	tests := []struct {
		name   string
		env    []string
		args   []string
		unauth bool
	}{
		{"status needs no token", nil, []string{"status"}, false},
		{"promote without token", nil, []string{"promote"}, true},
		{"promote with a wrong token", nil, []string{"--token", "guess", "promote"}, true},
		{"verify without token", nil, []string{"verify"}, true},
		{"verify with the token", []string{"TANDEM_ADMIN_TOKEN=e2e-s3cret"}, []string{"verify"}, false},
		{"promote with --token", nil, []string{"--token", "e2e-s3cret", "promote"}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, err := tandemctl(tc.env, tc.args...)
			refused := strings.Contains(out, "Unauthenticated")
			if refused != tc.unauth {
				t.Fatalf("tandemctl %v: err %v, output:\n%s\nwant refused=%v", tc.args, err, out, tc.unauth)
			}
			if tc.unauth && err == nil {
				t.Fatalf("tandemctl %v exited 0 although refused:\n%s", tc.args, out)
			}
		})
	}
	if !strings.Contains(c.node(2).side.Log(), "refused an admin call: missing or wrong token") {
		t.Error("the sidecar did not log the refused admin calls")
	}
}

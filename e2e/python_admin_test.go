package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/tandem-io/tandem/internal/certs"
	"github.com/tandem-io/tandem/internal/testutil"
	"github.com/tandem-io/tandem/sidecar"
)

// pyAdminResult is what e2e/clients/admin_status.py prints.
type pyAdminResult struct {
	Status struct {
		NodeID    int32  `json:"node_id"`
		ClusterID string `json:"cluster_id"`
		Role      string `json:"role"`
		LeaderID  int32  `json:"leader_id"`
		Linked    bool   `json:"linked"`
		Replicas  []struct {
			NodeID    int32 `json:"node_id"`
			Connected bool  `json:"connected"`
			InISR     bool  `json:"in_isr"`
		} `json:"replicas"`
	} `json:"status"`
	Health map[string]string `json:"health"`
}

// pyAdminStatus runs the Python admin client (generated stubs from
// gen/python, Debian's python3-grpcio and python3-protobuf) against addr.
func pyAdminStatus(t *testing.T, addr string, extra ...string) (pyAdminResult, error) {
	t.Helper()
	var res pyAdminResult
	cmd := exec.Command(python, append([]string{clientScript(t, "admin_status.py"), "--sidecar", addr}, extra...)...)
	cmd.Env = append(os.Environ(), "PYTHONPATH="+filepath.Join(testutil.RepoRoot(t), "gen", "python"))
	out, err := cmd.Output()
	if err != nil {
		stderr := ""
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		return res, fmt.Errorf("admin_status.py: %v: %s", err, stderr)
	}
	if err := json.Unmarshal(out, &res); err != nil {
		return res, fmt.Errorf("admin_status.py output %q: %v", out, err)
	}
	return res, nil
}

// TestPythonAdminClient: a Python client built from the generated stubs
// reads the admin status and both health services of a leader and a
// follower, in plaintext and over mutual TLS.
func TestPythonAdminClient(t *testing.T) {
	t.Run("plaintext cluster", func(t *testing.T) {
		c := startCluster(t, clusterOpts{nodes: 2})
		var leader pyAdminResult
		testutil.Eventually(t, 20*time.Second, func() error {
			var err error
			leader, err = pyAdminStatus(t, c.node(1).sidecar)
			if err != nil {
				return err
			}
			if leader.Health[sidecar.ReadinessService] != "SERVING" {
				return fmt.Errorf("leader readiness %q", leader.Health[sidecar.ReadinessService])
			}
			return nil
		})
		st := leader.Status
		if st.NodeID != 1 || st.ClusterID != "e2e" || st.Role != "ROLE_LEADER" || !st.Linked || leader.Health[""] != "SERVING" {
			t.Fatalf("leader as seen from Python: %+v", leader)
		}
		if len(st.Replicas) != 1 || st.Replicas[0].NodeID != 2 || !st.Replicas[0].Connected || !st.Replicas[0].InISR {
			t.Fatalf("leader's replicas as seen from Python: %+v", st.Replicas)
		}
		follower, err := pyAdminStatus(t, c.node(2).sidecar)
		if err != nil {
			t.Fatal(err)
		}
		if follower.Status.Role != "ROLE_FOLLOWER" || follower.Status.LeaderID != 1 || follower.Health[""] != "SERVING" {
			t.Fatalf("follower as seen from Python: %+v", follower)
		}
	})
	t.Run("mutual TLS", func(t *testing.T) {
		f, err := certs.WriteNodeSet(certs.SetOptions{Dir: filepath.Join(t.TempDir(), "tls"), Nodes: []int32{1}, Hosts: []string{"127.0.0.1"}})
		if err != nil {
			t.Fatal(err)
		}
		nodes := startTLSPairs(t, []sidecar.TLSFiles{{CertFile: f.NodeCrt[1], KeyFile: f.NodeKey[1], CAFile: f.CA}})
		tlsArgs := []string{"--tls-ca", f.CA, "--tls-cert", f.Admin[0], "--tls-key", f.Admin[1]}
		testutil.Eventually(t, 20*time.Second, func() error {
			res, err := pyAdminStatus(t, nodes[0].listen, tlsArgs...)
			if err != nil {
				return err
			}
			if res.Status.NodeID != 1 || res.Status.ClusterID != "e2e-tls" || res.Health[sidecar.ReadinessService] != "SERVING" {
				return fmt.Errorf("over TLS from Python: %+v", res)
			}
			return nil
		})
		// Without a client certificate the handshake fails.
		if _, err := pyAdminStatus(t, nodes[0].listen, "--tls-ca", f.CA); err == nil {
			t.Fatal("a Python client without a client certificate got through mutual TLS")
		}
	})
}

package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tandem-io/tandem/sidecar"
	"github.com/tandem-io/tandem/sidecar/sidecartest"
)

// TestCertsTLSAndToken: `tandemctl certs` makes certificates that a TLS
// cluster with an admin token accepts; tandemctl talks to it with
// --tls-* and --token (or the environment), and is refused without them.
func TestCertsTLSAndToken(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tls")
	out, err := ctl(t, "certs", "--out", dir, "--nodes", "1,2", "--hosts", "127.0.0.1")
	if err != nil || !strings.Contains(out, "node 2: --tls-cert") {
		t.Fatalf("certs: %v\n%s", err, out)
	}
	if out, err := ctl(t, "certs", "--out", dir, "--nodes", "3"); err != nil || !strings.Contains(out, "reused the CA") {
		t.Fatalf("second certs run: %v\n%s", err, out)
	}
	c := sidecartest.NewCluster(t, 2, 1, func(cfg *sidecar.Config) {
		id := fmt.Sprintf("node-%d", cfg.NodeID)
		cfg.TLS = sidecar.TLSFiles{CertFile: filepath.Join(dir, id+".crt"), KeyFile: filepath.Join(dir, id+".key"), CAFile: filepath.Join(dir, "ca.crt")}
		cfg.AdminToken = "tok"
	})
	c.StartAll()
	c.WaitLeader().Produce(t, 10, 10)
	c.WaitCaughtUp(10)

	tlsArgs := []string{"--sidecar", c.Peers[1], "--tls-ca", filepath.Join(dir, "ca.crt"),
		"--tls-cert", filepath.Join(dir, "admin.crt"), "--tls-key", filepath.Join(dir, "admin.key")}
	if out, err := ctl(t, append(tlsArgs, "status")...); err != nil || !strings.Contains(out, "role leader") {
		t.Fatalf("status over TLS: %v\n%s", err, out)
	}
	if _, err := ctl(t, "--sidecar", c.Peers[1], "status"); err == nil {
		t.Fatal("plaintext status to a TLS sidecar succeeded")
	}
	if _, err := ctl(t, append(tlsArgs, "verify")...); err == nil || !strings.Contains(err.Error(), "Unauthenticated") {
		t.Fatalf("verify without the token: %v, want Unauthenticated", err)
	}
	if out, err := ctl(t, append(tlsArgs, "--token", "tok", "verify")...); err != nil || !strings.Contains(out, "identical: 2 nodes") {
		t.Fatalf("verify with --token: %v\n%s", err, out)
	}
	t.Setenv("TANDEM_ADMIN_TOKEN", "tok")
	if out, err := ctl(t, append(tlsArgs, "verify")...); err != nil || !strings.Contains(out, "identical") {
		t.Fatalf("verify with $TANDEM_ADMIN_TOKEN: %v\n%s", err, out)
	}
	var ue usageError
	if _, err := ctl(t, "--sidecar", c.Peers[1], "--tls-ca", filepath.Join(dir, "missing.crt"), "status"); !errors.As(err, &ue) {
		t.Fatalf("a missing --tls-ca file: %v, want a usage error", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "node-3.key")); err != nil {
		t.Fatal(err)
	}
}

package main

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/tandem-io/tandem/sidecar"
)

func TestSecurityFlags(t *testing.T) {
	base := []string{"--node-id", "1", "--cluster-id", "c", "--broker-socket", "/run/t/s.sock", "--listen", "127.0.0.1:9192"}
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("  s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(t.TempDir(), "empty")
	if err := os.WriteFile(empty, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		args  []string
		check func(cfg sidecar.Config) bool
		bad   bool
	}{
		{"all TLS files", []string{"--tls-cert", "n.crt", "--tls-key", "n.key", "--tls-ca", "ca.crt", "--tls-server-name", "node-1"},
			func(c sidecar.Config) bool { return c.TLS.CertFile == "n.crt" && c.TLS.ServerName == "node-1" }, false},
		{"TLS cert without key and CA", []string{"--tls-cert", "n.crt"}, nil, true},
		{"token from a file, trimmed", []string{"--admin-token-file", tokenFile},
			func(c sidecar.Config) bool { return c.AdminToken == "s3cret" }, false},
		{"token and token file", []string{"--admin-token", "x", "--admin-token-file", tokenFile}, nil, true},
		{"empty token file", []string{"--admin-token-file", empty}, nil, true},
		{"missing token file", []string{"--admin-token-file", empty + ".nope"}, nil, true},
		{"health listen", []string{"--health-listen", "127.0.0.1:9193"},
			func(c sidecar.Config) bool { return c.HealthListen == "127.0.0.1:9193" }, false},
		{"bad health listen", []string{"--health-listen", "nope"}, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, _, err := parseFlags(append(append([]string{}, base...), tt.args...))
			if (err != nil) != tt.bad {
				t.Fatalf("parseFlags: %v, want error %v", err, tt.bad)
			}
			if tt.bad && errors.Is(err, sidecar.ErrNotImplemented) {
				t.Fatalf("unexpected error kind: %v", err)
			}
			if tt.check != nil && !tt.check(cfg) {
				t.Fatalf("config: %+v", cfg)
			}
		})
	}
}

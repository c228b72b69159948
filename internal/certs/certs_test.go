package certs

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net"
	"os"
	"path/filepath"
	"testing"
)

func parse(t *testing.T, p []byte) *x509.Certificate {
	t.Helper()
	b, _ := pem.Decode(p)
	if b == nil {
		t.Fatal("not PEM")
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// handshake runs a TLS handshake between a server and a client holding the
// given pairs and trusting the given CAs.
func handshake(t *testing.T, srv, cli *Pair, srvCA, cliCA *CA, name string) (error, error) {
	t.Helper()
	pool := func(ca *CA) *x509.CertPool {
		p := x509.NewCertPool()
		p.AddCert(ca.Cert)
		return p
	}
	sc, err := tls.X509KeyPair(srv.CertPEM, srv.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	cc, err := tls.X509KeyPair(cli.CertPEM, cli.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	a, b := net.Pipe()
	s := tls.Server(a, &tls.Config{Certificates: []tls.Certificate{sc}, ClientCAs: pool(srvCA), ClientAuth: tls.RequireAndVerifyClientCert})
	c := tls.Client(b, &tls.Config{Certificates: []tls.Certificate{cc}, RootCAs: pool(cliCA), ServerName: name})
	errs := make(chan error, 1)
	go func() {
		err := s.Handshake()
		s.Close()
		errs <- err
	}()
	cerr := c.Handshake()
	c.Close()
	return <-errs, cerr
}

func TestIssueAndHandshake(t *testing.T) {
	ca, err := NewCA("test CA", 0)
	if err != nil {
		t.Fatal(err)
	}
	other, err := NewCA("other CA", 0)
	if err != nil {
		t.Fatal(err)
	}
	n1, err := ca.IssueNode(1, []string{"127.0.0.1", "localhost"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	n2, err := ca.IssueNode(2, []string{"127.0.0.1"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	stranger, err := other.IssueNode(2, []string{"127.0.0.1"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	c1 := parse(t, n1.CertPEM)
	if id, ok := NodeIDFromCert(c1); !ok || id != 1 {
		t.Fatalf("NodeIDFromCert = %d, %v; want 1", id, ok)
	}
	if c1.Subject.CommonName != "node-1" || len(c1.IPAddresses) != 1 || len(c1.DNSNames) != 1 {
		t.Fatalf("unexpected subject/SANs: %v %v %v", c1.Subject, c1.IPAddresses, c1.DNSNames)
	}
	tests := []struct {
		name         string
		srv, cli     *Pair
		srvCA, cliCA *CA
		serverName   string
		srvOK, cliOK bool
	}{
		{"same CA", n1, n2, ca, ca, "127.0.0.1", true, true},
		{"same CA by DNS name", n1, n2, ca, ca, "localhost", true, true},
		{"wrong server name", n1, n2, ca, ca, "node-9.example", false, false},
		{"client from another CA", n1, stranger, ca, other, "127.0.0.1", false, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			serr, cerr := handshake(t, tc.srv, tc.cli, tc.srvCA, tc.cliCA, tc.serverName)
			if (serr == nil) != tc.srvOK || (cerr == nil) != tc.cliOK {
				t.Fatalf("server err %v, client err %v; want server ok %v, client ok %v", serr, cerr, tc.srvOK, tc.cliOK)
			}
		})
	}
}

func TestWriteNodeSetReusesCA(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tls")
	f, err := WriteNodeSet(SetOptions{Dir: dir, Nodes: []int32{1, 2, 3}, Hosts: []string{"127.0.0.1"},
		NodeHosts: map[int32][]string{2: {"node-2.example"}}, Shared: true})
	if err != nil {
		t.Fatal(err)
	}
	if f.Reused {
		t.Fatal("a fresh directory reported a reused CA")
	}
	for _, p := range []string{f.CA, f.NodeCrt[1], f.NodeKey[3], f.Admin[0], f.Admin[1], f.Shared[0], f.Shared[1]} {
		if _, err := os.Stat(p); err != nil {
			t.Fatal(err)
		}
	}
	if st, _ := os.Stat(f.NodeKey[1]); st.Mode().Perm() != 0o600 {
		t.Fatalf("key mode %v, want 0600", st.Mode().Perm())
	}
	caBefore, _ := os.ReadFile(f.CA)
	f2, err := WriteNodeSet(SetOptions{Dir: dir, Nodes: []int32{4}})
	if err != nil {
		t.Fatal(err)
	}
	caAfter, _ := os.ReadFile(f2.CA)
	if !f2.Reused || string(caBefore) != string(caAfter) {
		t.Fatal("the second run did not reuse the CA")
	}
	ca, err := LoadCA(f.CA, filepath.Join(dir, "ca.key"))
	if err != nil {
		t.Fatal(err)
	}
	n4, _ := os.ReadFile(f2.NodeCrt[4])
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	if _, err := parse(t, n4).Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Fatalf("node 4 does not verify against the reused CA: %v", err)
	}
	sh, _ := os.ReadFile(f.Shared[0])
	if c := parse(t, sh); len(c.IPAddresses) != 1 || len(c.URIs) != 0 {
		t.Fatalf("shared certificate: IPs %v, URIs %v (want 127.0.0.1 and no identity)", c.IPAddresses, c.URIs)
	}
	n2, _ := os.ReadFile(f.NodeCrt[2])
	if c := parse(t, n2); len(c.DNSNames) != 1 || c.DNSNames[0] != "node-2.example" {
		t.Fatalf("node 2 DNS names %v", c.DNSNames)
	}
}

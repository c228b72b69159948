package certs

import (
	"crypto/x509"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
)

// TestKeyPairReload: a changed certificate is loaded at the next check; a
// broken or foreign one is refused and the previous pair stays in use.
func TestKeyPairReload(t *testing.T) {
	dir := t.TempDir()
	f, err := WriteNodeSet(SetOptions{Dir: dir, Nodes: []int32{1}, Hosts: []string{"127.0.0.1"}})
	if err != nil {
		t.Fatal(err)
	}
	ca, err := LoadCA(f.CA, filepath.Join(dir, "ca.key"))
	if err != nil {
		t.Fatal(err)
	}
	onlyNode1 := func(c *x509.Certificate) error {
		if id, _ := NodeIDFromCert(c); id != 1 {
			return errors.New("not node 1")
		}
		return nil
	}
	k, err := NewKeyPair(f.NodeCrt[1], f.NodeKey[1], onlyNode1, hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	first := k.Get().Leaf.SerialNumber
	recheck := func() *x509.Certificate {
		k.mu.Lock()
		k.checked = time.Time{} // the next get checks the files
		k.mu.Unlock()
		return k.Get().Leaf
	}
	if got := recheck().SerialNumber; got.Cmp(first) != 0 {
		t.Fatal("unchanged files gave another certificate")
	}

	other, _ := ca.IssueNode(2, []string{"127.0.0.1"}, 0)
	renewed, _ := ca.IssueNode(1, []string{"127.0.0.1"}, 0)
	steps := []struct {
		name  string
		write func() error
		want  func(*x509.Certificate) bool
	}{
		{"certificate of another node: refused", func() error { return other.Write(dir, "node-1") },
			func(c *x509.Certificate) bool { return c.SerialNumber.Cmp(first) == 0 }},
		{"renewed certificate: loaded", func() error { return renewed.Write(dir, "node-1") },
			func(c *x509.Certificate) bool {
				id, _ := NodeIDFromCert(c)
				return id == 1 && c.SerialNumber.Cmp(first) != 0
			}},
	}
	for _, st := range steps {
		if err := st.write(); err != nil {
			t.Fatal(err)
		}
		if c := recheck(); !st.want(c) {
			t.Fatalf("%s: serving %s (serial %s)", st.name, c.Subject, c.SerialNumber)
		}
	}
}

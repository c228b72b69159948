// Package certs makes the certificates that Tandem's mutual TLS needs: a
// certificate authority (CA) and, signed by it, one certificate per node (a
// sidecar serves and dials with the same certificate) and client
// certificates for operators' tools (tandemctl). Everything is ECDSA P-256,
// made with crypto/x509 alone, so tests and operators need no openssl or
// cfssl.
//
// Files written by WriteNodeSet (PEM):
//
//	ca.crt          the CA certificate: every sidecar's --tls-ca
//	ca.key          the CA's private key: keep it offline; only needed to
//	                issue more certificates (tandemctl certs reuses it)
//	node-N.crt/.key node N's --tls-cert / --tls-key
//	admin.crt/.key  a client certificate for tandemctl (--tls-cert/--tls-key)
//
// Node certificates carry the identity URI tandem://node/N (see NodeURI)
// next to their DNS names and IP addresses; a sidecar that sees it on a
// replication peer checks that the peer's hello claims the same node id;
// the admin certificate carries tandem://admin and may not replicate.
package certs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// ErrCerts prefixes every error of this package.
var ErrCerts = errors.New("certs")

// DefaultValidity is how long issued certificates are valid (one year).
const DefaultValidity = 365 * 24 * time.Hour

// CA is a certificate authority able to sign certificates.
type CA struct {
	Cert    *x509.Certificate
	Key     *ecdsa.PrivateKey
	CertPEM []byte
	KeyPEM  []byte
}

// Pair is a certificate and its private key, PEM encoded.
type Pair struct {
	CertPEM []byte
	KeyPEM  []byte
}

// NodeURI is the identity URI a node certificate carries: tandem://node/ID.
func NodeURI(id int32) *url.URL {
	return &url.URL{Scheme: "tandem", Host: "node", Path: "/" + strconv.Itoa(int(id))}
}

// AdminURI is the identity URI of the admin client certificate
// (tandem://admin): it may call the admin API but never replicate.
func AdminURI() *url.URL { return &url.URL{Scheme: "tandem", Host: "admin"} }

// NodeIDFromCert returns the node id of a certificate made by IssueNode
// (its tandem://node/ID URI), and false when it has none.
func NodeIDFromCert(c *x509.Certificate) (int32, bool) {
	for _, u := range c.URIs {
		if u.Scheme != "tandem" || u.Host != "node" || len(u.Path) < 2 {
			continue
		}
		n, err := strconv.ParseInt(u.Path[1:], 10, 32)
		if err == nil && n > 0 {
			return int32(n), true
		}
	}
	return 0, false
}

func newKey() (*ecdsa.PrivateKey, []byte, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: generating a P-256 key: %v", ErrCerts, err)
	}
	der, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: encoding the key: %v", ErrCerts, err)
	}
	return k, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), nil
}

func serial() (*big.Int, error) {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("%w: serial number: %v", ErrCerts, err)
	}
	return n, nil
}

// NewCA makes a self-signed CA named commonName, valid for validFor
// (DefaultValidity when 0).
func NewCA(commonName string, validFor time.Duration) (*CA, error) {
	if validFor <= 0 {
		validFor = DefaultValidity
	}
	key, keyPEM, err := newKey()
	if err != nil {
		return nil, err
	}
	sn, err := serial()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          sn,
		Subject:               pkix.Name{CommonName: commonName, Organization: []string{"Tandem"}},
		NotBefore:             now.Add(-5 * time.Minute), // tolerate small clock skew
		NotAfter:              now.Add(validFor),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("%w: signing the CA certificate: %v", ErrCerts, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCerts, err)
	}
	return &CA{Cert: cert, Key: key, CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), KeyPEM: keyPEM}, nil
}

// LoadCA reads a CA written by WriteNodeSet (ca.crt and ca.key).
func LoadCA(certFile, keyFile string) (*CA, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCerts, err)
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCerts, err)
	}
	cb, _ := pem.Decode(certPEM)
	kb, _ := pem.Decode(keyPEM)
	if cb == nil || kb == nil {
		return nil, fmt.Errorf("%w: %s or %s is not PEM", ErrCerts, certFile, keyFile)
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrCerts, certFile, err)
	}
	key, err := x509.ParseECPrivateKey(kb.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrCerts, keyFile, err)
	}
	if !cert.IsCA {
		return nil, fmt.Errorf("%w: %s is not a CA certificate", ErrCerts, certFile)
	}
	return &CA{Cert: cert, Key: key, CertPEM: certPEM, KeyPEM: keyPEM}, nil
}

// IssueOptions describes a certificate to issue.
type IssueOptions struct {
	// CommonName of the subject (e.g. "node-1", "admin").
	CommonName string
	// Hosts are DNS names or IP addresses the certificate is valid for
	// (subject alternative names); a client-only certificate needs none.
	Hosts []string
	// URIs are extra URI subject alternative names.
	URIs []*url.URL
	// ValidFor defaults to DefaultValidity.
	ValidFor time.Duration
}

// Issue signs a certificate usable as both TLS server and TLS client (a
// sidecar is both).
func (ca *CA) Issue(o IssueOptions) (*Pair, error) {
	if o.ValidFor <= 0 {
		o.ValidFor = DefaultValidity
	}
	key, keyPEM, err := newKey()
	if err != nil {
		return nil, err
	}
	sn, err := serial()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: sn,
		Subject:      pkix.Name{CommonName: o.CommonName, Organization: []string{"Tandem"}},
		NotBefore:    now.Add(-5 * time.Minute),
		NotAfter:     now.Add(o.ValidFor),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		URIs:         o.URIs,
	}
	for _, h := range o.Hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if h != "" {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		return nil, fmt.Errorf("%w: signing %q: %v", ErrCerts, o.CommonName, err)
	}
	return &Pair{CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), KeyPEM: keyPEM}, nil
}

// IssueNode issues node id's certificate: common name node-ID, the
// identity URI tandem://node/ID, valid for hosts.
func (ca *CA) IssueNode(id int32, hosts []string, validFor time.Duration) (*Pair, error) {
	return ca.Issue(IssueOptions{
		CommonName: "node-" + strconv.Itoa(int(id)),
		Hosts:      hosts,
		URIs:       []*url.URL{NodeURI(id)},
		ValidFor:   validFor,
	})
}

// Write stores the pair as name.crt (mode 0644) and name.key (mode 0600)
// in dir.
func (p *Pair) Write(dir, name string) error {
	if err := os.WriteFile(filepath.Join(dir, name+".crt"), p.CertPEM, 0o644); err != nil {
		return fmt.Errorf("%w: %v", ErrCerts, err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".key"), p.KeyPEM, 0o600); err != nil {
		return fmt.Errorf("%w: %v", ErrCerts, err)
	}
	return nil
}

// SetOptions says what WriteNodeSet makes.
type SetOptions struct {
	// Dir receives the files (created 0700 when missing).
	Dir string
	// Nodes are the node ids to issue certificates for.
	Nodes []int32
	// Hosts go into every node certificate (e.g. 127.0.0.1, localhost).
	Hosts []string
	// NodeHosts are extra hosts per node (e.g. 1 -> node-1.example).
	NodeHosts map[int32][]string
	// ValidFor defaults to DefaultValidity.
	ValidFor time.Duration
	// CommonName of a new CA (default "Tandem CA").
	CommonName string
	// Shared also writes shared.crt/.key: one certificate for every node
	// (Hosts only, no node identity), for local clusters whose nodes all
	// get the same flags (scripts/cluster.sh's TANDEM_SIDECAR_FLAGS). It
	// gives up the check that a node says hello under its own id.
	Shared bool
}

// SetFiles lists what WriteNodeSet wrote.
type SetFiles struct {
	CA      string           // ca.crt
	NodeCrt map[int32]string // node-N.crt
	NodeKey map[int32]string // node-N.key
	Admin   [2]string        // admin.crt, admin.key
	Shared  [2]string        // shared.crt, shared.key (with SetOptions.Shared)
	Reused  bool             // the CA in Dir was reused
}

// WriteNodeSet writes a CA (or reuses the one already in Dir: ca.crt and
// ca.key), a certificate per node and an admin client certificate.
func WriteNodeSet(o SetOptions) (*SetFiles, error) {
	if err := os.MkdirAll(o.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCerts, err)
	}
	if o.CommonName == "" {
		o.CommonName = "Tandem CA"
	}
	caCrt, caKey := filepath.Join(o.Dir, "ca.crt"), filepath.Join(o.Dir, "ca.key")
	out := &SetFiles{CA: caCrt, NodeCrt: map[int32]string{}, NodeKey: map[int32]string{}}
	var ca *CA
	if _, err := os.Stat(caKey); err == nil {
		if ca, err = LoadCA(caCrt, caKey); err != nil {
			return nil, err
		}
		out.Reused = true
	} else {
		var err error
		if ca, err = NewCA(o.CommonName, o.ValidFor); err != nil {
			return nil, err
		}
		if err := os.WriteFile(caCrt, ca.CertPEM, 0o644); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrCerts, err)
		}
		if err := os.WriteFile(caKey, ca.KeyPEM, 0o600); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrCerts, err)
		}
	}
	for _, id := range o.Nodes {
		hosts := append(append([]string{}, o.Hosts...), o.NodeHosts[id]...)
		p, err := ca.IssueNode(id, hosts, o.ValidFor)
		if err != nil {
			return nil, err
		}
		name := "node-" + strconv.Itoa(int(id))
		if err := p.Write(o.Dir, name); err != nil {
			return nil, err
		}
		out.NodeCrt[id] = filepath.Join(o.Dir, name+".crt")
		out.NodeKey[id] = filepath.Join(o.Dir, name+".key")
	}
	if o.Shared {
		p, err := ca.Issue(IssueOptions{CommonName: "tandem-node", Hosts: o.Hosts, ValidFor: o.ValidFor})
		if err != nil {
			return nil, err
		}
		if err := p.Write(o.Dir, "shared"); err != nil {
			return nil, err
		}
		out.Shared = [2]string{filepath.Join(o.Dir, "shared.crt"), filepath.Join(o.Dir, "shared.key")}
	}
	admin, err := ca.Issue(IssueOptions{CommonName: "admin", URIs: []*url.URL{AdminURI()}, ValidFor: o.ValidFor})
	if err != nil {
		return nil, err
	}
	if err := admin.Write(o.Dir, "admin"); err != nil {
		return nil, err
	}
	out.Admin = [2]string{filepath.Join(o.Dir, "admin.crt"), filepath.Join(o.Dir, "admin.key")}
	return out, nil
}

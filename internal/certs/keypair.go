package certs

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
)

// keyRecheck: how often a KeyPair checks its files for a change (at
// handshake time, never in the background).
const keyRecheck = time.Second

// KeyPair is a server's certificate and key, loaded from two PEM files and
// loaded again when the files change (cert-manager, Vault agent or a cron
// job rotating them), so that rotation needs no restart. A reload that
// fails (a half-written file, a key that does not match, a certificate
// that check refuses) keeps the previous pair, is logged once, and is
// retried when the files change again. The sidecar's mutual TLS and the
// broker's Kafka TLS both serve through one.
type KeyPair struct {
	certFile, keyFile string
	check             func(*x509.Certificate) error
	log               hclog.Logger

	mu      sync.Mutex
	cert    *tls.Certificate
	stamp   string // modification times and sizes of both files
	checked time.Time
	failed  string // stamp of the last failed reload (logged once)
}

// NewKeyPair loads certFile and keyFile. check (nil: none) vets every
// certificate before it is used; its error is returned as it is.
func NewKeyPair(certFile, keyFile string, check func(*x509.Certificate) error, log hclog.Logger) (*KeyPair, error) {
	if check == nil {
		check = func(*x509.Certificate) error { return nil }
	}
	k := &KeyPair{certFile: certFile, keyFile: keyFile, check: check, log: log}
	stamp, err := k.statLocked()
	if err != nil {
		return nil, err
	}
	c, err := k.loadLocked()
	if err != nil {
		return nil, err
	}
	k.cert, k.stamp, k.checked = c, stamp, time.Now()
	return k, nil
}

func (k *KeyPair) statLocked() (string, error) {
	a, err := os.Stat(k.certFile)
	if err != nil {
		return "", err
	}
	b, err := os.Stat(k.keyFile)
	if err != nil {
		return "", err
	}
	return fmt.Sprint(a.ModTime().UnixNano(), a.Size(), b.ModTime().UnixNano(), b.Size()), nil
}

func (k *KeyPair) loadLocked() (*tls.Certificate, error) {
	c, err := tls.LoadX509KeyPair(k.certFile, k.keyFile)
	if err != nil {
		return nil, fmt.Errorf("loading certificate %s and key %s: %v", k.certFile, k.keyFile, err)
	}
	if c.Leaf == nil {
		if c.Leaf, err = x509.ParseCertificate(c.Certificate[0]); err != nil {
			return nil, fmt.Errorf("certificate %s: %v", k.certFile, err)
		}
	}
	if err := k.check(c.Leaf); err != nil {
		return nil, err
	}
	return &c, nil
}

// Get returns the current pair, loading it again first when the files
// changed (checked at most once a second).
func (k *KeyPair) Get() *tls.Certificate {
	k.mu.Lock()
	defer k.mu.Unlock()
	now := time.Now()
	if now.Sub(k.checked) < keyRecheck {
		return k.cert
	}
	k.checked = now
	stamp, err := k.statLocked()
	if err != nil || stamp == k.stamp || stamp == k.failed {
		return k.cert
	}
	c, err := k.loadLocked()
	if err != nil {
		k.failed = stamp
		k.log.Error("the TLS certificate files changed but cannot be loaded; still using the previous certificate",
			"cert", k.certFile, "key", k.keyFile, "error", err)
		return k.cert
	}
	k.cert, k.stamp, k.failed = c, stamp, ""
	k.log.Info("reloaded the TLS certificate", "cert", k.certFile, "subject", c.Leaf.Subject.String(),
		"serial", c.Leaf.SerialNumber.String(), "not_after", c.Leaf.NotAfter.Format(time.RFC3339))
	return k.cert
}

// LoadPool reads a PEM file of CA certificates.
func LoadPool(file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s holds no PEM certificate", file)
	}
	return pool, nil
}

// handshakeLogEvery: a repeated TLS handshake failure from (or to) the
// same host is logged at error level at most this often.
const handshakeLogEvery = 30 * time.Second

// HandshakeLog decides how loudly to log TLS handshake failures, so that a
// misconfigured client or peer retrying in a loop cannot flood the log:
// the first failure for a host at error level, then at most one every 30
// seconds, the rest at debug level.
type HandshakeLog struct {
	mu   sync.Mutex
	last map[string]time.Time // host -> last error-level line
}

// Loud reports whether a failure concerning addr (host or host:port)
// should be logged at error level now.
func (h *HandshakeLog) Loud(addr string) bool {
	host := addr
	if hh, _, err := net.SplitHostPort(addr); err == nil {
		host = hh
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	now := time.Now()
	if t, ok := h.last[host]; ok && now.Sub(t) < handshakeLogEvery {
		return false
	}
	if h.last == nil || len(h.last) > 1024 { // bound the memory a port scan can take
		h.last = map[string]time.Time{}
	}
	h.last[host] = now
	return true
}

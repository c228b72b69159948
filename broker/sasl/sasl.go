// Package sasl is the server side of the SASL mechanisms Tandem's Kafka
// listener offers: PLAIN (RFC 4616) and SCRAM-SHA-256 / SCRAM-SHA-512
// (RFC 5802, RFC 7677, as Kafka's KIP-84).
//
// Users live in a JSON file (Users, written by `tandemctl sasl-user
// --file`) that holds no passwords: for each user and SCRAM hash, the
// salt, the iteration count and the two keys RFC 5802 derives from the
// password (StoredKey, ServerKey), the same thing Kafka keeps for SCRAM
// users. A PLAIN login is checked by deriving the StoredKey from the
// password it sends and comparing. The file is read again when it changes
// (Store), so users are added and removed without a restart. SCRAM users
// set through Kafka's AlterUserScramCredentials (KIP-554) are WAL entries,
// the same on every node (Replicated); they come before the file's.
package sasl

import (
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"os"
	"sort"
	"sync"
	"time"
)

// Mechanism names, as Kafka clients send them.
const (
	Plain        = "PLAIN"
	ScramSHA256  = "SCRAM-SHA-256"
	ScramSHA512  = "SCRAM-SHA-512"
	minIteration = 4096 // RFC 7677's minimum, Kafka's default
)

// Mechanisms lists what the server offers, in the order it tells clients.
var Mechanisms = []string{ScramSHA512, ScramSHA256, Plain}

// ErrAuth is a failed login: unknown user, wrong password or a broken
// exchange. The message never says which, as Kafka's does not.
var ErrAuth = errors.New("authentication failed: invalid credentials")

// Credential is what the server keeps for one user and one SCRAM hash.
type Credential struct {
	Salt       []byte `json:"salt"`
	Iterations int    `json:"iterations"`
	StoredKey  []byte `json:"stored_key"`
	ServerKey  []byte `json:"server_key"`
}

// Users is the users file: user name -> SCRAM mechanism -> credential.
type Users struct {
	Users map[string]map[string]Credential `json:"users"`
}

func hashFor(mech string) (func() hash.Hash, bool) {
	switch mech {
	case ScramSHA256:
		return sha256.New, true
	case ScramSHA512:
		return sha512.New, true
	}
	return nil, false
}

func hmacSum(h func() hash.Hash, key, msg []byte) []byte {
	m := hmac.New(h, key)
	m.Write(msg)
	return m.Sum(nil)
}

// keys derives RFC 5802's StoredKey and ServerKey from a password.
func keys(h func() hash.Hash, password string, salt []byte, iterations int) (stored, server []byte, err error) {
	salted, err := pbkdf2.Key(h, password, salt, iterations, h().Size())
	if err != nil {
		return nil, nil, err
	}
	clientKey := hmacSum(h, salted, []byte("Client Key"))
	d := h()
	d.Write(clientKey)
	return d.Sum(nil), hmacSum(h, salted, []byte("Server Key")), nil
}

// NewCredential derives a credential for password with a random salt.
// iterations below 4096 are raised to 4096.
func NewCredential(mech, password string, iterations int) (Credential, error) {
	h, ok := hashFor(mech)
	if !ok {
		return Credential{}, fmt.Errorf("sasl: %q is not a SCRAM mechanism", mech)
	}
	iterations = max(iterations, minIteration)
	salt := make([]byte, 24)
	if _, err := rand.Read(salt); err != nil {
		return Credential{}, err
	}
	stored, server, err := keys(h, password, salt, iterations)
	if err != nil {
		return Credential{}, err
	}
	return Credential{Salt: salt, Iterations: iterations, StoredKey: stored, ServerKey: server}, nil
}

// SetPassword gives user credentials for both SCRAM hashes (and so PLAIN).
func (u *Users) SetPassword(user, password string, iterations int) error {
	if user == "" || password == "" {
		return errors.New("sasl: the user name and the password must not be empty")
	}
	if u.Users == nil {
		u.Users = map[string]map[string]Credential{}
	}
	creds := map[string]Credential{}
	for _, mech := range []string{ScramSHA256, ScramSHA512} {
		c, err := NewCredential(mech, password, iterations)
		if err != nil {
			return err
		}
		creds[mech] = c
	}
	u.Users[user] = creds
	return nil
}

// Names lists the users, sorted.
func (u *Users) Names() []string {
	var out []string
	for name := range u.Users {
		out = append(out, name)
	}
	sort.Strings(out)
	return out
}

// LoadUsers reads a users file.
func LoadUsers(path string) (*Users, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var u Users
	if err := json.Unmarshal(data, &u); err != nil {
		return nil, fmt.Errorf("sasl: users file %s: %v", path, err)
	}
	for name, creds := range u.Users {
		for mech, c := range creds {
			h, ok := hashFor(mech)
			if !ok || c.Iterations < minIteration || len(c.Salt) == 0 || len(c.StoredKey) != h().Size() || len(c.ServerKey) != h().Size() {
				return nil, fmt.Errorf("sasl: users file %s: user %q has a bad %s credential", path, name, mech)
			}
		}
	}
	return &u, nil
}

// Save writes the users file (mode 0600: it holds what a login is checked
// against) through a temporary file and a rename.
func (u *Users) Save(path string) error {
	data, err := json.MarshalIndent(u, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(data, '\n'), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// CredentialFromSalted derives the credential a client's
// AlterUserScramCredentials upsertion describes: the client sends the
// salt, the iteration count and the salted password (PBKDF2 of the
// password), never the password; the server keeps the two keys derived
// from it, as from a password.
func CredentialFromSalted(mech string, salt, salted []byte, iterations int) (Credential, error) {
	h, ok := hashFor(mech)
	if !ok {
		return Credential{}, fmt.Errorf("sasl: %q is not a SCRAM mechanism", mech)
	}
	if len(salt) == 0 || len(salted) != h().Size() {
		return Credential{}, fmt.Errorf("sasl: a %s salted password is %d bytes, got %d (salt %d bytes)", mech, h().Size(), len(salted), len(salt))
	}
	clientKey := hmacSum(h, salted, []byte("Client Key"))
	d := h()
	d.Write(clientKey)
	return Credential{Salt: append([]byte(nil), salt...), Iterations: iterations,
		StoredKey: d.Sum(nil), ServerKey: hmacSum(h, salted, []byte("Server Key"))}, nil
}

// MinIterations and MaxIterations bound the iteration count of a
// credential set through Kafka's API, as Kafka bounds it.
const (
	MinIterations = minIteration
	MaxIterations = 16384
)

// Replicated is the SCRAM users set through Kafka's
// AlterUserScramCredentials: WAL entries, the same on every node. Safe for
// concurrent use.
type Replicated struct {
	mu    sync.RWMutex
	users map[string]map[string]Credential
}

// NewReplicated returns an empty set.
func NewReplicated() *Replicated {
	return &Replicated{users: map[string]map[string]Credential{}}
}

// Set stores (c non-nil) or deletes (nil) user's credential for mech.
func (r *Replicated) Set(user, mech string, c *Credential) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if c == nil {
		delete(r.users[user], mech)
		if len(r.users[user]) == 0 {
			delete(r.users, user)
		}
		return
	}
	if r.users[user] == nil {
		r.users[user] = map[string]Credential{}
	}
	r.users[user][mech] = *c
}

// Get returns user's credential for mech.
func (r *Replicated) Get(user, mech string) (Credential, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	c, ok := r.users[user][mech]
	return c, ok
}

// All returns a copy of every user's credentials.
func (r *Replicated) All() map[string]map[string]Credential {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make(map[string]map[string]Credential, len(r.users))
	for u, m := range r.users {
		out[u] = make(map[string]Credential, len(m))
		for k, c := range m {
			out[u][k] = c
		}
	}
	return out
}

// Replace makes the set exactly users (a state checkpoint being restored).
func (r *Replicated) Replace(users map[string]map[string]Credential) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.users = map[string]map[string]Credential{}
	for u, m := range users {
		for k, c := range m {
			if r.users[u] == nil {
				r.users[u] = map[string]Credential{}
			}
			r.users[u][k] = c
		}
	}
}

// Store serves a users file, read again when it changes (checked at most
// once a second, at a login), and the replicated users (UseReplicated),
// which come first: a user set through Kafka's API logs in with those
// credentials on every node, whatever a node's file says. A file that no
// longer loads keeps the users loaded before, and onError says why (once
// per change).
type Store struct {
	path       string
	onError    func(error)
	replicated *Replicated

	mu      sync.Mutex
	users   *Users
	stamp   string
	checked time.Time
	failed  string
}

// NewStore loads path.
func NewStore(path string, onError func(error)) (*Store, error) {
	s := &Store{path: path, onError: onError}
	stamp, err := s.stat()
	if err != nil {
		return nil, err
	}
	u, err := LoadUsers(path)
	if err != nil {
		return nil, err
	}
	s.users, s.stamp, s.checked = u, stamp, time.Now()
	return s, nil
}

func (s *Store) stat() (string, error) {
	fi, err := os.Stat(s.path)
	if err != nil {
		return "", err
	}
	return fmt.Sprint(fi.ModTime().UnixNano(), fi.Size()), nil
}

// UseReplicated makes the store look users up in r before the file.
// Call it before serving logins.
func (s *Store) UseReplicated(r *Replicated) { s.replicated = r }

// FileUsers returns the users of the file, with their credentials.
func (s *Store) FileUsers() map[string]map[string]Credential {
	s.lookup("", "") // re-read the file if it changed
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.users.Users
}

// lookup returns user's credential for mech.
func (s *Store) lookup(user, mech string) (Credential, bool) {
	if s.replicated != nil {
		if c, ok := s.replicated.Get(user, mech); ok {
			return c, true
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if now := time.Now(); now.Sub(s.checked) >= time.Second {
		s.checked = now
		if stamp, err := s.stat(); err == nil && stamp != s.stamp && stamp != s.failed {
			if u, err := LoadUsers(s.path); err != nil {
				s.failed = stamp
				if s.onError != nil {
					s.onError(err)
				}
			} else {
				s.users, s.stamp, s.failed = u, stamp, ""
			}
		}
	}
	c, ok := s.users.Users[user][mech]
	return c, ok
}

// Server is one login's server side: Step takes each message the client
// sends and returns the answer, and done once the client is
// authenticated. An error ends the login (ErrAuth for bad credentials).
type Server interface {
	Step(in []byte) (out []byte, done bool, err error)
	// User is the authenticated user, once done.
	User() string
}

// NewServer starts a login with mechanism mech, or returns false when mech
// is not offered.
func (s *Store) NewServer(mech string) (Server, bool) {
	switch mech {
	case Plain:
		return &plainServer{store: s}, true
	case ScramSHA256, ScramSHA512:
		h, _ := hashFor(mech)
		return &scramServer{store: s, mech: mech, h: h}, true
	}
	return nil, false
}

// plainServer: one message, "authzid NUL authcid NUL password".
type plainServer struct {
	store *Store
	user  string
}

func (p *plainServer) User() string { return p.user }

func (p *plainServer) Step(in []byte) ([]byte, bool, error) {
	parts := splitNUL(in)
	if len(parts) != 3 || parts[1] == "" || (parts[0] != "" && parts[0] != parts[1]) {
		return nil, false, fmt.Errorf("%w (PLAIN message is not authzid NUL user NUL password)", ErrAuth)
	}
	user, password := parts[1], parts[2]
	c, ok := p.store.lookup(user, ScramSHA512)
	h := sha512.New
	if !ok {
		if c, ok = p.store.lookup(user, ScramSHA256); ok {
			h = sha256.New
		}
	}
	if !ok {
		return nil, false, ErrAuth
	}
	stored, _, err := keys(h, password, c.Salt, c.Iterations)
	if err != nil || subtle.ConstantTimeCompare(stored, c.StoredKey) != 1 {
		return nil, false, ErrAuth
	}
	p.user = user
	return nil, true, nil
}

func splitNUL(b []byte) []string {
	var out []string
	start := 0
	for i, c := range b {
		if c == 0 {
			out = append(out, string(b[start:i]))
			start = i + 1
		}
	}
	return append(out, string(b[start:]))
}

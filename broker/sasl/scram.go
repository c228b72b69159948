package sasl

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"hash"
	"strconv"
	"strings"
)

// scramServer is RFC 5802's server: client-first -> server-first,
// client-final -> server-final. Channel binding is not offered (Kafka
// does not use it): the client's GS2 header must be "n,,".
type scramServer struct {
	store *Store
	mech  string
	h     func() hash.Hash

	step        int
	user        string
	cred        Credential
	nonce       string // client nonce + server nonce
	clientFirst string // client-first-message-bare
	serverFirst string
}

func (s *scramServer) User() string { return s.user }

func (s *scramServer) Step(in []byte) ([]byte, bool, error) {
	s.step++
	switch s.step {
	case 1:
		return s.first(string(in))
	case 2:
		return s.final(string(in))
	}
	return nil, false, fmt.Errorf("%w (%s exchange already finished)", ErrAuth, s.mech)
}

// attrs parses "k=v,k=v" into a map, keeping the order of keys.
func attrs(msg string) (map[string]string, []string, error) {
	m := map[string]string{}
	var keys []string
	for _, kv := range strings.Split(msg, ",") {
		if len(kv) < 2 || kv[1] != '=' {
			return nil, nil, fmt.Errorf("%w (malformed SCRAM attribute %q)", ErrAuth, kv)
		}
		m[kv[:1]] = kv[2:]
		keys = append(keys, kv[:1])
	}
	return m, keys, nil
}

// unescapeName undoes RFC 5802's "=2C" (,) and "=3D" (=) in user names.
func unescapeName(s string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] != '=':
			b.WriteByte(s[i])
		case strings.HasPrefix(s[i:], "=2C"):
			b.WriteByte(',')
			i += 2
		case strings.HasPrefix(s[i:], "=3D"):
			b.WriteByte('=')
			i += 2
		default:
			return "", fmt.Errorf("%w (bad escape in SCRAM user name)", ErrAuth)
		}
	}
	return b.String(), nil
}

func (s *scramServer) first(msg string) ([]byte, bool, error) {
	// gs2-header: "n,," or "y,," (no channel binding), then the bare message.
	if !strings.HasPrefix(msg, "n,") && !strings.HasPrefix(msg, "y,") {
		return nil, false, fmt.Errorf("%w (SCRAM channel binding is not supported)", ErrAuth)
	}
	rest := msg[2:]
	i := strings.IndexByte(rest, ',')
	if i < 0 {
		return nil, false, fmt.Errorf("%w (malformed SCRAM client-first message)", ErrAuth)
	}
	if authz := rest[:i]; authz != "" {
		return nil, false, fmt.Errorf("%w (SCRAM authorization identities are not supported)", ErrAuth)
	}
	s.clientFirst = rest[i+1:]
	a, _, err := attrs(s.clientFirst)
	if err != nil {
		return nil, false, err
	}
	if _, ext := a["m"]; ext || a["n"] == "" || a["r"] == "" {
		return nil, false, fmt.Errorf("%w (SCRAM client-first message needs n= and r=, no m=)", ErrAuth)
	}
	if s.user, err = unescapeName(a["n"]); err != nil {
		return nil, false, err
	}
	cred, ok := s.store.lookup(s.user, s.mech)
	if !ok {
		// Go on with made-up values so that an unknown user is told
		// apart from a wrong password only at the end, as with a known one.
		cred = Credential{Salt: []byte(s.user + "-unknown"), Iterations: minIteration}
	}
	s.cred = cred
	nonce := make([]byte, 18)
	if _, err := rand.Read(nonce); err != nil {
		return nil, false, err
	}
	s.nonce = a["r"] + base64.RawStdEncoding.EncodeToString(nonce)
	s.serverFirst = "r=" + s.nonce + ",s=" + base64.StdEncoding.EncodeToString(cred.Salt) + ",i=" + strconv.Itoa(cred.Iterations)
	return []byte(s.serverFirst), false, nil
}

func (s *scramServer) final(msg string) ([]byte, bool, error) {
	i := strings.LastIndex(msg, ",p=")
	if i < 0 {
		return nil, false, fmt.Errorf("%w (SCRAM client-final message without a proof)", ErrAuth)
	}
	withoutProof := msg[:i]
	a, _, err := attrs(withoutProof)
	if err != nil {
		return nil, false, err
	}
	if a["c"] != "biws" && a["c"] != "eSws" { // base64 of "n,," and "y,,"
		return nil, false, fmt.Errorf("%w (SCRAM channel binding is not supported)", ErrAuth)
	}
	// Kafka accepts a nonce that ends with the one it sent (librdkafka
	// sends its own nonce in front of it again); so does Tandem. The
	// random server part is in it either way.
	if !strings.HasSuffix(a["r"], s.nonce) {
		return nil, false, fmt.Errorf("%w (SCRAM nonce does not match)", ErrAuth)
	}
	proof, err := base64.StdEncoding.DecodeString(msg[i+3:])
	if err != nil || len(proof) != s.h().Size() || len(s.cred.StoredKey) == 0 {
		return nil, false, ErrAuth
	}
	authMessage := []byte(s.clientFirst + "," + s.serverFirst + "," + withoutProof)
	clientSignature := hmacSum(s.h, s.cred.StoredKey, authMessage)
	clientKey := make([]byte, len(proof))
	for j := range proof {
		clientKey[j] = proof[j] ^ clientSignature[j]
	}
	d := s.h()
	d.Write(clientKey)
	if subtle.ConstantTimeCompare(d.Sum(nil), s.cred.StoredKey) != 1 {
		return nil, false, ErrAuth
	}
	sig := hmac.New(s.h, s.cred.ServerKey)
	sig.Write(authMessage)
	return []byte("v=" + base64.StdEncoding.EncodeToString(sig.Sum(nil))), true, nil
}

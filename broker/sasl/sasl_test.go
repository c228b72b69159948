package sasl

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	kplain "github.com/twmb/franz-go/pkg/sasl/plain"
	kscram "github.com/twmb/franz-go/pkg/sasl/scram"

	fsasl "github.com/twmb/franz-go/pkg/sasl"
)

// testStore writes a users file with user -> password and serves it.
func testStore(tb testing.TB, users map[string]string) (*Store, *Users, string) {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "users.json")
	u := &Users{}
	for name, pw := range users {
		if err := u.SetPassword(name, pw, 4096); err != nil {
			tb.Fatal(err)
		}
	}
	if err := u.Save(path); err != nil {
		tb.Fatal(err)
	}
	store, err := NewStore(path, nil)
	if err != nil {
		tb.Fatal(err)
	}
	return store, u, path
}

// login runs franz-go's client side of mechanism m against our server and
// returns the server's verdict.
func login(t *testing.T, store *Store, m fsasl.Mechanism) error {
	t.Helper()
	srv, ok := store.NewServer(m.Name())
	if !ok {
		t.Fatalf("mechanism %s not offered", m.Name())
	}
	sess, msg, err := m.Authenticate(context.Background(), "broker:9092")
	if err != nil {
		t.Fatal(err)
	}
	for {
		out, done, err := srv.Step(msg)
		if err != nil {
			return err
		}
		clientDone, next, err := sess.Challenge(out)
		if err != nil {
			return err // the client refused the server (e.g. a bad server signature)
		}
		if done {
			if !clientDone {
				t.Fatalf("%s: the server finished, the client did not", m.Name())
			}
			return nil
		}
		msg = next
	}
}

// PLAIN and both SCRAM hashes log a user in with the right password and
// refuse a wrong one or an unknown user; a users file changed on disk is
// read again.
func TestLogins(t *testing.T) {
	store, u, path := testStore(t, map[string]string{"alice": "wonder,land=1", "a,b=c": "x"})
	mechs := func(user, pass string) []fsasl.Mechanism {
		a := kscram.Auth{User: user, Pass: pass}
		return []fsasl.Mechanism{kplain.Auth{User: user, Pass: pass}.AsMechanism(), a.AsSha256Mechanism(), a.AsSha512Mechanism()}
	}
	for _, m := range mechs("alice", "wonder,land=1") {
		if err := login(t, store, m); err != nil {
			t.Errorf("%s, right password: %v", m.Name(), err)
		}
	}
	for _, m := range mechs("a,b=c", "x") {
		if err := login(t, store, m); err != nil {
			t.Errorf("%s, user name with , and =: %v", m.Name(), err)
		}
	}
	for _, m := range append(mechs("alice", "wonderland"), mechs("bob", "wonder,land=1")...) {
		if err := login(t, store, m); !errors.Is(err, ErrAuth) {
			t.Errorf("%s, wrong password or unknown user: %v; want ErrAuth", m.Name(), err)
		}
	}
	if _, ok := store.NewServer("GSSAPI"); ok {
		t.Error("GSSAPI offered")
	}
	if err := u.SetPassword("alice", "new", 4096); err != nil {
		t.Fatal(err)
	}
	if err := u.Save(path); err != nil {
		t.Fatal(err)
	}
	store.mu.Lock()
	store.checked = store.checked.AddDate(0, 0, -1) // the next login checks the file
	store.mu.Unlock()
	if err := login(t, store, mechs("alice", "new")[2]); err != nil {
		t.Errorf("after the password changed on disk: %v", err)
	}
}

// A broken exchange is refused, not a crash.
func TestBadMessages(t *testing.T) {
	store, _, _ := testStore(t, map[string]string{"alice": "pw"})
	for mech, msgs := range map[string][]string{
		Plain:       {"", "alice", "\x00alice", "bob\x00alice\x00pw"},
		ScramSHA256: {"", "p=tls-unique,,n=alice,r=abc", "n,,", "n,,n=alice", "n,a=bob,n=alice,r=x", "n,,n=al=ice,r=x"},
	} {
		for _, msg := range msgs {
			srv, _ := store.NewServer(mech)
			if _, _, err := srv.Step([]byte(msg)); !errors.Is(err, ErrAuth) {
				t.Errorf("%s %q: %v; want ErrAuth", mech, msg, err)
			}
		}
	}
	srv, _ := store.NewServer(ScramSHA256)
	if _, _, err := srv.Step([]byte("n,,n=alice,r=abc")); err != nil {
		t.Fatal(err)
	}
	for _, final := range []string{"c=biws,r=abc,p=AAAA", "c=biws,r=wrong", "garbage"} {
		if _, _, err := srv.Step([]byte(final)); !errors.Is(err, ErrAuth) {
			t.Errorf("client-final %q: %v; want ErrAuth", final, err)
		}
	}
}

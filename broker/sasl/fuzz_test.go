package sasl

import (
	"path/filepath"
	"testing"
)

// FuzzLogin feeds arbitrary client messages to every mechanism's server,
// two steps deep: a login either fails with an error or (never, with
// random bytes) succeeds; it never panics.
func FuzzLogin(f *testing.F) {
	path := filepath.Join(f.TempDir(), "users.json")
	var u Users
	if err := u.SetPassword("alice", "pw", 4096); err != nil {
		f.Fatal(err)
	}
	if err := u.Save(path); err != nil {
		f.Fatal(err)
	}
	store, err := NewStore(path, nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Add("PLAIN", []byte("\x00alice\x00pw"), []byte(""))
	f.Add(ScramSHA256, []byte("n,,n=alice,r=abcdef"), []byte("c=biws,r=abcdef,p=AAAA"))
	f.Add(ScramSHA512, []byte("n,,n=alice,r=x"), []byte("c=biws,r=x=,p="))
	f.Fuzz(func(t *testing.T, mech string, first, second []byte) {
		srv, ok := store.NewServer(mech)
		if !ok {
			return
		}
		if _, done, err := srv.Step(first); err != nil || done {
			if done && mech != Plain {
				t.Fatalf("%s logged in after one message", mech)
			}
			return
		}
		if _, done, err := srv.Step(second); done && err == nil {
			t.Fatalf("%s logged in with fuzzed messages %q, %q", mech, first, second)
		}
	})
}

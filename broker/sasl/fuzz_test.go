package sasl

import "testing"

// FuzzLogin feeds arbitrary client messages to every mechanism's server,
// two steps deep: a login either fails with an error or (never, with
// random bytes) succeeds; it never panics.
func FuzzLogin(f *testing.F) {
	store, _, _ := testStore(f, map[string]string{"alice": "pw"})
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

package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tandem-io/tandem/broker/sasl"
)

// `tandemctl sasl-user` adds users (password from a file), lists them,
// changes a password and deletes a user; the file it writes holds no
// password and loads in the broker's format; mistakes are usage errors.
func TestSASLUser(t *testing.T) {
	dir := t.TempDir()
	users := filepath.Join(dir, "users.json")
	for name, pw := range map[string]string{"alice": "first", "bob": "second"} {
		pwFile := filepath.Join(dir, name+".pw")
		if err := os.WriteFile(pwFile, []byte(pw+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := ctl(t, "sasl-user", "--file", users, "--user", name, "--password-file", pwFile); err != nil {
			t.Fatal(err)
		}
	}
	out, err := ctl(t, "sasl-user", "--file", users, "--list")
	if err != nil || out != "alice\nbob\n" {
		t.Fatalf("--list: %q, %v; want alice and bob", out, err)
	}
	data, err := os.ReadFile(users)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(data), "first") || strings.Contains(string(data), "second") {
		t.Fatal("the users file holds a password")
	}
	if fi, _ := os.Stat(users); fi.Mode().Perm() != 0o600 {
		t.Fatalf("users file mode %v, want 0600", fi.Mode().Perm())
	}
	if _, err := sasl.LoadUsers(users); err != nil {
		t.Fatalf("the broker cannot load the file: %v", err)
	}
	if _, err := ctl(t, "sasl-user", "--file", users, "--user", "bob", "--delete"); err != nil {
		t.Fatal(err)
	}
	if out, _ := ctl(t, "sasl-user", "--file", users, "--list"); out != "alice\n" {
		t.Fatalf("after deleting bob: %q", out)
	}
	var usage usageError
	for _, args := range [][]string{
		{"sasl-user", "--user", "x"},
		{"sasl-user", "--file", users},
		{"sasl-user", "--file", users, "--user", "x", "--list"},
		{"sasl-user", "--file", users, "--user", "carol", "--password-file", filepath.Join(dir, "empty")},
	} {
		if args[len(args)-1] == filepath.Join(dir, "empty") {
			os.WriteFile(args[len(args)-1], nil, 0o600)
		}
		if _, err := ctl(t, args...); !errors.As(err, &usage) {
			t.Errorf("%v: %v; want a usage error", args, err)
		}
	}
	if _, err := ctl(t, "sasl-user", "--file", users, "--user", "nobody", "--delete"); err == nil {
		t.Error("deleting an unknown user succeeded")
	}
}

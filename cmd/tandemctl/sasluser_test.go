package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/tandem-io/tandem/broker"
	"github.com/tandem-io/tandem/broker/sasl"
)

// `tandemctl sasl-user` adds users (password from a file), lists them,
// changes a password and deletes a user; the file it writes holds no
// password and loads in the broker's format; mistakes are usage errors.
func TestSASLUser(t *testing.T) {
	t.Setenv("TANDEM_BOOTSTRAP", "") // --file absent: the cluster mode
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

// saslUserAt runs `tandemctl sasl-user` with stdin.
func saslUserAt(t *testing.T, stdin string, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	err := saslUserCmd(context.Background(), args, strings.NewReader(stdin), &out, 30*time.Second)
	t.Logf("tandemctl sasl-user %s (stdin: %d lines)\n%s(err: %v)", strings.Join(args, " "), strings.Count(stdin, "\n"), out.String(), err)
	return out.String(), err
}

// loginErr is the error of a client logging in with mech (nil: it is in).
func loginErr(t *testing.T, addr string, mech kgo.Opt) error {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), mech)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	return cl.Ping(ctx)
}

// logsIn reports whether user logs in with pw with SCRAM-SHA-256,
// SCRAM-SHA-512 and PLAIN; it fails the test when some do and some not,
// or a refusal is not SASL_AUTHENTICATION_FAILED.
func logsIn(t *testing.T, addr, user, pw string) bool {
	t.Helper()
	var in, out []string
	for name, mech := range map[string]kgo.Opt{
		"SCRAM-SHA-256": kgo.SASL(scram.Auth{User: user, Pass: pw}.AsSha256Mechanism()),
		"SCRAM-SHA-512": kgo.SASL(scram.Auth{User: user, Pass: pw}.AsSha512Mechanism()),
		"PLAIN":         kgo.SASL(plain.Auth{User: user, Pass: pw}.AsMechanism()),
	} {
		switch err := loginErr(t, addr, mech); {
		case err == nil:
			in = append(in, name)
		case errors.Is(err, kerr.SaslAuthenticationFailed):
			out = append(out, name)
		default:
			t.Fatalf("%s logging in with %s: %v, want success or SASL_AUTHENTICATION_FAILED", user, name, err)
		}
	}
	if len(in) > 0 && len(out) > 0 {
		t.Fatalf("%s with password %q logs in with %v, not with %v", user, pw, in, out)
	}
	return len(out) == 0
}

// `tandemctl sasl-user --bootstrap` creates, lists, changes and deletes a
// user of the whole cluster through the Kafka API (the broker has a users
// file with admin only): the user logs in with SCRAM and PLAIN, a new
// password replaces the old one, deleting ends the logins, and deleting
// what is not set through the API (again, or a user of the users file)
// says so. Both passwords may come from standard input, in two lines.
func TestSASLUserCluster(t *testing.T) {
	dir := t.TempDir()
	users := writeSASLUsers(t, dir, "admin")
	addr := startKafkaBroker(t, func(c *broker.Config) { c.SASLUsersFile = users })
	adminPW := filepath.Join(dir, "admin.pw")
	withFile := []string{"--bootstrap", addr, "--sasl-user", "admin", "--sasl-password-file", adminPW}
	onStdin := []string{"--bootstrap", addr, "--sasl-user", "admin"}
	join := func(a []string, b ...string) []string { return append(append([]string{}, a...), b...) }

	// The admin's password from a file, carol's from standard input.
	out, err := saslUserAt(t, "carol-1\n", join(withFile, "--user", "carol")...)
	if err != nil || out != "user carol: SCRAM-SHA-256 and SCRAM-SHA-512 credentials set on the cluster (every node; they come before any users file)\n" {
		t.Fatalf("creating carol: %q, %v", out, err)
	}
	if !logsIn(t, addr, "carol", "carol-1") {
		t.Fatal("carol, created through tandemctl, cannot log in")
	}
	// Both on standard input: the admin's first, carol's (new) second.
	if _, err := saslUserAt(t, "admin-pw\ncarol-2\n", join(onStdin, "--user", "carol", "--iterations", "8192")...); err != nil {
		t.Fatalf("changing carol's password with both passwords on stdin: %v", err)
	}
	if logsIn(t, addr, "carol", "carol-1") {
		t.Fatal("carol's old password still works")
	}
	if !logsIn(t, addr, "carol", "carol-2") {
		t.Fatal("carol's new password does not work")
	}
	// One line only, when two are needed: no password for carol.
	if _, err := saslUserAt(t, "admin-pw\n", join(onStdin, "--user", "carol")...); !errors.As(err, new(usageError)) || !strings.Contains(err.Error(), "second line") {
		t.Fatalf("one line on stdin for two passwords: %v, want a usage error", err)
	}

	// --list, through ctl (and so run) with $TANDEM_BOOTSTRAP: admin from
	// the users file, carol from the API.
	t.Setenv("TANDEM_BOOTSTRAP", addr)
	out, err = ctl(t, "--timeout", "30s", "sasl-user", "--sasl-user", "admin", "--sasl-password-file", adminPW, "--list")
	if want := "admin  SCRAM-SHA-256(4096) SCRAM-SHA-512(4096)\ncarol  SCRAM-SHA-256(8192) SCRAM-SHA-512(8192)\n"; err != nil || out != want {
		t.Fatalf("--list: %q, %v; want %q", out, err, want)
	}

	out, err = saslUserAt(t, "admin-pw\n", join(onStdin, "--user", "carol", "--delete")...)
	if err != nil || out != "deleted user carol from the cluster (mechanisms: SCRAM-SHA-256, SCRAM-SHA-512)\n" {
		t.Fatalf("deleting carol: %q, %v", out, err)
	}
	if logsIn(t, addr, "carol", "carol-2") {
		t.Fatal("carol logs in after her deletion")
	}
	_, err = saslUserAt(t, "", join(withFile, "--user", "carol", "--delete")...)
	if err == nil || errors.As(err, new(usageError)) || !strings.Contains(err.Error(), "no SCRAM credentials set through the Kafka API for user carol") {
		t.Fatalf("deleting carol again: %v, want an error saying she has no credentials", err)
	}
	// admin is in the users file only: the API cannot delete him.
	_, err = saslUserAt(t, "", join(withFile, "--user", "admin", "--delete")...)
	if err == nil || errors.As(err, new(usageError)) || !errors.Is(err, kerr.ResourceNotFound) ||
		!strings.Contains(err.Error(), "no SCRAM credentials set through the Kafka API for user admin") ||
		!strings.Contains(err.Error(), "users file") || !strings.Contains(err.Error(), "RESOURCE_NOT_FOUND") {
		t.Fatalf("deleting admin (users file only): %v, want RESOURCE_NOT_FOUND explained", err)
	}
	if !logsIn(t, addr, "admin", "admin-pw") {
		t.Fatal("admin lost his login")
	}

	// admin with SCRAM-SHA-512 through the API (as kafka-configs.sh sets
	// one mechanism), SCRAM-SHA-256 from the file: --delete deletes the
	// API's, and says that the file's password applies again.
	adm := kadm.NewClient(kafkaClient(t, addr, "admin"))
	res, err := adm.AlterUserSCRAMs(context.Background(), nil, []kadm.UpsertSCRAM{{User: "admin", Mechanism: kadm.ScramSha512, Iterations: 4096, Password: "api-pw"}})
	if err != nil || res["admin"].Err != nil {
		t.Fatalf("setting admin's SCRAM-SHA-512: %+v, %v", res, err)
	}
	if err := loginErr(t, addr, kgo.SASL(scram.Auth{User: "admin", Pass: "api-pw"}.AsSha512Mechanism())); err != nil {
		t.Fatalf("admin with his SCRAM-SHA-512 API password: %v", err)
	}
	out, err = saslUserAt(t, "", join(withFile, "--sasl-mechanism", "SCRAM-SHA-256", "--user", "admin", "--delete")...)
	if err != nil || !strings.HasPrefix(out, "deleted user admin from the cluster (mechanisms: SCRAM-SHA-512)\n") ||
		!strings.Contains(out, "user admin is still in a node's users file (SCRAM-SHA-256(4096) SCRAM-SHA-512(4096))") {
		t.Fatalf("deleting admin's API credential: %q, %v", out, err)
	}
	if !logsIn(t, addr, "admin", "admin-pw") {
		t.Fatal("admin's file password does not work again")
	}

	// A wrong admin password is an error, not a usage error.
	if _, err := saslUserAt(t, "wrong\nx\n", join(onStdin, "--user", "dave")...); err == nil || errors.As(err, new(usageError)) ||
		!errors.Is(err, kerr.SaslAuthenticationFailed) {
		t.Fatalf("a wrong admin password: %v, want SASL_AUTHENTICATION_FAILED", err)
	}
}

// With --acls only a super user (or ALTER/DESCRIBE on the cluster) manages
// users: alice gets CLUSTER_AUTHORIZATION_FAILED with the broker's message.
func TestSASLUserClusterACLs(t *testing.T) {
	dir := t.TempDir()
	users := writeSASLUsers(t, dir, "admin", "alice")
	addr := startKafkaBroker(t, func(c *broker.Config) {
		c.SASLUsersFile = users
		c.ACLs = true
		c.SuperUsers = "User:admin"
	})
	asAlice := []string{"--bootstrap", addr, "--sasl-user", "alice", "--sasl-password-file", filepath.Join(dir, "alice.pw")}
	for _, args := range [][]string{
		{"--list"},
		{"--user", "bob"},
		{"--user", "alice", "--delete"},
	} {
		stdin := ""
		if len(args) == 2 && args[0] == "--user" {
			stdin = "bob-pw\n"
		}
		out, err := saslUserAt(t, stdin, append(append([]string{}, asAlice...), args...)...)
		if err == nil || errors.As(err, new(usageError)) || !errors.Is(err, kerr.ClusterAuthorizationFailed) ||
			!strings.Contains(err.Error(), "CLUSTER_AUTHORIZATION_FAILED") || out != "" {
			t.Fatalf("alice %v: %q, %v; want CLUSTER_AUTHORIZATION_FAILED", args, out, err)
		}
		if args[0] == "--user" && args[1] == "bob" && !strings.Contains(err.Error(), "needs ALTER on the cluster") {
			t.Fatalf("alice setting bob: %v lacks the broker's message", err)
		}
	}
	if logsIn(t, addr, "bob", "bob-pw") {
		t.Fatal("bob exists after alice was refused")
	}
	if _, err := saslUserAt(t, "admin-pw\nbob-pw\n", "--bootstrap", addr, "--sasl-user", "admin", "--user", "bob"); err != nil {
		t.Fatalf("admin setting bob: %v", err)
	}
	if !logsIn(t, addr, "bob", "bob-pw") {
		t.Fatal("bob, set by the super user, cannot log in")
	}
}

// Command-line mistakes of the cluster mode are usage errors, found before
// any broker is asked; $TANDEM_BOOTSTRAP does not turn --file into the
// cluster mode.
func TestSASLUserClusterUsage(t *testing.T) {
	dir := t.TempDir()
	pw := filepath.Join(dir, "pw")
	if err := os.WriteFile(pw, []byte("secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	users := filepath.Join(dir, "users.json")
	t.Setenv("TANDEM_BOOTSTRAP", "")
	b := []string{"--bootstrap", "127.0.0.1:1"}
	join := func(a []string, b ...string) []string { return append(append([]string{}, a...), b...) }
	for _, args := range [][]string{
		{"--list"},      // neither --file nor --bootstrap
		{"--user", "x"}, // neither
		{"--bootstrap", "", "--list"},
		{"--file", users, "--bootstrap", "127.0.0.1:1", "--list"},
		{"--file", users, "--bootstrap", "", "--list"},
		{"--file", users, "--list", "--sasl-user", "admin"},
		{"--file", users, "--list", "--tls-ca", pw},
		{"--file", users, "--list", "--no-such-flag"},
		b, // no --user, no --list
		join(b, "--user", "x", "--list"),
		join(b, "--list", "--delete"),
		join(b, "--delete"),
		join(b, "--user", "x", "--iterations", "100"),
		join(b, "--user", "x", "--iterations", "4095"),
		join(b, "--user", "x", "--iterations", "16385"),
		join(b, "--user", "x", "--delete", "--iterations", "8192"),
		join(b, "--list", "--password-file", pw),
		join(b, "--list", "extra"),
		join(b, "--list", "--sasl-password-file", pw), // no --sasl-user
		join(b, "--list", "--sasl-user", "a", "--sasl-password-file", pw, "--sasl-mechanism", "GSSAPI"),
		join(b, "--user", "x", "--password-file", filepath.Join(dir, "missing")),
		join(b, "--user", "x", "--password-file", users), // empty: see below
	} {
		if args[len(args)-1] == users {
			if err := os.WriteFile(users, nil, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := saslUserAt(t, "", args...); !errors.As(err, new(usageError)) {
			t.Errorf("sasl-user %v: %v; want a usage error", args, err)
		}
	}
	os.Remove(users)
	// No password on standard input, for the admin or for the user.
	for _, args := range [][]string{join(b, "--list", "--sasl-user", "admin"), join(b, "--user", "x")} {
		if _, err := saslUserAt(t, "", args...); !errors.As(err, new(usageError)) {
			t.Errorf("sasl-user %v with an empty stdin: %v; want a usage error", args, err)
		}
	}
	// $TANDEM_BOOTSTRAP applies without --file only.
	t.Setenv("TANDEM_BOOTSTRAP", "127.0.0.1:1")
	if out, err := saslUserAt(t, "", "--file", users, "--list"); err != nil || out != "" {
		t.Fatalf("--file --list with $TANDEM_BOOTSTRAP set: %q, %v; want the (empty) file's users", out, err)
	}
	if _, err := saslUserAt(t, "", "--user", "x", "--iterations", "1"); !errors.As(err, new(usageError)) || !strings.Contains(err.Error(), "--iterations") {
		t.Fatalf("$TANDEM_BOOTSTRAP without --file: %v; want the cluster mode's usage error", err)
	}
}

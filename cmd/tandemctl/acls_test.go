package main

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/tandem-io/tandem/broker"
	"github.com/tandem-io/tandem/broker/sasl"
)

// startKafkaBroker starts an in-process broker (node 1, alone, so the
// leader) on a free port and returns its Kafka address; it is closed when
// the test ends.
func startKafkaBroker(t *testing.T, change func(*broker.Config)) string {
	t.Helper()
	cfg := broker.DefaultConfig()
	cfg.NodeID = 1
	cfg.DataDir = t.TempDir()
	cfg.Listen = "127.0.0.1:0"
	cfg.InitialRebalanceDelay = time.Millisecond
	cfg.Logger = hclog.New(&hclog.LoggerOptions{Name: "broker", Output: logWriter{t}, Level: hclog.Info})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Advertise = ln.Addr().String()
	if change != nil {
		change(&cfg)
	}
	b, err := broker.Open(cfg)
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- b.ServeListener(ln) }()
	t.Cleanup(func() {
		b.Close()
		<-done
	})
	return ln.Addr().String()
}

type logWriter struct{ t *testing.T }

func (w logWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// writeSASLUsers writes a broker users file with user NAME, password
// NAME-pw, and a password file NAME.pw for each, in dir.
func writeSASLUsers(t *testing.T, dir string, names ...string) string {
	t.Helper()
	var u sasl.Users
	for _, name := range names {
		if err := u.SetPassword(name, name+"-pw", 4096); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name+".pw"), []byte(name+"-pw\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(dir, "users.json")
	if err := u.Save(path); err != nil {
		t.Fatal(err)
	}
	return path
}

// kafkaClient is a franz-go client logged in as user with SCRAM-SHA-256.
func kafkaClient(t *testing.T, addr, user string, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(addr),
		kgo.SASL(scram.Auth{User: user, Pass: user + "-pw"}.AsSha256Mechanism())}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// produceAs produces one record to topic as user, with a new client (so
// that a refusal seen before does not stick to it).
func produceAs(t *testing.T, addr, user, topic string) error {
	t.Helper()
	cl := kafkaClient(t, addr, user, kgo.RecordRetries(1))
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	return cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Value: []byte("v")}).FirstErr()
}

// refused reports whether err is the refusal of a producer without WRITE.
func refused(err error) bool {
	return errors.Is(err, kerr.TopicAuthorizationFailed) || errors.Is(err, kerr.ClusterAuthorizationFailed)
}

// `tandemctl acls`, as the broker's super user, adds, lists and removes
// ACLs, and the broker enforces them: alice may produce to orders once
// allowed, not to another topic, not from a host she is denied, and no
// longer once the ACL is removed. alice herself may not manage ACLs.
func TestACLsCommand(t *testing.T) {
	dir := t.TempDir()
	users := writeSASLUsers(t, dir, "admin", "alice")
	addr := startKafkaBroker(t, func(c *broker.Config) {
		c.SASLUsersFile = users
		c.ACLs = true
		c.SuperUsers = "User:admin"
	})
	admin := kadm.NewClient(kafkaClient(t, addr, "admin"))
	for _, topic := range []string{"orders", "payments"} {
		if _, err := admin.CreateTopic(context.Background(), 1, 1, nil, topic); err != nil {
			t.Fatal(err)
		}
	}
	asAdmin := func(args ...string) (string, error) {
		t.Helper()
		return ctl(t, append([]string{"--timeout", "30s", "acls", "--bootstrap", addr,
			"--sasl-user", "admin", "--sasl-password-file", filepath.Join(dir, "admin.pw")}, args...)...)
	}
	mustOut := func(want string, args ...string) {
		t.Helper()
		out, err := asAdmin(args...)
		if err != nil {
			t.Fatalf("acls %v: %v", args, err)
		}
		if out != want {
			t.Fatalf("acls %v printed\n%s\nwant\n%s", args, out, want)
		}
	}

	if err := produceAs(t, addr, "alice", "orders"); !refused(err) {
		t.Fatalf("alice before any ACL: %v, want an authorization error", err)
	}
	if out, err := asAdmin("--list"); err != nil || out != "RESOURCE_TYPE  PATTERN  NAME  PRINCIPAL  HOST  OPERATION  PERMISSION\n" {
		t.Fatalf("--list with no ACLs: %q, %v", out, err)
	}

	mustOut("added: TOPIC  LITERAL  orders  User:alice  *  READ   ALLOW\n"+
		"added: TOPIC  LITERAL  orders  User:alice  *  WRITE  ALLOW\n",
		"--add", "--allow-principal", "User:alice", "--operation", "Write,read", "--topic", "orders")
	mustOut("added: TOPIC  PREFIXED  logs-  User:alice  *  READ  ALLOW\n"+
		"added: TOPIC  PREFIXED  logs-  User:bob    *  READ  ALLOW\n",
		"--add", "--allow-principal", "User:alice", "--allow-principal", "User:bob", "--operation", "READ",
		"--topic", "logs-", "--prefixed")
	mustOut("added: TOPIC  LITERAL  *  User:alice  10.0.0.7  WRITE  DENY\n",
		"--add", "--deny-principal", "User:alice", "--host", "10.0.0.7", "--operation", "write", "--topic", "*")
	mustOut("added: GROUP  LITERAL  billing  User:alice  *  DESCRIBE_CONFIGS  ALLOW\n",
		"--add", "--allow-principal", "User:alice", "--operation", "describe-configs", "--group", "billing")

	mustOut(`RESOURCE_TYPE  PATTERN   NAME     PRINCIPAL   HOST      OPERATION         PERMISSION
TOPIC          LITERAL   *        User:alice  10.0.0.7  WRITE             DENY
TOPIC          LITERAL   orders   User:alice  *         READ              ALLOW
TOPIC          LITERAL   orders   User:alice  *         WRITE             ALLOW
TOPIC          PREFIXED  logs-    User:alice  *         READ              ALLOW
TOPIC          PREFIXED  logs-    User:bob    *         READ              ALLOW
GROUP          LITERAL   billing  User:alice  *         DESCRIBE_CONFIGS  ALLOW
`, "--list")
	// What applies to logs-app: the prefix and the wildcard, not orders.
	mustOut(`RESOURCE_TYPE  PATTERN   NAME   PRINCIPAL   HOST      OPERATION  PERMISSION
TOPIC          LITERAL   *      User:alice  10.0.0.7  WRITE      DENY
TOPIC          PREFIXED  logs-  User:alice  *         READ       ALLOW
TOPIC          PREFIXED  logs-  User:bob    *         READ       ALLOW
`, "--list", "--topic", "logs-app")
	mustOut(`RESOURCE_TYPE  PATTERN   NAME   PRINCIPAL  HOST  OPERATION  PERMISSION
TOPIC          PREFIXED  logs-  User:bob   *     READ       ALLOW
`, "--list", "--principal", "User:bob")
	mustOut(`RESOURCE_TYPE  PATTERN   NAME   PRINCIPAL  HOST  OPERATION  PERMISSION
TOPIC          PREFIXED  logs-  User:bob   *     READ       ALLOW
`, "--list", "--topic", "logs-", "--prefixed", "--principal", "User:bob")

	if err := produceAs(t, addr, "alice", "orders"); err != nil {
		t.Fatalf("alice with WRITE on orders: %v", err)
	}
	if err := produceAs(t, addr, "alice", "payments"); !errors.Is(err, kerr.TopicAuthorizationFailed) {
		t.Fatalf("alice writing payments: %v, want TOPIC_AUTHORIZATION_FAILED", err)
	}
	// A DENY from her host beats the ALLOW; removing it lets her in again.
	mustOut("added: TOPIC  LITERAL  orders  User:alice  127.0.0.1  WRITE  DENY\n",
		"--add", "--deny-principal", "User:alice", "--host", "127.0.0.1", "--operation", "Write", "--topic", "orders")
	if err := produceAs(t, addr, "alice", "orders"); !refused(err) {
		t.Fatalf("alice denied WRITE from 127.0.0.1: %v, want an authorization error", err)
	}
	mustOut("removed: TOPIC  LITERAL  orders  User:alice  127.0.0.1  WRITE  DENY\n",
		"--remove", "--deny-principal", "User:alice", "--host", "127.0.0.1", "--operation", "Write", "--topic", "orders")
	if err := produceAs(t, addr, "alice", "orders"); err != nil {
		t.Fatalf("alice after the DENY was removed: %v", err)
	}

	// --remove deletes exactly the bindings named; Any matches every operation.
	mustOut("removed: TOPIC  LITERAL  orders  User:alice  *  WRITE  ALLOW\n",
		"--remove", "--allow-principal", "User:alice", "--operation", "Write", "--topic", "orders")
	if err := produceAs(t, addr, "alice", "orders"); !refused(err) {
		t.Fatalf("alice after her WRITE was removed: %v, want an authorization error", err)
	}
	mustOut("no ACL matched\n",
		"--remove", "--allow-principal", "User:alice", "--operation", "Write", "--topic", "orders")
	mustOut("removed: TOPIC  PREFIXED  logs-  User:alice  *  READ  ALLOW\n"+
		"removed: TOPIC  PREFIXED  logs-  User:bob    *  READ  ALLOW\n",
		"--remove", "--allow-principal", "User:alice", "--allow-principal", "User:bob", "--operation", "any",
		"--topic", "logs-", "--prefixed")
	mustOut(`RESOURCE_TYPE  PATTERN  NAME     PRINCIPAL   HOST      OPERATION         PERMISSION
TOPIC          LITERAL  *        User:alice  10.0.0.7  WRITE             DENY
TOPIC          LITERAL  orders   User:alice  *         READ              ALLOW
GROUP          LITERAL  billing  User:alice  *         DESCRIBE_CONFIGS  ALLOW
`, "--list")

	// The broker's refusals are errors (exit 1) with its message.
	out, err := asAdmin("--add", "--allow-principal", "User:alice", "--operation", "Read", "--topic", "*", "--prefixed")
	if err == nil || errors.As(err, new(usageError)) || !errors.Is(err, kerr.InvalidRequest) ||
		!strings.Contains(err.Error(), "INVALID_REQUEST") || !strings.Contains(err.Error(), "PREFIXED pattern") || out != "" {
		t.Fatalf("a PREFIXED '*': %q, %v; want INVALID_REQUEST with the broker's message", out, err)
	}
	// alice, with her password on standard input, is no super user.
	asAlice := func(args ...string) (string, error) {
		var out bytes.Buffer
		err := aclsCmd(context.Background(), append([]string{"--bootstrap", addr, "--sasl-user", "alice",
			"--sasl-mechanism", "scram-sha-256"}, args...), strings.NewReader("alice-pw\n"), &out, 30*time.Second)
		t.Logf("acls as alice %v: %q, %v", args, out.String(), err)
		return out.String(), err
	}
	for _, args := range [][]string{
		{"--list"},
		{"--add", "--allow-principal", "User:alice", "--operation", "All", "--topic", "payments"},
		{"--remove", "--allow-principal", "User:alice", "--operation", "Read", "--topic", "orders"},
	} {
		_, err := asAlice(args...)
		if err == nil || errors.As(err, new(usageError)) || !strings.Contains(err.Error(), "CLUSTER_AUTHORIZATION_FAILED") {
			t.Fatalf("alice %v: %v; want CLUSTER_AUTHORIZATION_FAILED", args, err)
		}
	}
	if _, err := asAlice("--add", "--allow-principal", "User:alice", "--operation", "All", "--topic", "payments"); !strings.Contains(err.Error(), "needs ALTER on the cluster") {
		t.Fatalf("alice's --add error lacks the broker's message: %v", err)
	}
	// PLAIN login, and a wrong password (an error, not a usage error).
	var buf bytes.Buffer
	if err := aclsCmd(context.Background(), []string{"--bootstrap", addr, "--sasl-user", "admin", "--sasl-mechanism", "PLAIN", "--list", "--group", "billing"},
		strings.NewReader("admin-pw"), &buf, 30*time.Second); err != nil || strings.Count(buf.String(), "\n") != 2 {
		t.Fatalf("PLAIN --list --group billing: %q, %v", buf.String(), err)
	}
	err = aclsCmd(context.Background(), []string{"--bootstrap", addr, "--sasl-user", "admin", "--list"},
		strings.NewReader("wrong\n"), &buf, 30*time.Second)
	if err == nil || errors.As(err, new(usageError)) || !strings.Contains(err.Error(), "SASL_AUTHENTICATION_FAILED") {
		t.Fatalf("a wrong password: %v, want SASL_AUTHENTICATION_FAILED", err)
	}
}

// Command-line mistakes are usage errors (exit 2), found before any broker
// is asked (the bootstrap address is never dialed).
func TestACLsUsage(t *testing.T) {
	pw := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pw, []byte("secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("TANDEM_BOOTSTRAP", "")
	b := []string{"acls", "--bootstrap", "127.0.0.1:1"}
	add := append(append([]string{}, b...), "--add")
	for _, args := range [][]string{
		{"acls", "--list"}, // no --bootstrap
		b,                  // no mode
		append(append([]string{}, b...), "--list", "--add"),
		append(append([]string{}, b...), "--add", "--remove"),
		append(append([]string{}, b...), "--list", "--allow-principal", "User:a"),
		append(append([]string{}, b...), "--list", "--operation", "Read"),
		append(append([]string{}, b...), "--list", "--prefixed"),
		append(append([]string{}, b...), "--list", "extra"),
		append(append([]string{}, b...), "--list", "--no-such-flag"),
		append(append([]string{}, add...), "--operation", "Read", "--topic", "t"),                                // no principal
		append(append([]string{}, add...), "--allow-principal", "User:a", "--topic", "t"),                        // no operation
		append(append([]string{}, add...), "--allow-principal", "User:a", "--operation", "Read"),                 // no resource
		append(append([]string{}, add...), "--allow-principal", "User:a", "--operation", "Reed", "--topic", "t"), // unknown operation
		append(append([]string{}, add...), "--allow-principal", "User:a", "--operation", "Any", "--topic", "t"),
		append(append([]string{}, add...), "--allow-principal", "User:a", "--operation", ",", "--topic", "t"),
		append(append([]string{}, add...), "--allow-principal", "alice", "--operation", "Read", "--topic", "t"), // no User:
		append(append([]string{}, add...), "--principal", "User:a", "--operation", "Read", "--topic", "t"),
		append(append([]string{}, add...), "--allow-principal", "User:a", "--operation", "Alter", "--cluster", "--prefixed"),
		append(append([]string{}, add...), "--allow-principal", "User:a", "--operation", "Read", "--topic", ""),
		append(append([]string{}, add...), "--allow-principal", "User:a", "--operation", "Read", "--topic", "t", "--host", ""),
		append(append([]string{}, b...), "--list", "--sasl-mechanism", "PLAIN"),
		append(append([]string{}, b...), "--list", "--sasl-password-file", pw),
		append(append([]string{}, b...), "--list", "--sasl-user", "u", "--sasl-password-file", pw, "--sasl-mechanism", "GSSAPI"),
		append(append([]string{}, b...), "--list", "--sasl-user", "u", "--sasl-password-file", filepath.Join(t.TempDir(), "missing")),
		append(append([]string{}, b...), "--list", "--tls-cert", pw), // no CA, no key
	} {
		if _, err := ctl(t, args...); !errors.As(err, new(usageError)) {
			t.Errorf("%v: %v; want a usage error", args, err)
		}
	}
	// An empty standard input gives no password.
	err := aclsCmd(context.Background(), append(b[1:], "--list", "--sasl-user", "u"), strings.NewReader(""), new(bytes.Buffer), time.Second)
	if !errors.As(err, new(usageError)) {
		t.Errorf("no password on stdin: %v; want a usage error", err)
	}
	// Operations are Kafka's names in any case, with - or _ between words.
	o := aclsOpts{bootstrap: "x:1", add: true, allow: stringsFlag{"User:a"}, topics: stringsFlag{"t"},
		ops: stringsFlag{"DescribeConfigs,describe-configs", "ALTER_CONFIGS", "idempotentwrite", "ClusterAction,all"}}
	ops, err := o.check()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, op := range ops {
		names = append(names, op.String())
	}
	if got := strings.Join(names, " "); got != "DESCRIBE_CONFIGS DESCRIBE_CONFIGS ALTER_CONFIGS IDEMPOTENT_WRITE CLUSTER_ACTION ALL" {
		t.Fatalf("operations parsed as %s", got)
	}
}

// A broker without --acls answers SECURITY_DISABLED, which tandemctl
// reports with the broker's message; $TANDEM_BOOTSTRAP stands for
// --bootstrap.
func TestACLsSecurityDisabled(t *testing.T) {
	addr := startKafkaBroker(t, nil)
	t.Setenv("TANDEM_BOOTSTRAP", addr)
	for _, args := range [][]string{
		{"--timeout", "30s", "acls", "--list"},
		{"--timeout", "30s", "acls", "--add", "--allow-principal", "User:a", "--operation", "Read", "--topic", "t"},
		{"--timeout", "30s", "acls", "--remove", "--allow-principal", "User:a", "--operation", "Read", "--topic", "t"},
	} {
		out, err := ctl(t, args...)
		if err == nil || errors.As(err, new(usageError)) || !errors.Is(err, kerr.SecurityDisabled) ||
			!strings.Contains(err.Error(), "SECURITY_DISABLED") || !strings.Contains(err.Error(), "--acls") || out != "" {
			t.Fatalf("%v: %q, %v; want SECURITY_DISABLED with the broker's message", args, out, err)
		}
	}
}

// Over TLS the client certificate's subject is the principal: the admin
// certificate of `tandemctl certs` (User:CN=admin,O=Tandem) is the super
// user; a client without a certificate is refused by the listener.
func TestACLsOverTLS(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tls")
	if _, err := ctl(t, "certs", "--out", dir, "--nodes", "1", "--hosts", "127.0.0.1"); err != nil {
		t.Fatal(err)
	}
	addr := startKafkaBroker(t, func(c *broker.Config) {
		c.TLSCertFile, c.TLSKeyFile = filepath.Join(dir, "node-1.crt"), filepath.Join(dir, "node-1.key")
		c.TLSCAFile, c.TLSClientAuth = filepath.Join(dir, "ca.crt"), true
		c.ACLs = true
		c.SuperUsers = "User:CN=admin,O=Tandem"
	})
	base := []string{"--timeout", "30s", "acls", "--bootstrap", addr, "--tls-ca", filepath.Join(dir, "ca.crt")}
	admin := append(append([]string{}, base...), "--tls-cert", filepath.Join(dir, "admin.crt"), "--tls-key", filepath.Join(dir, "admin.key"))
	out, err := ctl(t, append(admin, "--add", "--allow-principal", "User:CN=app,O=Tandem", "--operation", "IdempotentWrite", "--cluster")...)
	if err != nil || out != "added: CLUSTER  LITERAL  kafka-cluster  User:CN=app,O=Tandem  *  IDEMPOTENT_WRITE  ALLOW\n" {
		t.Fatalf("--add over TLS: %q, %v", out, err)
	}
	out, err = ctl(t, append(admin, "--list", "--cluster")...)
	if err != nil || !strings.Contains(out, "\nCLUSTER  ") || strings.Count(out, "\n") != 2 {
		t.Fatalf("--list --cluster over TLS: %q, %v", out, err)
	}
	// The node certificate is a principal too, but no super user.
	node := append(append([]string{}, base...), "--tls-cert", filepath.Join(dir, "node-1.crt"), "--tls-key", filepath.Join(dir, "node-1.key"))
	if _, err := ctl(t, append(node, "--list")...); err == nil || !strings.Contains(err.Error(), "CLUSTER_AUTHORIZATION_FAILED") {
		t.Fatalf("--list as CN=node-1: %v, want CLUSTER_AUTHORIZATION_FAILED", err)
	}
	if _, err := ctl(t, "--timeout", "2s", "acls", "--bootstrap", addr, "--tls-ca", filepath.Join(dir, "ca.crt"), "--list"); err == nil || errors.As(err, new(usageError)) {
		t.Fatalf("--list without a client certificate: %v, want an error", err)
	}
}

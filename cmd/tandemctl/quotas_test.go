package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tandem-io/tandem/broker"
)

// `tandemctl quotas` sets, describes and removes client quotas; the
// broker's refusal of an unsupported key is an error with its message.
func TestQuotasCommand(t *testing.T) {
	addr := startKafkaBroker(t, nil)
	quotas := func(args ...string) (string, error) {
		t.Helper()
		return ctl(t, append([]string{"--timeout", "30s", "quotas", "--bootstrap", addr}, args...)...)
	}
	mustOut := func(want string, args ...string) {
		t.Helper()
		out, err := quotas(args...)
		if err != nil {
			t.Fatalf("quotas %v: %v", args, err)
		}
		if out != want {
			t.Fatalf("quotas %v printed\n%s\nwant\n%s", args, out, want)
		}
	}

	mustOut("no client quotas\n", "--describe")
	mustOut("altered: client-id=slow: producer_byte_rate=51200\n",
		"--alter", "--client-id", "slow", "--add-config", "producer_byte_rate=50K")
	mustOut("altered: user=<default>: consumer_byte_rate=10485760\n",
		"--alter", "--user-default", "--add-config", "consumer_byte_rate=10M")
	mustOut("altered: user=alice,client-id=etl: producer_byte_rate=10485760, consumer_byte_rate=20971520\n",
		"--alter", "--client-id", "etl", "--user", "alice", "--add-config", "producer_byte_rate=10M,consumer_byte_rate=20971520")
	mustOut("altered: user=alice: producer_byte_rate=1073741824\n",
		"--alter", "--user", "alice", "--add-config", "producer_byte_rate=1G")
	mustOut("altered: user=<default>,client-id=<default>: producer_byte_rate=1000\n",
		"--alter", "--user-default", "--client-id-default", "--add-config", "producer_byte_rate=1000")

	mustOut(`ENTITY                              QUOTAS
client-id=slow                      producer_byte_rate=51200
user=<default>                      consumer_byte_rate=10485760
user=<default>,client-id=<default>  producer_byte_rate=1000
user=alice                          producer_byte_rate=1073741824
user=alice,client-id=etl            consumer_byte_rate=20971520 producer_byte_rate=10485760
`, "--describe")
	mustOut(`ENTITY          QUOTAS
client-id=slow  producer_byte_rate=51200
`, "--describe", "--client-id", "slow")
	// --user alone: every entity with that user.
	mustOut(`ENTITY                    QUOTAS
user=alice                producer_byte_rate=1073741824
user=alice,client-id=etl  consumer_byte_rate=20971520 producer_byte_rate=10485760
`, "--describe", "--user", "alice")
	mustOut(`ENTITY                              QUOTAS
user=<default>                      consumer_byte_rate=10485760
user=<default>,client-id=<default>  producer_byte_rate=1000
`, "--describe", "--user-default")
	mustOut(`ENTITY                              QUOTAS
user=<default>,client-id=<default>  producer_byte_rate=1000
`, "--describe", "--user-default", "--client-id-default")
	mustOut("no client quotas\n", "--describe", "--client-id", "nobody")

	// Removing one quota keeps the entity's others; removing the last
	// removes the entity.
	mustOut("altered: user=alice,client-id=etl: producer_byte_rate removed\n",
		"--alter", "--user", "alice", "--client-id", "etl", "--delete-config", "producer_byte_rate")
	mustOut("altered: user=alice: consumer_byte_rate=1024, producer_byte_rate removed\n",
		"--alter", "--user", "alice", "--add-config", "consumer_byte_rate=1k", "--delete-config", "producer_byte_rate")
	mustOut("altered: user=<default>,client-id=<default>: producer_byte_rate removed\n",
		"--alter", "--user-default", "--client-id-default", "--delete-config", "producer_byte_rate")
	t.Setenv("TANDEM_BOOTSTRAP", addr) // stands for --bootstrap
	out, err := ctl(t, "--timeout", "30s", "quotas", "--describe")
	if want := `ENTITY                    QUOTAS
client-id=slow            producer_byte_rate=51200
user=<default>            consumer_byte_rate=10485760
user=alice                consumer_byte_rate=1024
user=alice,client-id=etl  consumer_byte_rate=20971520
`; err != nil || out != want {
		t.Fatalf("--describe after the removals printed\n%s(%v)\nwant\n%s", out, err, want)
	}

	// Keys go to the broker as given: its refusal, with its reason, is
	// an error (exit 1), and nothing is changed.
	for _, c := range []struct{ config, reason string }{
		{"request_percentage=50", "not supported"},
		{"no_such_quota=5", "unknown quota"},
	} {
		out, err := quotas("--alter", "--user", "alice", "--add-config", "producer_byte_rate=1M,"+c.config)
		if err == nil || errors.As(err, new(usageError)) || !errors.Is(err, kerr.InvalidRequest) ||
			!strings.Contains(err.Error(), "INVALID_REQUEST") || !strings.Contains(err.Error(), c.reason) ||
			!strings.Contains(err.Error(), "user=alice") || out != "" {
			t.Fatalf("--add-config %s: %q, %v; want INVALID_REQUEST with the broker's %q", c.config, out, err, c.reason)
		}
	}
	mustOut(`ENTITY                    QUOTAS
user=alice                consumer_byte_rate=1024
user=alice,client-id=etl  consumer_byte_rate=20971520
`, "--describe", "--user", "alice")
}

// throttleHook counts the throttle times a client is told.
type throttleHook struct{ n, ms atomic.Int64 }

func (h *throttleHook) OnBrokerThrottle(_ kgo.BrokerMetadata, d time.Duration, _ bool) {
	h.n.Add(1)
	h.ms.Add(d.Milliseconds())
}

// A producer_byte_rate set with the command is enforced: a producer with
// that client id is told a throttle time once over its quota (after the
// burst of 10 s worth that the measuring window allows), one with another
// client id sending as much is not.
func TestQuotasEnforced(t *testing.T) {
	addr := startKafkaBroker(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	adm := kadm.NewClient(newKafkaClient(t, addr))
	if _, err := adm.CreateTopic(ctx, 1, 1, nil, "q"); err != nil {
		t.Fatal(err)
	}
	const rate = 20_000 // bytes/s: a burst of about 200 KB
	if out, err := ctl(t, "--timeout", "30s", "quotas", "--bootstrap", addr,
		"--alter", "--client-id", "slow", "--add-config", "producer_byte_rate=20000"); err != nil ||
		out != "altered: client-id=slow: producer_byte_rate=20000\n" {
		t.Fatalf("setting the quota: %q, %v", out, err)
	}
	value := make([]byte, 10_000)
	rand.Read(value) // incompressible: quotas count the bytes sent

	// produce sends records one at a time, up to about 1 MB, until the
	// client is told a throttle time; it returns the records sent.
	produce := func(clientID string, h *throttleHook, max int) int {
		t.Helper()
		cl := newKafkaClient(t, addr, kgo.ClientID(clientID), kgo.WithHooks(h), kgo.ProducerLinger(0))
		n := 0
		for ; n < max && h.n.Load() == 0; n++ {
			if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "q", Value: value}).FirstErr(); err != nil {
				t.Fatalf("%s producing: %v", clientID, err)
			}
		}
		return n
	}
	var slow throttleHook
	n := produce("slow", &slow, 100)
	if slow.n.Load() == 0 || slow.ms.Load() <= 0 {
		t.Fatalf("a producer with a %d B/s quota sent %d records of %d bytes and was never told a throttle time", rate, n, len(value))
	}
	t.Logf("throttled after %d records of %d bytes: %d ms", n, len(value), slow.ms.Load())
	var fast throttleHook
	if produce("fast", &fast, n); fast.n.Load() != 0 {
		t.Fatalf("a producer without a quota was throttled %d times", fast.n.Load())
	}
}

// newKafkaClient is a franz-go client of a broker without SASL.
func newKafkaClient(t *testing.T, addr string, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(addr)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// With --acls, describing quotas needs DESCRIBE_CONFIGS on the cluster and
// altering them ALTER_CONFIGS, or a super user.
func TestQuotasAuthorization(t *testing.T) {
	dir := t.TempDir()
	users := writeSASLUsers(t, dir, "admin", "alice")
	addr := startKafkaBroker(t, func(c *broker.Config) {
		c.SASLUsersFile = users
		c.ACLs = true
		c.SuperUsers = "User:admin"
	})
	as := func(user string, args ...string) (string, error) {
		t.Helper()
		return ctl(t, append([]string{"--timeout", "30s", "quotas", "--bootstrap", addr,
			"--sasl-user", user, "--sasl-password-file", filepath.Join(dir, user+".pw")}, args...)...)
	}
	setSlow := []string{"--alter", "--client-id", "slow", "--add-config", "producer_byte_rate=1M"}
	if out, err := as("admin", setSlow...); err != nil || out != "altered: client-id=slow: producer_byte_rate=1048576\n" {
		t.Fatalf("admin --alter: %q, %v", out, err)
	}
	refusedAs := func(what string, want string, out string, err error) {
		t.Helper()
		if err == nil || errors.As(err, new(usageError)) || !errors.Is(err, kerr.ClusterAuthorizationFailed) ||
			!strings.Contains(err.Error(), "CLUSTER_AUTHORIZATION_FAILED") || !strings.Contains(err.Error(), want) || out != "" {
			t.Fatalf("%s: %q, %v; want CLUSTER_AUTHORIZATION_FAILED mentioning %q", what, out, err, want)
		}
	}
	out, err := as("alice", "--describe")
	refusedAs("alice --describe", "", out, err)
	out, err = as("alice", setSlow...)
	refusedAs("alice --alter", "ALTER_CONFIGS", out, err)

	// DESCRIBE_CONFIGS on the cluster lets alice (password on standard
	// input) describe, not alter.
	if _, err := ctl(t, "--timeout", "30s", "acls", "--bootstrap", addr, "--sasl-user", "admin",
		"--sasl-password-file", filepath.Join(dir, "admin.pw"),
		"--add", "--allow-principal", "User:alice", "--operation", "DescribeConfigs", "--cluster"); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	err = quotasCmd(context.Background(), []string{"--bootstrap", addr, "--sasl-user", "alice", "--sasl-mechanism", "SCRAM-SHA-256", "--describe"},
		strings.NewReader("alice-pw\n"), &buf, 30*time.Second)
	if want := "ENTITY          QUOTAS\nclient-id=slow  producer_byte_rate=1048576\n"; err != nil || buf.String() != want {
		t.Fatalf("alice --describe with DESCRIBE_CONFIGS: %q, %v; want %q", buf.String(), err, want)
	}
	out, err = as("alice", "--alter", "--client-id", "slow", "--delete-config", "producer_byte_rate")
	refusedAs("alice --alter with DESCRIBE_CONFIGS only", "ALTER_CONFIGS", out, err)
}

// Command-line mistakes are usage errors (exit 2), found before any broker
// is asked (the bootstrap address is never dialed).
func TestQuotasUsage(t *testing.T) {
	pw := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pw, []byte("secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("TANDEM_BOOTSTRAP", "")
	with := func(args ...string) []string {
		return append([]string{"quotas", "--bootstrap", "127.0.0.1:1"}, args...)
	}
	alter := func(args ...string) []string { return with(append([]string{"--alter", "--user", "a"}, args...)...) }
	for _, args := range [][]string{
		{"quotas", "--describe"}, // no --bootstrap
		with(),                   // no mode
		with("--describe", "--alter"),
		with("--describe", "extra"),
		with("--describe", "--no-such-flag"),
		with("--describe", "--add-config", "producer_byte_rate=1"),
		with("--describe", "--user", "a", "--user-default"),
		with("--describe", "--client-id", "a", "--client-id-default"),
		with("--describe", "--user", ""),
		with("--describe", "--client-id", ""),
		with("--alter", "--add-config", "producer_byte_rate=1"), // no entity
		alter(), // no change
		alter("--add-config", ","),
		alter("--user", "b", "--add-config", "producer_byte_rate=1"),
		alter("--user-default", "--add-config", "producer_byte_rate=1"),
		alter("--add-config", "producer_byte_rate"),
		alter("--add-config", "=1"),
		alter("--add-config", "producer_byte_rate="),
		alter("--add-config", "producer_byte_rate=0"),
		alter("--add-config", "producer_byte_rate=-5"),
		alter("--add-config", "producer_byte_rate=1.5"),
		alter("--add-config", "producer_byte_rate=1.5M"),
		alter("--add-config", "producer_byte_rate=10X"),
		alter("--add-config", "producer_byte_rate=99999999999G"),
		alter("--add-config", "producer_byte_rate=1,producer_byte_rate=2"),
		alter("--add-config", "producer_byte_rate=1", "--delete-config", "producer_byte_rate"),
		alter("--delete-config", "producer_byte_rate=1"),
		with("--describe", "--sasl-mechanism", "PLAIN"),
		with("--describe", "--sasl-password-file", pw),
		with("--describe", "--sasl-user", "u", "--sasl-password-file", pw, "--sasl-mechanism", "GSSAPI"),
		with("--describe", "--tls-cert", pw), // no CA, no key
	} {
		if _, err := ctl(t, args...); !errors.As(err, new(usageError)) {
			t.Errorf("%v: %v; want a usage error", args, err)
		}
	}
	// An empty standard input gives no password.
	err := quotasCmd(context.Background(), []string{"--bootstrap", "127.0.0.1:1", "--describe", "--sasl-user", "u"},
		strings.NewReader(""), new(bytes.Buffer), time.Second)
	if !errors.As(err, new(usageError)) {
		t.Errorf("no password on stdin: %v; want a usage error", err)
	}
}

func TestParseQuotaValue(t *testing.T) {
	for in, want := range map[string]int64{
		"1": 1, "20000": 20000, "50K": 51200, "50k": 51200, "10M": 10 << 20, "1G": 1 << 30, "8388608G": 1 << 53,
	} {
		if got, err := parseQuotaValue(in); err != nil || got != want {
			t.Errorf("parseQuotaValue(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "K", "0", "0M", "-1", "-1K", "1.5", "1e6", "10MB", "1 M", "8388609G", "99999999999999999999"} {
		if got, err := parseQuotaValue(in); err == nil {
			t.Errorf("parseQuotaValue(%q) = %d; want an error", in, got)
		}
	}
}

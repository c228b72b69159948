package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tandem-io/tandem/internal/testutil"
)

// brokerBinary is the name of the broker under bin/.
const brokerBinary = "tandem-broker"

// brokerEnv names an environment variable that, when set, gives the path of
// the broker binary to test instead of bin/tandem-broker (for example an
// older build, to compare behaviour).
const brokerEnv = "TANDEM_E2E_BROKER"

// brokerPath returns the broker binary the tests run.
func brokerPath(t *testing.T) string {
	t.Helper()
	if p := os.Getenv(brokerEnv); p != "" {
		return p
	}
	return testutil.Bin(t, brokerBinary)
}

// TestMain builds the binaries with scripts/build.sh when bin/tandem-broker
// does not exist yet, so that `go test ./e2e/` works on a fresh checkout.
// scripts/test.sh always builds first, so there the binaries are current.
func TestMain(m *testing.M) {
	root, err := testutil.FindRepoRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(1)
	}
	if _, err := os.Stat(testutil.BinPath(root, brokerBinary)); err != nil && os.Getenv(brokerEnv) == "" {
		script := filepath.Join(root, "scripts", "build.sh")
		if _, serr := os.Stat(script); serr == nil {
			fmt.Fprintf(os.Stderr, "e2e: %s is missing; running scripts/build.sh\n", testutil.BinPath(root, brokerBinary))
			cmd := exec.Command("bash", script)
			cmd.Dir = root
			cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
			if err := cmd.Run(); err != nil {
				fmt.Fprintln(os.Stderr, "e2e: scripts/build.sh failed:", err)
				os.Exit(1)
			}
		}
	}
	os.Exit(m.Run())
}

// broker is one standalone tandem-broker process started for a test.
type broker struct {
	t       *testing.T
	Addr    string // Kafka listener, 127.0.0.1:PORT (also advertised)
	DataDir string
	Proc    *testutil.Process
}

// startBroker starts `tandem-broker --node-id 1` on a free port with a fresh
// data directory, plus any extra flags, and waits until it answers Kafka
// requests. The broker is stopped when the test ends.
func startBroker(t *testing.T, extra ...string) *broker {
	t.Helper()
	return startBrokerIn(t, t.TempDir(), extra...)
}

// startBrokerIn is startBroker with a given data directory.
func startBrokerIn(t *testing.T, dataDir string, extra ...string) *broker {
	t.Helper()
	return startBrokerWrapped(t, dataDir, nil, extra...)
}

// startBrokerWrapped is startBrokerIn with the broker started through a
// wrapper command that execs it (same pid), such as prlimit.
func startBrokerWrapped(t *testing.T, dataDir string, wrap []string, extra ...string) *broker {
	t.Helper()
	// FreeAddr's port can be taken by someone else before the broker binds
	// it (tests of other packages run at the same time); then try another.
	for attempt := 1; ; attempt++ {
		addr := testutil.FreeAddr(t)
		args := []string{
			"--node-id", "1",
			"--data-dir", dataDir,
			"--listen", addr,
			"--advertise", addr,
		}
		args = append(args, extra...)
		path := brokerPath(t)
		if len(wrap) > 0 {
			args = append(append(append([]string{}, wrap[1:]...), path), args...)
			path = wrap[0]
		}
		b := &broker{t: t, Addr: addr, DataDir: dataDir}
		b.Proc = testutil.Start(t, testutil.ProcessConfig{
			Name: fmt.Sprintf("tandem-broker-%d", attempt),
			Path: path,
			Args: args,
		})
		err := b.ready()
		if err == nil {
			return b
		}
		if attempt < 3 && !b.Proc.Running() && strings.Contains(b.Proc.Log(), "address already in use") {
			t.Logf("port of %s was taken before the broker bound it; trying another", addr)
			continue
		}
		t.Fatalf("broker on %s not ready: %v", addr, err)
	}
}

// waitReady waits until the broker accepts connections and answers a
// Metadata request that names itself, failing the test if it does not
// within 30s or exits.
func (b *broker) waitReady() {
	b.t.Helper()
	if err := b.ready(); err != nil {
		b.t.Fatalf("broker on %s not ready: %v", b.Addr, err)
	}
}

// ready is waitReady returning the error.
func (b *broker) ready() error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.Addr), kgo.RequestRetries(0), kgo.RetryTimeout(time.Second))
	if err != nil {
		return fmt.Errorf("kgo client: %w", err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	exited := false
	err = testutil.Poll(30*time.Second, func() error {
		if !b.Proc.Running() {
			exited = true
			return nil // stop polling
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		brokers, err := adm.ListBrokers(ctx)
		if err != nil {
			return err
		}
		if len(brokers) != 1 {
			return fmt.Errorf("metadata lists brokers %+v, want only this one", brokers)
		}
		if got := hostPort(brokers[0].Host, brokers[0].Port); got != b.Addr {
			return fmt.Errorf("metadata advertises %s, want %s", got, b.Addr)
		}
		return nil
	})
	if exited {
		return fmt.Errorf("broker exited: %v; last log lines:\n%s", b.Proc.ExitErr(), b.Proc.LogTail(20))
	}
	return err
}

func hostPort(host string, port int32) string { return host + ":" + strconv.Itoa(int(port)) }

// kill crashes the broker with SIGKILL.
func (b *broker) kill() {
	b.t.Helper()
	if err := b.Proc.Kill(); err != nil {
		b.t.Fatalf("kill broker: %v", err)
	}
}

// restart starts the broker again on the same data directory and port (after
// kill, or after a clean stop if it is still running) and waits until ready.
func (b *broker) restart() {
	b.t.Helper()
	b.Proc.MustRestart()
	b.waitReady()
}

// requireAlive fails the test if the broker process has exited, or if its log
// shows a Go panic or fatal error.
func (b *broker) requireAlive() {
	b.t.Helper()
	if !b.Proc.Running() {
		b.t.Fatalf("broker process exited: %v", b.Proc.ExitErr())
	}
	b.requireNoPanic()
}

// requireNoPanic fails the test if the broker's log holds a Go panic, a
// fatal runtime error or a data race report.
func (b *broker) requireNoPanic() {
	b.t.Helper()
	log := b.Proc.Log()
	for _, bad := range []string{"panic:", "fatal error:", "WARNING: DATA RACE"} {
		if i := strings.Index(log, bad); i >= 0 {
			end := min(len(log), i+2000)
			b.t.Fatalf("broker log shows %q:\n%s", bad, log[i:end])
		}
	}
}

// client returns a kgo client seeded with the broker, closed when the test ends.
func (b *broker) client(opts ...kgo.Opt) *kgo.Client {
	b.t.Helper()
	opts = append([]kgo.Opt{
		kgo.SeedBrokers(b.Addr),
		kgo.ClientID("e2e-" + b.t.Name()),
		kgo.FetchMaxWait(500 * time.Millisecond),
		// Fail instead of retrying for the whole test timeout.
		kgo.RecordDeliveryTimeout(30 * time.Second),
		kgo.RetryTimeout(20 * time.Second),
	}, opts...)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		b.t.Fatalf("kgo.NewClient: %v", err)
	}
	b.t.Cleanup(cl.Close)
	return cl
}

// admin returns a kadm client for the broker.
func (b *broker) admin() *kadm.Client {
	b.t.Helper()
	return kadm.NewClient(b.client())
}

// createTopic creates a topic with the given number of partitions through
// kadm and fails the test on any error.
func (b *broker) createTopic(topic string, partitions int32) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	resp, err := b.admin().CreateTopic(ctx, partitions, 1, nil, topic)
	if err != nil {
		b.t.Fatalf("CreateTopic %s: %v", topic, err)
	}
	if resp.Err != nil {
		b.t.Fatalf("CreateTopic %s: %v (%s)", topic, resp.Err, resp.ErrMessage)
	}
}

// endOffsets returns the high watermark of every partition of topic.
func (b *broker) endOffsets(topic string) map[int32]int64 {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	listed, err := b.admin().ListEndOffsets(ctx, topic)
	if err != nil {
		b.t.Fatalf("ListEndOffsets %s: %v", topic, err)
	}
	out := map[int32]int64{}
	for _, lo := range listed[topic] {
		if lo.Err != nil {
			b.t.Fatalf("ListEndOffsets %s[%d]: %v", topic, lo.Partition, lo.Err)
		}
		out[lo.Partition] = lo.Offset
	}
	return out
}

// ctxTimeout returns a context that is canceled after d or when the test ends.
func ctxTimeout(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// produceSync produces values to topic with cl (one record each, in order)
// and fails the test on any error.
func produceSync(t *testing.T, cl *kgo.Client, topic string, values []string) []*kgo.Record {
	t.Helper()
	recs := make([]*kgo.Record, len(values))
	for i, v := range values {
		recs[i] = &kgo.Record{Topic: topic, Value: []byte(v)}
	}
	res := cl.ProduceSync(ctxTimeout(t, 60*time.Second), recs...)
	if err := res.FirstErr(); err != nil {
		t.Fatalf("produce to %s: %v", topic, err)
	}
	return recs
}

// produceOneBatch produces rs through cl, a client with kgo.ManualFlushing,
// so that they leave in one record batch when they share a partition
// (through ProduceSync the client may send the first record alone, or cut
// the batch when a linger ends), and returns the first error.
func produceOneBatch(ctx context.Context, cl *kgo.Client, rs ...*kgo.Record) error {
	var first kgo.FirstErrPromise
	for _, r := range rs {
		cl.Produce(ctx, r, first.Promise())
	}
	if err := cl.Flush(ctx); err != nil {
		return err
	}
	return first.Err()
}

// consumeN reads records with cl until it has n of them (or more arrive in
// the same poll) or timeout passes, and returns them in the order received.
func consumeN(t *testing.T, cl *kgo.Client, n int, timeout time.Duration) []*kgo.Record {
	t.Helper()
	ctx := ctxTimeout(t, timeout)
	var out []*kgo.Record
	for len(out) < n {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("consumed %d of %d records within %v", len(out), n, timeout)
		}
		var errs []string
		fs.EachError(func(topic string, p int32, err error) {
			errs = append(errs, fmt.Sprintf("%s[%d]: %v", topic, p, err))
		})
		if len(errs) > 0 {
			t.Fatalf("fetch errors after %d of %d records: %s", len(out), n, strings.Join(errs, "; "))
		}
		out = append(out, fs.Records()...)
	}
	return out
}

// values returns the values of recs as strings.
func values(recs []*kgo.Record) []string {
	out := make([]string, len(recs))
	for i, r := range recs {
		out[i] = string(r.Value)
	}
	return out
}

// seqValues returns prefix0 .. prefix(n-1).
func seqValues(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s%d", prefix, i)
	}
	return out
}

// requireSameValues fails unless got equals want element by element.
func requireSameValues(t *testing.T, what string, got, want []string) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: got %d values, want %d\n got: %s\nwant: %s", what, len(got), len(want), abbrev(got), abbrev(want))
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("%s: value %d is %q, want %q\n got: %s\nwant: %s", what, i, got[i], want[i], abbrev(got), abbrev(want))
		}
	}
}

// abbrev prints a long list of values as its first and last few elements.
func abbrev(vs []string) string {
	if len(vs) <= 12 {
		return fmt.Sprintf("%q", vs)
	}
	return fmt.Sprintf("%q ... %q", vs[:6], vs[len(vs)-6:])
}

// python is the interpreter that has the Debian python3-kafka package.
const python = "/usr/bin/python3"

// runScript runs a client script from e2e/clients with args, and decodes the
// JSON object it prints on stdout into out. A non-zero exit, a timeout or
// output that is not JSON fails the test with the script's stderr.
func runScript(t *testing.T, timeout time.Duration, out any, argv ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("%s timed out after %v\nstdout:\n%s\nstderr:\n%s", strings.Join(argv, " "), timeout, stdout.String(), tail(stderr.String(), 60))
	}
	if err != nil {
		t.Fatalf("%s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(argv, " "), err, stdout.String(), tail(stderr.String(), 60))
	}
	if out == nil {
		return
	}
	if err := json.Unmarshal(stdout.Bytes(), out); err != nil {
		t.Fatalf("%s printed no JSON object (%v)\nstdout:\n%s\nstderr:\n%s", strings.Join(argv, " "), err, stdout.String(), tail(stderr.String(), 60))
	}
}

// clientScript returns the path of e2e/clients/NAME.
func clientScript(t *testing.T, name string) string {
	t.Helper()
	p := filepath.Join(testutil.RepoRoot(t), "e2e", "clients", name)
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("client script: %v", err)
	}
	return p
}

func tail(s string, lines int) string {
	ls := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(ls) > lines {
		ls = ls[len(ls)-lines:]
	}
	return strings.Join(ls, "\n")
}

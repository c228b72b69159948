package e2e

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tandem-io/tandem/internal/testutil"
)

// Tests of what an operator does with the broker process: start it wrong,
// start it twice, stop it under load, read its logs.

// TestBrokerStartupErrors: a broker started with a bad command line or an
// unusable data directory exits non-zero at once with a message that says
// what is wrong.
func TestBrokerStartupErrors(t *testing.T) {
	file := filepath.Join(t.TempDir(), "not-a-dir")
	if err := os.WriteFile(file, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := testutil.FreeAddr(t)
	tests := []struct {
		name string
		args []string
		want string // in the output, case-insensitive
	}{
		{"no data dir", []string{"--node-id", "1", "--listen", addr}, "data-dir"},
		{"no node id", []string{"--data-dir", t.TempDir(), "--listen", addr}, "node-id"},
		{"data dir is a file", []string{"--node-id", "1", "--data-dir", file, "--listen", addr}, file},
		{"bad fsync policy", []string{"--node-id", "1", "--data-dir", t.TempDir(), "--listen", addr, "--fsync", "sometimes"}, "fsync"},
		{"bad listen address", []string{"--node-id", "1", "--data-dir", t.TempDir(), "--listen", "nowhere"}, "nowhere"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := testutil.Start(t, testutil.ProcessConfig{Name: "tandem-broker", Path: brokerPath(t), Args: tc.args})
			select {
			case <-p.Exited():
			case <-time.After(20 * time.Second):
				t.Fatalf("broker %v still running after 20s; want an immediate exit", tc.args)
			}
			if p.ExitErr() == nil {
				t.Errorf("broker %v exited with status 0; want non-zero", tc.args)
			}
			if !strings.Contains(strings.ToLower(p.Log()), strings.ToLower(tc.want)) {
				t.Errorf("broker %v: output does not mention %q:\n%s", tc.args, tc.want, p.LogTail(20))
			}
		})
	}
}

// TestDataDirInUse: a second broker pointed at the data directory of a
// running one refuses to start (two writers would corrupt the WAL), and the
// first one is unaffected.
func TestDataDirInUse(t *testing.T) {
	b := startBroker(t)
	const topic = "owner"
	b.createTopic(topic, 1)
	produceSync(t, b.client(), topic, []string{"one"})

	addr := testutil.FreeAddr(t)
	second := testutil.Start(t, testutil.ProcessConfig{
		Name: "second-broker",
		Path: brokerPath(t),
		Args: []string{"--node-id", "2", "--data-dir", b.DataDir, "--listen", addr, "--advertise", addr},
	})
	select {
	case <-second.Exited():
	case <-time.After(20 * time.Second):
		t.Fatalf("a second broker on the same data directory is still running after 20s")
	}
	if second.ExitErr() == nil {
		t.Errorf("second broker exited with status 0; want non-zero")
	}
	if log := strings.ToLower(second.Log()); !strings.Contains(log, "lock") && !strings.Contains(log, "in use") {
		t.Errorf("second broker's output does not say the directory is locked or in use:\n%s", second.LogTail(20))
	}

	produceSync(t, b.client(), topic, []string{"two"})
	requireSameValues(t, "first broker after the attempt", b.readAll(topic)[0], []string{"one", "two"})
	b.requireAlive()
}

// TestGracefulShutdownUnderLoad sends SIGTERM while a producer, a group
// consumer and a long-polling fetch are active. The broker must exit with
// status 0 within the stop timeout, and after a restart every acknowledged
// record is there.
func TestGracefulShutdownUnderLoad(t *testing.T) {
	b := startBroker(t)
	const topic = "shutdown"
	b.createTopic(topic, 2)

	var mu sync.Mutex
	var acked []string
	prod := b.client(kgo.RecordDeliveryTimeout(10 * time.Second))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ctx.Err() == nil; i++ {
			v := strconv.Itoa(i)
			prod.Produce(ctx, &kgo.Record{Topic: topic, Value: []byte(v)}, func(_ *kgo.Record, err error) {
				if err == nil {
					mu.Lock()
					acked = append(acked, v)
					mu.Unlock()
				}
			})
		}
	}()
	cons := b.client(kgo.ConsumerGroup("shutdown-group"), kgo.ConsumeTopics(topic))
	pollLoop(t, cons)
	idle := "idle-topic"
	b.createTopic(idle, 1)
	longPoll := b.client(kgo.ConsumeTopics(idle), kgo.FetchMaxWait(30*time.Second))
	pollLoop(t, longPoll)

	testutil.Eventually(t, 30*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(acked) >= 2000
	})
	stopped := time.Now()
	if err := b.Proc.Stop(); err != nil {
		t.Fatalf("SIGTERM under load: %v (after %v)", err, time.Since(stopped).Round(time.Millisecond))
	}
	t.Logf("broker stopped %v after SIGTERM", time.Since(stopped).Round(time.Millisecond))
	cancel()
	wg.Wait()
	prod.Close()

	mu.Lock()
	want := map[string]bool{}
	for _, v := range acked {
		want[v] = true
	}
	mu.Unlock()
	b.restart()
	seen := map[string]int{}
	for _, vs := range b.readAll(topic) {
		for _, v := range vs {
			seen[v]++
		}
	}
	for v := range want {
		if seen[v] != 1 {
			t.Fatalf("acknowledged record %s is stored %d times after a clean stop and restart", v, seen[v])
		}
	}
	b.requireNoPanic()
}

// TestLogJSON: with --log-json every line the broker writes is one JSON
// object with a message and a level, for log pipelines.
func TestLogJSON(t *testing.T) {
	b := startBroker(t, "--log-json")
	b.createTopic("json", 1)
	produceSync(t, b.client(), "json", []string{"x"})
	if err := b.Proc.Stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	n := 0
	for _, line := range strings.Split(b.Proc.Log(), "\n") {
		if line == "" || strings.HasPrefix(line, "=== testutil:") {
			continue
		}
		var obj map[string]any
		if err := json.Unmarshal([]byte(line), &obj); err != nil {
			t.Fatalf("log line is not JSON (%v): %s", err, line)
		}
		if _, ok := obj["@message"]; !ok {
			if _, ok := obj["msg"]; !ok {
				t.Errorf("JSON log line has no message field: %s", line)
			}
		}
		n++
	}
	if n < 3 {
		t.Errorf("only %d JSON log lines for a start, a topic creation and a stop", n)
	}
}

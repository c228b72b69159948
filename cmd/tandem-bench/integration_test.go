package main

// These tests drive the real programs the benchmark drives (bin/tandem-broker
// built by scripts/build.sh, and nats-server) for a fraction of a second each,
// to prove the measuring code works end to end. They check counts and
// shapes, never how fast anything was.

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/tandem-io/tandem/broker/sasl"
	"github.com/tandem-io/tandem/internal/certs"
	"github.com/tandem-io/tandem/internal/testutil"
)

func testLogger(t *testing.T) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Name: "tandem-bench", Level: hclog.Warn, Output: testWriter{t}})
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}

func startBroker(t *testing.T) (addr string, pid int) {
	t.Helper()
	addr = testutil.FreeAddr(t)
	p := testutil.Start(t, testutil.ProcessConfig{
		Name: "broker",
		Path: testutil.Bin(t, "tandem-broker"),
		Args: []string{"--node-id", "1", "--data-dir", filepath.Join(t.TempDir(), "data"),
			"--listen", addr, "--advertise", addr, "--log-level", "warn"},
	})
	testutil.WaitTCP(t, addr)
	return addr, p.Pid()
}

func TestProduceConsumeAgainstBroker(t *testing.T) {
	addr, pid := startBroker(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	log := testLogger(t)

	var produced int64
	for _, acks := range []int{1, -1} {
		cfg := DefaultProduceConfig()
		cfg.Brokers, cfg.Topic, cfg.Acks = []string{addr}, "bench-test", acks
		cfg.Idempotent = acks == -1
		cfg.Duration, cfg.Warmup, cfg.Progress = 300*time.Millisecond, 0, 0
		cfg.WatchPID, cfg.WatchInterval = pid, 100*time.Millisecond
		cfg.Partitions = 2
		if err := cfg.Validate(); err != nil {
			t.Fatal(err)
		}
		r, err := produce(ctx, cfg, log)
		if err != nil {
			t.Fatalf("acks=%d: %v", acks, err)
		}
		if r.Records == 0 || r.Errors != 0 || r.Latency == nil || r.Latency.Count != uint64(r.Records) {
			t.Fatalf("acks=%d: unexpected result %+v", acks, r)
		}
		if r.Bytes != r.Records*int64(cfg.RecordBytes) || r.MBps <= 0 || r.RecordsPerSec <= 0 {
			t.Errorf("acks=%d: inconsistent figures %+v", acks, r)
		}
		if r.RSS == nil || r.RSS.PeakKB <= 0 || r.RSS.PID != pid {
			t.Errorf("acks=%d: broker RSS not sampled: %+v", acks, r.RSS)
		}
		produced += r.Records
	}

	// An exact count: --records.
	cfg := DefaultProduceConfig()
	cfg.Brokers, cfg.Topic, cfg.Records, cfg.Warmup, cfg.Progress = []string{addr}, "bench-test", 1000, 0, 0
	r, err := produce(ctx, cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	if r.Records != 1000 {
		t.Errorf("--records 1000 produced %d", r.Records)
	}
	produced += r.Records

	cc := DefaultConsumeConfig()
	cc.Brokers, cc.Topic, cc.Timeout = []string{addr}, "bench-test", time.Minute
	cr, err := consume(ctx, cc, log)
	if err != nil {
		t.Fatal(err)
	}
	if cr.Records != produced || cr.Errors != 0 {
		t.Errorf("consumed %d records (%d errors), produced %d", cr.Records, cr.Errors, produced)
	}
}

// A standalone node serves Fetch from its own log as a follower does, so the
// lag measurement can run with the same node as leader and "follower".
func TestLagPathAgainstBroker(t *testing.T) {
	addr, _ := startBroker(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cfg := LagConfig{Produce: DefaultProduceConfig(), Follower: addr, MaxWait: 100 * time.Millisecond, Drain: 30 * time.Second}
	cfg.Produce.Brokers, cfg.Produce.Topic = []string{addr}, "bench-lag"
	cfg.Produce.Stamp, cfg.Produce.Rate, cfg.Produce.Partitions = true, 2000, 1
	cfg.Produce.Duration, cfg.Produce.Warmup, cfg.Produce.Progress = 500*time.Millisecond, 0, 0
	if err := cfg.Produce.Validate(); err != nil {
		t.Fatal(err)
	}
	r, err := measureLag(ctx, cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if r.Records == 0 || r.Errors != 0 || r.Latency == nil || r.Latency.Count != uint64(r.Records) {
		t.Fatalf("unexpected lag result %+v", r)
	}

	// The raw follower reader sees every offset, in order, from 0.
	fr, err := newFollowerReader(addr, "bench-lag", 0, 0, 100*time.Millisecond, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer fr.Close()
	next := int64(0)
	testutil.Eventually(t, 30*time.Second, func() error {
		spans, err := fr.fetch(ctx)
		if err != nil {
			return err
		}
		for _, s := range spans {
			if s.first > next {
				t.Fatalf("gap: batch starts at %d, expected %d", s.first, next)
			}
			next = s.last + 1
		}
		if next < r.Records {
			return context.DeadlineExceeded
		}
		return nil
	})
}

func TestJetStreamAgainstNatsServer(t *testing.T) {
	addr := testutil.FreeAddr(t)
	_, port, _ := net.SplitHostPort(addr)
	natsServer, err := exec.LookPath("nats-server")
	if err != nil {
		t.Fatalf("nats-server is not installed (scripts/test.sh installs it): %v", err)
	}
	testutil.Start(t, testutil.ProcessConfig{
		Name: "nats-server",
		Path: natsServer,
		Args: []string{"-a", "127.0.0.1", "-p", port, "--jetstream", "--store_dir", t.TempDir()},
	})
	testutil.WaitTCP(t, addr)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, mode := range []string{"sync", "async"} {
		cfg := JetStreamConfig{Server: "nats://" + addr, Stream: "BENCHTEST", Replicas: 1, RecordBytes: 512,
			Duration: 300 * time.Millisecond, Mode: mode, MaxPending: 100}
		r, err := jetStreamPublish(ctx, cfg, testLogger(t))
		if err != nil {
			t.Fatalf("%s: %v", mode, err)
		}
		if r.Records == 0 || r.Errors != 0 || r.Latency == nil || r.Bytes != r.Records*512 {
			t.Errorf("%s: unexpected result %+v", mode, r)
		}
	}
}

// `produce --tls-ca --sasl-user --sasl-password` drives a broker that
// serves Kafka over TLS and requires a SCRAM login.
func TestProduceOverTLSAndSASL(t *testing.T) {
	dir := t.TempDir()
	set, err := certs.WriteNodeSet(certs.SetOptions{Dir: filepath.Join(dir, "certs"), Nodes: []int32{1}, Hosts: []string{"127.0.0.1"}})
	if err != nil {
		t.Fatal(err)
	}
	var users sasl.Users
	if err := users.SetPassword("bench", "pw", 4096); err != nil {
		t.Fatal(err)
	}
	usersFile := filepath.Join(dir, "users.json")
	if err := users.Save(usersFile); err != nil {
		t.Fatal(err)
	}
	addr := testutil.FreeAddr(t)
	testutil.Start(t, testutil.ProcessConfig{
		Name: "broker",
		Path: testutil.Bin(t, "tandem-broker"),
		Args: []string{"--node-id", "1", "--data-dir", filepath.Join(dir, "data"), "--listen", addr, "--advertise", addr,
			"--tls-cert", set.NodeCrt[1], "--tls-key", set.NodeKey[1], "--sasl-users", usersFile, "--log-level", "warn"},
	})
	testutil.WaitTCP(t, addr)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out := filepath.Join(dir, "result.json")
	args := []string{"--brokers", addr, "--topic", "secured", "--records", "500", "--warmup", "0", "--progress", "0",
		"--tls-ca", set.CA, "--sasl-user", "bench", "--sasl-password", "pw", "--out", out, "--json"}
	if err := runProduce(ctx, args, testLogger(t)); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var r Result
	if err := json.Unmarshal(data, &r); err != nil || r.Records != 500 || r.Errors != 0 {
		t.Fatalf("result %s (%v); want 500 records, no errors", data, err)
	}
	args[len(args)-4] = "wrong" // the password
	if err := runProduce(ctx, args, testLogger(t)); err == nil {
		t.Fatal("a wrong password produced")
	}
}

// The txn command commits whole transactions and counts them: every
// record it reports is readable read_committed, and nothing more.
func TestTxnAgainstBroker(t *testing.T) {
	addr, _ := startBroker(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cfg := DefaultTxnConfig()
	cfg.Brokers, cfg.Topic, cfg.PerTxn, cfg.RecordBytes = []string{addr}, "bench-txn", 10, 100
	cfg.Duration, cfg.Warmup = 500*time.Millisecond, 0
	r, err := txnLoad(ctx, cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if r.Records == 0 || r.Records%10 != 0 || r.Errors != 0 || r.Latency == nil || r.Latency.Count != uint64(r.Records/10) {
		t.Fatalf("txn result %+v", r)
	}
	ccfg := DefaultConsumeConfig()
	// The end offset counts the commit markers too, which no consumer
	// gets: read until the timeout.
	ccfg.Brokers, ccfg.Topic, ccfg.Timeout = []string{addr}, "bench-txn", 3*time.Second
	c, err := consume(ctx, ccfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	// The consumer reads read_uncommitted: every committed record, and the
	// records of transactions that ended after the window (at most one per
	// producer), never fewer.
	if c.Records < r.Records || c.Records > r.Records+int64(cfg.Producers*cfg.PerTxn) {
		t.Fatalf("the topic holds %d records; the run reported %d committed", c.Records, r.Records)
	}
}

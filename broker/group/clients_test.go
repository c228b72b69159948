package group_test

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/hashicorp/go-hclog"
	"github.com/rcrowley/go-metrics"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tandem-io/tandem/broker"
)

type logWriter struct{ t *testing.T }

func (w logWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// startBroker runs a real standalone broker (and so this coordinator) on
// 127.0.0.1 with its data in dir. stop shuts it down.
func startBroker(t *testing.T, dir string) (addr string, stop func()) {
	t.Helper()
	return startBrokerWith(t, dir, "127.0.0.1:0", nil)
}

// startBrokerWith is startBroker listening on listen, with mod applied to
// the config.
func startBrokerWith(t *testing.T, dir, listen string, mod func(*broker.Config)) (addr string, stop func()) {
	t.Helper()
	cfg := broker.DefaultConfig()
	cfg.NodeID = 1
	cfg.DataDir = dir
	cfg.InitialRebalanceDelay = 0
	cfg.Logger = hclog.New(&hclog.LoggerOptions{Name: "broker", Output: logWriter{t}, Level: hclog.Info})
	if mod != nil {
		mod(&cfg)
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Listen = ln.Addr().String()
	cfg.Advertise = ln.Addr().String()
	b, err := broker.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- b.ServeListener(ln) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			b.Close()
			<-done
		})
	}
	t.Cleanup(stop)
	return ln.Addr().String(), stop
}

func waitUntil(t *testing.T, timeout time.Duration, what string, fn func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !fn() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Two franz-go consumers share a topic through the real broker, commit,
// one leaves and the other takes over; committed offsets survive a broker
// restart.
func TestFranzGoConsumerGroup(t *testing.T) {
	dir := t.TempDir()
	addr, stop := startBroker(t, dir)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()

	admCl, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		t.Fatal(err)
	}
	defer admCl.Close()
	adm := kadm.NewClient(admCl)
	if _, err := adm.CreateTopic(ctx, 3, 1, nil, "events"); err != nil {
		t.Fatalf("create topic: %v", err)
	}
	prod, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.DefaultProduceTopic("events"))
	if err != nil {
		t.Fatal(err)
	}
	const n = 90
	for i := 0; i < n; i++ {
		prod.Produce(ctx, &kgo.Record{Key: []byte(fmt.Sprint(i)), Value: []byte(fmt.Sprint(i))}, nil)
	}
	if err := prod.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	prod.Close()

	var mu sync.Mutex
	seen := map[string]bool{}
	assigned := map[string]int{}
	consumer := func(name string) *kgo.Client {
		cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ClientID(name),
			kgo.ConsumerGroup("readers"), kgo.ConsumeTopics("events"),
			kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
			kgo.DisableAutoCommit(),
			kgo.SessionTimeout(6*time.Second), kgo.HeartbeatInterval(200*time.Millisecond),
			kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, m map[string][]int32) {
				mu.Lock()
				assigned[name] += len(m["events"])
				mu.Unlock()
			}))
		if err != nil {
			t.Fatal(err)
		}
		return cl
	}
	c1, c2 := consumer("c1"), consumer("c2")
	pollCtx, stopPolling := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for _, cl := range []*kgo.Client{c1, c2} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for pollCtx.Err() == nil {
				fs := cl.PollFetches(pollCtx)
				fs.EachRecord(func(r *kgo.Record) {
					mu.Lock()
					seen[string(r.Value)] = true
					mu.Unlock()
				})
				if err := cl.CommitUncommittedOffsets(pollCtx); err != nil && pollCtx.Err() == nil {
					t.Errorf("commit: %v", err)
				}
			}
		}()
	}
	waitUntil(t, 30*time.Second, "all records consumed", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(seen) == n
	})
	waitUntil(t, 30*time.Second, "both consumers assigned", func() bool {
		dg, err := adm.DescribeGroups(ctx, "readers")
		if err != nil || dg["readers"].State != "Stable" || len(dg["readers"].Members) != 2 {
			return false
		}
		for _, m := range dg["readers"].Members {
			a, ok := m.Assigned.AsConsumer()
			if !ok || len(a.Topics) != 1 || len(a.Topics[0].Partitions) == 0 {
				return false
			}
		}
		return true
	})
	waitUntil(t, 30*time.Second, "offsets committed at the end", func() bool {
		lag, err := adm.Lag(ctx, "readers")
		return err == nil && lag["readers"].Lag.Total() == 0
	})

	// c2 leaves: c1 ends up with all three partitions.
	stopPolling()
	wg.Wait()
	c2.Close()
	pollCtx, stopPolling = context.WithCancel(ctx)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for pollCtx.Err() == nil {
			c1.PollFetches(pollCtx)
		}
	}()
	waitUntil(t, 30*time.Second, "c1 alone with every partition", func() bool {
		dg, err := adm.DescribeGroups(ctx, "readers")
		if err != nil || dg["readers"].State != "Stable" || len(dg["readers"].Members) != 1 {
			return false
		}
		a, ok := dg["readers"].Members[0].Assigned.AsConsumer()
		return ok && len(a.Topics) == 1 && len(a.Topics[0].Partitions) == 3
	})
	stopPolling()
	wg.Wait()
	c1.Close()
	admCl.Close()

	// Committed offsets survive a restart.
	stop()
	addr, _ = startBroker(t, dir)
	admCl2, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		t.Fatal(err)
	}
	defer admCl2.Close()
	offs, err := kadm.NewClient(admCl2).FetchOffsets(ctx, "readers")
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	offs.Each(func(o kadm.OffsetResponse) { total += o.At })
	if total != n {
		t.Fatalf("committed offsets after restart add up to %d, want %d", total, n)
	}
}

type saramaHandler struct {
	mu   *sync.Mutex
	seen map[string]bool
}

func (saramaHandler) Setup(sarama.ConsumerGroupSession) error   { return nil }
func (saramaHandler) Cleanup(sarama.ConsumerGroupSession) error { return nil }
func (h saramaHandler) ConsumeClaim(s sarama.ConsumerGroupSession, c sarama.ConsumerGroupClaim) error {
	for m := range c.Messages() {
		h.mu.Lock()
		h.seen[string(m.Value)] = true
		h.mu.Unlock()
		s.MarkMessage(m, "")
	}
	return nil
}

// Sarama consumer groups (old and new protocol versions) consume a topic
// through the real broker and commit their offsets.
func TestSaramaConsumerGroup(t *testing.T) {
	metrics.UseNilMetrics = true // go-metrics starts a goroutine that never stops
	addr, _ := startBroker(t, t.TempDir())
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	admCl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.DefaultProduceTopic("logs"),
		kgo.ProducerBatchCompression(kgo.NoCompression()))
	if err != nil {
		t.Fatal(err)
	}
	defer admCl.Close()
	adm := kadm.NewClient(admCl)
	if _, err := adm.CreateTopic(ctx, 2, 1, nil, "logs"); err != nil {
		t.Fatal(err)
	}
	const n = 40
	for i := 0; i < n; i++ {
		admCl.Produce(ctx, &kgo.Record{Value: []byte(fmt.Sprint(i))}, nil)
	}
	if err := admCl.Flush(ctx); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name    string
		version sarama.KafkaVersion
	}{{"kafka 0.11 protocol", sarama.V0_11_0_0}, {"kafka 2.3 protocol", sarama.V2_3_0_0}, {"kafka 3.6 protocol", sarama.V3_6_0_0}} {
		t.Run(tc.name, func(t *testing.T) {
			group := "sarama-" + tc.version.String()
			cfg := sarama.NewConfig()
			cfg.Version = tc.version
			cfg.Consumer.Offsets.Initial = sarama.OffsetOldest
			cfg.Consumer.Offsets.AutoCommit.Interval = 100 * time.Millisecond
			cfg.Consumer.Group.Heartbeat.Interval = 200 * time.Millisecond
			var mu sync.Mutex
			seen := map[string]bool{}
			cg, err := sarama.NewConsumerGroup([]string{addr}, group, cfg)
			if err != nil {
				t.Fatal(err)
			}
			cctx, stop := context.WithCancel(ctx)
			done := make(chan struct{})
			go func() {
				defer close(done)
				for cctx.Err() == nil {
					if err := cg.Consume(cctx, []string{"logs"}, saramaHandler{&mu, seen}); err != nil && cctx.Err() == nil {
						t.Errorf("consume: %v", err)
						return
					}
				}
			}()
			waitUntil(t, 30*time.Second, "all records consumed", func() bool {
				mu.Lock()
				defer mu.Unlock()
				return len(seen) == n
			})
			waitUntil(t, 30*time.Second, "offsets committed", func() bool {
				lag, err := adm.Lag(ctx, group)
				return err == nil && lag[group].Lag.Total() == 0
			})
			stop()
			<-done
			if err := cg.Close(); err != nil {
				t.Fatal(err)
			}
			waitUntil(t, 10*time.Second, "the group to be empty", func() bool {
				dg, err := adm.DescribeGroups(ctx, group)
				return err == nil && dg[group].State == "Empty"
			})
		})
	}
}

// Offsets committed as -1 (the tombstones DeleteGroups and OffsetDelete
// write) delete the offset, also after the broker replays its WAL.
func TestTombstonesSurviveRestart(t *testing.T) {
	dir := t.TempDir()
	addr, stop := startBroker(t, dir)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	commit := func(addr string, offs map[int32]int64) {
		t.Helper()
		cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		os := make(kadm.Offsets)
		for p, at := range offs {
			os.Add(kadm.Offset{Topic: "t", Partition: p, At: at, LeaderEpoch: -1})
		}
		resp, err := kadm.NewClient(cl).CommitOffsets(ctx, "tomb", os)
		if err != nil || resp.Error() != nil {
			t.Fatalf("commit: %v %v", err, resp.Error())
		}
	}
	fetch := func(addr string) map[int32]int64 {
		t.Helper()
		cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		resp, err := kadm.NewClient(cl).FetchOffsets(ctx, "tomb")
		if err != nil {
			t.Fatal(err)
		}
		out := map[int32]int64{}
		resp.Each(func(o kadm.OffsetResponse) { out[o.Partition] = o.At })
		return out
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kadm.NewClient(cl).CreateTopic(ctx, 2, 1, nil, "t"); err != nil {
		t.Fatal(err)
	}
	cl.Close()
	commit(addr, map[int32]int64{0: 5, 1: 6})
	commit(addr, map[int32]int64{1: -1})
	if got := fetch(addr); len(got) != 1 || got[0] != 5 {
		t.Fatalf("before restart: %v", got)
	}
	stop()
	addr, _ = startBroker(t, dir)
	if got := fetch(addr); len(got) != 1 || got[0] != 5 {
		t.Fatalf("after restart: %v", got)
	}
}

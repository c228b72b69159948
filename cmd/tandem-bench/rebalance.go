package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/twmb/franz-go/pkg/kgo"
)

// RebalanceConfig is one `tandem-bench rebalance` run: a consumer group
// reads a topic written at a steady rate; one member joins, later one
// leaves, and what the run measures is how the group's consumption goes
// through each change, per group protocol.
type RebalanceConfig struct {
	Brokers    []string
	Topic      string
	Partitions int           // partitions of the topic (default 12)
	Members    int           // members before the join (default 3)
	Rate       int           // records per second written (default 2000)
	Hold       time.Duration // how long each change is watched (default 15s)
	Protocols  []string      // eager, cooperative, consumer
}

// rebalanceProtocols are the group protocols a run can compare.
var rebalanceProtocols = map[string]struct {
	label string
	opts  []kgo.Opt
}{
	// The classic protocol with an eager assignor: every member gives up
	// everything, the group rebalances, everyone starts again.
	"eager": {"classic protocol, eager (range) assignor", []kgo.Opt{kgo.Balancers(kgo.RangeBalancer())}},
	// The classic protocol with franz-go's default cooperative-sticky
	// assignor (KIP-429): only the partitions that move stop.
	"cooperative": {"classic protocol, cooperative-sticky assignor", []kgo.Opt{kgo.Balancers(kgo.CooperativeStickyBalancer())}},
	// KIP-848's consumer protocol: the broker assigns.
	"consumer": {"consumer protocol (KIP-848), uniform server assignor", []kgo.Opt{kgo.ServerSideBalancer()}},
}

// RebalanceResult is one change of one run.
type RebalanceResult struct {
	Protocol string `json:"protocol"`
	Label    string `json:"label"`
	Event    string `json:"event"` // "join" or "leave"
	// SettleMs is how long after the change the group read from every
	// partition again with the new members: for a join, the new member's
	// first record; for a leave, the first record read from each of the
	// leaving member's partitions by another member.
	SettleMs float64 `json:"settle_ms"`
	// Latency is produce to consume of the records read in the Hold after
	// the change, the first time each is read: a record written while its
	// partition changes hands (or, eagerly, while the whole group stops)
	// waits.
	Latency *LatencySummary `json:"latency"`
	// ReadAgain is how many records were read a second time in that Hold:
	// a partition's new owner starts from its last committed offset.
	ReadAgain int `json:"read_again"`
	// Steady is the same over the Hold before the change.
	Steady *LatencySummary `json:"steady"`
	// StayedGapMs is the longest time after the change in which a
	// partition that stayed with its member had nothing read: how long the
	// change stopped the partitions it did not move.
	StayedGapMs float64 `json:"stayed_gap_ms"`
	Error       string  `json:"error,omitempty"`
}

func runRebalance(ctx context.Context, args []string, log hclog.Logger) error {
	cfg := RebalanceConfig{Partitions: 12, Members: 3, Rate: 2000, Hold: 15 * time.Second}
	fs := flag.NewFlagSet("rebalance", flag.ContinueOnError)
	brokers := fs.String("brokers", "127.0.0.1:9092", "bootstrap brokers, comma separated")
	fs.StringVar(&cfg.Topic, "topic", "bench-rebalance", "topic (created with --partitions if missing)")
	fs.IntVar(&cfg.Partitions, "partitions", cfg.Partitions, "partitions of the topic")
	fs.IntVar(&cfg.Members, "members", cfg.Members, "group members before one joins")
	fs.IntVar(&cfg.Rate, "rate", cfg.Rate, "records per second written throughout")
	fs.DurationVar(&cfg.Hold, "hold", cfg.Hold, "how long each change is watched (and the steady state before it)")
	protocols := fs.String("protocols", "eager,cooperative,consumer", "group protocols to compare: eager, cooperative, consumer")
	out := fs.String("out", "", "also write the results as JSON to this file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg.Brokers = splitBrokers(*brokers)
	for _, p := range strings.Split(*protocols, ",") {
		if _, ok := rebalanceProtocols[p]; !ok {
			return fmt.Errorf("%w: unknown protocol %q (eager, cooperative, consumer)", errUsage, p)
		}
		cfg.Protocols = append(cfg.Protocols, p)
	}
	if cfg.Partitions < 1 || cfg.Members < 1 || cfg.Rate < 1 || cfg.Hold <= 0 {
		return fmt.Errorf("%w: --partitions, --members, --rate and --hold must be positive", errUsage)
	}
	var results []RebalanceResult
	for _, p := range cfg.Protocols {
		rs, err := rebalanceRun(ctx, cfg, p, log)
		if err != nil {
			return err
		}
		results = append(results, rs...)
	}
	printRebalance(os.Stdout, cfg, results)
	if *out != "" {
		b, err := json.MarshalIndent(results, "", "  ")
		if err != nil {
			return err
		}
		return os.WriteFile(*out, append(b, '\n'), 0o644)
	}
	return nil
}

// groupWatch follows what the members of one group read.
type groupWatch struct {
	mu      sync.Mutex
	owner   map[int32]string    // partition -> member holding it (assignment callbacks)
	last    map[int32]time.Time // partition -> when a record of it was last read
	firstBy map[string]time.Time
	next    map[int32]int64 // partition -> offset after the highest read
	reads   []read
}

type read struct {
	at        time.Time
	latency   time.Duration
	partition int32
	member    string
	again     bool // read before (a new owner starting from an older committed offset)
}

func (w *groupWatch) record(member string, r *kgo.Record, now time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.last[r.Partition] = now
	if _, ok := w.firstBy[member]; !ok {
		w.firstBy[member] = now
	}
	again := r.Offset < w.next[r.Partition]
	w.next[r.Partition] = max(w.next[r.Partition], r.Offset+1)
	w.reads = append(w.reads, read{at: now, latency: now.Sub(r.Timestamp), partition: r.Partition, member: member, again: again})
}

// latencies summarises the first reads in [from, to), and counts the
// records read again there.
func (w *groupWatch) latencies(from, to time.Time) (*LatencySummary, int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	h, again := &Histogram{}, 0
	for _, r := range w.reads {
		switch {
		case r.at.Before(from) || !r.at.Before(to):
		case r.again:
			again++
		default:
			h.Record(r.latency)
		}
	}
	return h.Summary(), again
}

func (w *groupWatch) held() map[string][]int32 {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := map[string][]int32{}
	for p, m := range w.owner {
		out[m] = append(out[m], p)
	}
	return out
}

// rebalanceRun measures one protocol: a join, then a leave.
func rebalanceRun(ctx context.Context, cfg RebalanceConfig, protocol string, log hclog.Logger) ([]RebalanceResult, error) {
	admin, err := kgo.NewClient(kgo.SeedBrokers(cfg.Brokers...), kgo.WithLogger(kgoLogger{log.Named("kgo")}))
	if err != nil {
		return nil, err
	}
	defer admin.Close()
	topic := fmt.Sprintf("%s-%s-%d", cfg.Topic, protocol, time.Now().UnixNano())
	if err := ensureTopic(ctx, admin, topic, int32(cfg.Partitions), -1, log); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	// The writer: cfg.Rate records a second, round robin over the partitions.
	prod, err := kgo.NewClient(kgo.SeedBrokers(cfg.Brokers...), kgo.DefaultProduceTopic(topic),
		kgo.RecordPartitioner(kgo.RoundRobinPartitioner()), kgo.ProducerLinger(0),
		kgo.WithLogger(kgoLogger{log.Named("kgo")}))
	if err != nil {
		return nil, err
	}
	defer func() { cancel(); prod.Close() }() // the writer stops before its client closes
	go func() {
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		start, sent := time.Now(), 0
		for ctx.Err() == nil {
			<-tick.C
			due := int(time.Since(start).Seconds() * float64(cfg.Rate))
			for ; sent < due; sent++ {
				prod.Produce(ctx, &kgo.Record{Value: make([]byte, 100), Timestamp: time.Now()}, nil)
			}
		}
	}()

	w := &groupWatch{owner: map[int32]string{}, last: map[int32]time.Time{}, firstBy: map[string]time.Time{}, next: map[int32]int64{}}
	group := "bench-rebalance-" + topic
	members := map[string]*kgo.Client{}
	start := func(name string) error {
		opts := append([]kgo.Opt{kgo.SeedBrokers(cfg.Brokers...), kgo.ClientID(name),
			kgo.ConsumerGroup(group), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtEnd()),
			kgo.FetchMaxWait(100 * time.Millisecond), kgo.WithLogger(kgoLogger{log.Named("kgo")}),
			kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, m map[string][]int32) {
				w.mu.Lock()
				for _, p := range m[topic] {
					w.owner[p] = name
				}
				w.mu.Unlock()
			}),
			kgo.OnPartitionsRevoked(func(ctx context.Context, cl *kgo.Client, m map[string][]int32) {
				// What franz-go's default revoke callback does with
				// auto-commit on: commit what was read, and wait.
				if err := cl.CommitUncommittedOffsets(ctx); err != nil {
					log.Warn("commit on revoke", "member", name, "error", err)
				}
				w.mu.Lock()
				for _, p := range m[topic] {
					if w.owner[p] == name {
						delete(w.owner, p)
					}
				}
				w.mu.Unlock()
			}),
		}, rebalanceProtocols[protocol].opts...)
		cl, err := kgo.NewClient(opts...)
		if err != nil {
			return err
		}
		members[name] = cl
		go func() {
			for {
				fs := cl.PollFetches(ctx)
				if fs.IsClientClosed() || ctx.Err() != nil {
					return
				}
				now := time.Now()
				fs.EachRecord(func(r *kgo.Record) { w.record(name, r, now) })
			}
		}()
		return nil
	}
	for i := 0; i < cfg.Members; i++ {
		if err := start(fmt.Sprintf("m%d", i)); err != nil {
			return nil, err
		}
	}
	defer func() {
		for _, cl := range members {
			cl.Close()
		}
	}()
	// Steady: every partition held and read for a while.
	if err := waitFor(ctx, 90*time.Second, func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		fresh := 0
		for _, t := range w.last {
			if time.Since(t) < time.Second {
				fresh++
			}
		}
		return len(w.owner) == cfg.Partitions && fresh == cfg.Partitions
	}); err != nil {
		return nil, fmt.Errorf("bench: rebalance %s: the group never read every partition: %w", protocol, err)
	}
	sleepCtx(ctx, cfg.Hold)

	measure := func(event string, change func() (settled func() (time.Time, bool), moved map[int32]bool)) RebalanceResult {
		res := RebalanceResult{Protocol: protocol, Label: rebalanceProtocols[protocol].label, Event: event}
		before := w.held()
		t0 := time.Now()
		res.Steady, _ = w.latencies(t0.Add(-cfg.Hold), t0)
		settled, moved := change()
		var at time.Time
		err := waitFor(ctx, 2*time.Minute, func() bool {
			var ok bool
			at, ok = settled()
			return ok
		})
		if err != nil {
			res.Error = "did not settle within 2 minutes"
			return res
		}
		res.SettleMs = float64(at.Sub(t0).Microseconds()) / 1000
		sleepCtx(ctx, max(cfg.Hold-time.Since(t0), 0))
		res.Latency, res.ReadAgain = w.latencies(t0, t0.Add(cfg.Hold))
		// Partitions that stayed with their member: did they stop?
		w.mu.Lock()
		defer w.mu.Unlock()
		for m, ps := range before {
			for _, p := range ps {
				if !moved[p] && w.owner[p] == m {
					gap := longestGap(w.reads, p, t0, t0.Add(cfg.Hold))
					res.StayedGapMs = max(res.StayedGapMs, float64(gap.Microseconds())/1000)
				}
			}
		}
		return res
	}

	// A member joins.
	join := measure("join", func() (func() (time.Time, bool), map[int32]bool) {
		if err := start("new"); err != nil {
			log.Error("starting the new member", "error", err)
		}
		return func() (time.Time, bool) {
			w.mu.Lock()
			defer w.mu.Unlock()
			t, ok := w.firstBy["new"]
			return t, ok
		}, nil
	})
	// A member leaves (closes cleanly): its partitions go to the others.
	// First a quiet Hold, so that the steady state before it is steady.
	sleepCtx(ctx, cfg.Hold)
	leaving := ""
	for m, ps := range w.held() {
		if m != "new" && len(ps) > 0 && (leaving == "" || m < leaving) {
			leaving = m
		}
	}
	leave := measure("leave", func() (func() (time.Time, bool), map[int32]bool) {
		gone := w.held()[leaving]
		moved := map[int32]bool{}
		for _, p := range gone {
			moved[p] = true
		}
		t0 := time.Now()
		members[leaving].Close()
		delete(members, leaving)
		return func() (time.Time, bool) {
			w.mu.Lock()
			defer w.mu.Unlock()
			first := map[int32]time.Time{} // partition -> first read by another member after t0
			for _, r := range w.reads {
				if moved[r.partition] && r.member != leaving && r.at.After(t0) {
					if _, ok := first[r.partition]; !ok {
						first[r.partition] = r.at
					}
				}
			}
			if len(gone) == 0 || len(first) < len(gone) {
				return time.Time{}, false
			}
			var last time.Time
			for _, t := range first {
				last = maxTime(last, t)
			}
			return last, true
		}, moved
	})
	return []RebalanceResult{join, leave}, nil
}

// longestGap is the longest time in [from, to) in which nothing of
// partition p was read.
func longestGap(reads []read, p int32, from, to time.Time) time.Duration {
	prev, gap := from, time.Duration(0)
	for _, r := range reads {
		if r.partition != p || r.at.Before(from) || !r.at.Before(to) {
			continue
		}
		gap = max(gap, r.at.Sub(prev))
		prev = r.at
	}
	return max(gap, to.Sub(prev))
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

func waitFor(ctx context.Context, timeout time.Duration, ok func() bool) error {
	deadline := time.Now().Add(timeout)
	for !ok() {
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %v", timeout)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

func printRebalance(out io.Writer, cfg RebalanceConfig, rs []RebalanceResult) {
	fmt.Fprintf(out, "Consumer group changes: %d partitions, %d members (+1 joins, then 1 leaves), %d records/s, %s watched per change\n\n",
		cfg.Partitions, cfg.Members, cfg.Rate, cfg.Hold)
	fmt.Fprintf(out, "%-55s %-6s %10s %26s %26s %11s %15s\n", "protocol", "change", "settle ms", "latency before p50/p99/max", "latency after p50/p99/max", "read again", "stayed: gap ms")
	ms := func(s *LatencySummary) string {
		if s == nil {
			return "-"
		}
		return fmt.Sprintf("%.0f / %.0f / %.0f", s.P50Ms, s.P99Ms, s.MaxMs)
	}
	for _, r := range rs {
		settle := fmt.Sprintf("%.0f", r.SettleMs)
		if r.Error != "" {
			settle = r.Error
		}
		fmt.Fprintf(out, "%-55s %-6s %10s %26s %26s %11d %15.0f\n", r.Label, r.Event, settle, ms(r.Steady), ms(r.Latency), r.ReadAgain, r.StayedGapMs)
	}
}

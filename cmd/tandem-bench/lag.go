package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// LagConfig is one follower-lag measurement: produce to the leader at a
// fixed rate with acks=1 while reading the same partition from a follower's
// own Kafka port. For every record, lag = (time the follower first served
// it) - (time the leader acknowledged it). The leader acknowledges an acks=1
// record once it is durable in its WAL (committed on the leader); a node
// serves a record only below its high watermark, so the follower serves it
// once it has applied it and learnt that it is committed. The figure is
// therefore "leader commit to follower apply", plus one Fetch long-poll
// wake-up, as seen by a consumer reading from the follower.
type LagConfig struct {
	Produce  ProduceConfig // Brokers = the leader; Acks 1; Partitions 1
	Follower string        // host:port of the follower's Kafka listener
	MaxWait  time.Duration // Fetch long-poll bound on the follower (default 500ms)
	Drain    time.Duration // after producing, how long the follower may take to serve the last record (default 30s)
	// StatusCmd, if set, is a shell command printing the leader sidecar's
	// status as JSON (`tandemctl --sidecar ADDR status --json`). It is run
	// every StatusInterval during the measured window and the follower's
	// own lagSeconds gauge is summarised next to the measured lag: the
	// replication's view, without the high watermark and Fetch steps.
	StatusCmd      string
	StatusNode     int32         // node id of the follower in the status (default 2)
	StatusInterval time.Duration // default 200ms
	// ApplyLagURL, if set, is the leader sidecar's /metrics URL: its
	// histogram of the follower's apply lag (leader durable to follower
	// applied, as PostgreSQL's replay_lag; sidecar/applylag.go) is read at
	// the start of the measured window and after the follower served the
	// last record, and the difference is summarised (Result.ApplyLag).
	ApplyLagURL string
}

// sidecarStatus is the part of `tandemctl status --json` that lag and
// settle read. (protojson writes 64-bit integers as strings and leaves out
// zero values.)
type sidecarStatus struct {
	LastLSN  int64 `json:"lastLsn,string"`
	Replicas []struct {
		NodeID     int32   `json:"nodeId"`
		Connected  bool    `json:"connected"`
		AppliedLSN int64   `json:"appliedLsn,string"`
		LagEntries int64   `json:"lagEntries,string"`
		LagSeconds float64 `json:"lagSeconds"`
	} `json:"replicas"`
}

// caughtUp reports whether every replica in a status JSON has applied the
// leader's last entry, and a short description of the furthest behind.
func caughtUp(b []byte) (bool, string, error) {
	var st sidecarStatus
	if err := json.Unmarshal(b, &st); err != nil {
		return false, "", fmt.Errorf("bench: sidecar status: %w", err)
	}
	if len(st.Replicas) == 0 {
		return false, "", errors.New("bench: sidecar status lists no replica")
	}
	for _, r := range st.Replicas {
		if !r.Connected || r.LagEntries > 0 || r.AppliedLSN < st.LastLSN {
			return false, fmt.Sprintf("node %d applied %d of %d (connected %v)", r.NodeID, r.AppliedLSN, st.LastLSN, r.Connected), nil
		}
	}
	return true, "", nil
}

// runSettle implements `tandem-bench settle`: wait until every follower has
// caught up with the leader, so that one measurement does not start behind
// the backlog of the previous one.
func runSettle(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("settle", flag.ContinueOnError)
	cmd := fs.String("status-cmd", "", "shell command printing the leader sidecar's status JSON (tandemctl ... status --json); required")
	timeout := fs.Duration("timeout", 3*time.Minute, "give up after this long")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *cmd == "" {
		return fmt.Errorf("%w: settle needs --status-cmd", errUsage)
	}
	start := time.Now()
	deadline := start.Add(*timeout)
	last := "no status yet"
	for {
		out, err := exec.CommandContext(ctx, "sh", "-c", *cmd).Output()
		if err == nil {
			var ok bool
			ok, last, err = caughtUp(out)
			if ok {
				fmt.Fprintf(os.Stderr, "followers caught up after %.1fs\n", time.Since(start).Seconds())
				return nil
			}
		}
		if err != nil {
			last = err.Error()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("bench: followers not caught up after %s: %s", *timeout, last)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond): // poll the status again
		}
	}
}

// parseFollowerLag returns the lagSeconds the status reports for node.
func parseFollowerLag(b []byte, node int32) (time.Duration, error) {
	var st sidecarStatus
	if err := json.Unmarshal(b, &st); err != nil {
		return 0, fmt.Errorf("bench: sidecar status: %w", err)
	}
	for _, r := range st.Replicas {
		if r.NodeID == node {
			return time.Duration(r.LagSeconds * float64(time.Second)), nil
		}
	}
	return 0, fmt.Errorf("bench: sidecar status lists no replica %d", node)
}

// sampleStatus runs cmd every interval from `from` until ctx ends and
// records the follower's reported lag.
func sampleStatus(ctx context.Context, cmd string, node int32, interval time.Duration, from time.Time, h *Histogram, log hclog.Logger) {
	t := time.NewTicker(interval)
	defer t.Stop()
	warned := false
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			if now.Before(from) {
				continue
			}
			out, err := exec.CommandContext(ctx, "sh", "-c", cmd).Output()
			if ctx.Err() != nil {
				return
			}
			var lag time.Duration
			if err == nil {
				lag, err = parseFollowerLag(out, node)
			}
			if err != nil {
				if !warned {
					log.Warn("cannot read the follower's lag from the sidecar status", "command", cmd, "error", err)
					warned = true
				}
				continue
			}
			h.Record(lag)
		}
	}
}

// runLag implements `tandem-bench lag`.
func runLag(ctx context.Context, args []string, log hclog.Logger) error {
	cfg := LagConfig{Produce: DefaultProduceConfig(), MaxWait: 500 * time.Millisecond, Drain: 30 * time.Second}
	cfg.Produce.Stamp = true
	fs := flag.NewFlagSet("lag", flag.ContinueOnError)
	leader := fs.String("leader", "127.0.0.1:9092", "the leader's Kafka address (writes go here)")
	fs.StringVar(&cfg.Follower, "follower", "127.0.0.1:9093", "a follower's Kafka address (reads come from here only)")
	fs.StringVar(&cfg.Produce.Topic, "topic", "bench-lag", "topic (created with one partition if missing)")
	fs.IntVar(&cfg.Produce.RecordBytes, "record-bytes", cfg.Produce.RecordBytes, "value bytes per record")
	fs.Float64Var(&cfg.Produce.Rate, "rate", 0, "records/s to offer (0 = use --rate-from)")
	rateFrom := fs.String("rate-from", "", "result JSON of a full-speed produce run; the rate is its records/s times --rate-fraction")
	fraction := fs.Float64("rate-fraction", 0.5, "fraction of --rate-from's records/s to offer")
	fs.DurationVar(&cfg.Produce.Duration, "duration", cfg.Produce.Duration, "measured window")
	fs.DurationVar(&cfg.Produce.Warmup, "warmup", cfg.Produce.Warmup, "unmeasured load before the window")
	fs.DurationVar(&cfg.Produce.Linger, "linger", cfg.Produce.Linger, "producer linger (franz-go's own default is 10ms; lag is counted from the leader's ack, so it does not include the linger)")
	fs.DurationVar(&cfg.MaxWait, "max-wait", cfg.MaxWait, "Fetch long-poll bound on the follower")
	fs.DurationVar(&cfg.Drain, "drain", cfg.Drain, "how long the follower may take to serve the last record after producing stops")
	fs.IntVar(&cfg.Produce.WatchPID, "watch-pid", 0, "sample this process's RSS during the run")
	fs.StringVar(&cfg.StatusCmd, "status-cmd", "", "shell command printing the leader sidecar's status JSON (tandemctl ... status --json), sampled during the run")
	statusNode := fs.Int("status-node", 2, "the follower's node id in that status")
	fs.DurationVar(&cfg.StatusInterval, "status-interval", 200*time.Millisecond, "how often --status-cmd runs")
	fs.StringVar(&cfg.ApplyLagURL, "apply-lag-url", "", "the leader sidecar's /metrics URL (tandem-sidecar --metrics-listen): also report the apply lag it measured for --status-node")
	name := fs.String("name", "lag", "result name (report row)")
	label := fs.String("label", "", "result label")
	jsonOut := fs.Bool("json", false, "print the result as JSON instead of text")
	out := fs.String("out", "", "also write the JSON result to this file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg.Produce.Brokers = splitBrokers(*leader)
	cfg.Produce.Acks = 1
	cfg.Produce.Partitions = 1
	cfg.StatusNode = int32(*statusNode)
	if cfg.Produce.Rate == 0 && *rateFrom != "" {
		b, err := os.ReadFile(*rateFrom)
		if err != nil {
			return fmt.Errorf("bench: --rate-from: %w", err)
		}
		var ref Result
		if err := json.Unmarshal(b, &ref); err != nil {
			return fmt.Errorf("bench: --rate-from %s: %w", *rateFrom, err)
		}
		if ref.RecordsPerSec <= 0 {
			return fmt.Errorf("bench: --rate-from %s: that run acknowledged no records, so there is no rate to take half of", *rateFrom)
		}
		cfg.Produce.Rate = ref.RecordsPerSec * *fraction
		if *label == "" {
			*label = fmt.Sprintf("follower lag at %.0f%% of %s (%.0f records/s)", *fraction*100, ref.Name, cfg.Produce.Rate)
		}
	}
	if cfg.Produce.Rate <= 0 {
		return fmt.Errorf("%w: lag needs --rate or --rate-from (a fixed offered load)", errUsage)
	}
	if err := cfg.Produce.Validate(); err != nil {
		return err
	}
	r, err := measureLag(ctx, cfg, log)
	if err != nil {
		return err
	}
	r.Name = *name
	r.Label = *label
	if r.Label == "" {
		r.Label = fmt.Sprintf("follower apply lag at %.0f records/s", cfg.Produce.Rate)
	}
	return emit(r, *jsonOut, *out)
}

// seenSpan is a batch of offsets the follower served at one instant.
type seenSpan struct {
	first, last int64
	at          time.Time
}

// ackTimes holds the leader's acknowledgement time of each measured
// record, by offset. The offsets of one partition written by one producer
// are dense, so a slice from the first one does instead of a map: a map of
// millions of time.Time values (each with a pointer) cost this client about
// a fifth of its CPU at 180,000 records/s in hashing and in the collector's
// scans of it, CPU that the servers on the same cores then lacked.
type ackTimes struct {
	base    time.Time // each time is kept as nanoseconds after base, plus 1
	first   int64     // the offset of at[0]
	at      []int64   // 0: not acknowledged in the window, or already seen
	pending int       // non-zero entries of at
}

func newAckTimes(first int64) *ackTimes {
	return &ackTimes{base: time.Now(), first: first}
}

// set records that offset was acknowledged at t. Offsets below first
// (written before the measurement began) are not measured.
func (a *ackTimes) set(offset int64, t time.Time) {
	i := offset - a.first
	if i < 0 {
		return
	}
	if i >= int64(len(a.at)) {
		a.at = append(a.at, make([]int64, i+1-int64(len(a.at)))...)
	}
	if a.at[i] == 0 {
		a.pending++
	}
	a.at[i] = int64(t.Sub(a.base)) + 1
}

// take returns offset's acknowledgement time and forgets it, so that only
// the first Fetch answer holding a record counts.
func (a *ackTimes) take(offset int64) (time.Time, bool) {
	i := offset - a.first
	if i < 0 || i >= int64(len(a.at)) || a.at[i] == 0 {
		return time.Time{}, false
	}
	t := a.base.Add(time.Duration(a.at[i] - 1))
	a.at[i] = 0
	a.pending--
	return t, true
}

func measureLag(ctx context.Context, cfg LagConfig, log hclog.Logger) (*Result, error) {
	pc := cfg.Produce
	cl, err := kgo.NewClient(pc.clientOpts(log)...)
	if err != nil {
		return nil, fmt.Errorf("bench: kafka client: %w", err)
	}
	defer cl.Close()
	if err := ensureTopic(ctx, cl, pc.Topic, 1, int16(pc.ReplicationFactor), log); err != nil {
		return nil, err
	}
	from, err := partitionEnd(ctx, cl, pc.Topic, 0)
	if err != nil {
		return nil, err
	}
	fr, err := newFollowerReader(cfg.Follower, pc.Topic, 0, from, cfg.MaxWait, log)
	if err != nil {
		return nil, err
	}
	defer fr.Close()

	var (
		mu       sync.Mutex
		acks     = newAckTimes(from) // leader acknowledgement by offset, measured records only
		spans    []seenSpan
		maxAcked int64 = -1
	)
	measureFrom := time.Now().Add(pc.Warmup)
	onAck := func(sent time.Time, r *kgo.Record) {
		now := time.Now()
		mu.Lock()
		if !sent.Before(measureFrom) {
			acks.set(r.Offset, now)
		}
		if r.Offset > maxAcked {
			maxAcked = r.Offset
		}
		mu.Unlock()
	}

	// Reader: until told the last acknowledged offset and past it, or the drain
	// deadline passes.
	readCtx, stopRead := context.WithCancel(ctx)
	defer stopRead()
	lastWanted := make(chan int64, 1)
	readDone := make(chan error, 1)
	go func() {
		want := int64(-1)
		var behindErr error
		for {
			select {
			case w := <-lastWanted:
				want = w
			default:
			}
			if want >= 0 && fr.offset > want {
				readDone <- nil
				return
			}
			got, err := fr.fetch(readCtx)
			now := time.Now()
			if readCtx.Err() != nil {
				readDone <- behindErr
				return
			}
			if err != nil {
				if !errors.Is(err, errFollowerBehind) {
					readDone <- err
					return
				}
				behindErr = err
				select { // brief pause before asking again (follower not ready)
				case <-readCtx.Done():
				case <-time.After(10 * time.Millisecond):
				}
				continue
			}
			behindErr = nil
			if len(got) > 0 {
				mu.Lock()
				for _, s := range got {
					spans = append(spans, seenSpan{first: s.first, last: s.last, at: now})
				}
				mu.Unlock()
			}
		}
	}()

	var statusHist Histogram
	statusCtx, stopStatus := context.WithCancel(ctx)
	statusDone := make(chan struct{})
	go func() {
		defer close(statusDone)
		if cfg.StatusCmd != "" {
			interval := cfg.StatusInterval
			if interval <= 0 {
				interval = 200 * time.Millisecond
			}
			sampleStatus(statusCtx, cfg.StatusCmd, cfg.StatusNode, interval, measureFrom, &statusHist, log)
		}
	}()
	applyBefore := make(chan lagBuckets, 1)
	if cfg.ApplyLagURL != "" {
		go func() {
			select { // the window starts after the warm-up
			case <-time.After(time.Until(measureFrom)):
			case <-ctx.Done():
			}
			b, err := scrapeApplyLag(ctx, cfg.ApplyLagURL, cfg.StatusNode)
			if err != nil {
				log.Warn("reading the apply lag failed", "error", err)
			}
			applyBefore <- b
		}()
	}
	pr, err := produceLoad(ctx, pc, []*kgo.Client{cl}, log, onAck)
	stopStatus()
	<-statusDone
	if err != nil {
		return nil, err
	}
	mu.Lock()
	lastWanted <- maxAcked
	mu.Unlock()
	var readErr error
	select {
	case readErr = <-readDone:
	case <-time.After(cfg.Drain):
		stopRead()
		readErr = <-readDone
		if readErr == nil {
			readErr = fmt.Errorf("follower did not serve offset %d within %s", maxAcked, cfg.Drain)
		}
	}

	var applyLag *LatencySummary
	if cfg.ApplyLagURL != "" {
		before := <-applyBefore
		// Every record the follower served was committed, so its ack
		// reached the leader sidecar before this scrape.
		after, err := scrapeApplyLag(ctx, cfg.ApplyLagURL, cfg.StatusNode)
		if err != nil {
			log.Warn("reading the apply lag failed", "error", err)
		} else {
			applyLag = applyLagBetween(before, after)
		}
	}

	mu.Lock()
	defer mu.Unlock()
	var h Histogram
	seen := 0
	for _, s := range spans {
		for o := s.first; o <= s.last; o++ {
			if at, ok := acks.take(o); ok {
				h.Record(s.at.Sub(at)) // negative (seen before the ack callback ran) counts as 0
				seen++
			}
		}
	}
	r := &Result{
		Kind:          "lag",
		DurationSec:   pr.DurationSec,
		Records:       int64(seen),
		Bytes:         pr.Bytes,
		MBps:          pr.MBps,
		RecordsPerSec: pr.RecordsPerSec,
		Latency:       h.Summary(),
		Acks:          pr.Acks,
		RecordBytes:   pc.RecordBytes,
		Partitions:    1,
		Producers:     1,
		TargetRate:    pc.Rate,
		Errors:        pr.Errors + int64(acks.pending),
		FirstError:    pr.FirstError,
		RSS:           pr.RSS,
		Note: fmt.Sprintf("leader ack (acks=1) to first Fetch answer from follower %s containing the record; produced at %.0f records/s (producer linger %s), MB/s and records/s columns are that offered load",
			cfg.Follower, pc.Rate, pc.Linger),
	}
	if acks.pending > 0 {
		r.Note += fmt.Sprintf("; %d acknowledged records never seen on the follower", acks.pending)
	}
	if applyLag != nil {
		r.ApplyLag = applyLag
		r.Note += fmt.Sprintf("; apply lag (leader durable to follower %d applied, the leader sidecar's histogram, %d acks): p50 %.1f ms, p99 %.1f ms",
			cfg.StatusNode, applyLag.Count, applyLag.P50Ms, applyLag.P99Ms)
	}
	if sl := statusHist.Summary(); sl != nil {
		r.SidecarLag = sl
		r.Note += fmt.Sprintf("; the leader sidecar's lagSeconds for node %d, sampled %d times: p50 %.1f ms, p99 %.1f ms, max %.1f ms",
			cfg.StatusNode, sl.Count, sl.P50Ms, sl.P99Ms, sl.MaxMs)
	}
	if readErr != nil {
		if r.FirstError == "" {
			r.FirstError = readErr.Error()
		}
		log.Warn("follower reader ended with an error", "follower", cfg.Follower, "error", readErr)
	}
	return r, nil
}

// partitionEnd is the leader's log end offset of one partition.
func partitionEnd(ctx context.Context, cl *kgo.Client, topic string, partition int32) (int64, error) {
	lctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	ends, err := kadm.NewClient(cl).ListEndOffsets(lctx, topic)
	if err != nil {
		return 0, fmt.Errorf("bench: end offset of %s[%d]: %w", topic, partition, err)
	}
	o, ok := ends.Lookup(topic, partition)
	if !ok {
		return 0, fmt.Errorf("bench: end offset of %s[%d]: partition not listed", topic, partition)
	}
	if o.Err != nil {
		return 0, fmt.Errorf("bench: end offset of %s[%d]: %w", topic, partition, o.Err)
	}
	return o.Offset, nil
}

// CatchupConfig is one catch-up measurement: stop a follower, produce a
// backlog to the leader, start the follower again and time until it serves
// the last record of the backlog.
type CatchupConfig struct {
	Produce  ProduceConfig // Brokers = the leader; Records = the backlog (default 1,000,000)
	Follower string        // the follower's Kafka address
	StopCmd  string        // shell command that stops the follower (e.g. "scripts/cluster.sh stop 3")
	StartCmd string        // shell command that starts it again on its old data
	Timeout  time.Duration // give up waiting for catch-up after this long (default 10m)
}

// runCatchup implements `tandem-bench catchup`.
func runCatchup(ctx context.Context, args []string, log hclog.Logger) error {
	cfg := CatchupConfig{Produce: DefaultProduceConfig(), Timeout: 10 * time.Minute}
	cfg.Produce.Records = 1_000_000
	cfg.Produce.Warmup = 0
	fs := flag.NewFlagSet("catchup", flag.ContinueOnError)
	leader := fs.String("leader", "127.0.0.1:9092", "the leader's Kafka address")
	fs.StringVar(&cfg.Follower, "follower", "127.0.0.1:9094", "the follower's Kafka address")
	fs.StringVar(&cfg.Produce.Topic, "topic", "bench-catchup", "topic (created with one partition if missing)")
	fs.IntVar(&cfg.Produce.RecordBytes, "record-bytes", cfg.Produce.RecordBytes, "value bytes per record")
	fs.Int64Var(&cfg.Produce.Records, "records", cfg.Produce.Records, "records produced while the follower is down")
	fs.StringVar(&cfg.StopCmd, "stop-cmd", "", "shell command that stops the follower (required)")
	fs.StringVar(&cfg.StartCmd, "start-cmd", "", "shell command that starts the follower again (required)")
	fs.DurationVar(&cfg.Timeout, "timeout", cfg.Timeout, "give up waiting for catch-up after this long")
	name := fs.String("name", "catchup", "result name (report row)")
	jsonOut := fs.Bool("json", false, "print the result as JSON instead of text")
	out := fs.String("out", "", "also write the JSON result to this file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg.Produce.Brokers = splitBrokers(*leader)
	cfg.Produce.Acks = 1
	cfg.Produce.Partitions = 1
	if cfg.StopCmd == "" || cfg.StartCmd == "" {
		return fmt.Errorf("%w: catchup needs --stop-cmd and --start-cmd", errUsage)
	}
	if err := cfg.Produce.Validate(); err != nil {
		return err
	}
	r, err := measureCatchup(ctx, cfg, log)
	if err != nil {
		return err
	}
	r.Name = *name
	return emit(r, *jsonOut, *out)
}

func shell(ctx context.Context, cmdline string) error {
	cmd := exec.CommandContext(ctx, "sh", "-c", cmdline)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("bench: %q: %w", cmdline, err)
	}
	return nil
}

func measureCatchup(ctx context.Context, cfg CatchupConfig, log hclog.Logger) (*Result, error) {
	pc := cfg.Produce
	pc.Progress = 10 * time.Second
	cl, err := kgo.NewClient(pc.clientOpts(log)...)
	if err != nil {
		return nil, fmt.Errorf("bench: kafka client: %w", err)
	}
	defer cl.Close()
	if err := ensureTopic(ctx, cl, pc.Topic, 1, int16(pc.ReplicationFactor), log); err != nil {
		return nil, err
	}
	if err := shell(ctx, cfg.StopCmd); err != nil {
		return nil, err
	}
	fmt.Fprintf(os.Stderr, "follower stopped; producing %d records to the leader\n", pc.Records)
	// The backlog ends at the highest offset the leader acknowledged. (The
	// leader's ListOffsets would answer with its high watermark, which
	// waits for the stopped follower until it leaves the ISR.)
	var maxAcked atomic.Int64
	maxAcked.Store(-1)
	pr, err := produceLoad(ctx, pc, []*kgo.Client{cl}, log, func(_ time.Time, r *kgo.Record) {
		for {
			old := maxAcked.Load()
			if r.Offset <= old || maxAcked.CompareAndSwap(old, r.Offset) {
				return
			}
		}
	})
	if err != nil {
		return nil, err
	}
	end := maxAcked.Load() + 1
	if end == 0 {
		return nil, fmt.Errorf("bench: catchup: nothing was acknowledged (first error: %s)", pr.FirstError)
	}
	fmt.Fprintf(os.Stderr, "backlog of %d records (%.0f MB) written; starting the follower\n", pr.Records, float64(pr.Bytes)/MB)

	start := time.Now()
	if err := shell(ctx, cfg.StartCmd); err != nil {
		return nil, err
	}
	started := time.Now()
	fr, err := newFollowerReader(cfg.Follower, pc.Topic, 0, end-1, time.Second, log)
	if err != nil {
		return nil, err
	}
	defer fr.Close()
	wctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	for fr.offset < end {
		_, err := fr.fetch(wctx)
		if wctx.Err() != nil {
			return nil, fmt.Errorf("bench: catchup: follower %s did not serve offset %d within %s (last error: %v)", cfg.Follower, end-1, cfg.Timeout, err)
		}
		if err != nil {
			if !errors.Is(err, errFollowerBehind) {
				return nil, err
			}
			select {
			case <-wctx.Done():
			case <-time.After(20 * time.Millisecond): // follower not serving yet: ask again shortly
			}
		}
	}
	el := time.Since(start)
	return &Result{
		Kind:          "catchup",
		Label:         fmt.Sprintf("follower catch-up of %d records", pr.Records),
		DurationSec:   el.Seconds(),
		Records:       pr.Records,
		Bytes:         pr.Bytes,
		MBps:          float64(pr.Bytes) / MB / el.Seconds(),
		RecordsPerSec: float64(pr.Records) / el.Seconds(),
		RecordBytes:   pc.RecordBytes,
		Errors:        pr.Errors,
		FirstError:    pr.FirstError,
		Note: fmt.Sprintf("time from the start command until the follower served the last backlog record (%.2fs); the start command itself took %.2fs (%.1f MB/s counted from its end); backlog produced at %.1f MB/s",
			el.Seconds(), started.Sub(start).Seconds(), float64(pr.Bytes)/MB/time.Since(started).Seconds(), pr.MBps),
	}, nil
}

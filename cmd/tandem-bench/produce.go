package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"flag"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/hashicorp/go-hclog"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/tandem-io/tandem/internal/certs"
)

// ProduceConfig is one produce load.
type ProduceConfig struct {
	Brokers     []string
	Topic       string
	TLSCA       string // connect with TLS, trusting these CA certificates (empty: plaintext)
	SASLUser    string // log in with SCRAM-SHA-512 as this user (empty: no SASL)
	SASLPass    string
	tlsPool     *x509.CertPool // loaded from TLSCA
	RecordBytes int            // value size of every record (default 1024); keys are empty
	Acks        int            // 1 (leader wrote it), -1 (all in-sync replicas), 0 (fire and forget)
	Duration    time.Duration  // measured window (default 20s)
	Records     int64          // if > 0: send exactly this many records (after the warm-up) and ignore Duration
	Warmup      time.Duration  // load before the window, not counted (default 1s): connections, metadata, first fsyncs
	Rate        float64        // records/s over all producers; 0 = as fast as the broker takes them
	Partitions  int            // partitions when the topic is created (default 1)
	Producers   int            // independent kgo clients, each with its own connection (default 1)
	// Linger is kgo's ProducerLinger (default 0: a batch leaves as soon as
	// a request slot is free, so latency at low rates is the broker's, not
	// the client's wait; at full speed batches still fill up while requests
	// are in flight).
	Linger time.Duration
	// MaxBuffered caps records buffered in each client (default 10000).
	// Produce blocks when it is reached; latency at full speed includes
	// the time a record waits in this buffer, as any real producer's does.
	MaxBuffered int
	// Inflight is produce requests in flight per broker when idempotency is
	// off (default 5; kgo's idempotent producer always uses 5).
	Inflight int
	// Sync waits for each record's acknowledgement before sending the next
	// (one record outstanding per producer), the way JetStream's
	// synchronous publish works: the lowest load that still measures
	// continuously, so latency has no queueing of the client's own making.
	Sync              bool
	Idempotent        bool // kgo's idempotent producer; only possible with acks=-1 (default: on for acks=-1)
	ReplicationFactor int  // asked when creating the topic (default -1: broker default)
	WatchPID          int  // sample this process's RSS while producing (0 = none)
	WatchInterval     time.Duration
	Progress          time.Duration // print progress to stderr this often (0 = never)
	// Stamp puts the send time (unix ns, big endian) in the first 8 bytes of
	// each value, for `lag`. Off for plain produce: one shared value buffer
	// keeps the load generator's own allocation out of the measurement.
	Stamp bool
}

// DefaultProduceConfig returns the defaults documented on ProduceConfig.
func DefaultProduceConfig() ProduceConfig {
	return ProduceConfig{
		RecordBytes: 1024, Acks: 1, Duration: 20 * time.Second, Warmup: time.Second,
		Partitions: 1, Producers: 1, MaxBuffered: 10000, Inflight: 5,
		ReplicationFactor: -1, WatchInterval: 2 * time.Second, Progress: 5 * time.Second,
	}
}

// Validate reports the first unusable setting.
func (c ProduceConfig) Validate() error {
	switch {
	case len(c.Brokers) == 0:
		return fmt.Errorf("%w: --brokers is required", errUsage)
	case c.Topic == "":
		return fmt.Errorf("%w: --topic is required", errUsage)
	case c.RecordBytes < 0:
		return fmt.Errorf("%w: --record-bytes must be >= 0", errUsage)
	case c.Acks != 0 && c.Acks != 1 && c.Acks != -1:
		return fmt.Errorf("%w: --acks must be 0, 1 or -1", errUsage)
	case c.Idempotent && c.Acks != -1:
		return fmt.Errorf("%w: an idempotent producer needs --acks -1", errUsage)
	case (c.Duration <= 0 && c.Records <= 0) || c.Warmup < 0 || c.Records < 0:
		return fmt.Errorf("%w: --duration or --records must be > 0, and --warmup >= 0", errUsage)
	case c.Rate < 0:
		return fmt.Errorf("%w: --rate must be >= 0", errUsage)
	case c.Partitions < 1 || c.Producers < 1:
		return fmt.Errorf("%w: --partitions and --producers must be >= 1", errUsage)
	case c.Stamp && c.RecordBytes < 8:
		return fmt.Errorf("%w: stamped records need --record-bytes >= 8", errUsage)
	}
	return nil
}

func (c ProduceConfig) clientOpts(log hclog.Logger) []kgo.Opt {
	opts := []kgo.Opt{
		kgo.SeedBrokers(c.Brokers...),
		kgo.DefaultProduceTopic(c.Topic),
		kgo.ProducerLinger(c.Linger),
		kgo.MaxBufferedRecords(c.MaxBuffered),
		kgo.ProducerBatchCompression(kgo.NoCompression()),
		kgo.WithLogger(kgoLogger{log.Named("kgo")}),
	}
	switch c.Acks {
	case -1:
		opts = append(opts, kgo.RequiredAcks(kgo.AllISRAcks()))
	case 1:
		opts = append(opts, kgo.RequiredAcks(kgo.LeaderAck()))
	case 0:
		opts = append(opts, kgo.RequiredAcks(kgo.NoAck()))
	}
	if !c.Idempotent {
		opts = append(opts, kgo.DisableIdempotentWrite(), kgo.MaxProduceRequestsInflightPerBroker(c.Inflight))
	}
	if c.TLSCA != "" {
		opts = append(opts, kgo.DialTLSConfig(&tls.Config{RootCAs: c.tlsPool, MinVersion: tls.VersionTLS12}))
	}
	if c.SASLUser != "" {
		opts = append(opts, kgo.SASL(scram.Auth{User: c.SASLUser, Pass: c.SASLPass}.AsSha512Mechanism()))
	}
	return opts
}

// loadStats collects what one client's produce callbacks see. Every client
// has its own (no lock or cache line shared between the clients' callback
// goroutines: on two cores the load client would otherwise spend its time
// there instead of producing); produceLoad adds them up at the end.
type loadStats struct {
	measureFrom time.Time
	hist        Histogram
	records     atomic.Int64
	bytes       atomic.Int64
	lastAck     atomic.Int64 // unix ns of the latest measured acknowledgement
	errors      atomic.Int64
	allAcked    atomic.Int64 // every acknowledged record, warm-up included (progress lines)
	allBytes    atomic.Int64

	errMu    sync.Mutex
	firstErr error
}

// ack records one produce result. sent is the record's send time (with its
// monotonic reading); the clock is read once here, through time.Since.
func (s *loadStats) ack(sent time.Time, r *kgo.Record, err error) {
	if err != nil {
		s.errors.Add(1)
		s.errMu.Lock()
		if s.firstErr == nil {
			s.firstErr = err
		}
		s.errMu.Unlock()
		return
	}
	d := time.Since(sent)
	n := int64(len(r.Value) + len(r.Key))
	s.allAcked.Add(1)
	s.allBytes.Add(n)
	if sent.Before(s.measureFrom) {
		return
	}
	s.hist.Record(d)
	s.records.Add(1)
	s.bytes.Add(n)
	now := sent.UnixNano() + int64(d)
	for {
		old := s.lastAck.Load()
		if now <= old || s.lastAck.CompareAndSwap(old, now) {
			break
		}
	}
}

// pendingRecord is a record in flight and the time it was sent.
type pendingRecord struct {
	rec  kgo.Record // first field: pendingOf turns the promise's *kgo.Record back into its pendingRecord
	sent time.Time
}

// pendingOf returns the pendingRecord whose rec r is. Only records that
// produceLoad sent (always &p.rec) reach its promises.
func pendingOf(r *kgo.Record) *pendingRecord {
	return (*pendingRecord)(unsafe.Pointer(r))
}

// loadTotals adds up the clients' stats.
type loadTotals struct {
	records, bytes, errors, allAcked, allBytes, lastAck int64
	hist                                                Histogram
	firstErr                                            error
}

func sumStats(stats []*loadStats, withHist bool) *loadTotals {
	t := &loadTotals{}
	for _, s := range stats {
		t.records += s.records.Load()
		t.bytes += s.bytes.Load()
		t.errors += s.errors.Load()
		t.allAcked += s.allAcked.Load()
		t.allBytes += s.allBytes.Load()
		t.lastAck = max(t.lastAck, s.lastAck.Load())
		if withHist {
			t.hist.Merge(&s.hist)
		}
		s.errMu.Lock()
		if t.firstErr == nil {
			t.firstErr = s.firstErr
		}
		s.errMu.Unlock()
	}
	return t
}

// produceLoad runs cfg against already-open clients: warm-up, then the
// measured window, then a flush so every measured record is acknowledged
// (or failed). onAck, if set, is called for each acknowledged record with
// its send time (used by `lag`).
//
// The load loop is kept cheap, because on two cores the client competes
// with the broker it measures: one clock read per record sent (it is also
// the record's timestamp, so franz-go does not read the clock again) and
// one per acknowledgement, one promise function per client instead of a
// closure per record, and records reused once acknowledged.
func produceLoad(ctx context.Context, cfg ProduceConfig, clients []*kgo.Client, log hclog.Logger, onAck func(sent time.Time, r *kgo.Record)) (*Result, error) {
	shared := make([]byte, cfg.RecordBytes)
	if _, err := rand.Read(shared); err != nil { // incompressible, like real payloads
		return nil, fmt.Errorf("bench: random data: %w", err)
	}
	start := time.Now()
	measureFrom := start.Add(cfg.Warmup)
	stats := make([]*loadStats, len(clients))
	for i := range stats {
		stats[i] = &loadStats{measureFrom: measureFrom}
	}
	end := measureFrom.Add(cfg.Duration)
	if cfg.Records > 0 {
		end = measureFrom.Add(100 * 365 * 24 * time.Hour) // until the count is reached
	}
	var measuredSent atomic.Int64 // records sent inside the window, for --records

	var watcher *RSSWatcher
	if cfg.WatchPID > 0 {
		w, err := StartRSSWatcher(cfg.WatchPID, cfg.WatchInterval, nil)
		if err != nil {
			return nil, err
		}
		watcher = w
	}

	loadCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	progressDone := make(chan struct{})
	go func() {
		defer close(progressDone)
		if cfg.Progress <= 0 {
			<-loadCtx.Done()
			return
		}
		t := time.NewTicker(cfg.Progress)
		defer t.Stop()
		var lastB int64
		lastT := start
		for {
			select {
			case <-loadCtx.Done():
				return
			case now := <-t.C:
				tot := sumStats(stats, false)
				line := fmt.Sprintf("t=%4.0fs  %7.1f MB/s  acked %d  errors %d",
					now.Sub(start).Seconds(), float64(tot.allBytes-lastB)/MB/now.Sub(lastT).Seconds(), tot.allAcked, tot.errors)
				if cfg.WatchPID > 0 {
					if rss, _, err := readRSS(cfg.WatchPID); err == nil {
						line += fmt.Sprintf("  broker RSS %.1f MiB", mib(rss))
					}
				}
				fmt.Fprintln(os.Stderr, line)
				lastB, lastT = tot.allBytes, now
			}
		}
	}()

	var wg sync.WaitGroup
	perRate := cfg.Rate / float64(len(clients))
	for i, cl := range clients {
		wg.Add(1)
		go func(st *loadStats, cl *kgo.Client) {
			defer wg.Done()
			var interval time.Duration
			if perRate > 0 {
				interval = time.Duration(float64(time.Second) / perRate)
			}
			// Acknowledged records go back to the pool (kgo is done with
			// a record once its promise has run). A stamped record's
			// value is its own, so it is reused with it.
			pool := sync.Pool{New: func() any {
				p := &pendingRecord{rec: kgo.Record{Value: shared}}
				if cfg.Stamp {
					p.rec.Value = make([]byte, cfg.RecordBytes)
					copy(p.rec.Value[8:], shared[8:])
				}
				return p
			}}
			promise := func(r *kgo.Record, err error) {
				p := pendingOf(r)
				if err == nil && onAck != nil {
					onAck(p.sent, r)
				}
				st.ack(p.sent, r, err)
				pool.Put(p)
			}
			next := time.Now()
			for {
				now := time.Now()
				if !now.Before(end) || loadCtx.Err() != nil {
					return
				}
				if interval > 0 {
					if d := next.Sub(now); d > 0 {
						time.Sleep(d) // pacing the offered load, not waiting for a condition
						now = time.Now()
					} else if -d > time.Second {
						next = now // fell far behind: do not burst to catch up
					}
					next = next.Add(interval)
				}
				// now is the send time: a record counts as measured when
				// it is sent at or after measureFrom.
				if cfg.Records > 0 && !now.Before(measureFrom) && measuredSent.Add(1) > cfg.Records {
					return
				}
				p := pool.Get().(*pendingRecord)
				topic, value := p.rec.Topic, p.rec.Value
				// The send time is kept with full precision next to the
				// record (kgo cuts Timestamp to milliseconds); as the
				// record's timestamp it also spares kgo a clock read.
				p.rec, p.sent = kgo.Record{Topic: topic, Value: value, Timestamp: now}, now
				rec := &p.rec
				if cfg.Stamp {
					binary.BigEndian.PutUint64(rec.Value, uint64(now.UnixNano()))
				}
				if !cfg.Sync {
					cl.Produce(loadCtx, rec, promise)
					continue
				}
				acked := make(chan struct{})
				cl.Produce(loadCtx, rec, func(r *kgo.Record, err error) {
					promise(r, err)
					close(acked)
				})
				<-acked // the callback runs even when loadCtx ends
			}
		}(stats[i], cl)
	}
	wg.Wait()
	sendEnd := time.Now()
	flushCtx, fcancel := context.WithTimeout(ctx, 60*time.Second)
	for _, cl := range clients {
		if err := cl.Flush(flushCtx); err != nil {
			log.Warn("flush did not finish; unacknowledged records are not counted", "error", err)
		}
	}
	fcancel()
	cancel()
	<-progressDone

	tot := sumStats(stats, true)
	r := &Result{
		Kind:        "produce",
		Acks:        &cfg.Acks,
		RecordBytes: cfg.RecordBytes,
		Partitions:  cfg.Partitions,
		Producers:   cfg.Producers,
		TargetRate:  cfg.Rate,
		Records:     tot.records,
		Bytes:       tot.bytes,
		Latency:     tot.hist.Summary(),
		Errors:      tot.errors,
	}
	if tot.firstErr != nil {
		r.FirstError = tot.firstErr.Error()
	}
	// The window runs from the start of measurement to the last measured
	// acknowledgement (or the end of sending if nothing was acknowledged).
	last := sendEnd
	if tot.lastAck > 0 {
		last = time.Unix(0, tot.lastAck)
	}
	if win := last.Sub(measureFrom); win > 0 {
		r.DurationSec = win.Seconds()
		r.MBps = float64(r.Bytes) / MB / win.Seconds()
		r.RecordsPerSec = float64(r.Records) / win.Seconds()
	}
	if watcher != nil {
		sum, werr := watcher.Stop()
		r.RSS = sum
		if werr != nil {
			log.Warn("stopped watching the broker's RSS early", "pid", cfg.WatchPID, "error", werr)
		}
	}
	return r, nil
}

// runProduce implements `tandem-bench produce`.
func runProduce(ctx context.Context, args []string, log hclog.Logger) error {
	cfg := DefaultProduceConfig()
	fs := flag.NewFlagSet("produce", flag.ContinueOnError)
	brokers := fs.String("brokers", "127.0.0.1:9092", "bootstrap brokers, comma separated")
	fs.StringVar(&cfg.Topic, "topic", "bench", "topic (created if missing)")
	fs.IntVar(&cfg.RecordBytes, "record-bytes", cfg.RecordBytes, "value bytes per record")
	fs.IntVar(&cfg.Acks, "acks", cfg.Acks, "required acks: 1, -1 (all) or 0")
	fs.DurationVar(&cfg.Duration, "duration", cfg.Duration, "measured window")
	fs.Int64Var(&cfg.Records, "records", 0, "send exactly this many records after the warm-up (overrides --duration)")
	fs.DurationVar(&cfg.Warmup, "warmup", cfg.Warmup, "unmeasured load before the window")
	fs.Float64Var(&cfg.Rate, "rate", 0, "records/s over all producers (0 = as fast as possible)")
	fs.IntVar(&cfg.Partitions, "partitions", cfg.Partitions, "partitions when creating the topic")
	fs.IntVar(&cfg.Producers, "producers", cfg.Producers, "independent producer clients")
	fs.DurationVar(&cfg.Linger, "linger", cfg.Linger, "producer linger")
	fs.IntVar(&cfg.MaxBuffered, "max-buffered", cfg.MaxBuffered, "records buffered per client before Produce blocks")
	fs.BoolVar(&cfg.Sync, "sync", false, "wait for each record's acknowledgement before sending the next (like JetStream's sync publish)")
	fs.IntVar(&cfg.Inflight, "inflight", cfg.Inflight, "produce requests in flight per broker (non-idempotent only)")
	idem := fs.String("idempotent", "auto", "idempotent producer: auto (on for acks=-1), true, false")
	fs.IntVar(&cfg.ReplicationFactor, "replication-factor", cfg.ReplicationFactor, "replication factor when creating the topic (-1 = broker default)")
	fs.StringVar(&cfg.TLSCA, "tls-ca", "", "connect with TLS, trusting this PEM CA file (a broker with --tls-cert)")
	fs.StringVar(&cfg.SASLUser, "sasl-user", "", "log in with SASL SCRAM-SHA-512 as this user (a broker with --sasl-users)")
	fs.StringVar(&cfg.SASLPass, "sasl-password", "", "password of --sasl-user")
	fs.IntVar(&cfg.WatchPID, "watch-pid", 0, "sample this process's RSS (VmRSS/VmHWM) during the run")
	fs.DurationVar(&cfg.WatchInterval, "watch-interval", cfg.WatchInterval, "RSS sampling interval")
	fs.DurationVar(&cfg.Progress, "progress", cfg.Progress, "progress line to stderr this often (0 = off)")
	name := fs.String("name", "", "result name (report row)")
	label := fs.String("label", "", "result label")
	jsonOut := fs.Bool("json", false, "print the result as JSON instead of text")
	out := fs.String("out", "", "also write the JSON result to this file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg.Brokers = splitBrokers(*brokers)
	switch *idem {
	case "auto":
		cfg.Idempotent = cfg.Acks == -1
	case "true":
		cfg.Idempotent = true
	case "false":
		cfg.Idempotent = false
	default:
		return fmt.Errorf("%w: --idempotent must be auto, true or false", errUsage)
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	if cfg.TLSCA != "" {
		pool, err := certs.LoadPool(cfg.TLSCA)
		if err != nil {
			return fmt.Errorf("%w: --tls-ca: %v", errUsage, err)
		}
		cfg.tlsPool = pool
	}
	r, err := produce(ctx, cfg, log)
	if err != nil {
		return err
	}
	r.Name = *name
	if r.Name == "" {
		r.Name = fmt.Sprintf("produce-acks%d", cfg.Acks)
	}
	r.Label = *label
	if r.Label == "" {
		r.Label = fmt.Sprintf("produce acks=%d", cfg.Acks)
	}
	return emit(r, *jsonOut, *out)
}

// produce opens the clients, makes sure the topic exists and runs the load.
func produce(ctx context.Context, cfg ProduceConfig, log hclog.Logger) (*Result, error) {
	clients := make([]*kgo.Client, 0, cfg.Producers)
	defer func() {
		for _, cl := range clients {
			cl.Close()
		}
	}()
	for i := 0; i < cfg.Producers; i++ {
		cl, err := kgo.NewClient(cfg.clientOpts(log)...)
		if err != nil {
			return nil, fmt.Errorf("bench: kafka client: %w", err)
		}
		clients = append(clients, cl)
	}
	if err := ensureTopic(ctx, clients[0], cfg.Topic, int32(cfg.Partitions), int16(cfg.ReplicationFactor), log); err != nil {
		return nil, err
	}
	return produceLoad(ctx, cfg, clients, log, nil)
}

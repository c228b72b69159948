package main

import (
	"context"
	"crypto/rand"
	"flag"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TxnConfig is one transactional produce load: each producer (its own
// transactional id) runs transactions of PerTxn records one after the
// other, committing each; what it measures is committed records per second
// and the time from a transaction's first record to its commit's answer.
type TxnConfig struct {
	Brokers     []string
	Topic       string
	RecordBytes int           // value size (default 1024)
	PerTxn      int           // records per transaction (default 100)
	Producers   int           // transactional producers, each with its own id (default 2)
	Partitions  int           // partitions when the topic is created (default 1)
	Duration    time.Duration // measured window (default 20s)
	Warmup      time.Duration // not counted (default 1s)
}

// DefaultTxnConfig returns the defaults documented on TxnConfig.
func DefaultTxnConfig() TxnConfig {
	return TxnConfig{RecordBytes: 1024, PerTxn: 100, Producers: 2, Partitions: 1, Duration: 20 * time.Second, Warmup: time.Second}
}

// Validate reports the first unusable setting.
func (c TxnConfig) Validate() error {
	switch {
	case len(c.Brokers) == 0:
		return fmt.Errorf("%w: --brokers is required", errUsage)
	case c.Topic == "":
		return fmt.Errorf("%w: --topic is required", errUsage)
	case c.RecordBytes < 0 || c.PerTxn < 1 || c.Producers < 1 || c.Partitions < 1:
		return fmt.Errorf("%w: --record-bytes >= 0, --per-txn, --producers and --partitions >= 1", errUsage)
	case c.Duration <= 0 || c.Warmup < 0:
		return fmt.Errorf("%w: --duration must be > 0 and --warmup >= 0", errUsage)
	}
	return nil
}

// runTxn implements `tandem-bench txn`.
func runTxn(ctx context.Context, args []string, log hclog.Logger) error {
	cfg := DefaultTxnConfig()
	fs := flag.NewFlagSet("txn", flag.ContinueOnError)
	brokers := fs.String("brokers", "127.0.0.1:9092", "bootstrap brokers, comma separated")
	fs.StringVar(&cfg.Topic, "topic", "bench-txn", "topic (created with --partitions if missing)")
	fs.IntVar(&cfg.RecordBytes, "record-bytes", cfg.RecordBytes, "value size of every record")
	fs.IntVar(&cfg.PerTxn, "per-txn", cfg.PerTxn, "records per transaction")
	fs.IntVar(&cfg.Producers, "producers", cfg.Producers, "transactional producers, each with its own transactional id")
	fs.IntVar(&cfg.Partitions, "partitions", cfg.Partitions, "partitions when the topic is created")
	fs.DurationVar(&cfg.Duration, "duration", cfg.Duration, "measured window")
	fs.DurationVar(&cfg.Warmup, "warmup", cfg.Warmup, "load before the window, not counted")
	name := fs.String("name", "txn", "result name (report row)")
	label := fs.String("label", "", "result label (default: from the settings)")
	jsonOut := fs.Bool("json", false, "print the result as JSON instead of text")
	out := fs.String("out", "", "also write the JSON result to this file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg.Brokers = splitBrokers(*brokers)
	if err := cfg.Validate(); err != nil {
		return err
	}
	r, err := txnLoad(ctx, cfg, log)
	if err != nil {
		return err
	}
	r.Name, r.Label = *name, *label
	if r.Label == "" {
		r.Label = fmt.Sprintf("transactions of %d records, %d producers", cfg.PerTxn, cfg.Producers)
	}
	return emit(r, *jsonOut, *out)
}

func txnLoad(ctx context.Context, cfg TxnConfig, log hclog.Logger) (*Result, error) {
	admin, err := kgo.NewClient(kgo.SeedBrokers(cfg.Brokers...), kgo.WithLogger(kgoLogger{log.Named("kgo")}))
	if err != nil {
		return nil, err
	}
	err = ensureTopic(ctx, admin, cfg.Topic, int32(cfg.Partitions), -1, log)
	admin.Close()
	if err != nil {
		return nil, err
	}
	value := make([]byte, cfg.RecordBytes)
	if _, err := rand.Read(value); err != nil {
		return nil, err
	}
	run := fmt.Sprintf("%d", time.Now().UnixNano())
	var (
		mu         sync.Mutex
		hist       = &Histogram{}
		records    int64
		txns       int64
		errs       int64
		firstErr   string
		start      = time.Now().Add(cfg.Warmup)
		end        = start.Add(cfg.Duration)
		wg         sync.WaitGroup
		clientErrs = make(chan error, cfg.Producers)
	)
	for i := 0; i < cfg.Producers; i++ {
		cl, err := kgo.NewClient(kgo.SeedBrokers(cfg.Brokers...), kgo.DefaultProduceTopic(cfg.Topic),
			kgo.TransactionalID(fmt.Sprintf("tandem-bench-%s-%d", run, i)), kgo.ProducerLinger(0),
			kgo.ProducerBatchCompression(kgo.NoCompression()), kgo.RecordPartitioner(kgo.RoundRobinPartitioner()),
			kgo.WithLogger(kgoLogger{log.Named("kgo")}))
		if err != nil {
			return nil, err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer cl.Close()
			for ctx.Err() == nil && time.Now().Before(end) {
				t0 := time.Now()
				err := cl.BeginTransaction()
				for j := 0; j < cfg.PerTxn && err == nil; j++ {
					cl.Produce(ctx, &kgo.Record{Value: value}, func(_ *kgo.Record, perr error) {
						if perr != nil {
							mu.Lock()
							errs++
							if firstErr == "" {
								firstErr = perr.Error()
							}
							mu.Unlock()
						}
					})
				}
				if err == nil {
					err = cl.Flush(ctx)
				}
				if err == nil {
					err = cl.EndTransaction(ctx, kgo.TryCommit)
				}
				if err != nil {
					clientErrs <- err
					return
				}
				if t0.After(start) && time.Now().Before(end) {
					d := time.Since(t0)
					hist.Record(d)
					mu.Lock()
					records += int64(cfg.PerTxn)
					txns++
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	close(clientErrs)
	for err := range clientErrs {
		return nil, fmt.Errorf("bench: transactional producer: %w", err)
	}
	secs := cfg.Duration.Seconds()
	r := &Result{
		Kind: "txn", DurationSec: secs, Records: records, Bytes: records * int64(cfg.RecordBytes),
		MBps: float64(records*int64(cfg.RecordBytes)) / MB / secs, RecordsPerSec: float64(records) / secs,
		Latency: hist.Summary(), RecordBytes: cfg.RecordBytes, Partitions: cfg.Partitions, Producers: cfg.Producers,
		Errors: errs, FirstError: firstErr,
		Note: fmt.Sprintf("%d transactions committed (%.0f/s); latency is per transaction, first record to the commit's answer", txns, float64(txns)/secs),
	}
	return r, nil
}

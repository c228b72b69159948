package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/twmb/franz-go/pkg/kgo"
)

// ConsumeConfig is one consume run: read a topic from its start, without a
// consumer group (no coordinator round trips in the measurement).
type ConsumeConfig struct {
	Brokers []string
	Topic   string
	Records int64         // stop after this many records; 0 = what the topic holds when the run starts
	Timeout time.Duration // give up (and report what was read) after this long (default 2m)
	// FetchMaxBytes is the most one Fetch response may carry (default 50 MiB, kgo's default).
	FetchMaxBytes int32
	// PartitionMaxBytes is the most one partition may contribute to a Fetch (default 10 MiB).
	PartitionMaxBytes int32
}

// DefaultConsumeConfig returns the defaults documented on ConsumeConfig.
func DefaultConsumeConfig() ConsumeConfig {
	return ConsumeConfig{Timeout: 2 * time.Minute, FetchMaxBytes: 50 << 20, PartitionMaxBytes: 10 << 20}
}

// Validate reports the first unusable setting.
func (c ConsumeConfig) Validate() error {
	switch {
	case len(c.Brokers) == 0:
		return fmt.Errorf("%w: --brokers is required", errUsage)
	case c.Topic == "":
		return fmt.Errorf("%w: --topic is required", errUsage)
	case c.Records < 0:
		return fmt.Errorf("%w: --records must be >= 0", errUsage)
	case c.Timeout <= 0:
		return fmt.Errorf("%w: --timeout must be > 0", errUsage)
	}
	return nil
}

// runConsume implements `tandem-bench consume`.
func runConsume(ctx context.Context, args []string, log hclog.Logger) error {
	cfg := DefaultConsumeConfig()
	fs := flag.NewFlagSet("consume", flag.ContinueOnError)
	brokers := fs.String("brokers", "127.0.0.1:9092", "bootstrap brokers, comma separated")
	fs.StringVar(&cfg.Topic, "topic", "bench", "topic to read from its start")
	fs.Int64Var(&cfg.Records, "records", 0, "records to read (0 = everything the topic holds now)")
	fs.DurationVar(&cfg.Timeout, "timeout", cfg.Timeout, "give up after this long")
	name := fs.String("name", "consume", "result name (report row)")
	label := fs.String("label", "consume", "result label")
	jsonOut := fs.Bool("json", false, "print the result as JSON instead of text")
	out := fs.String("out", "", "also write the JSON result to this file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg.Brokers = splitBrokers(*brokers)
	if err := cfg.Validate(); err != nil {
		return err
	}
	r, err := consume(ctx, cfg, log)
	if err != nil {
		return err
	}
	r.Name, r.Label = *name, *label
	return emit(r, *jsonOut, *out)
}

func consume(ctx context.Context, cfg ConsumeConfig, log hclog.Logger) (*Result, error) {
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(cfg.Brokers...),
		kgo.ConsumeTopics(cfg.Topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxBytes(cfg.FetchMaxBytes),
		kgo.FetchMaxPartitionBytes(cfg.PartitionMaxBytes),
		kgo.WithLogger(kgoLogger{log.Named("kgo")}),
	)
	if err != nil {
		return nil, fmt.Errorf("bench: kafka client: %w", err)
	}
	defer cl.Close()

	want := cfg.Records
	if want == 0 {
		lctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		want, err = topicRecordCount(lctx, cl, cfg.Topic)
		cancel()
		if err != nil {
			return nil, err
		}
		if want == 0 {
			return nil, fmt.Errorf("bench: topic %q is empty: produce to it first", cfg.Topic)
		}
	}

	rctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	r := &Result{Kind: "consume"}
	start := time.Now()
	var last time.Time
	for r.Records < want {
		fetches := cl.PollFetches(rctx)
		if rctx.Err() != nil {
			if errors.Is(rctx.Err(), context.DeadlineExceeded) {
				r.Note = fmt.Sprintf("timed out after %s with %d of %d records", cfg.Timeout, r.Records, want)
			}
			break
		}
		fetches.EachError(func(t string, p int32, err error) {
			r.Errors++
			if r.FirstError == "" {
				r.FirstError = fmt.Sprintf("%s[%d]: %v", t, p, err)
			}
			log.Warn("fetch error", "topic", t, "partition", p, "error", err)
		})
		fetches.EachRecord(func(rec *kgo.Record) {
			r.Records++
			r.Bytes += int64(len(rec.Value) + len(rec.Key))
		})
		last = time.Now()
	}
	if el := last.Sub(start); el > 0 {
		r.DurationSec = el.Seconds()
		r.MBps = float64(r.Bytes) / MB / el.Seconds()
		r.RecordsPerSec = float64(r.Records) / el.Seconds()
	}
	return r, nil
}

package main

// natsgo: the JetStream side of scripts/bench-compare.sh, driven through
// the official nats.go client (github.com/nats-io/nats.go/jetstream), so
// that the comparison with Tandem uses the client NATS users run.
//
//	tandem-bench natsgo --server nats://127.0.0.1:4222 --mode async|sync \
//	    --replicas 3 --record-bytes 1024 --duration 20s --out FILE
//
// async: PublishAsync with at most --max-pending PubAcks outstanding (the
// client's own window); throughput is PubAcks received per second and
// latency is publish call to PubAck. sync: Publish, one message at a time
// (the lowest load there is); latency is the round trip of each message.
// The stream (--stream, deleted and created again) uses file storage and
// --replicas replicas; a PubAck means the message is stored on a quorum.

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func runNATSGo(ctx context.Context, args []string, log hclog.Logger) error {
	return runPublishBench(ctx, args, log, publishBench{
		command:     "natsgo",
		serverHelp:  "NATS server URLs of the cluster, comma separated",
		modeHelp:    "async (PublishAsync, window of --max-pending) or sync (Publish, one at a time)",
		pendingHelp: "async: PubAcks outstanding at most",
		name:        "natsgo-",
		label:       "JetStream R%d file, nats.go %s publish",
		publish:     natsGoPublish,
	})
}

// pending is one async publish awaiting its PubAck.
type pending struct {
	f    jetstream.PubAckFuture
	sent time.Time
}

func natsGoPublish(ctx context.Context, cfg JetStreamConfig, log hclog.Logger) (*Result, error) {
	nc, err := nats.Connect(cfg.Server, nats.Name("tandem-bench"))
	if err != nil {
		return nil, fmt.Errorf("%w: connect %s: %w", errNATS, cfg.Server, err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(cfg.MaxPending))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errNATS, err)
	}
	subject := "bench." + strings.ToLower(cfg.Stream)
	// A cluster that has just started answers JetStream API calls only once
	// it has elected its meta leader: retry for up to a minute.
	var createErr error
	for deadline := time.Now().Add(time.Minute); ; {
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		if err := js.DeleteStream(sctx, cfg.Stream); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
			log.Debug("deleting the old stream", "stream", cfg.Stream, "error", err)
		}
		_, createErr = js.CreateStream(sctx, jetstream.StreamConfig{
			Name: cfg.Stream, Subjects: []string{subject}, Replicas: cfg.Replicas, Storage: jetstream.FileStorage,
		})
		cancel()
		if createErr == nil || ctx.Err() != nil || time.Now().After(deadline) {
			break
		}
		log.Debug("stream not created yet, retrying", "stream", cfg.Stream, "error", createErr)
		select {
		case <-ctx.Done():
		case <-time.After(500 * time.Millisecond): // the cluster is electing its meta leader
		}
	}
	if createErr != nil {
		return nil, fmt.Errorf("%w: create stream %s (R%d, file): %w", errNATS, cfg.Stream, cfg.Replicas, createErr)
	}
	payload := make([]byte, cfg.RecordBytes)
	_, _ = rand.Read(payload)

	var (
		h        Histogram
		records  atomic.Int64
		errs     atomic.Int64
		lastAck  time.Time
		firstErr string
		mu       sync.Mutex // lastAck, firstErr
	)
	start := time.Now()
	measureFrom := start.Add(cfg.Warmup)
	end := measureFrom.Add(cfg.Duration)
	done := func(sent time.Time, err error) {
		at := time.Now()
		if err != nil {
			errs.Add(1)
			mu.Lock()
			if firstErr == "" {
				firstErr = err.Error()
			}
			mu.Unlock()
			return
		}
		if sent.Before(measureFrom) {
			return
		}
		h.Record(at.Sub(sent))
		records.Add(1)
		mu.Lock()
		lastAck = at
		mu.Unlock()
	}

	if cfg.Mode == "sync" {
		for time.Now().Before(end) && ctx.Err() == nil {
			sent := time.Now()
			pctx, pcancel := context.WithTimeout(ctx, 30*time.Second)
			_, err := js.Publish(pctx, subject, payload)
			pcancel()
			done(sent, err)
		}
	} else {
		// The futures complete in about the order they were published;
		// one goroutine waits for them in that order.
		q := make(chan pending, cfg.MaxPending)
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			for p := range q {
				select {
				case <-p.f.Ok():
					done(p.sent, nil)
				case err := <-p.f.Err():
					done(p.sent, err)
				case <-time.After(30 * time.Second):
					done(p.sent, fmt.Errorf("%w: no PubAck within 30s", errNATS))
				}
			}
		}()
		for time.Now().Before(end) && ctx.Err() == nil {
			sent := time.Now()
			// Blocks while MaxPending PubAcks are outstanding (up to the
			// stall wait, 200 ms by default, then fails: wait longer).
			f, err := js.PublishAsync(subject, payload, jetstream.WithStallWait(30*time.Second))
			if err != nil {
				done(sent, err)
				if errors.Is(err, nats.ErrConnectionClosed) {
					break
				}
				continue
			}
			q <- pending{f: f, sent: sent}
		}
		close(q)
		wg.Wait()
	}

	r := &Result{
		Kind:        "jetstream",
		RecordBytes: cfg.RecordBytes,
		Producers:   1,
		Records:     records.Load(),
		Bytes:       records.Load() * int64(cfg.RecordBytes),
		Latency:     h.Summary(),
		Errors:      errs.Load(),
		FirstError:  firstErr,
		Note: fmt.Sprintf("nats.go %s; stream %s, file storage, %d replicas, %s publish (%d PubAcks outstanding at most); latency = publish to PubAck",
			nats.Version, cfg.Stream, cfg.Replicas, cfg.Mode, map[bool]int{true: 1, false: cfg.MaxPending}[cfg.Mode == "sync"]),
	}
	if !lastAck.IsZero() {
		if win := lastAck.Sub(measureFrom); win > 0 {
			r.DurationSec = win.Seconds()
			r.MBps = float64(r.Bytes) / MB / win.Seconds()
			r.RecordsPerSec = float64(r.Records) / win.Seconds()
		}
	}
	return r, nil
}

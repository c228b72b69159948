package main

// A minimal NATS client, just enough to drive JetStream publishes for the
// comparison that issue 4 asks for: the core text protocol (CONNECT, PING/
// PONG, SUB, PUB, MSG) and JetStream's JSON API over request/reply
// ($JS.API.STREAM.CREATE / DELETE, PubAck replies). It exists so the bench
// needs no new module in go.mod; nats.go would do the same work. A JetStream
// publish is a PUB to a subject bound to a stream with a reply inbox; the
// server answers on that inbox with {"stream":..,"seq":..} once the message
// is stored on a quorum of the stream's replicas (file storage: written to
// the store files of R/2+1 servers).

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
)

var errNATS = errors.New("bench: nats")

// natsConn is one client connection. One goroutine reads; writers share a
// buffered writer under a mutex.
type natsConn struct {
	conn  net.Conn
	wmu   sync.Mutex
	w     *bufio.Writer
	inbox string // "_INBOX.<random>."; replies arrive on inbox + token

	mu      sync.Mutex
	waiters map[string]func(payload []byte, at time.Time)
	readErr error
	done    chan struct{}
}

func dialNATS(ctx context.Context, addr string) (*natsConn, error) {
	addr = strings.TrimPrefix(addr, "nats://")
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%w: dial %s: %w", errNATS, addr, err)
	}
	r := bufio.NewReaderSize(c, 1<<20)
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	line, err := r.ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "INFO ") {
		c.Close()
		return nil, fmt.Errorf("%w: %s did not greet with INFO (%q, %v)", errNATS, addr, line, err)
	}
	var tok [8]byte
	_, _ = rand.Read(tok[:])
	n := &natsConn{
		conn: c, w: bufio.NewWriterSize(c, 1<<20),
		inbox:   "_INBOX." + hex.EncodeToString(tok[:]) + ".",
		waiters: map[string]func([]byte, time.Time){}, done: make(chan struct{}),
	}
	fmt.Fprintf(n.w, "CONNECT {\"verbose\":false,\"pedantic\":false,\"headers\":false,\"protocol\":1,\"name\":\"tandem-bench\"}\r\n")
	fmt.Fprintf(n.w, "SUB %s* 1\r\nPING\r\n", n.inbox)
	if err := n.w.Flush(); err != nil {
		c.Close()
		return nil, fmt.Errorf("%w: connect: %w", errNATS, err)
	}
	for { // wait for the PONG that proves CONNECT and SUB were accepted
		line, err := r.ReadString('\n')
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("%w: connect: %w", errNATS, err)
		}
		if strings.HasPrefix(line, "-ERR") {
			c.Close()
			return nil, fmt.Errorf("%w: connect: %s", errNATS, strings.TrimSpace(line))
		}
		if strings.HasPrefix(line, "PONG") {
			break
		}
	}
	_ = c.SetReadDeadline(time.Time{})
	go n.readLoop(r)
	return n, nil
}

func (n *natsConn) Close() {
	n.conn.Close()
	<-n.done
}

func (n *natsConn) readLoop(r *bufio.Reader) {
	defer close(n.done)
	fail := func(err error) {
		n.mu.Lock()
		n.readErr = err
		n.mu.Unlock()
	}
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			fail(err)
			return
		}
		line = strings.TrimRight(line, "\r\n")
		switch {
		case strings.HasPrefix(line, "MSG "):
			// MSG <subject> <sid> [reply-to] <#bytes>
			f := strings.Fields(line)
			if len(f) < 4 {
				fail(fmt.Errorf("%w: bad MSG line %q", errNATS, line))
				return
			}
			size, err := strconv.Atoi(f[len(f)-1])
			if err != nil || size < 0 {
				fail(fmt.Errorf("%w: bad MSG size in %q", errNATS, line))
				return
			}
			buf := make([]byte, size+2)
			if _, err := readFull(r, buf); err != nil {
				fail(err)
				return
			}
			at := time.Now()
			n.mu.Lock()
			fn := n.waiters[f[1]]
			delete(n.waiters, f[1])
			n.mu.Unlock()
			if fn != nil {
				fn(buf[:size], at)
			}
		case line == "PING":
			n.wmu.Lock()
			n.w.WriteString("PONG\r\n")
			n.w.Flush()
			n.wmu.Unlock()
		case strings.HasPrefix(line, "-ERR"):
			fail(fmt.Errorf("%w: server: %s", errNATS, line))
			return
		}
	}
}

func readFull(r *bufio.Reader, buf []byte) (int, error) {
	got := 0
	for got < len(buf) {
		k, err := r.Read(buf[got:])
		got += k
		if err != nil {
			return got, err
		}
	}
	return got, nil
}

// publish sends payload to subject with a reply inbox and calls fn with the
// reply. flush sends it now; otherwise it waits in the buffer for the next
// flush (async publishing batches writes).
func (n *natsConn) publish(subject string, payload []byte, token string, flush bool, fn func([]byte, time.Time)) error {
	reply := n.inbox + token
	n.mu.Lock()
	if n.readErr != nil {
		err := n.readErr
		n.mu.Unlock()
		return err
	}
	n.waiters[reply] = fn
	n.mu.Unlock()
	n.wmu.Lock()
	defer n.wmu.Unlock()
	fmt.Fprintf(n.w, "PUB %s %s %d\r\n", subject, reply, len(payload))
	n.w.Write(payload)
	n.w.WriteString("\r\n")
	if flush {
		return n.w.Flush()
	}
	return nil
}

func (n *natsConn) flush() error {
	n.wmu.Lock()
	defer n.wmu.Unlock()
	return n.w.Flush()
}

// request publishes and waits for the reply, up to timeout.
func (n *natsConn) request(ctx context.Context, subject string, payload []byte, timeout time.Duration) ([]byte, error) {
	var tok [6]byte
	_, _ = rand.Read(tok[:])
	ch := make(chan []byte, 1)
	token := "r" + hex.EncodeToString(tok[:])
	if err := n.publish(subject, payload, token, true, func(b []byte, _ time.Time) { ch <- b }); err != nil {
		return nil, err
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case b := <-ch:
		return b, nil
	case <-t.C:
		n.mu.Lock()
		delete(n.waiters, n.inbox+token)
		n.mu.Unlock()
		return nil, fmt.Errorf("%w: no reply to %s within %s", errNATS, subject, timeout)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// jsAPIError is the error object of any JetStream API reply.
type jsAPIError struct {
	Code        int    `json:"code"`
	ErrCode     int    `json:"err_code"`
	Description string `json:"description"`
}

// createStream (re)creates a file-storage stream with the given replicas,
// retrying while the JetStream cluster elects its meta leader.
func createStream(ctx context.Context, n *natsConn, stream, subject string, replicas int, log hclog.Logger) error {
	cfg, _ := json.Marshal(map[string]any{
		"name": stream, "subjects": []string{subject}, "storage": "file", "num_replicas": replicas,
		"retention": "limits", "discard": "old",
	})
	deadline := time.Now().Add(60 * time.Second)
	var last error
	for time.Now().Before(deadline) {
		if err := ctx.Err(); err != nil {
			return err
		}
		_, _ = n.request(ctx, "$JS.API.STREAM.DELETE."+stream, nil, 5*time.Second) // fresh stream for every run
		b, err := n.request(ctx, "$JS.API.STREAM.CREATE."+stream, cfg, 5*time.Second)
		if err == nil {
			var resp struct {
				Error *jsAPIError `json:"error"`
			}
			if jerr := json.Unmarshal(b, &resp); jerr != nil {
				err = fmt.Errorf("%w: stream create reply %q: %w", errNATS, b, jerr)
			} else if resp.Error != nil {
				err = fmt.Errorf("%w: stream create: %s (code %d)", errNATS, resp.Error.Description, resp.Error.Code)
			} else {
				log.Info("created JetStream stream", "stream", stream, "replicas", replicas)
				return nil
			}
		}
		last = err
		log.Debug("stream not created yet, retrying", "error", err)
		select {
		case <-ctx.Done():
		case <-time.After(500 * time.Millisecond): // the cluster is electing a meta leader
		}
	}
	return fmt.Errorf("%w: stream %s not created within 60s: %w", errNATS, stream, last)
}

// JetStreamConfig is one JetStream publish run.
type JetStreamConfig struct {
	Server      string
	Stream      string
	Replicas    int
	RecordBytes int
	Duration    time.Duration
	Warmup      time.Duration
	// Mode "async" keeps up to MaxPending publishes awaiting their PubAck
	// (nats.go's PublishAsync with its default window of 4000); "sync"
	// publishes one message and waits for its PubAck before the next.
	Mode       string
	MaxPending int
}

// runJetStream implements `tandem-bench jetstream`.
func runJetStream(ctx context.Context, args []string, log hclog.Logger) error {
	return runPublishBench(ctx, args, log, publishBench{
		command:     "jetstream",
		serverHelp:  "a NATS server of the cluster",
		modeHelp:    "async (window of --max-pending PubAcks) or sync (one at a time)",
		pendingHelp: "async: publishes awaiting a PubAck",
		name:        "jetstream-",
		label:       "JetStream R%d file, %s publish",
		publish:     jetStreamPublish,
	})
}

// publishBench describes one of the two JetStream publishers
// (`tandem-bench jetstream`, our minimal client, and `tandem-bench natsgo`,
// nats.go): they take the same flags and report the same way.
type publishBench struct {
	command                           string // subcommand, for the flag set
	serverHelp, modeHelp, pendingHelp string
	name                              string // default result name, followed by the mode
	label                             string // default label: Sprintf(label, replicas, mode)
	publish                           func(context.Context, JetStreamConfig, hclog.Logger) (*Result, error)
}

func runPublishBench(ctx context.Context, args []string, log hclog.Logger, b publishBench) error {
	cfg := JetStreamConfig{Stream: "BENCH", Replicas: 3, RecordBytes: 1024, Duration: 20 * time.Second,
		Warmup: time.Second, Mode: "async", MaxPending: 4000}
	fs := flag.NewFlagSet(b.command, flag.ContinueOnError)
	fs.StringVar(&cfg.Server, "server", "nats://127.0.0.1:4222", b.serverHelp)
	fs.StringVar(&cfg.Stream, "stream", cfg.Stream, "stream name (deleted and created again)")
	fs.IntVar(&cfg.Replicas, "replicas", cfg.Replicas, "stream replicas")
	fs.IntVar(&cfg.RecordBytes, "record-bytes", cfg.RecordBytes, "message payload bytes")
	fs.DurationVar(&cfg.Duration, "duration", cfg.Duration, "measured window")
	fs.DurationVar(&cfg.Warmup, "warmup", cfg.Warmup, "unmeasured publishing before the window")
	fs.StringVar(&cfg.Mode, "mode", cfg.Mode, b.modeHelp)
	fs.IntVar(&cfg.MaxPending, "max-pending", cfg.MaxPending, b.pendingHelp)
	name := fs.String("name", "", "result name (report row)")
	label := fs.String("label", "", "result label")
	jsonOut := fs.Bool("json", false, "print the result as JSON instead of text")
	out := fs.String("out", "", "also write the JSON result to this file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if cfg.Mode != "async" && cfg.Mode != "sync" {
		return fmt.Errorf("%w: --mode must be async or sync", errUsage)
	}
	if cfg.Duration <= 0 || cfg.MaxPending < 1 || cfg.Replicas < 1 {
		return fmt.Errorf("%w: --duration, --max-pending and --replicas must be positive", errUsage)
	}
	r, err := b.publish(ctx, cfg, log)
	if err != nil {
		return err
	}
	r.Name, r.Label = *name, *label
	if r.Name == "" {
		r.Name = b.name + cfg.Mode
	}
	if r.Label == "" {
		r.Label = fmt.Sprintf(b.label, cfg.Replicas, cfg.Mode)
	}
	return emit(r, *jsonOut, *out)
}

func jetStreamPublish(ctx context.Context, cfg JetStreamConfig, log hclog.Logger) (*Result, error) {
	nc, err := dialNATS(ctx, cfg.Server)
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	subject := "bench." + strings.ToLower(cfg.Stream)
	if err := createStream(ctx, nc, cfg.Stream, subject, cfg.Replicas, log); err != nil {
		return nil, err
	}
	payload := make([]byte, cfg.RecordBytes)
	_, _ = rand.Read(payload)

	var (
		h        Histogram
		records  atomic.Int64
		errs     atomic.Int64
		lastAck  atomic.Int64
		firstErr atomic.Value
	)
	sem := make(chan struct{}, cfg.MaxPending)
	if cfg.Mode == "sync" {
		sem = make(chan struct{}, 1)
	}
	start := time.Now()
	measureFrom := start.Add(cfg.Warmup)
	end := measureFrom.Add(cfg.Duration)

	// Async: flush the write buffer often so publishes do not sit in it.
	flushDone := make(chan struct{})
	stopFlush := make(chan struct{})
	go func() {
		defer close(flushDone)
		t := time.NewTicker(time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stopFlush:
				return
			case <-t.C:
				_ = nc.flush()
			}
		}
	}()

	var seq int64
	var pubErr error
	for time.Now().Before(end) && ctx.Err() == nil {
		select {
		case sem <- struct{}{}:
		default: // window full: wait for a PubAck, but not forever
			t := time.NewTimer(30 * time.Second)
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
			case <-t.C:
				pubErr = fmt.Errorf("%w: no PubAck for 30s (%d pending)", errNATS, len(sem))
			}
			t.Stop()
		}
		if pubErr != nil || ctx.Err() != nil {
			break
		}
		seq++
		sent := time.Now()
		err := nc.publish(subject, payload, strconv.FormatInt(seq, 36), cfg.Mode == "sync", func(b []byte, at time.Time) {
			defer func() { <-sem }()
			var ack struct {
				Seq   uint64      `json:"seq"`
				Error *jsAPIError `json:"error"`
			}
			if err := json.Unmarshal(b, &ack); err != nil || ack.Error != nil || ack.Seq == 0 {
				errs.Add(1)
				if err == nil && ack.Error != nil {
					err = fmt.Errorf("%w: %s", errNATS, ack.Error.Description)
				} else if err == nil {
					err = fmt.Errorf("%w: unexpected PubAck %q", errNATS, b)
				}
				firstErr.CompareAndSwap(nil, err.Error())
				return
			}
			if sent.Before(measureFrom) {
				return
			}
			h.Record(at.Sub(sent))
			records.Add(1)
			for {
				old := lastAck.Load()
				if at.UnixNano() <= old || lastAck.CompareAndSwap(old, at.UnixNano()) {
					break
				}
			}
		})
		if err != nil {
			pubErr = err
			break
		}
	}
	// Wait for the outstanding PubAcks (fill the window back up).
	_ = nc.flush()
	drain := time.After(30 * time.Second)
	for i := 0; i < cap(sem); i++ {
		select {
		case sem <- struct{}{}:
		case <-drain:
			i = cap(sem)
		}
	}
	close(stopFlush)
	<-flushDone

	r := &Result{
		Kind:        "jetstream",
		RecordBytes: cfg.RecordBytes,
		Producers:   1,
		Records:     records.Load(),
		Bytes:       records.Load() * int64(cfg.RecordBytes),
		Latency:     h.Summary(),
		Errors:      errs.Load(),
		Note: fmt.Sprintf("stream %s, file storage, %d replicas, %s publish (%d pending PubAcks at most); latency = publish to PubAck",
			cfg.Stream, cfg.Replicas, cfg.Mode, cap(sem)),
	}
	if v := firstErr.Load(); v != nil {
		r.FirstError = v.(string)
	}
	if pubErr != nil && r.FirstError == "" {
		r.FirstError = pubErr.Error()
	}
	if la := lastAck.Load(); la > 0 {
		if win := time.Unix(0, la).Sub(measureFrom); win > 0 {
			r.DurationSec = win.Seconds()
			r.MBps = float64(r.Bytes) / MB / win.Seconds()
			r.RecordsPerSec = float64(r.Records) / win.Seconds()
		}
	}
	return r, nil
}

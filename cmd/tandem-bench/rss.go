package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// RSSSummary is what a watched process's memory did during a run. Values are
// in KiB, as /proc/PID/status reports them.
type RSSSummary struct {
	PID     int         `json:"pid"`
	PeakKB  int64       `json:"peak_kb"`  // highest VmRSS sampled
	LastKB  int64       `json:"last_kb"`  // VmRSS at the last sample
	HWMKB   int64       `json:"hwm_kb"`   // VmHWM: the kernel's own peak since the process started
	FirstKB int64       `json:"first_kb"` // VmRSS at the first sample
	Samples []RSSSample `json:"samples,omitempty"`
}

// RSSSample is one reading of /proc/PID/status.
type RSSSample struct {
	AtSec float64 `json:"at_sec"` // seconds since sampling started
	RSSKB int64   `json:"rss_kb"`
	HWMKB int64   `json:"hwm_kb"`
}

var errNoRSS = errors.New("bench: VmRSS not found")

// parseProcStatus extracts VmRSS and VmHWM (KiB) from /proc/PID/status text.
func parseProcStatus(r io.Reader) (rss, hwm int64, err error) {
	sc := bufio.NewScanner(r)
	found := false
	for sc.Scan() {
		line := sc.Text()
		key, val, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		var dst *int64
		switch key {
		case "VmRSS":
			dst = &rss
			found = true
		case "VmHWM":
			dst = &hwm
		default:
			continue
		}
		f := strings.Fields(val) // "12345 kB"
		if len(f) == 0 {
			continue
		}
		n, perr := strconv.ParseInt(f[0], 10, 64)
		if perr != nil {
			return 0, 0, fmt.Errorf("bench: parse %s %q: %w", key, val, perr)
		}
		*dst = n
	}
	if err := sc.Err(); err != nil {
		return 0, 0, err
	}
	if !found {
		return 0, 0, errNoRSS
	}
	return rss, hwm, nil
}

func readRSS(pid int) (rss, hwm int64, err error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, fmt.Errorf("bench: watch pid %d: %w", pid, err)
	}
	defer f.Close()
	return parseProcStatus(f)
}

// RSSWatcher samples a process's VmRSS/VmHWM every interval in its own
// goroutine until Stop.
type RSSWatcher struct {
	pid      int
	interval time.Duration
	onSample func(RSSSample) // optional, called from the sampling goroutine

	mu    sync.Mutex
	sum   RSSSummary
	err   error
	stop  context.CancelFunc
	done  chan struct{}
	start time.Time
}

// StartRSSWatcher takes a first sample at once (so a wrong pid fails fast)
// and then samples every interval.
func StartRSSWatcher(pid int, interval time.Duration, onSample func(RSSSample)) (*RSSWatcher, error) {
	if interval <= 0 {
		interval = time.Second
	}
	w := &RSSWatcher{pid: pid, interval: interval, onSample: onSample, done: make(chan struct{}), start: time.Now()}
	w.sum.PID = pid
	if err := w.sample(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	w.stop = cancel
	go w.loop(ctx)
	return w, nil
}

func (w *RSSWatcher) loop(ctx context.Context) {
	defer close(w.done)
	t := time.NewTicker(w.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := w.sample(); err != nil {
				w.mu.Lock()
				w.err = err
				w.mu.Unlock()
				return // the process is gone; keep what we have
			}
		}
	}
}

func (w *RSSWatcher) sample() error {
	rss, hwm, err := readRSS(w.pid)
	if err != nil {
		return err
	}
	s := RSSSample{AtSec: time.Since(w.start).Seconds(), RSSKB: rss, HWMKB: hwm}
	w.mu.Lock()
	if len(w.sum.Samples) == 0 {
		w.sum.FirstKB = rss
	}
	w.sum.Samples = append(w.sum.Samples, s)
	if rss > w.sum.PeakKB {
		w.sum.PeakKB = rss
	}
	w.sum.LastKB = rss
	w.sum.HWMKB = hwm
	w.mu.Unlock()
	if w.onSample != nil {
		w.onSample(s)
	}
	return nil
}

// Stop takes a last sample (if the process still runs), ends sampling and
// returns the summary and the error that ended sampling early, if any.
func (w *RSSWatcher) Stop() (*RSSSummary, error) {
	w.stop()
	<-w.done
	_ = w.sample()
	w.mu.Lock()
	defer w.mu.Unlock()
	s := w.sum
	s.Samples = append([]RSSSample(nil), w.sum.Samples...)
	return &s, w.err
}

// runRSS implements `tandem-bench rss`: print a process's RSS every interval
// for a while, then a summary.
func runRSS(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("rss", flag.ContinueOnError)
	pid := fs.Int("pid", 0, "process to watch (required)")
	interval := fs.Duration("interval", 5*time.Second, "time between samples")
	duration := fs.Duration("duration", time.Minute, "how long to watch")
	name := fs.String("name", "rss", "result name in JSON output")
	jsonOut := fs.Bool("json", false, "print the result as JSON instead of text")
	out := fs.String("out", "", "also write the JSON result to this file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *pid <= 0 {
		return fmt.Errorf("%w: rss needs --pid", errUsage)
	}
	w, err := StartRSSWatcher(*pid, *interval, func(s RSSSample) {
		if !*jsonOut {
			fmt.Printf("t=%6.0fs  VmRSS %8.1f MiB  VmHWM %8.1f MiB\n", s.AtSec, mib(s.RSSKB), mib(s.HWMKB))
		}
	})
	if err != nil {
		return err
	}
	select {
	case <-ctx.Done():
	case <-time.After(*duration):
	case <-w.done:
	}
	sum, werr := w.Stop()
	r := &Result{Name: *name, Kind: "rss", DurationSec: duration.Seconds(), RSS: sum}
	if werr != nil {
		r.Note = werr.Error()
	}
	return emit(r, *jsonOut, *out)
}

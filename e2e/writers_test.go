package e2e

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// writerWatch samples which brokers take writes, by each broker's own
// tandem_broker_takes_writes, and records the windows in which more than
// one did: two leaders at once, which the lease rules exist to prevent.
// A broker that does not answer within the sample's timeout (frozen, or
// not running) counts as not taking writes: it cannot take any then.
type writerWatch struct {
	mu       sync.Mutex
	samples  int      // rounds in which every broker was asked
	overlaps int      // rounds in which two or more answered 1
	windows  []string // each run of such rounds: when, which nodes, how long
	longest  time.Duration
	// sustained lists the windows of two or more rounds in a row: not a
	// moment a sample happened to catch (a frozen pair resuming, its
	// broker's fence timer about to fire), but two brokers taking writes
	// for a while.
	sustained []string
	done      chan struct{}
}

// watchWriters samples the brokers whose /metrics are at addrs (by node
// id) every interval until ctx is done (String waits for that).
func watchWriters(ctx context.Context, t *testing.T, addrs map[int]string, every time.Duration) *writerWatch {
	w := &writerWatch{done: make(chan struct{})}
	cl := &http.Client{Timeout: every}
	go func() {
		defer close(w.done)
		var start time.Time
		var who []int
		rounds := 0
		end := func(now time.Time) {
			if start.IsZero() {
				return
			}
			d := now.Sub(start)
			win := fmt.Sprintf("%s nodes %v in %d rounds, %s", start.UTC().Format("15:04:05.000"), who, rounds, d.Round(time.Millisecond))
			w.mu.Lock()
			w.windows = append(w.windows, win)
			if rounds > 1 {
				w.sustained = append(w.sustained, win)
			}
			w.longest = max(w.longest, d)
			w.mu.Unlock()
			t.Logf("writers: nodes %v took writes at once in %d rounds, for %s (sampled every %s)", who, rounds, d.Round(time.Millisecond), every)
			start, who, rounds = time.Time{}, nil, 0
		}
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				end(time.Now())
				return
			case <-tick.C:
			}
			now := time.Now()
			ids := takingWrites(cl, addrs)
			w.mu.Lock()
			w.samples++
			if len(ids) > 1 {
				w.overlaps++
			}
			w.mu.Unlock()
			switch {
			case len(ids) > 1:
				if start.IsZero() {
					start, who = now, ids
				}
				rounds++
			default:
				end(now)
			}
		}
	}()
	return w
}

// takingWrites asks every broker at once and returns the ids of those
// whose tandem_broker_takes_writes is 1, sorted.
func takingWrites(cl *http.Client, addrs map[int]string) []int {
	var mu sync.Mutex
	var ids []int
	var wg sync.WaitGroup
	for id, addr := range addrs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if v, err := takesWrites(cl, addr); err == nil && v {
				mu.Lock()
				ids = append(ids, id)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	slices.Sort(ids)
	return ids
}

// takesWrites reads tandem_broker_takes_writes from the broker's /metrics
// at addr.
func takesWrites(cl *http.Client, addr string) (bool, error) {
	m, err := scrapeWith(cl, addr)
	if err != nil {
		return false, err
	}
	v, ok := m["tandem_broker_takes_writes"]
	if !ok {
		return false, fmt.Errorf("%s: no tandem_broker_takes_writes sample", addr)
	}
	return v == 1, nil
}

// Sustained returns the windows in which two brokers took writes for two
// sampling rounds or more (once ctx is done).
func (w *writerWatch) Sustained() []string {
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.sustained)
}

// String sums the watch up (once ctx is done).
func (w *writerWatch) String() string {
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	s := fmt.Sprintf("brokers taking writes sampled %d times, two or more at once in %d", w.samples, w.overlaps)
	if len(w.windows) > 0 {
		s += fmt.Sprintf(" (%d windows, longest %s: %s)", len(w.windows), w.longest.Round(time.Millisecond), strings.Join(w.windows, "; "))
	}
	return s
}

package sidecar

import (
	"testing"
	"time"
)

// A sender that sends a batch whenever the throttle lets it sends, over
// any stretch of time, no more than rate × time + burst + one batch, and
// no less than rate × time - one batch: the limit holds and nothing is
// starved.
func TestCatchupThrottleKeepsTheRate(t *testing.T) {
	if newCatchupThrottle(0, 1<<20) != nil {
		t.Fatal("a rate of 0 must mean no throttle")
	}
	for _, tt := range []struct {
		rate  int64
		batch int
	}{
		{1 << 20, 256 << 10}, // batches smaller than a tenth of a second's bytes
		{1 << 20, 4 << 20},   // batches of several seconds' bytes
		{100 << 20, 1 << 20},
	} {
		th := newCatchupThrottle(tt.rate, tt.batch)
		burst := max(float64(tt.batch), float64(tt.rate)/10)
		now := th.last
		start := now
		sent := 0.0
		for now.Sub(start) < 20*time.Second {
			if d := th.wait(now); d > 0 {
				now = now.Add(d)
				continue
			}
			th.charge(now, tt.batch)
			sent += float64(tt.batch)
			elapsed := now.Sub(start).Seconds()
			if limit := float64(tt.rate)*elapsed + burst + float64(tt.batch); sent > limit {
				t.Fatalf("rate %d, batch %d: %.0f bytes sent in %.3fs, more than %.0f", tt.rate, tt.batch, sent, elapsed, limit)
			}
			now = now.Add(time.Millisecond) // the send itself
		}
		if floor := float64(tt.rate)*now.Sub(start).Seconds() - float64(tt.batch); sent < floor {
			t.Fatalf("rate %d, batch %d: only %.0f bytes sent in %s, want at least %.0f", tt.rate, tt.batch, sent, now.Sub(start), floor)
		}
	}
}

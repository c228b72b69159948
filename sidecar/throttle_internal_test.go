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

// A throttled follower is reported as not catching up only for a window in
// which the throttle held it back and it received no more than the leader
// took in; a follower that gains, or one that is slow without the throttle
// holding it back, is not.
func TestCatchupProgressReportsOnlyAFollowerThatGainsNothing(t *testing.T) {
	const window = 6 * time.Second
	start := time.Unix(1_000_000, 0)
	for _, tt := range []struct {
		name           string
		tookPS, sentPS uint64 // bytes per second taken in by the leader, sent to the follower
		held           bool
		behind         bool
	}{
		{"held back, leader writes faster than the limit", 3_000_000, 2_000_000, true, true},
		{"held back, leader writes as fast as the limit", 2_000_000, 2_000_000, true, true},
		{"held back but gaining", 1_000_000, 2_000_000, true, false},
		{"never held back (a slow follower, not the limit)", 3_000_000, 2_000_000, false, false},
	} {
		var p catchupProgress
		now := start
		took, sent := uint64(5_000_000), uint64(0)
		reports := 0
		for step := 0; step <= 20; step++ { // 20 s, one turn of the send loop a second
			tookIn, sentIn, over, behind := p.observe(now, window, took, sent, tt.held && step%3 == 1)
			if over > 0 {
				reports++
				if want := uint64(over.Seconds()) * tt.tookPS; tookIn != want {
					t.Fatalf("%s: window of %s took in %d bytes, want %d", tt.name, over, tookIn, want)
				}
				if want := uint64(over.Seconds()) * tt.sentPS; sentIn != want {
					t.Fatalf("%s: window of %s sent %d bytes, want %d", tt.name, over, sentIn, want)
				}
				if over < window {
					t.Fatalf("%s: a window ended after %s, shorter than %s", tt.name, over, window)
				}
				if behind != tt.behind {
					t.Fatalf("%s: behind = %v at %s, want %v", tt.name, behind, now.Sub(start), tt.behind)
				}
			} else if behind {
				t.Fatalf("%s: behind reported without a whole window", tt.name)
			}
			now = now.Add(time.Second)
			took += tt.tookPS
			sent += tt.sentPS
		}
		if reports != 3 {
			t.Fatalf("%s: %d windows ended in 20 s of %s windows, want 3", tt.name, reports, window)
		}
	}
}

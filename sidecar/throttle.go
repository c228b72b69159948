package sidecar

import (
	"sync"
	"time"
)

// catchupThrottle is the leader's byte budget for followers outside the ISR
// (--catchup-bytes-per-sec, Kafka's leader.replication.throttled.rate): one
// token bucket shared by all of them, so that however many followers catch
// up at once, reading their backlog from the broker's WAL and sending it
// takes at most that many bytes per second of the leader's disk, CPU and
// network. In-sync followers never touch it.
//
// The bucket holds at most burst bytes (a tenth of a second of the rate,
// and at least one batch). A sender may send whenever the bucket is not
// empty, and the batch it sends is then charged in full, which can leave
// the bucket in debt; the next sender waits until the debt is paid. Over
// any stretch of time, what was sent is at most rate × time + burst + one
// batch.
type catchupThrottle struct {
	rate  float64 // bytes per second
	burst float64

	mu    sync.Mutex
	avail float64 // bytes that may be sent now; negative: debt
	last  time.Time
}

// newCatchupThrottle returns nil (no limit) when rate is 0.
func newCatchupThrottle(rate int64, batchBytes int) *catchupThrottle {
	if rate <= 0 {
		return nil
	}
	burst := max(float64(batchBytes), float64(rate)/10)
	return &catchupThrottle{rate: float64(rate), burst: burst, avail: burst, last: time.Now()}
}

func (t *catchupThrottle) refillLocked(now time.Time) {
	if d := now.Sub(t.last); d > 0 {
		t.avail = min(t.burst, t.avail+d.Seconds()*t.rate)
		t.last = now
	}
}

// wait returns how long a sender must wait before it may send (0: now).
func (t *catchupThrottle) wait(now time.Time) time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.refillLocked(now)
	if t.avail > 0 {
		return 0
	}
	// Rounded up, so that the bucket is not empty when the wait ends.
	return time.Duration(-t.avail/t.rate*float64(time.Second)) + time.Millisecond
}

// charge takes n bytes just sent out of the bucket.
func (t *catchupThrottle) charge(now time.Time, n int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.refillLocked(now)
	t.avail -= float64(n)
}

// catchupProgress watches one throttled follower's catch-up for the case
// that never ends: the leader takes in more bytes per second than
// --catchup-bytes-per-sec lets the follower receive, so its backlog grows
// and it never rejoins the ISR (Kafka has the same trap with
// leader.replication.throttled.rate, and says nothing). Over each window in
// which the throttle held the follower back at least once, it compares the
// bytes sent to the follower with the bytes the leader's broker pushed; a
// window in which the follower received no more than the leader took in is
// one in which it gained nothing.
type catchupProgress struct {
	start        time.Time // zero: no window open
	took0, sent0 uint64    // the counters when the window opened
	held         bool      // the throttle held back a batch in this window
}

// observe is called on every turn of the follower's send loop while the
// throttle applies to it, with the leader's pushed bytes (took) and the
// bytes sent to this follower (sent), both cumulative, and whether the
// throttle holds back the next batch now. At the end of each window it
// returns the bytes of both in that window and its length, and behind true
// when the throttle held the follower back and it did not gain on the
// leader.
func (p *catchupProgress) observe(now time.Time, window time.Duration, took, sent uint64, held bool) (tookIn, sentIn uint64, over time.Duration, behind bool) {
	if p.start.IsZero() {
		*p = catchupProgress{start: now, took0: took, sent0: sent, held: held}
		return 0, 0, 0, false
	}
	p.held = p.held || held
	if over = now.Sub(p.start); over < window {
		return 0, 0, 0, false
	}
	tookIn, sentIn = took-p.took0, sent-p.sent0
	behind = p.held && sentIn <= tookIn
	*p = catchupProgress{start: now, took0: took, sent0: sent}
	return tookIn, sentIn, over, behind
}

package main

import (
	"testing"
	"time"
)

// Each acknowledged offset is matched once, to the time it was
// acknowledged; offsets before the measurement, never acknowledged, or
// already seen are not; what is never seen stays counted as pending.
func TestAckTimesMatchEachOffsetOnce(t *testing.T) {
	a := newAckTimes(100)
	t0 := time.Now()
	a.set(99, t0)                          // written before the measurement began
	a.set(105, t0.Add(5*time.Millisecond)) // out of order: the slice grows
	a.set(100, t0)                         // the first measured offset
	a.set(102, t0.Add(2*time.Millisecond))
	a.set(102, t0.Add(3*time.Millisecond)) // acknowledged again: the later time, counted once
	a.set(100_000, t0.Add(time.Second))    // far ahead
	if a.pending != 4 {
		t.Fatalf("pending %d after acks of 100, 102, 105 and 100000, want 4", a.pending)
	}

	for _, c := range []struct {
		offset int64
		want   time.Duration // after t0; -1: no match
	}{
		{99, -1}, {100, 0}, {101, -1}, {102, 3 * time.Millisecond}, {105, 5 * time.Millisecond},
		{100, -1}, // seen already
		{100_001, -1},
	} {
		got, ok := a.take(c.offset)
		if (c.want >= 0) != ok {
			t.Fatalf("take(%d): found %v, want %v", c.offset, ok, c.want >= 0)
		}
		if ok && got.Sub(t0) != c.want {
			t.Fatalf("take(%d) = t0+%v, want t0+%v", c.offset, got.Sub(t0), c.want)
		}
	}
	if a.pending != 1 {
		t.Fatalf("pending %d with only offset 100000 never seen, want 1", a.pending)
	}
}

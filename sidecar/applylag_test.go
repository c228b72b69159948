package sidecar

import (
	"testing"
	"time"
)

func TestDurableTimes(t *testing.T) {
	var d durableTimes
	t0 := time.Unix(1000, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	d.note(11, 20, at(0)) // the leader's broker held 1..10 before
	d.note(21, 25, at(5))
	d.note(26, 26, at(7))
	for _, c := range []struct {
		lsn  uint64
		want time.Time
		ok   bool
	}{
		{10, time.Time{}, false}, // durable before anything was noted
		{11, at(0), true}, {20, at(0), true},
		{21, at(5), true}, {25, at(5), true},
		{26, at(7), true},
		{27, time.Time{}, false}, // not durable yet
	} {
		got, ok := d.since(c.lsn)
		if ok != c.ok || !got.Equal(c.want) {
			t.Errorf("since(%d) = %v, %v; want %v, %v", c.lsn, got, ok, c.want, c.ok)
		}
	}

	// A push that does not follow the last one (the broker re-attached
	// after its log was cut back) forgets the old times.
	d.note(24, 30, at(50))
	if _, ok := d.since(23); ok {
		t.Error("LSN 23 is still measured after a push from 24 replaced the history")
	}
	if got, ok := d.since(24); !ok || !got.Equal(at(50)) {
		t.Errorf("since(24) = %v, %v after the new push", got, ok)
	}

	// The ring keeps the newest durableTimesCap pushes.
	var r durableTimes
	for i := 0; i < durableTimesCap+100; i++ {
		r.note(uint64(i*2+1), uint64(i*2+2), at(i))
	}
	if _, ok := r.since(200); ok {
		t.Error("an LSN of a push that fell out of the ring is still measured")
	}
	if got, ok := r.since(201); !ok || !got.Equal(at(100)) {
		t.Errorf("oldest remembered push: since(201) = %v, %v; want %v", got, ok, at(100))
	}
	last := uint64((durableTimesCap + 100) * 2)
	if got, ok := r.since(last); !ok || !got.Equal(at(durableTimesCap+99)) {
		t.Errorf("newest push: since(%d) = %v, %v", last, got, ok)
	}
}

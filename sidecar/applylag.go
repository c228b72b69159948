package sidecar

import (
	"sort"
	"time"
)

// Apply lag, as PostgreSQL's pg_stat_replication.replay_lag: how long after
// an entry became durable on the leader the follower reported it applied
// (written to its WAL, fsynced under its policy and indexed by its broker).
// The leader sidecar notes when each push of durable entries arrives from
// its broker (durableTimes); every ack that moves a follower's applied LSN
// forward is then measured from the oldest entry it newly covers, the entry
// of that ack that waited longest. Served as the histogram
// tandem_sidecar_follower_apply_lag_seconds{follower}.
//
// It starts when the leader's sidecar receives the entries, just after its
// broker's fsync (one local hop later than the fsync itself), and ends when
// the follower's ack arrives, so it includes the ack's trip back. It does
// not include the commit point's trip to the followers, which a consumer
// reading from a follower also waits for (docs/replication-observability.md).

// durableTimesCap bounds the remembered pushes; an ack for entries older
// than all of them (a follower catching up from far behind) is not measured.
const durableTimesCap = 8192

// durablePoint says that the leader's durable end reached lsn at t.
type durablePoint struct {
	lsn uint64
	t   time.Time
}

// durableTimes is a ring of durablePoints in LSN order. Guarded by leader.mu.
type durableTimes struct {
	pts   []durablePoint // ring storage
	head  int            // index of the oldest point
	n     int
	floor uint64 // entries up to here became durable before the oldest point's push
}

// note records that the push of entries [first, last] arrived at t.
func (d *durableTimes) note(first, last uint64, t time.Time) {
	if d.pts == nil {
		d.pts = make([]durablePoint, durableTimesCap)
	}
	if d.n == 0 || d.at(d.n-1).lsn+1 != first {
		// The first push, or the broker re-attached and pushed from
		// another point: the old times no longer describe these LSNs.
		d.head, d.n, d.floor = 0, 0, first-1
	}
	if d.n == len(d.pts) {
		d.floor = d.at(0).lsn
		d.head = (d.head + 1) % len(d.pts)
		d.n--
	}
	d.pts[(d.head+d.n)%len(d.pts)] = durablePoint{lsn: last, t: t}
	d.n++
}

func (d *durableTimes) at(i int) durablePoint { return d.pts[(d.head+i)%len(d.pts)] }

// since returns when entry lsn arrived durable from the broker. ok is false
// when that push is no longer remembered, or lsn has not arrived.
func (d *durableTimes) since(lsn uint64) (time.Time, bool) {
	if lsn <= d.floor {
		return time.Time{}, false
	}
	i := sort.Search(d.n, func(i int) bool { return d.at(i).lsn >= lsn })
	if i == d.n {
		return time.Time{}, false
	}
	return d.at(i).t, true
}

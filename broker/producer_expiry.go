package broker

// Idle producer state expires (Kafka's producer.id.expiration.ms, KIP-854).
//
// Every idempotent producer that writes to a partition leaves a sequence
// window there (b.producers: its last five batches, for spotting retries),
// and every producer id handed out leaves its epoch in b.pidEpochs, which
// also goes into every state checkpoint. Applications that start a new
// producer per run, per pod or per request (Java clients since Kafka 3.0
// and franz-go are idempotent by default) would otherwise grow both
// without bound: about 300 bytes per producer and partition written, for
// as long as the broker runs.
//
// Each node sweeps on its own, as each Kafka replica does:
//
//   - a sequence window whose newest batch was applied more than
//     ProducerIDExpiration ago goes, unless its producer has a transaction
//     open, on that partition or with the coordinator;
//   - a producer id with no sequence window left and no transactional id
//     holding it goes once the sweeps have seen it so for
//     ProducerIDExpiration (with its last InitProducerId bump).
//
// A producer that comes back afterwards is treated as new, as Kafka does
// since KIP-360: its next batch is taken whatever its sequence, and later
// ones are checked against it; an InitProducerId that presents a forgotten
// id gets a new one. Retries arrive within a client's delivery timeout
// (two minutes by default), far inside the expiration.
//
// The age of a window is judged by the LSN of its newest batch against the
// node's applied LSN at earlier sweeps (lsnMarks), so that the produce path
// reads no clock for it: a window whose newest batch is no later than what
// was applied at a sweep ProducerIDExpiration ago has been idle since.
// After a restart the replayed windows count as written at the first
// sweep's mark, so they expire at the earliest one expiration after it.
//
// A sweep costs what it forgets, not what the node holds: the windows are
// kept in the order of their last batch (a list that each applied batch
// moves its window to the back of), and the producer ids left without a
// window in the order they were left so (pidIdle), so a sweep walks only
// the fronts that are old enough.

import (
	"time"
)

// lsnMark is the node's applied LSN at one sweep.
type lsnMark struct {
	at  time.Time
	lsn uint64
}

// idlePID is a producer id left with no sequence window, and since when.
type idlePID struct {
	pid   int64
	since time.Time
}

// windowList holds the sequence windows in the order of their last batch,
// oldest first (an intrusive doubly linked list through seqWindow).
type windowList struct{ root seqWindow }

func newWindowList() *windowList {
	l := &windowList{}
	l.root.prev, l.root.next = &l.root, &l.root
	return l
}

func (l *windowList) front() *seqWindow {
	if l.root.next == &l.root {
		return nil
	}
	return l.root.next
}

func (l *windowList) remove(w *seqWindow) {
	w.prev.next, w.next.prev = w.next, w.prev
	w.prev, w.next = nil, nil
}

func (l *windowList) pushBack(w *seqWindow) {
	last := l.root.prev
	w.prev, w.next = last, &l.root
	last.next, l.root.prev = w, w
}

func (l *windowList) moveToBack(w *seqWindow) {
	if l.root.prev != w {
		l.remove(w)
		l.pushBack(w)
	}
}

// windowFor returns k's sequence window for a batch of the given epoch
// being applied, made anew for a new producer or epoch, and moves it to the
// back of the list. Caller holds appendMu.
func (b *Broker) windowFor(k producerKey, epoch int16) *seqWindow {
	w := b.producers[k]
	if w == nil {
		w = &seqWindow{key: k}
		b.producers[k] = w
		b.windows.pushBack(w)
		m := b.tpWindows[k.tp]
		if m == nil {
			m = make(map[int64]*seqWindow)
			b.tpWindows[k.tp] = m
		}
		m[k.pid] = w
		if b.pidWindows[k.pid]++; b.pidWindows[k.pid] == 1 {
			delete(b.pidIdleSince, k.pid)
		}
	} else {
		b.windows.moveToBack(w)
	}
	if w.n == 0 || w.epoch != epoch {
		w.epoch, w.n = epoch, 0
	}
	return w
}

// dropWindow forgets k's sequence window. Caller holds appendMu.
func (b *Broker) dropWindow(w *seqWindow, now time.Time) {
	delete(b.producers, w.key)
	b.windows.remove(w)
	if m := b.tpWindows[w.key.tp]; m != nil {
		if delete(m, w.key.pid); len(m) == 0 {
			delete(b.tpWindows, w.key.tp)
		}
	}
	if b.pidWindows[w.key.pid]--; b.pidWindows[w.key.pid] <= 0 {
		delete(b.pidWindows, w.key.pid)
		b.notePIDIdle(w.key.pid, now)
	}
}

// notePIDIdle starts the clock on a producer id that has no sequence
// window (just handed out, or its last window forgotten), unless it has
// one or its clock runs already. Caller holds appendMu.
func (b *Broker) notePIDIdle(pid int64, now time.Time) {
	if b.pidWindows[pid] > 0 {
		return
	}
	if _, ok := b.pidIdleSince[pid]; ok {
		return
	}
	b.pidIdleSince[pid] = now
	b.pidIdle = append(b.pidIdle, idlePID{pid: pid, since: now})
}

// producerJanitor sweeps idle producer state every
// ProducerIDExpirationCheckInterval, on every node.
func (b *Broker) producerJanitor() {
	t := time.NewTicker(b.cfg.ProducerIDExpirationCheckInterval)
	defer t.Stop()
	b.expireProducers(time.Now()) // the first mark
	for {
		select {
		case <-t.C:
			b.expireProducers(time.Now())
		case <-b.ctx.Done():
			return
		}
	}
}

// sweepBatch bounds the windows and ids one hold of the append lock
// forgets, so that a sweep that forgets a great many at once (the first
// one expiration after a restart, say) holds producers back for a few
// milliseconds at a time (Config.producerSweepBatch, for the tests, when
// set).
const sweepBatch = 5000

// expireProducers records this sweep's mark and forgets the producer state
// idle for ProducerIDExpiration. It returns how many sequence windows and
// producer ids it forgot.
func (b *Broker) expireProducers(now time.Time) (windows, pids int) {
	start := time.Now()
	b.appendMu.Lock()
	b.lsnMarks = append(b.lsnMarks, lsnMark{at: now, lsn: b.lastApplied})
	// The newest mark at least one expiration old is the cut: windows
	// whose newest batch it covers have been idle since. Older marks are
	// of no further use.
	cut, have := uint64(0), false
	for i := len(b.lsnMarks) - 1; i >= 0; i-- {
		if now.Sub(b.lsnMarks[i].at) >= b.cfg.ProducerIDExpiration {
			cut, have = b.lsnMarks[i].lsn, true
			b.lsnMarks = append(b.lsnMarks[:0], b.lsnMarks[i:]...)
			break
		}
	}
	gen := b.windows
	b.appendMu.Unlock()
	kept := map[*seqWindow]bool{} // idle, but held by a transaction
	for {
		w, p, more := b.expireSome(now, cut, have, gen, kept)
		windows, pids = windows+w, pids+p
		if !more {
			break
		}
	}
	b.appendMu.Lock()
	// Go maps keep their size after deletes: after a large sweep, copy
	// what is left into maps of its own size, so the memory is given back.
	if windows > len(b.producers) {
		m := make(map[producerKey]*seqWindow, len(b.producers))
		for k, w := range b.producers {
			m[k] = w
		}
		b.producers = m
	}
	if pids > len(b.pidEpochs) {
		m := make(map[int64]int16, len(b.pidEpochs))
		for k, v := range b.pidEpochs {
			m[k] = v
		}
		b.pidEpochs = m
	}
	left, idsLeft := len(b.producers), len(b.pidEpochs)
	b.appendMu.Unlock()
	if windows > 0 || pids > 0 {
		b.metrics.producersExpired.WithLabelValues("sequence_window").Add(float64(windows))
		b.metrics.producersExpired.WithLabelValues("producer_id").Add(float64(pids))
		b.log.Info("forgot idle producer state (producer.id.expiration.ms)", "sequence_windows", windows, "producer_ids", pids,
			"idle_for", b.cfg.ProducerIDExpiration, "windows_left", left, "producer_ids_left", idsLeft,
			"elapsed", time.Since(start).Round(time.Microsecond))
	}
	return windows, pids
}

// expireSome forgets up to sweepBatch idle windows and as many idle ids
// under one hold of the append lock, and reports whether more may be
// left. gen is the window list the sweep began with: a replay from
// scratch in between (resetStateLocked) ends the sweep.
func (b *Broker) expireSome(now time.Time, cut uint64, have bool, gen *windowList, kept map[*seqWindow]bool) (windows, pids int, more bool) {
	limit := sweepBatch
	if b.cfg.producerSweepBatch > 0 {
		limit = b.cfg.producerSweepBatch
	}
	b.appendMu.Lock()
	defer b.appendMu.Unlock()
	if b.windows != gen {
		return 0, 0, false
	}
	var inTxn map[int64]bool // built when first needed
	txnHolds := func(pid int64) bool {
		if inTxn == nil {
			inTxn = make(map[int64]bool, len(b.txns))
			for _, s := range b.txns {
				inTxn[s.PID] = true
			}
		}
		return inTxn[pid]
	}
	for w := b.windows.front(); have && w != nil && w.lastLSN() <= cut && !kept[w]; w = b.windows.front() {
		if windows+len(kept) >= limit {
			return windows, pids, true
		}
		if txnHolds(w.key.pid) || b.txnOpenOn(w.key) {
			b.windows.moveToBack(w)
			kept[w] = true
			continue
		}
		b.dropWindow(w, now)
		windows++
	}
	for len(b.pidIdle) > 0 && now.Sub(b.pidIdle[0].since) >= b.cfg.ProducerIDExpiration {
		if pids >= limit {
			return windows, pids, true
		}
		e := b.pidIdle[0]
		b.pidIdle = b.pidIdle[1:]
		if since, ok := b.pidIdleSince[e.pid]; !ok || !since.Equal(e.since) {
			continue // it wrote again since; a later entry, if any, counts
		}
		delete(b.pidIdleSince, e.pid)
		if txnHolds(e.pid) {
			b.notePIDIdle(e.pid, now) // a transactional id holds it: look again later
			continue
		}
		if _, ok := b.pidEpochs[e.pid]; ok {
			delete(b.pidEpochs, e.pid)
			delete(b.pidBumps, e.pid)
			pids++
		}
	}
	if len(b.pidIdle) == 0 {
		b.pidIdle = nil // let the backing array go
	}
	return windows, pids, false
}

// txnOpenOn reports whether the producer of k has a transaction open on
// k's partition (one the coordinator may no longer know: a hanging
// transaction). Caller holds appendMu.
func (b *Broker) txnOpenOn(k producerKey) bool {
	b.mu.RLock()
	t := b.topics[k.tp.topic]
	b.mu.RUnlock()
	if t == nil || int(k.tp.partition) >= len(t.partitions) {
		return false
	}
	p := t.partitions[k.tp.partition]
	p.mu.RLock()
	defer p.mu.RUnlock()
	for _, o := range p.openTxns {
		if o.pid == k.pid && o.marker < 0 {
			return true
		}
	}
	return false
}

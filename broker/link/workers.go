package link

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"

	"github.com/tandem-io/tandem/broker/wal"
	linkv1 "github.com/tandem-io/tandem/gen/tandem/link/v1"
)

// setCommit hands the broker the sidecar's latest commit point (wanted, or
// the one known before when wanted is 0), capped at what this WAL holds
// durably: a follower that is behind learns the leader's commit point
// before it has the entries.
func (s *session) setCommit(wanted uint64) error {
	s.commitMu.Lock()
	defer s.commitMu.Unlock()
	if wanted > 0 {
		s.commitWanted = wanted
	}
	c := min(s.commitWanted, s.w.DurableLSN())
	if s.commitCap > 0 {
		c = min(c, s.commitCap)
	}
	if c == 0 || c <= s.commitApplied {
		return nil
	}
	s.b.SetCommitLSN(c)
	s.commitApplied = c
	// Tell the sidecar: a leader's sidecar forwards to followers only
	// commit points its own broker already serves. Only a leader's sidecar
	// uses it, so a follower saves the message.
	if s.follower.Load() {
		return nil
	}
	return s.send(&linkv1.AttachRequest{Payload: &linkv1.AttachRequest_CommitApplied{
		CommitApplied: &linkv1.CommitApplied{Lsn: c}}})
}

// pendingAck is an AppliedUpTo reply queued for the acker: it goes out
// once wait is durable, after every reply queued before it.
type pendingAck struct {
	reply   *linkv1.AppliedUpTo
	wait    uint64        // LSN that must be durable first (0: none)
	failed  bool          // reply.Lsn is filled in with the durable LSN when sent
	barrier chan struct{} // not a reply: closed once every earlier reply went out
}

// acker sends the AppliedUpTo replies in order, each once its entries are
// durable, so that the ops worker can append the next entries while the
// WAL fsyncs the previous ones.
func (s *session) acker() error {
	for {
		var a pendingAck
		select {
		case a = <-s.acks:
		case <-s.ctx.Done():
			return nil
		}
		if a.barrier != nil {
			close(a.barrier)
			continue
		}
		if a.wait > 0 {
			if err := s.w.WaitDurable(s.ctx, a.wait); err != nil {
				if s.ctx.Err() != nil {
					return nil
				}
				s.log.Error("waiting for applied entries to be durable failed", "lsn", a.wait, "error", err)
				a.reply = &linkv1.AppliedUpTo{Error: err.Error()}
				a.failed = true
			}
		}
		if a.failed {
			a.reply.Lsn = s.w.DurableLSN()
			a.reply.EpochHistory = EpochsToProto(s.w.EpochHistory())
		}
		s.commitMu.Lock()
		a.reply.CommitLsn = s.commitApplied
		s.commitMu.Unlock()
		if err := s.send(&linkv1.AttachRequest{Payload: &linkv1.AttachRequest_Applied{Applied: a.reply}}); err != nil {
			return err
		}
		if err := s.setCommit(0); err != nil {
			return err
		}
	}
}

// queueAck hands a reply to the acker.
func (s *session) queueAck(a pendingAck) error {
	select {
	case s.acks <- a:
		return nil
	case <-s.ctx.Done():
		return context.Cause(s.ctx)
	}
}

// drainAcks returns once every queued reply went out (before a truncate
// or reset changes the WAL under them).
func (s *session) drainAcks() error {
	done := make(chan struct{})
	if err := s.queueAck(pendingAck{barrier: done}); err != nil {
		return err
	}
	select {
	case <-done:
		return nil
	case <-s.ctx.Done():
		return context.Cause(s.ctx)
	}
}

// opsWorker applies the follower's operations (apply, truncate, reset) and
// commit points in the order the sidecar sent them.
func (s *session) opsWorker() error {
	for {
		var m *linkv1.AttachResponse
		select {
		case m = <-s.ops:
		case <-s.ctx.Done():
			return nil
		}
		var reply *linkv1.AttachRequest
		switch p := m.GetPayload().(type) {
		case *linkv1.AttachResponse_Commit:
			if err := s.setCommit(p.Commit.GetLsn()); err != nil {
				return err
			}
			continue
		case *linkv1.AttachResponse_Apply:
			if err := s.queueAck(s.apply(p.Apply.GetEntries())); err != nil {
				return err
			}
			if c := p.Apply.GetCommitLsn(); c > 0 {
				// As a CommitPoint right after the entries: served once
				// they are durable (setCommit caps at the durable LSN, and
				// the acker raises it as they become durable).
				if err := s.setCommit(c); err != nil {
					return err
				}
			}
			continue
		case *linkv1.AttachResponse_TruncateTo:
			if err := s.drainAcks(); err != nil {
				return err
			}
			lsn := p.TruncateTo.GetLsn()
			before := s.w.LastLSN()
			t := &linkv1.TruncatedTo{}
			if err := s.b.TruncateAfter(lsn); err != nil {
				t.Error = err.Error()
				s.log.Error("truncating WAL failed", "after_lsn", lsn, "error", err)
			} else if before > lsn {
				s.log.Warn("WAL truncated at the sidecar's request (diverged from the leader)",
					"kept_up_to", lsn, "dropped_entries", before-lsn)
			}
			s.walGen.Add(1)
			s.commitAfterRewrite()
			t.LastLsn = s.w.LastLSN()
			t.EpochHistory = EpochsToProto(s.w.EpochHistory())
			reply = &linkv1.AttachRequest{Payload: &linkv1.AttachRequest_Truncated{Truncated: t}}
		case *linkv1.AttachResponse_ResetTo:
			if err := s.drainAcks(); err != nil {
				return err
			}
			next := p.ResetTo.GetNextLsn()
			d := &linkv1.ResetDone{}
			if err := s.b.ResetTo(next); err != nil {
				d.Error = err.Error()
				s.log.Error("resetting WAL failed", "next_lsn", next, "error", err)
			} else {
				s.log.Warn("WAL wiped at the sidecar's request (re-clone from the leader)", "next_lsn", next)
			}
			s.walGen.Add(1)
			s.commitAfterRewrite()
			d.NextLsn = s.w.LastLSN() + 1
			reply = &linkv1.AttachRequest{Payload: &linkv1.AttachRequest_ResetDone{ResetDone: d}}
		default:
			return fmt.Errorf("%w: unexpected %T in ops queue", ErrBadMessage, m.GetPayload())
		}
		if err := s.send(reply); err != nil {
			return err
		}
	}
}

// apply hands the sidecar's entries to the broker. Entries the WAL already
// holds are skipped (the sidecar may resend after a hiccup), so nothing is
// applied twice; a gap is refused. The reply goes out through the acker
// once the entries are durable.
func (s *session) apply(in []*linkv1.Entry) pendingAck {
	last := s.w.LastLSN()
	ents, err := newEntries(last, in, s.w.EpochHistory)
	if err != nil {
		s.log.Error("refusing entries from sidecar", "error", err)
		var de *divergedError
		if errors.As(err, &de) {
			// This WAL's entries from de.lsn on are not the leader's: no
			// commit point may cover them until the sidecar has the log
			// truncated (the refusal makes it reconnect).
			s.capCommit(de.lsn - 1)
		}
		return pendingAck{reply: &linkv1.AppliedUpTo{Lsn: last, Error: err.Error(),
			EpochHistory: EpochsToProto(s.w.EpochHistory())}, wait: last}
	}
	if len(ents) == 0 {
		// Everything was held already: applied up to the batch's end (not
		// the WAL's, which may be further than the sidecar has sent).
		lsn := last
		if n := len(in); n > 0 {
			lsn = min(last, in[n-1].GetLsn())
		}
		return pendingAck{reply: &linkv1.AppliedUpTo{Lsn: lsn}, wait: lsn}
	}
	if a, ok := s.b.(Appender); ok {
		err = a.AppendEntries(ents)
	} else {
		err = s.b.ApplyEntries(ents)
	}
	if err != nil {
		s.log.Error("applying entries failed", "first_lsn", ents[0].LSN, "last_lsn", ents[len(ents)-1].LSN, "error", err)
		return pendingAck{reply: &linkv1.AppliedUpTo{Error: err.Error()}, failed: true}
	}
	lsn := ents[len(ents)-1].LSN
	return pendingAck{reply: &linkv1.AppliedUpTo{Lsn: lsn}, wait: lsn}
}

// newEntries returns the entries of in that follow last, which must
// continue the log with no gap. Entries at or below last are already in
// the WAL and dropped, but only when this WAL has them in the same epoch:
// one with another epoch means this log diverged from the leader's after
// the position the sidecar announced (for example entries a broker took as
// leader before it learnt that it follows), which only a truncation at the
// divergence point repairs, so the batch is refused (ErrDiverged) and the
// sidecar reconnects with the WAL's real end and epochs. history is called
// only when some entry is at or below last.
func newEntries(last uint64, in []*linkv1.Entry, history func() []wal.EpochStart) ([]wal.Entry, error) {
	ents := make([]wal.Entry, 0, len(in))
	var hist []wal.EpochStart
	for _, pe := range in {
		if pe.GetLsn() <= last {
			if hist == nil {
				hist = history()
			}
			if e, ok := epochAt(hist, pe.GetLsn()); ok && e != pe.GetEpoch() {
				return nil, &divergedError{lsn: pe.GetLsn(), here: e, leader: pe.GetEpoch()}
			}
			continue
		}
		want := last + 1
		if n := len(ents); n > 0 {
			want = ents[n-1].LSN + 1
		}
		if pe.GetLsn() != want {
			return nil, fmt.Errorf("%w: entry LSN %d where %d was expected (WAL ends at %d)", wal.ErrGap, pe.GetLsn(), want, last)
		}
		if pe.GetType() < 0 || pe.GetType() > 255 {
			return nil, fmt.Errorf("%w: entry LSN %d has type %d", ErrBadMessage, pe.GetLsn(), pe.GetType())
		}
		ents = append(ents, EntryFromProto(pe))
	}
	return ents, nil
}

// divergedError is ErrDiverged at an LSN: this WAL holds lsn in epoch here,
// the leader in epoch leader.
type divergedError struct {
	lsn          uint64
	here, leader uint32
}

func (e *divergedError) Error() string {
	return fmt.Sprintf("%v: LSN %d has epoch %d in this WAL but epoch %d from the leader", ErrDiverged, e.lsn, e.here, e.leader)
}

func (e *divergedError) Unwrap() error { return ErrDiverged }

// capCommit keeps every commit point at or below lsn until the WAL is
// truncated or reset (its entries above lsn are not the leader's).
func (s *session) capCommit(lsn uint64) {
	s.commitMu.Lock()
	defer s.commitMu.Unlock()
	if s.commitCap == 0 || lsn < s.commitCap {
		s.commitCap = max(lsn, 1) // 0 means no cap
	}
}

// commitAfterRewrite lowers what the session has served to the WAL's new
// end after a truncation or reset (the broker lowered its own commit point
// with it), so that the next commit points are served again, and lifts the
// cap of a refused divergence: what is left is what the leader streams.
func (s *session) commitAfterRewrite() {
	s.commitMu.Lock()
	defer s.commitMu.Unlock()
	s.commitApplied = min(s.commitApplied, s.w.LastLSN())
	s.commitCap = 0
}

// epochAt returns the epoch of the entry at lsn in a WAL epoch history,
// and false when lsn lies before its first line.
func epochAt(h []wal.EpochStart, lsn uint64) (uint32, bool) {
	i := sort.Search(len(h), func(i int) bool { return h[i].StartLSN > lsn }) - 1
	if i < 0 {
		return 0, false
	}
	return h[i].Epoch, true
}

// cachedReader is a WAL reader positioned at next, kept between replay
// requests so that a follower catching up does not make the WAL seek again
// for every chunk.
type cachedReader struct {
	r    *wal.Reader
	next uint64
	gen  uint64
}

const maxCachedReaders = 4

// readsWorker answers replay and checksum requests.
func (s *session) readsWorker() error {
	var cache []cachedReader
	defer func() {
		for _, c := range cache {
			c.r.Close()
		}
	}()
	get := func(from uint64) (*wal.Reader, error) {
		gen := s.walGen.Load()
		for i, c := range cache {
			if c.next == from && c.gen == gen {
				cache = append(cache[:i], cache[i+1:]...)
				return c.r, nil
			}
		}
		return s.w.NewReader(from)
	}
	put := func(r *wal.Reader, next uint64) {
		cache = append(cache, cachedReader{r: r, next: next, gen: s.walGen.Load()})
		if len(cache) > maxCachedReaders {
			cache[0].r.Close()
			cache = cache[1:]
		}
	}
	for {
		var m *linkv1.AttachResponse
		select {
		case m = <-s.reads:
		case <-s.ctx.Done():
			return nil
		}
		switch p := m.GetPayload().(type) {
		case *linkv1.AttachResponse_Replay:
			if err := s.replay(p.Replay, get, put); err != nil {
				return err
			}
		case *linkv1.AttachResponse_Checksum:
			req := p.Checksum
			res := &linkv1.ChecksumResult{RequestId: req.GetRequestId(), FirstLsn: s.w.FirstLSN(), LastLsn: s.w.LastLSN()}
			s.commitMu.Lock()
			res.CommitLsn = s.commitApplied
			s.commitMu.Unlock()
			sum, err := s.w.Checksum(req.GetFromLsn(), req.GetToLsn())
			if err != nil {
				res.Error = err.Error()
			}
			res.Checksum = sum
			if err := s.sendReply(&linkv1.AttachRequest{Payload: &linkv1.AttachRequest_ChecksumResult{ChecksumResult: res}}); err != nil {
				return err
			}
		default:
			return fmt.Errorf("%w: unexpected %T in reads queue", ErrBadMessage, m.GetPayload())
		}
	}
}

// replay answers one ReplayRequest with one or more chunks.
func (s *session) replay(req *linkv1.ReplayRequest, get func(uint64) (*wal.Reader, error), put func(*wal.Reader, uint64)) error {
	id, from := req.GetRequestId(), req.GetFromLsn()
	budget := int(min(req.GetMaxBytes(), uint64(MaxMessageBytes/2)))
	if budget == 0 {
		budget = DefaultReplayBytes
	}
	result := func(st linkv1.ReplayStatus, ents []*linkv1.Entry, done, eol bool, msg string) error {
		return s.sendReply(&linkv1.AttachRequest{Payload: &linkv1.AttachRequest_ReplayResult{ReplayResult: &linkv1.ReplayResult{
			RequestId: id, Status: st, Entries: ents, Done: done, EndOfLog: eol,
			FirstLsn: s.w.FirstLSN(), DurableLsn: s.w.DurableLSN(), Error: msg,
		}}})
	}
	durable := s.w.DurableLSN()
	switch {
	case from == 0 || from > durable+1:
		return result(linkv1.ReplayStatus_REPLAY_STATUS_OUT_OF_RANGE, nil, true, false,
			fmt.Sprintf("replay from LSN %d: the WAL's durable end is %d", from, durable))
	case from < s.w.FirstLSN():
		return result(linkv1.ReplayStatus_REPLAY_STATUS_COMPACTED, nil, true, false,
			fmt.Sprintf("replay from LSN %d: the WAL starts at %d", from, s.w.FirstLSN()))
	}
	r, err := get(from)
	if errors.Is(err, wal.ErrCompacted) {
		return result(linkv1.ReplayStatus_REPLAY_STATUS_COMPACTED, nil, true, false, err.Error())
	}
	if err != nil {
		return result(linkv1.ReplayStatus_REPLAY_STATUS_ERROR, nil, true, false, err.Error())
	}
	var chunk []*linkv1.Entry
	chunkSize, total := 0, 0
	next := from
	eol := false
	for total < budget {
		e, _, err := r.Next()
		if errors.Is(err, io.EOF) {
			eol = true
			break
		}
		if err != nil {
			r.Close()
			s.log.Error("reading WAL for replay failed", "from_lsn", from, "at_lsn", next, "error", err)
			return result(linkv1.ReplayStatus_REPLAY_STATUS_ERROR, nil, true, false, err.Error())
		}
		next = e.LSN + 1
		chunk = append(chunk, EntryToProto(e)) // the reader's payload is ours
		chunkSize += len(e.Payload)
		total += len(e.Payload)
		if chunkSize >= ChunkBytes && total < budget {
			if err := result(linkv1.ReplayStatus_REPLAY_STATUS_OK, chunk, false, false, ""); err != nil {
				r.Close()
				return err
			}
			chunk, chunkSize = nil, 0
		}
	}
	put(r, next)
	return result(linkv1.ReplayStatus_REPLAY_STATUS_OK, chunk, true, eol, "")
}

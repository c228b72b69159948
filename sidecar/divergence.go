package sidecar

import (
	"sort"

	linkv1 "github.com/tandem-io/tandem/gen/tandem/link/v1"
)

// epochHistory is a WAL's epoch history: the first LSN of every epoch,
// ascending by epoch and by LSN.
type epochHistory []*linkv1.EpochStart

// epochAt returns the epoch of the entry at lsn, and false when lsn lies
// before the first entry of the history (unknown: compacted or never
// recorded).
func (h epochHistory) epochAt(lsn uint64) (uint32, bool) {
	if i := h.lineAt(lsn); i >= 0 {
		return h[i].GetEpoch(), true
	}
	return 0, false
}

// lineAt returns the index of the last line starting at or before lsn, or
// -1 (binary search: histories from peers can be long).
func (h epochHistory) lineAt(lsn uint64) int {
	return sort.Search(len(h), func(i int) bool { return h[i].GetStartLsn() > lsn }) - 1
}

// lastEpoch returns the newest epoch (0 when the history is empty).
func (h epochHistory) lastEpoch() uint32 {
	if len(h) == 0 {
		return 0
	}
	return h[len(h)-1].GetEpoch()
}

// observe extends the history with an entry appended at lsn in epoch:
// a higher epoch than the newest starts a new line.
func (h epochHistory) observe(epoch uint32, lsn uint64) epochHistory {
	if len(h) == 0 || epoch > h[len(h)-1].GetEpoch() {
		return append(h, &linkv1.EpochStart{Epoch: epoch, StartLsn: lsn})
	}
	return h
}

// truncate drops the lines of epochs that start after lsn.
func (h epochHistory) truncate(lsn uint64) epochHistory {
	n := len(h)
	for n > 0 && h[n-1].GetStartLsn() > lsn {
		n--
	}
	return h[:n:n]
}

// clone returns a copy that can be extended without touching h.
func (h epochHistory) clone() epochHistory {
	out := make(epochHistory, len(h))
	for i, es := range h {
		out[i] = &linkv1.EpochStart{Epoch: es.GetEpoch(), StartLsn: es.GetStartLsn()}
	}
	return out
}

// divergencePoint returns the last LSN up to which a follower's log and the
// leader's log are identical, given both epoch histories and both ends.
//
// Entries with the same LSN and epoch are identical (one leader per epoch
// writes each LSN once), and every epoch covers one contiguous LSN range, so
// the logs agree up to x exactly when the epoch of x is the same in both
// histories, and agreement at x implies agreement below x. The answer is
// therefore the largest x <= min(leaderEnd, followerEnd) whose epoch matches
// in both histories, found by walking the ranges where both histories are
// constant, from the top down.
//
// This is Kafka's KIP-101 (the leader's end offset for the follower's last
// epoch: the start of the next higher epoch in the leader's history, or the
// leader's end when it is the latest) refined as in KIP-279: a single
// KIP-101 step can keep entries of an epoch the leader never had, when the
// leader's history lacks the follower's epoch; this walk cannot.
//
// Below the first line of a history (compacted away, or a replica
// re-cloned from a later LSN) the epochs are unknown, but no higher than
// that first line's epoch, because epochs only grow along a log. Where the
// other log has a higher epoch there, the two cannot agree, and the walk
// goes on below it; otherwise they are assumed to agree, since there is
// nothing left to compare.
func divergencePoint(leader epochHistory, leaderEnd uint64, follower epochHistory, followerEnd uint64) uint64 {
	x := min(leaderEnd, followerEnd)
	for x > 0 {
		le, lok := leader.epochAt(x)
		fe, fok := follower.epochAt(x)
		var lower uint64
		switch {
		case lok && fok && le == fe:
			return x
		case lok && fok:
			// Both histories are constant on (lower, x]: jump below the
			// higher of the two starts of the current lines.
			lower = max(leader.startOf(x), follower.startOf(x))
		case lok && len(follower) > 0 && le > follower[0].GetEpoch():
			lower = leader.startOf(x) // the follower had no entry of epoch le
		case fok && len(leader) > 0 && fe > leader[0].GetEpoch():
			lower = follower.startOf(x) // the leader had no entry of epoch fe
		default:
			return x
		}
		if lower == 0 {
			return 0
		}
		x = lower - 1
	}
	return 0
}

// startOf returns the start LSN of the line that covers lsn (0 when none).
func (h epochHistory) startOf(lsn uint64) uint64 {
	if i := h.lineAt(lsn); i >= 0 {
		return h[i].GetStartLsn()
	}
	return 0
}

// kip101EndOffset is the single KIP-101 step, kept for reference and tests:
// the leader's last LSN of the largest epoch <= epoch (the start of the next
// higher epoch minus one, or leaderEnd for the latest epoch).
func kip101EndOffset(leader epochHistory, leaderEnd uint64, epoch uint32) uint64 {
	for i := len(leader) - 1; i >= 0; i-- {
		if leader[i].GetEpoch() <= epoch {
			if i == len(leader)-1 {
				return leaderEnd
			}
			return leader[i+1].GetStartLsn() - 1
		}
	}
	if len(leader) > 0 {
		return leader[0].GetStartLsn() - 1
	}
	return leaderEnd
}

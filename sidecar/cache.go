package sidecar

import (
	"sync"

	linkv1 "github.com/tandem-io/tandem/gen/tandem/link/v1"
)

// entryCache holds the leader's newest durable entries, contiguous by LSN,
// up to a byte budget. Followers that keep up read from it; a follower that
// needs older entries gets them replayed from the broker's WAL. Entries in
// the cache are never modified, so several follower streams may send the
// same *linkv1.Entry at once.
type entryCache struct {
	mu    sync.Mutex
	start uint64 // LSN of ents[0], or the next LSN expected when empty
	ents  []*linkv1.Entry
	bytes int
	max   int
}

func newEntryCache(maxBytes int) *entryCache {
	return &entryCache{start: 1, max: maxBytes}
}

// reset empties the cache; the next entry expected is next.
func (c *entryCache) reset(next uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.start, c.ents, c.bytes = next, nil, 0
}

// add appends entries that continue the cache. Entries that do not continue
// it (a gap) empty the cache first; evicts the oldest entries over budget.
func (c *entryCache) add(ents []*linkv1.Entry) {
	if len(ents) == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if ents[0].GetLsn() != c.start+uint64(len(c.ents)) {
		c.start, c.ents, c.bytes = ents[0].GetLsn(), nil, 0
	}
	for _, e := range ents {
		c.ents = append(c.ents, e)
		c.bytes += len(e.GetPayload())
	}
	drop := 0
	for c.bytes > c.max && drop < len(c.ents) {
		c.bytes -= len(c.ents[drop].GetPayload())
		drop++
	}
	if drop > 0 {
		// Copy to a fresh slice now and then so that the evicted entries
		// can be collected.
		if drop > len(c.ents)/2 {
			c.ents = append([]*linkv1.Entry(nil), c.ents[drop:]...)
		} else {
			c.ents = c.ents[drop:]
		}
		c.start += uint64(drop)
	}
}

// get returns entries from `from` on, about maxBytes of payload (at least
// one entry when there is one). ok is false when `from` is older than the
// cache (ask the broker).
func (c *entryCache) get(from uint64, maxBytes int) (ents []*linkv1.Entry, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if from < c.start {
		return nil, false
	}
	i := from - c.start
	if i >= uint64(len(c.ents)) {
		return nil, true
	}
	// A copy: c.ents is appended to and trimmed after the lock is released.
	batch, _ := takeBatch(c.ents[i:], maxBytes)
	return append([]*linkv1.Entry(nil), batch...), true
}

// bytesBetween estimates the payload bytes of entries in (after, upto]:
// exact for the cached part, the cache's average entry size for the rest.
func (c *entryCache) bytesBetween(after, upto uint64) uint64 {
	if upto <= after {
		return 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var total uint64
	lo := after + 1
	if lo < c.start {
		n := min(upto+1, c.start) - lo
		avg := uint64(0)
		if len(c.ents) > 0 {
			avg = uint64(c.bytes / len(c.ents))
		}
		total += n * avg
		lo = c.start
	}
	for lsn := lo; lsn <= upto && lsn-c.start < uint64(len(c.ents)); lsn++ {
		total += uint64(len(c.ents[lsn-c.start].GetPayload()))
	}
	return total
}

package main

import (
	"math"
	"math/bits"
	"sync"
	"time"
)

// Histogram records durations with a bounded relative error and a fixed
// memory footprint, so a five-minute full-speed run (tens of millions of
// samples) costs the same ~60 KiB as a one-second run.
//
// Layout (log-linear, as HdrHistogram does it): values below 256 ns get a
// bucket each; above that, every power of two is cut into 128 equal
// sub-buckets. A value is therefore known to within 1/128 (< 0.8 %) of
// itself, which is far finer than the noise of any latency we measure.
//
// Histogram is safe for concurrent use: kgo calls promises from several
// goroutines.
type Histogram struct {
	mu     sync.Mutex
	counts [histBuckets]uint64
	n      uint64
	sum    float64 // nanoseconds, for the mean
	min    uint64
	max    uint64
}

const (
	histSubBits  = 8                                   // 2^8 = 256 exact buckets below 256 ns
	histSub      = 1 << histSubBits                    // 256
	histHalf     = histSub / 2                         // 128 sub-buckets per power of two
	histBuckets  = histSub + (64-histSubBits)*histHalf // enough for any uint64
	nanosPerMsec = float64(time.Millisecond)
)

// bucketOf maps a value in nanoseconds to its bucket index.
func bucketOf(v uint64) int {
	if v < histSub {
		return int(v)
	}
	shift := bits.Len64(v) - histSubBits // >= 1
	mant := v >> uint(shift)             // in [128, 256)
	return histSub + (shift-1)*histHalf + int(mant-histHalf)
}

// bucketRange returns the smallest and largest value that land in bucket i.
func bucketRange(i int) (lo, hi uint64) {
	if i < histSub {
		return uint64(i), uint64(i)
	}
	j := i - histSub
	shift := uint(j/histHalf + 1)
	mant := uint64(j%histHalf + histHalf)
	lo = mant << shift
	hi = ((mant + 1) << shift) - 1
	return lo, hi
}

// Record adds one sample. Negative durations count as zero.
func (h *Histogram) Record(d time.Duration) {
	v := uint64(0)
	if d > 0 {
		v = uint64(d)
	}
	b := bucketOf(v)
	h.mu.Lock()
	h.counts[b]++
	if h.n == 0 || v < h.min {
		h.min = v
	}
	if v > h.max {
		h.max = v
	}
	h.n++
	h.sum += float64(v)
	h.mu.Unlock()
}

// Merge adds every sample of o to h.
func (h *Histogram) Merge(o *Histogram) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.n == 0 {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for i, c := range o.counts {
		h.counts[i] += c
	}
	if h.n == 0 || o.min < h.min {
		h.min = o.min
	}
	if o.max > h.max {
		h.max = o.max
	}
	h.n += o.n
	h.sum += o.sum
}

// Count is the number of samples recorded.
func (h *Histogram) Count() uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.n
}

// Quantile returns the value below or at which a fraction q (0..1) of the
// samples fall ("nearest rank"). It reports the middle of the bucket that
// holds that rank, clamped to the exact observed min and max, so Quantile(0)
// is the minimum and Quantile(1) the maximum. An empty histogram returns 0.
func (h *Histogram) Quantile(q float64) time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.quantileLocked(q)
}

func (h *Histogram) quantileLocked(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	if q <= 0 {
		return time.Duration(h.min)
	}
	if q >= 1 {
		return time.Duration(h.max)
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	if rank < 1 {
		rank = 1
	}
	var cum uint64
	for i, c := range h.counts {
		cum += c
		if cum >= rank {
			lo, hi := bucketRange(i)
			v := lo + (hi-lo)/2
			if v < h.min {
				v = h.min
			}
			if v > h.max {
				v = h.max
			}
			return time.Duration(v)
		}
	}
	return time.Duration(h.max)
}

// LatencySummary is the part of a histogram that goes into results, in
// milliseconds (fractions kept) because that is how operators read latency.
type LatencySummary struct {
	Count  uint64  `json:"count"`
	MeanMs float64 `json:"mean_ms"`
	MinMs  float64 `json:"min_ms"`
	P50Ms  float64 `json:"p50_ms"`
	P90Ms  float64 `json:"p90_ms"`
	P99Ms  float64 `json:"p99_ms"`
	P999Ms float64 `json:"p999_ms"`
	MaxMs  float64 `json:"max_ms"`
}

// Summary computes the usual percentiles. It returns nil for an empty
// histogram so that results say "no samples" rather than "0 ms".
func (h *Histogram) Summary() *LatencySummary {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.n == 0 {
		return nil
	}
	ms := func(d time.Duration) float64 { return float64(d) / nanosPerMsec }
	return &LatencySummary{
		Count:  h.n,
		MeanMs: h.sum / float64(h.n) / nanosPerMsec,
		MinMs:  ms(time.Duration(h.min)),
		P50Ms:  ms(h.quantileLocked(0.50)),
		P90Ms:  ms(h.quantileLocked(0.90)),
		P99Ms:  ms(h.quantileLocked(0.99)),
		P999Ms: ms(h.quantileLocked(0.999)),
		MaxMs:  ms(time.Duration(h.max)),
	}
}

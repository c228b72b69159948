package main

import (
	"math"
	"sync"
	"testing"
	"time"
)

func TestBucketRangeHoldsValue(t *testing.T) {
	values := []uint64{0, 1, 2, 127, 255, 256, 257, 511, 512, 1000, 4095, 4096, 123456, 999_999_999, 1 << 40, math.MaxUint64 / 3, math.MaxUint64}
	for _, v := range values {
		b := bucketOf(v)
		if b < 0 || b >= histBuckets {
			t.Fatalf("bucketOf(%d) = %d, outside [0,%d)", v, b, histBuckets)
		}
		lo, hi := bucketRange(b)
		if v < lo || v > hi {
			t.Errorf("value %d in bucket %d whose range is [%d,%d]", v, b, lo, hi)
		}
		if v >= histSub {
			if rel := float64(hi-lo) / float64(lo); rel > 1.0/float64(histHalf)+1e-9 {
				t.Errorf("bucket %d [%d,%d] wider than 1/%d of its value", b, lo, hi, histHalf)
			}
		}
	}
	// Buckets are contiguous: each starts right after the previous ends.
	for i := 1; i < histBuckets; i++ {
		_, prevHi := bucketRange(i - 1)
		lo, _ := bucketRange(i)
		if lo != prevHi+1 {
			t.Fatalf("bucket %d starts at %d, previous ends at %d", i, lo, prevHi)
		}
	}
}

func TestHistogramQuantiles(t *testing.T) {
	tests := []struct {
		name    string
		samples []time.Duration
		q       float64
		want    time.Duration
	}{
		{"empty", nil, 0.5, 0},
		{"single value is every quantile", []time.Duration{3 * time.Millisecond}, 0.99, 3 * time.Millisecond},
		{"min", []time.Duration{5 * time.Millisecond, time.Millisecond, 9 * time.Millisecond}, 0, time.Millisecond},
		{"max", []time.Duration{5 * time.Millisecond, time.Millisecond, 9 * time.Millisecond}, 1, 9 * time.Millisecond},
		{"median of three", []time.Duration{5 * time.Millisecond, time.Millisecond, 9 * time.Millisecond}, 0.5, 5 * time.Millisecond},
		{"small exact values", []time.Duration{10, 20, 30, 40}, 0.5, 20},
		{"negative counts as zero", []time.Duration{-time.Second}, 0.5, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h Histogram
			for _, s := range tt.samples {
				h.Record(s)
			}
			got := h.Quantile(tt.q)
			if !within(got, tt.want, 0.01) {
				t.Errorf("Quantile(%v) = %v, want %v (±1%%)", tt.q, got, tt.want)
			}
		})
	}
}

func TestHistogramUniformPercentiles(t *testing.T) {
	// 1..100000 µs: the q-quantile is q*100000 µs.
	var h Histogram
	for i := 1; i <= 100000; i++ {
		h.Record(time.Duration(i) * time.Microsecond)
	}
	for _, q := range []float64{0.5, 0.9, 0.99, 0.999} {
		want := time.Duration(q*100000) * time.Microsecond
		if got := h.Quantile(q); !within(got, want, 0.01) {
			t.Errorf("p%v = %v, want %v (±1%%)", q*100, got, want)
		}
	}
	s := h.Summary()
	if s.Count != 100000 {
		t.Errorf("count %d", s.Count)
	}
	if math.Abs(s.MeanMs-50.0005) > 0.001 {
		t.Errorf("mean %v ms, want 50.0005", s.MeanMs)
	}
	if s.MinMs != 0.001 || s.MaxMs != 100 {
		t.Errorf("min %v max %v", s.MinMs, s.MaxMs)
	}
	if !(s.P50Ms <= s.P90Ms && s.P90Ms <= s.P99Ms && s.P99Ms <= s.P999Ms && s.P999Ms <= s.MaxMs) {
		t.Errorf("percentiles not ordered: %+v", s)
	}
}

func TestHistogramSkewedTail(t *testing.T) {
	// 990 fast samples and 10 slow ones: p99 is still fast, p99.9 is slow.
	var h Histogram
	for i := 0; i < 990; i++ {
		h.Record(time.Millisecond)
	}
	for i := 0; i < 10; i++ {
		h.Record(200 * time.Millisecond)
	}
	if got := h.Quantile(0.99); !within(got, time.Millisecond, 0.01) {
		t.Errorf("p99 = %v, want 1ms", got)
	}
	if got := h.Quantile(0.999); !within(got, 200*time.Millisecond, 0.01) {
		t.Errorf("p999 = %v, want 200ms", got)
	}
}

func TestHistogramMergeAndConcurrency(t *testing.T) {
	var a, b Histogram
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 1; i <= 1000; i++ {
				if g%2 == 0 {
					a.Record(time.Duration(i) * time.Microsecond)
				} else {
					b.Record(time.Duration(i) * time.Microsecond)
				}
			}
		}(g)
	}
	wg.Wait()
	a.Merge(&b)
	if a.Count() != 4000 {
		t.Fatalf("count after merge = %d, want 4000", a.Count())
	}
	if got := a.Quantile(0.5); !within(got, 500*time.Microsecond, 0.01) {
		t.Errorf("merged p50 = %v, want 500µs", got)
	}
	var empty Histogram
	if empty.Summary() != nil {
		t.Error("summary of an empty histogram should be nil")
	}
	a.Merge(&empty)
	if a.Count() != 4000 {
		t.Errorf("merging an empty histogram changed the count to %d", a.Count())
	}
}

func within(got, want time.Duration, rel float64) bool {
	if want == 0 {
		return got == 0
	}
	return math.Abs(float64(got-want)) <= rel*float64(want)
}

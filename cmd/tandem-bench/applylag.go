package main

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"sort"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// applyLagMetric is the leader sidecar's histogram of follower apply lag
// (sidecar/applylag.go).
const applyLagMetric = "tandem_sidecar_follower_apply_lag_seconds"

// lagBuckets is one scrape of a follower's apply-lag histogram: cumulative
// counts by upper bound, ascending.
type lagBuckets struct {
	upper []float64
	count []uint64
	total uint64
}

// scrapeApplyLag reads the histogram of follower from a sidecar's /metrics.
func scrapeApplyLag(ctx context.Context, url string, follower int32) (lagBuckets, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return lagBuckets{}, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return lagBuckets{}, fmt.Errorf("bench: scraping %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return lagBuckets{}, fmt.Errorf("bench: scraping %s: %s", url, resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		return lagBuckets{}, fmt.Errorf("bench: parsing %s: %w", url, err)
	}
	var b lagBuckets
	mf := mfs[applyLagMetric]
	for _, m := range mf.GetMetric() {
		if !hasLabel(m, "follower", fmt.Sprint(follower)) {
			continue
		}
		h := m.GetHistogram()
		for _, bk := range h.GetBucket() {
			b.upper = append(b.upper, bk.GetUpperBound())
			b.count = append(b.count, bk.GetCumulativeCount())
		}
		b.total = h.GetSampleCount()
	}
	return b, nil // no series yet: nothing measured so far
}

func hasLabel(m *dto.Metric, name, value string) bool {
	for _, l := range m.GetLabel() {
		if l.GetName() == name && l.GetValue() == value {
			return true
		}
	}
	return false
}

// applyLagBetween summarises the samples that arrived between two scrapes
// of the same histogram: p50/p99/p999 are interpolated linearly inside
// their bucket (as Prometheus' histogram_quantile does), so they are
// within one bucket's width (about a factor 1.5) of the exact value.
func applyLagBetween(before, after lagBuckets) *LatencySummary {
	n := after.total - before.total
	if n == 0 || len(after.upper) == 0 {
		return nil
	}
	prev := map[float64]uint64{}
	for i, u := range before.upper {
		prev[u] = before.count[i]
	}
	counts := make([]uint64, len(after.upper)) // cumulative, this window only
	for i, u := range after.upper {
		counts[i] = after.count[i] - prev[u]
	}
	q := func(phi float64) float64 {
		rank := phi * float64(n)
		i := sort.Search(len(counts), func(i int) bool { return float64(counts[i]) >= rank })
		if i == len(counts) {
			i = len(counts) - 1
		}
		lo, below := 0.0, uint64(0)
		if i > 0 {
			lo, below = after.upper[i-1], counts[i-1]
		}
		hi := after.upper[i]
		if math.IsInf(hi, 1) {
			return lo * 1000
		}
		in := counts[i] - below
		if in == 0 {
			return hi * 1000
		}
		return (lo + (hi-lo)*(rank-float64(below))/float64(in)) * 1000
	}
	return &LatencySummary{Count: n, P50Ms: q(0.50), P90Ms: q(0.90), P99Ms: q(0.99), P999Ms: q(0.999)}
}

package main

import (
	"context"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// The summary of the samples between two scrapes of a sidecar's apply-lag
// histogram: only that window, only that follower, quantiles within a
// bucket of the true ones.
func TestApplyLagBetween(t *testing.T) {
	reg := prometheus.NewRegistry()
	h := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: applyLagMetric,
		Buckets: prometheus.ExponentialBucketsRange(0.00025, 60, 32)}, []string{"follower"})
	reg.MustRegister(h)
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer srv.Close()
	ctx := context.Background()

	if b, err := scrapeApplyLag(ctx, srv.URL, 2); err != nil || b.total != 0 {
		t.Fatalf("before any sample: %+v, %v", b, err)
	}
	for i := 0; i < 500; i++ { // before the window: 5 s each, must not count
		h.WithLabelValues("2").Observe(5)
	}
	before, err := scrapeApplyLag(ctx, srv.URL, 2)
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 1000; i++ { // the window: 1..100 ms
		h.WithLabelValues("2").Observe(float64(i) / 10000)
		h.WithLabelValues("3").Observe(30) // another follower
	}
	after, err := scrapeApplyLag(ctx, srv.URL, 2)
	if err != nil {
		t.Fatal(err)
	}
	s := applyLagBetween(before, after)
	if s == nil || s.Count != 1000 {
		t.Fatalf("summary %+v, want 1000 samples", s)
	}
	within := func(name string, got, want float64) {
		if got < want/1.5 || got > want*1.5 {
			t.Errorf("%s = %.2f ms, want about %.2f ms (within one bucket)", name, got, want)
		}
	}
	within("p50", s.P50Ms, 50)
	within("p99", s.P99Ms, 99)
	if s.P999Ms > 150 {
		t.Errorf("p999 = %.2f ms: the samples before the window (5 s) leaked in", s.P999Ms)
	}
	if applyLagBetween(after, after) != nil {
		t.Error("an empty window gave a summary")
	}
}

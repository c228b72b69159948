package main

import (
	"bytes"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestNATSCompareTableAndChart(t *testing.T) {
	lat := func(p50, p99 float64) *LatencySummary { return &LatencySummary{Count: 10, P50Ms: p50, P99Ms: p99} }
	all := map[string]*Result{
		"tandem3-acksall":     {Name: "tandem3-acksall", RecordsPerSec: 60000, MBps: 61.4, RecordBytes: 1024, Latency: lat(100, 200)},
		"tandem3-acksall-low": {Name: "tandem3-acksall-low", RecordsPerSec: 200, TargetRate: 200, RecordBytes: 1024, Latency: lat(1.5, 3)},
		"jetstream-async":     {Name: "jetstream-async", RecordsPerSec: 30000, RecordBytes: 1024, Latency: lat(150, 300), Note: "nats.go"},
		"jetstream-sync":      {Name: "jetstream-sync", RecordsPerSec: 2500, RecordBytes: 1024, Latency: lat(0.3, 2)},
	}
	tests := []struct {
		name string
		mod  func(map[string]*Result)
		want []string
	}{
		{"targets met", func(map[string]*Result) {}, []string{
			"= 60000 / 30000 = 2.00 (target >= 1.5: met)", "(target: not worse: NOT met)", "200 records/s", "(not run)", "nats.go"}},
		{"throughput not met", func(m map[string]*Result) { m["jetstream-async"].RecordsPerSec = 50000 },
			[]string{"= 1.20 (target >= 1.5: NOT met)"}},
		{"latency met", func(m map[string]*Result) { m["tandem3-acksall-low"].Latency = lat(0.5, 1.9) },
			[]string{"1.90 ms vs 2.00 ms (target: not worse: met)"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			by := map[string]*Result{}
			for k, v := range all {
				c := *v
				l := *v.Latency
				c.Latency = &l
				by[k] = &c
			}
			tt.mod(by)
			out := formatComparison(by)
			for _, w := range tt.want {
				if !strings.Contains(out, w) {
					t.Errorf("table lacks %q:\n%s", w, out)
				}
			}
			img := comparisonImage(by)
			if b := img.Bounds(); b.Dx() != 1000 || b.Dy() != 960 {
				t.Errorf("chart is %v", b)
			}
		})
	}
}

func TestNATSCompareWritesPNG(t *testing.T) {
	dir := t.TempDir()
	r := &Result{Name: "tandem3-acksall", Kind: "produce", RecordsPerSec: 1000, RecordBytes: 1024, Latency: &LatencySummary{Count: 1, P50Ms: 1, P99Ms: 2}}
	if err := writeResult(filepath.Join(dir, "tandem3-acksall.json"), r); err != nil {
		t.Fatal(err)
	}
	chart := filepath.Join(dir, "c.png")
	if err := runNATSCompare(t.Context(), []string{"--dir", dir, "--chart", chart}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(chart)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := png.Decode(bytes.NewReader(b)); err != nil {
		t.Fatalf("chart is not a PNG: %v", err)
	}
}

package main

import (
	"path/filepath"
	"strings"
	"testing"
)

func acksPtr(a int) *int { return &a }

func sampleResults() []*Result {
	return []*Result{
		{Name: "standalone-acksall", Kind: "produce", MBps: 120.25, RecordsPerSec: 117432, Acks: acksPtr(-1),
			Latency: &LatencySummary{P50Ms: 1.5, P99Ms: 4.25, P999Ms: 9}},
		{Name: "disk", Kind: "disk", MBps: 200, Latency: &LatencySummary{P50Ms: 0.2, P99Ms: 0.3, P999Ms: 0.4}},
		{Name: "custom-extra", Label: "something else", Kind: "produce", MBps: 1},
		{Name: "standalone-acks1", Kind: "produce", MBps: 150, RecordsPerSec: 146484,
			RSS: &RSSSummary{PeakKB: 204800}, Errors: 3, FirstError: "boom"},
		{Name: "lag", Kind: "lag", Latency: &LatencySummary{P50Ms: 2, P99Ms: 25}},
	}
}

func TestFormatTableOrderAndAlignment(t *testing.T) {
	out := FormatTable(sampleResults())
	lines := strings.Split(out, "\n")
	// Header, separator, five rows, all the same width.
	table := lines[:7]
	for i, l := range table {
		if len(l) != len(table[0]) {
			t.Errorf("line %d is %d wide, header is %d:\n%s", i, len(l), len(table[0]), out)
		}
	}
	wantOrder := []string{"disk seq write", "standalone produce acks=1", "standalone produce acks=-1", "follower apply lag", "something else"}
	for i, w := range wantOrder {
		if !strings.HasPrefix(table[2+i], w) {
			t.Errorf("row %d = %q, want it to start with %q", i, table[2+i], w)
		}
	}
	for _, want := range []string{
		"120.2", "117432", "4.25", // acks=-1 figures
		"200", // peak RSS MiB of acks=1
		"standalone acks=-1 MB/s / disk MB/s",
		"0.60  (target >= 0.50: met)",
		"follower lag p99 ms at half load",
		"25.00  (target < 20 ms: NOT met)",
		"standalone produce acks=1: first error: boom",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	// Unmeasured figures are dashes, not zeros.
	if !strings.Contains(table[6], " - ") {
		t.Errorf("row without latency should show dashes: %q", table[6])
	}
}

func TestFormatTableTargetsNeedBothSides(t *testing.T) {
	out := FormatTable([]*Result{{Name: "standalone-acks1", MBps: 10}})
	if strings.Contains(out, "targets:") {
		t.Errorf("no target can be checked with one row, got:\n%s", out)
	}
}

func TestFormatTableRatioJustUnderTargetShowsThreeDecimals(t *testing.T) {
	out := FormatTable([]*Result{{Name: "cluster-acks1", MBps: 314.2}, {Name: "standalone-acks1", MBps: 629.8}})
	if want := "0.499  (target >= 0.50: NOT met)"; !strings.Contains(out, want) {
		t.Errorf("table lacks %q:\n%s", want, out)
	}
}

func TestFormatTableRSSFlatness(t *testing.T) {
	flat := &Result{Name: "rss", Kind: "rss", RSS: &RSSSummary{PeakKB: 110, Samples: []RSSSample{
		{RSSKB: 50}, {RSSKB: 100}, {RSSKB: 104}, {RSSKB: 105}}}}
	if out := FormatTable([]*Result{flat}); !strings.Contains(out, "+5.0%  (target: flat, within +10%: met)") {
		t.Errorf("flat RSS not recognised:\n%s", out)
	}
	growing := &Result{Name: "rss", Kind: "rss", RSS: &RSSSummary{PeakKB: 300, Samples: []RSSSample{
		{RSSKB: 50}, {RSSKB: 100}, {RSSKB: 200}, {RSSKB: 300}}}}
	if out := FormatTable([]*Result{growing}); !strings.Contains(out, "NOT met") {
		t.Errorf("growing RSS not flagged:\n%s", out)
	}
}

func TestResultsRoundTrip(t *testing.T) {
	dir := t.TempDir()
	for _, r := range sampleResults() {
		if err := writeResult(filepath.Join(dir, r.Name+".json"), r); err != nil {
			t.Fatal(err)
		}
	}
	got, err := loadResults(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 5 {
		t.Fatalf("loaded %d results, want 5", len(got))
	}
	if FormatTable(got) != FormatTable(sampleResults()) {
		t.Error("table from files differs from table from memory")
	}
	if _, err := loadResults(t.TempDir()); err == nil {
		t.Error("an empty directory should be an error")
	}
}

// The latency target is judged on Tandem's default durability; the run with
// --fsync interval is printed next to it as a separate, unjudged line.
func TestFormatTableLatencyAgainstJetStream(t *testing.T) {
	out := FormatTable([]*Result{
		{Name: "jetstream-sync", Kind: "produce", Latency: &LatencySummary{P99Ms: 2.5}},
		{Name: "cluster-acksall-sync", Kind: "produce", Latency: &LatencySummary{P99Ms: 6}},
		{Name: "cluster-acksall-sync-interval", Kind: "produce", Latency: &LatencySummary{P99Ms: 2.25}},
	})
	for _, want := range []string{
		"acks=-1 p99 ms one at a time vs JetStream sync p99    6.00 vs 2.50  (target: not worse: NOT met)",
		"same, brokers with --fsync interval (no fsync per ack)  2.25 vs 2.50  (no worse: yes)",
		"three-node produce acks=-1, one at a time, --fsync interval",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}

package main

// natsgo-compare: the table and chart of scripts/bench-compare.sh.
//
//	tandem-bench natsgo-compare --dir RESULTS [--chart docs/compare.png]
//
// It reads the result files bench-compare.sh writes (tandem3-acksall,
// tandem3-acksall-low, tandem3-acks1, standalone-*, jetstream-async,
// jetstream-sync), prints one table with every figure side by side and the
// issue's two targets, and draws a PNG with two panels: full-speed
// throughput, and p50/p99 latency at low load.

import (
	"context"
	"flag"
	"fmt"
	"image"
	"image/draw"
	"image/png"
	"io"
	"strings"
	"text/tabwriter"
)

// compareRow is one row of the comparison, in print order.
type compareRow struct {
	name, system, load string
	group              int // chart colour: 0 Tandem 3 pairs, 1 JetStream, 2 standalone
}

var compareRows = []compareRow{
	{"tandem3-acksall", "Tandem 3 pairs, acks=-1", "full speed", 0},
	{"tandem3-acksall-low", "Tandem 3 pairs, acks=-1", "low (fixed rate)", 0},
	{"tandem3-acksall-sync", "Tandem 3 pairs, acks=-1", "low (one at a time)", 0},
	{"tandem3-acks1", "Tandem 3 pairs, acks=1", "full speed", 0},
	{"standalone-acksall", "standalone broker, acks=-1", "full speed", 2},
	{"standalone-acksall-low", "standalone broker, acks=-1", "low (fixed rate)", 2},
	{"standalone-acksall-sync", "standalone broker, acks=-1", "low (one at a time)", 2},
	{"standalone-acks1", "standalone broker, acks=1", "full speed", 2},
	{"jetstream-async", "JetStream R3 file, PublishAsync", "full speed (window)", 1},
	{"jetstream-sync", "JetStream R3 file, Publish", "low (one at a time)", 1},
}

func runNATSCompare(_ context.Context, args []string) error {
	fs := flag.NewFlagSet("natsgo-compare", flag.ContinueOnError)
	dir := fs.String("dir", "", "directory of result files from scripts/bench-compare.sh (required)")
	chart := fs.String("chart", "", "also write the comparison chart to this PNG")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *dir == "" {
		return fmt.Errorf("%w: --dir is required", errUsage)
	}
	results, err := loadResults(*dir)
	if err != nil {
		return err
	}
	byName := map[string]*Result{}
	for _, r := range results {
		byName[r.Name] = r
	}
	fmt.Print(formatComparison(byName))
	if *chart != "" {
		img := comparisonImage(byName)
		if err := writePNG(*chart, func(w io.Writer) error { return png.Encode(w, img) }); err != nil {
			return err
		}
		fmt.Printf("\nchart: %s\n", *chart)
	}
	return nil
}

func latencyOf(r *Result) (p50, p99 float64, ok bool) {
	if r == nil || r.Latency == nil {
		return 0, 0, false
	}
	return r.Latency.P50Ms, r.Latency.P99Ms, true
}

// formatComparison is the table and the targets.
func formatComparison(by map[string]*Result) string {
	var b strings.Builder
	recordBytes := 0
	for _, r := range by {
		recordBytes = max(recordBytes, r.RecordBytes)
	}
	fmt.Fprintf(&b, "Tandem vs NATS JetStream, %s, %d-byte records\n\n", machineDescription(), recordBytes)
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "system\tload\trecords/s\tMB/s\tp50 ms\tp99 ms\terrors\t")
	for _, row := range compareRows {
		r := by[row.name]
		if r == nil {
			fmt.Fprintf(tw, "%s\t%s\t-\t-\t-\t-\t(not run)\t\n", row.system, row.load)
			continue
		}
		load := row.load
		if r.TargetRate > 0 {
			load = fmt.Sprintf("%.0f records/s", r.TargetRate)
		}
		p50, p99 := "-", "-"
		if a, c, ok := latencyOf(r); ok {
			p50, p99 = fmt.Sprintf("%.2f", a), fmt.Sprintf("%.2f", c)
		}
		fmt.Fprintf(tw, "%s\t%s\t%.0f\t%.1f\t%s\t%s\t%d\t\n", row.system, load, r.RecordsPerSec, r.MBps, p50, p99, r.Errors)
	}
	tw.Flush()

	b.WriteString("\ntargets (issue 4):\n")
	met := func(ok bool) string {
		if ok {
			return "met"
		}
		return "NOT met"
	}
	if t, j := by["tandem3-acksall"], by["jetstream-async"]; t != nil && j != nil && j.RecordsPerSec > 0 {
		ratio := t.RecordsPerSec / j.RecordsPerSec
		fmt.Fprintf(&b, "  Tandem 3 pairs acks=-1 throughput / JetStream R3 async publish rate = %.0f / %.0f = %.2f (target >= 1.5: %s)\n",
			t.RecordsPerSec, j.RecordsPerSec, ratio, met(ratio >= 1.5))
	}
	// Like for like: JetStream's sync publish keeps one message in flight,
	// as the one-at-a-time Tandem run does; the fixed-rate run (several
	// requests in flight) is shown as well.
	if _, jp99, ok := latencyOf(by["jetstream-sync"]); ok {
		for _, low := range []struct{ name, load string }{
			{"tandem3-acksall-sync", "one record at a time"},
			{"tandem3-acksall-low", "fixed low rate"},
		} {
			if _, tp99, ok := latencyOf(by[low.name]); ok {
				fmt.Fprintf(&b, "  Tandem 3 pairs acks=-1 p99 (%s) vs JetStream R3 sync publish p99 = %.2f ms vs %.2f ms (target: not worse: %s)\n",
					low.load, tp99, jp99, met(tp99 <= jp99))
			}
		}
	}
	b.WriteString("\nnotes:\n")
	for _, row := range compareRows {
		if r := by[row.name]; r != nil && (r.Note != "" || r.FirstError != "") {
			fmt.Fprintf(&b, "  %s: %s", row.name, r.Note)
			if r.FirstError != "" {
				fmt.Fprintf(&b, " (first error: %s)", r.FirstError)
			}
			b.WriteString("\n")
		}
	}
	return b.String()
}

// comparisonImage draws throughput above low-load latency.
func comparisonImage(by map[string]*Result) *image.RGBA {
	const w, h = 1000, 480
	thr := BarChart{Title: "Full-speed produce / publish throughput", Unit: "records/s", Width: w, Height: h}
	for _, n := range []string{"tandem3-acksall", "tandem3-acks1", "standalone-acksall", "standalone-acks1", "jetstream-async"} {
		if r := by[n]; r != nil {
			thr.Bars = append(thr.Bars, Bar{Label: chartLabel(n), Value: r.RecordsPerSec, Group: groupOf(n)})
		}
	}
	lat := BarChart{Title: "Latency at low load, p50 and p99", Unit: "ms", Width: w, Height: h}
	for _, n := range []string{"tandem3-acksall-sync", "tandem3-acksall-low", "standalone-acksall-sync", "jetstream-sync"} {
		if p50, p99, ok := latencyOf(by[n]); ok {
			lat.Bars = append(lat.Bars,
				Bar{Label: chartLabel(n) + " p50", Value: p50, Group: groupOf(n)},
				Bar{Label: chartLabel(n) + " p99", Value: p99, Group: groupOf(n)})
		}
	}
	img := image.NewRGBA(image.Rect(0, 0, w, 2*h))
	draw.Draw(img, image.Rect(0, 0, w, h), thr.Image(), image.Point{}, draw.Src)
	draw.Draw(img, image.Rect(0, h, w, 2*h), lat.Image(), image.Point{}, draw.Src)
	return img
}

func groupOf(name string) int {
	for _, r := range compareRows {
		if r.name == name {
			return r.group
		}
	}
	return 3
}

func chartLabel(name string) string {
	switch name {
	case "tandem3-acksall":
		return "Tandem x3 acks=-1"
	case "tandem3-acks1":
		return "Tandem x3 acks=1"
	case "standalone-acksall":
		return "standalone acks=-1"
	case "standalone-acks1":
		return "standalone acks=1"
	case "jetstream-async":
		return "JetStream R3 async"
	case "tandem3-acksall-low":
		return "Tandem x3 acks=-1 fixed rate"
	case "tandem3-acksall-sync":
		return "Tandem x3 acks=-1 1-at-a-time"
	case "standalone-acksall-low":
		return "standalone acks=-1 fixed rate"
	case "standalone-acksall-sync":
		return "standalone acks=-1 1-at-a-time"
	case "jetstream-sync":
		return "JetStream R3 sync"
	}
	return name
}

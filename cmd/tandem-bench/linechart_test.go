package main

import (
	"image"
	"image/color"
	"image/png"
	"os"
	"path/filepath"
	"testing"
)

func TestLineChartRendersDecodablePNG(t *testing.T) {
	tests := []struct {
		name string
		c    LineChart
	}{
		{"defaults", LineChart{Title: "Follower lag", YUnit: "ms", XLabel: "records/s", RefY: 20, RefLabel: "target",
			Series: []Series{{Name: "p99", Points: []Point{{10000, 4}, {50000, 12}, {90000, 800}}}}}},
		{"sized", LineChart{Width: 640, Height: 360, Series: []Series{{Name: "one", Points: []Point{{1, 1}}}}}},
		{"no series", LineChart{Title: "empty", Width: 300, Height: 200}},
		{"zeros only", LineChart{Series: []Series{{Points: []Point{{0, 0}, {5, 0}}}}}},
		{"too small to plot", LineChart{Title: "tiny", Width: 40, Height: 30, Series: []Series{{Points: []Point{{1, 1}}}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkRenderedPNG(t, tt.c.Render, tt.c.Width, tt.c.Height)
		})
	}
}

func TestLineChartYRangeCoversDecades(t *testing.T) {
	c := LineChart{RefY: 20, Series: []Series{{Points: []Point{{1, 3}, {2, 700}, {3, 0}}}}}
	if lo, hi := c.yRange(); lo != 1 || hi != 1000 {
		t.Errorf("yRange = %v..%v, want 1..1000", lo, hi)
	}
	c = LineChart{Series: []Series{{Points: []Point{{1, 10}}}}}
	if lo, hi := c.yRange(); lo != 10 || hi != 100 {
		t.Errorf("yRange of a single 10 = %v..%v, want 10..100", lo, hi)
	}
}

// centreOf returns the mean column and row of the pixels of colour col, and their count.
func centreOf(img *image.RGBA, col color.RGBA) (x, y float64, n int) {
	b := img.Bounds()
	for py := b.Min.Y; py < b.Max.Y; py++ {
		for px := b.Min.X; px < b.Max.X; px++ {
			if img.RGBAAt(px, py) == col {
				x += float64(px)
				y += float64(py)
				n++
			}
		}
	}
	if n > 0 {
		x /= float64(n)
		y /= float64(n)
	}
	return x, y, n
}

func TestLineChartPlacesPointsOnALogScale(t *testing.T) {
	// Two flat series, at 1 ms and 1000 ms, and the reference line at 31.6
	// ms: on a log axis the reference sits half way between them.
	c := LineChart{Width: 800, Height: 600, RefY: 31.62,
		Series: []Series{
			{Name: "", Points: []Point{{100, 1}, {200, 1}}, Group: 0},
			{Name: "", Points: []Point{{100, 1000}, {200, 1000}}, Group: 1},
		}}
	img := c.Image()
	_, yLow, nLow := centreOf(img, palette[0])
	_, yHigh, nHigh := centreOf(img, palette[1])
	_, yRef, nRef := centreOf(img, colRef)
	if nLow == 0 || nHigh == 0 || nRef == 0 {
		t.Fatalf("a line is missing: %d, %d, %d pixels", nLow, nHigh, nRef)
	}
	if yHigh >= yLow {
		t.Fatalf("1000 ms drawn at row %.0f, not above 1 ms at row %.0f", yHigh, yLow)
	}
	if mid := (yLow + yHigh) / 2; yRef < mid-4 || yRef > mid+4 {
		t.Errorf("reference line at row %.0f, want about %.0f (half way on a log scale)", yRef, mid)
	}
}

func TestLineChartOrdersPointsByX(t *testing.T) {
	got := sortedPoints([]Point{{3, 1}, {1, 5}, {2, 0}, {2, 7}})
	want := []Point{{1, 5}, {2, 7}, {3, 1}}
	if len(got) != len(want) {
		t.Fatalf("sortedPoints = %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("sortedPoints = %v, want %v", got, want)
		}
	}
}

func TestLagSweepChartFromResultFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(r *Result) {
		t.Helper()
		if err := writeResult(filepath.Join(dir, r.Name+".json"), r); err != nil {
			t.Fatal(err)
		}
	}
	write(&Result{Name: "lag-40000", Kind: "lag", RecordsPerSec: 39990, Latency: &LatencySummary{P50Ms: 3, P99Ms: 9},
		ApplyLag: &LatencySummary{P99Ms: 5}})
	write(&Result{Name: "lag-10000", Kind: "lag", RecordsPerSec: 10001, Latency: &LatencySummary{P50Ms: 2, P99Ms: 6}})
	write(&Result{Name: "cluster-acks1", Kind: "produce", RecordsPerSec: 200000, Latency: &LatencySummary{P50Ms: 1, P99Ms: 2}})
	results, err := loadResults(dir)
	if err != nil {
		t.Fatal(err)
	}
	c, err := lagSweepChart(results, "lag", 20)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Series) != 3 {
		t.Fatalf("%d series, want p50, p99 and apply lag", len(c.Series))
	}
	if p := c.Series[1].Points; len(p) != 2 {
		t.Fatalf("p99 series has %v, want the two lag runs only", p)
	}
	if a := c.Series[2].Points; len(a) != 1 || a[0] != (Point{39990, 5}) {
		t.Errorf("apply lag series %v, want the one run that measured it", a)
	}

	out := filepath.Join(dir, "sweep.png")
	if err := runChart(t.Context(), []string{"--in", dir, "--out", out, "--lag-sweep"}); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := png.Decode(f); err != nil {
		t.Fatalf("%s is not a PNG: %v", out, err)
	}

	var produceOnly []*Result
	for _, r := range results {
		if r.Kind != "lag" {
			produceOnly = append(produceOnly, r)
		}
	}
	if _, err := lagSweepChart(produceOnly, "lag", 20); err == nil {
		t.Error("a chart with no lag result gave no error")
	}
}

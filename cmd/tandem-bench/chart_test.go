package main

import (
	"bytes"
	"image/png"
	"io"
	"reflect"
	"testing"
)

func TestChartRendersDecodablePNG(t *testing.T) {
	tests := []struct {
		name string
		c    BarChart
	}{
		{"defaults", BarChart{Title: "Throughput", Unit: "MB/s", Bars: []Bar{
			{Label: "standalone produce acks=1", Value: 150.5},
			{Label: "three-node produce acks=-1", Value: 90},
			{Label: "JetStream R3 file, async publish", Value: 60, Group: 1},
		}}},
		{"sized", BarChart{Title: "p99", Unit: "ms", Width: 640, Height: 360, Bars: []Bar{{Label: "a", Value: 0.25}}}},
		{"no bars", BarChart{Title: "empty", Width: 300, Height: 200}},
		{"too small to plot", BarChart{Title: "tiny", Width: 40, Height: 30, Bars: []Bar{{Label: "x", Value: 1}}}},
		{"many bars", BarChart{Width: 400, Height: 300, Bars: func() []Bar {
			var b []Bar
			for i := 0; i < 40; i++ {
				b = append(b, Bar{Label: "a very long label that must be wrapped", Value: float64(i), Group: i})
			}
			return b
		}()}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkRenderedPNG(t, tt.c.Render, tt.c.Width, tt.c.Height)
		})
	}
}

// checkRenderedPNG renders a chart and checks that it is a PNG of
// width x height pixels (900 x 500 when width is 0).
func checkRenderedPNG(t *testing.T, render func(io.Writer) error, width, height int) {
	t.Helper()
	var buf bytes.Buffer
	if err := render(&buf); err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(&buf)
	if err != nil {
		t.Fatalf("output is not a PNG: %v", err)
	}
	if width == 0 {
		width, height = 900, 500
	}
	if b := img.Bounds(); b.Dx() != width || b.Dy() != height {
		t.Errorf("image is %dx%d, want %dx%d", b.Dx(), b.Dy(), width, height)
	}
}

func TestChartDrawsBarsInTheirColour(t *testing.T) {
	c := BarChart{Title: "t", Width: 600, Height: 400, Bars: []Bar{{Label: "ours", Value: 10}, {Label: "theirs", Value: 5, Group: 1}}}
	img := c.Image()
	count := map[int]int{}
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			px := img.RGBAAt(x, y)
			for g, col := range palette[:2] {
				if px == col {
					count[g]++
				}
			}
		}
	}
	if count[0] == 0 || count[1] == 0 {
		t.Fatalf("bar pixels per group: %v", count)
	}
	// The taller bar covers about twice the area of the shorter one.
	if ratio := float64(count[0]) / float64(count[1]); ratio < 1.8 || ratio > 2.2 {
		t.Errorf("bar areas ratio %.2f, want about 2", ratio)
	}
}

func TestNiceStepAndWrap(t *testing.T) {
	steps := []struct {
		max  float64
		want float64
	}{{0, 1}, {9, 2}, {100, 20}, {480, 100}, {0.3, 0.1}, {2500, 500}}
	for _, s := range steps {
		if got := niceStep(s.max, 5); got != s.want {
			t.Errorf("niceStep(%v) = %v, want %v", s.max, got, s.want)
		}
	}
	wraps := []struct {
		in    string
		width int
		lines int
		want  []string
	}{
		{"standalone produce acks=1", 12, 3, []string{"standalone", "produce", "acks=1"}},
		{"short", 12, 3, []string{"short"}},
		{"one two three four five six", 7, 2, []string{"one two", "thre..."}},
		{"abcdefghij", 4, 3, []string{"abcd", "efgh", "ij"}},
		{"", 5, 2, nil},
	}
	for _, w := range wraps {
		if got := wrapText(w.in, w.width, w.lines); !reflect.DeepEqual(got, w.want) {
			t.Errorf("wrapText(%q, %d, %d) = %q, want %q", w.in, w.width, w.lines, got, w.want)
		}
	}
}

func TestFontCoversLabels(t *testing.T) {
	for _, r := range "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ .,:/-=()%+_<>*?" {
		if _, ok := glyphs[r]; !ok {
			t.Errorf("no glyph for %q", r)
		}
	}
}

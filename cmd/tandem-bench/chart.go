package main

import (
	"context"
	"flag"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"math"
	"os"
	"strings"
	"unicode"
)

// Bar is one bar of a chart.
type Bar struct {
	Label string
	Value float64
	Group int // colour index: bars of one system share a colour
}

// BarChart is a titled vertical bar chart with a value printed over each bar,
// a labelled y axis and wrapped labels under the bars. It draws with the
// standard library and the built-in 5x7 font (font.go), so it needs no
// graphics or font package.
type BarChart struct {
	Title  string
	Unit   string // y axis unit, printed next to the title
	Bars   []Bar
	Width  int // pixels (default 900)
	Height int // pixels (default 500)
}

var (
	colBackground = color.RGBA{255, 255, 255, 255}
	colInk        = color.RGBA{30, 30, 30, 255}
	colGrid       = color.RGBA{225, 225, 225, 255}
	palette       = []color.RGBA{
		{46, 110, 184, 255}, // Tandem: blue
		{221, 132, 38, 255}, // JetStream: orange
		{120, 120, 120, 255},
		{64, 160, 90, 255},
		{170, 60, 60, 255},
	}
)

// Render draws the chart and encodes it as PNG to w.
func (c BarChart) Render(w io.Writer) error {
	return png.Encode(w, c.Image())
}

// Image draws the chart.
func (c BarChart) Image() *image.RGBA {
	title := c.Title
	if c.Unit != "" {
		title += " (" + c.Unit + ")"
	}
	img, width, height := newCanvas(c.Width, c.Height, title)
	const s = titleScale
	cellH := (glyphH + 1) * s

	// Axis scale with "nice" steps.
	maxV := 0.0
	for _, b := range c.Bars {
		maxV = math.Max(maxV, b.Value)
	}
	step, top := niceAxis(maxV, 5)

	// Plot area: room for y labels on the left and 3 lines of bar labels below.
	yLabelW := 0
	for v := 0.0; v <= top+step/2; v += step {
		yLabelW = max(yLabelW, textWidth(formatTick(v, step), 1))
	}
	left := 16 + yLabelW + 8
	right := width - 16
	plotTop := 10 + cellH + 24
	labelLines := 3
	bottom := height - 12 - labelLines*(glyphH+3)*1 - 8
	if bottom <= plotTop+10 || right <= left+10 {
		return img // too small to draw more than the title
	}
	plotH := float64(bottom - plotTop)

	// Grid lines and y labels (scale 1 to leave room for the bars).
	for v := 0.0; v <= top+step/2; v += step {
		y := bottom - int(math.Round(v/top*plotH))
		hline(img, left, right, y, colGrid)
		lbl := formatTick(v, step)
		drawText(img, left-8-textWidth(lbl, 1), y-glyphH/2, lbl, 1, colInk)
	}
	vline(img, left, plotTop, bottom, colInk)
	hline(img, left, right, bottom, colInk)

	if len(c.Bars) == 0 {
		return img
	}
	slot := float64(right-left) / float64(len(c.Bars))
	for i, b := range c.Bars {
		x0 := left + int(float64(i)*slot+slot*0.2)
		x1 := left + int(float64(i+1)*slot-slot*0.2)
		if x1 <= x0 {
			x1 = x0 + 1
		}
		h := 0
		if b.Value > 0 {
			h = int(math.Round(b.Value / top * plotH))
		}
		col := paletteColor(b.Group)
		fill(img, image.Rect(x0, bottom-h, x1, bottom), col)

		// Value over the bar: scale 2 if it fits the slot, else 1.
		val := formatValue(b.Value)
		vs := s
		if textWidth(val, vs) > int(slot) {
			vs = 1
		}
		cx := (x0 + x1) / 2
		drawText(img, cx-textWidth(val, vs)/2, bottom-h-(glyphH*vs)-4, val, vs, colInk)

		// Label under the bar, wrapped to the slot width.
		maxChars := max(1, int(slot)/(glyphW+1)-1)
		for j, ln := range wrapText(b.Label, maxChars, labelLines) {
			drawText(img, cx-textWidth(ln, 1)/2, bottom+8+j*(glyphH+3), ln, 1, colInk)
		}
	}
	return img
}

// titleScale is the text scale of chart titles: 10x14 px glyphs.
const titleScale = 2

// newCanvas returns a white image of width x height pixels (900 x 500
// when not set) with title centred at the top, and its size.
func newCanvas(width, height int, title string) (*image.RGBA, int, int) {
	if width <= 0 {
		width = 900
	}
	if height <= 0 {
		height = 500
	}
	img := image.NewRGBA(image.Rect(0, 0, width, height))
	fill(img, img.Bounds(), colBackground)
	drawText(img, (width-textWidth(title, titleScale))/2, 10, title, titleScale, colInk)
	return img, width, height
}

// paletteColor is the colour of group g (any int: the palette repeats).
func paletteColor(g int) color.RGBA {
	n := len(palette)
	return palette[((g%n)+n)%n]
}

// niceAxis returns the step of about n intervals from 0 to maxV
// (niceStep) and the axis end: the first step at or above maxV.
func niceAxis(maxV float64, n int) (step, top float64) {
	step = niceStep(maxV, n)
	top = step * math.Ceil(maxV/step)
	if top == 0 {
		top = step
	}
	return step, top
}

// niceStep returns a step of 1, 2 or 5 times a power of ten that cuts
// [0, maxV] into about n intervals.
func niceStep(maxV float64, n int) float64 {
	if maxV <= 0 || n <= 0 {
		return 1
	}
	raw := maxV / float64(n)
	pow := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if raw <= m*pow {
			return m * pow
		}
	}
	return 10 * pow
}

func formatTick(v, step float64) string {
	if step >= 1 {
		return fmt.Sprintf("%.0f", v)
	}
	dec := int(math.Ceil(-math.Log10(step)))
	return fmt.Sprintf("%.*f", dec, v)
}

func formatValue(v float64) string {
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

// wrapText breaks s into at most maxLines lines of at most width characters,
// at spaces where it can; the last line is cut with "..." if s is longer.
func wrapText(s string, width, maxLines int) []string {
	words := strings.Fields(s)
	var lines []string
	cur := ""
	for _, w := range words {
		for len(w) > width { // a word longer than a line is split
			if cur != "" {
				lines = append(lines, cur)
				cur = ""
			}
			lines = append(lines, w[:width])
			w = w[width:]
		}
		switch {
		case cur == "":
			cur = w
		case len(cur)+1+len(w) <= width:
			cur += " " + w
		default:
			lines = append(lines, cur)
			cur = w
		}
	}
	if cur != "" {
		lines = append(lines, cur)
	}
	if len(lines) > maxLines {
		last := lines[maxLines-1]
		if len(last) > width-3 {
			last = last[:max(0, width-3)]
		}
		lines = append(lines[:maxLines-1], last+"...")
	}
	return lines
}

func textWidth(s string, scale int) int {
	n := len([]rune(s))
	if n == 0 {
		return 0
	}
	return (n*(glyphW+1) - 1) * scale
}

// drawText draws s with its top-left corner at (x, y), each font pixel as a
// scale x scale square.
func drawText(img *image.RGBA, x, y int, s string, scale int, col color.RGBA) {
	for _, r := range s {
		g, ok := glyphs[unicode.ToUpper(r)]
		if !ok {
			g = glyphs['?']
		}
		for row := 0; row < glyphH; row++ {
			for c := 0; c < glyphW; c++ {
				if g[row]&(1<<(glyphW-1-c)) != 0 {
					fill(img, image.Rect(x+c*scale, y+row*scale, x+(c+1)*scale, y+(row+1)*scale), col)
				}
			}
		}
		x += (glyphW + 1) * scale
	}
}

func fill(img *image.RGBA, r image.Rectangle, col color.RGBA) {
	r = r.Intersect(img.Bounds())
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			img.SetRGBA(x, y, col)
		}
	}
}

func hline(img *image.RGBA, x0, x1, y int, col color.RGBA) {
	fill(img, image.Rect(x0, y, x1+1, y+1), col)
}

func vline(img *image.RGBA, x, y0, y1 int, col color.RGBA) {
	fill(img, image.Rect(x, y0, x+1, y1+1), col)
}

// metricOf picks one figure of a result for a chart.
func metricOf(r *Result, metric string) (float64, error) {
	lat := func(f func(*LatencySummary) float64) float64 {
		if r.Latency == nil {
			return 0
		}
		return f(r.Latency)
	}
	switch metric {
	case "mbps":
		return r.MBps, nil
	case "records":
		return r.RecordsPerSec, nil
	case "p50":
		return lat(func(l *LatencySummary) float64 { return l.P50Ms }), nil
	case "p99":
		return lat(func(l *LatencySummary) float64 { return l.P99Ms }), nil
	case "p999":
		return lat(func(l *LatencySummary) float64 { return l.P999Ms }), nil
	case "rss":
		if r.RSS == nil {
			return 0, nil
		}
		return mib(r.RSS.PeakKB), nil
	}
	return 0, fmt.Errorf("%w: unknown metric %q (mbps, records, p50, p99, p999, rss)", errUsage, metric)
}

var metricUnits = map[string]string{
	"mbps": "MB/s", "records": "records/s", "p50": "ms", "p99": "ms", "p999": "ms", "rss": "MiB",
}

// runChart implements `tandem-bench chart`.
func runChart(_ context.Context, args []string) error {
	fs := flag.NewFlagSet("chart", flag.ContinueOnError)
	in := fs.String("in", "", "report JSON file or directory of result files (required)")
	out := fs.String("out", "", "PNG file to write (required)")
	metric := fs.String("metric", "mbps", "figure to chart: mbps, records, p50, p99, p999, rss")
	names := fs.String("names", "", "comma-separated result names to chart, in this order (default: all that have the metric)")
	title := fs.String("title", "Tandem benchmark", "chart title")
	width := fs.Int("width", 900, "image width in pixels")
	height := fs.Int("height", 500, "image height in pixels")
	sweep := fs.Bool("lag-sweep", false, "instead of bars: follower lag p50/p99 of every lag result against its produce rate (scripts/bench.sh lag-sweep)")
	targetMs := fs.Float64("target-ms", 20, "with --lag-sweep: draw the lag target at this many ms (0: none)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *in == "" || *out == "" {
		return fmt.Errorf("%w: chart needs --in and --out", errUsage)
	}
	if *sweep {
		results, err := loadResults(*in)
		if err != nil {
			return err
		}
		c, err := lagSweepChart(results, *title, *targetMs)
		if err != nil {
			return err
		}
		c.Width, c.Height = *width, *height
		if err := writePNG(*out, c.Render); err != nil {
			return err
		}
		fmt.Printf("wrote %s (%d lag runs)\n", *out, len(c.Series[0].Points))
		return nil
	}
	if _, ok := metricUnits[*metric]; !ok {
		_, err := metricOf(&Result{}, *metric)
		return err
	}
	results, err := loadResults(*in)
	if err != nil {
		return err
	}
	results = orderResults(results)
	if *names != "" {
		by := map[string]*Result{}
		for _, r := range results {
			by[r.Name] = r
		}
		var picked []*Result
		for _, n := range splitBrokers(*names) {
			if r, ok := by[n]; ok {
				picked = append(picked, r)
			}
		}
		results = picked
	}
	c := BarChart{Title: *title, Unit: metricUnits[*metric], Width: *width, Height: *height}
	for _, r := range results {
		v, err := metricOf(r, *metric)
		if err != nil {
			return err
		}
		if v == 0 {
			continue
		}
		g := 0
		switch {
		case strings.HasPrefix(r.Name, "jetstream"):
			g = 1
		case r.Kind == "disk":
			g = 2
		}
		c.Bars = append(c.Bars, Bar{Label: rowLabel(r), Value: v, Group: g})
	}
	if len(c.Bars) == 0 {
		return fmt.Errorf("bench: no result has a %s figure", *metric)
	}
	if err := writePNG(*out, c.Render); err != nil {
		return err
	}
	fmt.Printf("wrote %s (%d bars, %s)\n", *out, len(c.Bars), *metric)
	return nil
}

// writePNG creates path and fills it with render.
func writePNG(path string, render func(io.Writer) error) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("bench: chart: %w", err)
	}
	if err := render(f); err != nil {
		f.Close()
		return fmt.Errorf("bench: chart: encode %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("bench: chart: %w", err)
	}
	return nil
}

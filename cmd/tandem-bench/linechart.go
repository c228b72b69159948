package main

import (
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"math"
	"strconv"
)

// Point is one measurement of a LineChart series.
type Point struct{ X, Y float64 }

// Series is one line of a LineChart: its points are joined in X order.
type Series struct {
	Name   string
	Points []Point
	Group  int // colour index into palette
}

// LineChart plots series of (x, y) points with a linear x axis from 0 and a
// logarithmic y axis (one grid line per 1, 2 and 5 of each decade), so that
// latencies of milliseconds and of seconds show on one picture. A
// horizontal reference line (a target) can be drawn across it. Like
// BarChart it draws with the standard library and font.go only.
type LineChart struct {
	Title    string
	XLabel   string // under the x axis
	YUnit    string // printed after the title
	Series   []Series
	RefY     float64 // > 0: a dashed line at this y
	RefLabel string
	Width    int // pixels (default 900)
	Height   int // pixels (default 500)
}

var colRef = color.RGBA{200, 40, 40, 255}

// Render draws the chart and encodes it as PNG to w.
func (c LineChart) Render(w io.Writer) error {
	return png.Encode(w, c.Image())
}

// yRange returns the decades [lo, hi] (powers of ten) that hold every
// positive y and the reference line.
func (c LineChart) yRange() (lo, hi float64) {
	minY, maxY := math.Inf(1), math.Inf(-1)
	note := func(y float64) {
		if y > 0 {
			minY, maxY = math.Min(minY, y), math.Max(maxY, y)
		}
	}
	for _, s := range c.Series {
		for _, p := range s.Points {
			note(p.Y)
		}
	}
	note(c.RefY)
	if math.IsInf(minY, 1) {
		return 1, 10
	}
	lo = math.Pow(10, math.Floor(math.Log10(minY)))
	hi = math.Pow(10, math.Ceil(math.Log10(maxY)))
	if hi <= lo {
		hi = lo * 10
	}
	return lo, hi
}

// Image draws the chart.
func (c LineChart) Image() *image.RGBA {
	title := c.Title
	if c.YUnit != "" {
		title += " (" + c.YUnit + ", log scale)"
	}
	img, width, height := newCanvas(c.Width, c.Height, title)
	const s = titleScale

	lo, hi := c.yRange()
	maxX := 0.0
	for _, sr := range c.Series {
		for _, p := range sr.Points {
			maxX = math.Max(maxX, p.X)
		}
	}
	xStep, xTop := niceAxis(maxX, 6)

	var yTicks []float64
	for d := lo; d <= hi*1.0001; d *= 10 {
		for _, m := range []float64{1, 2, 5} {
			if v := d * m; v <= hi*1.0001 {
				yTicks = append(yTicks, v)
			}
		}
	}
	yLabelW := 0
	for _, v := range yTicks {
		yLabelW = max(yLabelW, textWidth(logTick(v), 1))
	}
	left := 16 + yLabelW + 8
	right := width - 28 // room for half of the last x label
	plotTop := 10 + (glyphH+1)*s + 16
	legendH := len(c.Series) * (glyphH + 6)
	bottom := height - 12 - 2*(glyphH+4) - 4
	if bottom <= plotTop+legendH+10 || right <= left+10 {
		return img // too small to draw more than the title
	}
	plotW, plotH := float64(right-left), float64(bottom-plotTop)
	px := func(x float64) int { return left + int(math.Round(x/xTop*plotW)) }
	py := func(y float64) int {
		f := (math.Log10(y) - math.Log10(lo)) / (math.Log10(hi) - math.Log10(lo))
		return bottom - int(math.Round(f*plotH))
	}

	for _, v := range yTicks {
		y := py(v)
		hline(img, left, right, y, colGrid)
		lbl := logTick(v)
		drawText(img, left-8-textWidth(lbl, 1), y-glyphH/2, lbl, 1, colInk)
	}
	for v := 0.0; v <= xTop+xStep/2; v += xStep {
		x := px(v)
		vline(img, x, plotTop, bottom, colGrid)
		lbl := formatTick(v, xStep)
		drawText(img, x-textWidth(lbl, 1)/2, bottom+6, lbl, 1, colInk)
	}
	vline(img, left, plotTop, bottom, colInk)
	hline(img, left, right, bottom, colInk)
	if c.XLabel != "" {
		drawText(img, (left+right-textWidth(c.XLabel, 1))/2, bottom+6+glyphH+6, c.XLabel, 1, colInk)
	}

	if c.RefY > 0 {
		y := py(c.RefY)
		for x := left; x < right; x += 10 {
			fill(img, image.Rect(x, y, min(x+6, right), y+2), colRef)
		}
		if c.RefLabel != "" {
			drawText(img, right-textWidth(c.RefLabel, 1)-4, y-glyphH-4, c.RefLabel, 1, colRef)
		}
	}

	for _, sr := range c.Series {
		col := paletteColor(sr.Group)
		pts := sortedPoints(sr.Points)
		for i, p := range pts {
			x, y := px(p.X), py(p.Y)
			fill(img, image.Rect(x-3, y-3, x+4, y+4), col)
			if i > 0 {
				q := pts[i-1]
				drawLine(img, px(q.X), py(q.Y), x, y, col)
			}
		}
	}

	// Legend, top left inside the plot (low rates have the low latencies,
	// so the top left corner is the emptiest).
	i := 0
	for _, sr := range c.Series {
		if sr.Name == "" {
			continue
		}
		col := paletteColor(sr.Group)
		y := plotTop + 6 + i*(glyphH+6)
		i++
		fill(img, image.Rect(left+10, y+1, left+24, y+glyphH-1), col)
		drawText(img, left+30, y, sr.Name, 1, colInk)
	}
	return img
}

// logTick labels a tick of the log axis: 0.5, 1, 20, 5000.
func logTick(v float64) string {
	if v >= 1 {
		return fmt.Sprintf("%.0f", v)
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}

// sortedPoints returns the positive-y points of ps in x order (a log axis
// has no place for 0).
func sortedPoints(ps []Point) []Point {
	var out []Point
	for _, p := range ps {
		if p.Y > 0 {
			out = append(out, p)
		}
	}
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && out[j].X < out[j-1].X; j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}

// drawLine draws a two-pixel-wide line from (x0, y0) to (x1, y1).
func drawLine(img *image.RGBA, x0, y0, x1, y1 int, col color.RGBA) {
	steps := max(abs(x1-x0), abs(y1-y0))
	if steps == 0 {
		fill(img, image.Rect(x0, y0, x0+2, y0+2), col)
		return
	}
	for i := 0; i <= steps; i++ {
		x := x0 + int(math.Round(float64(i)*float64(x1-x0)/float64(steps)))
		y := y0 + int(math.Round(float64(i)*float64(y1-y0)/float64(steps)))
		fill(img, image.Rect(x, y, x+2, y+2), col)
	}
}

func abs(v int) int {
	if v < 0 {
		return -v
	}
	return v
}

// lagSweepChart builds the chart of `tandem-bench chart --lag-sweep`: the
// follower lag of every lag result against the rate it was produced at.
func lagSweepChart(results []*Result, title string, targetMs float64) (LineChart, error) {
	c := LineChart{Title: title, XLabel: "RECORDS/S PRODUCED TO THE LEADER (ACKS=1)", YUnit: "ms",
		RefY: targetMs}
	if targetMs > 0 {
		c.RefLabel = fmt.Sprintf("target p99 %s ms", formatValue(targetMs))
	}
	p50 := Series{Name: "lag p50 (leader ack to follower serves it)", Group: 0}
	p99 := Series{Name: "lag p99", Group: 4}
	apply := Series{Name: "apply lag p99 (leader durable to follower applied)", Group: 3}
	for _, r := range results {
		if r.Kind != "lag" || r.Latency == nil || r.RecordsPerSec <= 0 {
			continue
		}
		p50.Points = append(p50.Points, Point{r.RecordsPerSec, r.Latency.P50Ms})
		p99.Points = append(p99.Points, Point{r.RecordsPerSec, r.Latency.P99Ms})
		if r.ApplyLag != nil {
			apply.Points = append(apply.Points, Point{r.RecordsPerSec, r.ApplyLag.P99Ms})
		}
	}
	if len(p99.Points) == 0 {
		return c, fmt.Errorf("bench: no lag result to chart")
	}
	c.Series = []Series{p50, p99}
	if len(apply.Points) > 0 {
		c.Series = append(c.Series, apply)
	}
	return c, nil
}

package loadgen

import (
	"fmt"
	"html"
	"io"
	"math"
	"strings"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// WriteHgrm writes a histogram's percentile distribution in the .hgrm text
// format of HdrHistogram (values in microseconds), which the HdrHistogram
// plotter and other tools read.
func WriteHgrm(w io.Writer, h *hdrhistogram.Histogram) error {
	_, err := h.PercentilesPrint(w, 5, 1000) // ns recorded, µs printed
	return err
}

// Plot sizes, in SVG user units.
const (
	plotW, plotH           = 740, 400
	padL, padR, padT, padB = 70, 45, 40, 50
	plotDecades            = 5 // percentiles up to 99.999
)

// WritePlotSVG draws latency by percentile, the usual HdrHistogram chart:
// the x axis spreads the tail (90%, 99%, 99.9%, ... are equally spaced),
// the y axis is microseconds. It needs nothing but a browser to view.
func WritePlotSVG(w io.Writer, title string, h *hdrhistogram.Histogram) error {
	type point struct{ x, y float64 }
	var pts []point
	maxY := 1.0
	for i := 0; i <= plotDecades*20; i++ {
		x := float64(i) / 20 // decades of 1/(1-q)
		q := 100 * (1 - math.Pow(10, -x))
		y := float64(h.ValueAtQuantile(q)) / 1e3
		pts = append(pts, point{x, y})
		maxY = max(maxY, y)
	}
	maxY = niceCeil(maxY)
	sx := func(x float64) float64 { return padL + x/plotDecades*(plotW-padL-padR) }
	sy := func(y float64) float64 { return plotH - padB - y/maxY*(plotH-padT-padB) }

	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", plotW, plotH)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="white"/>`+"\n", plotW, plotH)
	fmt.Fprintf(&b, `<text x="%d" y="22" font-size="14">%s</text>`+"\n", padL, html.EscapeString(title))
	for i := 0; i <= plotDecades; i++ { // x grid: 0%, 90%, 99%, ...
		label := "0%"
		if i > 0 {
			label = strings.TrimSuffix(fmt.Sprintf("%.*f", max(0, i-2), 100*(1-math.Pow(10, -float64(i)))), ".") + "%"
		}
		x := sx(float64(i))
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#ddd"/>`+"\n", x, padT, x, plotH-padB)
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">%s</text>`+"\n", x, plotH-padB+18, label)
	}
	for i := 0; i <= 4; i++ { // y grid
		v := maxY * float64(i) / 4
		y := sy(v)
		fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#ddd"/>`+"\n", padL, y, plotW-padR, y)
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end">%g</text>`+"\n", padL-6, y+4, v)
	}
	fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle">percentile</text>`+"\n", (plotW+padL-padR)/2, plotH-12)
	fmt.Fprintf(&b, `<text transform="translate(16 %d) rotate(-90)" text-anchor="middle">latency (µs)</text>`+"\n", (plotH+padT-padB)/2)
	b.WriteString(`<polyline fill="none" stroke="#0b63c5" stroke-width="2" points="`)
	for _, p := range pts {
		fmt.Fprintf(&b, "%.1f,%.1f ", sx(p.x), sy(p.y))
	}
	b.WriteString("\"/>\n</svg>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// niceCeil rounds v up to 1, 2 or 5 times a power of ten.
func niceCeil(v float64) float64 {
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if v <= m*p {
			return m * p
		}
	}
	return 10 * p
}

package bench

import (
	"fmt"
	"image/color"
	"io"
	"maps"
	"math"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"gonum.org/v1/plot"

	"github.com/slither-go/slither/capacity"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
)

var pyExecutors = []string{"py-threads", "py-processes"}

// analyze computes the tracked ratios and the recommendations.
func (r *Report) analyze() {
	per := func(w, ex string) float64 { // ns per item, 0 if unknown
		c, ok := r.Cell(w, ex)
		if !ok || c.Skipped || c.ItemsPerSec == 0 || !c.Correct {
			return 0
		}
		return 1e9 / c.ItemsPerSec
	}
	ratio := func(name, note string, a, b float64) {
		if a > 0 && b > 0 {
			r.Ratios = append(r.Ratios, Ratio{Name: name, Value: b / a, Note: note})
		}
	}
	ratio("thread pool vs ThreadPoolExecutor, no-op batch 64 (overhead per item)",
		fmt.Sprintf("%.0f ns vs %.0f ns per item", per("noop-b64", "thread"), per("noop-b64", "py-threads")),
		per("noop-b64", "thread"), per("noop-b64", "py-threads"))
	ratio("process pool vs ProcessPoolExecutor, no-op batch 64 (chunks of 64)",
		fmt.Sprintf("%.0f ns vs %.0f ns per item", per("noop-b64", "process-ft"), per("noop-b64", "py-processes")),
		per("noop-b64", "process-ft"), per("noop-b64", "py-processes"))
	ratio("CPU-bound: thread pool vs serial", "items/s ratio", per("cpu", "thread"), per("cpu", "serial"))
	ratio("CPU-bound: thread pool vs ProcessPoolExecutor", "items/s ratio", per("cpu", "thread"), per("cpu", "py-processes"))

	for _, w := range r.Workloads {
		if w == "segfault" {
			var survivors []string
			for _, ex := range Executors {
				if c, ok := r.Cell(w, ex); ok && c.Correct {
					survivors = append(survivors, ex)
				}
			}
			r.Recommendations = append(r.Recommendations, fmt.Sprintf("%s: only %s survive a crash in one call: route crash-prone code there",
				w, strings.Join(survivors, " and ")))
			continue
		}
		best, bestRate := "", 0.0
		for _, ex := range Executors {
			if ex == "serial" { // the baseline, not a way to run work in parallel
				continue
			}
			if c, ok := r.Cell(w, ex); ok && c.Correct && c.ItemsPerSec > bestRate {
				best, bestRate = ex, c.ItemsPerSec
			}
		}
		if best == "" {
			continue
		}
		line := fmt.Sprintf("%s: %s (%s items/s", w, best, rate(bestRate))
		if s, ok := r.Cell(w, "serial"); ok && s.Correct && s.ItemsPerSec > 0 {
			line += fmt.Sprintf(", %.2fx serial", bestRate/s.ItemsPerSec)
		}
		pyBest := 0.0
		for _, ex := range pyExecutors {
			if c, ok := r.Cell(w, ex); ok && c.Correct {
				pyBest = math.Max(pyBest, c.ItemsPerSec)
			}
		}
		if pyBest > 0 && best != "py-threads" && best != "py-processes" {
			line += fmt.Sprintf(", %.2fx the best Python executor", bestRate/pyBest)
		}
		r.Recommendations = append(r.Recommendations, line+")")
	}
}

func rate(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%.2fM", v/1e6)
	case v >= 1e3:
		return fmt.Sprintf("%.1fk", v/1e3)
	}
	return fmt.Sprintf("%.1f", v)
}

func mib(b uint64) string { return fmt.Sprintf("%.0f MiB", float64(b)/(1<<20)) }

// WriteTable writes the report for people: items/s per cell (! marks a
// wrong result or lost updates, - a cell that did not run), then latency,
// memory and the notes, the ratios and the recommendations.
func (r *Report) WriteTable(w io.Writer) error {
	var b strings.Builder
	mode := "full"
	if r.Quick {
		mode = "quick"
	}
	fmt.Fprintf(&b, "slither bench (%s run) — %s, %s, %d workers each\n", mode, r.Date.Format("2006-01-02"), r.Machine, r.Workers)
	for _, p := range slices.Sorted(maps.Keys(r.Pythons)) {
		fmt.Fprintf(&b, "  %s: %s\n", p, r.Pythons[p])
	}
	b.WriteString("\nitems/s (! = wrong results or lost updates; segfault row: survives?)\n")
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprint(tw, "workload\t")
	for _, ex := range Executors {
		fmt.Fprintf(tw, "%s\t", ex)
	}
	fmt.Fprintln(tw)
	for _, wl := range r.Workloads {
		fmt.Fprintf(tw, "%s\t", wl)
		for _, ex := range Executors {
			c, _ := r.Cell(wl, ex)
			switch {
			case c.Skipped:
				fmt.Fprint(tw, "-\t")
			case wl == "segfault":
				fmt.Fprintf(tw, "%s\t", map[bool]string{true: "yes", false: "no"}[c.Correct])
			case c.ItemsPerSec == 0:
				fmt.Fprint(tw, "error\t")
			case !c.Correct:
				fmt.Fprintf(tw, "%s !\t", rate(c.ItemsPerSec))
			default:
				fmt.Fprintf(tw, "%s\t", rate(c.ItemsPerSec))
			}
		}
		fmt.Fprintln(tw)
	}
	tw.Flush()

	b.WriteString("\nper batch p50 / p99, and peak RSS of the process tree\n")
	tw = tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	fmt.Fprint(tw, "workload\t")
	for _, ex := range Executors {
		fmt.Fprintf(tw, "%s\t", ex)
	}
	fmt.Fprintln(tw)
	for _, wl := range r.Workloads {
		if wl == "segfault" {
			continue
		}
		fmt.Fprintf(tw, "%s\t", wl)
		for _, ex := range Executors {
			c, _ := r.Cell(wl, ex)
			if c.Skipped || c.ItemsPerSec == 0 {
				fmt.Fprint(tw, "-\t")
				continue
			}
			fmt.Fprintf(tw, "%s / %s, %s\t", dur(c.P50), dur(c.P99), mib(c.PeakRSS))
		}
		fmt.Fprintln(tw)
	}
	tw.Flush()

	b.WriteString("\nnotes\n")
	for _, c := range r.Cells {
		if c.Note != "" && (c.Workload == "segfault" || c.Workload == "shared-rmw" || !c.Correct || c.Skipped) {
			fmt.Fprintf(&b, "  %-12s %-13s %s\n", c.Workload, c.Executor, c.Note)
		}
	}
	if len(r.Ratios) > 0 {
		b.WriteString("\nratios\n")
		for _, q := range r.Ratios {
			fmt.Fprintf(&b, "  %.2fx  %s (%s)\n", q.Value, q.Name, q.Note)
		}
	}
	b.WriteString("\nrecommendations (fastest correct parallel executor per workload on this machine)\n")
	for _, s := range r.Recommendations {
		fmt.Fprintf(&b, "  %s\n", s)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func dur(d time.Duration) string {
	switch {
	case d >= time.Second:
		return fmt.Sprintf("%.2fs", d.Seconds())
	case d >= time.Millisecond:
		return fmt.Sprintf("%.1fms", float64(d)/1e6)
	}
	return fmt.Sprintf("%.0fus", float64(d)/1e3)
}

// Plot draws items/s per workload and executor (log scale) as a PNG or
// SVG, by path's extension.
func (r *Report) Plot(path string) error {
	p := plot.New()
	p.Title.Text = fmt.Sprintf("slither bench, %s, %d workers", r.Date.Format("2006-01-02"), r.Workers)
	// Bars from 0 cannot sit on a log axis: plot log10 on a linear one.
	p.Y.Label.Text = "log10(items/s)"
	var wls []string
	for _, w := range r.Workloads {
		if w != "segfault" {
			wls = append(wls, w)
		}
	}
	colors := []color.RGBA{{31, 119, 180, 255}, {255, 127, 14, 255}, {44, 160, 44, 255}, {214, 39, 40, 255}, {148, 103, 189, 255}, {127, 127, 127, 255}}
	width := vg.Points(9)
	for i, ex := range Executors {
		vals := make(plotter.Values, len(wls))
		for j, w := range wls {
			c, _ := r.Cell(w, ex)
			vals[j] = math.Log10(math.Max(c.ItemsPerSec, 1))
		}
		bars, err := plotter.NewBarChart(vals, width)
		if err != nil {
			return err
		}
		bars.Color = colors[i%len(colors)]
		bars.LineStyle.Width = 0
		bars.Offset = width * vg.Length(float64(i)-float64(len(Executors)-1)/2)
		p.Add(bars)
		p.Legend.Add(ex, bars)
	}
	p.Legend.Top = true
	p.Y.Max = math.Ceil(p.Y.Max) + 1.5 // room for the legend
	p.NominalX(wls...)
	return p.Save(26*vg.Centimeter, 13*vg.Centimeter, path)
}

// Measured distils the run for the capacity model (see capacity.Measured):
// the fastest correct parallel executor per workload and each executor's
// median no-op call.
func (r *Report) Measured() capacity.Measured {
	m := capacity.Measured{Date: r.Date, Machine: r.Machine, Winners: map[string]string{}, CallOverhead: map[string]time.Duration{}}
	for _, w := range r.Workloads {
		best, rate := "", 0.0
		for _, ex := range Executors {
			if c, ok := r.Cell(w, ex); ok && ex != "serial" && c.Correct && c.ItemsPerSec > rate {
				best, rate = ex, c.ItemsPerSec
			}
		}
		if w == "segfault" {
			continue
		}
		if best != "" {
			m.Winners[w] = best
		}
	}
	for _, ex := range Executors {
		if c, ok := r.Cell("noop-b1", ex); ok && c.Correct && ex != "serial" {
			m.CallOverhead[ex] = c.P50
		}
	}
	return m
}

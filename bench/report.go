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
	execs := r.executors()
	b.WriteString("\nitems/s (! = wrong results or lost updates; segfault row: survives?; blank = not run there)\n")
	if len(r.Floors) > 0 {
		b.WriteString("payload rows: floor = a warm copy each way per item on this machine (fresh allocation + copy in\n" +
			"parentheses), as items/s with the same number of goroutines; (Nx) after a cell = N times below that floor\n")
	}
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprint(tw, "workload\t")
	if len(r.Floors) > 0 {
		fmt.Fprint(tw, "floor\t")
	}
	for _, ex := range execs {
		fmt.Fprintf(tw, "%s\t", ex)
	}
	fmt.Fprintln(tw)
	for _, wl := range r.Workloads {
		fmt.Fprintf(tw, "%s\t", wl)
		if len(r.Floors) > 0 {
			if f, ok := r.floor(wl); ok {
				fmt.Fprintf(tw, "%s (%s)\t", rate(f.WarmItemsPerSec), rate(f.FreshItemsPerSec))
			} else {
				fmt.Fprint(tw, "\t")
			}
		}
		for _, ex := range execs {
			c, ok := r.Cell(wl, ex)
			switch {
			case !ok:
				fmt.Fprint(tw, "\t")
			case c.Skipped:
				fmt.Fprint(tw, "-\t")
			case wl == "segfault":
				fmt.Fprintf(tw, "%s\t", map[bool]string{true: "yes", false: "no"}[c.Correct])
			case c.ItemsPerSec == 0:
				fmt.Fprint(tw, "error\t")
			case !c.Correct:
				fmt.Fprintf(tw, "%s !\t", rate(c.ItemsPerSec))
			case c.XFloor > 0:
				fmt.Fprintf(tw, "%s (%.1fx)\t", rate(c.ItemsPerSec), c.XFloor)
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
	for _, ex := range execs {
		fmt.Fprintf(tw, "%s\t", ex)
	}
	fmt.Fprintln(tw)
	for _, wl := range r.Workloads {
		if wl == "segfault" {
			continue
		}
		fmt.Fprintf(tw, "%s\t", wl)
		for _, ex := range execs {
			c, ok := r.Cell(wl, ex)
			if !ok {
				fmt.Fprint(tw, "\t")
				continue
			}
			if c.Skipped || c.ItemsPerSec == 0 {
				fmt.Fprint(tw, "-\t")
				continue
			}
			fmt.Fprintf(tw, "%s / %s, %s\t", dur(c.P50), dur(c.P99), mib(c.PeakRSS))
		}
		fmt.Fprintln(tw)
	}
	tw.Flush()

	var solo []string
	for _, ex := range execs {
		if c, ok := r.Cell("noop-b1", ex); ok && c.P50Solo > 0 {
			solo = append(solo, fmt.Sprintf("%s %s", ex, dur(c.P50Solo)))
		}
	}
	if len(solo) > 0 {
		fmt.Fprintf(&b, "no-op batch 1, p50 with one caller alone: %s\n", strings.Join(solo, ", "))
	}

	if len(r.Floors) > 0 {
		b.WriteString("\ncopy floors (Go, measured now, no binding or Python: the least a copy each way can cost)\n")
		for _, f := range r.Floors {
			fmt.Fprintf(&b, "  %-12s %s each way, %d goroutines: warm %s items/s (%s per item per goroutine); "+
				"fresh allocation + copy %s items/s (%s): page faults, zeroing and GC\n",
				f.Workload, size(f.Bytes), f.Workers, rate(f.WarmItemsPerSec), dur(f.WarmPerItem),
				rate(f.FreshItemsPerSec), dur(f.FreshPerItem))
		}
	}

	b.WriteString("\nnotes\n")
	for _, c := range r.Cells {
		_, payload := r.floor(c.Workload)
		if c.Note != "" && (c.Workload == "segfault" || c.Workload == "shared-rmw" || c.Executor == "auto" ||
			payload || !c.Correct || c.Skipped) {
			fmt.Fprintf(&b, "  %-12s %-13s %s\n", c.Workload, c.Executor, c.Note)
		}
	}
	if len(r.Ratios) > 0 {
		b.WriteString("\nratios (target from issue #18: met / MISSED)\n")
		for _, q := range r.Ratios {
			v := fmt.Sprintf("%.2f%s", q.Value, q.Unit)
			if !strings.HasPrefix(q.Unit, "x") {
				v = fmt.Sprintf("%.2f %s", q.Value, q.Unit)
			}
			target := ""
			if q.Target != "" {
				target = fmt.Sprintf(" [target %s: %s]", q.Target, map[bool]string{true: "met", false: "MISSED"}[q.Met])
			}
			fmt.Fprintf(&b, "  %-13s %s (%s)%s\n", v, q.Name, q.Note, target)
		}
	}
	b.WriteString("\nrecommendations (fastest correct parallel executor per workload on this machine)\n")
	for _, s := range r.Recommendations {
		fmt.Fprintf(&b, "  %s\n", s)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// executors are the columns that have at least one cell.
func (r *Report) executors() []string {
	var out []string
	for _, ex := range Executors {
		if slices.ContainsFunc(r.Cells, func(c Cell) bool { return c.Executor == ex }) {
			out = append(out, ex)
		}
	}
	return out
}

func size(n int) string {
	if n >= 1<<20 && n%(1<<20) == 0 {
		return fmt.Sprintf("%d MiB", n>>20)
	}
	if n >= 1<<10 && n%(1<<10) == 0 {
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d B", n)
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
	colors := []color.RGBA{{31, 119, 180, 255}, {174, 199, 232, 255}, {255, 127, 14, 255}, {44, 160, 44, 255},
		{23, 190, 207, 255}, {214, 39, 40, 255}, {148, 103, 189, 255}, {127, 127, 127, 255}, {188, 189, 34, 255}}
	width := vg.Points(7)
	execs := r.executors()
	for i, ex := range execs {
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
		bars.Offset = width * vg.Length(float64(i)-float64(len(execs)-1)/2)
		p.Add(bars)
		p.Legend.Add(ex, bars)
	}
	p.Legend.Top = true
	p.Y.Max = math.Ceil(p.Y.Max) + 1.5 // room for the legend
	p.NominalX(wls...)
	return p.Save(26*vg.Centimeter, 13*vg.Centimeter, path)
}

// costExecutors are the pools whose per-item costs seed Auto.
var costExecutors = []string{"thread", "process-ft", "process-gil"}

// cost is c's cost per item for Auto's seeds, in nanoseconds.
func cost(c Cell, workers int) float64 {
	if c.ServicePerItem > 0 {
		return float64(c.ServicePerItem)
	}
	return c.Seconds * 1e9 * float64(workers) / float64(c.Items)
}

// Measured distils the run for the capacity model (see capacity.Measured):
// the fastest correct parallel executor per workload, each executor's
// median no-op call, and the cost per item of every function on each pool
// (Costs, the seeds of Auto's cost model).
//
// A cost is the cell's ServicePerItem, the measure the router takes of
// its own batches (a worker's time on a batch per item, without the wait
// for a worker), or where a pool reported none, the worker time per item
// (the cell's wall time x the run's workers / items: with every worker
// busy, as the bench keeps them, about the same). Where two rows call the
// same function (no-op at batch 1 and 64), the larger batch's row gives it.
func (r *Report) Measured() capacity.Measured {
	m := capacity.Measured{Date: r.Date, Machine: r.Machine, Winners: map[string]string{}, CallOverhead: map[string]time.Duration{},
		Costs: map[string]map[string]float64{}}
	for _, w := range r.Workloads {
		if w == "segfault" {
			continue
		}
		if best, _ := r.fastest(w, ranked...); best != "" {
			m.Winners[w] = best
		}
	}
	for _, ex := range ranked {
		if c, ok := r.Cell("noop-b1", ex); ok && c.Correct {
			m.CallOverhead[ex] = c.P50
		}
	}
	batch := map[[2]string]int{}
	for _, c := range r.Cells {
		if !slices.Contains(costExecutors, c.Executor) || !c.Correct || c.Skipped || c.Items == 0 || c.Seconds <= 0 || c.Function == "" {
			continue
		}
		k := [2]string{c.Function, c.Executor}
		if b, seen := batch[k]; seen && b >= c.Batch {
			continue
		}
		batch[k] = c.Batch
		if m.Costs[c.Function] == nil {
			m.Costs[c.Function] = map[string]float64{}
		}
		m.Costs[c.Function][c.Executor] = cost(c, r.Workers)
	}
	return m
}

package bench

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
)

// ranked are the executors a workload's recommendation (and
// capacity.Measured.Winners) chooses among: ways to run work in parallel,
// not the serial baseline, the one-worker pool or Auto (a choice between
// two of them).
var ranked = []string{"thread", "process-ft", "process-gil", "py-threads", "py-processes"}

var pyExecutors = []string{"py-threads", "py-processes"}

// baseline1MiB is the thread pool's 1 MiB-each-way rate in the full run
// issue #18 started from (2026-11-23, 2 vCPUs): the "5x today's" target.
const baseline1MiB = 1400.0

// analyze computes the floor distances, the tracked ratios and the
// recommendations.
func (r *Report) analyze() {
	for i := range r.Cells {
		c := &r.Cells[i]
		if f, ok := r.floor(c.Workload); ok && c.ItemsPerSec > 0 && c.Correct {
			c.XFloor = f.WarmItemsPerSec / c.ItemsPerSec
		}
	}
	r.ratios()
	r.recommend()
}

func (r *Report) floor(workload string) (Floor, bool) {
	for _, f := range r.Floors {
		if f.Workload == workload {
			return f, true
		}
	}
	return Floor{}, false
}

// rate is a correct cell's items/s, 0 if none.
func (r *Report) rate(w, ex string) float64 {
	c, ok := r.Cell(w, ex)
	if !ok || c.Skipped || !c.Correct {
		return 0
	}
	return c.ItemsPerSec
}

// ratios computes the comparisons issue #18 tracks (and the older ones);
// a comparison one of whose cells is missing or wrong is left out.
func (r *Report) ratios() {
	add := func(q Ratio, ok bool) {
		if ok && q.Value > 0 && !math.IsInf(q.Value, 0) && !math.IsNaN(q.Value) {
			r.Ratios = append(r.Ratios, q)
		}
	}
	// vs is a/b as a ratio, with a target of at least min (0: none).
	vs := func(name string, a, b, min float64, note string) {
		q := Ratio{Name: name, Unit: "x", Value: a / b, Note: note}
		if min > 0 {
			q.Target, q.Met = fmt.Sprintf(">= %gx", min), q.Value >= min
		}
		add(q, a > 0 && b > 0)
	}
	items := func(a, b float64) string { return fmt.Sprintf("%s vs %s items/s", rate(a), rate(b)) }

	th, tpe := r.rate("noop-b1", "thread"), r.rate("noop-b1", "py-threads")
	vs("no-op batch 1: thread pool vs ThreadPoolExecutor", th, tpe, 5, items(th, tpe))
	if d := r.rate("noop-b1", "thread-dedicated"); d > 0 {
		vs("no-op batch 1: thread pool, Direct vs Dedicated (hand-off)", th, d, 0, items(th, d))
	}
	if c, ok := r.Cell("noop-b1", "thread"); ok && c.Correct && c.P50Solo > 0 {
		us := float64(c.P50Solo) / 1e3
		add(Ratio{Name: "no-op batch 1: thread pool round trip p50, one caller", Unit: "us", Value: us,
			Note:   fmt.Sprintf("%s with the row's %d callers", dur(c.P50), 2*r.Workers),
			Target: "<= 2 us", Met: us <= 2}, true)
	}
	th, tpe = r.rate("noop-b64", "thread"), r.rate("noop-b64", "py-threads")
	vs("no-op batch 64: thread pool vs ThreadPoolExecutor", th, tpe, 2.5, items(th, tpe))
	if th > 0 {
		ns := 1e9 / th
		add(Ratio{Name: "no-op batch 64: thread pool time per item", Unit: "ns", Value: ns,
			Note: fmt.Sprintf("%s items/s, %d workers", rate(th), r.Workers), Target: "<= 100 ns", Met: ns <= 100}, true)
	}
	if d := r.rate("noop-b64", "thread-dedicated"); d > 0 {
		vs("no-op batch 64: thread pool, Direct vs Dedicated (hand-off)", th, d, 0, items(th, d))
	}

	for _, f := range r.Floors {
		c, ok := r.Cell(f.Workload, "thread")
		if !ok || !c.Correct || c.XFloor == 0 {
			continue
		}
		add(Ratio{Name: f.Workload + ": thread pool vs the warm copy floor", Unit: "x floor", Value: c.XFloor,
			Note: fmt.Sprintf("%s items/s; floor %s items/s warm (%s per item), %s fresh allocation + copy",
				rate(c.ItemsPerSec), rate(f.WarmItemsPerSec), dur(f.WarmPerItem), rate(f.FreshItemsPerSec)),
			Target: "<= 2x floor", Met: c.XFloor <= 2}, true)
		if f.Workload == "payload-1mb" {
			vs("payload-1mb: thread pool vs issue #18's starting point (1.4k/s, full run 2026-11-23)",
				c.ItemsPerSec, baseline1MiB, 5, items(c.ItemsPerSec, baseline1MiB))
		}
		if rc, ok := r.Cell(f.Workload, "thread-recycle"); ok && rc.Correct && rc.XFloor > 0 {
			add(Ratio{Name: f.Workload + ": thread pool with recycled result buffers vs the warm copy floor", Unit: "x floor",
				Value: rc.XFloor, Note: fmt.Sprintf("%s items/s (thread.Options.Alloc); floor %s items/s warm",
					rate(rc.ItemsPerSec), rate(f.WarmItemsPerSec)), Target: "<= 2x floor", Met: rc.XFloor <= 2}, true)
			vs(f.Workload+": thread pool with recycled result buffers vs issue #18's starting point (1.4k/s)",
				rc.ItemsPerSec, baseline1MiB, 5, items(rc.ItemsPerSec, baseline1MiB))
		}
	}

	for _, w := range []string{"cpu", "hash-1mb", "noop-b64"} {
		auto := r.rate(w, "auto")
		best, bestRate := r.fastest(w, "thread", "process-gil")
		if auto == 0 || best == "" {
			continue
		}
		c, _ := r.Cell(w, "auto")
		min := 0.95 // issue #18 sets it for a pure-Python and a C-heavy function
		if w == "noop-b64" {
			min = 0
		}
		vs(w+": Auto vs the faster of its pools (thread, process-gil)", auto, bestRate, min,
			fmt.Sprintf("auto %s items/s, %s %s; %s", rate(auto), best, rate(bestRate), routeCounts(c.Routes)))
	}

	pp := r.rate("noop-b64", "py-processes")
	for _, ex := range []string{"process-ft", "process-gil"} {
		min := 0.0
		if ex == "process-ft" { // both on the free-threaded interpreter
			min = 1.7
		}
		p := r.rate("noop-b64", ex)
		vs("no-op batch 64: "+ex+" pool vs ProcessPoolExecutor", p, pp, min, items(p, pp))
	}

	th, one := r.rate("cpu", "thread"), r.rate("cpu", "thread-1")
	if r.Workers > 1 {
		q := Ratio{Name: fmt.Sprintf("pure-Python CPU: thread pool, %d workers vs 1", r.Workers), Unit: "x",
			Value: th / one, Note: items(th, one), Target: fmt.Sprintf("~%dx (>= %.1fx)", r.Workers, 0.85*float64(r.Workers))}
		q.Met = q.Value >= 0.85*float64(r.Workers)
		add(q, th > 0 && one > 0)
	}
	vs("pure-Python CPU: thread pool vs serial", th, r.rate("cpu", "serial"), 0, "items/s ratio")
	vs("pure-Python CPU: thread pool vs ProcessPoolExecutor", th, r.rate("cpu", "py-processes"), 0, "items/s ratio")
}

// fastest is the fastest correct of executors on w.
func (r *Report) fastest(w string, executors ...string) (string, float64) {
	best, bestRate := "", 0.0
	for _, ex := range executors {
		if v := r.rate(w, ex); v > bestRate {
			best, bestRate = ex, v
		}
	}
	return best, bestRate
}

// sortedByCount returns m's keys, the largest count first (ties by key).
func sortedByCount(m map[string]int) []string {
	return slices.SortedFunc(maps.Keys(m), func(a, b string) int {
		if m[a] != m[b] {
			return m[b] - m[a]
		}
		return strings.Compare(a, b)
	})
}

// routeCounts says where Auto sent a cell's batches, e.g. "routed: 16
// thread/thread-safe".
func routeCounts(routes map[string]int) string {
	if len(routes) == 0 {
		return "no routing recorded"
	}
	var parts []string
	for _, k := range sortedByCount(routes) {
		parts = append(parts, fmt.Sprintf("%d %s", routes[k], k))
	}
	return "routed: " + strings.Join(parts, ", ")
}

// recommend names the fastest correct parallel executor per workload.
func (r *Report) recommend() {
	for _, w := range r.Workloads {
		if w == "segfault" {
			var survivors []string
			for _, ex := range ranked {
				if c, ok := r.Cell(w, ex); ok && c.Correct {
					survivors = append(survivors, ex)
				}
			}
			r.Recommendations = append(r.Recommendations, fmt.Sprintf("%s: only %s survive a crash in one call: route crash-prone code there",
				w, strings.Join(survivors, " and ")))
			continue
		}
		best, bestRate := r.fastest(w, ranked...)
		if best == "" {
			continue
		}
		line := fmt.Sprintf("%s: %s (%s items/s", w, best, rate(bestRate))
		if s := r.rate(w, "serial"); s > 0 {
			line += fmt.Sprintf(", %.2fx serial", bestRate/s)
		}
		_, pyBest := r.fastest(w, pyExecutors...)
		if pyBest > 0 && best != "py-threads" && best != "py-processes" {
			line += fmt.Sprintf(", %.2fx the best Python executor", bestRate/pyBest)
		}
		r.Recommendations = append(r.Recommendations, line+")")
	}
}

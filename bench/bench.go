// Package bench runs the thread-versus-process benchmark matrix behind
// `slither bench`: the same workloads (python/slither/_bench.py) through
// the embedded thread pool, process pools on the free-threaded build and on
// a GIL build, the engine's router on Route Auto, Python's own
// ThreadPoolExecutor and ProcessPoolExecutor, and serial Python, with the
// same worker count, on this machine.
//
// Each cell reports items/s, per-batch latency (p50, p99), the peak RSS of
// the whole process tree, and correctness: wrong results, lost updates,
// and for the failure-domain row what survived a segfault. Payload rows
// also get the machine's memory-copy floor (see [Floor]), and the report
// computes the ratios the project tracks (see [Ratio]).
package bench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/slither-go/slither/capacity"
)

// Executors, in table order (also the order they run in: auto comes after
// the pools whose measurements can seed it).
//
//   - thread: the embedded pool (pools/thread), the run's worker count.
//   - thread-1: the same with one worker, for the CPU row only (the
//     2-workers-vs-1 ratio).
//   - thread-dedicated: the embedded pool in Dedicated mode (batches
//     handed to worker threads of its own, as before Direct mode), for the
//     no-op rows only: what the hand-off costs.
//   - thread-recycle: the embedded pool with thread.Options.Alloc handing
//     out recycled buffers for large bytes results, which the bench gives
//     back once it has checked them, as a service that reuses its buffers
//     would; for the payload row only. The thread column allocates each
//     result afresh (make), so the difference is this machine's cost of
//     fresh memory (page faults, GC).
//   - process-ft, process-gil: process pools on the free-threaded and on
//     the GIL interpreter.
//   - auto: the engine (package engine, as a Go service starts it) with its
//     embedded pool and a process pool on the GIL interpreter, every batch
//     on Route Auto; only the rows where its choice matters (see
//     [Measures]). The cell's note says where the router sent the batches.
//   - py-threads, py-processes, serial: Python's ThreadPoolExecutor,
//     ProcessPoolExecutor, and a plain loop.
var Executors = []string{"thread", "thread-1", "thread-dedicated", "thread-recycle", "process-ft", "process-gil", "auto", "py-threads", "py-processes", "serial"}

// executorRows limits an executor to some workloads; absent means all.
var executorRows = map[string][]string{
	"thread-1":         {"cpu"},
	"thread-dedicated": {"noop-b1", "noop-b64"},
	"thread-recycle":   {"payload-1mb"},
	"auto":             {"noop-b1", "noop-b64", "cpu", "hash-1mb", "io-1ms", "payload-1mb"},
}

// Measures reports whether executor runs workload at all; a cell it does not
// run is absent from [Report.Cells] (and blank in the table).
func Measures(executor, workload string) bool {
	rows, ok := executorRows[executor]
	return !ok || slices.Contains(rows, workload)
}

// Options configure a run. The zero value runs everything at full size.
type Options struct {
	// Quick runs small inputs: the whole matrix in well under a minute.
	Quick bool
	// Workers per executor; 0 means the usable cores (at least 2).
	Workers int
	// FreeThreaded and GIL are the interpreters; defaults: the cached
	// free-threaded build (or SLITHER_PYTHON) and /usr/bin/python3.
	FreeThreaded, GIL string
	// Only limits the run to these workloads (by name).
	Only []string
	// Progress, if set, receives a progress bar.
	Progress io.Writer
	Logger   *slog.Logger
}

// Cell is one workload on one executor.
type Cell struct {
	Workload string `json:"workload"`
	Executor string `json:"executor"`
	// Function is the Python function the cell called, "module.function"
	// (the rmw row calls a different one per executor).
	Function string `json:"function,omitempty"`
	// Batch is the row's items per batch.
	Batch       int           `json:"batch,omitempty"`
	Items       int           `json:"items"`
	Seconds     float64       `json:"seconds"`
	ItemsPerSec float64       `json:"items_per_sec"`
	P50         time.Duration `json:"p50_ns"`
	P99         time.Duration `json:"p99_ns"`
	// ServicePerItem, for the Slither pools, is the median over the
	// cell's batches of the time a worker spent on a batch (without the
	// wait for a worker: pools.CallInfo.Service) per item: what Auto's
	// cost model measures. Zero where the executor reports none.
	ServicePerItem time.Duration `json:"service_ns_per_item,omitempty"`
	// P50Solo, on the no-op batch-1 row of the pools, is the median round
	// trip with one caller and nothing else in flight (P50 is under the
	// row's 2 x workers callers, queueing included).
	P50Solo time.Duration `json:"p50_one_caller_ns,omitempty"`
	PeakRSS uint64        `json:"peak_rss_bytes"`
	// Correct: every result right and no update lost; for the failure
	// row, the executor kept serving after the crash.
	Correct bool   `json:"correct"`
	Lost    int64  `json:"lost_updates,omitempty"`
	Note    string `json:"note,omitempty"`
	Skipped bool   `json:"skipped,omitempty"`
	// Routes, for the auto column, counts the router's decisions for the
	// timed batches by "route/class" (e.g. "thread/thread-safe"; classes
	// are pools.Route* constants).
	Routes map[string]int `json:"routes,omitempty"`
	// XFloor, on a payload row, is how many times slower than the row's
	// warm copy floor this cell ran (floor items/s / items/s; 1 = at the
	// floor). Zero elsewhere.
	XFloor float64 `json:"x_floor,omitempty"`
}

// Report is a whole run.
type Report struct {
	Date      time.Time         `json:"date"`
	Machine   string            `json:"machine"`
	Workers   int               `json:"workers"`
	Quick     bool              `json:"quick"`
	Pythons   map[string]string `json:"pythons"`
	Workloads []string          `json:"workloads"`
	Cells     []Cell            `json:"cells"`
	// Floors are the memory-copy floors of the payload rows.
	Floors          []Floor  `json:"floors,omitempty"`
	Ratios          []Ratio  `json:"ratios"`
	Recommendations []string `json:"recommendations"`
}

// Ratio is one of the comparisons the project tracks: a ratio ("x"), or
// a measured value in the unit Unit names.
type Ratio struct {
	Name  string  `json:"name"`
	Value float64 `json:"value"`
	// Unit is "x" for a ratio ("x floor": times below a copy floor), else
	// the unit of Value ("us", "ns").
	Unit string `json:"unit,omitempty"`
	Note string `json:"note"`
	// Target is the goal issue #18 set, e.g. ">= 5x" (empty: none), and
	// Met whether this run reached it (false where there is no target).
	Target string `json:"target,omitempty"`
	Met    bool   `json:"met"`
}

// Cell returns the cell for workload and executor.
func (r *Report) Cell(workload, executor string) (Cell, bool) {
	for _, c := range r.Cells {
		if c.Workload == workload && c.Executor == executor {
			return c, true
		}
	}
	return Cell{}, false
}

func (o *Options) defaults() {
	if o.Workers == 0 {
		o.Workers = max(2, capacity.Cores().Usable)
	}
	if o.FreeThreaded == "" {
		o.FreeThreaded = freeThreadedPython()
	}
	if o.GIL == "" {
		o.GIL = "/usr/bin/python3"
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

func freeThreadedPython() string {
	if p := os.Getenv("SLITHER_PYTHON"); p != "" {
		return p
	}
	for _, p := range capacity.Candidates() {
		if in := capacity.Probe(context.Background(), p); in.Error == "" && in.FreeThreaded {
			return p
		}
	}
	return "python3"
}

// Run runs the matrix.
func Run(ctx context.Context, o Options) (*Report, error) {
	o.defaults()
	wls := workloads(o.Quick)
	if len(o.Only) > 0 {
		wls = slices.DeleteFunc(wls, func(w workload) bool { return !slices.Contains(o.Only, w.name) })
		if len(wls) == 0 {
			return nil, fmt.Errorf("bench: --only %v names no workload (workloads: %v)", o.Only, names(workloads(false)))
		}
	}
	rep := &Report{Date: time.Now(), Machine: machine(), Workers: o.Workers, Quick: o.Quick,
		Pythons: map[string]string{}, Workloads: names(wls)}
	for _, p := range []string{o.FreeThreaded, o.GIL} {
		in := capacity.Probe(ctx, p)
		if in.Error != "" {
			return nil, fmt.Errorf("bench: interpreter %s: %s", p, in.Error)
		}
		rep.Pythons[p] = fmt.Sprintf("%s (free-threaded build: %v)", in.Version, in.FreeThreaded)
	}
	rep.Floors = measureFloors(wls, o)
	total := 0
	for _, ex := range Executors {
		for _, w := range wls {
			if Measures(ex, w.name) {
				total++
			}
		}
	}
	done := 0
	progress := func(label string) {
		done++
		if o.Progress != nil {
			width := 30
			fill := done * width / total
			fmt.Fprintf(o.Progress, "\r[%s%s] %2d/%d %-40s", strings.Repeat("=", fill), strings.Repeat(" ", width-fill), done, total, label)
			if done == total {
				fmt.Fprintln(o.Progress)
			}
		}
	}
	for _, ex := range Executors {
		rows := slices.DeleteFunc(slices.Clone(wls), func(w workload) bool { return !Measures(ex, w.name) })
		if len(rows) == 0 {
			continue
		}
		run, closeFn, err := executor(ctx, ex, o, rep)
		if err != nil {
			for _, w := range rows {
				rep.Cells = append(rep.Cells, Cell{Workload: w.name, Executor: ex, Skipped: true, Note: err.Error()})
				progress(ex + " unavailable")
			}
			continue
		}
		for _, w := range rows {
			if err := ctx.Err(); err != nil {
				closeFn()
				return nil, err
			}
			c := run(ctx, w)
			c.Workload, c.Executor, c.Batch = w.name, ex, w.batch
			rep.Cells = append(rep.Cells, c)
			progress(ex + " / " + w.name)
		}
		closeFn()
	}
	rep.analyze()
	return rep, nil
}

func names(ws []workload) []string {
	var out []string
	for _, w := range ws {
		out = append(out, w.name)
	}
	return out
}

func machine() string {
	model := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	host, _ := os.Hostname()
	return fmt.Sprintf("%s, %d CPUs (%s), %s/%s, %s", host, runtime.NumCPU(), model, runtime.GOOS, runtime.GOARCH, runtime.Version())
}

// Package bench runs the thread-versus-process benchmark matrix behind
// `slither bench`: the same workloads (python/slither/_bench.py) through
// the embedded thread pool, process pools on the free-threaded build and on
// a GIL build, Python's own ThreadPoolExecutor and ProcessPoolExecutor, and
// serial Python, with the same worker count, on this machine.
//
// Each cell reports items/s, per-batch latency (p50, p99), the peak RSS of
// the whole process tree, and correctness: wrong results, lost updates,
// and for the failure-domain row what survived a segfault.
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

// Executors, in table order.
var Executors = []string{"thread", "process-ft", "process-gil", "py-threads", "py-processes", "serial"}

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
	Workload    string        `json:"workload"`
	Executor    string        `json:"executor"`
	Items       int           `json:"items"`
	Seconds     float64       `json:"seconds"`
	ItemsPerSec float64       `json:"items_per_sec"`
	P50         time.Duration `json:"p50_ns"`
	P99         time.Duration `json:"p99_ns"`
	PeakRSS     uint64        `json:"peak_rss_bytes"`
	// Correct: every result right and no update lost; for the failure
	// row, the executor kept serving after the crash.
	Correct bool   `json:"correct"`
	Lost    int64  `json:"lost_updates,omitempty"`
	Note    string `json:"note,omitempty"`
	Skipped bool   `json:"skipped,omitempty"`
}

// Report is a whole run.
type Report struct {
	Date            time.Time         `json:"date"`
	Machine         string            `json:"machine"`
	Workers         int               `json:"workers"`
	Quick           bool              `json:"quick"`
	Pythons         map[string]string `json:"pythons"`
	Workloads       []string          `json:"workloads"`
	Cells           []Cell            `json:"cells"`
	Ratios          []Ratio           `json:"ratios"`
	Recommendations []string          `json:"recommendations"`
}

// Ratio is one of the comparisons the project tracks.
type Ratio struct {
	Name  string  `json:"name"`
	Value float64 `json:"value"`
	Note  string  `json:"note"`
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
	total := len(wls) * len(Executors)
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
		run, closeFn, err := executor(ctx, ex, o)
		if err != nil {
			for _, w := range wls {
				rep.Cells = append(rep.Cells, Cell{Workload: w.name, Executor: ex, Skipped: true, Note: err.Error()})
				progress(ex + " unavailable")
			}
			continue
		}
		for _, w := range wls {
			if err := ctx.Err(); err != nil {
				closeFn()
				return nil, err
			}
			c := run(ctx, w)
			c.Workload, c.Executor = w.name, ex
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

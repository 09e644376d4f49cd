package capacity

import (
	"fmt"
	"io"
	"maps"
	"math"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/slither-go/slither/internal/pybuild"
)

// Report is what `slither doctor` prints: the machine, the interpreters,
// the embedded runtime, capacities, recommendations and warnings.
type Report struct {
	Generated    time.Time     `json:"generated"`
	OS           string        `json:"os"`
	CPU          CPU           `json:"cpu"`
	Memory       Mem           `json:"memory"`
	Embedded     Embedded      `json:"embedded"`
	Interpreters []Interpreter `json:"interpreters"`
	Pools        []PoolPlan    `json:"pools"`
	BatchAdvice  []BatchAdvice `json:"batch_advice,omitempty"`
	Checks       []ModuleCheck `json:"checks,omitempty"`
	// Venvs are the virtualenvs asked about (CheckVenv).
	Venvs    []VenvUse `json:"venvs,omitempty"`
	Warnings []string  `json:"warnings"`
	// ProcessOverhead holds measured no-op calls through a one-worker
	// process pool, by interpreter path, for Plan.
	ProcessOverhead map[string]time.Duration `json:"-"`
	// Measured is what the last full `slither bench` on this machine
	// found, if it ran.
	Measured *Measured `json:"measured,omitempty"`
}

// Embedded describes the interpreter embedded in this process.
type Embedded struct {
	Available bool `json:"available"`
	// Reason says why it is not available (a build without cgo, no
	// free-threaded libpython found, ...).
	Reason       string `json:"reason,omitempty"`
	Version      string `json:"version,omitempty"`
	Executable   string `json:"executable,omitempty"`
	FreeThreaded bool   `json:"free_threaded"`
	GILEnabled   bool   `json:"gil_enabled"`
	// EnabledBy names the modules that turned the GIL back on.
	EnabledBy []string `json:"enabled_by,omitempty"`
	// CallOverhead is a measured no-op call through a one-worker pool.
	CallOverhead time.Duration `json:"call_overhead_ns,omitempty"`
}

// PoolPlan is a recommended pool and what it can run at once.
type PoolPlan struct {
	Name             string `json:"name"`
	Kind             string `json:"kind"` // "thread" or "process"
	Interpreter      string `json:"interpreter"`
	Workers          int    `json:"workers"`
	ThreadsPerWorker int    `json:"threads_per_worker"`
	// Capacity is the batches the pool holds at once (dispatch's
	// MaxInFlight); CPU is how many of them can compute at once.
	Capacity int `json:"capacity"`
	CPU      int `json:"cpu"`
	// CallOverhead is a measured no-op call, when measured.
	CallOverhead time.Duration `json:"call_overhead_ns,omitempty"`
	Note         string        `json:"note,omitempty"`
}

// BatchAdvice is the smallest batch per pool that keeps the per-call
// overhead under 5% of a batch's time, for work of a given cost per item.
type BatchAdvice struct {
	PerItem time.Duration  `json:"per_item_ns"`
	Sizes   map[string]int `json:"sizes"` // by pool name
}

// Plan fills in Pools, BatchAdvice and Warnings from the rest of the
// report: one thread pool on the embedded runtime when it is usable, and a
// process pool on each free-threaded interpreter and on the first GIL one.
func (r *Report) Plan() {
	cores := r.CPU.Usable
	r.Pools = nil
	if r.Embedded.Available {
		p := PoolPlan{Name: "thread", Kind: "thread", Interpreter: r.Embedded.Executable, Workers: cores,
			ThreadsPerWorker: 1, Capacity: cores, CPU: ThreadCPU(cores, cores, r.Embedded.GILEnabled),
			CallOverhead: r.Embedded.CallOverhead}
		switch {
		case !r.Embedded.FreeThreaded:
			p.Note = "not a free-threaded build: one batch computes at a time; send CPU work to processes"
		case r.Embedded.GILEnabled:
			p.Note = "the GIL is on: one batch computes at a time; Auto routes CPU work to processes"
		default:
			p.Note = "GIL off: Auto sends functions marked @slither.thread_safe here"
		}
		p.Note += r.venvNotes()
		r.Pools = append(r.Pools, p)
	}
	gilPool := false
	for _, in := range r.Interpreters {
		if in.Error != "" {
			continue
		}
		// A venv's interpreter is a pool of its own, named after the venv.
		suffix, venvNote := "", ""
		u, inVenv := r.venvOf(in.Path)
		if inVenv {
			suffix, venvNote = "@"+filepath.Base(u.Dir), "venv "+u.Dir+": "
		}
		if in.FreeThreaded && !in.GILEnabled {
			r.Pools = append(r.Pools, PoolPlan{Name: "process-" + in.Version + "t" + suffix, Kind: "process", Interpreter: in.Path,
				Workers: cores, ThreadsPerWorker: 1, Capacity: cores, CPU: ProcessCPU(cores, 1, cores, false),
				CallOverhead: r.ProcessOverhead[in.Path],
				Note:         venvNote + "isolated workers; ThreadsPerWorker > 1 also runs in parallel on this build"})
		} else if !gilPool || inVenv {
			gilPool = gilPool || !inVenv
			r.Pools = append(r.Pools, PoolPlan{Name: "process-" + in.Version + suffix, Kind: "process", Interpreter: in.Path,
				Workers: cores, ThreadsPerWorker: 1, Capacity: cores, CPU: ProcessCPU(cores, 1, cores, true),
				CallOverhead: r.ProcessOverhead[in.Path],
				Note:         venvNote + "GIL build: for libraries not safe (or not importable) on the free-threaded one"})
		}
	}
	if m := r.Measured; m != nil { // what slither bench measured here
		for i := range r.Pools {
			p := &r.Pools[i]
			ex := "thread"
			if p.Kind == "process" {
				ex = "process-gil"
				if base, _, _ := strings.Cut(p.Name, "@"); strings.HasSuffix(base, "t") { // @venv suffix
					ex = "process-ft"
				}
			}
			if p.CallOverhead == 0 {
				p.CallOverhead = m.CallOverhead[ex]
			}
			var won []string
			for _, w := range slices.Sorted(maps.Keys(m.Winners)) {
				if m.Winners[w] == ex {
					won = append(won, w)
				}
			}
			if len(won) > 0 {
				p.Note += fmt.Sprintf("; fastest here (slither bench %s) for %s", m.Date.Format("2006-01-02"), strings.Join(won, ", "))
			}
		}
	}
	r.BatchAdvice = nil
	for _, per := range []time.Duration{time.Microsecond, 10 * time.Microsecond, 100 * time.Microsecond, time.Millisecond} {
		a := BatchAdvice{PerItem: per, Sizes: map[string]int{}}
		for _, p := range r.Pools {
			if p.CallOverhead > 0 {
				a.Sizes[p.Name] = BatchFor(float64(p.CallOverhead), float64(per), 0)
			}
		}
		if len(a.Sizes) > 0 {
			r.BatchAdvice = append(r.BatchAdvice, a)
		}
	}
	r.warn()
}

func (r *Report) warn() {
	w := []string{}
	if !r.Embedded.Available {
		w = append(w, "embedded thread pool unavailable: "+r.Embedded.Reason+"; CPU work will run in processes")
	}
	for _, m := range r.Embedded.EnabledBy {
		w = append(w, fmt.Sprintf("GIL re-enabled by module %s: CPU work will run in processes (PYTHON_GIL=0 keeps it off, at your own risk)", m))
	}
	if r.Embedded.Available && !r.Embedded.FreeThreaded {
		w = append(w, "the embedded interpreter is not a free-threaded build: to link a free-threaded one, "+pybuild.Fix)
	}
	ft := false
	for _, in := range r.Interpreters {
		if in.Error == "" && in.FreeThreaded {
			ft = true
			if in.GILEnabled {
				w = append(w, fmt.Sprintf("%s is a free-threaded build but starts with the GIL on (PYTHON_GIL=%q, -X gil=%q)", in.Path, in.PythonGIL, in.XGIL))
			}
		}
	}
	if !ft {
		w = append(w, "no free-threaded interpreter found: set SLITHER_PYTHON to one, or run `"+pybuild.InstallCommand+"`")
	}
	if r.CPU.Quota > 0 && r.CPU.Usable < r.CPU.Online {
		w = append(w, fmt.Sprintf("a cgroup quota of %.2g CPUs limits this process below its %d online CPUs: pools are sized to %d", r.CPU.Quota, r.CPU.Online, r.CPU.Usable))
	}
	if r.CPU.GOMAXPROCS < r.CPU.Usable {
		w = append(w, fmt.Sprintf("GOMAXPROCS is %d, below the %d usable CPUs", r.CPU.GOMAXPROCS, r.CPU.Usable))
	}
	for _, u := range r.Venvs {
		if x := u.warning(); x != "" {
			w = append(w, x)
		}
	}
	for _, c := range r.Checks {
		switch {
		case !c.Importable:
			w = append(w, fmt.Sprintf("%s is not importable on %s: %s", c.Module, c.Interpreter, firstLine(c.Error)))
		case !c.GILBefore && c.GILAfter:
			by := c.EnabledBy
			if by == "" {
				by = c.Module
			}
			w = append(w, fmt.Sprintf("importing %s on %s re-enables the GIL (module %s): CPU work using it will run in processes", c.Module, c.Interpreter, by))
		}
	}
	r.Warnings = w
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return s
}

// WriteText writes the report for people.
func (r *Report) WriteText(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "Slither doctor — %s, %s\n\n", r.Generated.Format("2006-01-02 15:04 MST"), r.OS)
	quota := "none"
	if r.CPU.Quota > 0 {
		quota = fmt.Sprintf("%.2g CPUs", r.CPU.Quota)
	}
	fmt.Fprintf(&b, "CPU     %d online, cgroup quota %s, usable %d, GOMAXPROCS %d\n", r.CPU.Online, quota, r.CPU.Usable, r.CPU.GOMAXPROCS)
	limit := "none"
	if r.Memory.Limit > 0 {
		limit = gib(r.Memory.Limit)
	}
	fmt.Fprintf(&b, "Memory  %s total, %s available, cgroup limit %s\n\n", gib(r.Memory.Total), gib(r.Memory.Available), limit)

	b.WriteString("Embedded interpreter (thread pool)\n")
	if !r.Embedded.Available {
		fmt.Fprintf(&b, "  unavailable: %s\n\n", r.Embedded.Reason)
	} else {
		fmt.Fprintf(&b, "  %s %s, free-threaded build: %s, GIL now: %s\n", r.Embedded.Executable, r.Embedded.Version,
			yes(r.Embedded.FreeThreaded), onOff(r.Embedded.GILEnabled))
		if r.Embedded.CallOverhead > 0 {
			fmt.Fprintf(&b, "  no-op call through the pool: %v\n", r.Embedded.CallOverhead.Round(100*time.Nanosecond))
		}
		b.WriteString("\n")
	}

	b.WriteString("Interpreters found\n")
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  path\tversion\tfree-threaded build\tGIL at start\toverrides")
	for _, in := range r.Interpreters {
		if in.Error != "" {
			fmt.Fprintf(tw, "  %s\terror: %s\t\t\t\n", in.Path, firstLine(in.Error))
			continue
		}
		ov := strings.TrimSpace(strings.Join([]string{pref("PYTHON_GIL=", in.PythonGIL), pref("-X gil=", in.XGIL)}, " "))
		if ov == "" {
			ov = "-"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", in.Path, in.Version, yes(in.FreeThreaded), onOff(in.GILEnabled), ov)
	}
	tw.Flush()

	if len(r.Venvs) > 0 {
		b.WriteString("\nVirtualenvs\n")
		for _, u := range r.Venvs {
			switch {
			case u.Error != "":
				fmt.Fprintf(&b, "  %s: error: %s\n", u.Dir, firstLine(u.Error))
			default:
				mark := ""
				if u.Mismatch != "" {
					mark = " — MISMATCH: not made from the embedded interpreter"
				}
				fmt.Fprintf(&b, "  %s (from %s, Python %s)%s\n    backs %s\n", u.Dir, u.MadeFrom, u.Version, mark, u.Pools)
			}
		}
	}

	b.WriteString("\nRecommended pools\n")
	tw = tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  pool\tworkers\tcapacity\tCPU-effective\tno-op call\tnote")
	for _, p := range r.Pools {
		call := "-"
		if p.CallOverhead > 0 {
			call = p.CallOverhead.Round(100 * time.Nanosecond).String()
		}
		fmt.Fprintf(tw, "  %s\t%d x %d\t%d\t%d\t%s\t%s\n", p.Name, p.Workers, p.ThreadsPerWorker, p.Capacity, p.CPU, call, p.Note)
	}
	tw.Flush()

	if len(r.BatchAdvice) > 0 {
		b.WriteString("\nSmallest batch keeping overhead under 5%\n")
		tw = tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
		fmt.Fprint(tw, "  work per item")
		var names []string
		for _, p := range r.Pools {
			if _, ok := r.BatchAdvice[0].Sizes[p.Name]; ok {
				names = append(names, p.Name)
				fmt.Fprintf(tw, "\t%s", p.Name)
			}
		}
		fmt.Fprintln(tw)
		for _, a := range r.BatchAdvice {
			fmt.Fprintf(tw, "  %v", a.PerItem)
			for _, n := range names {
				fmt.Fprintf(tw, "\t%d", a.Sizes[n])
			}
			fmt.Fprintln(tw)
		}
		tw.Flush()
		b.WriteString("  (dispatch.Adaptive measures and adjusts this while it runs)\n")
	}

	if len(r.Checks) > 0 {
		b.WriteString("\nModule checks\n")
		tw = tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  module\tinterpreter\tverdict\tGIL before -> after\t2-thread speed-up")
		for _, c := range r.Checks {
			sp := "-"
			if c.Speedup > 0 {
				sp = fmt.Sprintf("%.2fx", c.Speedup)
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s -> %s\t%s\n", c.Module, c.Interpreter, c.Verdict(), onOff(c.GILBefore), onOff(c.GILAfter), sp)
		}
		tw.Flush()
	}

	if m := r.Measured; m != nil {
		fmt.Fprintf(&b, "\nMeasured by slither bench on %s (fastest correct executor per workload)\n", m.Date.Format("2006-01-02"))
		for _, w := range slices.Sorted(maps.Keys(m.Winners)) {
			fmt.Fprintf(&b, "  %-12s %s\n", w, m.Winners[w])
		}
	}

	b.WriteString("\nWarnings\n")
	if len(r.Warnings) == 0 {
		b.WriteString("  none\n")
	}
	for _, x := range r.Warnings {
		fmt.Fprintf(&b, "  ! %s\n", x)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func gib(n uint64) string {
	if n == 0 {
		return "?"
	}
	return fmt.Sprintf("%.1f GiB", float64(n)/math.Pow(1024, 3))
}

func yes(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

func pref(p, v string) string {
	if v == "" {
		return ""
	}
	return p + v
}

// NewReport starts a report with the host's facts; the caller adds the
// embedded runtime, interpreters and checks, then calls Plan.
func NewReport() *Report {
	return &Report{Generated: time.Now(), OS: runtime.GOOS + "/" + runtime.GOARCH, CPU: Cores(), Memory: Memory()}
}

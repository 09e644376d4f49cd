package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/slither-go/slither/pools"
	"github.com/slither-go/slither/pools/process"
	"github.com/slither-go/slither/python"
	"github.com/slither-go/slither/store"
)

type runner func(ctx context.Context, w workload) Cell

// executor prepares one column of the matrix.
func executor(ctx context.Context, name string, o Options) (runner, func(), error) {
	switch name {
	case "thread", "process-ft", "process-gil":
		return poolExecutor(ctx, name, o)
	case "py-threads":
		return scriptExecutor("threads", o), func() {}, nil
	case "py-processes":
		return scriptExecutor("processes", o), func() {}, nil
	case "serial":
		return scriptExecutor("serial", o), func() {}, nil
	}
	return nil, nil, fmt.Errorf("bench: unknown executor %q", name)
}

// benchStore holds the shared counter the rmw workload increments through
// the "bench.incr" view.
func benchStore() (*store.Store, *store.Registry, error) {
	s, err := store.Open(context.Background(), store.Definition{
		Name:   "bench",
		Tables: []store.TableSpec{{Name: "counters"}},
		Views: []store.View{{Name: "bench.incr", Fn: func(ctx context.Context, c store.ViewCall) (any, error) {
			return c.Store.Update(ctx, "counters", "c", func(old any, _ bool) (any, error) {
				n, _ := old.(int64)
				return n + 1, nil
			})
		}}},
	})
	if err != nil {
		return nil, nil, err
	}
	reg := store.NewRegistry(nil)
	return s, reg, reg.AddStore(s)
}

func poolExecutor(ctx context.Context, name string, o Options) (runner, func(), error) {
	st, reg, err := benchStore()
	if err != nil {
		return nil, nil, err
	}
	host := func(ctx context.Context, c pools.HostCall) (any, error) {
		return reg.HostCall(ctx, c.Name, c.Args, c.Session)
	}
	var p pools.Pool
	switch name {
	case "thread":
		p, err = newThreadPool(o.Workers, host)
	case "process-ft":
		p, err = process.New(ctx, process.Options{Workers: o.Workers, Python: o.FreeThreaded, Host: host, Logger: o.Logger})
	case "process-gil":
		p, err = process.New(ctx, process.Options{Workers: o.Workers, Python: o.GIL, Host: host, Logger: o.Logger})
	}
	if err != nil {
		return nil, nil, err
	}
	closeFn := func() { _ = p.Close(context.Background()) }
	run := func(ctx context.Context, w workload) Cell {
		switch w.kind {
		case crash:
			return poolCrash(ctx, name, p, o)
		case rmw:
			_ = st.Delete(ctx, "counters", "c")
			c := drive(ctx, p, w, "incr_view", "", o.Workers)
			v, _, _ := st.Get("counters", "c")
			got, _ := v.(int64)
			c.Lost = int64(len(w.items)) - got
			c.Correct = c.Note == "" && c.Lost == 0
			if c.Note == "" {
				c.Note = "through the Go store (view + Update)"
			}
			return c
		case session:
			s := pools.NewSession(ctx, p)
			defer s.Close()
			return drive(ctx, p, w, w.function, s.ID(), o.Workers)
		}
		return drive(ctx, p, w, w.function, "", o.Workers)
	}
	return run, closeFn, nil
}

// drive submits w's batches from 2 x workers goroutines and measures.
func drive(ctx context.Context, p pools.Pool, w workload, function, sess string, workers int) Cell {
	var batches [][]any
	for i := 0; i < len(w.items); i += w.batch {
		batches = append(batches, w.items[i:min(i+w.batch, len(w.items))])
	}
	// Warm up (imports); not for the model, whose first build is part of
	// the work, nor for the counter, which must count only the run.
	if w.kind == plain {
		for range workers {
			if _, err := p.Submit(ctx, pools.Batch{Module: "slither._bench", Function: function, Items: batches[0][:1], Session: sess}); err != nil {
				return Cell{Note: err.Error()}
			}
		}
	}
	results := make([][]any, len(batches))
	lat := make([]time.Duration, len(batches))
	debug.FreeOSMemory() // the previous cell's garbage is not this cell's cost or memory
	var next atomic.Int64
	var firstErr atomic.Pointer[error]
	sampler := startRSS(os.Getpid())
	start := time.Now()
	var wg sync.WaitGroup
	for range 2 * workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= len(batches) {
					return
				}
				t := time.Now()
				out, err := p.Submit(ctx, pools.Batch{Module: "slither._bench", Function: function, Items: batches[i], Session: sess})
				lat[i] = time.Since(t)
				if err != nil {
					firstErr.CompareAndSwap(nil, &err)
					return
				}
				results[i] = out
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	c := Cell{Items: len(w.items), Seconds: elapsed.Seconds(), ItemsPerSec: float64(len(w.items)) / elapsed.Seconds(), PeakRSS: sampler.stop()}
	c.P50, c.P99 = percentiles(lat)
	if err := firstErr.Load(); err != nil {
		c.Note = (*err).Error()
		return c
	}
	c.Correct, c.Note = check(w, slices.Concat(results...))
	return c
}

func percentiles(lat []time.Duration) (p50, p99 time.Duration) {
	if len(lat) == 0 {
		return 0, 0
	}
	s := slices.Clone(lat)
	slices.Sort(s)
	return s[len(s)/2], s[min(len(s)-1, len(s)*99/100)]
}

func poolCrash(ctx context.Context, name string, p pools.Pool, o Options) Cell {
	if name == "thread" {
		return threadCrash(ctx)
	}
	_, err := p.Submit(ctx, pools.Batch{Module: "slither._bench", Function: "crash", Items: []any{0}})
	if !errors.Is(err, pools.ErrWorkerCrashed) {
		return Cell{Note: fmt.Sprintf("expected a worker crash, got %v", err)}
	}
	for range 2 * o.Workers {
		if _, err := p.Submit(ctx, pools.Batch{Module: "slither._bench", Function: "noop", Items: []any{1}}); err != nil {
			return Cell{Note: "after the crash: " + err.Error()}
		}
	}
	return Cell{Correct: true, Note: "only that call failed (ErrWorkerCrashed); the worker restarted, the pool kept serving"}
}

// crashChildEnv marks the child process that runs the thread pool's crash.
const crashChildEnv = "SLITHER_BENCH_CRASH_CHILD"

// CrashChild is called at the start of a program that runs bench: in the
// child started for the thread pool's failure row it segfaults Python
// inside the process, as it would in a service, and never returns.
func CrashChild() {
	if os.Getenv(crashChildEnv) == "" {
		return
	}
	p, err := newThreadPool(1, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, "crash child:", err)
		os.Exit(2)
	}
	_, err = p.Submit(context.Background(), pools.Batch{Module: "slither._bench", Function: "crash", Items: []any{0}})
	fmt.Fprintln(os.Stderr, "crash child survived:", err)
	os.Exit(0)
}

func threadCrash(ctx context.Context) Cell {
	exe, err := os.Executable()
	if err != nil {
		return Cell{Note: err.Error()}
	}
	cmd := exec.CommandContext(ctx, exe, "-test.run=^$") // a test binary runs nothing else
	cmd.Env = append(os.Environ(), crashChildEnv+"=1")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err = cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee) && strings.Contains(stderr.String(), "SIGSEGV"):
		// Go's runtime turns a SIGSEGV in C code into a crash of the program.
		return Cell{Note: fmt.Sprintf("the whole Go process died (SIGSEGV in cgo, %v): every call in flight, and the service, lost", err)}
	case errors.As(err, &ee):
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return Cell{Note: fmt.Sprintf("the whole Go process died (%s): every call in flight, and the service, lost", ws.Signal())}
		}
	}
	return Cell{Note: fmt.Sprintf("the crash child ended with %v: %s", err, lastLine(stderr.String()))}
}

// scriptExecutor runs cells on Python's own executors (_bench_runner).
func scriptExecutor(kind string, o Options) runner {
	return func(ctx context.Context, w workload) Cell {
		fn := w.function
		if w.kind == rmw {
			fn = "incr_dict" // the naive way: a module dict with no lock
		}
		var batches [][]any
		for i := 0; i < len(w.items); i += w.batch {
			batches = append(batches, w.items[i:min(i+w.batch, len(w.items))])
		}
		payload := map[string]any{"function": fn, "batches": batches, "workers": o.Workers, "return_results": w.want != nil}
		if w.function == "echo" { // bytes do not go through JSON: the script makes its own
			small := make([][]any, len(batches))
			for i, b := range batches {
				small[i] = make([]any, len(b))
			}
			payload["batches"], payload["make_bytes"] = small, true
		}
		arg, err := json.Marshal(payload)
		if err != nil {
			return Cell{Note: err.Error()}
		}
		pkg, err := python.Dir()
		if err != nil {
			return Cell{Note: err.Error()}
		}
		py := o.FreeThreaded
		cmd := exec.CommandContext(ctx, py, "-m", "slither._bench_runner", kind)
		cmd.Env = append(os.Environ(), "PYTHONPATH="+pkg)
		cmd.Stdin = bytes.NewReader(arg) // the batches: too big for an argument
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Start(); err != nil {
			return Cell{Note: err.Error()}
		}
		sampler := startRSS(cmd.Process.Pid)
		err = cmd.Wait()
		rss := sampler.stop()
		if w.kind == crash {
			return scriptCrash(kind, err, stdout.Bytes(), rss)
		}
		if err != nil {
			return Cell{Note: fmt.Sprintf("%v: %s", err, lastLine(stderr.String())), PeakRSS: rss}
		}
		var out struct {
			Seconds   float64
			Latencies []float64
			Results   [][]any
			Counter   *int64
			Error     string
		}
		if err := json.Unmarshal(stdout.Bytes(), &out); err != nil {
			return Cell{Note: fmt.Sprintf("unreadable runner output: %v", err)}
		}
		c := Cell{Items: len(w.items), Seconds: out.Seconds, ItemsPerSec: float64(len(w.items)) / out.Seconds, PeakRSS: rss}
		lat := make([]time.Duration, len(out.Latencies))
		for i, l := range out.Latencies {
			lat[i] = time.Duration(l * 1e9)
		}
		c.P50, c.P99 = percentiles(lat)
		if out.Error != "" {
			c.Note = out.Error
			return c
		}
		switch {
		case w.kind == rmw:
			got := int64(0)
			if out.Counter != nil {
				got = *out.Counter
			}
			c.Lost = int64(len(w.items)) - got
			c.Correct = c.Lost == 0
			switch {
			case kind == "processes":
				c.Note = "each worker process counts in its own dict: nothing is shared"
			case c.Lost > 0:
				c.Note = fmt.Sprintf("unguarded dict shared by threads: %.1f%% of updates lost", 100*float64(c.Lost)/float64(len(w.items)))
			case kind == "threads":
				c.Note = "unguarded dict shared by threads: none lost this time (races depend on timing)"
			default:
				c.Note = "one thread: a plain dict is safe"
			}
		case w.function == "echo":
			c.Correct = true
			for _, r := range out.Results {
				for _, n := range r {
					c.Correct = c.Correct && n == float64(1<<20)
				}
			}
			c.Note = "the 1 MiB made in the Python parent and sent to the workers by the executor"
		default:
			var flat []any
			for _, r := range out.Results {
				flat = append(flat, r...)
			}
			c.Correct, c.Note = check(w, flat)
		}
		return c
	}
}

func scriptCrash(kind string, err error, stdout []byte, rss uint64) Cell {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return Cell{Note: fmt.Sprintf("the Python process died (%s): every pending call lost", ws.Signal()), PeakRSS: rss}
		}
	}
	var out struct{ Error, After string }
	_ = json.Unmarshal(stdout, &out)
	if out.Error != "" {
		return Cell{Note: out.Error + "; " + out.After, Correct: strings.Contains(out.After, "still works"), PeakRSS: rss}
	}
	return Cell{Note: fmt.Sprintf("ended with %v", err), PeakRSS: rss}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// rssSampler polls the resident memory of a process tree.
type rssSampler struct {
	done chan struct{}
	peak atomic.Uint64
	wg   sync.WaitGroup
}

func startRSS(root int) *rssSampler {
	s := &rssSampler{done: make(chan struct{})}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			if r := treeRSS(root); r > s.peak.Load() {
				s.peak.Store(r)
			}
			select {
			case <-s.done:
				return
			case <-t.C:
			}
		}
	}()
	return s
}

func (s *rssSampler) stop() uint64 {
	close(s.done)
	s.wg.Wait()
	return s.peak.Load()
}

// treeRSS sums the resident memory of root and all its descendants.
func treeRSS(root int) uint64 {
	children := childMap()
	total := uint64(0)
	queue := []int{root}
	for len(queue) > 0 {
		pid := queue[0]
		queue = queue[1:]
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/statm", pid)); err == nil {
			var size, res uint64
			if _, err := fmt.Sscan(string(b), &size, &res); err == nil {
				total += res * uint64(os.Getpagesize())
			}
		}
		queue = append(queue, children[pid]...)
	}
	return total
}

// childMap maps each process to its children, from /proc/*/stat (kernels
// without CONFIG_PROC_CHILDREN have no cheaper way).
func childMap() map[int][]int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	children := map[int][]int{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
		if len(f) > 1 {
			if ppid, err := strconv.Atoi(f[1]); err == nil {
				children[ppid] = append(children[ppid], pid)
			}
		}
	}
	return children
}

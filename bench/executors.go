package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/slither-go/slither/pools"
	"github.com/slither-go/slither/pools/process"
	"github.com/slither-go/slither/store"
)

type runner func(ctx context.Context, w workload) Cell

// benchModule is the Python module of every workload function.
const benchModule = "slither._bench"

// executor prepares one column of the matrix; rep holds the cells run so
// far (auto's seeds).
func executor(ctx context.Context, name string, o Options, rep *Report) (runner, func(), error) {
	switch name {
	case "thread", "thread-dedicated", "thread-recycle", "process-ft", "process-gil":
		return poolExecutor(ctx, name, o)
	case "thread-1":
		o.Workers = 1
		return poolExecutor(ctx, "thread", o)
	case "auto":
		return autoExecutor(ctx, o, rep)
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
	var settle func([]any) []any // see drive
	switch name {
	case "thread", "thread-dedicated":
		p, err = newThreadPool(o.Workers, host, name == "thread-dedicated", nil)
	case "thread-recycle":
		var rc recycler
		p, err = newThreadPool(o.Workers, host, false, rc.alloc)
		settle = rc.settle
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
			c := poolCrash(ctx, name, p, o)
			c.Function = benchModule + ".crash"
			return c
		case rmw:
			_ = st.Delete(ctx, "counters", "c")
			c := drive(ctx, p, w, "incr_view", "", o.Workers, nil, nil)
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
			return drive(ctx, p, w, w.function, s.ID(), o.Workers, nil, nil)
		}
		c := drive(ctx, p, w, w.function, "", o.Workers, nil, settle)
		if settle != nil && c.Correct {
			c.Note = fmt.Sprintf("results in recycled buffers (thread.Options.Alloc), checked as they arrive: every %dth in full, "+
				"the others by length and their first and last 4 KiB", fullCheckEvery)
		}
		return c
	}
	return run, closeFn, nil
}

// timing is told when drive's clock starts (after the warm-up) and stops
// (before the one-caller calls); nil tells no one.
type timing interface {
	start()
	stop()
}

// drive submits w's batches from 2 x workers goroutines and measures.
// settle, when not nil, is handed each batch's results as they arrive and
// returns what drive keeps of them for the check at the end (the recycling
// executor checks and gives back its buffers there).
func drive(ctx context.Context, p pools.Pool, w workload, function, sess string, workers int, tm timing, settle func([]any) []any) Cell {
	var batches [][]any
	for i := 0; i < len(w.items); i += w.batch {
		batches = append(batches, w.items[i:min(i+w.batch, len(w.items))])
	}
	// Warm up (imports); not for the model, whose first build is part of
	// the work, nor for the counter, which must count only the run.
	if w.kind == plain {
		for range workers {
			if _, err := p.Submit(ctx, pools.Batch{Module: benchModule, Function: function, Items: batches[0][:1], Session: sess}); err != nil {
				return Cell{Note: err.Error()}
			}
		}
	}
	results := make([][]any, len(batches))
	lat := make([]time.Duration, len(batches))
	// Each batch reports its service time (pools.CallInfo); the contexts
	// are made before the clock starts.
	infos := make([]pools.CallInfo, len(batches))
	ctxs := make([]context.Context, len(batches))
	for i := range batches {
		ctxs[i] = pools.WithCallInfo(ctx, &infos[i])
	}
	debug.FreeOSMemory() // the previous cell's garbage is not this cell's cost or memory
	var next atomic.Int64
	var firstErr atomic.Pointer[error]
	sampler := startRSS(os.Getpid())
	if tm != nil {
		tm.start()
	}
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
				out, err := p.Submit(ctxs[i], pools.Batch{Module: benchModule, Function: function, Items: batches[i], Session: sess})
				lat[i] = time.Since(t)
				if err != nil {
					firstErr.CompareAndSwap(nil, &err)
					return
				}
				if settle != nil {
					out = settle(out)
				}
				results[i] = out
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if tm != nil {
		tm.stop()
	}
	c := Cell{Function: benchModule + "." + function, Items: len(w.items), Seconds: elapsed.Seconds(),
		ItemsPerSec: float64(len(w.items)) / elapsed.Seconds(), PeakRSS: sampler.stop()}
	c.P50, c.P99 = percentiles(lat)
	var service []time.Duration
	for i, ci := range infos {
		if ci.Service > 0 {
			service = append(service, ci.Service/time.Duration(len(batches[i])))
		}
	}
	c.ServicePerItem, _ = percentiles(service)
	if err := firstErr.Load(); err != nil {
		c.Note = (*err).Error()
		return c
	}
	c.Correct, c.Note = check(w, slices.Concat(results...))
	if w.solo && c.Correct {
		p50, err := solo(ctx, p, batches, function, sess)
		if err != nil {
			c.Correct, c.Note = false, "one caller: "+err.Error()
		}
		c.P50Solo = p50
	}
	return c
}

// solo times up to 2000 of batches from one caller, one at a time, and
// returns the median round trip.
func solo(ctx context.Context, p pools.Pool, batches [][]any, function, sess string) (time.Duration, error) {
	lat := make([]time.Duration, 0, min(len(batches), 2000))
	for _, b := range batches[:cap(lat)] {
		t := time.Now()
		if _, err := p.Submit(ctx, pools.Batch{Module: benchModule, Function: function, Items: b, Session: sess}); err != nil {
			return 0, err
		}
		lat = append(lat, time.Since(t))
	}
	p50, _ := percentiles(lat)
	return p50, nil
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
	_, err := p.Submit(ctx, pools.Batch{Module: benchModule, Function: "crash", Items: []any{0}})
	if !errors.Is(err, pools.ErrWorkerCrashed) {
		return Cell{Note: fmt.Sprintf("expected a worker crash, got %v", err)}
	}
	for range 2 * o.Workers {
		if _, err := p.Submit(ctx, pools.Batch{Module: benchModule, Function: "noop", Items: []any{1}}); err != nil {
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
	p, err := newThreadPool(1, nil, false, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, "crash child:", err)
		os.Exit(2)
	}
	_, err = p.Submit(context.Background(), pools.Batch{Module: benchModule, Function: "crash", Items: []any{0}})
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

package pools_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/slither-go/slither/capacity"
	"github.com/slither-go/slither/internal/pooltest"
	"github.com/slither-go/slither/pools"
	"github.com/slither-go/slither/pools/process"
	"github.com/slither-go/slither/telemetry"
)

// fakePool stands in for a pool in the router's own unit tests (the
// routing rules are pure Go); router_e2e_test.go routes real pools. As a
// process pool it answers the router's mark reads (slither._gil.inspect)
// from marked, reenables and importErr.
type fakePool struct {
	kind         pools.Kind
	freeThreaded bool
	gil          bool
	marked       map[string]bool   // "module.function" -> @slither.thread_safe
	reenables    map[string]bool   // module -> importing it turns the GIL on
	importErr    map[string]string // module -> its import error
	onInspect    func()            // runs during each mark read
	closedErr    error             // every Submit fails with it
	t            *testing.T        // set on a thread pool: it must never import to read a mark

	mu        sync.Mutex
	perItem   time.Duration // the service time per item it reports (CallInfo.Service); 0 reports none
	inspected int
	submitted []pools.Batch
	closed    []string
}

func (f *fakePool) Submit(ctx context.Context, b pools.Batch) ([]any, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if f.closedErr != nil {
		return nil, f.closedErr
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if b.Module == "slither._gil" && b.Function == "inspect" {
		f.inspected++
		if f.onInspect != nil {
			f.onInspect()
		}
		mf := b.Items[0].([]any)
		m, fn := mf[0].(string), mf[1].(string)
		res := map[string]any{"thread_safe": f.marked[m+"."+fn], "gil_after": f.reenables[m],
			"enabled_by": []any{"_ext"}, "error": f.importErr[m], "path": []any{}}
		if f.importErr[m] != "" {
			res["path"] = []any{"/cache/python-1", "/app"}
		}
		return []any{res}, nil
	}
	f.submitted = append(f.submitted, b)
	if ci := pools.CallInfoFrom(ctx); ci != nil && f.perItem > 0 {
		ci.Service = f.perItem * time.Duration(len(b.Items))
	}
	out := make([]any, max(1, len(b.Items))) // one result per item (and one for the tests' item-less batches)
	for i := range out {
		out[i] = string(f.kind)
	}
	return out, nil
}
func (f *fakePool) Capacity() int { return 2 }
func (f *fakePool) Stats() pools.Stats {
	return pools.Stats{Kind: f.kind, Workers: make([]pools.WorkerStats, 2)}
}
func (f *fakePool) Kind() pools.Kind            { return f.kind }
func (f *fakePool) CloseSession(id string)      { f.closed = append(f.closed, id) }
func (f *fakePool) Close(context.Context) error { return nil }
func (f *fakePool) FreeThreadedBuild() bool     { return f.freeThreaded }
func (f *fakePool) FreeThreaded() bool          { return f.freeThreaded }
func (f *fakePool) GILEnabled() bool            { return f.gil }
func (f *fakePool) GILEnabledBy() string        { return "_ext" }

// ThreadSafe is how the router used to read marks: by importing the module
// into the Go process's interpreter. It must not be called any more.
func (f *fakePool) ThreadSafe(_ context.Context, m, fn string) (bool, error) {
	if f.t != nil {
		f.t.Errorf("the router imported %s into the embedded interpreter to read a mark", m)
	}
	return f.marked[m+"."+fn], nil
}

// namedPool is a fakePool with a name, as process pools have.
type namedPool struct {
	fakePool
	name string
}

func (n *namedPool) Name() string { return n.name }

func TestRoutingRules(t *testing.T) {
	type decl int
	const (
		none decl = iota
		python
		golang
	)
	for _, build := range []bool{true, false} {
		for _, gil := range []bool{false, true} {
			for _, d := range []decl{none, python, golang} {
				for _, route := range []pools.Route{pools.Auto, pools.Thread, pools.Process} {
					name := fmt.Sprintf("freethreaded=%v/gil=%v/decl=%d/route=%v", build, gil, d, route)
					t.Run(name, func(t *testing.T) {
						th := &fakePool{kind: pools.KindThread, freeThreaded: build, gil: gil, t: t}
						pr := &fakePool{kind: pools.KindProcess, freeThreaded: true, marked: map[string]bool{}}
						r := &pools.Router{Thread: th, Process: pr}
						switch d {
						case python:
							pr.marked["m.f"] = true
						case golang:
							r.DeclareThreadSafe("m", "f")
						}
						dec, err := r.Decide(context.Background(), pools.Batch{Module: "m", Function: "f", Route: route})
						require.NoError(t, err)
						want := pools.Process
						switch {
						case route == pools.Thread:
							want = pools.Thread
						case route == pools.Process:
						case build && !gil && d != none:
							want = pools.Thread
						}
						assert.Equal(t, want, dec.Route, dec.Reason)
						if route != pools.Auto {
							assert.Contains(t, dec.Reason, "requested")
							assert.Equal(t, pools.RouteRequested, dec.Class)
							return
						}
						switch {
						case !build:
							assert.Equal(t, "the embedded interpreter is not a free-threaded build", dec.Reason)
							assert.Equal(t, pools.RouteNotFreeThreaded, dec.Class)
						case gil:
							assert.Equal(t, "the GIL is enabled in the embedded interpreter (re-enabled by module _ext)", dec.Reason)
							assert.Equal(t, pools.RouteGILEnabled, dec.Class)
						case d == none:
							assert.Contains(t, dec.Reason, "m.f is not declared thread-safe")
							assert.Equal(t, pools.RouteNotThreadSafe, dec.Class)
						case d == python:
							assert.Equal(t, "m.f is declared thread-safe (@slither.thread_safe) and the GIL is off", dec.Reason)
							assert.Equal(t, pools.RouteThreadSafe, dec.Class)
						case d == golang:
							assert.Equal(t, "m.f is declared thread-safe (declared in Go) and the GIL is off", dec.Reason)
							assert.Equal(t, pools.RouteThreadSafe, dec.Class)
							assert.Zero(t, pr.inspected, "a Go declaration needs no import")
						}
					})
				}
			}
		}
	}
}

func TestRouterMissingPoolsAndSessions(t *testing.T) {
	ctx := context.Background()
	b := pools.Batch{Module: "m", Function: "f"}

	onlyProcess := &pools.Router{Process: &fakePool{kind: pools.KindProcess}}
	d, err := onlyProcess.Decide(ctx, b)
	require.NoError(t, err)
	assert.Equal(t, "no embedded thread pool", d.Reason)
	assert.Equal(t, pools.RouteNoThreadPool, d.Class)
	_, err = onlyProcess.Decide(ctx, pools.Batch{Module: "m", Function: "f", Route: pools.Thread})
	assert.ErrorIs(t, err, pools.ErrNoRoute)

	th := &fakePool{kind: pools.KindThread, freeThreaded: true, t: t}
	onlyThread := &pools.Router{Thread: th, Logger: slog.New(slog.DiscardHandler)}
	_, err = onlyThread.Decide(ctx, b)
	assert.ErrorIs(t, err, pools.ErrNoRoute)
	assert.ErrorContains(t, err, "would go to a process pool (reading the thread-safety mark of m.f failed: no free-threaded Python to read it in")

	// A session stays where it started, even when the rules change.
	bus := telemetry.New(nil)
	var events []telemetry.Metadata
	require.NoError(t, bus.Attach("t", func(_ telemetry.Event, _ telemetry.Measurements, md telemetry.Metadata) {
		events = append(events, md)
	}, telemetry.RouterDecision))
	pr := &namedPool{fakePool: fakePool{kind: pools.KindProcess}, name: "process/cpu"}
	r := &pools.Router{Thread: th, Process: pr, Telemetry: bus}
	r.DeclareThreadSafe("m", "f")
	s := pools.Batch{Module: "m", Function: "f", Session: "s1"}
	var ci pools.CallInfo
	out, err := r.Submit(pools.WithCallInfo(ctx, &ci), s)
	require.NoError(t, err)
	assert.Equal(t, []any{"thread"}, out)
	assert.Equal(t, pools.CallInfo{Route: "thread", RouteClass: pools.RouteThreadSafe, RoutePool: "thread"}, ci)
	th.gil = true // an import turned the GIL on
	out, err = r.Submit(pools.WithCallInfo(ctx, &ci), s)
	require.NoError(t, err)
	assert.Equal(t, []any{"thread"}, out, "the session's state lives in the thread pool")
	assert.Equal(t, pools.CallInfo{Route: "thread", RouteClass: pools.RouteSession, RoutePool: "thread"}, ci)
	d, err = r.Decide(ctx, s)
	require.NoError(t, err)
	assert.Equal(t, pools.RouteSession, d.Class)
	assert.Equal(t, "session s1 stays where it started: m.f is declared thread-safe (declared in Go) and the GIL is off", d.Reason)
	out, err = r.Submit(pools.WithCallInfo(ctx, &ci), b)
	require.NoError(t, err)
	assert.Equal(t, []any{"process"}, out, "new work follows the rules")
	assert.Equal(t, pools.CallInfo{Route: "process", RouteClass: pools.RouteGILEnabled, RoutePool: "process/cpu"}, ci)
	r.CloseSession("s1")
	assert.Equal(t, []string{"s1"}, th.closed)
	assert.Empty(t, pr.closed)
	assert.Equal(t, map[string]int{"thread": 1, "process": 1}, r.Counts())
	require.Len(t, events, 2)
	assert.Equal(t, "thread", events[0]["route"])
	assert.Equal(t, pools.RouteThreadSafe, events[0]["class"])
	assert.Equal(t, "thread", events[0]["pool"], "an unnamed pool goes by its kind")
	assert.Equal(t, "process", events[1]["route"])
	assert.Equal(t, pools.RouteGILEnabled, events[1]["class"])
	assert.Equal(t, "process/cpu", events[1]["pool"], "a named pool by its name")
	assert.Equal(t, "router", r.Stats().Name)
	assert.Equal(t, 4, r.Capacity())
	assert.Len(t, r.Stats().Workers, 4)
	assert.Equal(t, pools.KindRouter, r.Kind())
}

// TestRouterRemembersAndShowsFailedMarkReads: a mark that cannot be read
// is read once, logged once, and every decision that depends on it says so
// in Decision.Warning (and router.decision metadata), not only in telemetry;
// the warning names the module, the sys.path searched and the fix.
func TestRouterRemembersAndShowsFailedMarkReads(t *testing.T) {
	var logs bytes.Buffer
	bus := telemetry.New(nil)
	var warnings []any
	require.NoError(t, bus.Attach("t", func(_ telemetry.Event, _ telemetry.Measurements, md telemetry.Metadata) {
		warnings = append(warnings, md["warning"])
	}, telemetry.RouterDecision))
	th := &fakePool{kind: pools.KindThread, freeThreaded: true, t: t}
	pr := &fakePool{kind: pools.KindProcess, freeThreaded: true, marked: map[string]bool{"gilly.f": true},
		importErr: map[string]string{"broken": "ModuleNotFoundError: No module named 'broken'"}, reenables: map[string]bool{"gilly": true}}
	r := &pools.Router{Thread: th, Process: pr, Telemetry: bus, Logger: slog.New(slog.NewTextHandler(&logs, nil))}
	ctx := context.Background()

	const broken = "reading the thread-safety mark of broken.f failed: importing broken in a free-threaded worker process failed: " +
		"ModuleNotFoundError: No module named 'broken' (searched sys.path [\"/cache/python-1\" \"/app\"]); " +
		"fix: add the directory that holds broken (broken.py or broken/) to engine.Config.Paths (or process.Options.Paths)"
	for range 3 {
		d, err := r.Decide(ctx, pools.Batch{Module: "broken", Function: "f"})
		require.NoError(t, err)
		assert.Equal(t, pools.Process, d.Route)
		assert.Equal(t, pools.RouteMarkUnreadable, d.Class)
		assert.Equal(t, broken, d.Reason)
		assert.Equal(t, broken, d.Warning, "the user sees it on the decision")
	}
	const gilly = "importing gilly in a free-threaded worker process turned the GIL on (module _ext): it is not imported into this process"
	for range 2 {
		d, err := r.Decide(ctx, pools.Batch{Module: "gilly", Function: "f"})
		require.NoError(t, err)
		assert.Equal(t, pools.Process, d.Route)
		assert.Equal(t, pools.RouteMarkUnreadable, d.Class)
		assert.Equal(t, gilly, d.Warning)
	}
	assert.Equal(t, 2, pr.inspected, "each module was imported once; failures are remembered")
	assert.Equal(t, 1, strings.Count(logs.String(), "broken.f runs in processes"), "logged once:\n%s", logs.String())
	assert.Contains(t, logs.String(), `searched sys.path [\"/cache/python-1\" \"/app\"]`, "the log names the path searched")
	assert.Contains(t, logs.String(), "fix: add the directory that holds broken (broken.py or broken/) to engine.Config.Paths")
	assert.Equal(t, 1, strings.Count(logs.String(), "gilly.f runs in processes"))
	assert.Contains(t, logs.String(), "level=WARN")
	assert.Equal(t, []any{broken, broken, broken, gilly, gilly}, warnings)
}

// TestRouterSaysHowToFixAFailedImport: the fix in a failed read's warning
// fits the failure: the module itself not found, a module it imports not
// found, a submodule that does not exist, an error raised on import.
func TestRouterSaysHowToFixAFailedImport(t *testing.T) {
	th := &fakePool{kind: pools.KindThread, freeThreaded: true, t: t}
	pr := &fakePool{kind: pools.KindProcess, freeThreaded: true, importErr: map[string]string{
		"pkg.mod":  "ModuleNotFoundError: No module named 'pkg'",
		"needsdep": "ModuleNotFoundError: No module named 'numpy'",
		"pkg.typo": "ModuleNotFoundError: No module named 'pkg.typo'",
		"raises":   "ZeroDivisionError: division by zero",
	}}
	r := &pools.Router{Thread: th, Process: pr, Logger: slog.New(slog.DiscardHandler)}
	for module, fix := range map[string]string{
		"pkg.mod":  "fix: add the directory that holds pkg (pkg.py or pkg/) to engine.Config.Paths (or process.Options.Paths)",
		"needsdep": "fix: needsdep imports numpy: install it into that Python's environment, or add its directory to engine.Config.Paths (or process.Options.Paths)",
		"pkg.typo": "fix: check the module name: pkg.typo does not exist in the package that was found",
		"raises":   "fix: make `import raises` work there (it raises the error above)",
	} {
		d, err := r.Decide(context.Background(), pools.Batch{Module: module, Function: "f"})
		require.NoError(t, err)
		assert.Equal(t, pools.Process, d.Route)
		assert.Contains(t, d.Warning, "importing "+module+" in a free-threaded worker process failed: "+pr.importErr[module])
		assert.Contains(t, d.Warning, `(searched sys.path ["/cache/python-1" "/app"])`)
		assert.True(t, strings.HasSuffix(d.Warning, fix), "%s\nwants the fix %q", d.Warning, fix)
	}
}

// TestRouterWarnsOfAModuleNotOnAWorkersPath: with a real free-threaded
// process pool whose Paths lack the user's module, the warning lists the
// worker's own sys.path (the configured directory on it) and the fix.
func TestRouterWarnsOfAModuleNotOnAWorkersPath(t *testing.T) {
	ctx := context.Background()
	py := pooltest.Python()
	if in := capacity.Probe(ctx, py); !in.FreeThreaded || in.GILEnabled {
		t.Skipf("needs a free-threaded Python with the GIL off (make python); %s is not", py)
	}
	elsewhere := t.TempDir() // the module's directory is not this one
	pr, err := process.New(ctx, process.Options{Workers: 1, Python: py, Paths: []string{elsewhere}, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	defer pr.Close(ctx)
	require.True(t, pr.FreeThreaded())
	var logs bytes.Buffer
	th := &fakePool{kind: pools.KindThread, freeThreaded: true, t: t}
	r := &pools.Router{Thread: th, Process: pr, Logger: slog.New(slog.NewTextHandler(&logs, nil))}
	for range 2 {
		d, err := r.Decide(ctx, pools.Batch{Module: "routetest", Function: "cpu"})
		require.NoError(t, err)
		assert.Equal(t, pools.Process, d.Route)
		assert.Contains(t, d.Warning, "importing routetest in a free-threaded worker process failed: ModuleNotFoundError: No module named 'routetest' (searched sys.path [")
		assert.Contains(t, d.Warning, fmt.Sprintf("%q", elsewhere), "the configured directory is on the path shown")
		assert.True(t, strings.HasSuffix(d.Warning, "fix: add the directory that holds routetest (routetest.py or routetest/) to engine.Config.Paths (or process.Options.Paths)"), d.Warning)
	}
	assert.Equal(t, 1, strings.Count(logs.String(), "routetest.cpu runs in processes"), logs.String())
	assert.Contains(t, logs.String(), "level=WARN")

	// The process pool cannot import it either: the batch's error says why
	// it ran there and what to fix.
	_, err = r.Submit(ctx, pools.Batch{Module: "routetest", Function: "cpu", Items: []any{1}})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "No module named 'routetest'")
	assert.Contains(t, err.Error(), "[routed to processes: reading the thread-safety mark of routetest.cpu failed: ")
	assert.Contains(t, err.Error(), "fix: add the directory that holds routetest")
	assert.Empty(t, th.submitted)
}

// TestRouterReasonIsTheGILStateAfterTheRead: when the GIL turns on while a
// mark is being read (another batch's import), the decision must not claim
// that the GIL is off.
func TestRouterReasonIsTheGILStateAfterTheRead(t *testing.T) {
	th := &fakePool{kind: pools.KindThread, freeThreaded: true, t: t}
	pr := &fakePool{kind: pools.KindProcess, freeThreaded: true, marked: map[string]bool{"m.f": true}}
	pr.onInspect = func() { th.gil = true }
	r := &pools.Router{Thread: th, Process: pr}
	d, err := r.Decide(context.Background(), pools.Batch{Module: "m", Function: "f"})
	require.NoError(t, err)
	assert.Equal(t, pools.Process, d.Route)
	assert.Equal(t, "the GIL is enabled in the embedded interpreter (re-enabled by module _ext)", d.Reason)
}

// TestRouterReadsEachMarkOnce: concurrent first decisions for one function
// share one read; a read cut short by its caller's context is not a
// verdict and is done again.
func TestRouterReadsEachMarkOnce(t *testing.T) {
	th := &fakePool{kind: pools.KindThread, freeThreaded: true, t: t}
	pr := &fakePool{kind: pools.KindProcess, freeThreaded: true, marked: map[string]bool{"m.f": true}}
	r := &pools.Router{Thread: th, Process: pr}

	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := r.Decide(cancelled, pools.Batch{Module: "m", Function: "f"})
	assert.ErrorIs(t, err, context.Canceled)

	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d, err := r.Decide(context.Background(), pools.Batch{Module: "m", Function: "f"})
			assert.NoError(t, err)
			assert.Equal(t, pools.Thread, d.Route, d.Reason)
		}()
	}
	wg.Wait()
	assert.Equal(t, 1, pr.inspected)

	// A pool that cannot run the read is not a verdict on the module.
	down := &fakePool{kind: pools.KindProcess, freeThreaded: true, marked: map[string]bool{"m.g": true}, closedErr: pools.ErrPoolFailed}
	r = &pools.Router{Thread: th, Process: down, Logger: slog.New(slog.DiscardHandler)}
	d, err := r.Decide(context.Background(), pools.Batch{Module: "m", Function: "g"})
	require.NoError(t, err)
	assert.Equal(t, pools.Process, d.Route)
	assert.Contains(t, d.Warning, "pools: pool failed")
	down.closedErr = nil
	d, err = r.Decide(context.Background(), pools.Batch{Module: "m", Function: "g"})
	require.NoError(t, err)
	assert.Equal(t, pools.Thread, d.Route, "read again once the pool is back")
}

// TestRouterReadsMarksInASubprocess: when the process pool's Python is not
// free-threaded, marks are read in a short-lived free-threaded subprocess,
// never by importing the module into this process's interpreter (the fake
// thread pool fails the test if asked to).
func TestRouterReadsMarksInASubprocess(t *testing.T) {
	ctx := context.Background()
	py := pooltest.Python()
	if in := capacity.Probe(ctx, py); !in.FreeThreaded || in.GILEnabled {
		t.Skipf("needs a free-threaded Python with the GIL off (make python); %s is not", py)
	}
	testdata, err := filepath.Abs("testdata")
	require.NoError(t, err)
	var logs bytes.Buffer
	th := &fakePool{kind: pools.KindThread, freeThreaded: true, t: t}
	pr := &fakePool{kind: pools.KindProcess} // a GIL build: it cannot tell
	r := &pools.Router{Thread: th, Process: pr, Python: py, Paths: []string{"testdata"},
		Logger: slog.New(slog.NewTextHandler(&logs, nil))}

	d, err := r.Decide(ctx, pools.Batch{Module: "routetest", Function: "cpu"})
	require.NoError(t, err)
	assert.Equal(t, pools.Thread, d.Route, d.Reason)
	assert.Equal(t, "routetest.cpu is declared thread-safe (@slither.thread_safe) and the GIL is off", d.Reason)
	assert.Empty(t, d.Warning)

	d, err = r.Decide(ctx, pools.Batch{Module: "routetest", Function: "plain"})
	require.NoError(t, err)
	assert.Equal(t, pools.Process, d.Route)
	assert.Contains(t, d.Reason, "routetest.plain is not declared thread-safe")

	for range 2 {
		d, err = r.Decide(ctx, pools.Batch{Module: "no_such_module_xyz", Function: "f"})
		require.NoError(t, err)
		assert.Equal(t, pools.Process, d.Route)
		assert.True(t, strings.HasPrefix(d.Warning, "reading the thread-safety mark of no_such_module_xyz.f failed: importing no_such_module_xyz in a free-threaded subprocess ("+
			py+") failed: ModuleNotFoundError: No module named 'no_such_module_xyz' (searched sys.path ["), d.Warning)
		assert.Contains(t, d.Warning, fmt.Sprintf("%q", testdata), "the router's Paths are on the path shown")
		assert.True(t, strings.HasSuffix(d.Warning, "fix: add the directory that holds no_such_module_xyz (no_such_module_xyz.py or no_such_module_xyz/) to engine.Config.Paths (or Router.Paths)"), d.Warning)
	}
	assert.Equal(t, 1, strings.Count(logs.String(), "no_such_module_xyz.f runs in processes"), logs.String())
	assert.Zero(t, pr.inspected, "a GIL-build process pool is not asked")

	// A Python that is not free-threaded cannot tell, and says so.
	if gil := capacity.Probe(ctx, "/usr/bin/python3"); gil.Error == "" && gil.GILEnabled {
		r := &pools.Router{Thread: th, Process: pr, Python: "/usr/bin/python3", Paths: []string{"testdata"}, Logger: slog.New(slog.DiscardHandler)}
		d, err := r.Decide(ctx, pools.Batch{Module: "routetest", Function: "cpu"})
		require.NoError(t, err)
		assert.Equal(t, pools.Process, d.Route)
		assert.Contains(t, d.Warning, "/usr/bin/python3 has the GIL on before any import")
	}
}

package pools

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"sync"
	"time"

	"github.com/slither-go/slither/telemetry"
)

// Route says where a batch should run.
type Route int

const (
	// Auto sends a batch to the process pool unless the embedded thread
	// pool may run it: the embedded interpreter is a free-threaded build,
	// its GIL is off right now, and the function is declared thread-safe.
	// When both may, it goes to the one that runs the function faster, as
	// measured (see [Router]), unless the function has a route preference
	// ([Router.Prefer]).
	Auto Route = iota
	// Thread forces the embedded thread pool.
	Thread
	// Process forces the process pool.
	Process
)

func (r Route) String() string {
	switch r {
	case Auto:
		return "auto"
	case Thread:
		return "thread"
	case Process:
		return "process"
	}
	return fmt.Sprintf("Route(%d)", int(r))
}

// ParseRoute reads a route's name: "auto", "thread" or "process".
func ParseRoute(s string) (Route, error) {
	for _, r := range []Route{Auto, Thread, Process} {
		if s == r.String() {
			return r, nil
		}
	}
	return Auto, fmt.Errorf("pools: unknown route %q (want auto, thread or process)", s)
}

// KindRouter is the Kind of a [Router].
const KindRouter Kind = "router"

// ErrNoRoute is matched by errors of batches no pool of the router can
// take (a forced route to a missing pool, or nothing safe for Auto).
var ErrNoRoute = errors.New("pools: no pool for this route")

// Runtime is what routing needs to know of the embedded pool's interpreter;
// the thread pool (pools/thread) implements it.
type Runtime interface {
	// FreeThreadedBuild reports a --disable-gil build.
	FreeThreadedBuild() bool
	// GILEnabled reports whether the GIL is on now (as last checked).
	GILEnabled() bool
}

// Reason classes of a [Decision]: a low-cardinality summary of its Reason,
// fit for a metric label.
const (
	// RouteRequested: the batch asked for its route (Batch.Route Thread or Process).
	RouteRequested = "requested"
	// RouteNoThreadPool: Auto, and there is no embedded pool (or it does
	// not report its interpreter's state).
	RouteNoThreadPool = "no-thread-pool"
	// RouteNotFreeThreaded: Auto, and the embedded interpreter is not a
	// free-threaded build.
	RouteNotFreeThreaded = "not-free-threaded"
	// RouteGILEnabled: Auto, and the embedded interpreter's GIL is on.
	RouteGILEnabled = "gil-enabled"
	// RouteNotThreadSafe: Auto, and the function is not declared thread-safe.
	RouteNotThreadSafe = "not-thread-safe"
	// RouteThreadSafe: Auto, and the function is declared thread-safe
	// with the GIL off: it runs on the embedded pool, where Auto starts
	// before either pool's cost of it is known.
	RouteThreadSafe = "thread-safe"
	// RouteFaster: Auto, the function may run on either pool, and it goes
	// to the one whose measured (or seeded) cost per item is lower; the
	// reason names both and their ratio.
	RouteFaster = "faster"
	// RouteProbe: Auto, the function may run on either pool, and this
	// batch goes to the one not chosen, to measure it (a small share of
	// batches; see [Router]).
	RouteProbe = "probe"
	// RoutePreferred: Auto, and the function has a route preference
	// ([Router.Prefer], the engine's routes setting) that is safe to follow.
	RoutePreferred = "preferred"
	// RouteMarkUnreadable: Auto, and the function's thread-safety mark
	// could not be read, or reading it showed its module turns the GIL on
	// (Decision.Warning says which).
	RouteMarkUnreadable = "mark-unreadable"
	// RouteSession: a pinned session's later batch goes where its first went.
	RouteSession = "session"
)

// Decision is where the router sent a batch, and why.
type Decision struct {
	Route  Route // Thread or Process
	Pool   Pool
	Reason string
	// Class is the reason's class, one of the Route* constants (such as
	// [RouteGILEnabled]).
	Class string
	// Warning, when not empty, is something the user should fix: the
	// function's thread-safety mark could not be read (or its module turns
	// the GIL on), so a function meant for the thread pool runs in
	// processes. The router also logs it, once per function.
	Warning string
	// ThreadCost and ProcessCost are the estimates of the function's cost
	// per item on each pool, in nanoseconds, that an Auto decision between
	// the two compared (0: not known, or not compared).
	ThreadCost, ProcessCost float64

	// router measures the batch's run for its cost model (nil: it does not).
	router *Router
	// probe: this decision measures the other pool (see cost.go); its
	// end is reported to the router whether the batch succeeds or not.
	probe bool
}

// Router is a [Pool] over an embedded thread pool and a process pool that
// routes each batch by its [Batch.Route]. Every decision carries its
// reason, is counted, and is emitted as router.decision (with the costs it
// compared, as cost_thread_ns and cost_process_ns). A session stays in the
// pool its first batch went to. Safe for concurrent use; set the fields
// before first use.
//
// Auto is decided on safety first, then on speed. A function goes to the
// thread pool only when that is safe (below); when it is, the router
// measures the function's cost per item on both pools from the batches it
// runs, and sends it to the cheaper one, probing the other with a small
// share of batches so that a change is noticed (the reason then says, e.g.,
// "m.f is thread-safe (@slither.thread_safe), but the process pool ran it
// 2.1x faster (1.9 ms vs 4.0 ms per item, 8 vs 8 batches)"). Before there
// are measurements, CostSeeds (saved by `slither bench`) stand in; without
// either, the thread pool is tried first. [Router.Prefer] fixes a
// function's route instead. [Router.Costs] shows the table. How the cost
// is measured, and why per slot, is described at the top of cost.go.
//
// Auto reads a function's @slither.thread_safe mark once, never by
// importing its module into this process (an import may turn the GIL on
// for good): in a worker of the process pool when that runs a
// free-threaded Python, else in a short-lived subprocess of a free-threaded
// Python (see [Router.Python]). A read that fails is remembered, logged
// once and reported in [Decision.Warning]; the function then runs in
// processes.
type Router struct {
	// Thread is the embedded pool (nil if there is none); it must
	// implement [Runtime] for Auto to choose it.
	Thread Pool
	// Process is the process pool (nil if there is none).
	Process Pool
	// Telemetry receives router.decision events; nil sends none.
	Telemetry *telemetry.Bus
	// Logger receives a warning for each function whose mark could not be
	// read or whose module turns the GIL on; nil means slog.Default().
	Logger *slog.Logger
	// Python is the free-threaded interpreter that reads marks in a
	// subprocess when the process pool's Python is not free-threaded.
	// Empty means the embedded interpreter's own executable, as the thread
	// pool describes it.
	Python string
	// Paths are put on that subprocess's sys.path (after the slither
	// package): the directories the thread pool imports modules from.
	Paths []string
	// CostSeeds are costs per item measured by `slither bench`
	// (capacity.Measured.Costs): "module.function" -> executor ->
	// nanoseconds per item. The thread pool takes the "thread" executor's,
	// the process pool "process-ft" when its Python is free-threaded with
	// the GIL off ([FreeThreadedPool]), else "process-gil". A seed stands
	// in for a pool's cost until that pool has been measured here.
	CostSeeds map[string]map[string]float64

	costMu sync.Mutex
	costs  map[string]*fnCost // by "module.function"
	prefer map[string]Route
	now    func() time.Time // the cost model's clock; nil: time.Now (tests set it)

	mu       sync.Mutex
	declared map[[2]string]bool      // Go-side declarations
	marks    map[[2]string]*markRead // Python-side marks, read once (failures too)
	sessions map[string]Decision
	counts   map[string]int
}

var _ Pool = (*Router)(nil)

// DeclareThreadSafe declares module.function thread-safe from Go, as
// @slither.thread_safe does in Python (without importing the module to
// read the mark).
func (r *Router) DeclareThreadSafe(module, function string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.declared == nil {
		r.declared = map[[2]string]bool{}
	}
	r.declared[[2]string{module, function}] = true
}

// Decide chooses the pool for b without running it.
func (r *Router) Decide(ctx context.Context, b Batch) (Decision, error) {
	if b.Pinned() {
		r.mu.Lock()
		d, ok := r.sessions[b.Session]
		r.mu.Unlock()
		if ok {
			d.Reason = "session " + b.Session + " stays where it started: " + d.Reason
			d.Class = RouteSession
			return d, nil
		}
	}
	d, err := r.decide(ctx, b)
	if err != nil {
		return d, err
	}
	d.router = r
	r.mu.Lock()
	if r.counts == nil {
		r.counts = map[string]int{}
	}
	r.counts[d.Route.String()]++
	if b.Pinned() {
		if r.sessions == nil {
			r.sessions = map[string]Decision{}
		}
		r.sessions[b.Session] = d
	}
	r.mu.Unlock()
	md := telemetry.Metadata{"route": d.Route.String(), "reason": d.Reason, "class": d.Class, "pool": NameOf(d.Pool),
		"module": b.Module, "function": b.Function, "requested": b.Route.String()}
	if d.Warning != "" {
		md["warning"] = d.Warning
	}
	ms := telemetry.Measurements{Items: len(b.Items)}
	if d.ThreadCost > 0 || d.ProcessCost > 0 {
		ms.Extra = map[string]float64{}
		if d.ThreadCost > 0 {
			ms.Extra["cost_thread_ns"] = d.ThreadCost
		}
		if d.ProcessCost > 0 {
			ms.Extra["cost_process_ns"] = d.ProcessCost
		}
	}
	r.Telemetry.Emit(telemetry.RouterDecision, ms, md)
	return d, nil
}

func (r *Router) decide(ctx context.Context, b Batch) (Decision, error) {
	name := b.Module + "." + b.Function
	var pref Route
	if b.Route == Auto {
		pref = r.preferred(name)
	}
	toProcess := func(class, reason string) (Decision, error) {
		if pref == Thread {
			reason += "; its route preference, thread, is not followed: a preference never sends to threads what is not safe there (Batch.Route Thread does)"
		}
		if r.Process == nil {
			return Decision{}, fmt.Errorf("%w: %s would go to a process pool (%s), and the router has none", ErrNoRoute, name, reason)
		}
		return Decision{Route: Process, Pool: r.Process, Reason: reason, Class: class}, nil
	}
	switch b.Route {
	case Thread:
		if r.Thread == nil {
			return Decision{}, fmt.Errorf("%w: %s asks for the thread pool, and the router has none", ErrNoRoute, name)
		}
		return Decision{Route: Thread, Pool: r.Thread, Reason: "route Thread requested", Class: RouteRequested}, nil
	case Process:
		return toProcess(RouteRequested, "route Process requested")
	case Auto:
	default:
		return Decision{}, fmt.Errorf("%w: unknown route %v for %s", ErrNoRoute, b.Route, name)
	}
	if pref == Process {
		if r.Process == nil {
			return Decision{}, fmt.Errorf("%w: %s prefers the process pool (Router.Prefer), and the router has none", ErrNoRoute, name)
		}
		return Decision{Route: Process, Pool: r.Process, Reason: name + " prefers the process pool (route preference)",
			Class: RoutePreferred}, nil
	}
	if r.Thread == nil {
		return toProcess(RouteNoThreadPool, "no embedded thread pool")
	}
	rt, ok := r.Thread.(Runtime)
	if !ok {
		return toProcess(RouteNoThreadPool, "the thread pool does not report its interpreter's state")
	}
	if !rt.FreeThreadedBuild() {
		return toProcess(RouteNotFreeThreaded, "the embedded interpreter is not a free-threaded build")
	}
	if rt.GILEnabled() {
		return toProcess(RouteGILEnabled, r.gilReason())
	}
	safe, how, err := r.threadSafe(ctx, b.Module, b.Function)
	if err != nil {
		if ctx.Err() != nil {
			return Decision{}, fmt.Errorf("pools: routing %s: %w", name, context.Cause(ctx))
		}
		var re *errReenables
		reason := err.Error()
		if !errors.As(err, &re) {
			reason = fmt.Sprintf("reading the thread-safety mark of %s failed: %v", name, err)
		}
		d, derr := toProcess(RouteMarkUnreadable, reason)
		d.Warning = reason
		return d, derr
	}
	if !safe {
		return toProcess(RouteNotThreadSafe, name+" is not declared thread-safe (@slither.thread_safe in Python, or Router.DeclareThreadSafe)")
	}
	// The state now, not as it was before the mark was read: another
	// batch's import may have turned the GIL on meanwhile.
	if rt.GILEnabled() {
		return toProcess(RouteGILEnabled, r.gilReason())
	}
	safeWhy := name + " is declared thread-safe (" + how + ") and the GIL is off"
	if pref == Thread {
		return Decision{Route: Thread, Pool: r.Thread, Reason: safeWhy + "; it prefers the thread pool (route preference)",
			Class: RoutePreferred}, nil
	}
	if r.Process == nil {
		return Decision{Route: Thread, Pool: r.Thread, Reason: safeWhy, Class: RouteThreadSafe}, nil
	}
	d := r.byCost(name, safeWhy, how, b.Pinned(), len(b.Items))
	d.Pool = r.Thread
	if d.Route == Process {
		d.Pool = r.Process
	}
	return d, nil
}

func (r *Router) gilReason() string {
	reason := "the GIL is enabled in the embedded interpreter"
	if w, ok := r.Thread.(interface{ GILEnabledBy() string }); ok {
		if m := w.GILEnabledBy(); m != "" {
			reason += " (re-enabled by module " + m + ")"
		}
	}
	return reason
}

// Counts returns how many batches went each way, by route name.
func (r *Router) Counts() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return maps.Clone(r.counts)
}

// Submit routes b by b.Route and runs it there (see [Decision.Submit]).
func (r *Router) Submit(ctx context.Context, b Batch) ([]any, error) {
	if err := b.Validate(); err != nil {
		return nil, err
	}
	d, err := r.Decide(ctx, b)
	if err != nil {
		return nil, err
	}
	return d.Submit(ctx, b)
}

// Submit runs b in the decision's pool, recording the route and its class
// in the [CallInfo] ctx carries, if any. A decision of a [Router] adds the
// batch's cost per item, when it succeeds, to the router's measurements of
// the function on that pool. When the batch fails there and
// the decision carries a [Decision.Warning] (a module the mark read could
// not import is usually one the process pool cannot import either), the
// error says so: it wraps the pool's error and adds the warning, with the
// path searched and the fix.
func (d Decision) Submit(ctx context.Context, b Batch) ([]any, error) {
	ci := CallInfoFrom(ctx)
	if ci != nil {
		ci.Route, ci.RouteClass, ci.RoutePool = d.Route.String(), d.Class, NameOf(d.Pool)
	} else if d.router != nil {
		ci = &CallInfo{} // the pool measures the batch's service time into it
		ctx = WithCallInfo(ctx, ci)
	}
	if ci != nil {
		ci.Service = 0 // written anew by the pool (not an earlier batch's)
	}
	start := time.Now()
	out, err := d.Pool.Submit(ctx, b)
	if d.router != nil {
		// Service time, not Submit's wall time: see cost.go. Read only on
		// success: a pool whose Submit returned on a cancel may still
		// write it when the call ends.
		var svc time.Duration
		if err == nil {
			if svc = ci.Service; svc <= 0 { // a pool that does not measure it
				svc = time.Since(start)
			}
		}
		// A batch cancelled by its caller says nothing of the pool.
		failed := err != nil && ctx.Err() == nil
		d.router.record(b.Module+"."+b.Function, d.Route, len(b.Items), svc, start, err == nil, failed, d.probe)
	}
	if err != nil && d.Warning != "" {
		return out, fmt.Errorf("%w [routed to processes: %s]", err, d.Warning)
	}
	return out, err
}

// Capacity is the sum of the pools' capacities.
func (r *Router) Capacity() int {
	n := 0
	for _, p := range r.pools() {
		n += p.Capacity()
	}
	return n
}

// Stats lists the workers of both pools (thread pool first) under
// KindRouter and the name "router"; IDs are each pool's own.
func (r *Router) Stats() Stats {
	s := Stats{Name: string(KindRouter), Kind: KindRouter}
	for _, p := range r.pools() {
		ps := p.Stats()
		s.Workers = append(s.Workers, ps.Workers...)
		s.Waiting += ps.Waiting
		s.Running += ps.Running
	}
	return s
}

// Kind returns [KindRouter].
func (r *Router) Kind() Kind { return KindRouter }

// CloseSession closes the session in the pool it was pinned to, or in both
// pools for a session whose batches ran unpinned.
func (r *Router) CloseSession(id string) {
	r.mu.Lock()
	d, ok := r.sessions[id]
	delete(r.sessions, id)
	r.mu.Unlock()
	if ok {
		d.Pool.CloseSession(id)
		return
	}
	for _, p := range r.pools() { // unpinned batches may have run in either
		p.CloseSession(id)
	}
}

// Close closes both pools.
func (r *Router) Close(ctx context.Context) error {
	var errs []error
	for _, p := range r.pools() {
		errs = append(errs, p.Close(ctx))
	}
	return errors.Join(errs...)
}

func (r *Router) pools() []Pool {
	var ps []Pool
	for _, p := range []Pool{r.Thread, r.Process} {
		if p != nil {
			ps = append(ps, p)
		}
	}
	return ps
}

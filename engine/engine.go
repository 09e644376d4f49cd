// Package engine is the one entry point a service needs: Start brings up
// the embedded thread pool, the named process pools, the stores and their
// views, and telemetry; the Engine then dispatches batches, runs pipelines
// and opens sessions; Close stops everything in order.
//
// The engine keeps a monitor (package monitor) on its telemetry: Handler
// serves its Prometheus metrics, dashboard page and JSON state for a
// program to mount, and Config.HTTP.Addr serves them on an address of
// their own. Config.TracerProvider makes OpenTelemetry spans of dispatches
// and pipeline runs.
//
// Zero configuration works: pool sizes come from the capacity model (one
// worker per usable core), the thread pool starts when the binary has cgo
// and a free-threaded libpython, and one process pool named "default" runs
// the free-threaded build the Makefile provides (or python3).
package engine

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/slither-go/slither/capacity"
	"github.com/slither-go/slither/dispatch"
	"github.com/slither-go/slither/internal/pyvenv"
	"github.com/slither-go/slither/monitor"
	"github.com/slither-go/slither/pipe"
	"github.com/slither-go/slither/pools"
	"github.com/slither-go/slither/pools/process"
	"github.com/slither-go/slither/pools/remote"
	"github.com/slither-go/slither/store"
	"github.com/slither-go/slither/telemetry"
)

// DefaultPool is the name of the process pool used when none is named.
const DefaultPool = "default"

// Engine owns pools, stores, views and telemetry. Its methods are safe
// for concurrent use.
type Engine struct {
	cfg     Config
	tel     *telemetry.Bus
	views   *store.Registry
	stores  map[string]*store.Store
	thread  pools.Pool // nil without an embedded pool
	procs   map[string]*process.Pool
	routers map[string]*pools.Router
	remotes map[string]*remote.Pool
	nc      *nats.Conn // the remote pools' connection; nil without them
	mon     *monitor.Monitor
	handler http.Handler
	srv     *http.Server  // nil without Config.HTTP.Addr
	ln      net.Listener  // srv's
	served  chan struct{} // closed when srv's Serve returned

	closeOnce sync.Once
	closeErr  error
}

// Start brings the engine up; on any failure it stops what it started and
// returns the error.
func Start(ctx context.Context, cfg Config) (*Engine, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	e := &Engine{cfg: cfg, tel: cfg.Telemetry, stores: map[string]*store.Store{}, procs: map[string]*process.Pool{},
		routers: map[string]*pools.Router{}, remotes: map[string]*remote.Pool{}}
	if e.tel == nil {
		e.tel = telemetry.New(cfg.Logger)
	}
	e.views = store.NewRegistry(e.tel)
	// The monitor listens before anything starts, so it counts every
	// worker's start; it reads the pools and stores only when asked, once
	// Start has returned.
	mon, err := monitor.New(monitor.Options{Bus: e.tel, HandlerName: "engine.monitor", Logger: e.log(),
		Pools: e.monitoredPools, Stores: e.storeList, GIL: func() monitor.GILState { return gilState(e.thread) }})
	if err != nil {
		return nil, fmt.Errorf("engine: %w", err)
	}
	e.mon = mon
	e.handler = mon.Handler(monitor.HandlerOptions{Token: cfg.HTTP.Token})
	ok := false
	defer func() {
		if !ok {
			_ = e.Close(context.Background())
		}
	}()
	for _, def := range cfg.Stores {
		if def.Telemetry == nil {
			def.Telemetry = e.tel
		}
		s, err := store.Open(ctx, def)
		if err != nil {
			return nil, fmt.Errorf("engine: %w", err)
		}
		e.stores[def.Name] = s
		if err := e.views.AddStore(s); err != nil {
			return nil, fmt.Errorf("engine: %w", err)
		}
	}
	cores := capacity.Cores().Usable
	host := cfg.Host
	if host == nil {
		host = func(ctx context.Context, c pools.HostCall) (any, error) {
			return e.views.HostCall(ctx, c.Name, c.Args, c.Session)
		}
	}
	if !cfg.Thread.Disabled {
		workers := cfg.Thread.Workers
		if workers == 0 {
			workers = cores
		}
		th, err := startThread(cfg.Thread, workers, cfg.Venv, append(slices.Clone(cfg.Paths), cfg.Thread.Paths...), host, e.tel)
		switch {
		case err == nil:
			e.thread = th
		case cfg.Thread.Required:
			return nil, fmt.Errorf("engine: the thread pool is required: %w", err)
		case errors.Is(err, pyvenv.ErrMismatch), errors.Is(err, pyvenv.ErrInvalid):
			// A wrong venv is a configuration error, not a missing feature.
			return nil, fmt.Errorf("engine: venv: %w", err)
		default:
			e.log().Warn("slither engine: no embedded thread pool; CPU work runs in processes", "reason", err)
		}
	}
	procs := cfg.Process
	if len(procs) == 0 {
		procs = map[string]ProcessConfig{DefaultPool: {}}
	}
	seeds := e.costSeeds()
	for _, name := range slices.Sorted(maps.Keys(procs)) {
		pc := procs[name]
		workers := pc.Workers
		if workers == 0 {
			workers = cores
		}
		opts := pc.options(cfg.Paths)
		opts.Workers = workers
		opts.Python = cfg.processPython(pc)
		opts.Host, opts.Telemetry, opts.Logger = host, e.tel, cfg.Logger
		opts.Name = "process/" + name
		p, err := process.New(ctx, opts)
		if err != nil {
			return nil, fmt.Errorf("engine: process pool %q: %w", name, err)
		}
		e.procs[name] = p
		// Marks are read where the thread pool would import: its paths.
		r := &pools.Router{Thread: e.thread, Process: p, Telemetry: e.tel, Logger: e.log(),
			Paths: append(slices.Clone(cfg.Paths), cfg.Thread.Paths...), CostSeeds: seeds}
		for _, d := range cfg.ThreadSafe {
			r.DeclareThreadSafe(d.Module, d.Function)
		}
		for fn := range cfg.Routes {
			f, route, _ := cfg.route(fn) // validated
			r.Prefer(f.Module, f.Function, route)
		}
		e.routers[name] = r
	}
	if err := e.startRemote(ctx, host); err != nil {
		return nil, err
	}
	if cfg.HTTP.Addr != "" {
		if err := e.serve(); err != nil {
			return nil, err
		}
	}
	ok = true
	return e, nil
}

// costSeeds are the costs per function `slither bench` saved on this
// machine, which seed Auto's cost model until it has measured its own. A
// missing file means none; an unreadable one is logged and ignored (the
// router then measures from scratch).
func (e *Engine) costSeeds() map[string]map[string]float64 {
	path, err := capacity.MeasuredPath()
	if err != nil {
		e.log().Debug("slither engine: no slither bench measurements to seed Auto's costs", "err", err)
		return nil
	}
	m, ok, err := capacity.LoadMeasured(path)
	if err != nil {
		e.log().Warn("slither engine: ignoring slither bench's measurements (Auto measures its costs from scratch)",
			"path", path, "err", err)
		return nil
	}
	if !ok {
		return nil
	}
	return m.Costs
}

// Costs is Auto's cost table of each process pool's router, by pool name
// (see [pools.Router.Costs]): what each function costs per item on the
// thread pool and on that process pool, measured or seeded, and where it
// goes.
func (e *Engine) Costs() map[string][]pools.FunctionCost {
	out := make(map[string][]pools.FunctionCost, len(e.routers))
	for name, r := range e.routers {
		out[name] = r.Costs()
	}
	return out
}

// serve starts the monitor's server on Config.HTTP.Addr.
func (e *Engine) serve() error {
	addr, err := e.cfg.HTTP.listenAddr()
	if err != nil {
		return fmt.Errorf("engine: %w", err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("engine: monitor server: %w", err)
	}
	e.ln, e.served = ln, make(chan struct{})
	e.srv = newServer(e.handler, e.log())
	// Close waits for it (<-e.served) after shutting the server down.
	go func() {
		defer close(e.served)
		if err := e.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			e.log().Error("slither engine: monitor server stopped", "addr", ln.Addr().String(), "err", err)
		}
	}()
	e.log().Info("slither engine: monitor serving", "url", "http://"+ln.Addr().String()+"/debug/slither/")
	return nil
}

// newServer is the engine's monitor server. With a token it may face
// clients beyond this machine, so a client cannot hold a connection by
// sending its headers slowly, leave idle keep-alive connections open for
// ever, or send megabytes of headers. There is no write timeout: the
// event stream is a response that lasts as long as its client watches.
func newServer(h http.Handler, log *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
}

// monitoredPools are the pools the monitor reports: the thread pool,
// every process pool (not the routers over them) and every remote pool.
func (e *Engine) monitoredPools() []pools.Pool {
	var ps []pools.Pool
	if e.thread != nil {
		ps = append(ps, e.thread)
	}
	for _, name := range slices.Sorted(maps.Keys(e.procs)) {
		ps = append(ps, e.procs[name])
	}
	for _, name := range slices.Sorted(maps.Keys(e.remotes)) {
		ps = append(ps, e.remotes[name])
	}
	return ps
}

func (e *Engine) storeList() []*store.Store {
	return slices.Collect(maps.Values(e.stores))
}

func (e *Engine) log() *slog.Logger {
	if e.cfg.Logger != nil {
		return e.cfg.Logger
	}
	return slog.Default()
}

// Close stops the engine: pools drain (their running batches finish, until
// ctx ends; a remote pool waits for the results of the batches it
// published), then the NATS connection and the stores close. It is
// idempotent.
func (e *Engine) Close(ctx context.Context) error {
	e.closeOnce.Do(func() {
		var errs []error
		// The monitor first: it ends the event streams, which would
		// otherwise keep Shutdown waiting.
		if e.mon != nil {
			e.mon.Close()
		}
		if e.srv != nil {
			if err := e.srv.Shutdown(ctx); err != nil {
				_ = e.srv.Close()
				errs = append(errs, fmt.Errorf("engine: monitor server: %w", err))
			}
			<-e.served
		}
		var wg sync.WaitGroup
		var mu sync.Mutex
		var all []pools.Pool
		for _, p := range e.procs {
			all = append(all, p)
		}
		for _, p := range e.remotes {
			all = append(all, p)
		}
		for _, p := range all {
			wg.Add(1)
			go func() { // wg.Wait below waits for each
				defer wg.Done()
				if err := p.Close(ctx); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			}()
		}
		if e.thread != nil {
			if err := e.thread.Close(ctx); err != nil {
				errs = append(errs, err)
			}
		}
		wg.Wait()
		if err := e.closeConn(ctx); err != nil {
			errs = append(errs, err)
		}
		for _, s := range e.stores {
			s.Close()
		}
		e.closeErr = errors.Join(errs...)
	})
	return e.closeErr
}

// Monitor is the engine's monitor: its State, metrics and handler.
func (e *Engine) Monitor() *monitor.Monitor { return e.mon }

// Handler serves the engine's monitor (see [monitor.Monitor.Handler]):
// Prometheus metrics at metrics, the dashboard at debug/slither/, its
// JSON state at debug/slither/state. Mount it on the program's own server,
// e.g. mux.Handle("/", e.Handler()), or under a prefix with
// http.StripPrefix. It takes Config.HTTP.Token like the engine's own
// server: without one only loopback clients are served.
//
// On shutdown, close the engine before calling the server's Shutdown:
// Close ends the handler's event streams (debug/slither/events), which
// otherwise stay open while a dashboard watches, and Shutdown waits for
// them until its context ends.
//
// The monitor's metrics are in a registry of its own, with the Go runtime
// and process collectors. To serve them with the program's metrics from
// one endpoint, gather both:
//
//	reg := prometheus.NewRegistry() // the program's collectors
//	mux.Handle("/metrics", promhttp.HandlerFor(
//		prometheus.Gatherers{reg, e.Monitor().Gatherer()}, promhttp.HandlerOpts{}))
//
// and not prometheus.DefaultGatherer as the program's: it has Go and
// process collectors too, and the same series gathered twice is an error.
func (e *Engine) Handler() http.Handler { return e.handler }

// HTTPAddr is the address the engine's monitor server listens on (the
// port chosen for ":0" included), or "" when Config.HTTP.Addr is empty.
func (e *Engine) HTTPAddr() string {
	if e.ln == nil {
		return ""
	}
	return e.ln.Addr().String()
}

// Telemetry is the engine's event bus; attach handlers to it.
func (e *Engine) Telemetry() *telemetry.Bus { return e.tel }

// Metrics is a snapshot of in-flight work and pool load, read from the
// engine's monitor (one aggregation of the events, not two). Failed
// batches include those cut short because their run stopped, as
// telemetry.Metrics counts them.
func (e *Engine) Metrics() telemetry.Snapshot {
	st := e.mon.State()
	snap := telemetry.Snapshot{
		InFlightBatches:  st.Totals.InFlight,
		QueuedItems:      st.Totals.QueuedItems,
		Retries:          st.Totals.Retries,
		FailedBatches:    st.Totals.BatchesFailed + st.Totals.BatchesCancelled,
		CompletedBatches: st.Totals.BatchesOK,
		Routes:           map[string]int64{},
		Pools:            map[string]telemetry.PoolSnapshot{},
	}
	for _, r := range st.Routes {
		snap.Routes[r.Route] += r.Count
	}
	for _, p := range st.Pools {
		snap.Pools[p.Name] = telemetry.PoolSnapshot{Busy: p.Busy, Capacity: p.Capacity, Saturation: p.Saturation}
	}
	return snap
}

// Views is the registry of store views Python reaches with slither.view.
func (e *Engine) Views() *store.Registry { return e.views }

// Store returns the store named name, or nil.
func (e *Engine) Store(name string) *store.Store { return e.stores[name] }

// ThreadPool returns the embedded pool, or nil when there is none.
func (e *Engine) ThreadPool() pools.Pool { return e.thread }

// ProcessPool returns the process pool named name ("" for the default).
func (e *Engine) ProcessPool(name string) *process.Pool {
	if name == "" {
		name = e.defaultPool()
	}
	return e.procs[name]
}

func (e *Engine) defaultPool() string {
	if _, ok := e.procs[DefaultPool]; ok {
		return DefaultPool
	}
	return slices.Sorted(maps.Keys(e.procs))[0]
}

// Pool returns the router over the thread pool and the process pool named
// name ("" for the default): batches go where their Route says. For the
// name of a remote pool it returns that pool (its nodes pick the route).
func (e *Engine) Pool(name string) (pools.Pool, error) {
	if name == "" {
		name = e.defaultPool()
	}
	if r, ok := e.routers[name]; ok {
		return r, nil
	}
	if p, ok := e.remotes[name]; ok {
		return p, nil
	}
	remotes := ""
	if len(e.remotes) > 0 {
		remotes = fmt.Sprintf("; remote pools: %v", slices.Sorted(maps.Keys(e.remotes)))
	}
	return nil, fmt.Errorf("engine: no process pool named %q (pools: %v%s)", name, slices.Sorted(maps.Keys(e.routers)), remotes)
}

// DispatchOptions are dispatch.Options plus the pool to use.
type DispatchOptions struct {
	dispatch.Options
	// Pool names the process pool ("" for the default) or a remote pool;
	// Options.Route picks between the process pool and the thread pool.
	Pool string
}

// Dispatch runs items through Python in batches; see dispatch.Run.
func (e *Engine) Dispatch(ctx context.Context, items iter.Seq[dispatch.Item], o DispatchOptions) (*dispatch.Output, error) {
	p, err := e.Pool(o.Pool)
	if err != nil {
		return nil, err
	}
	e.defaults(&o.Options)
	return dispatch.Run(ctx, p, items, o.Options)
}

// defaults gives o the engine's telemetry and tracer provider where it
// names none.
func (e *Engine) defaults(o *dispatch.Options) {
	if o.Telemetry == nil {
		o.Telemetry = e.tel
	}
	if o.TracerProvider == nil {
		o.TracerProvider = e.cfg.TracerProvider
	}
}

// Stream is Dispatch, lazily; see dispatch.Stream.
func (e *Engine) Stream(ctx context.Context, items iter.Seq[dispatch.Item], o DispatchOptions) (*dispatch.Dispatch, error) {
	p, err := e.Pool(o.Pool)
	if err != nil {
		return nil, err
	}
	e.defaults(&o.Options)
	return dispatch.Stream(ctx, p, items, o.Options), nil
}

// PipeOptions configure a pipeline run.
type PipeOptions struct {
	// SessionViews are registered for the run's session while it lasts.
	SessionViews []store.View
}

func (e *Engine) env(o PipeOptions) pipe.Env {
	return pipe.Env{Pool: e.Pool, Views: e.views, SessionViews: o.SessionViews, Telemetry: e.tel,
		TracerProvider: e.cfg.TracerProvider}
}

// RunPipe runs a pipeline over items; see pipe.Pipe.Run.
func (e *Engine) RunPipe(ctx context.Context, p *pipe.Pipe, items iter.Seq[dispatch.Item], o PipeOptions) (*pipe.Result, error) {
	return p.Run(ctx, e.env(o), items)
}

// StreamPipe runs a pipeline lazily; see pipe.Pipe.Stream.
func (e *Engine) StreamPipe(ctx context.Context, p *pipe.Pipe, items iter.Seq[dispatch.Item], o PipeOptions) *pipe.Stream {
	return p.Stream(ctx, e.env(o), items)
}

// Session opens a session with strict affinity on the pool named pool
// ("" for the default router; a remote pool's name for one of its nodes):
// its batches all run on one worker, where
// slither.session() and slither.ref keep state. Everything it holds is
// released when it is closed or ctx ends.
func (e *Engine) Session(ctx context.Context, pool string) (*pools.Session, error) {
	p, err := e.Pool(pool)
	if err != nil {
		return nil, err
	}
	return pools.NewSession(ctx, p), nil
}

// Package monitor shows what a Slither engine is doing: it listens to the
// telemetry bus, samples the pools and stores it is given, and serves the
// result three ways from one [http.Handler] (see [Monitor.Handler]):
//
//   - metrics: Prometheus metrics in the text exposition format
//     (counters and histograms fed by events, gauges read at scrape time);
//   - debug/slither/state: the engine's [State] as JSON;
//   - debug/slither/: a live dashboard page, embedded in the binary, that
//     polls the state every second.
//
// Everything it serves is read-only and holds no session ids: names an
// operator configured (pools, dispatches, pipes, stages, stores, views),
// function names, counts and the recent errors. Item values appear only
// where the failing code put them: an error's message and its Python
// traceback are what was raised, and may quote the items it failed on.
// Metric labels are low-cardinality: names only, and at most 256 distinct
// dispatch names and pipe names (later ones count as "other").
//
// A Monitor is usually made by the engine (engine.Config.HTTP,
// engine.Engine.Handler); New is for programs that wire pools and a bus
// themselves.
package monitor

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/slither-go/slither/pools"
	"github.com/slither-go/slither/store"
	"github.com/slither-go/slither/telemetry"
)

// Options say what a Monitor watches.
type Options struct {
	// Bus is the telemetry bus whose events feed the monitor (required).
	Bus *telemetry.Bus
	// HandlerName is the name the monitor attaches to Bus under; empty
	// means "monitor". Two monitors on one bus need different names.
	HandlerName string
	// Pools returns the pools to report on; it is called at each scrape
	// and each State, so pools added later show up. Each pool is shown
	// under its Stats().Name (its Kind when that is empty). Pass the
	// underlying pools, not a pools.Router over them (it would count
	// their workers twice). Nil means none.
	Pools func() []pools.Pool
	// Stores returns the stores to report on (rows per table), called like
	// Pools. Nil means none.
	Stores func() []*store.Store
	// GIL returns the embedded interpreter's GIL state, with Embedded
	// false when there is none (then the GIL metrics are not exported);
	// nil means none.
	GIL func() GILState
	// Registerer is where the metrics are registered; nil means a registry
	// of the monitor's own, which also holds the Go runtime and process
	// collectors.
	Registerer prometheus.Registerer
	// Gatherer is what the handler's metrics endpoint serves; nil means the
	// monitor's own registry, or Registerer when that is also a Gatherer
	// (a *prometheus.Registry), else prometheus.DefaultGatherer.
	Gatherer prometheus.Gatherer
	// Version is shown in the state (e.g. the program's version); optional.
	Version string
	// Logger gets the monitor's warnings (e.g. that dispatch names past
	// the cap are counted as "other"); nil means slog.Default().
	Logger *slog.Logger
	// RecentErrors and RecentRoutes bound the errors and route decisions
	// the state keeps; 0 means 20 each.
	RecentErrors, RecentRoutes int
}

// Monitor keeps metrics and the live state of an engine. Its methods are
// safe for concurrent use.
type Monitor struct {
	opts    Options
	name    string
	started time.Time
	host    string
	log     *slog.Logger
	gather  prometheus.Gatherer
	reg     prometheus.Registerer
	met     *metrics
	col     prometheus.Collector
	agg     aggregate
	done    chan struct{} // closed by Close: ends event streams
	once    sync.Once
}

// New attaches a monitor to o.Bus and registers its metrics. Call Close to
// detach it.
func New(o Options) (*Monitor, error) {
	if o.Bus == nil {
		return nil, errors.New("monitor: Options.Bus is nil")
	}
	if o.HandlerName == "" {
		o.HandlerName = "monitor"
	}
	if o.RecentErrors <= 0 {
		o.RecentErrors = 20
	}
	if o.RecentRoutes <= 0 {
		o.RecentRoutes = 20
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	host, _ := os.Hostname()
	m := &Monitor{opts: o, name: o.HandlerName, started: time.Now(), host: host, log: o.Logger, done: make(chan struct{})}
	m.agg.init(o.RecentErrors, o.RecentRoutes)
	m.reg, m.gather = o.Registerer, o.Gatherer
	if m.reg == nil {
		r := prometheus.NewRegistry()
		if err := r.Register(collectors.NewGoCollector()); err != nil {
			return nil, fmt.Errorf("monitor: %w", err)
		}
		if err := r.Register(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})); err != nil {
			return nil, fmt.Errorf("monitor: %w", err)
		}
		m.reg = r
	}
	if m.gather == nil {
		if g, ok := m.reg.(prometheus.Gatherer); ok {
			m.gather = g
		} else {
			m.gather = prometheus.DefaultGatherer
		}
	}
	m.met = newMetrics()
	m.col = &collector{m: m}
	for _, c := range append(m.met.collectors(), m.col) {
		if err := m.reg.Register(c); err != nil {
			m.unregister()
			return nil, fmt.Errorf("monitor: registering metrics: %w", err)
		}
	}
	if err := o.Bus.Attach(m.name, m.handle); err != nil {
		m.unregister()
		return nil, fmt.Errorf("monitor: %w", err)
	}
	return m, nil
}

func (m *Monitor) unregister() {
	for _, c := range append(m.met.collectors(), m.col) {
		m.reg.Unregister(c)
	}
}

// Close detaches the monitor from its bus, unregisters its metrics and
// ends the event streams its handler serves. The handler keeps serving
// the state as it was. Close is idempotent.
func (m *Monitor) Close() {
	m.once.Do(func() {
		m.opts.Bus.Detach(m.name)
		m.unregister()
		close(m.done)
	})
}

// Gatherer is what the metrics endpoint serves (see [Options.Gatherer]).
func (m *Monitor) Gatherer() prometheus.Gatherer { return m.gather }

package monitor

import (
	"maps"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// collector reports the gauges (and the counters pools keep themselves)
// at scrape time: pool stats, dispatch load, store sizes, the GIL.
type collector struct{ m *Monitor }

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(name, help, labels, nil)
}

var (
	descRunsActive = desc("slither_dispatch_runs_active", "Dispatch runs going on now.", "dispatch")
	descInFlight   = desc("slither_dispatch_batches_in_flight", "Batches submitted and not yet ended.", "dispatch")
	descMaxFlight  = desc("slither_dispatch_max_in_flight",
		"The bound on batches in flight, summed over the dispatch's running runs.", "dispatch")
	descQueued        = desc("slither_dispatch_queued_items", "Items in formed batches waiting for a slot.", "dispatch")
	descItemsInFlight = desc("slither_dispatch_items_in_flight", "Items of the batches in flight.", "dispatch")

	descCapacity  = desc("slither_pool_capacity", "Batches the pool runs at once.", "pool", "kind")
	descEffective = desc("slither_pool_effective_capacity",
		"Batches the pool can really run in parallel now: 1 for the embedded pool while the GIL is on, and never more than the usable cores.",
		"pool", "kind")
	descBusy       = desc("slither_pool_busy", "Batches running now.", "pool", "kind")
	descWaiting    = desc("slither_pool_waiting", "Batches waiting for a worker (queue depth).", "pool", "kind")
	descSaturation = desc("slither_pool_saturation_ratio", "Busy / capacity.", "pool", "kind")
	descWorkers    = desc("slither_pool_workers", "Workers by state (idle, busy, starting, recycling, stopped).",
		"pool", "kind", "state")
	descCalls    = desc("slither_pool_calls_total", "Batches the pool's workers ran (failed ones included).", "pool", "kind")
	descItems    = desc("slither_pool_items_total", "Items in the batches the pool's workers ran.", "pool", "kind")
	descErrors   = desc("slither_pool_errors_total", "Batches that failed in the pool.", "pool", "kind")
	descBusySecs = desc("slither_pool_busy_seconds_total", "Time the pool's workers spent running batches.", "pool", "kind")
	descRSS      = desc("slither_pool_rss_bytes", "Resident memory of the pool's worker processes (process pools).",
		"pool", "kind")

	descGIL          = desc("slither_gil_enabled", "1 when the embedded interpreter's GIL is on.")
	descFreeThreaded = desc("slither_gil_free_threaded_build", "1 when the embedded interpreter is a free-threaded build.")
	descGILChanges   = desc("slither_gil_changes_total", "Changes of the embedded interpreter's GIL state seen.")

	descRows        = desc("slither_store_rows", "Rows (keys) in a store's table.", "store", "table")
	descPipesActive = desc("slither_pipe_runs_active", "Pipeline runs going on now.", "pipe")
)

// workerStates are the states slither_pool_workers always reports (0 when
// no worker is in one), so a dashboard sees every series.
var workerStates = []string{"idle", "busy", "starting", "recycling", "stopped"}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descRunsActive, descInFlight, descMaxFlight, descQueued, descItemsInFlight,
		descCapacity, descEffective, descBusy, descWaiting, descSaturation, descWorkers, descCalls, descItems, descErrors, descBusySecs, descRSS,
		descGIL, descFreeThreaded, descGILChanges, descRows, descPipesActive} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	m := c.m
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	count := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	ds, pipes := m.agg.gauges()
	for _, d := range ds {
		gauge(descRunsActive, float64(d.Runs), d.Name)
		gauge(descInFlight, float64(d.InFlight), d.Name)
		gauge(descMaxFlight, float64(d.MaxInFlight), d.Name)
		gauge(descQueued, float64(d.QueuedItems), d.Name)
		gauge(descItemsInFlight, float64(d.ItemsInFlight), d.Name)
	}
	for _, name := range slices.Sorted(maps.Keys(pipes)) {
		gauge(descPipesActive, float64(pipes[name]), name)
	}
	now := time.Now()
	g := m.gil()
	for _, ns := range m.poolStats(g) {
		ps := poolState(ns, now)
		l := []string{ps.Name, ps.Kind}
		gauge(descCapacity, float64(ps.Capacity), l...)
		gauge(descEffective, float64(ps.EffectiveCapacity), l...)
		gauge(descBusy, float64(ps.Busy), l...)
		gauge(descWaiting, float64(ps.Waiting), l...)
		gauge(descSaturation, ps.Saturation, l...)
		byState := map[string]int{}
		var rss uint64
		var busy float64
		for _, w := range ps.Workers {
			byState[w.State]++
			rss += w.RSS
			busy += w.BusyS
		}
		for _, s := range workerStates {
			gauge(descWorkers, float64(byState[s]), ps.Name, ps.Kind, s)
		}
		count(descCalls, float64(ps.Calls), l...)
		count(descItems, float64(ps.Items), l...)
		count(descErrors, float64(ps.Errors), l...)
		count(descBusySecs, busy, l...)
		if ps.Kind == "process" {
			gauge(descRSS, float64(rss), l...)
		}
	}
	if g.Embedded {
		gauge(descGIL, b2f(g.Enabled))
		gauge(descFreeThreaded, b2f(g.FreeThreadedBuild))
		count(descGILChanges, float64(len(g.Changes)))
	}
	for _, s := range m.stores() {
		for _, t := range tables(s) {
			gauge(descRows, float64(t.Rows), s.Name(), t.Name)
		}
	}
}

func (m *Monitor) gil() GILState {
	if m.opts.GIL == nil {
		return GILState{}
	}
	return m.opts.GIL()
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// gauges copies the dispatches' load and the pipes' running runs.
func (a *aggregate) gauges() ([]DispatchState, map[string]int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	ds := make([]DispatchState, 0, len(a.dispatches))
	for _, name := range slices.Sorted(maps.Keys(a.dispatches)) {
		ds = append(ds, a.dispatches[name].st)
	}
	pipes := make(map[string]int, len(a.pipes))
	for name, p := range a.pipes {
		pipes[name] = len(p.running)
	}
	return ds, pipes
}

package monitor

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the counters and histograms events feed; the gauges are read
// at scrape time by [collector]. /work/notes/readme-monitor.md (the
// README's table) documents every one: keep it in step.
type metrics struct {
	batches      *prometheus.CounterVec   // {dispatch, pool, outcome}
	items        *prometheus.CounterVec   // {dispatch, outcome}
	retries      *prometheus.CounterVec   // {dispatch}
	runs         *prometheus.CounterVec   // {dispatch}
	batchSeconds *prometheus.HistogramVec // {dispatch, pool}
	batchItems   *prometheus.HistogramVec // {dispatch, pool}

	workerStarts   *prometheus.CounterVec // {pool, kind}
	workerExits    *prometheus.CounterVec // {pool, kind, class}
	workerRestarts *prometheus.CounterVec // {pool, kind}
	routes         *prometheus.CounterVec // {route, class}

	storeWrites  *prometheus.CounterVec   // {store, table, op}
	storeReloads *prometheus.CounterVec   // {store, outcome}
	viewCalls    *prometheus.CounterVec   // {view, outcome}
	viewSeconds  *prometheus.HistogramVec // {view}

	pipeRuns    *prometheus.CounterVec // {pipe, outcome}
	stageItems  *prometheus.CounterVec // {pipe, stage, direction}
	stageRouted *prometheus.CounterVec // {pipe, stage, route}
}

// Outcome label values.
const (
	outcomeOK        = "ok"
	outcomeFailed    = "failed"
	outcomeCancelled = "cancelled"
	outcomeRetried   = "retried"
	outcomeSkipped   = "skipped"
	outcomeRouted    = "routed"
)

func counter(name, help string, labels ...string) *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
}

func histogram(name, help string, buckets []float64, labels ...string) *prometheus.HistogramVec {
	return prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets}, labels)
}

func newMetrics() *metrics {
	return &metrics{
		batches: counter("slither_dispatch_batches_total",
			"Batch submissions that ended, by dispatch, pool and outcome (ok, failed, cancelled): every attempt of a retried or bisected batch counts.",
			"dispatch", "pool", "outcome"),
		items: counter("slither_dispatch_items_total",
			"Items by outcome, each counted once whatever its attempts: ok (a result, as batches end), retried (submitted again), and when a run ends skipped (dropped by Skip), routed (sent to an error bucket by Route), and the rest without a result: cancelled when the run was cancelled (its caller's context ended, or its consumer stopped reading), else failed (failed and surfaced, or not run because the run halted).",
			"dispatch", "outcome"),
		retries: counter("slither_dispatch_retries_total", "Re-submissions of failed batches (Retry and Bisect).", "dispatch"),
		runs:    counter("slither_dispatch_runs_total", "Dispatch runs started.", "dispatch"),
		batchSeconds: histogram("slither_dispatch_batch_duration_seconds",
			"Wall time of a batch submission, waiting for a worker included.",
			prometheus.ExponentialBuckets(0.0001, 4, 10), "dispatch", "pool"),
		batchItems: histogram("slither_dispatch_batch_items", "Items per submitted batch.",
			prometheus.ExponentialBuckets(1, 2, 13), "dispatch", "pool"),

		workerStarts: counter("slither_pool_worker_starts_total", "Workers that became ready.", "pool", "kind"),
		workerExits: counter("slither_pool_worker_exits_total",
			"Workers that ended, by reason class (crash, timeout, recycle, closed, killed, start-failed...).", "pool", "kind", "class"),
		workerRestarts: counter("slither_pool_worker_restarts_total", "Replacement workers started.", "pool", "kind"),
		routes: counter("slither_route_decisions_total",
			"Router decisions (batches) by route (thread, process) and reason class.", "route", "class"),

		storeWrites: counter("slither_store_writes_total", "Store writes by table and operation.", "store", "table", "op"),
		storeReloads: counter("slither_store_reloads_total", "Store reloads by outcome (ok, failed).",
			"store", "outcome"),
		viewCalls: counter("slither_view_calls_total", "Store view calls (reads from Python) by outcome (ok, failed).",
			"view", "outcome"),
		viewSeconds: histogram("slither_view_duration_seconds", "Time a view call took.",
			prometheus.ExponentialBuckets(0.00001, 4, 10), "view"),

		pipeRuns: counter("slither_pipe_runs_total", "Pipeline runs that ended, by outcome (ok, failed).", "pipe", "outcome"),
		stageItems: counter("slither_pipe_stage_items_total",
			"Items a pipeline stage took in and let out (direction in, out), counted when the stage ends.",
			"pipe", "stage", "direction"),
		stageRouted: counter("slither_pipe_stage_routed_items_total",
			"Items a router stage sent to each route, counted when the stage ends.", "pipe", "stage", "route"),
	}
}

func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.batches, m.items, m.retries, m.runs, m.batchSeconds, m.batchItems,
		m.workerStarts, m.workerExits, m.workerRestarts, m.routes,
		m.storeWrites, m.storeReloads, m.viewCalls, m.viewSeconds,
		m.pipeRuns, m.stageItems, m.stageRouted}
}

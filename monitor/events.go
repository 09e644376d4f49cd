package monitor

import (
	"maps"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/slither-go/slither/dispatch"
	"github.com/slither-go/slither/pipe"
	"github.com/slither-go/slither/telemetry"
)

// handle is the monitor's bus handler. It runs on the emitting goroutine,
// batch events on the dispatch hot path: one lock, a map lookup and a few
// atomic adds per event, no allocation once a dispatch's series exist.
func (m *Monitor) handle(ev telemetry.Event, ms telemetry.Measurements, md telemetry.Metadata) {
	switch ev {
	case telemetry.DispatchBatchQueued, telemetry.DispatchBatchStart, telemetry.DispatchBatchStop,
		telemetry.DispatchBatchException, telemetry.DispatchBatchRetry, telemetry.DispatchBatchDropped:
		m.batchEvent(ev, ms, md)
	case telemetry.DispatchRunStart, telemetry.DispatchRunStop:
		m.runEvent(ev, ms, md)
	case telemetry.RouterDecision:
		m.routeEvent(md)
	case telemetry.PoolWorkerStart, telemetry.PoolWorkerExit, telemetry.PoolWorkerRestart:
		m.workerEvent(ev, md)
	case telemetry.PipeRunStart, telemetry.PipeRunStop, telemetry.PipeRunException:
		m.pipeRunEvent(ev, md)
	case telemetry.PipeStageStop:
		m.stageStopEvent(ms, md)
	case telemetry.PipeStageException:
		if str(md, "kind") == "python" {
			break // its dispatch reported the batch's error, traceback and all
		}
		m.agg.addError(withMessage(ErrorState{Source: "pipe " + str(md, "pipe") + " stage " + str(md, "stage"),
			Type: str(md, "exception_type"), Traceback: str(md, "traceback")}, md))
	case telemetry.StoreWrite, telemetry.StoreReloadStop, telemetry.BridgeViewStart, telemetry.BridgeViewStop:
		m.storeEvent(ev, ms, md)
	}
}

// str reads a string from metadata ("" when absent or not a string).
func str(md telemetry.Metadata, k string) string {
	s, _ := md[k].(string)
	return s
}

// num reads an integer from metadata, whatever its integer type.
func num(md telemetry.Metadata, k string) int64 {
	switch v := md[k].(type) {
	case int:
		return int64(v)
	case int64:
		return v
	case int32:
		return int64(v)
	case uint64:
		return int64(v)
	case float64:
		return int64(v)
	}
	return 0
}

// withMessage sets e's Message from an exception event's metadata:
// Python's own message when the event carries it ("exception_message"),
// with the whole Go error chain in Error; else the error's text.
func withMessage(e ErrorState, md telemetry.Metadata) ErrorState {
	e.Message = str(md, "error")
	if pm, ok := md["exception_message"].(string); ok {
		e.Message, e.Error = pm, e.Message
	}
	return e
}

// dispatchName is the name a batch event's dispatch goes by: its Name, or
// module.function.
func dispatchName(md telemetry.Metadata) (name, function string) {
	function = str(md, "module") + "." + str(md, "function")
	if name = str(md, "dispatch"); name == "" {
		name = function
	}
	return name, function
}

func (m *Monitor) batchEvent(ev telemetry.Event, ms telemetry.Measurements, md telemetry.Metadata) {
	name := str(md, "dispatch")
	a := &m.agg
	a.mu.Lock()
	d := a.dispatches[name]
	var capped string
	if d == nil || name == "" { // the first event of a dispatch, one past the cap, or one with no name (old emitters)
		var fn string
		name, fn = dispatchName(md)
		d, capped = a.dispatch(m.met, name, fn)
	}
	n := int64(ms.Items)
	switch ev {
	case telemetry.DispatchBatchQueued:
		d.st.QueuedItems += n
	case telemetry.DispatchBatchDropped: // queued, never started: its run ended first
		d.st.QueuedItems = max(d.st.QueuedItems-n, 0)
	case telemetry.DispatchBatchStart:
		d.st.QueuedItems = max(d.st.QueuedItems-n, 0)
		d.st.InFlight++
		d.st.ItemsInFlight += n
		if !d.poolKnown {
			// Until a batch ends and names the pool that ran it (a
			// router's choice): what the start says.
			if p := str(md, "pool"); p != "" {
				d.st.Pool = p
			}
		}
	case telemetry.DispatchBatchRetry:
		// The retried items wait again: their next start takes them off.
		d.st.QueuedItems += n
		d.st.Retries++
		d.retries.Inc()
		d.retriedItems.Add(float64(n))
	case telemetry.DispatchBatchStop:
		// Clamped: a monitor attached mid-run sees ends of starts it missed.
		d.st.InFlight = max(d.st.InFlight-1, 0)
		d.st.ItemsInFlight = max(d.st.ItemsInFlight-n, 0)
		d.st.BatchesOK++
		// Items the function failed on their own (slither.failed) have no
		// result; what becomes of them (retried, skipped, routed, failed)
		// the run's report says when it ends.
		ok := n - int64(ms.Extra["failed_items"])
		d.st.ItemsOK += ok
		s := d.series(m.met, str(md, "pool"))
		s.ok.Inc()
		s.seconds.Observe(ms.Duration.Seconds())
		s.items.Observe(float64(n))
		d.okItems.Add(float64(ok))
		d.setPool(md)
	case telemetry.DispatchBatchException:
		d.st.InFlight = max(d.st.InFlight-1, 0)
		d.st.ItemsInFlight = max(d.st.ItemsInFlight-n, 0)
		s := d.series(m.met, str(md, "pool"))
		msg := str(md, "error")
		if msg == "" { // no error: the run was cancelled under it
			d.st.Cancelled++
			s.cancelled.Inc()
			break
		}
		// A failed submission: its items may yet succeed (Retry, Bisect)
		// or be skipped or routed; the run's report counts them as items.
		d.st.Failed++
		s.failed.Inc()
		s.seconds.Observe(ms.Duration.Seconds())
		s.items.Observe(float64(n))
		d.setPool(md)
		// The error keeps the dispatch's own name, even one counted
		// under "other": the recent errors are few.
		a.addErrorLocked(withMessage(ErrorState{Source: name, Function: str(md, "module") + "." + str(md, "function"),
			Pool: str(md, "pool"), Type: str(md, "exception_type"), Traceback: str(md, "traceback")}, md))
	}
	a.mu.Unlock()
	m.warnCapped("dispatch", capped)
}

func (m *Monitor) runEvent(ev telemetry.Event, ms telemetry.Measurements, md telemetry.Metadata) {
	name, fn := dispatchName(md)
	a := &m.agg
	a.mu.Lock()
	d, capped := a.dispatch(m.met, name, fn)
	defer m.warnCapped("dispatch", capped) // after the unlock (deferred calls run last-in first-out)
	defer a.mu.Unlock()
	limit := int64(ms.Extra["max_in_flight"])
	if ev == telemetry.DispatchRunStart {
		d.st.Runs++
		d.st.MaxInFlight += limit
		d.runs.Inc()
		if d.st.Pool == "" { // the pool the run was given, until a batch says more
			d.st.Pool = str(md, "pool")
		}
		return
	}
	d.st.Runs--
	d.st.MaxInFlight -= limit
	if d.st.Runs <= 0 {
		// No run of this name goes on, so nothing of it waits or runs:
		// a safety net under the dropped and end events (a monitor
		// attached mid-run saw starts it can never match).
		d.st.Runs, d.st.MaxInFlight, d.st.InFlight, d.st.ItemsInFlight, d.st.QueuedItems = 0, 0, 0, 0, 0
	}
	// What became of each item is known when the run ends: its report
	// counts them once, whatever the attempts.
	if rep, ok := report(md); ok {
		skipped, routed := int64(rep.SkippedItems), int64(rep.Routed)
		rest := max(int64(rep.Items-rep.Succeeded)-skipped-routed, 0)
		d.st.ItemsSkipped += skipped
		d.st.ItemsRouted += routed
		d.skippedItems.Add(float64(skipped))
		d.routedItems.Add(float64(routed))
		// Failed: the items whose failure ended the run. The rest never
		// got a result because the run ended before they did: its caller
		// cancelled it, its consumer stopped reading, or another item's
		// failure halted it.
		failed := min(int64(rep.Halted), rest)
		d.st.ItemsFailed += failed
		d.failedItems.Add(float64(failed))
		d.st.ItemsCancelled += rest - failed
		d.cancelledItems.Add(float64(rest - failed))
	}
}

// report is the dispatch.Report a dispatch.run.stop event carries, if any.
func report(md telemetry.Metadata) (dispatch.Report, bool) {
	switch r := md["report"].(type) {
	case dispatch.Report:
		return r, true
	case *dispatch.Report:
		if r != nil {
			return *r, true
		}
	}
	return dispatch.Report{}, false
}

func (m *Monitor) routeEvent(md telemetry.Metadata) {
	route, class := str(md, "route"), str(md, "class")
	if class == "" {
		class = "unclassified"
	}
	m.met.routes.WithLabelValues(route, class).Inc()
	m.agg.addRoute(RouteDecision{At: time.Now(), Function: str(md, "module") + "." + str(md, "function"),
		Route: route, Class: class, Reason: str(md, "reason"), Warning: str(md, "warning")})
}

func (m *Monitor) workerEvent(ev telemetry.Event, md telemetry.Metadata) {
	pool, kind := str(md, "pool"), str(md, "kind")
	if kind == "" {
		kind = pool // older emitters name the kind in "pool"
	}
	switch ev {
	case telemetry.PoolWorkerStart:
		m.met.workerStarts.WithLabelValues(pool, kind).Inc()
	case telemetry.PoolWorkerRestart:
		m.met.workerRestarts.WithLabelValues(pool, kind).Inc()
	case telemetry.PoolWorkerExit:
		class := str(md, "class")
		if class == "" {
			class = "unclassified"
		}
		m.met.workerExits.WithLabelValues(pool, kind, class).Inc()
	}
}

func (m *Monitor) pipeRunEvent(ev telemetry.Event, md telemetry.Metadata) {
	name, session := str(md, "pipe"), str(md, "session")
	a := &m.agg
	var capped string
	defer func() { m.warnCapped("pipe", capped) }() // after the unlocks
	if ev == telemetry.PipeRunStart {
		// The live counts are read outside the lock (here and in State):
		// the pipe takes its own locks in them.
		live, _ := md["stages"].(func() []pipe.StageReport)
		var stages []pipe.StageReport
		if live != nil {
			stages = live()
		}
		a.mu.Lock()
		defer a.mu.Unlock()
		var p *pipeAgg
		p, capped = a.pipe(name)
		p.st.Runs++
		p.running[session] = &pipeRun{live: live, stopped: map[string]StageState{}}
		for _, s := range stages { // pipeline order, when the pipe tells it
			p.stage(s.Name, s.Kind)
		}
		return
	}
	a.mu.Lock()
	p, capped := a.pipe(name)
	r := p.running[session]
	var stopped []StageState
	if r != nil {
		stopped = slices.Collect(maps.Values(r.stopped))
	}
	a.mu.Unlock()
	var final []StageState
	if r != nil {
		final = r.counts(stopped)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	outcome := outcomeOK
	if ev == telemetry.PipeRunException {
		outcome = outcomeFailed
		p.st.Failed++
		a.addErrorLocked(withMessage(ErrorState{Source: "pipe " + name}, md))
	}
	m.met.pipeRuns.WithLabelValues(p.st.Name, outcome).Inc()
	if r != nil {
		for _, s := range final {
			t := p.stage(s.Name, s.Kind)
			t.In += s.In
			t.Out += s.Out
		}
		delete(p.running, session)
	}
}

func (m *Monitor) stageStopEvent(ms telemetry.Measurements, md telemetry.Metadata) {
	session := str(md, "session")
	in, out := num(md, "in"), int64(ms.Items)
	a := &m.agg
	a.mu.Lock()
	p, capped := a.pipe(str(md, "pipe"))
	stage := p.stage(str(md, "stage"), str(md, "kind")).Name
	if r := p.running[session]; r != nil {
		r.stopped[stage] = StageState{Name: stage, Kind: str(md, "kind"), In: in, Out: out}
	}
	name := p.st.Name
	a.mu.Unlock()
	m.warnCapped("pipe", capped)
	m.met.stageItems.WithLabelValues(name, stage, "in").Add(float64(in))
	m.met.stageItems.WithLabelValues(name, stage, "out").Add(float64(out))
	if routed, ok := md["routed"].(map[string]int); ok {
		for route, n := range routed {
			m.met.stageRouted.WithLabelValues(name, stage, route).Add(float64(n))
		}
	}
}

func (m *Monitor) storeEvent(ev telemetry.Event, ms telemetry.Measurements, md telemetry.Metadata) {
	switch ev {
	case telemetry.StoreWrite:
		m.met.storeWrites.WithLabelValues(str(md, "store"), str(md, "table"), str(md, "op")).Inc()
		m.agg.store(str(md, "store"), func(s *StoreState) { s.Writes++ })
	case telemetry.StoreReloadStop:
		outcome := outcomeOK
		if ok, _ := md["ok"].(bool); !ok {
			outcome = outcomeFailed
		}
		m.met.storeReloads.WithLabelValues(str(md, "store"), outcome).Inc()
		m.agg.store(str(md, "store"), func(s *StoreState) { s.Reloads++ })
	case telemetry.BridgeViewStart:
		if st := str(md, "store"); st != "" {
			m.agg.store(st, func(s *StoreState) { s.Views++ })
		}
	case telemetry.BridgeViewStop:
		outcome := outcomeOK
		if ok, _ := md["ok"].(bool); !ok {
			outcome = outcomeFailed
		}
		m.met.viewCalls.WithLabelValues(str(md, "view"), outcome).Inc()
		m.met.viewSeconds.WithLabelValues(str(md, "view")).Observe(ms.Duration.Seconds())
	}
}

// dispatchAgg is one dispatch name's state and its resolved metric
// children (resolving a label set costs a hash and a lookup: done once).
type dispatchAgg struct {
	st DispatchState
	// poolKnown says a batch has ended and named the pool that ran it:
	// from then on batch starts (which name only the pool the run was
	// given, e.g. a router) leave st.Pool alone.
	poolKnown bool
	byPool    map[string]*batchSeries
	retries   prometheus.Counter
	runs      prometheus.Counter

	okItems, failedItems, cancelledItems, retriedItems, skippedItems, routedItems prometheus.Counter
}

type batchSeries struct {
	ok, failed, cancelled prometheus.Counter
	seconds, items        prometheus.Observer
}

func newDispatchAgg(met *metrics, name, function string) *dispatchAgg {
	return &dispatchAgg{st: DispatchState{Name: name, Function: function}, byPool: map[string]*batchSeries{},
		retries:        met.retries.WithLabelValues(name),
		runs:           met.runs.WithLabelValues(name),
		okItems:        met.items.WithLabelValues(name, outcomeOK),
		failedItems:    met.items.WithLabelValues(name, outcomeFailed),
		cancelledItems: met.items.WithLabelValues(name, outcomeCancelled),
		retriedItems:   met.items.WithLabelValues(name, outcomeRetried),
		skippedItems:   met.items.WithLabelValues(name, outcomeSkipped),
		routedItems:    met.items.WithLabelValues(name, outcomeRouted)}
}

func (d *dispatchAgg) series(met *metrics, pool string) *batchSeries {
	s := d.byPool[pool]
	if s == nil {
		n := d.st.Name
		s = &batchSeries{ok: met.batches.WithLabelValues(n, pool, outcomeOK),
			failed:    met.batches.WithLabelValues(n, pool, outcomeFailed),
			cancelled: met.batches.WithLabelValues(n, pool, outcomeCancelled),
			seconds:   met.batchSeconds.WithLabelValues(n, pool),
			items:     met.batchItems.WithLabelValues(n, pool)}
		d.byPool[pool] = s
	}
	return s
}

// setPool records the pool of the dispatch's last batch that ended.
func (d *dispatchAgg) setPool(md telemetry.Metadata) {
	if p := str(md, "pool"); p != "" {
		d.st.Pool, d.poolKnown = p, true
	}
}

package monitor

import (
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/slither-go/slither/internal/textcut"
	"github.com/slither-go/slither/pipe"
)

// aggregate is the part of the state events build. One mutex guards it:
// every handler holds it briefly, and State copies out under it.
type aggregate struct {
	mu           sync.Mutex
	dispatches   map[string]*dispatchAgg
	pipes        map[string]*pipeAgg
	stores       map[string]*StoreState
	routes       map[[2]string]int64 // by route, class
	recentRoutes []RouteDecision     // newest first
	errors       []ErrorState        // newest first
	maxErrors    int
	maxRoutes    int
	// cappedDispatch and cappedPipe say a name has been counted under
	// otherName already (the warning is logged once).
	cappedDispatch, cappedPipe bool
}

// maxNames bounds the distinct dispatch names, pipe names and stage names
// of a pipe that the monitor keeps: each is a metric label and a key of
// the state, and a program that makes names per request (a dispatch
// named after a user, a date) would otherwise grow both without bound.
// Past it, new names are counted under otherName.
const maxNames = 256

// otherName is the name that names past maxNames are counted under.
const otherName = "other"

func (a *aggregate) init(maxErrors, maxRoutes int) {
	a.dispatches = map[string]*dispatchAgg{}
	a.pipes = map[string]*pipeAgg{}
	a.stores = map[string]*StoreState{}
	a.routes = map[[2]string]int64{}
	a.maxErrors, a.maxRoutes = maxErrors, maxRoutes
}

// Bounds on the text kept per error: an error message can hold a whole
// input, and the state is served often.
const (
	maxMessage   = 2000
	maxTraceback = 16000
)

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return textcut.Bytes(s, n) + "…"
}

func (a *aggregate) addError(e ErrorState) {
	a.mu.Lock()
	a.addErrorLocked(e)
	a.mu.Unlock()
}

// addErrorLocked puts e first in the recent errors; the same error as the
// newest one only counts again (a failing item retried, a stage failing
// every item the same way).
func (a *aggregate) addErrorLocked(e ErrorState) {
	e.At, e.Count = time.Now(), 1
	e.Message, e.Error, e.Traceback = clip(e.Message, maxMessage), clip(e.Error, maxMessage), clip(e.Traceback, maxTraceback)
	if len(a.errors) > 0 {
		last := &a.errors[0]
		if last.Source == e.Source && last.Function == e.Function && last.Type == e.Type && last.Message == e.Message &&
			last.Error == e.Error {
			last.Count++
			last.At = e.At
			if e.Traceback != "" {
				last.Traceback = e.Traceback
			}
			return
		}
	}
	a.errors = slices.Insert(a.errors, 0, e)
	if len(a.errors) > a.maxErrors {
		a.errors = a.errors[:a.maxErrors]
	}
}

// addRoute counts d and keeps it first among the recent decisions; the
// same function, route and reason is kept once, with a count.
func (a *aggregate) addRoute(d RouteDecision) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.routes[[2]string{d.Route, d.Class}]++
	d.Count = 1
	if i := slices.IndexFunc(a.recentRoutes, func(r RouteDecision) bool {
		return r.Function == d.Function && r.Route == d.Route && r.Reason == d.Reason
	}); i >= 0 {
		d.Count += a.recentRoutes[i].Count
		a.recentRoutes = slices.Delete(a.recentRoutes, i, i+1)
	}
	a.recentRoutes = slices.Insert(a.recentRoutes, 0, d)
	if len(a.recentRoutes) > a.maxRoutes {
		a.recentRoutes = a.recentRoutes[:a.maxRoutes]
	}
}

func (a *aggregate) store(name string, f func(*StoreState)) {
	a.mu.Lock()
	defer a.mu.Unlock()
	s := a.stores[name]
	if s == nil {
		s = &StoreState{Name: name}
		a.stores[name] = s
	}
	f(s)
}

// pipeAgg is one pipeline: stage totals of its ended runs, and its
// running runs (by session, never shown).
type pipeAgg struct {
	st      PipeState
	order   []string
	stages  map[string]*StageState
	running map[string]*pipeRun
}

// pipeRun is one running run: its live counts when the pipe reports them,
// and the stages that ended so far.
type pipeRun struct {
	live    func() []pipe.StageReport
	stopped map[string]StageState
}

// counts are the run's stage counts now: stopped is the run's stopped
// stages, copied under the aggregate's lock, used when the pipe gives no
// live counts. live is called without that lock.
func (r *pipeRun) counts(stopped []StageState) []StageState {
	if r.live == nil {
		return stopped
	}
	var out []StageState
	for _, s := range r.live() {
		out = append(out, StageState{Name: s.Name, Kind: s.Kind, In: int64(s.In), Out: int64(s.Out)})
	}
	return out
}

// dispatch returns the aggregate of the dispatch named name, adding it if
// new; past maxNames names, otherName's. capped is name the first time a
// name is counted under otherName (to log once), else "". a.mu is held.
func (a *aggregate) dispatch(met *metrics, name, function string) (d *dispatchAgg, capped string) {
	if d = a.dispatches[name]; d != nil {
		return d, ""
	}
	if len(a.dispatches) >= maxNames {
		if !a.cappedDispatch {
			a.cappedDispatch, capped = true, name
		}
		name, function = otherName, ""
		if d = a.dispatches[name]; d != nil {
			return d, capped
		}
	}
	d = newDispatchAgg(met, name, function)
	a.dispatches[name] = d
	return d, capped
}

// pipe returns the pipeline named name, adding it if new; past maxNames
// names, otherName's. capped is as for [aggregate.dispatch].
func (a *aggregate) pipe(name string) (p *pipeAgg, capped string) {
	if p = a.pipes[name]; p != nil {
		return p, ""
	}
	if len(a.pipes) >= maxNames {
		if !a.cappedPipe {
			a.cappedPipe, capped = true, name
		}
		name = otherName
		if p = a.pipes[name]; p != nil {
			return p, capped
		}
	}
	p = &pipeAgg{st: PipeState{Name: name}, stages: map[string]*StageState{}, running: map[string]*pipeRun{}}
	a.pipes[name] = p
	return p, capped
}

// warnCapped logs, once per kind of name (the aggregate says when), that
// names past maxNames are counted under otherName.
func (m *Monitor) warnCapped(kind, name string) {
	if name == "" {
		return
	}
	m.log.Warn("slither monitor: too many distinct "+kind+" names; later ones are counted as \""+otherName+"\" in the metrics and the state",
		"cap", maxNames, "first_capped", name)
}

// stage returns the totals of the stage named name, adding it (in the
// order stages are first seen) if new; past maxNames stages, otherName's.
func (p *pipeAgg) stage(name, kind string) *StageState {
	s := p.stages[name]
	if s == nil && len(p.stages) >= maxNames {
		name, kind = otherName, ""
		s = p.stages[name]
	}
	if s == nil {
		s = &StageState{Name: name, Kind: kind}
		p.stages[name] = s
		p.order = append(p.order, name)
	}
	return s
}

type runningRun struct {
	pipe    int // index in State.Pipes
	run     *pipeRun
	stopped []StageState
}

// snapshot copies the event-built parts of the state into st. The running
// pipeline runs' counts are read after the lock is released (the pipe
// takes its own locks in them) and added to their stages.
func (a *aggregate) snapshot(st *State) {
	var running []runningRun
	a.snapshotLocked(st, &running)
	for _, rr := range running {
		ps := &st.Pipes[rr.pipe]
		for _, s := range rr.run.counts(rr.stopped) {
			if i := slices.IndexFunc(ps.Stages, func(x StageState) bool { return x.Name == s.Name }); i >= 0 {
				ps.Stages[i].In += s.In
				ps.Stages[i].Out += s.Out
			}
		}
	}
}

func (a *aggregate) snapshotLocked(st *State, running *[]runningRun) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, name := range slices.Sorted(maps.Keys(a.dispatches)) {
		d := a.dispatches[name].st
		st.Dispatch = append(st.Dispatch, d)
		st.Totals.BatchesOK += d.BatchesOK
		st.Totals.BatchesFailed += d.Failed
		st.Totals.BatchesCancelled += d.Cancelled
		st.Totals.Retries += d.Retries
		st.Totals.ItemsOK += d.ItemsOK
		st.Totals.ItemsFailed += d.ItemsFailed
		st.Totals.ItemsSkipped += d.ItemsSkipped
		st.Totals.ItemsRouted += d.ItemsRouted
		st.Totals.ItemsCancelled += d.ItemsCancelled
		st.Totals.InFlight += d.InFlight
		st.Totals.ItemsInFlight += d.ItemsInFlight
		st.Totals.QueuedItems += d.QueuedItems
	}
	for _, k := range slices.SortedFunc(maps.Keys(a.routes), func(x, y [2]string) int {
		return strings.Compare(x[0]+"\x00"+x[1], y[0]+"\x00"+y[1])
	}) {
		st.Routes = append(st.Routes, RouteCount{Route: k[0], Class: k[1], Count: a.routes[k]})
	}
	st.RecentRoutes = slices.Clone(a.recentRoutes)
	st.Errors = slices.Clone(a.errors)
	for _, name := range slices.Sorted(maps.Keys(a.pipes)) {
		p := a.pipes[name]
		ps := p.st
		ps.Running = int64(len(p.running))
		ps.Stages = make([]StageState, 0, len(p.order))
		for _, sn := range p.order {
			ps.Stages = append(ps.Stages, *p.stages[sn])
		}
		st.Pipes = append(st.Pipes, ps)
		for _, r := range p.running {
			*running = append(*running, runningRun{pipe: len(st.Pipes) - 1, run: r, stopped: slices.Collect(maps.Values(r.stopped))})
		}
	}
	for _, name := range slices.Sorted(maps.Keys(a.stores)) {
		st.Stores = append(st.Stores, *a.stores[name])
	}
}

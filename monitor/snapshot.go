package monitor

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/slither-go/slither/capacity"
	"github.com/slither-go/slither/pools"
	"github.com/slither-go/slither/store"
)

// State reads the engine's state now: the counts events built, and the
// pools, stores and GIL sampled at this moment.
func (m *Monitor) State() State {
	now := time.Now()
	st := State{Time: now, Started: m.started, Host: m.host, Pid: os.Getpid(), Version: m.opts.Version}
	m.agg.snapshot(&st)
	st.GIL = m.gil()
	for _, ps := range m.poolStats(st.GIL) {
		st.Pools = append(st.Pools, poolState(ps, now))
	}
	for _, s := range m.stores() {
		ss := StoreState{Name: s.Name()}
		if i := slices.IndexFunc(st.Stores, func(x StoreState) bool { return x.Name == ss.Name }); i >= 0 {
			ss = st.Stores[i]
			st.Stores = slices.Delete(st.Stores, i, i+1)
		}
		ss.Tables = tables(s)
		st.Stores = append(st.Stores, ss)
	}
	slices.SortFunc(st.Stores, func(a, b StoreState) int { return strings.Compare(a.Name, b.Name) })
	// Empty lists, not null, so consumers can iterate without checks.
	if st.Pools == nil {
		st.Pools = []PoolState{}
	}
	if st.Dispatch == nil {
		st.Dispatch = []DispatchState{}
	}
	if st.Routes == nil {
		st.Routes = []RouteCount{}
	}
	if st.RecentRoutes == nil {
		st.RecentRoutes = []RouteDecision{}
	}
	if st.Pipes == nil {
		st.Pipes = []PipeState{}
	}
	if st.Stores == nil {
		st.Stores = []StoreState{}
	}
	if st.Errors == nil {
		st.Errors = []ErrorState{}
	}
	if st.GIL.Changes == nil {
		st.GIL.Changes = []GILChange{}
	}
	return st
}

// namedStats is one pool's stats sampled now, under its name.
type namedStats struct {
	name      string
	capacity  int
	effective int
	stats     pools.Stats
}

// poolStats samples every pool, sorted by name. Pools that share a name
// get "#2", "#3"... after it, in the order Options.Pools gives them: two
// series with the same labels would make the whole scrape fail.
func (m *Monitor) poolStats(gil GILState) []namedStats {
	if m.opts.Pools == nil {
		return nil
	}
	var out []namedStats
	seen := map[string]bool{}
	cores := capacity.Cores().Usable
	for _, p := range m.opts.Pools() {
		if p == nil {
			continue
		}
		s := p.Stats()
		name := poolName(p, s)
		for n := 2; seen[name]; n++ {
			name = fmt.Sprintf("%s#%d", poolName(p, s), n)
		}
		seen[name] = true
		c := p.Capacity()
		out = append(out, namedStats{name: name, capacity: c, effective: effectiveCapacity(s.Kind, c, gil, cores), stats: s})
	}
	slices.SortStableFunc(out, func(a, b namedStats) int { return strings.Compare(a.name, b.name) })
	return out
}

// effectiveCapacity is what a pool of kind with capacity batches at once
// can really run in parallel: the embedded pool's workers share one
// interpreter, which runs one of them at a time while the GIL is on; and
// no pool runs more at once than the cores it may use (cores, 0 when
// unknown).
func effectiveCapacity(kind pools.Kind, capacity int, gil GILState, cores int) int {
	if capacity <= 0 {
		return 0
	}
	if kind == pools.KindThread && gil.Embedded && gil.Enabled {
		return 1
	}
	if cores > 0 {
		return min(capacity, cores)
	}
	return capacity
}

// poolName is the name a pool is shown under: its stats' name, else its
// name or kind.
func poolName(p pools.Pool, s pools.Stats) string {
	if s.Name != "" {
		return s.Name
	}
	return pools.NameOf(p)
}

func (m *Monitor) stores() []*store.Store {
	if m.opts.Stores == nil {
		return nil
	}
	return slices.DeleteFunc(m.opts.Stores(), func(s *store.Store) bool { return s == nil })
}

func tables(s *store.Store) []TableState {
	sn := s.Snapshot()
	var out []TableState
	for _, t := range s.Tables() {
		n, err := sn.Size(t)
		if err != nil {
			continue
		}
		out = append(out, TableState{Name: t, Rows: n})
	}
	return out
}

func poolState(ns namedStats, now time.Time) PoolState {
	s := ns.stats
	ps := PoolState{Name: ns.name, Kind: string(s.Kind), Capacity: ns.capacity, EffectiveCapacity: ns.effective, Busy: s.Running, Waiting: s.Waiting,
		Workers: make([]WorkerState, 0, len(s.Workers))}
	if ps.Kind == "" {
		ps.Kind = ns.name
	}
	if ns.capacity > 0 {
		ps.Saturation = float64(s.Running) / float64(ns.capacity)
	}
	for _, w := range s.Workers {
		ps.Calls += w.Calls
		ps.Items += w.Items
		ps.Errors += w.Errors
		ps.Restarts += w.Restarts
		ps.Workers = append(ps.Workers, workerState(w, now))
	}
	slices.SortFunc(ps.Workers, func(a, b WorkerState) int { return a.ID - b.ID })
	return ps
}

func workerState(w pools.WorkerStats, now time.Time) WorkerState {
	ws := WorkerState{ID: w.ID, State: workerStateName(w), Calls: w.Calls, Items: w.Items, Errors: w.Errors,
		Restarts: w.Restarts, RSS: w.RSS, BusyS: w.Busy.Seconds(), Pid: w.Pid, Thread: w.Thread, Current: w.Current}
	if w.Current != "" && !w.Since.IsZero() {
		ws.RunningS = max(0, now.Sub(w.Since).Seconds())
	}
	return ws
}

// workerStateName is the worker's state as the state and metrics name it.
func workerStateName(w pools.WorkerStats) string {
	if w.State != "" {
		return string(w.State)
	}
	if w.Running { // a pool that does not say
		return "busy"
	}
	return "idle"
}

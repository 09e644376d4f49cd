package monitor_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/slither-go/slither/capacity"
	"github.com/slither-go/slither/dispatch"
	"github.com/slither-go/slither/monitor"
	"github.com/slither-go/slither/pipe"
	"github.com/slither-go/slither/pools"
	"github.com/slither-go/slither/telemetry"
)

// goPool runs batches in Go, so these tests need no Python: it echoes the
// items, or fails with err (every batch, or with bad set, a batch that
// holds bad), and, with a gate, signals entered and waits
// for the gate to close before answering (a structural barrier: the test
// sees a batch in flight).
type goPool struct {
	name    string
	kind    pools.Kind // "go" when empty
	err     error
	bad     any
	gate    chan struct{}
	entered chan struct{}
	mu      sync.Mutex
	running int
}

func (p *goPool) Submit(ctx context.Context, b pools.Batch) ([]any, error) {
	if ci := pools.CallInfoFrom(ctx); ci != nil {
		ci.Pool = p.name
	}
	if p.gate != nil {
		p.mu.Lock()
		p.running++
		p.mu.Unlock()
		p.entered <- struct{}{}
		<-p.gate
		p.mu.Lock()
		p.running--
		p.mu.Unlock()
	}
	if p.err != nil && (p.bad == nil || slices.Contains(b.Items, p.bad)) {
		return nil, p.err
	}
	return b.Items, nil
}
func (p *goPool) Capacity() int { return 2 }
func (p *goPool) Stats() pools.Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	kind := p.kind
	if kind == "" {
		kind = "go"
	}
	return pools.Stats{Name: p.name, Kind: kind, Running: p.running,
		Workers: []pools.WorkerStats{{ID: 1, State: pools.WorkerIdle}, {ID: 0, State: pools.WorkerBusy, Current: "m.f"}}}
}
func (p *goPool) Kind() pools.Kind                { return "go" }
func (p *goPool) CloseSession(string)             {}
func (p *goPool) Close(ctx context.Context) error { return nil }

// TestStateShowsWorkInFlight: while a dispatch's batches are held in the
// pool, the state and the gauges show them in flight, the run's limit and
// the items waiting; after, none.
func TestStateShowsWorkInFlight(t *testing.T) {
	bus := telemetry.New(nil)
	pool := &goPool{name: "gate", gate: make(chan struct{}), entered: make(chan struct{})}
	m, err := monitor.New(monitor.Options{Bus: bus, Pools: func() []pools.Pool { return []pools.Pool{pool} }})
	require.NoError(t, err)
	defer m.Close()

	done := make(chan error)
	go func() {
		_, err := dispatch.Run(context.Background(), pool, dispatch.Slice(seq(1, 12)), dispatch.Options{
			Module: "m", Function: "f", Name: "held", Telemetry: bus, Strategy: dispatch.FixedBatch(3), MaxInFlight: 2})
		done <- err
	}()
	<-pool.entered
	<-pool.entered // both slots taken
	st := m.State()
	require.Len(t, st.Dispatch, 1)
	d := st.Dispatch[0]
	assert.Equal(t, "held", d.Name)
	assert.Equal(t, "m.f", d.Function)
	assert.Equal(t, int64(1), d.Runs)
	assert.Equal(t, int64(2), d.InFlight)
	assert.Equal(t, int64(6), d.ItemsInFlight, "two batches of 3")
	assert.Equal(t, int64(6), st.Totals.ItemsInFlight)
	assert.Equal(t, int64(2), d.MaxInFlight)
	assert.Equal(t, int64(2), st.Totals.InFlight)
	assert.Equal(t, "go", d.Pool, "before a batch ends, the pool the run was given")
	require.Len(t, st.Pools, 1)
	assert.Equal(t, monitor.PoolState{Name: "gate", Kind: "go", Capacity: 2, EffectiveCapacity: min(2, capacity.Cores().Usable), Busy: 2, Saturation: 1,
		Workers: []monitor.WorkerState{{ID: 0, State: "busy", Current: "m.f"}, {ID: 1, State: "idle"}}}, st.Pools[0])
	g := m.Gatherer()
	assert.Equal(t, 2.0, gaugeValue(t, g, "slither_dispatch_batches_in_flight"))
	assert.Equal(t, 6.0, gaugeValue(t, g, "slither_dispatch_items_in_flight"))
	assert.Equal(t, 1.0, gaugeValue(t, g, "slither_pool_saturation_ratio"))

	close(pool.gate)
	for range 2 { // the other two batches
		<-pool.entered
	}
	require.NoError(t, <-done)
	st = m.State()
	d = st.Dispatch[0]
	assert.Equal(t, monitor.DispatchState{Name: "held", Function: "m.f", Pool: "gate", BatchesOK: 4, ItemsOK: 12}, d)
	assert.Equal(t, 0.0, gaugeValue(t, g, "slither_dispatch_batches_in_flight"))
	assert.Equal(t, 0.0, gaugeValue(t, g, "slither_dispatch_items_in_flight"))
	assert.Equal(t, 0.0, gaugeValue(t, g, "slither_dispatch_max_in_flight"), "the run ended")
}

// gaugeValue is the value of the only series of a gauge.
func gaugeValue(t *testing.T, g prometheus.Gatherer, name string) float64 {
	t.Helper()
	fams, err := g.Gather()
	require.NoError(t, err)
	for _, f := range fams {
		if f.GetName() == name {
			require.Len(t, f.GetMetric(), 1, name)
			return f.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

// TestRecentErrorsCollapseAndAreBounded: the same failure again counts on
// the newest entry; different ones push the oldest out past the bound.
func TestRecentErrorsCollapseAndAreBounded(t *testing.T) {
	bus := telemetry.New(nil)
	m, err := monitor.New(monitor.Options{Bus: bus, RecentErrors: 3})
	require.NoError(t, err)
	defer m.Close()
	tb := "Traceback (most recent call last):\n  File \"m.py\", line 3, in f\nValueError: bad"
	pool := &goPool{name: "p", err: &pools.PythonError{Type: "ValueError", Message: "bad", Traceback: tb}}
	out, err := dispatch.Run(context.Background(), pool, dispatch.Slice(seq(1, 5)), dispatch.Options{
		Module: "m", Function: "f", Telemetry: bus, Strategy: dispatch.FixedBatch(1), OnError: dispatch.Skip{}})
	require.NoError(t, err)
	require.Equal(t, 5, out.Report.SkippedItems)
	st := m.State()
	require.Len(t, st.Errors, 1, "five times the same error")
	e := st.Errors[0]
	assert.Equal(t, int64(5), e.Count)
	assert.Equal(t, "m.f", e.Source, "a dispatch without a name goes by module.function")
	assert.Equal(t, "ValueError", e.Type)
	assert.Equal(t, "bad", e.Message, "Python's own message")
	assert.Contains(t, e.Error, "python: ValueError: bad", "the Go error chain")
	assert.Equal(t, tb, e.Traceback)
	assert.Equal(t, "p", e.Pool)
	assert.Equal(t, int64(5), st.Totals.BatchesFailed)
	assert.Zero(t, st.Totals.ItemsFailed, "every failed item was skipped")
	assert.Equal(t, int64(5), st.Totals.ItemsSkipped)
	assert.Equal(t, 5.0, testutil.ToFloat64(counterVec(t, m, "slither_dispatch_items_total", "m.f", "skipped")))

	for i := range 4 {
		pool.err = fmt.Errorf("failure %d", i)
		_, err := dispatch.Run(context.Background(), pool, dispatch.Slice([]int{i}), dispatch.Options{
			Module: "m", Function: "f", Name: "other", Telemetry: bus, OnError: dispatch.Skip{}})
		require.NoError(t, err)
	}
	st = m.State()
	require.Len(t, st.Errors, 3)
	for i, want := range []string{"failure 3", "failure 2", "failure 1"} {
		assert.Contains(t, st.Errors[i].Message, want, "newest first")
		assert.Empty(t, st.Errors[i].Error, "a Go error: its text is the message")
	}
}

// counterVec reads one counter series from the monitor's registry.
func counterVec(t *testing.T, m *monitor.Monitor, name string, labels ...string) prometheus.Collector {
	t.Helper()
	fams, err := m.Gatherer().Gather()
	require.NoError(t, err)
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
		for _, s := range f.GetMetric() {
			var got []string
			for _, l := range s.GetLabel() {
				got = append(got, l.GetValue())
			}
			if fmt.Sprint(got) == fmt.Sprint(labels) {
				return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "x"}, func() float64 { return s.GetCounter().GetValue() })
			}
		}
	}
	t.Fatalf("no series %s%v", name, labels)
	return nil
}

// TestRouteDecisionsCountByClass: the router's decisions count by route
// and class, and the recent list keeps one entry per function, route and
// reason.
func TestRouteDecisionsCountByClass(t *testing.T) {
	bus := telemetry.New(nil)
	m, err := monitor.New(monitor.Options{Bus: bus})
	require.NoError(t, err)
	defer m.Close()
	r := &pools.Router{Process: &goPool{name: "process/x"}, Telemetry: bus}
	for _, fn := range []string{"f", "f", "g"} {
		_, err := r.Submit(context.Background(), pools.Batch{Module: "m", Function: fn, Items: []any{1}})
		require.NoError(t, err)
	}
	st := m.State()
	assert.Equal(t, []monitor.RouteCount{{Route: "process", Class: pools.RouteNoThreadPool, Count: 3}}, st.Routes)
	require.Len(t, st.RecentRoutes, 2)
	assert.Equal(t, "m.g", st.RecentRoutes[0].Function, "newest first")
	assert.Equal(t, int64(1), st.RecentRoutes[0].Count)
	assert.Equal(t, "m.f", st.RecentRoutes[1].Function)
	assert.Equal(t, int64(2), st.RecentRoutes[1].Count)
	assert.NotEmpty(t, st.RecentRoutes[1].Reason)
}

// TestPipeStagesLiveAndTotal: while a run is held in a stage, the state
// shows it running with the stages' live counts; once it ends, the totals.
func TestPipeStagesLiveAndTotal(t *testing.T) {
	bus := telemetry.New(nil)
	m, err := monitor.New(monitor.Options{Bus: bus})
	require.NoError(t, err)
	defer m.Close()
	entered, gate := make(chan struct{}), make(chan struct{})
	p, err := pipe.New("held").
		Map("first", func(ctx context.Context, it pipe.Item) (pipe.Item, error) { return it, nil }).
		Map("wait", func(ctx context.Context, it pipe.Item) (pipe.Item, error) {
			if it.Payload.(int) == 3 {
				entered <- struct{}{}
				<-gate
			}
			return it, nil
		}).
		Build()
	require.NoError(t, err)
	done := make(chan error)
	go func() {
		_, err := p.Run(context.Background(), pipe.Env{Telemetry: bus}, dispatch.Slice(seq(1, 5)))
		done <- err
	}()
	<-entered
	st := m.State()
	require.Len(t, st.Pipes, 1)
	ps := st.Pipes[0]
	assert.Equal(t, int64(1), ps.Runs)
	assert.Equal(t, int64(1), ps.Running)
	require.Len(t, ps.Stages, 2)
	assert.Equal(t, "first", ps.Stages[0].Name, "pipeline order")
	assert.Equal(t, int64(3), ps.Stages[1].In, "the held stage has taken items 1 to 3")
	assert.Equal(t, int64(2), ps.Stages[1].Out)
	close(gate)
	require.NoError(t, <-done)
	st = m.State()
	assert.Equal(t, monitor.PipeState{Name: "held", Runs: 1, Stages: []monitor.StageState{
		{Name: "first", Kind: "map", In: 5, Out: 5}, {Name: "wait", Kind: "map", In: 5, Out: 5}}}, st.Pipes[0])
}

func TestNewAndClose(t *testing.T) {
	_, err := monitor.New(monitor.Options{})
	assert.ErrorContains(t, err, "Options.Bus is nil")

	bus := telemetry.New(nil)
	reg := prometheus.NewRegistry()
	m, err := monitor.New(monitor.Options{Bus: bus, Registerer: reg})
	require.NoError(t, err)
	assert.Same(t, prometheus.Gatherer(reg), m.Gatherer(), "a registry given is what the handler serves")
	_, err = monitor.New(monitor.Options{Bus: bus, Registerer: reg, HandlerName: "second"})
	assert.Error(t, err, "the same metrics twice in one registry")
	assert.Equal(t, []string{"monitor"}, bus.Handlers(), "the failed one left nothing attached")
	_, err = monitor.New(monitor.Options{Bus: bus})
	assert.ErrorContains(t, err, `a handler named "monitor" is already attached`)

	pool := &goPool{name: "p"}
	_, err = dispatch.Run(context.Background(), pool, dispatch.Slice([]int{1}), dispatch.Options{Module: "m", Function: "f", Telemetry: bus})
	require.NoError(t, err)
	m.Close()
	m.Close() // idempotent
	assert.Empty(t, bus.Handlers())
	_, err = dispatch.Run(context.Background(), pool, dispatch.Slice([]int{1}), dispatch.Options{Module: "m", Function: "f", Telemetry: bus})
	require.NoError(t, err)
	assert.Equal(t, int64(1), m.State().Totals.BatchesOK, "a closed monitor counts no more")
	assert.False(t, errors.Is(err, context.Canceled))
}

func seq(from, to int) []int {
	var out []int
	for i := from; i <= to; i++ {
		out = append(out, i)
	}
	return out
}

// TestSameNamedPoolsAreNumbered: two pools with one name are shown as
// NAME and NAME#2 (in the order given), so a scrape does not fail on two
// series with the same labels.
func TestSameNamedPoolsAreNumbered(t *testing.T) {
	bus := telemetry.New(nil)
	ps := []pools.Pool{&goPool{name: "twin"}, &goPool{name: "a"}, &goPool{name: "twin"}, &goPool{name: "twin"}}
	m, err := monitor.New(monitor.Options{Bus: bus, Pools: func() []pools.Pool { return ps }})
	require.NoError(t, err)
	defer m.Close()
	w := serve(m.Handler(monitor.HandlerOptions{}), "GET", "/metrics", local, nil)
	require.Equal(t, 200, w.Code, w.Body.String())
	for _, name := range []string{"twin", "twin#2", "twin#3", "a"} {
		assert.Contains(t, w.Body.String(), `slither_pool_capacity{kind="go",pool="`+name+`"} 2`)
	}
	var names []string
	for _, p := range m.State().Pools {
		names = append(names, p.Name)
	}
	assert.Equal(t, []string{"a", "twin", "twin#2", "twin#3"}, names)
}

// TestNamesPastTheCapCountAsOther: past 256 distinct dispatch names (and
// pipe names), later ones are counted under "other", in the metrics and
// the state, with one warning.
func TestNamesPastTheCapCountAsOther(t *testing.T) {
	bus := telemetry.New(nil)
	var logged strings.Builder
	m, err := monitor.New(monitor.Options{Bus: bus, Logger: slog.New(slog.NewTextHandler(&logged, nil))})
	require.NoError(t, err)
	defer m.Close()
	pool := &goPool{name: "p"}
	for i := range 260 {
		_, err := dispatch.Run(context.Background(), pool, dispatch.Slice([]int{i}), dispatch.Options{
			Module: "m", Function: "f", Name: fmt.Sprintf("d%03d", i), Telemetry: bus})
		require.NoError(t, err)
	}
	for i := range 258 {
		bus.Emit(telemetry.PipeRunStart, telemetry.Measurements{}, telemetry.Metadata{"pipe": fmt.Sprintf("p%03d", i), "session": "s"})
		bus.Emit(telemetry.PipeStageStop, telemetry.Measurements{Items: 1},
			telemetry.Metadata{"pipe": fmt.Sprintf("p%03d", i), "session": "s", "stage": "st", "kind": "map", "in": 1})
		bus.Emit(telemetry.PipeRunStop, telemetry.Measurements{}, telemetry.Metadata{"pipe": fmt.Sprintf("p%03d", i), "session": "s"})
	}
	st := m.State()
	require.Len(t, st.Dispatch, 257, "256 names and other")
	other := st.Dispatch[slices.IndexFunc(st.Dispatch, func(d monitor.DispatchState) bool { return d.Name == "other" })]
	assert.Equal(t, int64(4), other.ItemsOK, "d256 to d259")
	assert.Equal(t, int64(4), other.BatchesOK)
	assert.False(t, slices.ContainsFunc(st.Dispatch, func(d monitor.DispatchState) bool { return d.Name == "d256" }))
	assert.Equal(t, 4.0, testutil.ToFloat64(counterVec(t, m, "slither_dispatch_items_total", "other", "ok")))
	assert.Equal(t, 4.0, testutil.ToFloat64(counterVec(t, m, "slither_dispatch_runs_total", "other")))
	assert.Equal(t, 1.0, testutil.ToFloat64(counterVec(t, m, "slither_dispatch_items_total", "d255", "ok")))

	require.Len(t, st.Pipes, 257)
	po := st.Pipes[slices.IndexFunc(st.Pipes, func(p monitor.PipeState) bool { return p.Name == "other" })]
	assert.Equal(t, int64(2), po.Runs)
	assert.Equal(t, []monitor.StageState{{Name: "st", Kind: "map", In: 2, Out: 2}}, po.Stages)
	assert.Equal(t, 2.0, testutil.ToFloat64(counterVec(t, m, "slither_pipe_runs_total", "ok", "other")))
	assert.Equal(t, 2.0, testutil.ToFloat64(counterVec(t, m, "slither_pipe_stage_items_total", "in", "other", "st")))

	assert.Equal(t, 1, strings.Count(logged.String(), "too many distinct dispatch names"), logged.String())
	assert.Equal(t, 1, strings.Count(logged.String(), "too many distinct pipe names"), logged.String())
	assert.Contains(t, logged.String(), "cap=256")
	assert.Contains(t, logged.String(), "first_capped=d256")
}

// TestEffectiveCapacity: the embedded pool runs one batch at a time while
// the GIL is on; no pool runs more at once than the usable cores.
func TestEffectiveCapacity(t *testing.T) {
	bus := telemetry.New(nil)
	gil := monitor.GILState{Embedded: true, FreeThreadedBuild: true}
	var mu sync.Mutex
	ps := []pools.Pool{&goPool{name: "thread", kind: pools.KindThread}, &wide{goPool{name: "process/wide", kind: pools.KindProcess}}}
	m, err := monitor.New(monitor.Options{Bus: bus, Pools: func() []pools.Pool { return ps },
		GIL: func() monitor.GILState { mu.Lock(); defer mu.Unlock(); return gil }})
	require.NoError(t, err)
	defer m.Close()
	cores := capacity.Cores().Usable
	effective := func() map[string]int {
		out := map[string]int{}
		for _, p := range m.State().Pools {
			out[p.Name] = p.EffectiveCapacity
		}
		return out
	}
	assert.Equal(t, map[string]int{"thread": min(2, cores), "process/wide": min(1000, cores)}, effective(), "GIL off")
	g := m.Gatherer()
	fams, err := g.Gather()
	require.NoError(t, err)
	assert.True(t, slices.ContainsFunc(fams, func(f *dto.MetricFamily) bool { return f.GetName() == "slither_pool_effective_capacity" }))

	mu.Lock()
	gil.Enabled = true
	mu.Unlock()
	assert.Equal(t, map[string]int{"thread": 1, "process/wide": min(1000, cores)}, effective(),
		"GIL on: the embedded pool's workers take turns; processes have their own interpreters")
	w := serve(m.Handler(monitor.HandlerOptions{}), "GET", "/metrics", local, nil)
	require.Equal(t, 200, w.Code)
	assert.Contains(t, w.Body.String(), `slither_pool_effective_capacity{kind="thread",pool="thread"} 1`)
	assert.Contains(t, w.Body.String(), fmt.Sprintf(`slither_pool_effective_capacity{kind="process",pool="process/wide"} %d`, min(1000, cores)))
	assert.Contains(t, w.Body.String(), `slither_pool_capacity{kind="process",pool="process/wide"} 1000`)
}

// wide is a pool of a thousand slots (workers x threads): more than any
// test machine has cores.
type wide struct{ goPool }

func (*wide) Capacity() int { return 1000 }

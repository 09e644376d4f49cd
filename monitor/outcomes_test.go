package monitor_test

import (
	"context"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/slither-go/slither/dispatch"
	"github.com/slither-go/slither/monitor"
	"github.com/slither-go/slither/pools"
	"github.com/slither-go/slither/telemetry"
)

// TestItemsCountOnceWhateverTheAttempts: one bad item among eight, retried
// and bisected down to itself, is one item (skipped, routed, or failed as
// the policy ends it), not the 23 item-attempts of its failed submissions;
// batches count every submission.
func TestItemsCountOnceWhateverTheAttempts(t *testing.T) {
	bus := telemetry.New(nil)
	m, err := monitor.New(monitor.Options{Bus: bus})
	require.NoError(t, err)
	defer m.Close()
	pool := &goPool{name: "p", bad: 5, err: &pools.PythonError{Type: "ValueError", Message: "bad item 5"}}
	run := func(name string, items []int, size int, policy dispatch.Policy) (*dispatch.Output, error) {
		return dispatch.Run(context.Background(), pool, dispatch.Slice(items), dispatch.Options{
			Module: "m", Function: "f", Name: name, Telemetry: bus, Strategy: dispatch.FixedBatch(size), OnError: policy})
	}
	items := func(name, outcome string) float64 {
		t.Helper()
		return testutil.ToFloat64(counterVec(t, m, "slither_dispatch_items_total", name, outcome))
	}
	byName := func(st monitor.State, name string) monitor.DispatchState {
		t.Helper()
		for _, d := range st.Dispatch {
			if d.Name == name {
				return d
			}
		}
		t.Fatalf("no dispatch %q in %+v", name, st.Dispatch)
		return monitor.DispatchState{}
	}

	// 1..8 in one batch: it fails, fails again on its retry, then halves:
	// [1-4] ok, [5-8] fails, [5 6] fails, [7 8] ok, [5] fails, [6] ok; 5
	// is skipped.
	out, err := run("skip", seq(1, 8), 8, dispatch.Retry{Attempts: 1, Then: dispatch.Bisect{Then: dispatch.Skip{}}})
	require.NoError(t, err)
	require.Equal(t, 1, out.Report.SkippedItems)
	d := byName(m.State(), "skip")
	assert.Equal(t, monitor.DispatchState{Name: "skip", Pool: "p", Function: "m.f", BatchesOK: 3, Failed: 5, Retries: 7,
		ItemsOK: 7, ItemsSkipped: 1}, d)
	assert.Equal(t, 7.0, items("skip", "ok"))
	assert.Zero(t, items("skip", "failed"))
	assert.Equal(t, 1.0, items("skip", "skipped"))
	assert.Equal(t, 22.0, items("skip", "retried"), "the retry's 8, the halves' 4+4+2+2+1+1")
	assert.Equal(t, 5.0, testutil.ToFloat64(counterVec(t, m, "slither_dispatch_batches_total", "skip", "failed", "p")),
		"batches count submissions")

	// Route: the bad item goes to a bucket; the others pass.
	out, err = run("route", seq(4, 6), 1, dispatch.Route(func(dispatch.Item, error) string { return "bad" }))
	require.NoError(t, err)
	require.Len(t, out.Buckets["bad"], 1)
	d = byName(m.State(), "route")
	assert.Equal(t, monitor.DispatchState{Name: "route", Pool: "p", Function: "m.f", BatchesOK: 2, Failed: 1,
		ItemsOK: 2, ItemsRouted: 1}, d)
	assert.Equal(t, 1.0, items("route", "routed"))
	assert.Zero(t, items("route", "failed"))

	// Halt (the default): the batch fails and the run with it; its three
	// items ended the run without a result.
	_, err = run("halt", seq(4, 6), 3, nil)
	require.Error(t, err)
	d = byName(m.State(), "halt")
	assert.Equal(t, monitor.DispatchState{Name: "halt", Pool: "p", Function: "m.f", Failed: 1, ItemsFailed: 3}, d)
	assert.Equal(t, 3.0, items("halt", "failed"))
	assert.Zero(t, items("halt", "ok"))

	// Halt with more batches than the failing one: only its items failed;
	// the others the run left without a result were cut short by it.
	out, err = run("halt-many", seq(1, 40), 2, nil)
	require.Error(t, err)
	require.Equal(t, 2, out.Report.Halted, "the batch [5 6] halted the run")
	d = byName(m.State(), "halt-many")
	assert.Equal(t, int64(2), d.ItemsFailed)
	assert.Equal(t, int64(out.Report.Items-out.Report.Succeeded-2), d.ItemsCancelled)
	assert.Equal(t, 2.0, items("halt-many", "failed"))

	st := m.State()
	assert.Equal(t, int64(3+2), st.Totals.ItemsFailed)
	assert.Equal(t, int64(1), st.Totals.ItemsSkipped)
	assert.Equal(t, int64(1), st.Totals.ItemsRouted)
}

// TestOverlappingRunsKeepTheirCounts: a run cancelled with a batch still
// queued takes exactly that batch off the queue (dispatch.batch.dropped),
// while another run of the same name goes on with a batch in flight.
func TestOverlappingRunsKeepTheirCounts(t *testing.T) {
	bus := telemetry.New(nil)
	m, err := monitor.New(monitor.Options{Bus: bus})
	require.NoError(t, err)
	defer m.Close()
	ctxB, cancelB := context.WithCancel(context.Background())
	defer cancelB()
	opts := dispatch.Options{Module: "m", Function: "f", Name: "cut", Telemetry: bus, Strategy: dispatch.FixedBatch(1), MaxInFlight: 1}
	// Run B: one batch, held in flight until B is cancelled.
	started := make(chan struct{})
	require.NoError(t, bus.Attach("b-started", func(_ telemetry.Event, _ telemetry.Measurements, md telemetry.Metadata) {
		close(started)
	}, telemetry.DispatchBatchStart))
	b := dispatch.Stream(ctxB, holdPool{hold: 200}, dispatch.Slice([]int{200}), opts)
	bDone := make(chan error, 1)
	go func() {
		var last error
		for _, err := range b.Results() {
			last = err
		}
		bDone <- last
	}()
	<-started
	bus.Detach("b-started")

	// Run A of the same name: cancelled while batch 2 is queued.
	ctxA, cancelA := context.WithCancel(context.Background())
	defer cancelA()
	onQueued(t, bus, 2, cancelA)
	_, err = dispatch.Run(ctxA, holdPool{hold: 2}, dispatch.Slice(seq(1, 10)), opts)
	require.ErrorIs(t, err, context.Canceled)

	d := m.State().Dispatch[0]
	assert.Equal(t, int64(1), d.Runs, "B still runs")
	assert.Zero(t, d.QueuedItems, "A's queued batch was taken off when A dropped it")
	assert.Equal(t, int64(1), d.InFlight, "B's batch")
	assert.Equal(t, int64(1), d.ItemsInFlight)

	cancelB()
	require.ErrorIs(t, <-bDone, context.Canceled)
	d = m.State().Dispatch[0]
	assert.Zero(t, d.Runs)
	assert.Zero(t, d.InFlight)
}

// holdPool runs batches in Go: a batch whose first item is hold or more
// waits until its context ends (the run is cancelled under it); others
// echo their items at once.
type holdPool struct{ hold int }

func (p holdPool) Submit(ctx context.Context, b pools.Batch) ([]any, error) {
	if ci := pools.CallInfoFrom(ctx); ci != nil {
		ci.Pool = "hold"
	}
	if b.Items[0].(int) >= p.hold {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	return b.Items, nil
}
func (holdPool) Capacity() int                   { return 1 }
func (holdPool) Stats() pools.Stats              { return pools.Stats{Name: "hold", Kind: "go"} }
func (holdPool) Kind() pools.Kind                { return "go" }
func (holdPool) CloseSession(string)             {}
func (holdPool) Close(ctx context.Context) error { return nil }

// onQueued attaches a handler to bus that calls f (once) when the batch
// numbered seq is queued, on the goroutine that queues it: before that
// batch waits for a slot.
func onQueued(t *testing.T, bus *telemetry.Bus, seq int, f func()) {
	t.Helper()
	var once sync.Once
	require.NoError(t, bus.Attach("probe", func(_ telemetry.Event, _ telemetry.Measurements, md telemetry.Metadata) {
		if md["batch"] == seq {
			once.Do(f)
		}
	}, telemetry.DispatchBatchQueued))
	t.Cleanup(func() { bus.Detach("probe") })
}

// TestCancelledRunLeavesNothingQueued: a run cancelled while a formed
// batch waits for a slot (the slot's batch holds it until the
// cancellation) queued items that never start. When the run ends, none
// are left queued or in flight, and its items without a result count as
// cancelled, not failed.
func TestCancelledRunLeavesNothingQueued(t *testing.T) {
	bus := telemetry.New(nil)
	m, err := monitor.New(monitor.Options{Bus: bus})
	require.NoError(t, err)
	defer m.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// Batch 0 passes; batch 1 holds the only slot; batch 2 is queued, and
	// the run cancelled before it can wait for a slot.
	onQueued(t, bus, 2, cancel)
	out, err := dispatch.Run(ctx, holdPool{hold: 2}, dispatch.Slice(seq(1, 10)), dispatch.Options{
		Module: "m", Function: "f", Name: "cut", Telemetry: bus, Strategy: dispatch.FixedBatch(1), MaxInFlight: 1})
	require.ErrorIs(t, err, context.Canceled)
	rep := out.Report
	require.Equal(t, 1, rep.Succeeded)
	require.GreaterOrEqual(t, rep.Items, 3, "batch 2 was formed")

	st := m.State()
	require.Len(t, st.Dispatch, 1)
	d := st.Dispatch[0]
	assert.Zero(t, d.QueuedItems, "batch 2 never started: nothing waits once the run has ended")
	assert.Equal(t, int64(1), d.Cancelled, "batch 1 was cut short in flight")
	assert.Zero(t, d.Failed)
	assert.Equal(t, int64(1), st.Totals.BatchesCancelled)
	assert.Zero(t, d.InFlight)
	assert.Zero(t, d.ItemsInFlight)
	assert.Zero(t, st.Totals.QueuedItems)
	assert.Equal(t, int64(rep.Items-1), d.ItemsCancelled, "the items read without a result")
	assert.Zero(t, d.ItemsFailed, "a cancelled run's items did not fail")
	assert.Equal(t, int64(rep.Items-1), st.Totals.ItemsCancelled)
	g := m.Gatherer()
	assert.Zero(t, gaugeValue(t, g, "slither_dispatch_queued_items"))
	assert.Zero(t, gaugeValue(t, g, "slither_dispatch_items_in_flight"))
	items := func(outcome string) float64 {
		t.Helper()
		return testutil.ToFloat64(counterVec(t, m, "slither_dispatch_items_total", "cut", outcome))
	}
	assert.Equal(t, float64(rep.Items-1), items("cancelled"))
	assert.Zero(t, items("failed"))
	assert.Equal(t, 1.0, items("ok"))
}

// TestConsumerStoppingCountsCancelled: a consumer that stops reading
// early (a break out of Results) ends the run without an error; the items
// it left without a result are cancelled, not failed.
func TestConsumerStoppingCountsCancelled(t *testing.T) {
	bus := telemetry.New(nil)
	m, err := monitor.New(monitor.Options{Bus: bus})
	require.NoError(t, err)
	defer m.Close()
	queued := make(chan struct{})
	onQueued(t, bus, 1, func() { close(queued) })
	s := dispatch.Stream(context.Background(), holdPool{hold: 2}, dispatch.Slice(seq(1, 10)), dispatch.Options{
		Module: "m", Function: "f", Name: "early", Telemetry: bus, Strategy: dispatch.FixedBatch(1), MaxInFlight: 1})
	for r, err := range s.Results() {
		require.NoError(t, err)
		require.Equal(t, 1, r.Value)
		<-queued // item 2 was read, and can never pass: the run leaves it without a result
		break
	}
	rep := s.Report()
	require.Equal(t, 1, rep.Succeeded)
	require.GreaterOrEqual(t, rep.Items, 2)

	st := m.State()
	require.Len(t, st.Dispatch, 1)
	d := st.Dispatch[0]
	assert.Equal(t, int64(rep.Items-1), d.ItemsCancelled)
	assert.Zero(t, d.ItemsFailed)
	assert.Zero(t, d.QueuedItems)
	assert.Zero(t, d.Runs)
	assert.Equal(t, float64(rep.Items-1), testutil.ToFloat64(counterVec(t, m, "slither_dispatch_items_total", "early", "cancelled")))
	assert.Zero(t, testutil.ToFloat64(counterVec(t, m, "slither_dispatch_items_total", "early", "failed")))
}

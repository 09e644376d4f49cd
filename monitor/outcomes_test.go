package monitor_test

import (
	"context"
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

	st := m.State()
	assert.Equal(t, monitor.Totals{BatchesOK: 5, BatchesFailed: 7, Retries: 7, ItemsOK: 9, ItemsFailed: 3, ItemsSkipped: 1,
		ItemsRouted: 1}, st.Totals)
}

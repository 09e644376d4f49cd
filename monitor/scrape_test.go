//go:build cgo

package monitor_test

import (
	"context"
	"log/slog"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/slither-go/slither/capacity"
	"github.com/slither-go/slither/dispatch"
	"github.com/slither-go/slither/engine"
	"github.com/slither-go/slither/internal/storetest"
	"github.com/slither-go/slither/monitor"
	"github.com/slither-go/slither/pipe"
	"github.com/slither-go/slither/pools"
	"github.com/slither-go/slither/store"
)

var flakyRuns atomic.Int64

// families are scraped metrics by name.
type families map[string]*dto.MetricFamily

// scrape GETs h's metrics as a loopback client and parses them with the
// Prometheus text parser.
func scrape(t *testing.T, h http.Handler) families {
	t.Helper()
	w := serve(h, "GET", "/metrics", local, nil)
	require.Equal(t, 200, w.Code, w.Body.String())
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(w.Body)
	require.NoError(t, err)
	return fams
}

// value is the value of the one series of metric name whose labels
// include want ("k=v" pairs), and whether there is one (a counter never
// incremented is absent: a zero asserted must come from a series found).
func (f families) value(t *testing.T, name string, want ...string) (float64, bool) {
	t.Helper()
	fam := f[name]
	if fam == nil {
		return 0, false
	}
	var found []float64
	for _, m := range fam.GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		if !slices.ContainsFunc(want, func(kv string) bool { k, v, _ := strings.Cut(kv, "="); return labels[k] != v }) {
			switch fam.GetType() {
			case dto.MetricType_COUNTER:
				found = append(found, m.GetCounter().GetValue())
			case dto.MetricType_GAUGE:
				found = append(found, m.GetGauge().GetValue())
			case dto.MetricType_HISTOGRAM:
				found = append(found, float64(m.GetHistogram().GetSampleCount()))
			}
		}
	}
	require.LessOrEqual(t, len(found), 1, "%s%v matches several series: name all their labels", name, want)
	if len(found) == 0 {
		return 0, false
	}
	return found[0], true
}

// TestScrapeMatchesWorkload is the must-show test: a known workload on
// two pools (a dispatch routed by thread-safety, a flaky one retried, a
// pipeline with a failing item and a router, a store write, a view read
// from Python), then a
// scrape of the engine's handler, parsed with the Prometheus text parser:
// every count is what the workload did.
func TestScrapeMatchesWorkload(t *testing.T) {
	ctx := context.Background()
	abs, err := filepath.Abs("testdata")
	require.NoError(t, err)
	prices := storetest.Prices()
	eng, err := engine.Start(ctx, engine.Config{
		Thread:  engine.ThreadConfig{Workers: 2, Required: true},
		Process: map[string]engine.ProcessConfig{"default": {Workers: 1}, "recycler": {Workers: 1, MaxCalls: 1}},
		Paths:   []string{abs},
		Stores:  []store.Definition{prices},
		Logger:  slog.New(slog.DiscardHandler),
	})
	require.NoError(t, err)
	defer func() { require.NoError(t, eng.Close(ctx)) }()

	// 10 items in 2 batches; @slither.thread_safe and the GIL off: Auto
	// sends both to the thread pool.
	out, err := eng.Dispatch(ctx, dispatch.Slice(seq(1, 10)), engine.DispatchOptions{Options: dispatch.Options{
		Module: "montest", Function: "double", Name: "double", Strategy: dispatch.FixedBatch(5)}})
	require.NoError(t, err)
	require.Len(t, out.Results, 10)

	// One batch of 4 that fails once, then passes on its retry (new items
	// each time the test runs: the interpreter, and what flaky has seen,
	// lives as long as the test binary).
	base := int(flakyRuns.Add(1)) * 100
	out, err = eng.Dispatch(ctx, dispatch.Slice(seq(base, base+3)), engine.DispatchOptions{Options: dispatch.Options{
		Module: "montest", Function: "flaky", Name: "flaky", Route: pools.Thread, Strategy: dispatch.FixedBatch(4),
		OnError: dispatch.Retry{Attempts: 1}}})
	require.NoError(t, err)
	require.Equal(t, 1, out.Report.Retries)

	// A pipeline: items one per batch through a process, -1 fails and is
	// skipped; a router sends what is over 30 to "big".
	p, err := pipe.New("score").
		Python("check", pipe.Python{Module: "montest", Function: "check", Route: pools.Process, Strategy: dispatch.FixedBatch(1)}).
		Router("route", pipe.When("big", func(it pipe.Item) bool { return it.Payload.(int64) > 30 })).
		Output("big").
		OnError("check", dispatch.Skip{}).
		Build()
	require.NoError(t, err)
	res, err := eng.RunPipe(ctx, p, dispatch.Slice([]int{1, 2, 3, -1, 5, 6}), engine.PipeOptions{})
	require.NoError(t, err)
	require.Len(t, res.Outputs["big"], 2)
	require.Len(t, res.Outputs[pipe.DefaultOutput], 3)

	require.NoError(t, eng.Store("prices").Put(ctx, "sku", "B2", 3.0))
	// Two batches on a pool whose worker is replaced after every call.
	out, err = eng.Dispatch(ctx, dispatch.Slice([]int{1, 2}), engine.DispatchOptions{Pool: "recycler", Options: dispatch.Options{
		Module: "montest", Function: "noop", Name: "recycled", Route: pools.Process, Strategy: dispatch.FixedBatch(1), MaxInFlight: 1}})
	require.NoError(t, err)
	require.Len(t, out.Results, 2)

	// Python reads the store through a view, from the thread pool.
	out, err = eng.Dispatch(ctx, dispatch.Slice([]string{"B2"}), engine.DispatchOptions{Options: dispatch.Options{
		Module: "montest", Function: "price", Name: "price", Route: pools.Thread}})
	require.NoError(t, err)
	require.Equal(t, 3.0, out.Results[0].Value)

	f := scrape(t, eng.Handler())
	// v is the value of a series that must exist: every count below is
	// one the workload made, zeros included.
	v := func(name string, labels ...string) float64 {
		t.Helper()
		x, ok := f.value(t, name, labels...)
		require.True(t, ok, "no series %s%v", name, labels)
		return x
	}

	// Items and batches, by outcome.
	assert.Equal(t, 10.0, v("slither_dispatch_items_total", "dispatch=double", "outcome=ok"))
	assert.Equal(t, 2.0, v("slither_dispatch_batches_total", "dispatch=double", "pool=thread", "outcome=ok"))
	assert.Equal(t, 2.0, v("slither_dispatch_batch_items", "dispatch=double", "pool=thread"), "two batches observed")
	assert.Equal(t, 1.0, v("slither_dispatch_batches_total", "dispatch=flaky", "pool=thread", "outcome=failed"))
	assert.Equal(t, 1.0, v("slither_dispatch_batches_total", "dispatch=flaky", "pool=thread", "outcome=ok"))
	assert.Equal(t, 1.0, v("slither_dispatch_retries_total", "dispatch=flaky"))
	// Items count once, whatever their attempts: flaky's four failed
	// once and passed on their retry.
	assert.Equal(t, 4.0, v("slither_dispatch_items_total", "dispatch=flaky", "outcome=retried"))
	assert.Zero(t, v("slither_dispatch_items_total", "dispatch=flaky", "outcome=failed"))
	assert.Equal(t, 4.0, v("slither_dispatch_items_total", "dispatch=flaky", "outcome=ok"))
	assert.Equal(t, 5.0, v("slither_dispatch_batches_total", "dispatch=score/check", "pool=process/default", "outcome=ok"))
	assert.Equal(t, 1.0, v("slither_dispatch_batches_total", "dispatch=score/check", "pool=process/default", "outcome=failed"))
	// The pipe's one bad item failed its batch and was skipped.
	assert.Equal(t, 5.0, v("slither_dispatch_items_total", "dispatch=score/check", "outcome=ok"))
	assert.Zero(t, v("slither_dispatch_items_total", "dispatch=score/check", "outcome=failed"))
	assert.Equal(t, 1.0, v("slither_dispatch_items_total", "dispatch=score/check", "outcome=skipped"))
	assert.Equal(t, 3.0, v("slither_dispatch_runs_total", "dispatch=score/check")+v("slither_dispatch_runs_total", "dispatch=double")+
		v("slither_dispatch_runs_total", "dispatch=flaky"))
	for _, d := range []string{"double", "flaky", "score/check"} {
		assert.Zero(t, v("slither_dispatch_batches_in_flight", "dispatch="+d), "all ended")
		assert.Zero(t, v("slither_dispatch_items_in_flight", "dispatch="+d))
		assert.Zero(t, v("slither_dispatch_items_total", "dispatch="+d, "outcome=cancelled"))
		assert.Zero(t, v("slither_dispatch_queued_items", "dispatch="+d), "none waits")
		assert.Zero(t, v("slither_dispatch_runs_active", "dispatch="+d))
	}

	// Routes: the router decided once per submission.
	assert.Equal(t, 2.0, v("slither_route_decisions_total", "route=thread", "class="+pools.RouteThreadSafe))
	assert.Equal(t, 3.0, v("slither_route_decisions_total", "route=thread", "class="+pools.RouteRequested), "flaky, its retry, price")
	assert.Equal(t, 8.0, v("slither_route_decisions_total", "route=process", "class="+pools.RouteRequested), "the pipe's 6, recycled's 2")

	// The pipeline.
	assert.Equal(t, 1.0, v("slither_pipe_runs_total", "pipe=score", "outcome=ok"))
	assert.Equal(t, 6.0, v("slither_pipe_stage_items_total", "pipe=score", "stage=check", "direction=in"))
	assert.Equal(t, 5.0, v("slither_pipe_stage_items_total", "pipe=score", "stage=check", "direction=out"))
	assert.Equal(t, 5.0, v("slither_pipe_stage_items_total", "pipe=score", "stage=route", "direction=in"))
	assert.Equal(t, 2.0, v("slither_pipe_stage_routed_items_total", "pipe=score", "stage=route", "route=big"))
	assert.Equal(t, 3.0, v("slither_pipe_stage_routed_items_total", "pipe=score", "stage=route", "route=default"))

	// Pools, sampled at the scrape.
	assert.Equal(t, 2.0, v("slither_pool_capacity", "pool=thread", "kind=thread"))
	assert.Equal(t, float64(min(2, capacity.Cores().Usable)), v("slither_pool_effective_capacity", "pool=thread", "kind=thread"),
		"the GIL is off")
	assert.Equal(t, 1.0, v("slither_pool_effective_capacity", "pool=process/default", "kind=process"))
	assert.Equal(t, 1.0, v("slither_pool_capacity", "pool=process/default", "kind=process"))
	assert.Equal(t, 2.0, v("slither_pool_workers", "pool=thread", "state=idle"))
	assert.Zero(t, v("slither_pool_workers", "pool=thread", "state=busy"))
	assert.Equal(t, 7.0, v("slither_pool_calls_total", "pool=process/default"),
		"the pipe's six batches, and the router's read of double's mark (where the thread pool would import it)")
	assert.Equal(t, 1.0, v("slither_pool_errors_total", "pool=process/default"))
	assert.Equal(t, 2.0, v("slither_pool_worker_starts_total", "pool=thread"))
	assert.Equal(t, 1.0, v("slither_pool_worker_starts_total", "pool=process/default", "kind=process"))
	assert.Positive(t, v("slither_pool_rss_bytes", "pool=process/default"))
	// The second batch needed a second worker. The worker that ran it is
	// replaced too, after the batch returned, in the background: its
	// restart and start may or may not have happened by the scrape.
	restarts := v("slither_pool_worker_restarts_total", "pool=process/recycler", "kind=process")
	assert.Contains(t, []float64{1, 2}, restarts)
	assert.Contains(t, []float64{2, 3}, v("slither_pool_worker_starts_total", "pool=process/recycler", "kind=process"))
	assert.LessOrEqual(t, v("slither_pool_worker_starts_total", "pool=process/recycler", "kind=process"), restarts+1)
	assert.Equal(t, 2.0, v("slither_dispatch_batches_total", "dispatch=recycled", "pool=process/recycler", "outcome=ok"))

	// The GIL and the store.
	assert.Zero(t, v("slither_gil_enabled"))
	assert.Equal(t, 1.0, v("slither_gil_free_threaded_build"))
	assert.Equal(t, 2.0, v("slither_store_rows", "store=prices", "table=sku"))
	assert.Equal(t, 1.0, v("slither_store_writes_total", "store=prices", "table=sku", "op=put"))
	assert.Equal(t, 1.0, v("slither_view_calls_total", "view=price", "outcome=ok"))
	assert.Equal(t, 1.0, v("slither_view_duration_seconds", "view=price"), "one call observed")
	assert.Contains(t, f, "go_goroutines", "the Go collector")
	assert.Contains(t, f, "process_resident_memory_bytes", "the process collector")

	// The state says the same, and keeps the failure's traceback.
	st := eng.Monitor().State()
	assert.Equal(t, monitor.Totals{BatchesOK: 11, BatchesFailed: 2, Retries: 1, ItemsOK: 22, ItemsSkipped: 1}, st.Totals,
		"double's 10, flaky's 4, the pipe's 5 and one skipped, recycled's 2, price's 1")
	assert.Equal(t, []monitor.StoreState{{Name: "prices", Tables: []monitor.TableState{{Name: "sku", Rows: 2}}, Writes: 1, Views: 1}},
		st.Stores)
	i := slices.IndexFunc(st.Errors, func(e monitor.ErrorState) bool { return e.Type == "ValueError" })
	require.GreaterOrEqual(t, i, 0, "%+v", st.Errors)
	e := st.Errors[i]
	assert.Equal(t, "score/check", e.Source)
	assert.Equal(t, "montest.check", e.Function)
	assert.Equal(t, "process/default", e.Pool)
	assert.Equal(t, "negative: -1", e.Message, "Python's own message")
	assert.Contains(t, e.Error, "ValueError: negative: -1", "the Go error chain")
	assert.Contains(t, e.Traceback, "montest.py")
	assert.Contains(t, e.Traceback, "ValueError: negative: -1")
	require.Len(t, st.Pipes, 1)
	assert.Equal(t, []monitor.StageState{{Name: "check", Kind: "python", In: 6, Out: 5}, {Name: "route", Kind: "router", In: 5, Out: 5}},
		st.Pipes[0].Stages)
	assert.Equal(t, monitor.PipeState{Name: "score", Runs: 1, Stages: st.Pipes[0].Stages}, st.Pipes[0])
	names := make([]string, len(st.Pools))
	for i, p := range st.Pools {
		names[i] = p.Name
	}
	assert.Equal(t, []string{"process/default", "process/recycler", "thread"}, names)
	assert.True(t, st.GIL.Embedded)
	assert.True(t, st.GIL.FreeThreadedBuild)
}

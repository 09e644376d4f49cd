//go:build cgo

package pipe_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/slither-go/slither/dispatch"
	"github.com/slither-go/slither/internal/pooltest"
	"github.com/slither-go/slither/internal/spantest"
	"github.com/slither-go/slither/pipe"
	"github.com/slither-go/slither/pools"
	"github.com/slither-go/slither/pools/process"
	"github.com/slither-go/slither/pools/thread"
	"github.com/slither-go/slither/telemetry"
)

// routerEnv returns an Env whose Python stages submit to a router over a
// one-worker thread pool and a one-worker process pool.
func routerEnv(t *testing.T) pipe.Env {
	t.Helper()
	abs, err := filepath.Abs("testdata")
	require.NoError(t, err)
	tp, err := thread.New(thread.Options{Workers: 1, Paths: []string{abs}})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, tp.Close(context.Background())) })
	pp, err := process.New(context.Background(), process.Options{Workers: 1, Python: pooltest.Python(),
		Paths: []string{abs}, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, pp.Close(context.Background())) })
	rt := &pools.Router{Thread: tp, Process: pp, Logger: slog.New(slog.DiscardHandler)}
	return pipe.Env{Pool: func(string) (pools.Pool, error) { return rt, nil }}
}

// tracedPipe negates item 3, runs fail_negative (x10; a negative item
// fails its batch of two, which Skip drops) on the thread pool, and routes
// results of 40 and more to "big".
func tracedPipe(t *testing.T, stageCtx *trace.SpanContext) *pipe.Pipe {
	t.Helper()
	p, err := pipe.New("traced").
		Map("neg", func(ctx context.Context, it Item) (Item, error) {
			if it.ID == "3" {
				*stageCtx = trace.SpanContextFromContext(ctx)
				it.Payload = -3
			}
			return it, nil
		}).
		Python("py", pipe.Python{Module: "pipetest", Function: "fail_negative", Route: pools.Thread,
			Strategy: dispatch.FixedBatch(2), MaxInFlight: 1}).
		Router("split", pipe.When("big", func(it Item) bool { return it.Payload.(int64) >= 40 })).
		Output("big").
		OnError("py", dispatch.Skip{}).
		Build()
	require.NoError(t, err)
	return p
}

func TestPipeSpans(t *testing.T) {
	tp, exp := spantest.Recorder(t)
	env := routerEnv(t)
	env.TracerProvider = tp
	var negCtx trace.SpanContext
	res, err := tracedPipe(t, &negCtx).Run(context.Background(), env, dispatch.Slice(ints(6)))
	require.NoError(t, err)
	assert.Equal(t, []any{int64(40), int64(50)}, payloads(res.Outputs["big"]))
	assert.Equal(t, []any{int64(0), int64(10)}, payloads(res.Outputs[pipe.DefaultOutput]))

	spans := exp.GetSpans()
	runs := spantest.Named(spans, "slither.pipe.run")
	require.Len(t, runs, 1)
	run := runs[0]
	assert.False(t, run.Parent.IsValid(), "a root span")
	assert.Equal(t, "traced", spantest.Attrs(run.Attributes)["slither.pipe"])
	assert.Equal(t, res.Report.Session, spantest.Attrs(run.Attributes)["slither.session"])
	assert.Equal(t, codes.Unset, run.Status.Code)

	stages := map[string]tracetest.SpanStub{}
	for _, s := range spantest.Named(spans, "slither.pipe.stage") {
		assert.Equal(t, run.SpanContext.SpanID(), s.Parent.SpanID(), "stages are children of the run")
		stages[spantest.Attrs(s.Attributes)["slither.stage"].(string)] = s
	}
	require.Len(t, stages, 3)
	for name, want := range map[string]map[string]any{
		"neg":   {"slither.stage.kind": "map", "slither.items.in": int64(6), "slither.items.out": int64(6)},
		"py":    {"slither.stage.kind": "python", "slither.items.in": int64(6), "slither.items.out": int64(4), "slither.items.skipped": int64(2)},
		"split": {"slither.stage.kind": "router", "slither.items.in": int64(4), "slither.items.out": int64(4)},
	} {
		a := spantest.Attrs(stages[name].Attributes)
		assert.Equal(t, "traced", a["slither.pipe"])
		for k, v := range want {
			assert.Equal(t, v, a[k], "stage %s: %s", name, k)
		}
	}
	assert.Equal(t, stages["neg"].SpanContext, negCtx, "a Go stage's function runs under its stage's span")

	ds := spantest.Named(spans, "slither.dispatch")
	require.Len(t, ds, 1)
	assert.Equal(t, stages["py"].SpanContext.SpanID(), ds[0].Parent.SpanID(), "the Python stage's dispatch is its child")
	assert.Equal(t, "traced/py", spantest.Attrs(ds[0].Attributes)["slither.dispatch"])

	batches := spantest.Named(spans, "slither.batch")
	require.Len(t, batches, 3)
	failed := 0
	for _, b := range batches {
		assert.Equal(t, ds[0].SpanContext.SpanID(), b.Parent.SpanID())
		assert.Equal(t, run.SpanContext.TraceID(), b.SpanContext.TraceID(), "one trace for the whole run")
		a := spantest.Attrs(b.Attributes)
		assert.Equal(t, "pipetest.fail_negative", a["slither.function"])
		assert.Equal(t, "thread", a["slither.pool"])
		assert.Equal(t, "thread", a["slither.route"], "the router sent it to the thread pool")
		assert.Equal(t, pools.RouteRequested, a["slither.route.class"])
		if b.Status.Code == codes.Error {
			failed++
			require.Len(t, b.Events, 1)
			assert.Equal(t, "ValueError", spantest.Attrs(b.Events[0].Attributes)["exception.type"])
			assert.Equal(t, int64(1), a["slither.batch.index"])
		}
	}
	assert.Equal(t, 1, failed)
}

func TestPipeSpanHaltingStage(t *testing.T) {
	tp, exp := spantest.Recorder(t)
	boom := errors.New("bad item")
	p, err := pipe.New("halts").
		Map("check", func(ctx context.Context, it Item) (Item, error) {
			if it.ID == "2" {
				return it, boom
			}
			return it, nil
		}).Build()
	require.NoError(t, err)
	_, err = p.Run(context.Background(), pipe.Env{TracerProvider: tp}, dispatch.Slice(ints(4)))
	require.ErrorIs(t, err, boom)

	spans := exp.GetSpans()
	st := spantest.Named(spans, "slither.pipe.stage")
	require.Len(t, st, 1)
	assert.Equal(t, codes.Error, st[0].Status.Code)
	assert.Contains(t, st[0].Status.Description, `stage "check" failed on items [2]`)
	require.Len(t, st[0].Events, 1)
	ea := spantest.Attrs(st[0].Events[0].Attributes)
	assert.Equal(t, "*errors.errorString", ea["exception.type"])
	assert.Equal(t, "bad item", ea["exception.message"])
	run := spantest.Named(spans, "slither.pipe.run")
	require.Len(t, run, 1)
	assert.Equal(t, codes.Error, run[0].Status.Code)
}

func TestPipeSpanSkippedItemsDoNotFailStage(t *testing.T) {
	tp, exp := spantest.Recorder(t)
	p, err := pipe.New("skips").
		Map("check", func(ctx context.Context, it Item) (Item, error) {
			if it.ID == "1" {
				return it, errors.New("bad")
			}
			return it, nil
		}).OnError("check", dispatch.Skip{}).Build()
	require.NoError(t, err)
	_, err = p.Run(context.Background(), pipe.Env{TracerProvider: tp}, dispatch.Slice(ints(3)))
	require.NoError(t, err)
	st := spantest.Named(exp.GetSpans(), "slither.pipe.stage")
	require.Len(t, st, 1)
	assert.Equal(t, codes.Unset, st[0].Status.Code, "the stage went on")
	require.Len(t, st[0].Events, 1, "the failure is still recorded")
	assert.Equal(t, int64(1), spantest.Attrs(st[0].Attributes)["slither.items.failed"])
}

func TestPipeEventsLiveStagesAndStopCounts(t *testing.T) {
	bus := telemetry.New(nil)
	var stagesFn func() []pipe.StageReport
	stops := map[string]telemetry.Metadata{}
	require.NoError(t, bus.Attach("t", func(ev telemetry.Event, m telemetry.Measurements, md telemetry.Metadata) {
		switch ev {
		case telemetry.PipeRunStart:
			stagesFn = md["stages"].(func() []pipe.StageReport)
		case telemetry.PipeStageStop:
			stops[md["stage"].(string)] = md
		}
	}, telemetry.PipeRunStart, telemetry.PipeStageStop))
	var live []pipe.StageReport
	p, err := pipe.New("live").
		Map("count", func(ctx context.Context, it Item) (Item, error) {
			if it.ID == "3" {
				live = stagesFn() // mid-run, from the stage's own goroutine
			}
			if it.ID == "4" {
				return it, errors.New("bad")
			}
			return it, nil
		}).
		Router("split", pipe.When("odd", func(it Item) bool { return it.Payload.(int)%2 == 1 })).
		Output("odd").
		OnError("count", dispatch.Retry{Attempts: 1, Then: dispatch.Skip{}}).
		Build()
	require.NoError(t, err)
	_, err = p.Run(context.Background(), pipe.Env{Telemetry: bus}, dispatch.Slice(ints(6)))
	require.NoError(t, err)

	require.Len(t, live, 2)
	assert.Equal(t, "count", live[0].Name)
	assert.Equal(t, 4, live[0].In, "items 0-3 have entered the stage")
	assert.Equal(t, 3, live[0].Out, "items 0-2 have left it")
	require.NotNil(t, stagesFn)
	final := stagesFn()
	assert.Equal(t, 6, final[0].In, "the function reads the run's counts, not a copy")

	c := stops["count"]
	assert.Equal(t, 6, c["in"], "every count is an int")
	assert.Equal(t, 1, c["skipped"])
	assert.Equal(t, 1, c["errors"])
	assert.Equal(t, 1, c["retries"])
	assert.NotContains(t, c, "routed")
	s := stops["split"]
	assert.Equal(t, 0, s["errors"])
	assert.Equal(t, map[string]int{"odd": 3, pipe.DefaultOutput: 2}, s["routed"])
}

func TestPipeStageExceptionCarriesPythonType(t *testing.T) {
	bus := telemetry.New(nil)
	var exc []telemetry.Metadata
	require.NoError(t, bus.Attach("t", func(ev telemetry.Event, m telemetry.Measurements, md telemetry.Metadata) {
		exc = append(exc, md)
	}, telemetry.PipeStageException))
	tp, exp := spantest.Recorder(t)
	pyErr := &pools.PythonError{Type: "KeyError", Message: "'k'", Traceback: "Traceback (most recent call last):\nKeyError: 'k'"}
	p, err := pipe.New("pyerr").
		Map("lookup", func(ctx context.Context, it Item) (Item, error) {
			if it.ID == "1" {
				return it, fmt.Errorf("lookup: %w", pyErr)
			}
			return it, nil
		}).OnError("lookup", dispatch.Skip{}).Build()
	require.NoError(t, err)
	_, err = p.Run(context.Background(), pipe.Env{Telemetry: bus, TracerProvider: tp}, dispatch.Slice(ints(2)))
	require.NoError(t, err)
	require.Len(t, exc, 1)
	assert.Equal(t, "KeyError", exc[0]["exception_type"])
	assert.Equal(t, pyErr.Traceback, exc[0]["traceback"])
	st := spantest.Named(exp.GetSpans(), "slither.pipe.stage")
	require.Len(t, st, 1)
	require.Len(t, st[0].Events, 1)
	ea := spantest.Attrs(st[0].Events[0].Attributes)
	assert.Equal(t, "KeyError", ea["exception.type"])
	assert.Equal(t, pyErr.Traceback, ea["exception.stacktrace"])
}

// TestPipePythonStageNamesItsPool: a Python stage's dispatch events name
// the pool its stage submits to by the pool's name ("process/x"), not its
// kind, though the stage wraps the pool to count where batches ran.
func TestPipePythonStageNamesItsPool(t *testing.T) {
	abs, err := filepath.Abs("testdata")
	require.NoError(t, err)
	pp, err := process.New(context.Background(), process.Options{Name: "process/x", Workers: 1, Python: pooltest.Python(),
		Paths: []string{abs}, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, pp.Close(context.Background())) })
	bus := telemetry.New(nil)
	var mu sync.Mutex
	byEvent := map[telemetry.Event][]any{}
	require.NoError(t, bus.Attach("t", func(ev telemetry.Event, m telemetry.Measurements, md telemetry.Metadata) {
		mu.Lock()
		defer mu.Unlock()
		byEvent[ev] = append(byEvent[ev], md["pool"])
	}, "dispatch.*"))
	p, err := pipe.New("named").
		Python("py", pipe.Python{Module: "pipetest", Function: "noop", Strategy: dispatch.FixedBatch(2)}).
		Build()
	require.NoError(t, err)
	env := pipe.Env{Pool: func(string) (pools.Pool, error) { return pp, nil }, Telemetry: bus}
	_, err = p.Run(context.Background(), env, dispatch.Slice(ints(4)))
	require.NoError(t, err)
	mu.Lock()
	defer mu.Unlock()
	for _, ev := range []telemetry.Event{telemetry.DispatchRunStart, telemetry.DispatchBatchStart, telemetry.DispatchBatchStop,
		telemetry.DispatchRunStop} {
		require.NotEmpty(t, byEvent[ev], "%s", ev)
		for _, pool := range byEvent[ev] {
			assert.Equal(t, "process/x", pool, "%s", ev)
		}
	}
}

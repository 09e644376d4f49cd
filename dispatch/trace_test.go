//go:build cgo

package dispatch_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/slither-go/slither/dispatch"
	"github.com/slither-go/slither/internal/spantest"
	"github.com/slither-go/slither/pools"
	"github.com/slither-go/slither/telemetry"
)

func tracePool(t *testing.T) pools.Pool { return threadPool(t, 2) }

func TestTraceSpansParentsAndAttributes(t *testing.T) {
	tp, exp := spantest.Recorder(t)
	p := tracePool(t)
	ctx, parent := tp.Tracer("test").Start(context.Background(), "caller")
	o := dispatch.Options{Module: "tracetest", Function: "square", Name: "squares", Strategy: dispatch.FixedBatch(4),
		MaxInFlight: 2, TracerProvider: tp}
	out, err := dispatch.Run(ctx, p, dispatch.Slice(ints(10)), o)
	parent.End()
	require.NoError(t, err)
	require.Len(t, out.Results, 10)

	spans := exp.GetSpans()
	runs := spantest.Named(spans, "slither.dispatch")
	require.Len(t, runs, 1)
	run := runs[0]
	assert.Equal(t, parent.SpanContext().SpanID(), run.Parent.SpanID(), "the run is a child of the caller's span")
	assert.Equal(t, parent.SpanContext().TraceID(), run.SpanContext.TraceID())
	assert.Equal(t, telemetry.TracerName, run.InstrumentationScope.Name)
	ra := spantest.Attrs(run.Attributes)
	assert.Equal(t, "squares", ra["slither.dispatch"])
	assert.Equal(t, "tracetest.square", ra["slither.function"])
	assert.Equal(t, int64(2), ra["slither.max_in_flight"])
	assert.Equal(t, int64(10), ra["slither.items"])
	assert.Equal(t, int64(3), ra["slither.batches"])
	assert.Equal(t, codes.Unset, run.Status.Code)

	batches := spantest.Named(spans, "slither.batch")
	require.Len(t, batches, 3)
	var sizes, indices []int64
	for _, b := range batches {
		assert.Equal(t, run.SpanContext.SpanID(), b.Parent.SpanID(), "each batch is a child of its run")
		assert.Equal(t, run.SpanContext.TraceID(), b.SpanContext.TraceID())
		a := spantest.Attrs(b.Attributes)
		assert.Equal(t, "tracetest.square", a["slither.function"])
		assert.Equal(t, int64(1), a["slither.attempt"])
		assert.Equal(t, "thread", a["slither.pool"])
		assert.Contains(t, []any{int64(0), int64(1)}, a["slither.worker"])
		assert.NotContains(t, a, "slither.route", "no router ran it")
		sizes = append(sizes, a["slither.batch.items"].(int64))
		indices = append(indices, a["slither.batch.index"].(int64))
		assert.Equal(t, codes.Unset, b.Status.Code)
		assert.Empty(t, b.Events)
	}
	slices.Sort(sizes)
	slices.Sort(indices)
	assert.Equal(t, []int64{2, 4, 4}, sizes)
	assert.Equal(t, []int64{0, 1, 2}, indices)
}

func TestTraceRecordsPythonException(t *testing.T) {
	tp, exp := spantest.Recorder(t)
	p := tracePool(t)
	o := dispatch.Options{Module: "tracetest", Function: "fail_on", Strategy: dispatch.FixedBatch(2), MaxInFlight: 1,
		OnError: dispatch.Retry{Attempts: 1}, TracerProvider: tp}
	_, err := dispatch.Run(context.Background(), p, dispatch.Slice([]int{1, 2, -3, 4}), o)
	require.Error(t, err)

	spans := exp.GetSpans()
	var failed []tracetest.SpanStub
	for _, b := range spantest.Named(spans, "slither.batch") {
		if b.Status.Code == codes.Error {
			failed = append(failed, b)
		}
	}
	require.Len(t, failed, 2, "the failing batch and its retry")
	var attempts []int64
	for _, b := range failed {
		a := spantest.Attrs(b.Attributes)
		attempts = append(attempts, a["slither.attempt"].(int64))
		assert.Equal(t, int64(1), a["slither.batch.index"])
		assert.Contains(t, b.Status.Description, "ValueError: negative item -3")
		require.Len(t, b.Events, 1)
		ev := b.Events[0]
		assert.Equal(t, "exception", ev.Name)
		ea := spantest.Attrs(ev.Attributes)
		assert.Equal(t, "ValueError", ea["exception.type"], "the Python type, not the Go error's")
		assert.Contains(t, ea["exception.message"], "negative item -3")
		assert.Contains(t, ea["exception.stacktrace"], "Traceback (most recent call last)")
		assert.Contains(t, ea["exception.stacktrace"], "tracetest.py")
	}
	slices.Sort(attempts)
	assert.Equal(t, []int64{1, 2}, attempts)

	run := spantest.Named(spans, "slither.dispatch")
	require.Len(t, run, 1)
	assert.Equal(t, codes.Error, run[0].Status.Code, "the run halted")
	require.NotEmpty(t, run[0].Events)
	assert.Equal(t, "ValueError", spantest.Attrs(run[0].Events[0].Attributes)["exception.type"])
	assert.Equal(t, "tracetest.fail_on", spantest.Attrs(run[0].Attributes)["slither.dispatch"], "an unnamed run is called after its function")
}

// TestTraceIDsReachPython checks that the batch's span context is the one
// Python sees in slither.context(), in both kinds of pool.
func TestTraceIDsReachPython(t *testing.T) {
	for _, kind := range []string{"thread", "process"} {
		t.Run(kind, func(t *testing.T) {
			tp, exp := spantest.Recorder(t)
			var p pools.Pool
			if kind == "thread" {
				p = threadPool(t, 1)
			} else {
				p = processPool(t, 1)
			}
			o := dispatch.Options{Module: "tracetest", Function: "ids", Strategy: dispatch.FixedBatch(2), MaxInFlight: 1,
				TracerProvider: tp}
			out, err := dispatch.Run(context.Background(), p, dispatch.Slice(ints(4)), o)
			require.NoError(t, err)
			batches := spantest.Named(exp.GetSpans(), "slither.batch")
			require.Len(t, batches, 2)
			want := map[string]bool{}
			for _, b := range batches {
				want[fmt.Sprint([]any{b.SpanContext.TraceID().String(), b.SpanContext.SpanID().String()})] = true
			}
			seen := map[string]bool{}
			for _, r := range out.Results {
				seen[fmt.Sprint(r.Value)] = true
			}
			assert.Equal(t, want, seen, "Python's trace_id and span_id are the batch spans'")

			// Without a span the ids are None: nothing is left over from the
			// traced batches on the same worker.
			o.TracerProvider = noop.NewTracerProvider()
			out, err = dispatch.Run(context.Background(), p, dispatch.Slice(ints(2)), o)
			require.NoError(t, err)
			assert.Equal(t, []any{nil, nil}, out.Results[0].Value)
		})
	}
}

// TestTraceGlobalProvider checks that a nil TracerProvider means the
// global one.
func TestTraceGlobalProvider(t *testing.T) {
	tp, exp := spantest.Recorder(t)
	otel.SetTracerProvider(tp)
	t.Cleanup(func() { otel.SetTracerProvider(noop.NewTracerProvider()) })
	_, err := dispatch.Run(context.Background(), tracePool(t), dispatch.Slice(ints(3)),
		dispatch.Options{Module: "tracetest", Function: "square"})
	require.NoError(t, err)
	assert.Len(t, spantest.Named(exp.GetSpans(), "slither.dispatch"), 1)
	assert.NotEmpty(t, spantest.Named(exp.GetSpans(), "slither.batch"))
}

// TestTraceNotRecording checks that a run under a provider that does not
// sample makes no spans and still works, and that Python sees no ids.
func TestTraceNotRecording(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp), sdktrace.WithSampler(sdktrace.NeverSample()))
	t.Cleanup(func() { require.NoError(t, tp.Shutdown(context.Background())) })
	out, err := dispatch.Run(context.Background(), tracePool(t), dispatch.Slice(ints(3)),
		dispatch.Options{Module: "tracetest", Function: "square", TracerProvider: tp})
	require.NoError(t, err)
	assert.Len(t, out.Results, 3)
	assert.Empty(t, exp.GetSpans())
}

// events collects a bus's events of the given names.
type events struct {
	evs []telemetry.Event
	ms  []telemetry.Measurements
	mds []telemetry.Metadata
}

func (e *events) attach(t *testing.T, bus *telemetry.Bus, names ...telemetry.Event) {
	require.NoError(t, bus.Attach("collect", func(ev telemetry.Event, m telemetry.Measurements, md telemetry.Metadata) {
		e.evs, e.ms, e.mds = append(e.evs, ev), append(e.ms, m), append(e.mds, md)
	}, names...))
}

func TestRunAndBatchEventsMetadata(t *testing.T) {
	bus := telemetry.New(nil)
	var got events
	got.attach(t, bus, "dispatch.run.*", telemetry.DispatchBatchStop, telemetry.DispatchBatchException)
	p := threadPool(t, 1)
	// One worker and one batch in flight: the events come in order.
	o := dispatch.Options{Module: "tracetest", Function: "fail_on", Strategy: dispatch.FixedBatch(2), MaxInFlight: 1,
		OnError: dispatch.Skip{}, Telemetry: bus}
	_, err := dispatch.Run(context.Background(), p, dispatch.Slice([]int{1, 2, -3, 4, 5}), o)
	require.NoError(t, err)

	require.Equal(t, []telemetry.Event{telemetry.DispatchRunStart, telemetry.DispatchBatchStop, telemetry.DispatchBatchException,
		telemetry.DispatchBatchStop, telemetry.DispatchRunStop}, got.evs)
	for _, i := range []int{0, 4} {
		md := got.mds[i]
		assert.Equal(t, "tracetest.fail_on", md["dispatch"], "an unnamed run is called after its function")
		assert.Equal(t, "tracetest", md["module"])
		assert.Equal(t, "fail_on", md["function"])
		assert.Equal(t, "thread", md["pool"])
		assert.Equal(t, map[string]float64{"max_in_flight": 1}, got.ms[i].Extra)
	}
	assert.Equal(t, 5, got.ms[4].Items, "run stop counts the items read")
	assert.NotContains(t, got.mds[4], "error")
	rep, ok := got.mds[4]["report"].(dispatch.Report)
	require.True(t, ok, "run stop carries the run's report")
	assert.Equal(t, 2, rep.SkippedItems)

	stop := got.mds[1]
	assert.Equal(t, "thread", stop["pool"])
	assert.Equal(t, "thread", stop["kind"])
	assert.Equal(t, 0, stop["worker"])
	assert.Equal(t, 2, got.ms[1].Items)

	exc := got.mds[2]
	assert.Equal(t, "ValueError", exc["exception_type"])
	assert.Equal(t, "negative item -3", exc["exception_message"], "Python's own message, without the Go error chain")
	assert.Contains(t, exc["traceback"], "Traceback (most recent call last)")
	assert.Contains(t, exc["error"], "negative item -3")
	assert.Equal(t, "fail_on", exc["function"])
	assert.Equal(t, 0, exc["worker"], "a batch Python failed says where it ran")
	assert.Equal(t, 2, got.ms[2].Items)
}

func TestRunStopEventCarriesError(t *testing.T) {
	bus := telemetry.New(nil)
	var got events
	got.attach(t, bus, "dispatch.run.*")
	_, err := dispatch.Run(context.Background(), tracePool(t), dispatch.Slice([]int{-1}),
		dispatch.Options{Module: "tracetest", Function: "fail_on", Name: "named", Telemetry: bus})
	require.Error(t, err)
	require.Equal(t, []telemetry.Event{telemetry.DispatchRunStart, telemetry.DispatchRunStop}, got.evs)
	assert.Equal(t, "named", got.mds[1]["dispatch"])
	assert.Contains(t, got.mds[1]["error"], "ValueError")
}

func TestException(t *testing.T) {
	for _, c := range []struct {
		err      error
		typ, tb  string
		contains string
	}{
		{err: nil},
		{err: fmt.Errorf("batch: %w", &pools.PythonError{Type: "mod.Boom", Message: "x", Traceback: "Traceback..."}),
			typ: "mod.Boom", tb: "Traceback..."},
		{err: fmt.Errorf("worker 1: %w", pools.ErrTimeout), typ: "slither.Timeout"},
		{err: fmt.Errorf("x: %w", pools.ErrWorkerCrashed), typ: "slither.WorkerCrashed"},
		{err: fmt.Errorf("x: %w", context.Canceled), typ: "context.Canceled"},
		{err: &dispatch.ItemError{ID: "1", Message: "bad"}, typ: "slither.ItemFailed"},
		{err: fmt.Errorf("plain"), typ: "*errors.errorString"},
	} {
		typ, tb := dispatch.Exception(c.err)
		assert.Equal(t, c.typ, typ, "%v", c.err)
		assert.Equal(t, c.tb, tb, "%v", c.err)
	}
}

// TestTraceIDsWithoutProvider checks that, with no provider installed, a
// trace the caller's context carries (say, from an incoming request)
// still reaches Python, and that without one Python sees none.
func TestTraceIDsWithoutProvider(t *testing.T) {
	p := threadPool(t, 1)
	o := dispatch.Options{Module: "tracetest", Function: "ids", TracerProvider: noop.NewTracerProvider()}
	sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{1, 2, 3}, SpanID: trace.SpanID{4, 5, 6},
		TraceFlags: trace.FlagsSampled, Remote: true})
	out, err := dispatch.Run(trace.ContextWithRemoteSpanContext(context.Background(), sc), p, dispatch.Slice(ints(1)), o)
	require.NoError(t, err)
	assert.Equal(t, []any{sc.TraceID().String(), sc.SpanID().String()}, out.Results[0].Value)

	out, err = dispatch.Run(context.Background(), p, dispatch.Slice(ints(1)), o)
	require.NoError(t, err)
	assert.Equal(t, []any{nil, nil}, out.Results[0].Value)
}

// TestTraceCancelledBatchIsNotAnError: a batch in flight when the run is
// cancelled did not fail: its span is marked cancelled, with no exception
// event and no Error status.
func TestTraceCancelledBatchIsNotAnError(t *testing.T) {
	tp, exp := spantest.Recorder(t)
	p := threadPool(t, 2)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	bus := telemetry.New(nil)
	// The batch starts after the run is cancelled, and waits in Python
	// until released (after the run): it cannot finish first.
	require.NoError(t, bus.Attach("cancel", func(telemetry.Event, telemetry.Measurements, telemetry.Metadata) { cancel() },
		telemetry.DispatchBatchStart))
	key := fmt.Sprintf("cancel%d", time.Now().UnixNano())
	o := dispatch.Options{Module: mod, Function: "gate", Strategy: dispatch.FixedBatch(1), MaxInFlight: 1,
		Telemetry: bus, TracerProvider: tp}
	_, err := dispatch.Run(ctx, p, dispatch.Slice([][]any{{key, "wait"}}), o)
	require.ErrorIs(t, err, context.Canceled)
	_, err = p.Submit(context.Background(), pools.Batch{Module: mod, Function: "gate", Items: []any{[]any{key, "release"}}})
	require.NoError(t, err)

	batches := spantest.Named(exp.GetSpans(), "slither.batch")
	require.Len(t, batches, 1)
	b := batches[0]
	assert.Equal(t, true, spantest.Attrs(b.Attributes)["slither.batch.cancelled"])
	assert.Equal(t, codes.Unset, b.Status.Code)
	assert.Empty(t, b.Events, "no exception: the batch did not fail")
}

package dispatch

import (
	"context"
	"errors"
	"fmt"

	"github.com/slither-go/slither/pools"
	"github.com/slither-go/slither/telemetry"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
)

// noSpan stands in for the span of a batch that is not traced: it
// records nothing, and using it allocates nothing.
var noSpan = trace.SpanFromContext(context.Background())

// sentinels name the errors a batch commonly fails with, for
// [Exception]: the first one err matches names it.
var sentinels = []struct {
	err  error
	name string
}{
	{pools.ErrTimeout, "slither.Timeout"},
	{pools.ErrWorkerCrashed, "slither.WorkerCrashed"},
	{pools.ErrSessionLost, "slither.SessionLost"},
	{pools.ErrPoolFailed, "slither.PoolFailed"},
	{pools.ErrClosed, "slither.PoolClosed"},
	{pools.ErrConversion, "slither.Conversion"},
	{pools.ErrResultCount, "slither.ResultCount"},
	{pools.ErrInvalidBatch, "slither.InvalidBatch"},
	{pools.ErrReentrant, "slither.Reentrant"},
	{pools.ErrNoRoute, "slither.NoRoute"},
	{ErrPanic, "slither.Panic"},
	{context.DeadlineExceeded, "context.DeadlineExceeded"},
	{context.Canceled, "context.Canceled"},
}

// Exception describes err as OpenTelemetry's exception.type and
// exception.stacktrace do: for a Python exception ([*pools.PythonError])
// its type ("ValueError", "mymod.MyError") and traceback; otherwise a name
// for the kind of Go error — "slither.Timeout", "slither.WorkerCrashed"
// and the like for Slither's sentinel errors, "context.Canceled", or else
// err's Go type — and no traceback. It is "" for a nil err.
func Exception(err error) (typ, traceback string) {
	if err == nil {
		return "", ""
	}
	var pe *pools.PythonError
	if errors.As(err, &pe) {
		return pe.Type, pe.Traceback
	}
	for _, s := range sentinels {
		if errors.Is(err, s.err) {
			return s.name, ""
		}
	}
	var ie *ItemError
	if errors.As(err, &ie) {
		return "slither.ItemFailed", ""
	}
	return fmt.Sprintf("%T", err), ""
}

// RecordError records err on span as an OpenTelemetry exception event,
// typed and with the traceback as [Exception] describes it; fail also sets
// the span's status to Error. Nothing happens for a nil err or a span that
// is not recording.
func RecordError(span trace.Span, err error, fail bool) {
	if err == nil || !span.IsRecording() {
		return
	}
	typ, tb := Exception(err)
	telemetry.RecordError(span, err, typ, tb, fail)
}

// ErrorMetadata describes err in an event's metadata md: "error" is
// err's text and, when err is a Python exception ([*pools.PythonError]),
// "exception_type", "exception_message" (Python's own message, without
// the Go error chain) and "traceback". A nil err adds nothing.
func ErrorMetadata(md telemetry.Metadata, err error) {
	if err == nil {
		return
	}
	md["error"] = err.Error()
	var pe *pools.PythonError
	if errors.As(err, &pe) {
		md["exception_type"], md["exception_message"], md["traceback"] = pe.Type, pe.Message, pe.Traceback
	}
}

// endRun ends the run's span, with the run's counts and, if it failed,
// its error.
func endRun(span trace.Span, rep Report, err error) {
	if span.IsRecording() {
		span.SetAttributes(attribute.Int("slither.items", rep.Items), attribute.Int("slither.batches", rep.Batches),
			attribute.Int("slither.items.ok", rep.Succeeded), attribute.Int("slither.retries", rep.Retries))
		RecordError(span, err, true)
	}
	span.End()
}

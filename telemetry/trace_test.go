package telemetry_test

import (
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/slither-go/slither/internal/spantest"
	"github.com/slither-go/slither/telemetry"
)

// TestRecordError checks the exception event: exactly one exception.type,
// the one given (span.RecordError would add the Go type as well), the
// message and the stack trace; and the status only when asked.
func TestRecordError(t *testing.T) {
	tp, exp := spantest.Recorder(t)
	tr := telemetry.Tracer(tp)
	_, kept := tr.Start(context.Background(), "kept")
	telemetry.RecordError(kept, errors.New("boom"), "mod.Err", "Traceback ...", false)
	kept.End()
	_, failed := tr.Start(context.Background(), "failed")
	telemetry.RecordError(failed, errors.New("bad"), "ValueError", "", true)
	telemetry.RecordError(failed, nil, "ignored", "", true)
	failed.End()

	spans := exp.GetSpans()
	require.Len(t, spans, 2)
	k, f := spans[0], spans[1]
	assert.Equal(t, telemetry.TracerName, k.InstrumentationScope.Name)
	assert.Equal(t, codes.Unset, k.Status.Code, "fail=false leaves the status")
	require.Len(t, k.Events, 1)
	assert.Equal(t, "exception", k.Events[0].Name)
	assert.Equal(t, []attribute.KeyValue{attribute.String("exception.type", "mod.Err"),
		attribute.String("exception.message", "boom"), attribute.String("exception.stacktrace", "Traceback ...")},
		k.Events[0].Attributes)

	assert.Equal(t, codes.Error, f.Status.Code)
	assert.Equal(t, "bad", f.Status.Description)
	require.Len(t, f.Events, 1, "a nil error records nothing")
	assert.Equal(t, []attribute.KeyValue{attribute.String("exception.type", "ValueError"),
		attribute.String("exception.message", "bad")}, f.Events[0].Attributes, "no empty stack trace")

	// A span that does not record is left alone (and nothing panics).
	telemetry.RecordError(trace.SpanFromContext(context.Background()), errors.New("x"), "t", "", true)
}

// TestTracerNilMeansGlobal checks that a nil provider means the global
// one, read at each call.
func TestTracerNilMeansGlobal(t *testing.T) {
	tp, exp := spantest.Recorder(t)
	otel.SetTracerProvider(tp)
	t.Cleanup(func() { otel.SetTracerProvider(noop.NewTracerProvider()) })
	_, span := telemetry.Tracer(nil).Start(context.Background(), "s")
	assert.True(t, span.IsRecording())
	span.End()
	assert.Len(t, exp.GetSpans(), 1)
}

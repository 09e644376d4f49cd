package telemetry

import (
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// TracerName is the instrumentation scope of every span Slither makes.
const TracerName = "github.com/slither-go/slither"

// Tracer returns the tracer Slither's packages make spans with: tp's, or
// when tp is nil the global provider's (otel.GetTracerProvider), which is
// a no-op unless the program installed one.
func Tracer(tp trace.TracerProvider) trace.Tracer {
	if tp == nil {
		tp = otel.GetTracerProvider()
	}
	return tp.Tracer(TracerName)
}

// RecordError adds err to span as an OpenTelemetry "exception" event with
// exception.type set to typ (a Python exception's type, or what kind of
// Go error it is), exception.message and, when not empty,
// exception.stacktrace (a Python traceback). When fail is true it also
// sets the span's status to Error. It does nothing for a nil err or a
// span that is not recording.
//
// It adds the event itself rather than through span.RecordError, which
// would add the Go type of err as a second exception.type after typ.
func RecordError(span trace.Span, err error, typ, stacktrace string, fail bool) {
	if err == nil || !span.IsRecording() {
		return
	}
	msg := err.Error()
	attrs := make([]attribute.KeyValue, 0, 3)
	attrs = append(attrs, semconv.ExceptionType(typ), semconv.ExceptionMessage(msg))
	if stacktrace != "" {
		attrs = append(attrs, semconv.ExceptionStacktrace(stacktrace))
	}
	span.AddEvent(semconv.ExceptionEventName, trace.WithAttributes(attrs...))
	if fail {
		span.SetStatus(codes.Error, msg)
	}
}

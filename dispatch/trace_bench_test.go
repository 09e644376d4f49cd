//go:build cgo

package dispatch_test

import (
	"context"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/slither-go/slither/dispatch"
)

// BenchmarkBatchTracing runs no-op batches of 64 items through a
// one-worker embedded pool, one op per batch, with no tracer provider (the
// global no-op: what a program that never set one pays) and with an SDK
// provider that samples every span and exports none (the cost of making
// the spans). The monitor's benchmark (H3) adds metrics on top.
func BenchmarkBatchTracing(b *testing.B) {
	sdk := sdktrace.NewTracerProvider()
	b.Cleanup(func() { _ = sdk.Shutdown(context.Background()) })
	for _, c := range []struct {
		name string
		tp   trace.TracerProvider
	}{{"none", nil}, {"sdk", sdk}} {
		b.Run(c.name, func(b *testing.B) {
			p := threadPool(b, 1)
			o := dispatch.Options{Module: "tracetest", Function: "square", Strategy: dispatch.FixedBatch(64),
				MaxInFlight: 1, TracerProvider: c.tp}
			items := make([]int, 64*b.N)
			b.ReportAllocs()
			b.ResetTimer()
			out, err := dispatch.Run(context.Background(), p, dispatch.Slice(items), o)
			b.StopTimer()
			if err != nil || len(out.Results) != len(items) {
				b.Fatalf("run: %v (%d results)", err, len(out.Results))
			}
		})
	}
}

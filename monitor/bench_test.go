//go:build cgo && unix

package monitor_test

import (
	"context"
	"iter"
	"runtime"
	"syscall"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/slither-go/slither/dispatch"
	"github.com/slither-go/slither/monitor"
	"github.com/slither-go/slither/pools"
	"github.com/slither-go/slither/pools/thread"
	"github.com/slither-go/slither/telemetry"
)

// discard is a span exporter that drops what it gets: the cost measured
// is making and ending the spans, not shipping them.
type discard struct{}

func (discard) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (discard) Shutdown(context.Context) error                             { return nil }

// BenchmarkTelemetryOverhead is the hot-path cost of watching: no-op
// batches of 64 items through the embedded pool by dispatch (one run of
// b.N batches, in flight up to the pool's capacity), with no bus, with a
// bus and no handler (the events alone: what an engine's dispatch always
// pays), with the monitor on the bus, with an SDK tracer provider that
// samples every span (exported to nowhere), and with the monitor and
// tracing. Compare ns/batch against "none" (the goal: under 5% each).
// On a busy machine compare the fastest of several -count runs.
func BenchmarkTelemetryOverhead(b *testing.B) {
	p, items := noopBatches(b)
	for _, c := range []struct {
		name                  string
		bus, monitor, tracing bool
	}{{"none", false, false, false}, {"bus", true, false, false}, {"monitor", true, true, false},
		{"tracing", false, false, true}, {"monitor+tracing", true, true, true}} {
		b.Run(c.name, func(b *testing.B) {
			var bus *telemetry.Bus
			if c.bus {
				bus = telemetry.New(nil)
			}
			if c.monitor {
				m, err := monitor.New(monitor.Options{Bus: bus, Pools: func() []pools.Pool { return []pools.Pool{p} }})
				if err != nil {
					b.Fatal(err)
				}
				defer m.Close()
			}
			var tp trace.TracerProvider = noop.NewTracerProvider()
			if c.tracing {
				sdk := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()), sdktrace.WithSyncer(discard{}))
				defer sdk.Shutdown(context.Background())
				tp = sdk
			}
			runBatches(b, p, items, bus, tp)
		})
	}
}

// BenchmarkTelemetryOverheadInterleaved is BenchmarkTelemetryOverhead
// made to resolve a few percent on a shared machine: each iteration runs a
// short dispatch (50 batches of 64) under every configuration in turn, so
// drifts in the machine's load fall on all of them alike, and reports each
// configuration's wall ns/batch and its overhead over "bus" (what an
// engine's dispatch pays with nothing attached: the engine always has a
// bus) in percent. Run it with -benchtime 40x or more.
func BenchmarkTelemetryOverheadInterleaved(b *testing.B) {
	p, items := noopBatches(b)
	type config struct {
		name string
		bus  *telemetry.Bus
		tp   trace.TracerProvider
		took time.Duration
	}
	plain := telemetry.New(nil)
	watched := telemetry.New(nil)
	m, err := monitor.New(monitor.Options{Bus: watched, Pools: func() []pools.Pool { return []pools.Pool{p} }})
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	sdk := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()), sdktrace.WithSyncer(discard{}))
	defer sdk.Shutdown(context.Background())
	noTrace := noop.NewTracerProvider()
	configs := []*config{{name: "bus", bus: plain, tp: noTrace}, {name: "monitor", bus: watched, tp: noTrace},
		{name: "tracing", bus: plain, tp: sdk}, {name: "monitor+tracing", bus: watched, tp: sdk}}
	const batches = 50
	run := func(c *config) {
		in := func(yield func(dispatch.Item) bool) {
			for i := 0; i < batches*len(items); i++ {
				if !yield(dispatch.Item{Payload: items[i%len(items)]}) {
					return
				}
			}
		}
		start := time.Now()
		d := dispatch.Stream(context.Background(), p, iter.Seq[dispatch.Item](in), dispatch.Options{
			Module: "slither._demo", Function: "noop", Name: "bench", Strategy: dispatch.FixedBatch(len(items)),
			Ordering: dispatch.AsCompleted, Telemetry: c.bus, TracerProvider: c.tp})
		for _, err := range d.Results() {
			if err != nil {
				b.Fatal(err)
			}
		}
		c.took += time.Since(start)
	}
	for _, c := range configs { // warm up: imports, the sizer, the monitor's series
		run(c)
		c.took = 0
	}
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		for j := range configs { // a different first configuration each round
			run(configs[(i+j)%len(configs)])
		}
	}
	base := float64(configs[0].took)
	for _, c := range configs {
		n := float64(b.N * batches)
		b.ReportMetric(float64(c.took.Nanoseconds())/n, c.name+"-ns/batch")
		if c != configs[0] {
			b.ReportMetric((float64(c.took)/base-1)*100, c.name+"-overhead-%")
		}
	}
}

// noopBatches starts an embedded pool of a worker per core, closed with
// b, and returns it with a batch of 64 items.
func noopBatches(b *testing.B) (*thread.Pool, []any) {
	p, err := thread.New(thread.Options{Workers: runtime.GOMAXPROCS(0)})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { p.Close(context.Background()) })
	items := make([]any, 64)
	for i := range items {
		items[i] = i
	}
	return p, items
}

// runBatches dispatches b.N batches of items and reports ns/batch.
func runBatches(b *testing.B, p pools.Pool, items []any, bus *telemetry.Bus, tp trace.TracerProvider) {
	in := func(yield func(dispatch.Item) bool) {
		for i := 0; i < b.N*len(items); i++ {
			if !yield(dispatch.Item{Payload: items[i%len(items)]}) {
				return
			}
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := cpuTime(b)
	d := dispatch.Stream(context.Background(), p, iter.Seq[dispatch.Item](in), dispatch.Options{
		Module: "slither._demo", Function: "noop", Name: "bench", Strategy: dispatch.FixedBatch(len(items)),
		Ordering: dispatch.AsCompleted, Telemetry: bus, TracerProvider: tp})
	n := 0
	for _, err := range d.Results() {
		if err != nil {
			b.Fatal(err)
		}
		n++
	}
	b.StopTimer()
	cpu := cpuTime(b) - cpu0
	if n != b.N*len(items) {
		b.Fatalf("%d results for %d items", n, b.N*len(items))
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/batch")
	// CPU time (user and system, every thread of the process: Go's and
	// the embedded interpreter's) says more than wall time on a machine
	// other work shares.
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/batch")
}

func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkMonitorHandler is the monitor's own cost per batch, without
// Python or dispatch: the events of one successful batch (queued, start,
// stop) through a bus, with a handler that does nothing (the bus's own
// cost) and with the monitor.
func BenchmarkMonitorHandler(b *testing.B) {
	md := telemetry.Metadata{"dispatch": "bench", "module": "m", "function": "f", "pool": "thread", "kind": "thread",
		"batch": 1, "attempt": 0}
	ms := telemetry.Measurements{Items: 64, BatchSize: 64}
	for _, name := range []string{"nothing", "monitor"} {
		b.Run(name, func(b *testing.B) {
			bus := telemetry.New(nil)
			if name == "monitor" {
				m, err := monitor.New(monitor.Options{Bus: bus})
				if err != nil {
					b.Fatal(err)
				}
				defer m.Close()
			} else if err := bus.Attach("nothing", func(telemetry.Event, telemetry.Measurements, telemetry.Metadata) {}); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				bus.Emit(telemetry.DispatchBatchQueued, ms, md)
				bus.Emit(telemetry.DispatchBatchStart, ms, md)
				bus.Emit(telemetry.DispatchBatchStop, ms, md)
			}
		})
	}
}

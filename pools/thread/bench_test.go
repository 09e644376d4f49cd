package thread_test

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/slither-go/slither/pools"
	"github.com/slither-go/slither/pools/thread"
)

// drive submits b.N copies of bt from callers goroutines and reports
// ns/item and items/s alongside ns/op (one op = one batch).
func drive(b *testing.B, p *thread.Pool, bt pools.Batch, callers int) {
	b.Helper()
	ctx := context.Background()
	// Warm up: import the module on every worker before timing.
	for range 4 * p.Capacity() {
		if _, err := p.Submit(ctx, bt); err != nil {
			b.Fatal(err)
		}
	}
	var next atomic.Int64
	var failed atomic.Pointer[error]
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(b.N) {
				if _, err := p.Submit(ctx, bt); err != nil {
					failed.CompareAndSwap(nil, &err)
					return
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	if err := failed.Load(); err != nil {
		b.Fatal(*err)
	}
	items := float64(b.N) * float64(len(bt.Items))
	if items > 0 {
		b.ReportMetric(float64(elapsed.Nanoseconds())/items, "ns/item")
		b.ReportMetric(items/elapsed.Seconds(), "items/s")
	}
}

func benchPool(b *testing.B, workers int, spin time.Duration) *thread.Pool {
	b.Helper()
	p, err := thread.New(thread.Options{Workers: workers, Paths: []string{"testdata"}, Spin: spin})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = p.Close(context.Background()) })
	return p
}

func ints(n, v int) []any {
	items := make([]any, n)
	for i := range items {
		items[i] = v
	}
	return items
}

// BenchmarkNoop measures the pool's own cost per item: a Python function
// that returns its batch, at batch sizes 1 and 64, with one worker per core
// and two callers per worker keeping them busy; without spinning (the
// default) and with [thread.LowLatencySpin].
func BenchmarkNoop(b *testing.B) {
	workers := runtime.GOMAXPROCS(0)
	for _, spin := range []time.Duration{0, thread.LowLatencySpin} {
		for _, size := range []int{1, 64} {
			b.Run(fmt.Sprintf("%s/batch=%d", spinName(spin), size), func(b *testing.B) {
				p := benchPool(b, workers, spin)
				drive(b, p, batch("noop", ints(size, 7)...), 2*workers)
			})
		}
	}
}

func spinName(spin time.Duration) string {
	if spin <= 0 {
		return "spin=none"
	}
	return "spin=" + spin.String()
}

// BenchmarkNoopLatency is one caller, one worker: the round trip of an
// unbatched call, hand-off to the locked worker thread included, with the
// worker parking at once between calls and with [thread.LowLatencySpin].
func BenchmarkNoopLatency(b *testing.B) {
	for _, spin := range []time.Duration{0, thread.LowLatencySpin} {
		b.Run(spinName(spin), func(b *testing.B) {
			p := benchPool(b, 1, spin)
			drive(b, p, batch("noop", 7), 1)
		})
	}
}

// BenchmarkCPU runs a pure-Python loop with 1 and 2 workers; with the GIL
// off, items/s should nearly double on two cores.
func BenchmarkCPU(b *testing.B) {
	for _, workers := range []int{1, 2} {
		b.Run(fmt.Sprintf("workers=%d", workers), func(b *testing.B) {
			p := benchPool(b, workers, 0)
			drive(b, p, batch("cpu", ints(8, 20000)...), 2*workers)
		})
	}
}

// BenchmarkSharedObject returns one list object shared by every thread, a
// reference-count hot spot on free-threaded builds, beside the same work on
// a fresh list per result, with 1 and 2 workers.
func BenchmarkSharedObject(b *testing.B) {
	for _, fn := range []string{"shared", "fresh"} {
		for _, workers := range []int{1, 2} {
			b.Run(fmt.Sprintf("%s/workers=%d", fn, workers), func(b *testing.B) {
				p := benchPool(b, workers, 0)
				drive(b, p, batch(fn, ints(256, 1)...), 2*workers)
			})
		}
	}
}

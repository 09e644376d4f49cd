// Package pooltest holds helpers the pool packages' benchmarks share.
package pooltest

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/slither-go/slither/pools"
)

// Drive submits b.N copies of bt to p from callers goroutines, after a
// warm-up that imports the module on every worker, and reports ns/item and
// items/s beside ns/op (one op = one batch).
func Drive(b *testing.B, p pools.Pool, bt pools.Batch, callers int) {
	b.Helper()
	ctx := context.Background()
	for range 4 * p.Capacity() {
		if _, err := p.Submit(ctx, bt); err != nil {
			b.Fatal(err)
		}
	}
	elapsed := Run(b, callers, func() error {
		_, err := p.Submit(ctx, bt)
		return err
	})
	if items := float64(b.N) * float64(len(bt.Items)); items > 0 {
		b.ReportMetric(float64(elapsed.Nanoseconds())/items, "ns/item")
		b.ReportMetric(items/elapsed.Seconds(), "items/s")
	}
}

// Run calls op b.N times in all from callers goroutines, timed (the timer
// is reset first and stopped after), and returns how long it took; the
// first error fails the benchmark.
func Run(b *testing.B, callers int, op func() error) time.Duration {
	b.Helper()
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
				if err := op(); err != nil {
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
	return elapsed
}

// Ints returns n copies of v as batch items.
func Ints(n, v int) []any {
	items := make([]any, n)
	for i := range items {
		items[i] = v
	}
	return items
}

// Python is the interpreter tests run process-pool workers on: the
// free-threaded build make provides (SLITHER_TEST_PYTHON), else the default
// cache location, else python3 from PATH.
func Python() string {
	if p := os.Getenv("SLITHER_TEST_PYTHON"); p != "" {
		return p
	}
	home, _ := os.UserHomeDir()
	p := filepath.Join(home, ".cache", "slither", "cpython-3.13t", "bin", "python3.13t")
	if _, err := os.Stat(p); err == nil {
		return p
	}
	return "python3"
}

// PeakHeap runs f and returns the highest heap in use (HeapAlloc) sampled
// every 2 ms meanwhile, after a collection before it starts.
func PeakHeap(f func()) uint64 {
	runtime.GC()
	var peak uint64
	stop, sampled := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(sampled)
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			peak = max(peak, ms.HeapAlloc)
			select {
			case <-stop:
				return
			case <-time.After(2 * time.Millisecond):
			}
		}
	}()
	f()
	close(stop)
	<-sampled
	return peak
}

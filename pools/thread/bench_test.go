//go:build cgo

package thread_test

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/slither-go/slither/internal/pooltest"
	"github.com/slither-go/slither/pools"
	"github.com/slither-go/slither/pools/thread"
)

// A benchmarked pool configuration: a mode and, for Dedicated, a spin.
type benchMode struct {
	name string
	mode thread.Mode
	spin time.Duration
}

var benchModes = []benchMode{
	{"direct", thread.Direct, 0},
	{"dedicated", thread.Dedicated, 0},
	{"dedicated-spin", thread.Dedicated, thread.LowLatencySpin},
}

func benchPool(b *testing.B, m benchMode, workers int, alloc func(int) []byte) *thread.Pool {
	b.Helper()
	p, err := thread.New(thread.Options{Mode: m.mode, Workers: workers, Paths: []string{"testdata"}, Spin: m.spin, Alloc: alloc})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = p.Close(context.Background()) })
	return p
}

// BenchmarkNoop measures the pool's own cost per item: a Python function
// that returns its batch, at batch sizes 1 and 64, with one worker (slot)
// per core and two callers per worker keeping them busy.
func BenchmarkNoop(b *testing.B) {
	workers := runtime.GOMAXPROCS(0)
	for _, m := range benchModes {
		for _, size := range []int{1, 64} {
			b.Run(fmt.Sprintf("%s/batch=%d", m.name, size), func(b *testing.B) {
				p := benchPool(b, m, workers, nil)
				pooltest.Drive(b, p, batch("noop", pooltest.Ints(size, 7)...), 2*workers)
			})
		}
	}
}

// BenchmarkNoopLatency is one caller, one worker: the round trip of an
// unbatched call. Besides the mean (ns/op) it reports the median and the
// 99th percentile of the round trips (p50-ns, p99-ns).
func BenchmarkNoopLatency(b *testing.B) {
	for _, m := range benchModes {
		b.Run(m.name, func(b *testing.B) {
			p := benchPool(b, m, 1, nil)
			ctx := context.Background()
			bt := batch("noop", 7)
			for range 100 { // warm-up: the import, the thread state
				if _, err := p.Submit(ctx, bt); err != nil {
					b.Fatal(err)
				}
			}
			lat := make([]time.Duration, b.N)
			b.ResetTimer()
			for i := range b.N {
				start := time.Now()
				if _, err := p.Submit(ctx, bt); err != nil {
					b.Fatal(err)
				}
				lat[i] = time.Since(start)
			}
			b.StopTimer()
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds()), "p50-ns")
			b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds()), "p99-ns")
		})
	}
}

// BenchmarkCPU runs a pure-Python loop with 1 and 2 workers; with the GIL
// off, items/s should nearly double on two cores.
func BenchmarkCPU(b *testing.B) {
	for _, m := range benchModes[:2] {
		for _, workers := range []int{1, 2} {
			b.Run(fmt.Sprintf("%s/workers=%d", m.name, workers), func(b *testing.B) {
				p := benchPool(b, m, workers, nil)
				pooltest.Drive(b, p, batch("cpu", pooltest.Ints(8, 20000)...), 2*workers)
			})
		}
	}
}

// BenchmarkEcho1MiB sends 1 MiB of bytes to Python and back, one item per
// batch, one caller per worker: with results in fresh memory (make) and in
// buffers the caller recycles (Options.Alloc), which spares the page
// faults and GC work of a fresh large allocation.
func BenchmarkEcho1MiB(b *testing.B) {
	const size = 1 << 20
	workers := runtime.GOMAXPROCS(0)
	for _, m := range benchModes[:2] {
		for _, recycle := range []bool{false, true} {
			name := "make"
			if recycle {
				name = "recycled"
			}
			b.Run(fmt.Sprintf("%s/alloc=%s", m.name, name), func(b *testing.B) {
				var bufs sync.Pool
				var alloc func(int) []byte
				if recycle {
					alloc = func(n int) []byte {
						if v, _ := bufs.Get().(*[]byte); v != nil && cap(*v) >= n {
							return (*v)[:n]
						}
						return make([]byte, n)
					}
				}
				p := benchPool(b, m, workers, alloc)
				echo1MiB(b, p, size, workers, recycle, &bufs)
			})
		}
	}
}

func echo1MiB(b *testing.B, p *thread.Pool, size, callers int, recycle bool, bufs *sync.Pool) {
	ctx := context.Background()
	payload := make([]byte, size)
	for i := range payload {
		payload[i] = byte(i)
	}
	bt := pools.Batch{Module: mod, Function: "echo", Items: []any{payload}}
	run := func() error {
		out, err := p.Submit(ctx, bt)
		if err != nil {
			return err
		}
		got, ok := out[0].([]byte)
		if !ok || len(got) != size {
			return fmt.Errorf("echo returned %T of %d bytes", out[0], len(got))
		}
		if recycle {
			bufs.Put(&got)
		}
		return nil
	}
	for range 4 * callers {
		if err := run(); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(2 * int64(size)) // each way
	elapsed := pooltest.Run(b, callers, run)
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "items/s")
}

// BenchmarkSharedObject returns one list object shared by every thread, a
// reference-count hot spot on free-threaded builds, beside the same work on
// a fresh list per result, with 1 and 2 workers.
func BenchmarkSharedObject(b *testing.B) {
	for _, fn := range []string{"shared", "fresh"} {
		for _, workers := range []int{1, 2} {
			b.Run(fmt.Sprintf("%s/workers=%d", fn, workers), func(b *testing.B) {
				p := benchPool(b, benchModes[0], workers, nil)
				pooltest.Drive(b, p, batch(fn, pooltest.Ints(256, 1)...), 2*workers)
			})
		}
	}
}

//go:build cgo

package thread_test

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/slither-go/slither/internal/pooltest"
	"github.com/slither-go/slither/pools/thread"
)

func benchPool(b *testing.B, workers int, spin time.Duration) *thread.Pool {
	b.Helper()
	p, err := thread.New(thread.Options{Workers: workers, Paths: []string{"testdata"}, Spin: spin})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = p.Close(context.Background()) })
	return p
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
				pooltest.Drive(b, p, batch("noop", pooltest.Ints(size, 7)...), 2*workers)
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
			pooltest.Drive(b, p, batch("noop", 7), 1)
		})
	}
}

// BenchmarkCPU runs a pure-Python loop with 1 and 2 workers; with the GIL
// off, items/s should nearly double on two cores.
func BenchmarkCPU(b *testing.B) {
	for _, workers := range []int{1, 2} {
		b.Run(fmt.Sprintf("workers=%d", workers), func(b *testing.B) {
			p := benchPool(b, workers, 0)
			pooltest.Drive(b, p, batch("cpu", pooltest.Ints(8, 20000)...), 2*workers)
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
				pooltest.Drive(b, p, batch(fn, pooltest.Ints(256, 1)...), 2*workers)
			})
		}
	}
}

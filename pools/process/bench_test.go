package process_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"runtime"
	"strconv"
	"testing"

	"github.com/slither-go/slither/internal/pooltest"
	"github.com/slither-go/slither/pools"
	"github.com/slither-go/slither/pools/process"
)

func benchPool(b *testing.B, workers int) *process.Pool {
	b.Helper()
	p, err := process.New(context.Background(), opts(workers))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = p.Close(context.Background()) })
	return p
}

// BenchmarkNoop is the pool's own cost per item: a Python function that
// returns its batch, at batch sizes 1 and 64, one worker per core, two
// callers per worker. Compare BenchmarkProcessPoolExecutor/noop.
func BenchmarkNoop(b *testing.B) {
	workers := runtime.GOMAXPROCS(0)
	for _, size := range []int{1, 64} {
		b.Run(fmt.Sprintf("batch=%d", size), func(b *testing.B) {
			p := benchPool(b, workers)
			pooltest.Drive(b, p, batch("noop", pooltest.Ints(size, 7)...), 2*workers)
		})
	}
}

// BenchmarkPayload1MB round-trips 1 MiB of bytes per call (sent and
// returned, as raw frame attachments).
func BenchmarkPayload1MB(b *testing.B) {
	benchPayload(b, opts(runtime.GOMAXPROCS(0)), 1<<20)
}

// BenchmarkPayload round-trips payloads of several sizes through shared
// memory (the default) and through the pipe (Options.SharedMemory < 0), to
// show where each pays.
func BenchmarkPayload(b *testing.B) {
	for _, size := range []int{64 << 10, 256 << 10, 1 << 20, 3 << 20} {
		for _, path := range []string{"shm", "pipe"} {
			b.Run(fmt.Sprintf("size=%dKiB/%s", size>>10, path), func(b *testing.B) {
				o := opts(runtime.GOMAXPROCS(0))
				if path == "pipe" {
					o.SharedMemory = -1
				}
				benchPayload(b, o, size)
			})
		}
	}
}

func benchPayload(b *testing.B, o process.Options, size int) {
	p, err := process.New(context.Background(), o)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = p.Close(context.Background()) })
	payload := bytes.Repeat([]byte{'x'}, size)
	b.SetBytes(2 * int64(size))
	pooltest.Drive(b, p, pools.Batch{Module: mod, Function: "echo", Items: []any{payload}}, 2*o.Workers)
}

// BenchmarkProcessPoolExecutor runs the same workloads through Python's
// ProcessPoolExecutor on the same interpreter (testdata/ppe_bench.py):
// b.N items, timed inside Python with pool start-up excluded.
func BenchmarkProcessPoolExecutor(b *testing.B) {
	workers := runtime.GOMAXPROCS(0)
	for _, c := range []struct {
		name  string
		chunk int
		kind  string
	}{{"noop/chunksize=1", 1, "noop"}, {"noop/chunksize=64", 64, "noop"}, {"payload1MB", 1, "payload"}} {
		b.Run(c.name, func(b *testing.B) {
			cmd := exec.Command(testPython(), "testdata/ppe_bench.py", strconv.Itoa(b.N), strconv.Itoa(c.chunk), strconv.Itoa(workers), c.kind)
			out, err := cmd.Output()
			if err != nil {
				b.Fatalf("%v: %s", err, out)
			}
			var r struct{ Seconds float64 }
			if err := json.Unmarshal(out, &r); err != nil {
				b.Fatalf("%v: %s", err, out)
			}
			b.ReportMetric(0, "ns/op") // wall time here includes Python start-up: use ns/item
			b.ReportMetric(r.Seconds*1e9/float64(b.N), "ns/item")
			b.ReportMetric(float64(b.N)/r.Seconds, "items/s")
			if c.kind == "payload" {
				b.ReportMetric(float64(b.N)*2/r.Seconds, "MB/s")
			}
		})
	}
}

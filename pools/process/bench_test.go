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
	workers := runtime.GOMAXPROCS(0)
	p := benchPool(b, workers)
	payload := bytes.Repeat([]byte{'x'}, 1<<20)
	b.SetBytes(2 << 20)
	pooltest.Drive(b, p, pools.Batch{Module: mod, Function: "echo", Items: []any{payload}}, 2*workers)
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

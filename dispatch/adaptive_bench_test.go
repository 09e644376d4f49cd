package dispatch_test

import (
	"context"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/slither-go/slither/dispatch"
)

// skewedCorpus is a fixed corpus of item costs from a heavy-tailed
// (log-normal) distribution: median 100 us, mean about 300 us, the largest
// of 2,000 near 20 ms, like the source files of 0-756 KB that defect 14
// was seen on.
func skewedCorpus() []time.Duration {
	r := rand.New(rand.NewPCG(14, 14))
	c := make([]time.Duration, 2000)
	for i := range c {
		c[i] = time.Duration(100e3 * math.Exp(1.5*r.NormFloat64()))
	}
	return c
}

// BenchmarkStrategiesSkewed runs the same skewed corpus through Adaptive
// and fixed sizes on a pool of 2 workers whose batches cost a per-call
// overhead plus each item's cost. One op is one whole run; Adaptive's
// sizer starts afresh each run. It reports items/s, the spread of the
// batch count over the runs, the largest batch and the share of the run
// the workers sat idle.
//
//   - virtual: no time passes; the costs are exact and the makespan is
//     that of the batches in the order they started (list scheduling), so
//     the figures do not depend on the machine. items/s and idle are of
//     that makespan, not of the benchmark's wall time.
//   - sleep: each batch sleeps through its cost, and items/s is of wall
//     time; with MaxInFlight 4 for 2 workers (a Router's capacity when
//     Auto sends everything to one of its pools) batches also queue for a
//     worker, which is what the sizer was once fed.
func BenchmarkStrategiesSkewed(b *testing.B) {
	corpus := skewedCorpus()
	strategies := []struct {
		name string
		s    dispatch.Strategy
	}{
		{"Adaptive", nil},
		{"Fixed1", dispatch.FixedBatch(1)},
		{"Fixed8", dispatch.FixedBatch(8)},
		{"Fixed32", dispatch.FixedBatch(32)},
		{"Fixed128", dispatch.FixedBatch(128)},
	}
	modes := []struct {
		name     string
		virtual  bool
		inFlight int
		overhead time.Duration
	}{
		{"virtual/overhead50us", true, 2, 50 * time.Microsecond},
		{"virtual/overhead1ms", true, 2, time.Millisecond},
		{"sleep/inflight2", false, 2, 100 * time.Microsecond},
		{"sleep/inflight4", false, 4, 100 * time.Microsecond},
	}
	for _, m := range modes {
		for _, st := range strategies {
			b.Run(m.name+"/"+st.name, func(b *testing.B) {
				p := newCostPool(2, m.inFlight, m.overhead, m.virtual)
				o := dispatch.Options{Module: "m", Function: "f", Strategy: st.s}
				var counts []int
				var largest int
				var virtual time.Duration
				var idle float64
				b.ResetTimer()
				start := time.Now()
				for range b.N {
					out, err := dispatch.Run(context.Background(), p, dispatch.Slice(corpus), o)
					if err != nil {
						b.Fatal(err)
					}
					if len(out.Results) != len(corpus) {
						b.Fatalf("%d results for %d items", len(out.Results), len(corpus))
					}
					counts = append(counts, out.Report.Batches)
					largest = max(largest, slices.Max(p.batchSizes()))
					span, id := p.makespan()
					virtual += span
					idle += id
				}
				elapsed := time.Since(start)
				if m.virtual {
					elapsed = virtual
					b.ReportMetric(100*idle/float64(b.N), "idle-%")
				}
				b.ReportMetric(float64(b.N*len(corpus))/elapsed.Seconds(), "items/s")
				b.ReportMetric(float64(slices.Min(counts)), "batches-min")
				b.ReportMetric(float64(slices.Max(counts)), "batches-max")
				b.ReportMetric(float64(largest), "largest-batch")
			})
		}
	}
}

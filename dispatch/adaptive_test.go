package dispatch_test

import (
	"context"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/slither-go/slither/capacity"
	"github.com/slither-go/slither/dispatch"
)

// costs returns n items whose payload is their cost.
func costs(n int, each time.Duration) []time.Duration {
	c := make([]time.Duration, n)
	for i := range c {
		c[i] = each
	}
	return c
}

// TestAdaptiveSizesFromServiceTime is defect 14 (a): the sizer was fed a
// batch's wall time, queue wait included, so where a Router's capacity
// (thread + process workers) let more batches in than the workers could
// run, batches grew to thousands of items. The pool below reports capacity
// 4 with 1 worker, and the exact service time of each batch (2 ms per call,
// 50 us per item) while no time passes: the size must land where those
// costs put it, whatever the wall clock said.
func TestAdaptiveSizesFromServiceTime(t *testing.T) {
	p := newCostPool(1, 4, 2*time.Millisecond, true)
	sizer, err := capacity.NewBatchSizer(capacity.SizerOptions{})
	require.NoError(t, err)
	o := dispatch.Options{Module: "m", Function: "f", Strategy: dispatch.Adaptive(dispatch.AdaptiveOptions{Sizer: sizer})}
	out, err := dispatch.Run(context.Background(), p, dispatch.Slice(costs(40_000, 50*time.Microsecond)), o)
	require.NoError(t, err)
	require.Len(t, out.Results, 40_000)
	assert.InDelta(t, capacity.BatchFor(2e-3, 50e-6, 0), sizer.Target(), 1, "after %d batches", out.Report.Batches)
}

// TestAdaptiveKeepsEveryWorkerBusyToTheEnd is defect 14 (b), the final
// mega-batch: with a large per-call overhead and cheap items the sizer
// wants batches of thousands, and nothing bounded a batch against the
// workers, so one batch could hold half the input while the other worker
// idled. Now a batch holds at most 1/(4·workers) of the items read before
// it.
func TestAdaptiveKeepsEveryWorkerBusyToTheEnd(t *testing.T) {
	const items = 20_000
	p := newCostPool(2, 2, time.Millisecond, true)
	o := dispatch.Options{Module: "m", Function: "f"} // the default strategy
	out, err := dispatch.Run(context.Background(), p, dispatch.Slice(costs(items, time.Microsecond)), o)
	require.NoError(t, err)
	require.Len(t, out.Results, items)
	sizes := p.batchSizes()
	assert.LessOrEqual(t, slices.Max(sizes), items/8, "largest of %d batches", len(sizes))

	// The batcher on its own: every batch against the items before it.
	b, err := dispatch.Adaptive(dispatch.AdaptiveOptions{}).NewBatcher()
	require.NoError(t, err)
	b.(dispatch.WorkerAware).SetWorkers(2)
	seen := 0
	check := func(batches [][]dispatch.Item) {
		for _, bt := range batches {
			require.LessOrEqual(t, len(bt), max(1, seen/8), "a batch after %d items", seen)
			b.(dispatch.Observer).Observe(len(bt), time.Millisecond+time.Duration(len(bt))*time.Microsecond)
			seen += len(bt)
		}
	}
	for i, it := range numbered(items) {
		check(b.Add(it))
		require.LessOrEqual(t, seen, i+1)
	}
	check(b.Flush())
	assert.Equal(t, items, seen)
}

func TestAdaptiveOptionsAreChecked(t *testing.T) {
	w := func(dispatch.Item) float64 { return 1 }
	for _, mw := range []float64{-1, math.NaN(), math.Inf(1)} {
		_, err := dispatch.Adaptive(dispatch.AdaptiveOptions{MaxWeight: mw, Weight: w}).NewBatcher()
		assert.ErrorContains(t, err, "MaxWeight finite and >= 0", "MaxWeight %v", mw)
	}
	_, err := dispatch.Adaptive(dispatch.AdaptiveOptions{MaxWeight: 1}).NewBatcher()
	assert.ErrorContains(t, err, "a Weight function")
}

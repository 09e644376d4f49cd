//go:build cgo

package dispatch_test

import (
	"context"
	"fmt"
	"iter"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/slither-go/slither/capacity"
	"github.com/slither-go/slither/dispatch"
	"github.com/slither-go/slither/internal/leaktest"
	"github.com/slither-go/slither/internal/pooltest"
	"github.com/slither-go/slither/pools"
	"github.com/slither-go/slither/pools/process"
	"github.com/slither-go/slither/pools/thread"
	"github.com/slither-go/slither/telemetry"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, leaktest.Options()...)
}

const mod = "dispatchtest"

func threadPool(t testing.TB, workers int) *thread.Pool {
	t.Helper()
	p, err := thread.New(thread.Options{Workers: workers, Paths: []string{"testdata"}})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, p.Close(context.Background())) })
	return p
}

func processPool(t testing.TB, workers int) *process.Pool {
	t.Helper()
	abs, err := filepath.Abs("testdata")
	require.NoError(t, err)
	p, err := process.New(context.Background(), process.Options{Workers: workers, Python: pooltest.Python(),
		Paths: []string{abs}, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, p.Close(context.Background())) })
	return p
}

func ints(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i
	}
	return out
}

func opts(fn string) dispatch.Options {
	return dispatch.Options{Module: mod, Function: fn}
}

func TestRunPreservesOrder(t *testing.T) {
	p := threadPool(t, 4)
	o := opts("square")
	o.Strategy = dispatch.FixedBatch(7)
	out, err := dispatch.Run(context.Background(), p, dispatch.Slice(ints(1000)), o)
	require.NoError(t, err)
	require.Len(t, out.Results, 1000)
	for i, r := range out.Results {
		require.Equal(t, strconv.Itoa(i), r.Item.ID)
		require.Equal(t, int64(i*i), r.Value)
	}
	rep := out.Report
	assert.Equal(t, 1000, rep.Items)
	assert.Equal(t, 143, rep.Batches) // ceil(1000/7)
	assert.Equal(t, 1000, rep.Succeeded)
	total := 0
	for w, n := range rep.PerWorker {
		assert.Contains(t, []int{0, 1, 2, 3}, w)
		total += n
	}
	assert.Equal(t, 143, total, "per-worker counts add up to the batches")
	assert.Positive(t, rep.Duration)
}

func TestRunAsCompleted(t *testing.T) {
	p := threadPool(t, 3)
	ctx := context.Background()
	o := opts("gate")
	o.Ordering = dispatch.AsCompleted
	o.Strategy = dispatch.FixedBatch(1)
	// The first item waits in Python until the other three have come out:
	// under AsCompleted it comes out last (under Preserve this would wait
	// for ever).
	key := fmt.Sprintf("asc%d", time.Now().UnixNano())
	items := [][]any{{key, "wait"}, {key, "a"}, {key, "b"}, {key, "c"}}
	var ids []string
	for r, err := range dispatch.Stream(ctx, p, dispatch.Slice(items), o).Results() {
		require.NoError(t, err)
		ids = append(ids, r.Item.ID)
		if len(ids) == 3 {
			_, err := p.Submit(ctx, pools.Batch{Module: mod, Function: "gate", Items: []any{[]any{key, "release"}}})
			require.NoError(t, err)
		}
	}
	require.Len(t, ids, 4)
	assert.Equal(t, "0", ids[3])
	slices.Sort(ids)
	assert.Equal(t, []string{"0", "1", "2", "3"}, ids)
}

// TestMaxInFlightBoundsConcurrency: dispatch never has more than
// MaxInFlight batches in the pool at once, and keeps that many there. In
// front of a real pool with more workers, batches wait at a barrier (see
// barrierPool) until MaxInFlight are in flight together and dispatch has
// queued the next batch, so it could start it at once were it not bounded;
// the barrier counts how many batches were in flight as each arrived.
func TestMaxInFlightBoundsConcurrency(t *testing.T) {
	const maxIn, n = 2, 20
	p := newBarrierPool(threadPool(t, 4), maxIn, n)
	o := opts("square")
	o.Strategy = dispatch.FixedBatch(1)
	o.MaxInFlight = maxIn
	o.Telemetry = telemetry.New(nil)
	require.NoError(t, o.Telemetry.Attach("barrier", func(ev telemetry.Event, ms telemetry.Measurements, md telemetry.Metadata) {
		p.queued(md["batch"].(int))
	}, telemetry.DispatchBatchQueued))
	out, err := dispatch.Run(context.Background(), p, dispatch.Slice(ints(n)), o)
	require.NoError(t, err)
	require.Len(t, out.Results, n)
	assert.Equal(t, maxIn, p.peak, "batches in flight at once, at most (and, at the barrier, exactly) MaxInFlight")
	assert.Equal(t, n/maxIn, p.trips, "every batch met MaxInFlight-1 others in flight")
}

// barrierPool holds the batches submitted to it (one-item batches, in
// input order) in generations of parties: a generation goes on to Pool once
// all its batches are waiting and dispatch has queued a batch that has not
// arrived yet (it tells its telemetry before it waits for room to start
// one), or every batch has arrived. It records the most batches in its
// Submit at once.
type barrierPool struct {
	pools.Pool
	parties, batches int

	mu       sync.Mutex
	gate     chan struct{} // closed when the waiting generation may go on
	arrived  int           // batches of the waiting generation
	total    int           // batches that have arrived, all generations
	last     int           // the last batch queued
	inflight int
	peak     int
	trips    int
}

func newBarrierPool(p pools.Pool, parties, batches int) *barrierPool {
	return &barrierPool{Pool: p, parties: parties, batches: batches, last: -1}
}

// queued notes that dispatch queued batch seq.
func (p *barrierPool) queued(seq int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.last = max(p.last, seq)
	p.tryTrip()
}

// tryTrip lets the waiting generation go on if it may. p.mu held.
func (p *barrierPool) tryTrip() {
	if p.arrived >= p.parties && p.last >= p.total || p.arrived > 0 && p.total == p.batches {
		close(p.gate)
		p.gate, p.arrived = nil, 0
		p.trips++
	}
}

func (p *barrierPool) Submit(ctx context.Context, b pools.Batch) ([]any, error) {
	p.mu.Lock()
	p.inflight++
	p.peak = max(p.peak, p.inflight)
	if p.gate == nil {
		p.gate = make(chan struct{})
	}
	gate := p.gate
	p.arrived++
	p.total++
	p.tryTrip()
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		p.inflight--
		p.mu.Unlock()
	}()
	select {
	case <-gate:
	case <-ctx.Done():
		return nil, context.Cause(ctx)
	}
	return p.Pool.Submit(ctx, b)
}

func withNegatives(n int, neg ...int) []int {
	xs := ints(n)
	for _, i := range neg {
		xs[i] = -1
	}
	return xs
}

func TestHaltNamesBatchAndItems(t *testing.T) {
	p := threadPool(t, 2)
	o := opts("fail_on")
	o.Strategy = dispatch.FixedBatch(4)
	out, err := dispatch.Run(context.Background(), p, dispatch.Slice(withNegatives(40, 13)), o)
	var be *dispatch.BatchError
	require.ErrorAs(t, err, &be)
	assert.Equal(t, 3, be.Batch)
	assert.Equal(t, []string{"12", "13", "14", "15"}, be.ItemIDs)
	assert.Equal(t, 1, be.Attempts)
	var pe *pools.PythonError
	require.ErrorAs(t, err, &pe)
	assert.Equal(t, "negative item -1", pe.Message)
	assert.Contains(t, err.Error(), "dispatch: batch 3 (items 12, 13, 14, 15) failed after 1 attempt: ")
	assert.Less(t, len(out.Results), 40)
}

func TestSkip(t *testing.T) {
	p := threadPool(t, 2)
	o := opts("fail_on")
	o.Strategy = dispatch.FixedBatch(4)
	o.OnError = dispatch.Skip{}
	out, err := dispatch.Run(context.Background(), p, dispatch.Slice(withNegatives(40, 5, 30)), o)
	require.NoError(t, err)
	assert.Len(t, out.Results, 32)
	assert.Equal(t, 2, out.Report.SkippedBatches)
	assert.Equal(t, 8, out.Report.SkippedItems)
	for _, r := range out.Results {
		i, _ := strconv.Atoi(r.Item.ID)
		assert.False(t, i >= 4 && i < 8 || i >= 28 && i < 32, "item %d of a skipped batch", i)
		assert.Equal(t, int64(i*10), r.Value)
	}
}

func TestRoute(t *testing.T) {
	p := threadPool(t, 2)
	o := opts("fail_on")
	o.Strategy = dispatch.FixedBatch(5)
	o.OnError = dispatch.Route(func(it dispatch.Item, err error) string { return "bad" })
	out, err := dispatch.Run(context.Background(), p, dispatch.Slice(withNegatives(20, 7)), o)
	require.NoError(t, err)
	assert.Len(t, out.Results, 15)
	require.Len(t, out.Buckets["bad"], 5)
	for i, r := range out.Buckets["bad"] {
		assert.Equal(t, strconv.Itoa(5+i), r.Item.ID)
		assert.ErrorContains(t, r.Err, "negative item -1")
		assert.Nil(t, r.Value)
	}
	assert.Equal(t, 5, out.Report.Routed)
}

func TestRetryRecovers(t *testing.T) {
	p := threadPool(t, 2)
	o := opts("flaky")
	o.Strategy = dispatch.FixedBatch(2)
	o.OnError = dispatch.Retry{Attempts: 3, Backoff: time.Millisecond}
	key := fmt.Sprintf("k%d", time.Now().UnixNano())
	items := make([]any, 10)
	for i := range items {
		items[i] = []any{fmt.Sprintf("%s-%d", key, i), 2} // each batch fails twice
	}
	out, err := dispatch.Run(context.Background(), p, dispatch.Slice(items), o)
	require.NoError(t, err)
	require.Len(t, out.Results, 10)
	for i, r := range out.Results {
		assert.Equal(t, fmt.Sprintf("%s-%d", key, i), r.Value)
	}
	assert.Equal(t, 10, out.Report.Retries, "5 batches x 2 retries")

	// Attempts spent: Then applies.
	o.OnError = dispatch.Retry{Attempts: 1, Then: dispatch.Skip{}}
	items = []any{[]any{key + "-never", 100}}
	out, err = dispatch.Run(context.Background(), p, dispatch.Slice(items), o)
	require.NoError(t, err)
	assert.Empty(t, out.Results)
	assert.Equal(t, 1, out.Report.Retries)
	assert.Equal(t, 1, out.Report.SkippedBatches)

	// Not retryable: an invalid value fails the same way every time.
	o.OnError = dispatch.Retry{Attempts: 5}
	_, err = dispatch.Run(context.Background(), p, dispatch.Slice([]any{make(chan int)}), o)
	var be *dispatch.BatchError
	require.ErrorAs(t, err, &be)
	assert.Equal(t, 1, be.Attempts)
	assert.ErrorIs(t, err, pools.ErrConversion)
}

func TestRetryAfterWorkerKilledMidBatch(t *testing.T) {
	p := processPool(t, 2)
	marker := filepath.Join(t.TempDir(), "crashed")
	o := opts("crash_once")
	o.Strategy = dispatch.FixedBatch(5)
	o.OnError = dispatch.Retry{Attempts: 2}
	items := make([]any, 20)
	for i := range items {
		items[i] = []any{marker, i}
	}
	out, err := dispatch.Run(context.Background(), p, dispatch.Slice(items), o)
	require.NoError(t, err)
	require.Len(t, out.Results, 20, "every item recovered")
	for i, r := range out.Results {
		assert.Equal(t, int64(i), r.Value.([]any)[1])
	}
	assert.Equal(t, 1, out.Report.Retries)
	_, err = os.Stat(marker)
	require.NoError(t, err, "a worker really crashed")
	require.Eventually(t, func() bool { return p.Stats().Totals().Restarts == 1 }, 10*time.Second, 10*time.Millisecond)
}

func TestCallBatch(t *testing.T) {
	p := threadPool(t, 1)
	res, err := dispatch.CallBatch(context.Background(), p, []dispatch.Item{{ID: "a", Payload: 3}, {ID: "b", Payload: 4}}, opts("square"))
	require.NoError(t, err)
	require.Len(t, res, 2)
	assert.Equal(t, int64(9), res[0].Value)
	assert.Equal(t, "b", res[1].Item.ID)
}

func TestCancelMidRun(t *testing.T) {
	p := threadPool(t, 2)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	o := opts("sleepy")
	o.Strategy = dispatch.FixedBatch(1)
	items := func(yield func(dispatch.Item) bool) { // endless
		for i := 0; ; i++ {
			if !yield(dispatch.Item{ID: strconv.Itoa(i), Payload: 0.01}) {
				return
			}
		}
	}
	n := 0
	var err error
	for _, e := range dispatch.Stream(ctx, p, items, o).Results() {
		if e != nil {
			err = e
			break
		}
		if n++; n == 5 {
			cancel() // mid-run: batches are in flight, the input is endless
		}
	}
	require.ErrorIs(t, err, context.Canceled)
	assert.Contains(t, err.Error(), "dispatch: run cancelled")
	assert.GreaterOrEqual(t, n, 5)
	// goleak in TestMain checks that nothing of the run is left behind.
}

func TestStreamEarlyBreak(t *testing.T) {
	p := threadPool(t, 2)
	o := opts("square")
	o.Strategy = dispatch.FixedBatch(3)
	s := dispatch.Stream(context.Background(), p, dispatch.Slice(ints(1000)), o)
	n := 0
	for r, err := range s.Results() {
		require.NoError(t, err)
		require.Equal(t, strconv.Itoa(n), r.Item.ID)
		if n++; n == 10 {
			break
		}
	}
	assert.Less(t, s.Report().Items, 1000, "the input was not read to its end")
	for range s.Results() {
	} // a Dispatch runs once
	_, err := dispatch.Run(context.Background(), p, nil, o)
	assert.ErrorContains(t, err, "no input")
}

func TestLingerFlushesSlowInput(t *testing.T) {
	p := threadPool(t, 1)
	ch := make(chan int)
	o := opts("square")
	o.Strategy = dispatch.FixedBatch(100)
	o.Linger = 20 * time.Millisecond
	s := dispatch.Stream(context.Background(), p, dispatch.Chan(ch), o)
	go func() {
		for i := range 3 {
			ch <- i
		}
	}()
	got := 0
	for r, err := range s.Results() {
		require.NoError(t, err)
		assert.Equal(t, int64(got*got), r.Value)
		if got++; got == 3 {
			close(ch) // the results came while the input was still open
		}
	}
	assert.Equal(t, 3, got)
}

func TestBadOptions(t *testing.T) {
	p := threadPool(t, 1)
	in := dispatch.Slice(ints(3))
	for _, c := range []struct {
		o    dispatch.Options
		want string
	}{
		{dispatch.Options{Function: "f"}, "Options.Module"},
		{dispatch.Options{Module: mod, Function: "f", MaxInFlight: -1}, "MaxInFlight is -1"},
		{dispatch.Options{Module: mod, Function: "f", Strategy: dispatch.FixedBatch(-2)}, "FixedBatch size is -2"},
		{dispatch.Options{Module: mod, Function: "f", OnError: dispatch.Retry{Then: dispatch.Retry{}}}, "Retry.Then cannot be another Retry"},
		{dispatch.Options{Module: mod, Function: "f", OnError: dispatch.Route(nil)}, "nil function"},
		{dispatch.Options{Module: mod, Function: "f", OnError: dispatch.Bisect{Then: dispatch.Retry{}}}, "Bisect.Then cannot be another Retry"},
		{dispatch.Options{Module: mod, Function: "f", OnError: dispatch.Retry{Then: dispatch.Bisect{Then: dispatch.Bisect{}}}}, "Bisect.Then cannot be another Bisect"},
	} {
		_, err := dispatch.Run(context.Background(), p, in, c.o)
		assert.ErrorContains(t, err, c.want)
	}
}

func TestTelemetryAndMetrics(t *testing.T) {
	p := threadPool(t, 2)
	bus := telemetry.New(nil)
	m := telemetry.NewMetrics()
	require.NoError(t, m.Attach(bus))
	m.Probe("thread", func() (int, int) { return p.Stats().Running, p.Capacity() })
	var mu sync.Mutex
	counts := map[telemetry.Event]int{}
	require.NoError(t, bus.Attach("count", func(ev telemetry.Event, ms telemetry.Measurements, md telemetry.Metadata) {
		mu.Lock()
		counts[ev]++
		mu.Unlock()
		assert.Equal(t, "t1", md["dispatch"])
	}, "dispatch.*"))
	o := opts("fail_on")
	o.Strategy = dispatch.FixedBatch(10)
	o.OnError = dispatch.Skip{}
	o.Telemetry = bus
	o.Name = "t1"
	_, err := dispatch.Run(context.Background(), p, dispatch.Slice(withNegatives(50, 3)), o)
	require.NoError(t, err)
	assert.Equal(t, map[telemetry.Event]int{
		telemetry.DispatchBatchQueued: 5, telemetry.DispatchBatchStart: 5,
		telemetry.DispatchBatchStop: 4, telemetry.DispatchBatchException: 1,
		telemetry.DispatchRunStart: 1, telemetry.DispatchRunStop: 1,
	}, counts)
	s := m.Snapshot()
	assert.Zero(t, s.InFlightBatches)
	assert.Zero(t, s.QueuedItems)
	assert.Equal(t, int64(4), s.CompletedBatches)
	assert.Equal(t, int64(1), s.FailedBatches)
	assert.Equal(t, 2, s.Pools["thread"].Capacity)
}

// peakHeap streams n items through p with MaxInFlight 8 and returns the
// highest heap in use seen meanwhile.
func peakHeap(t testing.TB, p pools.Pool, n int) uint64 {
	var in iter.Seq[int] = func(yield func(int) bool) {
		for i := range n {
			if !yield(i) {
				return
			}
		}
	}
	o := opts("noop")
	o.Strategy = dispatch.FixedBatch(64)
	o.MaxInFlight = 8
	o.Ordering = dispatch.AsCompleted
	count := 0
	peak := pooltest.PeakHeap(func() {
		for _, err := range dispatch.Stream(context.Background(), p, dispatch.Wrap(in), o).Results() {
			require.NoError(t, err)
			count++
		}
	})
	require.Equal(t, n, count)
	return peak
}

func TestStreamingMemoryIsBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("streams a million items")
	}
	p := threadPool(t, 2)
	// A low GC target makes the heap track live data: with the default, a
	// short run ends before the first collection (the heap goal is at
	// least 4 MiB) and a long one does not, which says nothing of memory.
	defer debug.SetGCPercent(debug.SetGCPercent(5))
	peakHeap(t, p, 1000) // warm-up: imports, pools, buffers
	small := peakHeap(t, p, 10_000)
	large := peakHeap(t, p, 1_000_000)
	t.Logf("peak heap: %d KiB for 10k items, %d KiB for 1M items (%.2fx)", small>>10, large>>10, float64(large)/float64(small))
	assert.Less(t, float64(large), 2*float64(small), "1M items need less than twice the heap of 10k")
}

// BenchmarkAdaptiveOnARealPool runs Adaptive over a function of known cost
// (2 ms per call plus 100 us per item, one sleep) on one worker and reports
// where the size settled: the rule puts it near 380 for exactly that cost.
// Deterministic tests of the sizer live beside it (adaptive_test.go,
// package capacity); this shows it on a real pool, where timing varies.
func BenchmarkAdaptiveOnARealPool(b *testing.B) {
	p := threadPool(b, 1)
	var batches, target int
	for b.Loop() {
		sizer, err := capacity.NewBatchSizer(capacity.SizerOptions{})
		require.NoError(b, err)
		o := opts("costly")
		o.Strategy = dispatch.Adaptive(dispatch.AdaptiveOptions{Sizer: sizer})
		o.MaxInFlight = 1
		out, err := dispatch.Run(context.Background(), p, dispatch.Slice(ints(8000)), o)
		require.NoError(b, err)
		require.Len(b, out.Results, 8000)
		batches += out.Report.Batches
		target += sizer.Target()
	}
	b.ReportMetric(float64(batches)/float64(b.N), "batches/run")
	b.ReportMetric(float64(target)/float64(b.N), "target-size")
}

func TestItemFailuresStayWithTheirItem(t *testing.T) {
	p := threadPool(t, 2)
	ctx := context.Background()
	in := []int{1, 2, -3, 4, 5, 6, -7, 8}
	o := opts("fail_items")
	o.Strategy = dispatch.FixedBatch(4)

	o.OnError = dispatch.Skip{}
	out, err := dispatch.Run(ctx, p, dispatch.Slice(in), o)
	require.NoError(t, err)
	var got []any
	for _, r := range out.Results {
		got = append(got, r.Value)
	}
	assert.Equal(t, []any{int64(10), int64(20), int64(40), int64(50), int64(60), int64(80)}, got, "only the failed items are gone")
	assert.Equal(t, 2, out.Report.FailedItems)
	assert.Equal(t, 2, out.Report.SkippedItems)
	assert.Zero(t, out.Report.SkippedBatches)

	o.OnError = dispatch.Route(func(it dispatch.Item, err error) string { return "neg" })
	out, err = dispatch.Run(ctx, p, dispatch.Slice(in), o)
	require.NoError(t, err)
	require.Len(t, out.Buckets["neg"], 2)
	var ie *dispatch.ItemError
	require.ErrorAs(t, out.Buckets["neg"][0].Err, &ie)
	assert.Equal(t, "2", ie.ID)
	assert.Equal(t, "negative -3", ie.Message)
	assert.Len(t, out.Results, 6)

	o.OnError = dispatch.Halt{}
	_, err = dispatch.Run(ctx, p, dispatch.Slice([]int{1, -2, 3}), o)
	var be *dispatch.BatchError
	require.ErrorAs(t, err, &be)
	assert.Equal(t, []string{"1"}, be.ItemIDs, "the error names the failed item, not its batch")
	assert.ErrorContains(t, err, "item 1 failed: negative -2")

	// Retry resubmits only what failed.
	key := fmt.Sprintf("r%d", time.Now().UnixNano())
	items := []any{[]any{key + "-a", 0}, []any{key + "-b", 2}, []any{key + "-c", 0}}
	o = opts("flaky_items")
	o.Strategy = dispatch.FixedBatch(3)
	o.OnError = dispatch.Retry{Attempts: 2}
	out, err = dispatch.Run(ctx, p, dispatch.Slice(items), o)
	require.NoError(t, err)
	got = nil
	for _, r := range out.Results {
		got = append(got, r.Value)
	}
	assert.Equal(t, []any{key + "-a", key + "-b", key + "-c"}, got, "input order kept across the retries")
	assert.Equal(t, 2, out.Report.Retries)
	assert.Equal(t, 2, out.Report.FailedItems)
	attempts, err := p.Submit(ctx, pools.Batch{Module: mod, Function: "flaky_items", Items: []any{[]any{key + "-a", 100}}})
	require.NoError(t, err)
	assert.Equal(t, map[string]any{"__slither_failed__": key + "-a: attempt 2"}, attempts[0],
		"item a ran once before this probe: it was not resubmitted")
}

package pools_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/slither-go/slither/pools"
	"github.com/slither-go/slither/telemetry"
)

// The cost model's own unit tests: fake pools report a fixed service time
// per item (CallInfo.Service), so what the router measures is exact.
// engine/cost_cgo_test.go routes real pools by their real costs.

// costRouter is a router over a free-threaded thread pool and a GIL
// process pool, with m.f declared thread-safe (no mark to read).
func costRouter(t *testing.T, thread, process time.Duration) (*pools.Router, *fakePool, *fakePool) {
	th := &fakePool{kind: pools.KindThread, freeThreaded: true, perItem: thread, t: t}
	pr := &fakePool{kind: pools.KindProcess, perItem: process}
	r := &pools.Router{Thread: th, Process: pr, Logger: slog.New(slog.DiscardHandler)}
	r.DeclareThreadSafe("m", "f")
	return r, th, pr
}

func (f *fakePool) setPerItem(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.perItem = d
}

// run decides and submits n batches of two items of m.fn, one at a time.
func run(t *testing.T, r *pools.Router, fn string, n int) []pools.Decision {
	t.Helper()
	ctx := context.Background()
	var ds []pools.Decision
	for range n {
		b := pools.Batch{Module: "m", Function: fn, Items: []any{1, 2}}
		d, err := r.Decide(ctx, b)
		require.NoError(t, err)
		_, err = d.Submit(ctx, b)
		require.NoError(t, err)
		ds = append(ds, d)
	}
	return ds
}

func classes(ds []pools.Decision) []string {
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = d.Route.String() + "/" + d.Class
	}
	return out
}

// TestAutoExploresThenTakesTheFasterPool: a thread-safe function starts on
// threads; once they are measured, every second batch measures the process
// pool; once both are, it goes to the faster (here processes), and the
// reason names both costs, their ratio and the batches behind them.
func TestAutoExploresThenTakesTheFasterPool(t *testing.T) {
	r, th, pr := costRouter(t, 4*time.Millisecond, 1900*time.Microsecond)
	ds := run(t, r, "f", 9)
	assert.Equal(t, []string{
		"thread/thread-safe", "thread/thread-safe", "thread/thread-safe", // threads first, as the safety rule says
		"process/probe", "thread/thread-safe", "process/probe", "thread/thread-safe", "process/probe",
		"process/faster",
	}, classes(ds))
	assert.Equal(t, "m.f is declared thread-safe (declared in Go) and the GIL is off", ds[0].Reason)
	assert.Equal(t, "m.f is thread-safe (declared in Go); probe: measuring the process pool (0 batches of 3 so far; "+
		"the thread pool: 4.0 ms per item over 3 batches)", ds[3].Reason)
	assert.Equal(t, "m.f is thread-safe (declared in Go), but the process pool ran it 2.1x faster "+
		"(1.9 ms vs 4.0 ms per item, 3 vs 5 batches)", ds[8].Reason)
	assert.Equal(t, 4e6, ds[8].ThreadCost)
	assert.Equal(t, 1.9e6, ds[8].ProcessCost)
	assert.Same(t, pools.Pool(pr), ds[8].Pool)

	// From then on: processes, and now and then one batch re-measures the
	// threads (a bounded share).
	ds = run(t, r, "f", 200)
	probes := 0
	for _, d := range ds {
		if d.Class == pools.RouteProbe {
			probes++
			assert.Equal(t, pools.Thread, d.Route)
			assert.Equal(t, "m.f is thread-safe (declared in Go); probe: re-measuring the thread pool, 2.1x slower than the "+
				"process pool when last estimated (4.0 ms vs 1.9 ms per item)", d.Reason)
			continue
		}
		assert.Equal(t, "process/faster", d.Route.String()+"/"+d.Class)
	}
	assert.Equal(t, 3, probes, "one re-probe every 64 decisions")
	assert.Len(t, th.submitted, 5+probes)

	costs := r.Costs()
	require.Len(t, costs, 1)
	c := costs[0]
	assert.Equal(t, "m.f", c.Function)
	assert.Equal(t, pools.Process, c.Faster)
	assert.Equal(t, pools.Auto, c.Preferred)
	assert.Equal(t, 4e6, c.Thread.NsPerItem)
	assert.True(t, c.Thread.Measured)
	assert.Equal(t, 5+probes, c.Thread.Batches)
	assert.Equal(t, 1.9e6, c.Process.NsPerItem)
	assert.Equal(t, 3+1+200-probes, c.Process.Batches, "the probes, the 9th batch and the 200 but the re-probes")
	assert.False(t, c.Process.Last.IsZero())
	assert.Zero(t, c.Process.Seed)
}

// TestAutoKeepsAFasterThreadPool: the reverse stays on threads, with the
// ratio in the reason.
func TestAutoKeepsAFasterThreadPool(t *testing.T) {
	r, _, _ := costRouter(t, time.Millisecond, 2500*time.Microsecond)
	ds := run(t, r, "f", 9)
	assert.Equal(t, "thread/faster", classes(ds)[8])
	assert.Equal(t, "m.f is thread-safe (declared in Go) and the thread pool ran it 2.5x faster than the process pool "+
		"(1.0 ms vs 2.5 ms per item, 5 vs 3 batches)", ds[8].Reason)
	for _, d := range run(t, r, "f", 60) {
		assert.Equal(t, "thread/faster", d.Route.String()+"/"+d.Class)
	}
	// About as fast on both: it stays on the threads, where it started.
	r, _, _ = costRouter(t, time.Millisecond, 970*time.Microsecond)
	ds = run(t, r, "f", 9)
	assert.Equal(t, "m.f is thread-safe (declared in Go) and the thread pool is about as fast as the process pool "+
		"(1.0 ms vs 970 us per item, 5 vs 3 batches): it stays where it runs", ds[8].Reason)

	// Near-equal costs do not make it swing: the faster pool changes only
	// when the other is more than 5% cheaper.
	r, th, _ := costRouter(t, time.Millisecond, 1200*time.Microsecond)
	ds = run(t, r, "f", 9)
	assert.Equal(t, "thread/faster", classes(ds)[8])
	th.setPerItem(1250 * time.Microsecond) // 4% slower than the processes now
	ds = run(t, r, "f", 8)
	assert.Equal(t, "thread/faster", classes(ds)[7])
	assert.Equal(t, "m.f is thread-safe (declared in Go) and the thread pool is about as fast as the process pool "+
		"(1.2 ms vs 1.2 ms per item, 8 vs 3 batches): it stays where it runs", ds[7].Reason)
	assert.Equal(t, 1.25e6, ds[7].ThreadCost)
	th.setPerItem(1300 * time.Microsecond) // 8% slower
	ds = run(t, r, "f", 8)
	assert.Equal(t, "process/faster", classes(ds)[7])
}

// TestAutoNoticesAChange: when the slower pool becomes the faster, a
// re-probe sees it, confirming probes follow at once, and the function
// moves; when the faster pool slows down, its own batches show it.
func TestAutoNoticesAChange(t *testing.T) {
	r, th, pr := costRouter(t, 4*time.Millisecond, 1900*time.Microsecond)
	run(t, r, "f", 9)
	th.setPerItem(500 * time.Microsecond) // the threads got faster
	ds := run(t, r, "f", 64+20)
	last := ds[len(ds)-1]
	assert.Equal(t, "thread/faster", last.Route.String()+"/"+last.Class, "moved to the threads")
	assert.Equal(t, "m.f is thread-safe (declared in Go) and the thread pool ran it 3.8x faster than the process pool "+
		"(500 us vs 1.9 ms per item, 8 vs 8 batches)", last.Reason, "the batches behind each median: a reason that changes "+
		"with every batch would crowd the monitor's recent routes")
	assert.Equal(t, last.Reason, ds[len(ds)-2].Reason)
	moved := 0
	for i, d := range ds {
		if d.Route == pools.Thread && d.Class == pools.RouteFaster {
			moved = i
			break
		}
	}
	confirms := 0
	for _, d := range ds[:moved] {
		if strings.Contains(d.Reason, "last batch beat the process pool's estimate (500 us vs 1.9 ms per item): measuring it again") {
			confirms++
		}
	}
	assert.Equal(t, 4, confirms, "the re-probe's news is confirmed before the move")
	assert.Less(t, moved, 64+12, "noticed within one re-probe period and its confirmations")

	pr.setPerItem(100 * time.Microsecond) // and now the processes: the probes see it
	ds = run(t, r, "f", 64+20)
	last = ds[len(ds)-1]
	assert.Equal(t, "process/faster", last.Route.String()+"/"+last.Class, last.Reason)
	th.setPerItem(10 * time.Millisecond) // the faster pool slowing down shows in its own batches
	ds = run(t, r, "f", 8)
	assert.Equal(t, "process/faster", classes(ds)[7])
	pr.setPerItem(20 * time.Millisecond)
	ds = run(t, r, "f", 8)
	assert.Equal(t, "thread/faster", classes(ds)[7], "after a few batches of its own, the median moves")
}

// TestAutoReprobesAfterAWhile: a function called rarely is re-probed after
// probeInterval (30 s), not only every 64th decision, but never more often
// than every 8th.
func TestAutoReprobesAfterAWhile(t *testing.T) {
	r, _, _ := costRouter(t, 4*time.Millisecond, 1900*time.Microsecond)
	now := time.Date(2026, 11, 24, 0, 0, 0, 0, time.UTC)
	pools.SetClock(r, func() time.Time { return now })
	run(t, r, "f", 9)
	now = now.Add(31 * time.Second)
	ds := run(t, r, "f", 8)
	assert.Equal(t, []string{"process/faster", "process/faster", "process/faster", "process/faster", "process/faster",
		"process/faster", "thread/probe", "process/faster"}, classes(ds), "the 8th decision since the last probe")
	ds = run(t, r, "f", 20)
	for _, d := range ds {
		assert.Equal(t, pools.RouteFaster, d.Class, "the clock did not move: no probe before the 64th decision")
	}
}

// TestAutoStartsFromSeeds: slither bench's costs decide before anything is
// measured (the GIL process pool takes "process-gil", a free-threaded one
// "process-ft"), and live measurements replace them.
func TestAutoStartsFromSeeds(t *testing.T) {
	seeds := map[string]map[string]float64{"m.f": {"thread": 4e6, "process-gil": 1.9e6, "process-ft": 9.2e6}}
	r, _, pr := costRouter(t, 4*time.Millisecond, 5*time.Millisecond)
	r.CostSeeds = seeds
	ds := run(t, r, "f", 1)
	assert.Equal(t, "process/faster", classes(ds)[0])
	assert.Equal(t, "m.f is thread-safe (declared in Go), but the process pool is 2.1x faster (1.9 ms vs 4.0 ms per item, per slither bench)",
		ds[0].Reason)
	costs := r.Costs()
	require.Len(t, costs, 1)
	assert.Equal(t, 1.9e6, costs[0].Process.Seed)
	assert.False(t, costs[0].Process.Measured)

	// Measured here, the process pool (5 ms) is not compared with the
	// thread pool's seed: the seeds decide, and the thread pool is
	// measured too; with both measured here, the threads win.
	ds = run(t, r, "f", 12)
	assert.Contains(t, classes(ds), "thread/probe")
	assert.Contains(t, ds[4].Reason, "until then both pools' slither bench costs decide")
	last := ds[len(ds)-1]
	assert.Equal(t, "thread/faster", classes(ds)[len(ds)-1])
	assert.Equal(t, "m.f is thread-safe (declared in Go) and the thread pool ran it 1.2x faster than the process pool "+
		"(4.0 ms vs 5.0 ms per item, 7 vs 5 batches)", last.Reason)

	// A free-threaded process pool takes the process-ft seed.
	r, _, pr = costRouter(t, 4*time.Millisecond, 5*time.Millisecond)
	pr.freeThreaded = true
	r.CostSeeds = seeds
	ds = run(t, r, "f", 1)
	assert.Equal(t, "m.f is thread-safe (declared in Go) and the thread pool is 2.3x faster than the process pool "+
		"(4.0 ms vs 9.2 ms per item, per slither bench)", ds[0].Reason)

	// A seed for one pool only: the threads are tried first, as without.
	r, _, _ = costRouter(t, 4*time.Millisecond, 5*time.Millisecond)
	r.CostSeeds = map[string]map[string]float64{"m.f": {"process-gil": 1e6}}
	assert.Equal(t, "thread/thread-safe", classes(run(t, r, "f", 1))[0])
}

// TestPreferenceWinsOverCostNotSafety: a route preference beats the
// measurements, a batch's own Route beats the preference, and a preference
// for threads never sends there a function that is not safe there.
func TestPreferenceWinsOverCostNotSafety(t *testing.T) {
	r, th, pr := costRouter(t, 4*time.Millisecond, 1900*time.Microsecond)
	run(t, r, "f", 9) // processes are faster
	r.Prefer("m", "f", pools.Thread)
	ds := run(t, r, "f", 3)
	assert.Equal(t, []string{"thread/preferred", "thread/preferred", "thread/preferred"}, classes(ds))
	assert.Equal(t, "m.f is declared thread-safe (declared in Go) and the GIL is off; it prefers the thread pool (route preference)", ds[0].Reason)

	r.Prefer("m", "g", pools.Process)
	ds = run(t, r, "g", 1)
	assert.Equal(t, "process/preferred", classes(ds)[0])
	assert.Equal(t, "m.g prefers the process pool (route preference)", ds[0].Reason)

	d, err := r.Decide(context.Background(), pools.Batch{Module: "m", Function: "g", Route: pools.Thread})
	require.NoError(t, err)
	assert.Equal(t, "thread/requested", d.Route.String()+"/"+d.Class, "the batch's own route wins")

	// m.h is not thread-safe (its mark is read in a free-threaded worker):
	// a thread preference is not followed.
	r.Prefer("m", "h", pools.Thread)
	r.CostSeeds = map[string]map[string]float64{"m.h": {"thread": 1, "process-ft": 1e9}}
	pr.freeThreaded = true
	d, err = r.Decide(context.Background(), pools.Batch{Module: "m", Function: "h"})
	require.NoError(t, err)
	assert.Equal(t, "process/not-thread-safe", d.Route.String()+"/"+d.Class)
	assert.True(t, strings.HasPrefix(d.Reason, "m.h is not declared thread-safe"), d.Reason)
	assert.True(t, strings.HasSuffix(d.Reason, "; its route preference, thread, is not followed: a preference never sends to threads "+
		"what is not safe there (Batch.Route Thread does)"), d.Reason)
	th.gil = true
	d, err = r.Decide(context.Background(), pools.Batch{Module: "m", Function: "f"})
	require.NoError(t, err)
	assert.Equal(t, "process/gil-enabled", d.Route.String()+"/"+d.Class, "nor with the GIL on")
	th.gil = false

	r.Prefer("m", "f", pools.Auto) // cleared: the costs decide again
	assert.Equal(t, "process/faster", classes(run(t, r, "f", 1))[0])
	prefs := map[string]pools.Route{}
	for _, c := range r.Costs() {
		prefs[c.Function] = c.Preferred
	}
	assert.Equal(t, map[string]pools.Route{"m.f": pools.Auto, "m.g": pools.Process, "m.h": pools.Thread}, prefs)
}

// TestUnsafeFunctionsNeverGoToThreadsWhateverTheCost: a function that is
// not thread-safe goes to processes however fast the threads ran it (here
// through batches that asked for them), with no probe of the threads.
func TestUnsafeFunctionsNeverGoToThreadsWhateverTheCost(t *testing.T) {
	r, th, _ := costRouter(t, time.Microsecond, 10*time.Millisecond)
	ctx := context.Background()
	for range 5 {
		b := pools.Batch{Module: "m", Function: "u", Items: []any{1}, Route: pools.Thread}
		_, err := r.Submit(ctx, b)
		require.NoError(t, err)
	}
	r.CostSeeds = map[string]map[string]float64{"m.u": {"thread": 1, "process-gil": 1e9}}
	r.Python = "/nonexistent/python3.13t" // the mark cannot be read: not thread-safe
	for _, d := range run(t, r, "u", 100) {
		assert.Equal(t, pools.Process, d.Route, d.Reason)
		assert.Equal(t, pools.RouteMarkUnreadable, d.Class)
		assert.Zero(t, d.ThreadCost, "no costs compared")
	}
	assert.Len(t, th.submitted, 5)
	costs := r.Costs()
	require.Len(t, costs, 1)
	assert.Equal(t, 5, costs[0].Thread.Batches, "measured, shown, not used")
	assert.Equal(t, pools.Auto, costs[0].Faster)
}

// TestSessionsDoNotProbe: a pinned session's first batch goes to the
// chosen pool, never to one being probed (it would stay there).
func TestSessionsDoNotProbe(t *testing.T) {
	r, _, _ := costRouter(t, 4*time.Millisecond, 1900*time.Microsecond)
	run(t, r, "f", 3) // the threads are measured; the next unpinned batch would probe
	ctx := context.Background()
	d, err := r.Decide(ctx, pools.Batch{Module: "m", Function: "f", Session: "s1"})
	require.NoError(t, err)
	assert.Equal(t, "thread/thread-safe", d.Route.String()+"/"+d.Class)
	d, err = r.Decide(ctx, pools.Batch{Module: "m", Function: "f", Session: "s2", Unpinned: true})
	require.NoError(t, err)
	assert.Equal(t, "process/probe", d.Route.String()+"/"+d.Class, "an unpinned session's batch may")
}

// TestFailedBatchesAreNotMeasured: a batch that fails says nothing of the
// function's cost.
func TestFailedBatchesAreNotMeasured(t *testing.T) {
	r, _, pr := costRouter(t, 4*time.Millisecond, 1900*time.Microsecond)
	pr.closedErr = pools.ErrWorkerCrashed
	ctx := context.Background()
	routed := map[pools.Route]int{}
	for range 12 {
		b := pools.Batch{Module: "m", Function: "f", Items: []any{1}}
		d, err := r.Decide(ctx, b)
		require.NoError(t, err)
		_, err = d.Submit(ctx, b)
		if d.Route == pools.Process {
			require.ErrorIs(t, err, pools.ErrWorkerCrashed)
		}
		routed[d.Route]++
	}
	c := r.Costs()[0]
	assert.Zero(t, c.Process.Batches)
	assert.Zero(t, c.Process.NsPerItem)
	assert.Equal(t, 9, c.Thread.Batches)
	// Three failed probes in a row, then no more (for probeInterval): a
	// pool that fails the function is not sent every second batch.
	assert.Equal(t, map[pools.Route]int{pools.Thread: 9, pools.Process: 3}, routed)
}

// TestRouterDecisionCarriesCosts: router.decision events carry the costs
// a decision compared.
func TestRouterDecisionCarriesCosts(t *testing.T) {
	r, _, _ := costRouter(t, 4*time.Millisecond, 1900*time.Microsecond)
	bus := telemetry.New(nil)
	var mu sync.Mutex
	var last telemetry.Measurements
	var md telemetry.Metadata
	require.NoError(t, bus.Attach("t", func(_ telemetry.Event, m telemetry.Measurements, meta telemetry.Metadata) {
		mu.Lock()
		last, md = m, meta
		mu.Unlock()
	}, telemetry.RouterDecision))
	r.Telemetry = bus
	run(t, r, "f", 9)
	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, map[string]float64{"cost_thread_ns": 4e6, "cost_process_ns": 1.9e6}, last.Extra)
	assert.Equal(t, pools.RouteFaster, md["class"])
	assert.Contains(t, md["reason"], "2.1x faster")
}

// TestCostModelUnderConcurrency: concurrent batches, preferences and
// snapshots (run with -race); every batch is decided and measured once.
func TestCostModelUnderConcurrency(t *testing.T) {
	r, th, pr := costRouter(t, 2*time.Millisecond, time.Millisecond)
	ctx := context.Background()
	var wg sync.WaitGroup
	const callers, each = 8, 150
	for i := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range each {
				b := pools.Batch{Module: "m", Function: "f", Items: []any{j}}
				if _, err := r.Submit(ctx, b); err != nil {
					t.Error(err)
					return
				}
				switch {
				case i == 0 && j%10 == 0:
					r.Prefer("m", "f", pools.Route(j/10%3))
				case i == 1:
					_ = r.Costs()
				}
			}
		}()
	}
	wg.Wait()
	r.Prefer("m", "f", pools.Auto)
	c := r.Costs()[0]
	assert.Equal(t, callers*each, c.Thread.Batches+c.Process.Batches)
	assert.Equal(t, callers*each, len(th.submitted)+len(pr.submitted))
	counts := r.Counts()
	assert.Equal(t, callers*each, counts["thread"]+counts["process"])
	d, err := r.Decide(ctx, pools.Batch{Module: "m", Function: "f"})
	require.NoError(t, err)
	if d.Class == pools.RouteProbe { // the one after a probe is not
		d, err = r.Decide(ctx, pools.Batch{Module: "m", Function: "f"})
		require.NoError(t, err)
	}
	assert.Equal(t, "process/faster", d.Route.String()+"/"+d.Class, d.Reason)
}

func TestParseRoute(t *testing.T) {
	for _, r := range []pools.Route{pools.Auto, pools.Thread, pools.Process} {
		got, err := pools.ParseRoute(r.String())
		require.NoError(t, err)
		assert.Equal(t, r, got)
	}
	_, err := pools.ParseRoute("threads")
	assert.EqualError(t, err, fmt.Sprintf("pools: unknown route %q (want auto, thread or process)", "threads"))
}

// TestAutoNeverProbesWhatProcessesCannotWin: a function whose thread batch
// takes less than any process round trip could (here 2 items x 3 us) is
// never probed on the process pool, even with a seed that calls processes
// faster: it stays on threads every time, and the reason says why. A
// slower one is probed (control).
func TestAutoNeverProbesWhatProcessesCannotWin(t *testing.T) {
	r, _, pr := costRouter(t, 3*time.Microsecond, 1*time.Microsecond)
	r.CostSeeds = map[string]map[string]float64{"m.f": {"process-gil": 1000}}
	ds := run(t, r, "f", 200)
	for i, d := range ds {
		require.Equal(t, "thread/thread-safe", classes(ds)[i], d.Reason)
	}
	assert.Zero(t, submitted(pr), "the process pool ran batches of a function it cannot beat")
	assert.Contains(t, ds[len(ds)-1].Reason, "this batch takes the thread pool about 6.0 us, under 200 us: too short for the process pool's round trip to pay off")

	r2, _, pr2 := costRouter(t, 300*time.Microsecond, 1*time.Microsecond)
	run(t, r2, "f", 10)
	assert.NotZero(t, submitted(pr2), "a function whose thread batch outlasts a round trip is probed")
}

func submitted(f *fakePool) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.submitted)
}

// TestAutoProbesBigBatchesOfACheapFunction: whether the process pool
// cannot win is decided per batch (its items x the thread cost per item):
// small batches stay on threads, big ones of the same function are probed.
func TestAutoProbesBigBatchesOfACheapFunction(t *testing.T) {
	r, _, pr := costRouter(t, 3*time.Microsecond, 1*time.Microsecond)
	ctx := context.Background()
	submit := func(n int) pools.Decision {
		b := pools.Batch{Module: "m", Function: "f", Items: make([]any, n)}
		d, err := r.Decide(ctx, b)
		require.NoError(t, err)
		_, err = d.Submit(ctx, b)
		require.NoError(t, err)
		return d
	}
	for range 8 {
		submit(1)
	}
	require.Zero(t, submitted(pr), "one-item batches (3 us) cannot lose to a round trip")
	var classes []string
	for range 8 {
		classes = append(classes, submit(100).Class)
	}
	assert.Contains(t, classes, pools.RouteProbe, "100-item batches (300 us) are worth measuring there")
	assert.NotZero(t, submitted(pr))
}

// TestAutoProbesOneAtATime: a burst of concurrent batches sends one probe
// to the pool being measured, not every second batch.
func TestAutoProbesOneAtATime(t *testing.T) {
	r, _, _ := costRouter(t, 4*time.Millisecond, 1*time.Millisecond)
	run(t, r, "f", 3) // the thread pool is measured
	ctx := context.Background()
	b := pools.Batch{Module: "m", Function: "f", Items: []any{1, 2}}
	var ds []pools.Decision
	for range 40 { // decided together, none submitted yet
		d, err := r.Decide(ctx, b)
		require.NoError(t, err)
		ds = append(ds, d)
	}
	probes := 0
	for _, d := range ds {
		if d.Class == pools.RouteProbe {
			probes++
		}
	}
	assert.Equal(t, 1, probes, "%v", classes(ds))
	for _, d := range ds {
		_, err := d.Submit(ctx, b)
		require.NoError(t, err)
	}
	// The probe ended: a later batch probes again.
	var later []pools.Decision
	for range 4 {
		d, err := r.Decide(ctx, b)
		require.NoError(t, err)
		_, err = d.Submit(ctx, b)
		require.NoError(t, err)
		later = append(later, d)
	}
	assert.Contains(t, classes(later), "process/probe")
}

// TestAutoLeavesAFasterPoolThatFails: the pool measured faster that then
// fails the function batch after batch loses it to the other pool until
// it succeeds again.
func TestAutoLeavesAFasterPoolThatFails(t *testing.T) {
	r, _, pr := costRouter(t, 4*time.Millisecond, 1*time.Millisecond)
	ds := run(t, r, "f", 12)
	require.Equal(t, "process/faster", classes(ds)[len(ds)-1])
	pr.closedErr = pools.ErrWorkerCrashed
	ctx := context.Background()
	b := pools.Batch{Module: "m", Function: "f", Items: []any{1, 2}}
	var routes []string
	for range 6 {
		d, err := r.Decide(ctx, b)
		require.NoError(t, err)
		_, _ = d.Submit(ctx, b)
		routes = append(routes, d.Route.String())
	}
	assert.Equal(t, []string{"process", "process", "process", "thread", "thread", "thread"}, routes)
	d, err := r.Decide(ctx, b)
	require.NoError(t, err)
	assert.Contains(t, d.Reason, "the process pool failed its last 3 batches, so it runs on the thread pool")
}

// TestAutoTrustsSeedsItsMeasurementsAgreeWith: with both pools seeded and
// the seeds' pick measured here as the seeds said, the seeds' loser is not
// probed at once (each probe of a pool 4x slower costs), only by the
// periodic re-probes.
func TestAutoTrustsSeedsItsMeasurementsAgreeWith(t *testing.T) {
	r, th, _ := costRouter(t, 4*time.Millisecond, 1*time.Millisecond)
	r.CostSeeds = map[string]map[string]float64{"m.f": {"thread": 4e6, "process-gil": 1e6}}
	ds := run(t, r, "f", 64)
	probes := 0
	for i, d := range ds {
		if classes(ds)[i] == "thread/probe" {
			probes++
			assert.Contains(t, d.Reason, "re-measuring the thread pool", "a periodic re-probe, not a forced one")
			continue
		}
		require.Equal(t, "process/faster", classes(ds)[i], d.Reason)
	}
	// One periodic re-probe (the first comes probeMinGap decisions in,
	// none having been made before), not a probe every second batch.
	assert.Equal(t, 1, probes)
	assert.Equal(t, 1, submitted(th))
}

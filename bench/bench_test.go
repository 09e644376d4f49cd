package bench_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/slither-go/slither/bench"
	"github.com/slither-go/slither/internal/leaktest"
)

func TestMain(m *testing.M) {
	bench.CrashChild() // the thread pool's segfault runs in a child of this test binary
	goleak.VerifyTestMain(m, leaktest.Options()...)
}

// TestBenchQuickMatrix is the CI smoke test of `slither bench --quick`: every
// cell ran and the correctness columns say what they must; the copy floor,
// the distances to it, Auto's routing, the tracked ratios and the costs
// saved for Auto are there and consistent. Speeds are not checked.
func TestBenchQuickMatrix(t *testing.T) {
	rep, err := bench.Run(context.Background(), bench.Options{Quick: true})
	require.NoError(t, err)
	want := 0
	for _, w := range rep.Workloads {
		for _, ex := range bench.Executors {
			c, ok := rep.Cell(w, ex)
			if !bench.Measures(ex, w) {
				require.False(t, ok, "%s/%s is not part of the matrix, yet ran", w, ex)
				continue
			}
			want++
			require.True(t, ok, "%s/%s", w, ex)
			assert.Equal(t, w, c.Workload)
			// Only a build without cgo may skip a cell, and then only the
			// embedded pool's: with cgo, a thread pool that fails to start
			// is a failure, not a reason to pass.
			if !cgoBuild && strings.HasPrefix(ex, "thread") {
				require.True(t, c.Skipped, "built without cgo, yet the embedded pool ran %s", w)
				continue
			}
			require.False(t, c.Skipped, "%s/%s was skipped: %s", w, ex, c.Note)
			assert.True(t, strings.HasPrefix(c.Function, "slither._bench."), "%s/%s called %q", w, ex, c.Function)
			switch w {
			case "segfault":
				assert.Equal(t, ex == "process-ft" || ex == "process-gil", c.Correct, "%s survives a segfault? %s", ex, c.Note)
			case "shared-rmw":
				switch ex {
				case "py-threads": // an unguarded dict: lost updates depend on timing
				case "py-processes":
					assert.False(t, c.Correct, "processes share no dict")
				default:
					assert.True(t, c.Correct, "%s: %s (lost %d)", ex, c.Note, c.Lost)
					assert.Zero(t, c.Lost)
				}
			default:
				assert.True(t, c.Correct, "%s/%s: %s", w, ex, c.Note)
				assert.Positive(t, c.ItemsPerSec, "%s/%s", w, ex)
				assert.Positive(t, c.PeakRSS, "%s/%s", w, ex)
			}
		}
	}
	require.Len(t, rep.Cells, want)
	if cgoBuild {
		c, _ := rep.Cell("segfault", "thread")
		assert.Contains(t, c.Note, "the whole Go process died")
	}
	checkFloors(t, rep)
	checkAuto(t, rep)
	checkRatios(t, rep)
	checkCosts(t, rep)
	assert.NotEmpty(t, rep.Recommendations)

	var table bytes.Buffer
	require.NoError(t, rep.WriteTable(&table))
	for _, w := range rep.Workloads {
		assert.Contains(t, table.String(), w)
	}
	for _, s := range []string{"floor", "copy floors", "Auto sent", "one caller alone", "[target"} {
		assert.Contains(t, table.String(), s)
	}
	b, err := json.Marshal(rep)
	require.NoError(t, err)
	var back bench.Report
	require.NoError(t, json.Unmarshal(b, &back))
	assert.Equal(t, len(rep.Cells), len(back.Cells))
	assert.Equal(t, rep.Floors, back.Floors)
	assert.Equal(t, rep.Ratios, back.Ratios)

	png := filepath.Join(t.TempDir(), "bench.png")
	require.NoError(t, rep.Plot(png))
	st, err := os.Stat(png)
	require.NoError(t, err)
	assert.Positive(t, st.Size())
}

// checkFloors: the payload row has a measured floor (warm, and fresh
// allocation + copy), and each of its cells its distance to it; the Python
// executors' payload cells copied each way (the runner reports a result
// that is its source as wrong).
func checkFloors(t *testing.T, rep *bench.Report) {
	t.Helper()
	require.Len(t, rep.Floors, 1)
	f := rep.Floors[0]
	assert.Equal(t, "payload-1mb", f.Workload)
	assert.Equal(t, 1<<20, f.Bytes)
	assert.Equal(t, rep.Workers, f.Workers)
	assert.Positive(t, f.WarmItemsPerSec)
	assert.Positive(t, f.WarmPerItem)
	assert.Positive(t, f.FreshItemsPerSec)
	assert.Positive(t, f.FreshPerItem)
	for _, c := range rep.Cells {
		if c.Workload != f.Workload || c.Skipped {
			assert.Zero(t, c.XFloor, "%s/%s is not a payload cell", c.Workload, c.Executor)
			continue
		}
		assert.InEpsilon(t, f.WarmItemsPerSec/c.ItemsPerSec, c.XFloor, 1e-9, "%s", c.Executor)
		switch c.Executor {
		case "py-threads", "serial":
			assert.Contains(t, c.Note, "a copy each way")
		case "py-processes":
			assert.Contains(t, c.Note, "pickled")
		}
	}
}

// checkAuto: auto's cells say where the router sent every timed batch.
func checkAuto(t *testing.T, rep *bench.Report) {
	t.Helper()
	for _, c := range rep.Cells {
		if c.Executor != "auto" {
			assert.Empty(t, c.Routes, "%s/%s", c.Workload, c.Executor)
			continue
		}
		n := 0
		for k, v := range c.Routes {
			assert.Regexp(t, `^(thread|process)/[a-z-]+$`, k)
			n += v
		}
		assert.Equal(t, (c.Items+c.Batch-1)/c.Batch, n, "%s: every timed batch routed once: %v", c.Workload, c.Routes)
		assert.Contains(t, c.Note, "Auto sent")
		if !cgoBuild {
			assert.NotContains(t, c.Routes, "thread/thread-safe", "no embedded pool to send it to")
		}
	}
}

// checkRatios: every ratio issue #18 tracks is in the report (those of the
// embedded pool only with cgo), with a value, and a target where it set one.
func checkRatios(t *testing.T, rep *bench.Report) {
	t.Helper()
	got := map[string]bench.Ratio{}
	for _, q := range rep.Ratios {
		got[q.Name] = q
		assert.Positive(t, q.Value, q.Name)
		assert.NotEmpty(t, q.Unit, q.Name)
	}
	// name -> whether issue #18 sets a target for it
	names := map[string]bool{
		"no-op batch 64: process-ft pool vs ProcessPoolExecutor":  true,
		"no-op batch 64: process-gil pool vs ProcessPoolExecutor": false,
	}
	if cgoBuild {
		for n, target := range map[string]bool{
			"no-op batch 1: thread pool vs ThreadPoolExecutor":                                             true,
			"no-op batch 1: thread pool round trip p50, one caller":                                        true,
			"no-op batch 64: thread pool vs ThreadPoolExecutor":                                            true,
			"no-op batch 64: thread pool time per item":                                                    true,
			"payload-1mb: thread pool vs the warm copy floor":                                              true,
			"payload-1mb: thread pool vs issue #18's starting point (1.4k/s, full run 2026-11-23)":         true,
			"cpu: Auto vs the faster of its pools (thread, process-gil)":                                   true,
			"hash-1mb: Auto vs the faster of its pools (thread, process-gil)":                              true,
			"pure-Python CPU: thread pool, 2 workers vs 1":                                                 true,
			"pure-Python CPU: thread pool vs serial":                                                       false,
			"no-op batch 1: thread pool, Direct vs Dedicated (hand-off)":                                   false,
			"payload-1mb: thread pool with recycled result buffers vs the warm copy floor":                 true,
			"payload-1mb: thread pool with recycled result buffers vs issue #18's starting point (1.4k/s)": true,
			"no-op batch 64: thread pool, Direct vs Dedicated (hand-off)":                                  false,
			"pure-Python CPU: thread pool vs ProcessPoolExecutor":                                          false,
		} {
			names[n] = target
		}
		names[fmt.Sprintf("pure-Python CPU: thread pool, %d workers vs 1", rep.Workers)] = true
	}
	for n, target := range names {
		q, ok := got[n]
		if assert.True(t, ok, "ratio %q missing; have %v", n, rep.Ratios) {
			assert.Equal(t, target, q.Target != "", "%s: target %q", n, q.Target)
		}
	}
	if cgoBuild {
		q := got["payload-1mb: thread pool vs the warm copy floor"]
		c, _ := rep.Cell("payload-1mb", "thread")
		assert.Equal(t, c.XFloor, q.Value)
		assert.Equal(t, q.Value <= 2, q.Met)
	}
}

// checkCosts: Measured's costs are exactly the correct cells of the pools
// that seed Auto, one per function and pool: their service time per item.
func checkCosts(t *testing.T, rep *bench.Report) {
	t.Helper()
	m := rep.Measured()
	want := map[string]map[string]float64{}
	batch := map[[2]string]int{}
	for _, c := range rep.Cells {
		if c.Executor != "thread" && c.Executor != "process-ft" && c.Executor != "process-gil" {
			continue
		}
		if !c.Correct || c.Skipped || c.Items == 0 {
			continue
		}
		k := [2]string{c.Function, c.Executor}
		if b, seen := batch[k]; seen && b >= c.Batch {
			continue
		}
		batch[k] = c.Batch
		if want[c.Function] == nil {
			want[c.Function] = map[string]float64{}
		}
		assert.Positive(t, c.ServicePerItem, "%s/%s: the pools report service times", c.Workload, c.Executor)
		want[c.Function][c.Executor] = float64(c.ServicePerItem)
	}
	require.NotEmpty(t, want)
	assert.Equal(t, want, m.Costs)
	for f, byEx := range m.Costs {
		for ex, ns := range byEx {
			assert.Positive(t, ns, "%s on %s", f, ex)
		}
	}
	for _, f := range []string{"slither._bench.cpu", "slither._bench.digest", "slither._bench.noop"} {
		assert.Contains(t, m.Costs[f], "process-gil", f)
		if cgoBuild {
			assert.Contains(t, m.Costs[f], "thread", f)
		}
	}
	// no-op runs at batch 1 and 64: the cost is the batch-64 row's.
	c, _ := rep.Cell("noop-b64", "process-ft")
	assert.Equal(t, float64(c.ServicePerItem), m.Costs["slither._bench.noop"]["process-ft"])
}

// TestBenchMeasuredCosts: the costs saved for Auto come from the pools' correct
// cells only, their service time per item (else the worker time per item),
// the larger batch's where two rows call the same function.
func TestBenchMeasuredCosts(t *testing.T) {
	rep := &bench.Report{Workers: 2, Workloads: []string{"noop-b1", "noop-b64", "cpu"}, Cells: []bench.Cell{
		{Workload: "noop-b1", Executor: "thread", Function: "m.noop", Batch: 1, Items: 100, Seconds: 1, ItemsPerSec: 100, Correct: true},
		{Workload: "noop-b64", Executor: "thread", Function: "m.noop", Batch: 64, Items: 6400, Seconds: 1, ItemsPerSec: 6400, Correct: true,
			ServicePerItem: 90},
		{Workload: "cpu", Executor: "thread", Function: "m.cpu", Batch: 1, Items: 10, Seconds: 2, ItemsPerSec: 5, Correct: false},
		{Workload: "cpu", Executor: "process-gil", Function: "m.cpu", Batch: 1, Items: 10, Seconds: 1, ItemsPerSec: 10, Correct: true},
		{Workload: "cpu", Executor: "auto", Function: "m.cpu", Batch: 1, Items: 10, Seconds: 1, ItemsPerSec: 10, Correct: true},
		{Workload: "cpu", Executor: "py-threads", Function: "m.cpu", Batch: 1, Items: 10, Seconds: 1, ItemsPerSec: 10, Correct: true},
	}}
	m := rep.Measured()
	assert.Equal(t, map[string]map[string]float64{
		"m.noop": {"thread": 90},
		"m.cpu":  {"process-gil": 1e9 * 2 / 10},
	}, m.Costs)
	assert.Equal(t, map[string]string{"noop-b1": "thread", "noop-b64": "thread", "cpu": "process-gil"}, m.Winners)
}

func TestBenchOnlyUnknownWorkload(t *testing.T) {
	_, err := bench.Run(context.Background(), bench.Options{Quick: true, Only: []string{"nope"}})
	assert.ErrorContains(t, err, "names no workload")
}

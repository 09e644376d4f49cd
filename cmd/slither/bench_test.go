package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/slither-go/slither/bench"
	"github.com/slither-go/slither/capacity"
)

// TestBenchFromSaved renders a saved full run (--from): the table shows the
// payload row's copy floor and distances, Auto's routing and the tracked
// ratios with their targets, and the run's costs are saved for Auto's seeds.
func TestBenchFromSaved(t *testing.T) {
	t.Setenv("SLITHER_CACHE_DIR", t.TempDir())
	rep := bench.Report{Date: time.Date(2026, 11, 24, 0, 0, 0, 0, time.UTC), Machine: "test", Workers: 2,
		Workloads: []string{"cpu", "payload-1mb"},
		Cells: []bench.Cell{
			{Workload: "cpu", Executor: "thread", Function: "slither._bench.cpu", Batch: 1, Items: 10, Seconds: 1,
				ItemsPerSec: 10, Correct: true, ServicePerItem: 150 * time.Millisecond},
			{Workload: "cpu", Executor: "process-gil", Function: "slither._bench.cpu", Batch: 1, Items: 10, Seconds: 0.5,
				ItemsPerSec: 20, Correct: true, ServicePerItem: 80 * time.Millisecond},
			{Workload: "cpu", Executor: "auto", Function: "slither._bench.cpu", Batch: 1, Items: 10, Seconds: 0.52,
				ItemsPerSec: 19.2, Correct: true, Routes: map[string]int{"process/faster": 9, "thread/probe": 1},
				Note: "Auto sent 9 to process [faster: ...]; 1 to thread [probe: ...]"},
			{Workload: "payload-1mb", Executor: "thread", Function: "slither._bench.echo", Batch: 1, Items: 40, Seconds: 0.1,
				ItemsPerSec: 400, Correct: true, XFloor: 25, ServicePerItem: 2 * time.Millisecond},
		},
		Floors: []bench.Floor{{Workload: "payload-1mb", Bytes: 1 << 20, Workers: 2, WarmItemsPerSec: 10_000,
			WarmPerItem: 200 * time.Microsecond, FreshItemsPerSec: 900, FreshPerItem: 2 * time.Millisecond}},
		Ratios: []bench.Ratio{{Name: "payload-1mb: thread pool vs the warm copy floor", Unit: "x floor", Value: 25,
			Note: "400 items/s", Target: "<= 2x floor"}},
	}
	b, err := json.Marshal(rep)
	require.NoError(t, err)
	saved := filepath.Join(t.TempDir(), "run.json")
	require.NoError(t, os.WriteFile(saved, b, 0o600))

	var out bytes.Buffer
	cmd := newRoot()
	cmd.SetOut(&out)
	cmd.SetArgs([]string{"bench", "--from", saved})
	require.NoError(t, cmd.Execute())
	for _, s := range []string{"floor", "10.0k (900.0)", "400.0 (25.0x)", "copy floors", "fresh allocation + copy 900.0 items/s",
		"Auto sent 9 to process", "25.00x floor", "[target <= 2x floor: MISSED]"} {
		assert.Contains(t, out.String(), s)
	}

	path, err := capacity.MeasuredPath()
	require.NoError(t, err)
	m, ok, err := capacity.LoadMeasured(path)
	require.NoError(t, err)
	require.True(t, ok, "a full run's measurements are saved")
	assert.Equal(t, map[string]map[string]float64{
		"slither._bench.cpu":  {"thread": 150e6, "process-gil": 80e6},
		"slither._bench.echo": {"thread": 2e6},
	}, m.Costs)
	assert.Equal(t, "process-gil", m.Winners["cpu"], "auto is a choice, not an executor to recommend")
}

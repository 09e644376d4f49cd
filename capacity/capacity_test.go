package capacity_test

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/slither-go/slither/capacity"
	"github.com/slither-go/slither/internal/pooltest"
)

func TestHost(t *testing.T) {
	c := capacity.Cores()
	assert.Positive(t, c.Online)
	assert.Positive(t, c.Usable)
	assert.LessOrEqual(t, c.Usable, c.Online)
	m := capacity.Memory()
	assert.Positive(t, m.Total)
	assert.LessOrEqual(t, m.Available, m.Total)
}

func TestCapacityModel(t *testing.T) {
	assert.Equal(t, 2, capacity.ThreadCPU(4, 2, false))
	assert.Equal(t, 1, capacity.ThreadCPU(4, 2, true), "with the GIL on, one at a time")
	assert.Equal(t, 3, capacity.ThreadCPU(3, 16, false))
	assert.Equal(t, 8, capacity.ProcessCPU(2, 4, 16, false))
	assert.Equal(t, 2, capacity.ProcessCPU(2, 4, 16, true), "threads of a GIL worker take turns")
	assert.Equal(t, 16, capacity.ProcessCPU(8, 4, 16, false))
	assert.Zero(t, capacity.ProcessCPU(0, 1, 4, false))
}

func TestBatchFor(t *testing.T) {
	// a = 1ms, b = 100us: n = 1e-3 x 0.95 / (0.05 x 1e-4) = 190.
	assert.Equal(t, 190, capacity.BatchFor(1e-3, 1e-4, 0.05))
	assert.Equal(t, 190, capacity.BatchFor(1e-3, 1e-4, 0), "0 means the 5% default")
	assert.Equal(t, 1, capacity.BatchFor(0, 1, 0), "no overhead: no need to batch")
	assert.Equal(t, 1, capacity.BatchFor(1e-6, 1, 0))
	assert.Greater(t, capacity.BatchFor(1, 0, 0), 1_000_000, "free items: as large as allowed")
}

func TestProbeInterpreters(t *testing.T) {
	ft := capacity.Probe(context.Background(), pooltest.Python())
	require.Empty(t, ft.Error)
	assert.True(t, ft.FreeThreaded)
	assert.False(t, ft.GILEnabled)
	assert.Regexp(t, `^3\.1[3-9]`, ft.Version)

	gil := capacity.Probe(context.Background(), "/usr/bin/python3")
	require.Empty(t, gil.Error)
	assert.False(t, gil.FreeThreaded)
	assert.True(t, gil.GILEnabled)

	t.Setenv("PYTHON_GIL", "1")
	forced := capacity.Probe(context.Background(), pooltest.Python())
	assert.True(t, forced.FreeThreaded)
	assert.True(t, forced.GILEnabled, "PYTHON_GIL=1 turns it on")
	assert.Equal(t, "1", forced.PythonGIL)

	bad := capacity.Probe(context.Background(), "/no/such/python")
	assert.Contains(t, bad.Error, "no such file")
	assert.NotEmpty(t, capacity.Candidates())
}

func TestCheckModule(t *testing.T) {
	c := capacity.CheckModule(context.Background(), pooltest.Python(), "json")
	require.Empty(t, c.Error)
	assert.True(t, c.Importable)
	assert.False(t, c.GILAfter)
	// Whether two threads scaled is a timing on a shared machine: the test
	// checks that it was measured, not its value (see slither doctor).
	assert.Positive(t, c.Speedup)
	assert.Contains(t, []string{"keeps the GIL off, scales", "keeps the GIL off, does not scale"}, c.Verdict())

	c = capacity.CheckModule(context.Background(), pooltest.Python(), "no_such_module_xyz")
	assert.False(t, c.Importable)
	assert.Contains(t, c.Error, "ModuleNotFoundError")
	assert.Equal(t, "not importable", c.Verdict())
}

func TestReportWarningsAndJSON(t *testing.T) {
	r := &capacity.Report{
		CPU:      capacity.CPU{Online: 8, Quota: 2, Usable: 2, GOMAXPROCS: 8},
		Embedded: capacity.Embedded{Available: true, FreeThreaded: true, GILEnabled: true, EnabledBy: []string{"_fastmath"}, CallOverhead: 10 * time.Microsecond},
		Interpreters: []capacity.Interpreter{
			{Path: "/x/python3.13t", Version: "3.13.5", FreeThreaded: true},
			{Path: "/usr/bin/python3", Version: "3.11.2", GILEnabled: true},
		},
		ProcessOverhead: map[string]time.Duration{"/x/python3.13t": 40 * time.Microsecond},
		Checks:          []capacity.ModuleCheck{{Module: "numpy", Interpreter: "/x/python3.13t", Importable: true, GILAfter: true, EnabledBy: "numpy.core._multiarray_umath"}},
	}
	r.Plan()
	require.Len(t, r.Pools, 3)
	assert.Equal(t, 1, r.Pools[0].CPU, "the GIL is on in the embedded pool")
	assert.Equal(t, 2, r.Pools[1].Workers, "sized to the cgroup quota")
	var text bytes.Buffer
	require.NoError(t, r.WriteText(&text))
	for _, want := range []string{
		"GIL re-enabled by module _fastmath: CPU work will run in processes",
		"a cgroup quota of 2 CPUs limits this process below its 8 online CPUs",
		"importing numpy on /x/python3.13t re-enables the GIL (module numpy.core._multiarray_umath)",
		"10µs", "thread", "process-3.13.5t",
	} {
		assert.Contains(t, text.String(), want)
	}
	// 10us overhead, 1us per item: 190; 40us: 760.
	assert.Equal(t, map[string]int{"thread": 190, "process-3.13.5t": 760}, r.BatchAdvice[0].Sizes)
	b, err := json.Marshal(r)
	require.NoError(t, err)
	assert.Contains(t, string(b), `"enabled_by":["_fastmath"]`)
}

func TestMeasuredFeedsThePlan(t *testing.T) {
	path := filepath.Join(t.TempDir(), "measured.json")
	_, ok, err := capacity.LoadMeasured(path)
	require.NoError(t, err)
	assert.False(t, ok)
	m := capacity.Measured{Date: time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC), Winners: map[string]string{"cpu": "process-gil", "hash-1mb": "thread"},
		CallOverhead: map[string]time.Duration{"thread": 20 * time.Microsecond, "process-gil": 80 * time.Microsecond}}
	require.NoError(t, m.Save(path))
	got, ok, err := capacity.LoadMeasured(path)
	require.NoError(t, err)
	require.True(t, ok)
	r := &capacity.Report{CPU: capacity.CPU{Online: 2, Usable: 2, GOMAXPROCS: 2}, Measured: &got,
		Embedded:     capacity.Embedded{Available: true, FreeThreaded: true},
		Interpreters: []capacity.Interpreter{{Path: "/usr/bin/python3", Version: "3.11.2", GILEnabled: true}}}
	r.Plan()
	require.Len(t, r.Pools, 2)
	assert.Contains(t, r.Pools[0].Note, "fastest here (slither bench 2026-11-23) for hash-1mb")
	assert.Contains(t, r.Pools[1].Note, "for cpu")
	assert.Equal(t, 80*time.Microsecond, r.Pools[1].CallOverhead, "the measured overhead, when doctor did not time one")
	assert.Equal(t, 380, r.BatchAdvice[0].Sizes["thread"], "batch advice from the measured 20 us")
}

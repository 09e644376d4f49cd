//go:build cgo

package pools_test

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/slither-go/slither/capacity"
	"github.com/slither-go/slither/internal/gilext"
	"github.com/slither-go/slither/internal/pooltest"
	"github.com/slither-go/slither/pools"
	"github.com/slither-go/slither/pools/process"
	"github.com/slither-go/slither/pools/thread"
	"github.com/slither-go/slither/telemetry"
)

const gilChildEnv = "SLITHER_TEST_GIL_CHILD_DIR"

// TestImportReenablingGIL builds a C extension that does not declare
// Py_mod_gil and checks, in a child process (the GIL cannot be turned off
// again in a process), what happens when the thread pool imports it.
func TestImportReenablingGIL(t *testing.T) {
	if dir := os.Getenv(gilChildEnv); dir != "" {
		gilChild(t, dir)
		return
	}
	dir := t.TempDir()
	gilext.Build(t, pooltest.Python(), dir)
	cmd := exec.Command(os.Args[0], "-test.run=^TestImportReenablingGIL$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), gilChildEnv+"="+dir)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "child:\n%s", out)
	assert.Contains(t, string(out), "--- PASS: TestImportReenablingGIL")
	assert.Contains(t, string(out), "has been enabled to load module '_nogil_ext'", "CPython's own warning still shows")
}

func gilChild(t *testing.T, dir string) {
	ctx := context.Background()
	bus := telemetry.New(nil)
	var mu sync.Mutex
	var changes []telemetry.Metadata
	require.NoError(t, bus.Attach("gil", func(_ telemetry.Event, _ telemetry.Measurements, md telemetry.Metadata) {
		mu.Lock()
		changes = append(changes, md)
		mu.Unlock()
	}, telemetry.RuntimeGILChanged))

	th, err := thread.New(thread.Options{Workers: 2, Paths: []string{"testdata", dir}, Telemetry: bus})
	require.NoError(t, err)
	defer th.Close(ctx)
	abs, err := filepath.Abs("testdata")
	require.NoError(t, err)
	pr, err := process.New(ctx, process.Options{Workers: 1, Python: pooltest.Python(), Paths: []string{abs, dir},
		Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	defer pr.Close(ctx)
	r := &pools.Router{Thread: th, Process: pr, Telemetry: bus}

	// Before: the GIL is off, so Auto sends marked functions to threads.
	require.False(t, th.GILEnabled())
	d, err := r.Decide(ctx, pools.Batch{Module: "routetest", Function: "cpu"})
	require.NoError(t, err)
	assert.Equal(t, pools.Thread, d.Route, d.Reason)
	d, err = r.Decide(ctx, pools.Batch{Module: "routetest", Function: "plain"})
	require.NoError(t, err)
	assert.Equal(t, pools.Process, d.Route)
	assert.Contains(t, d.Reason, "routetest.plain is not declared thread-safe")

	// A marked module that would turn the GIL on is found out in a worker
	// process: it is never imported here, and the GIL stays off.
	d, err = r.Decide(ctx, pools.Batch{Module: "routetest2", Function: "cpu"})
	require.NoError(t, err)
	assert.Equal(t, pools.Process, d.Route)
	assert.Equal(t, "importing routetest2 in a free-threaded worker process turned the GIL on (module _nogil_ext): it is not imported into this process", d.Reason)
	assert.False(t, th.GILEnabled(), "the embedded GIL is still off")
	out, err := r.Submit(ctx, pools.Batch{Module: "routetest2", Function: "cpu", Items: []any{4}})
	require.NoError(t, err)
	assert.Equal(t, []any{int64(8)}, out)
	assert.False(t, th.GILEnabled())
	assert.Empty(t, th.GILChanges())

	// Importing the extension through the thread pool anyway turns the GIL on.
	out, err = r.Submit(ctx, pools.Batch{Module: "routetest", Function: "load_ext", Items: []any{0}, Route: pools.Thread})
	require.NoError(t, err)
	assert.Equal(t, []any{int64(42)}, out)
	assert.True(t, th.GILEnabled(), "the pool saw the GIL turn on")
	ch := th.GILChanges()
	require.Len(t, ch, 1)
	assert.Equal(t, "_nogil_ext", ch[0].Module)
	assert.Equal(t, "routetest", ch[0].During)
	mu.Lock()
	require.Len(t, changes, 1)
	assert.Equal(t, "_nogil_ext", changes[0]["module"], "runtime.gil_changed names the module")
	assert.Equal(t, true, changes[0]["enabled"])
	mu.Unlock()

	// After: Auto sends even marked CPU work to processes, and says why.
	d, err = r.Decide(ctx, pools.Batch{Module: "routetest", Function: "cpu"})
	require.NoError(t, err)
	assert.Equal(t, pools.Process, d.Route)
	assert.Equal(t, "the GIL is enabled in the embedded interpreter (re-enabled by module _nogil_ext)", d.Reason)
	out, err = r.Submit(ctx, pools.Batch{Module: "routetest", Function: "cpu", Items: []any{21}})
	require.NoError(t, err)
	assert.Equal(t, []any{int64(42)}, out)

	// The doctor's report names the module.
	emb, err := th.Describe(ctx, 0)
	require.NoError(t, err)
	rep := capacity.NewReport()
	rep.Embedded = emb
	rep.Plan()
	var text bytes.Buffer
	require.NoError(t, rep.WriteText(&text))
	assert.Contains(t, text.String(), "GIL re-enabled by module _nogil_ext: CPU work will run in processes")

	// And its --check, in a fresh interpreter, classifies the module.
	c := capacity.CheckModule(ctx, pooltest.Python(), "_nogil_ext", dir)
	assert.Equal(t, "re-enables the GIL", c.Verdict())
	assert.Equal(t, "_nogil_ext", c.EnabledBy)
}

// TestMarksAreNotReadInThisProcess: with a process pool whose Python has
// the GIL (it cannot tell what an import does to a free-threaded one), Auto
// reads a mark in a short-lived free-threaded subprocess. A marked module
// that turns the GIL on is never imported here, the decision says why and
// warns, and the GIL of the Go process stays off. In a child process: a
// failure would leave the GIL on for the rest of the binary.
func TestMarksAreNotReadInThisProcess(t *testing.T) {
	if dir := os.Getenv(gilChildEnv); dir != "" {
		marksChild(t, dir)
		return
	}
	gil := capacity.Probe(context.Background(), "/usr/bin/python3")
	if gil.Error != "" || !gil.GILEnabled {
		t.Skip("needs a Python with the GIL at /usr/bin/python3")
	}
	dir := t.TempDir()
	gilext.Build(t, pooltest.Python(), dir)
	cmd := exec.Command(os.Args[0], "-test.run=^TestMarksAreNotReadInThisProcess$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), gilChildEnv+"="+dir)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "child:\n%s", out)
	assert.Contains(t, string(out), "--- PASS: TestMarksAreNotReadInThisProcess")
}

func marksChild(t *testing.T, dir string) {
	ctx := context.Background()
	th, err := thread.New(thread.Options{Workers: 2, Paths: []string{"testdata", dir}})
	require.NoError(t, err)
	defer th.Close(ctx)
	abs, err := filepath.Abs("testdata")
	require.NoError(t, err)
	pr, err := process.New(ctx, process.Options{Workers: 1, Python: "/usr/bin/python3", Paths: []string{abs},
		Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	defer pr.Close(ctx)
	require.False(t, pr.FreeThreaded())
	var logs bytes.Buffer
	r := &pools.Router{Thread: th, Process: pr, Paths: []string{"testdata", dir}, Logger: slog.New(slog.NewTextHandler(&logs, nil))}
	emb, err := th.Describe(ctx, 0)
	require.NoError(t, err)

	require.False(t, th.GILEnabled())
	want := "importing routetest2 in a free-threaded subprocess (" + emb.Executable +
		") turned the GIL on (module _nogil_ext): it is not imported into this process"
	for range 2 {
		d, err := r.Decide(ctx, pools.Batch{Module: "routetest2", Function: "cpu"})
		require.NoError(t, err)
		assert.Equal(t, pools.Process, d.Route, d.Reason)
		assert.Equal(t, want, d.Reason)
		assert.Equal(t, want, d.Warning)
	}
	assert.Equal(t, 1, strings.Count(logs.String(), "routetest2.cpu runs in processes"), logs.String())

	// Nothing was imported here: the GIL is off, and the first decision
	// for a marked module says so truthfully.
	_, err = th.Submit(ctx, pools.Batch{Module: "routetest", Function: "cpu", Items: []any{1}}) // a GIL check after a first batch
	require.NoError(t, err)
	assert.False(t, th.GILEnabled(), "the embedded GIL is still off")
	assert.Empty(t, th.GILChanges())
	d, err := r.Decide(ctx, pools.Batch{Module: "routetest", Function: "cpu"})
	require.NoError(t, err)
	assert.Equal(t, pools.Thread, d.Route)
	assert.Equal(t, "routetest.cpu is declared thread-safe (@slither.thread_safe) and the GIL is off", d.Reason)
}

//go:build cgo

package engine_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/slither-go/slither/dispatch"
	"github.com/slither-go/slither/engine"
	"github.com/slither-go/slither/internal/gilext"
	"github.com/slither-go/slither/internal/pooltest"
	"github.com/slither-go/slither/internal/pyvenv"
	"github.com/slither-go/slither/pools"
)

// venvChildEnv carries, to the re-executed test binary, the directory
// holding the venvs and which check to run there ("run" or "mismatch"):
// the embedded interpreter starts once per process, with one venv.
const (
	venvChildEnv  = "SLITHER_TEST_ENGINE_VENV"
	venvChildMode = "SLITHER_TEST_ENGINE_VENV_MODE"
)

// The user's module, installed into the free-threaded venv: it needs a
// pure-Python package (reached through a .pth file) and a C extension that
// declares Py_mod_gil not used, both only in the venv.
const venvWork = `import os, sys
import slither, purepkg, _freeth_ext

@slither.thread_safe
def work(batch):
    return [{"double": purepkg.double(x), "sum": _freeth_ext.add(x, 100), "prefix": sys.prefix,
             "base_prefix": sys.base_prefix, "pid": os.getpid(), "gil": sys._is_gil_enabled(),
             "pool": slither.context().pool} for x in batch]
`

const gilWork = `import sys

def where(batch):
    return [{"prefix": sys.prefix, "gil": getattr(sys, "_is_gil_enabled", lambda: True)()} for _ in batch]
`

// TestVenvRunsOnBothRoutes: a venv made from the free-threaded build, with
// a pure-Python package and a free-threading C extension installed, backs
// the embedded interpreter (Auto picks the thread route and the GIL stays
// off) and the default process pool; a GIL venv backs a GIL pool; a second
// engine naming another venv, and a venv from another Python, fail Start.
func TestVenvRunsOnBothRoutes(t *testing.T) {
	if root := os.Getenv(venvChildEnv); root != "" {
		switch os.Getenv(venvChildMode) {
		case "mismatch":
			venvMismatchChild(t, root)
		default:
			venvChild(t, root)
		}
		return
	}
	root := t.TempDir()
	site := makeVenv(t, pooltest.Python(), filepath.Join(root, "venv"))
	gilext.BuildFreeThreaded(t, filepath.Join(root, "venv", "bin", "python"), site)
	src := filepath.Join(root, "src", "purepkg")
	require.NoError(t, os.MkdirAll(src, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(src, "__init__.py"), []byte("def double(x):\n    return 2 * x\n"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(site, "purepkg.pth"), []byte(filepath.Dir(src)+"\n"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(site, "venvwork.py"), []byte(venvWork), 0o644))

	gilPython, err := exec.LookPath("python3")
	require.NoError(t, err, "a GIL python3 for the GIL venv")
	gilSite := makeVenv(t, gilPython, filepath.Join(root, "gilvenv"))
	require.NoError(t, os.WriteFile(filepath.Join(gilSite, "gilwork.py"), []byte(gilWork), 0o644))

	for _, mode := range []string{"run", "mismatch"} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestVenvRunsOnBothRoutes$", "-test.count=1", "-test.v", "-test.timeout=3m")
		cmd.Env = append(os.Environ(), venvChildEnv+"="+root, venvChildMode+"="+mode)
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "child %s:\n%s", mode, out)
		assert.Contains(t, string(out), "--- PASS: TestVenvRunsOnBothRoutes", mode)
	}
}

// makeVenv creates a venv without pip (packages go in by copying) and
// returns its site-packages.
func makeVenv(t *testing.T, python, dir string) string {
	t.Helper()
	out, err := exec.Command(python, "-m", "venv", "--without-pip", dir).CombinedOutput()
	require.NoError(t, err, "%s -m venv: %s", python, out)
	sites, err := filepath.Glob(filepath.Join(dir, "lib", "python3*", "site-packages"))
	require.NoError(t, err)
	require.Len(t, sites, 1)
	return sites[0]
}

func venvChild(t *testing.T, root string) {
	ctx := context.Background()
	venv, gilVenv := filepath.Join(root, "venv"), filepath.Join(root, "gilvenv")
	eng, err := engine.Start(ctx, engine.Config{
		Venv:   venv,
		Thread: engine.ThreadConfig{Workers: 2, Required: true},
		Process: map[string]engine.ProcessConfig{
			"default": {Workers: 1},
			"gil":     {Workers: 1, Python: gilVenv}, // a venv directory stands for its bin/python
		},
		Logger: quiet(),
	})
	require.NoError(t, err)
	defer func() { require.NoError(t, eng.Close(ctx)) }()

	base, err := filepath.EvalSymlinks(pooltest.Python())
	require.NoError(t, err)
	home := filepath.Dir(filepath.Dir(base))
	for _, tc := range []struct {
		route     pools.Route
		pool      string
		inProcess bool
	}{{pools.Auto, "thread", true}, {pools.Process, "process", false}} {
		out, err := eng.Dispatch(ctx, dispatch.Slice([]int{1, 2, 3}), engine.DispatchOptions{
			Options: dispatch.Options{Module: "venvwork", Function: "work", Route: tc.route}})
		require.NoError(t, err, tc.pool)
		require.Len(t, out.Results, 3)
		for i, r := range out.Results {
			require.NoError(t, r.Err)
			m, ok := r.Value.(map[string]any)
			require.True(t, ok, "result %#v", r.Value)
			assert.EqualValues(t, 2*(i+1), m["double"], "%s: the pure-Python package from the venv (.pth)", tc.pool)
			assert.EqualValues(t, i+1+100, m["sum"], "%s: the C extension from the venv", tc.pool)
			assert.Equal(t, venv, m["prefix"], "%s: sys.prefix is the venv", tc.pool)
			assert.Equal(t, home, m["base_prefix"], "%s: sys.base_prefix is the free-threaded build", tc.pool)
			assert.Equal(t, false, m["gil"], "%s: the extension leaves the GIL off", tc.pool)
			assert.Equal(t, tc.pool, m["pool"], "Auto picks the thread route for a thread-safe function")
			assert.Equal(t, tc.inProcess, m["pid"] == any(int64(os.Getpid())), "%s: pid %v", tc.pool, m["pid"])
		}
	}
	gil, ok := eng.ThreadPool().(interface{ GILEnabled() bool })
	require.True(t, ok)
	assert.False(t, gil.GILEnabled(), "the embedded interpreter's GIL stays off")

	out, err := eng.Dispatch(ctx, dispatch.Slice([]int{1}), engine.DispatchOptions{Pool: "gil",
		Options: dispatch.Options{Module: "gilwork", Function: "where", Route: pools.Process}})
	require.NoError(t, err)
	require.NoError(t, out.Results[0].Err)
	m := out.Results[0].Value.(map[string]any)
	assert.Equal(t, gilVenv, m["prefix"], "the GIL pool runs in the GIL venv")
	assert.Equal(t, true, m["gil"])

	// The interpreter is once per process: another venv is refused, not ignored.
	_, err = engine.Start(ctx, engine.Config{Venv: gilVenv, Logger: quiet()})
	require.ErrorIs(t, err, pyvenv.ErrMismatch)
	assert.ErrorContains(t, err, "already runs with "+venv)
}

// venvMismatchChild starts the embedded interpreter with a venv made from
// another Python (the GIL python3): Start fails naming both, even though
// the thread pool is not required.
func venvMismatchChild(t *testing.T, root string) {
	gilVenv := filepath.Join(root, "gilvenv")
	_, err := engine.Start(context.Background(), engine.Config{Venv: gilVenv, Logger: quiet()})
	require.ErrorIs(t, err, pyvenv.ErrMismatch)
	assert.ErrorContains(t, err, "engine: venv: ")
	assert.ErrorContains(t, err, "made from the Python in ")
	assert.ErrorContains(t, err, "recreate it with `")
}

package capacity_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/slither-go/slither/capacity"
	"github.com/slither-go/slither/internal/pooltest"
)

// TestVenvsInTheReport: a venv made from the embedded interpreter backs
// the thread and process pools; one made from another Python is flagged
// (a warning with the fix) and planned as a process pool of its own; each
// venv's pool is named after it.
func TestVenvsInTheReport(t *testing.T) {
	python := pooltest.Python()
	base, err := filepath.EvalSymlinks(python)
	require.NoError(t, err)
	root := t.TempDir()
	good, bad := filepath.Join(root, "good"), filepath.Join(root, "other")
	out, err := exec.Command(python, "-m", "venv", "--without-pip", good).CombinedOutput()
	require.NoError(t, err, "%s", out)
	require.NoError(t, os.MkdirAll(bad, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(bad, "pyvenv.cfg"), []byte("home = /usr/bin\nversion = 3.11.2\n"), 0o644))

	emb := capacity.Embedded{Available: true, FreeThreaded: true, Executable: base, Version: "3.13.5 experimental free-threading build"}
	r := capacity.NewReport()
	r.Embedded = emb
	r.Venvs = []capacity.VenvUse{capacity.CheckVenv(good, emb), capacity.CheckVenv(bad, emb), capacity.CheckVenv(filepath.Join(root, "none"), emb)}
	assert.Empty(t, r.Venvs[0].Mismatch)
	assert.Equal(t, "the thread pool and the process pools (engine.Config.Venv)", r.Venvs[0].Pools)
	assert.Contains(t, r.Venvs[1].Mismatch, "made from the Python in /usr/bin")
	assert.Contains(t, r.Venvs[2].Error, "not a venv")
	r.Interpreters = []capacity.Interpreter{{Path: filepath.Join(good, "bin", "python"), Version: "3.13.5", FreeThreaded: true}}
	r.Plan()

	var names []string
	for _, p := range r.Pools {
		names = append(names, p.Name)
	}
	assert.Equal(t, []string{"thread", "process-3.13.5t@good"}, names)
	assert.Contains(t, r.Pools[0].Note, "with engine.Config.Venv "+good)
	assert.Contains(t, r.Pools[1].Note, "venv "+good+": ")
	var b bytes.Buffer
	require.NoError(t, r.WriteText(&b))
	assert.Contains(t, b.String(), "Virtualenvs\n  "+good+" (from ")
	assert.Contains(t, b.String(), bad+" (from /usr/bin, Python 3.11.2) — MISMATCH")
	assert.Contains(t, b.String(), "! virtualenv does not match the Python using it: venv "+bad)
	assert.Contains(t, b.String(), "(as engine.Config.Venv the engine does not start; it can still back a process pool of its own")
}

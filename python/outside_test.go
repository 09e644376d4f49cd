package python_test

import (
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/slither-go/slither/internal/pooltest"
	"github.com/slither-go/slither/python"
)

// systemPython is a GIL build the package must also work under (Debian's
// 3.11 here).
const systemPython = "/usr/bin/python3"

// TestPackageOutsideAPool runs python/tests (unittest) with the package on
// PYTHONPATH: a user module that imports slither imports and runs in plain
// Python, on the free-threaded build and on a GIL build.
func TestPackageOutsideAPool(t *testing.T) {
	pkg, err := filepath.Abs(".")
	require.NoError(t, err)
	for name, py := range map[string]string{"free-threaded": pooltest.Python(), "gil": systemPython} {
		t.Run(name, func(t *testing.T) {
			needPython(t, py)
			out, err := plainPython(t, py, pkg, "-m", "unittest", "discover", "-v", "-s", filepath.Join(pkg, "tests"))
			require.NoError(t, err, "%s", out)
			assert.Contains(t, out, "OK")
			assert.NotContains(t, out, "skipped")
		})
	}
}

// TestPackageInstallsWithPip installs python/ (pyproject.toml) into a fresh
// venv offline (pip --no-index, setuptools from the system: nothing is
// fetched) and runs python/tests against the installed copy.
func TestPackageInstallsWithPip(t *testing.T) {
	needPython(t, systemPython)
	if out, err := plainPython(t, systemPython, "", "-c", "import ensurepip, setuptools, venv"); err != nil {
		t.Fatalf("%s cannot build offline here (needs venv, ensurepip and setuptools; make python installs python3-venv and python3-setuptools): %s", systemPython, out)
	}
	// A copy, since setuptools writes build/ and *.egg-info beside the sources.
	src := filepath.Join(t.TempDir(), "src")
	require.NoError(t, os.MkdirAll(src, 0o700))
	require.NoError(t, fs.WalkDir(python.FS, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(src, p), 0o700)
		}
		b, err := python.FS.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(src, p), b, 0o600)
	}))
	meta, err := os.ReadFile("pyproject.toml")
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(src, "pyproject.toml"), meta, 0o600))

	venv := filepath.Join(t.TempDir(), "venv")
	out, err := plainPython(t, systemPython, "", "-m", "venv", "--system-site-packages", venv)
	require.NoError(t, err, "%s", out)
	vpy := filepath.Join(venv, "bin", "python")
	out, err = plainPython(t, vpy, "", "-m", "pip", "install", "--no-build-isolation", "--no-index", "--no-deps",
		"--disable-pip-version-check", "--no-cache-dir", src)
	require.NoError(t, err, "%s", out)

	out, err = plainPython(t, vpy, "", "-c", "import slither; print(slither.__file__)")
	require.NoError(t, err, "%s", out)
	assert.True(t, strings.HasPrefix(strings.TrimSpace(out), venv), "imported from the venv: %s", out)
	tests, err := filepath.Abs("tests")
	require.NoError(t, err)
	out, err = plainPython(t, vpy, "", "-m", "unittest", "discover", "-v", "-s", tests)
	require.NoError(t, err, "%s", out)
	assert.Contains(t, out, "OK")
}

func needPython(t *testing.T, py string) {
	t.Helper()
	if _, err := exec.LookPath(py); err != nil {
		t.Fatalf("no %s here (make python installs Debian's python3): %v", py, err)
	}
}

// plainPython runs py as a user would outside any pool, from an empty
// working directory (so nothing is imported from the checkout by chance),
// with path as its PYTHONPATH and no other PYTHON* variable, and returns
// its combined output.
func plainPython(t *testing.T, py, path string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), py, args...)
	cmd.Dir = t.TempDir()
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PYTHON") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "PYTHONDONTWRITEBYTECODE=1")
	if path != "" {
		cmd.Env = append(cmd.Env, "PYTHONPATH="+path)
	}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

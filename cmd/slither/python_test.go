package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/slither-go/slither/internal/pybuild"
)

func runCLI(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := newRoot()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(context.Background())
	return out.String(), err
}

func TestPythonEnvAndPath(t *testing.T) {
	// The variables are the Makefile's; flags override them.
	t.Setenv(pybuild.EnvPython, "")
	t.Setenv(pybuild.EnvVersion, "")
	prefix := fakePrefix(t)
	t.Setenv(pybuild.EnvPrefix, prefix)

	out, err := runCLI(t, "python", "env", "--py-version", "3.14")
	require.NoError(t, err, out)
	require.Equal(t, "export PKG_CONFIG_PATH='"+prefix+"/lib/pkgconfig'\"${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}\"\n"+
		"export CGO_LDFLAGS='-Wl,-rpath,"+prefix+"/lib'\"${CGO_LDFLAGS:+ $CGO_LDFLAGS}\"\n"+
		"export CGO_ENABLED=1\n", out)

	out, err = runCLI(t, "python", "env", "--py-version", "3.14", "--shell", "make")
	require.NoError(t, err, out)
	require.Contains(t, out, "export CGO_LDFLAGS := -Wl,-rpath,"+prefix+"/lib $(CGO_LDFLAGS)\n")

	out, err = runCLI(t, "python", "path", "--py-version", "3.14")
	require.NoError(t, err, out)
	require.Equal(t, prefix+"/bin/python3.14t\n", out)

	// 3.13 is not in this prefix: the error says how to install it.
	_, err = runCLI(t, "python", "env")
	require.ErrorContains(t, err, pybuild.InstallCommand)
	_, err = runCLI(t, "python", "path")
	require.ErrorContains(t, err, "no free-threaded CPython 3.13 installed in "+prefix)

	_, err = runCLI(t, "python", "env", "--py-version", "3.14", "--shell", "tcsh")
	require.ErrorContains(t, err, `unknown shell "tcsh"`)
}

func TestPythonPathPackage(t *testing.T) {
	t.Setenv("SLITHER_CACHE_DIR", t.TempDir())
	out, err := runCLI(t, "python", "path", "--package")
	require.NoError(t, err, out)
	dir := strings.TrimSpace(out)
	_, err = os.Stat(filepath.Join(dir, "slither", "__init__.py"))
	require.NoError(t, err, "python path --package names a directory holding the slither package")
}

// fakePrefix is an install prefix holding the two files Locate checks for
// a 3.14t build, empty.
func fakePrefix(t *testing.T) string {
	t.Helper()
	prefix := filepath.Join(t.TempDir(), "ft")
	for _, f := range []string{"bin/python3.14t", "lib/pkgconfig/python-3.14t-embed.pc"} {
		p := filepath.Join(prefix, f)
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, nil, 0o755))
	}
	return prefix
}

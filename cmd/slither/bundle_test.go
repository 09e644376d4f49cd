package main

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/slither-go/slither/internal/pybuild"
)

// TestPythonBundleEnv: `python bundle --env DIR` prints the build's
// PKG_CONFIG_PATH and an rpath of the literal $ORIGIN/DIR/lib, honouring
// the python group's flags.
func TestPythonBundleEnv(t *testing.T) {
	t.Setenv(pybuild.EnvPython, "")
	t.Setenv(pybuild.EnvVersion, "")
	prefix := fakePrefix(t)
	out, err := runCLI(t, "python", "bundle", "--env", "pyrt", "--prefix", prefix, "--py-version", "3.14")
	require.NoError(t, err, out)
	require.Equal(t, "export PKG_CONFIG_PATH='"+prefix+"/lib/pkgconfig'\"${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}\"\n"+
		"export CGO_LDFLAGS='-Wl,-rpath,$ORIGIN/pyrt/lib'\"${CGO_LDFLAGS:+ $CGO_LDFLAGS}\"\n"+
		"export CGO_ENABLED=1\n", out)

	_, err = runCLI(t, "python", "bundle", "--env", "--venv", "v", "pyrt", "--prefix", prefix, "--py-version", "3.14")
	require.ErrorContains(t, err, "--venv is for laying out a bundle")
	_, err = runCLI(t, "python", "bundle", "--env", "/abs", "--prefix", prefix, "--py-version", "3.14")
	require.ErrorContains(t, err, "must be relative")
	_, err = runCLI(t, "python", "bundle")
	require.Error(t, err)
}

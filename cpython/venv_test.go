//go:build cgo

package cpython_test

import (
	"os"
	"os/exec"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/slither-go/slither/cpython"
	"github.com/slither-go/slither/internal/pyvenv"
)

const badVenvChildEnv = "SLITHER_TEST_BAD_VENV_CHILD"

// A wrong venv is found before CPython starts, so it is not for good: the
// process can start the interpreter once the config is fixed. In a child
// process, whose interpreter has not started yet.
func TestBadVenvDoesNotPoisonInit(t *testing.T) {
	if os.Getenv(badVenvChildEnv) != "" {
		_, err := cpython.Init(cpython.Config{Venv: t.TempDir()}) // no pyvenv.cfg
		require.ErrorIs(t, err, pyvenv.ErrInvalid)
		r, err := cpython.Init(cpython.Config{})
		require.NoError(t, err, "the first error was not CPython's: a fixed config starts it")
		require.NoError(t, r.Exec("import sys"))
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestBadVenvDoesNotPoisonInit$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), badVenvChildEnv+"=1")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "child:\n%s", out)
	require.Contains(t, string(out), "--- PASS: TestBadVenvDoesNotPoisonInit")
}

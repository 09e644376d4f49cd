package python_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/slither-go/slither/python"
)

func TestExtractWritesThePackageOnce(t *testing.T) {
	cache := t.TempDir()
	dir, err := python.Extract(cache)
	require.NoError(t, err)
	assert.Equal(t, cache, filepath.Dir(dir))
	want, err := python.FS.ReadFile("slither/__init__.py")
	require.NoError(t, err)
	got, err := os.ReadFile(filepath.Join(dir, "slither", "__init__.py"))
	require.NoError(t, err)
	assert.Equal(t, want, got)

	again, err := python.Extract(cache)
	require.NoError(t, err)
	assert.Equal(t, dir, again, "an identical copy is reused")
	entries, err := os.ReadDir(cache)
	require.NoError(t, err)
	assert.Len(t, entries, 1, "no temporary directories left behind")
}

func TestDirIsStable(t *testing.T) {
	a, err := python.Dir()
	require.NoError(t, err)
	b, err := python.Dir()
	require.NoError(t, err)
	assert.Equal(t, a, b)
	_, err = os.Stat(filepath.Join(a, "slither", "worker.py"))
	assert.NoError(t, err)
}

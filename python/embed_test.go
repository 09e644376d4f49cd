package python_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/slither-go/slither/python"
)

func TestDirWritesThePackageOnce(t *testing.T) {
	cache := t.TempDir()
	t.Setenv("SLITHER_CACHE_DIR", cache)
	dir, err := python.Dir()
	require.NoError(t, err)
	assert.Equal(t, cache, filepath.Dir(dir), "written under SLITHER_CACHE_DIR")
	want, err := python.FS.ReadFile("slither/__init__.py")
	require.NoError(t, err)
	got, err := os.ReadFile(filepath.Join(dir, "slither", "__init__.py"))
	require.NoError(t, err)
	assert.Equal(t, want, got)

	again, err := python.Dir()
	require.NoError(t, err)
	assert.Equal(t, dir, again)
	entries, err := os.ReadDir(cache)
	require.NoError(t, err)
	assert.Len(t, entries, 1, "no temporary directories left behind")
}

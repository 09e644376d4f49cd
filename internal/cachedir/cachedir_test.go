package cachedir_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/slither-go/slither/internal/cachedir"
)

func TestPrivateNarrowsAnOpenDirectoryOfOurs(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "c")
	require.NoError(t, os.Mkdir(dir, 0o755))
	require.NoError(t, os.Chmod(dir, 0o777))
	require.NoError(t, cachedir.Private(dir))
	st, err := os.Lstat(dir)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o700), st.Mode().Perm())

	f := filepath.Join(dir, "f")
	require.NoError(t, os.WriteFile(f, nil, 0o600))
	assert.ErrorContains(t, cachedir.Private(f), "is not a directory")
	require.NoError(t, os.Chmod(f, 0o666))
	st, err = os.Lstat(f)
	require.NoError(t, err)
	assert.ErrorContains(t, cachedir.Owned(f, st), "writable by other users")
}

func TestRootUsesTheUserCacheDir(t *testing.T) {
	home := t.TempDir()
	t.Setenv("SLITHER_CACHE_DIR", "")
	t.Setenv("XDG_CACHE_HOME", "")
	t.Setenv("HOME", home)
	root, err := cachedir.Root()
	require.NoError(t, err)
	assert.Equal(t, filepath.Join(home, ".cache", "slither"), root)
}

func TestWriteFileReplacesAtomically(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "x.json")
	require.NoError(t, cachedir.WriteFile(p, []byte("one"), 0o600))
	require.NoError(t, cachedir.WriteFile(p, []byte("two"), 0o600))
	b, err := os.ReadFile(p)
	require.NoError(t, err)
	assert.Equal(t, "two", string(b))
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	assert.Len(t, entries, 1)
}

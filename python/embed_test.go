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
	st, err := os.Stat(dir)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o700), st.Mode().Perm(), "private to this user")

	// Python's bytecode cache is allowed beside the sources.
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "slither", "__pycache__"), 0o700))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "slither", "__pycache__", "x.cpython-313.pyc"), []byte("pyc"), 0o600))
	again, err := python.Extract(cache)
	require.NoError(t, err)
	assert.Equal(t, dir, again, "an identical copy is reused")
	assert.FileExists(t, filepath.Join(dir, "slither", "__pycache__", "x.cpython-313.pyc"), "the verified copy was kept")
	entries, err := os.ReadDir(cache)
	require.NoError(t, err)
	assert.Len(t, entries, 1, "no temporary directories left behind")
}

// TestExtractReplacesATamperedCopy: a copy of the right name whose files
// differ from the embedded ones (planted code, a partial write) is never
// used as it is.
func TestExtractReplacesATamperedCopy(t *testing.T) {
	want, err := python.FS.ReadFile("slither/__init__.py")
	require.NoError(t, err)
	cases := map[string]func(t *testing.T, dir string){
		"changed file": func(t *testing.T, dir string) {
			require.NoError(t, os.WriteFile(filepath.Join(dir, "slither", "__init__.py"), []byte("import os; os.system('evil')\n"), 0o600))
		},
		"extra module": func(t *testing.T, dir string) {
			require.NoError(t, os.WriteFile(filepath.Join(dir, "sitecustomize.py"), []byte("evil = 1\n"), 0o600))
		},
		"missing file": func(t *testing.T, dir string) {
			require.NoError(t, os.Remove(filepath.Join(dir, "slither", "worker.py")))
		},
		"symlinked file": func(t *testing.T, dir string) {
			evil := filepath.Join(t.TempDir(), "evil.py")
			require.NoError(t, os.WriteFile(evil, want, 0o600))
			p := filepath.Join(dir, "slither", "__init__.py")
			require.NoError(t, os.Remove(p))
			require.NoError(t, os.Symlink(evil, p))
		},
	}
	for name, tamper := range cases {
		t.Run(name, func(t *testing.T) {
			cache := t.TempDir()
			dir, err := python.Extract(cache)
			require.NoError(t, err)
			tamper(t, dir)
			again, err := python.Extract(cache)
			require.NoError(t, err)
			assert.Equal(t, dir, again)
			st, err := os.Lstat(filepath.Join(dir, "slither", "__init__.py"))
			require.NoError(t, err)
			assert.True(t, st.Mode().IsRegular())
			got, err := os.ReadFile(filepath.Join(dir, "slither", "__init__.py"))
			require.NoError(t, err)
			assert.Equal(t, want, got)
			assert.NoFileExists(t, filepath.Join(dir, "sitecustomize.py"))
			assert.FileExists(t, filepath.Join(dir, "slither", "worker.py"))
			entries, err := os.ReadDir(cache)
			require.NoError(t, err)
			assert.Len(t, entries, 1, "the bad copy is gone")
		})
	}
}

// TestExtractRefusesAnUnsafeRoot: a cache root that is a symlink, or that
// belongs to another user, is an error; nothing is written through it.
func TestExtractRefusesAnUnsafeRoot(t *testing.T) {
	real := t.TempDir()
	link := filepath.Join(t.TempDir(), "link")
	require.NoError(t, os.Symlink(real, link))
	_, err := python.Extract(link)
	assert.ErrorContains(t, err, "is a symlink")
	entries, err := os.ReadDir(real)
	require.NoError(t, err)
	assert.Empty(t, entries)

	if os.Getuid() != 0 {
		t.Skip("giving a directory to another user needs root")
	}
	other := t.TempDir()
	require.NoError(t, os.Chown(other, 65534, 65534))
	_, err = python.Extract(other)
	assert.ErrorContains(t, err, "belongs to uid 65534")
	entries, err = os.ReadDir(other)
	require.NoError(t, err)
	assert.Empty(t, entries)
}

// TestDirNeedsAPrivateCacheDir: without a user cache directory Dir fails
// and says what to set, instead of using a shared one such as /tmp.
func TestDirNeedsAPrivateCacheDir(t *testing.T) {
	t.Setenv("SLITHER_CACHE_DIR", "")
	t.Setenv("XDG_CACHE_HOME", "")
	t.Setenv("HOME", "")
	_, err := python.Dir()
	assert.ErrorContains(t, err, "no user cache directory")
	assert.ErrorContains(t, err, "set SLITHER_CACHE_DIR")

	cache := filepath.Join(t.TempDir(), "cache")
	t.Setenv("SLITHER_CACHE_DIR", cache)
	dir, err := python.Dir()
	require.NoError(t, err)
	assert.Equal(t, cache, filepath.Dir(dir))
	st, err := os.Lstat(cache)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o700), st.Mode().Perm())
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

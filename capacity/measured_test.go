package capacity_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/slither-go/slither/capacity"
)

// TestSaveNeverWritesThroughAPlantedTempFile: the old fixed name
// measured.json.tmp could be a symlink planted by someone else, and Save
// wrote through it.
func TestSaveNeverWritesThroughAPlantedTempFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "measured.json")
	victim := filepath.Join(t.TempDir(), "victim")
	require.NoError(t, os.WriteFile(victim, []byte("keep me"), 0o600))
	require.NoError(t, os.Symlink(victim, path+".tmp"))

	m := capacity.Measured{Machine: "test", Winners: map[string]string{"cpu": "thread"}}
	require.NoError(t, m.Save(path))
	b, err := os.ReadFile(victim)
	require.NoError(t, err)
	assert.Equal(t, "keep me", string(b), "the symlink's target is untouched")
	got, ok, err := capacity.LoadMeasured(path)
	require.NoError(t, err)
	require.True(t, ok)
	assert.Equal(t, "test", got.Machine)
	st, err := os.Lstat(path)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), st.Mode().Perm())
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	assert.Len(t, entries, 2, "measured.json and the untouched planted link; no temporary file left")
}

// TestMeasuredPathIsPrivate: no shared fallback (such as /tmp/slither) when
// there is no user cache directory, and the directory is made private.
func TestMeasuredPathIsPrivate(t *testing.T) {
	t.Setenv("SLITHER_CACHE_DIR", "")
	t.Setenv("XDG_CACHE_HOME", "")
	t.Setenv("HOME", "")
	_, err := capacity.MeasuredPath()
	assert.ErrorContains(t, err, "no user cache directory")

	root := filepath.Join(t.TempDir(), "c")
	t.Setenv("SLITHER_CACHE_DIR", root)
	p, err := capacity.MeasuredPath()
	require.NoError(t, err)
	assert.Equal(t, filepath.Join(root, "measured.json"), p)
	st, err := os.Lstat(root)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o700), st.Mode().Perm())

	link := filepath.Join(t.TempDir(), "link")
	require.NoError(t, os.Symlink(root, link))
	t.Setenv("SLITHER_CACHE_DIR", link)
	_, err = capacity.MeasuredPath()
	assert.ErrorContains(t, err, "is a symlink")
}

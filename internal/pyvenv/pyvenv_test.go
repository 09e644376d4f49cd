package pyvenv_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/slither-go/slither/internal/pyvenv"
)

func writeCfg(t *testing.T, cfg string) string {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "pyvenv.cfg"), []byte(cfg), 0o644))
	return dir
}

// TestCheck: a venv passes for the interpreter it names, by file identity
// (a hard link such as python3.13 -> python3.13t passes too), and fails,
// naming each difference and the fix, for another home, interpreter or
// version.
func TestCheck(t *testing.T) {
	base := t.TempDir()
	bin := filepath.Join(base, "bin")
	require.NoError(t, os.MkdirAll(bin, 0o755))
	exe := filepath.Join(bin, "python3.13t")
	require.NoError(t, os.WriteFile(exe, nil, 0o755))
	require.NoError(t, os.Link(exe, filepath.Join(bin, "python3.13")))
	require.NoError(t, os.WriteFile(filepath.Join(bin, "python3.13g"), nil, 0o755))

	dir := writeCfg(t, "home = "+bin+"\ninclude-system-site-packages = false\nversion = 3.13.5\nexecutable = "+
		filepath.Join(bin, "python3.13")+"\n")
	require.True(t, pyvenv.Is(dir))
	v, err := pyvenv.Open(dir)
	require.NoError(t, err)
	assert.Equal(t, filepath.Join(dir, "bin", "python"), v.Python())
	assert.Equal(t, filepath.Join(dir, "lib", "python3.13t", "site-packages"), v.SitePackages("python3.13t"))
	assert.False(t, v.SystemSite)
	require.NoError(t, v.Check(exe, "3.13.1"))

	gil := writeCfg(t, "home = "+bin+"\nversion_info = 3.13.5\nexecutable = "+filepath.Join(bin, "python3.13g")+"\n")
	v, err = pyvenv.Open(gil)
	require.NoError(t, err)
	err = v.Check(exe, "3.13.5")
	require.ErrorIs(t, err, pyvenv.ErrMismatch)
	assert.ErrorContains(t, err, "made by "+filepath.Join(bin, "python3.13g")+", not "+exe)

	other := writeCfg(t, "home = /usr/bin\nversion = 3.11.2\ninclude-system-site-packages = true\n")
	v, err = pyvenv.Open(other)
	require.NoError(t, err)
	assert.True(t, v.SystemSite)
	err = v.Check(exe, "3.13.5")
	require.ErrorIs(t, err, pyvenv.ErrMismatch)
	assert.ErrorContains(t, err, "made from the Python in /usr/bin, not "+bin+"; Python 3.11.2, not 3.13.5; recreate it with `"+exe+" -m venv "+other+"`")
}

func TestOpenNotAVenv(t *testing.T) {
	dir := t.TempDir()
	assert.False(t, pyvenv.Is(dir))
	_, err := pyvenv.Open(dir)
	assert.ErrorContains(t, err, "not a venv (create it with `python3.13t -m venv "+dir+"`)")
	assert.ErrorIs(t, err, pyvenv.ErrInvalid)
	_, err = pyvenv.Open(writeCfg(t, "version = 3.13.5\n"))
	assert.ErrorContains(t, err, "pyvenv.cfg names no home")
	assert.ErrorIs(t, err, pyvenv.ErrInvalid)
}

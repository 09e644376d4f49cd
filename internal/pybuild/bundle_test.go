package pybuild

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestBundleExportsMake: in a Makefile too, the rpath reaches cgo as the
// literal $ORIGIN (make's $$ escape), never expanded.
func TestBundleExportsMake(t *testing.T) {
	prefix := fakePrefix(t, t.TempDir())
	c := Config{Prefix: prefix}
	out, err := BundleExports(context.Background(), c, "pyrt", "make")
	require.NoError(t, err)
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "env.mk"), []byte(out), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "Makefile"),
		[]byte("include env.mk\nall:\n\t@printf '%s' \"$$CGO_LDFLAGS\"\n"), 0o644))
	cmd := exec.Command("make", "-s", "-C", dir)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	got, err := cmd.Output()
	require.NoError(t, err, out)
	require.Equal(t, "-Wl,-rpath,$ORIGIN/pyrt/lib ", string(got))

	for _, bad := range []string{"", "/abs/pyrt", "a:b"} {
		_, err := BundleExports(context.Background(), c, bad, "sh")
		require.ErrorContains(t, err, "must be relative to the program's directory")
	}
}

// TestSetRunpath rewrites a small program's rpath in place, and
// refuses a value that does not fit.
func TestSetRunpath(t *testing.T) {
	dir := t.TempDir()
	// Build a tiny ELF with an rpath: cc is part of the cgo toolchain.
	c := filepath.Join(dir, "m.c")
	require.NoError(t, os.WriteFile(c, []byte("int main(void){return 0;}\n"), 0o644))
	bin := filepath.Join(dir, "m")
	out, err := exec.Command("cc", "-o", bin, c, "-Wl,-rpath,/a/rather/long/build/prefix/lib").CombinedOutput()
	require.NoError(t, err, "%s", out)

	require.NoError(t, setRunpath(bin, "$ORIGIN/../lib"))
	got, err := exec.Command("readelf", "-d", bin).Output()
	require.NoError(t, err)
	require.Contains(t, string(got), "[$ORIGIN/../lib]")
	require.NotContains(t, string(got), "/a/rather/long")
	require.NoError(t, exec.Command(bin).Run(), "the patched program still runs")

	err = setRunpath(bin, "$ORIGIN/a/value/longer/than/the/old/one")
	require.ErrorContains(t, err, "install the build under a longer prefix")
}

// TestBundleDirAndDiscovery: a bundle directory is found beside a program
// by its marker; a non-empty directory that is not a bundle is refused,
// never deleted.
func TestBundleDirAndDiscovery(t *testing.T) {
	dir := t.TempDir()
	require.Empty(t, findBundle(dir))

	other := filepath.Join(dir, "data")
	require.NoError(t, os.MkdirAll(other, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(other, "keep"), nil, 0o644))
	require.ErrorContains(t, emptyBundleDir(other), "not an earlier bundle")
	require.FileExists(t, filepath.Join(other, "keep"))

	b := filepath.Join(dir, "pyrt")
	require.NoError(t, emptyBundleDir(b))
	require.NoError(t, os.MkdirAll(filepath.Join(b, "bin"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(b, "bin", "python3.13t"), nil, 0o755))
	require.Empty(t, findBundle(dir), "no marker, no bundle")
	require.NoError(t, os.WriteFile(filepath.Join(b, BundleMarker), []byte(`{"python":"bin/python3.13t","version":"3.13"}`), 0o644))
	require.Equal(t, filepath.Join(b, "bin", "python3.13t"), findBundle(dir))

	// An earlier bundle is replaced.
	require.NoError(t, emptyBundleDir(b))
	ents, err := os.ReadDir(b)
	require.NoError(t, err)
	require.Empty(t, ents)
}

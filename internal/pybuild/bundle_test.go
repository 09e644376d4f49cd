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

	// A symbol whose name the linker may store inside the rpath's bytes
	// (tail merging): padding would empty its name, so it is refused, and
	// the library is left as it was.
	lc := filepath.Join(dir, "l.c")
	require.NoError(t, os.WriteFile(lc, []byte("int libfoo(void){return 1;}\n"), 0o644))
	lib := filepath.Join(dir, "libl.so")
	out, err = exec.Command("cc", "-shared", "-fPIC", "-o", lib, lc, "-Wl,-rpath,/a/rather/long/prefix/libfoo").CombinedOutput()
	require.NoError(t, err, "%s", out)
	before, err := os.ReadFile(lib)
	require.NoError(t, err)
	require.ErrorContains(t, setRunpath(lib, "$ORIGIN"), `shares its bytes with the name "libfoo"`)
	after, err := os.ReadFile(lib)
	require.NoError(t, err)
	require.Equal(t, before, after)

	// A link is never written through.
	link := filepath.Join(dir, "link.so")
	require.NoError(t, os.Symlink(lib, link))
	require.NoError(t, setRunpath(link, "$ORIGIN"))
	after, err = os.ReadFile(lib)
	require.NoError(t, err)
	require.Equal(t, before, after)
}

// TestBundleDirAndDiscovery: a bundle is found from the libpython the
// loader mapped, by its marker; a non-empty directory that is not a bundle
// is refused, never deleted.
func TestBundleDirAndDiscovery(t *testing.T) {
	dir := t.TempDir()
	findBundle := func(dir string) string { return bundleOf(filepath.Join(dir, "pyrt", "lib", "libpython3.13t.so.1.0")) }
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

// Only the bundle of the loaded libpython counts: a directory planted beside
// the program is never taken, and a marker cannot name an interpreter
// outside its bundle.
func TestBundleIsTheLoadedLibpythons(t *testing.T) {
	maps := "7f00-7f01 r-xp 00000000 08:01 42 /srv/app/pyrt/lib/libpython3.13t.so.1.0\n" +
		"7f02-7f03 r--p 00000000 08:01 43 /usr/lib/x86_64-linux-gnu/libc.so.6\n"
	require.Equal(t, "/srv/app/pyrt/lib/libpython3.13t.so.1.0", loadedLibpython(maps))
	require.Empty(t, loadedLibpython("7f02-7f03 r--p 00000000 08:01 43 /usr/lib/x86_64-linux-gnu/libc.so.6\n"))

	dir := t.TempDir()
	b := filepath.Join(dir, "pyrt")
	require.NoError(t, os.MkdirAll(filepath.Join(b, "lib"), 0o755))
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "evil"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "evil", "python"), nil, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(b, BundleMarker), []byte(`{"python":"../evil/python"}`), 0o644))
	require.Empty(t, bundleOf(filepath.Join(b, "lib", "libpython3.13t.so.1.0")), "a marker naming a path outside its bundle")
}

// Replacing an earlier bundle removes only what a bundle holds: a file a
// user added makes the directory not a bundle, and nothing is deleted.
func TestEarlierBundleWithOtherFilesIsKept(t *testing.T) {
	b := filepath.Join(t.TempDir(), "pyrt")
	require.NoError(t, os.MkdirAll(filepath.Join(b, "lib"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(b, BundleMarker), []byte(`{"python":"bin/python3.13t"}`), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(b, "notes.txt"), []byte("mine"), 0o644))
	require.ErrorContains(t, emptyBundleDir(b), "holds notes.txt, which no bundle does")
	require.FileExists(t, filepath.Join(b, "notes.txt"))
	require.FileExists(t, filepath.Join(b, BundleMarker))

	require.NoError(t, os.Remove(filepath.Join(b, "notes.txt")))
	require.NoError(t, emptyBundleDir(b))
	ents, err := os.ReadDir(b)
	require.NoError(t, err)
	require.Empty(t, ents)
}

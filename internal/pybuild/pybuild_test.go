package pybuild

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// fakePrefix lays out the files Locate looks for in a build prefix.
func fakePrefix(t *testing.T, parent string) string {
	t.Helper()
	prefix := filepath.Join(parent, "cpython-3.13t")
	for _, f := range []string{"bin/python3.13t", "lib/pkgconfig/python-3.13t-embed.pc"} {
		p := filepath.Join(prefix, f)
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, nil, 0o755))
	}
	return prefix
}

// fakePython is an executable that answers Locate's sysconfig question
// with the given three lines.
func fakePython(t *testing.T, answer string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "python3.13t")
	require.NoError(t, os.WriteFile(p, []byte("#!/bin/sh\nprintf '%s\\n' "+answer+"\n"), 0o755))
	return p
}

func TestDefaultsAndInterpreter(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HOME", home)
	py, err := Config{}.Interpreter()
	require.NoError(t, err)
	require.Equal(t, filepath.Join(home, ".cache", "slither", "cpython-3.13t", "bin", "python3.13t"), py)

	py, err = Config{Version: "3.14", Prefix: "/opt/ft"}.Interpreter()
	require.NoError(t, err)
	require.Equal(t, "/opt/ft/bin/python3.14t", py)

	py, err = Config{Python: "/usr/local/bin/python3.13t", Prefix: "/opt/ft"}.Interpreter()
	require.NoError(t, err)
	require.Equal(t, "/usr/local/bin/python3.13t", py, "an existing interpreter wins over the prefix")

	for _, v := range []string{"3", "3.13t", "../3.13", "2.7"} {
		_, err := Config{Version: v}.Interpreter()
		require.ErrorContains(t, err, "not of the form 3.N", v)
	}
}

func TestFromEnv(t *testing.T) {
	t.Setenv(EnvVersion, "3.14")
	t.Setenv(EnvPrefix, "/p")
	t.Setenv(EnvPython, "/py")
	require.Equal(t, Config{Version: "3.14", Prefix: "/p", Python: "/py"}, FromEnv())
}

func TestLocatePrefix(t *testing.T) {
	ctx := context.Background()
	prefix := fakePrefix(t, t.TempDir())
	l, err := Locate(ctx, Config{Prefix: prefix})
	require.NoError(t, err)
	require.Equal(t, Link{PkgConfigDir: filepath.Join(prefix, "lib", "pkgconfig"), LibDir: filepath.Join(prefix, "lib")}, l)

	_, err = Locate(ctx, Config{Prefix: filepath.Join(t.TempDir(), "missing")})
	require.ErrorContains(t, err, "no free-threaded CPython 3.13 installed")
	require.ErrorContains(t, err, InstallCommand, "the error names the command that installs it")
}

func TestLocateExistingPython(t *testing.T) {
	ctx := context.Background()
	l, err := Locate(ctx, Config{Python: fakePython(t, "/ft/lib/pkgconfig /ft/lib 1")})
	require.NoError(t, err)
	require.Equal(t, Link{PkgConfigDir: "/ft/lib/pkgconfig", LibDir: "/ft/lib"}, l)

	_, err = Locate(ctx, Config{Python: fakePython(t, "/usr/lib/pkgconfig /usr/lib 0")})
	require.ErrorContains(t, err, "is not a free-threaded build")
	_, err = Locate(ctx, Config{Python: fakePython(t, "None None 1")})
	require.ErrorContains(t, err, "no LIBPC or LIBDIR")
	_, err = Locate(ctx, Config{Python: filepath.Join(t.TempDir(), "nope")})
	require.ErrorContains(t, err, "where its libpython is")
}

// awkward is a directory name a shell must quote: blanks, quotes, a dollar.
const awkward = `/tmp/my dir's "$HOME"`

// dollarLib is a library directory a shell must quote that cgo can still
// take as an rpath (no blank, quote or comma).
const dollarLib = `/tmp/$HOME/lib`

func TestExportsSh(t *testing.T) {
	out, err := Exports(Link{PkgConfigDir: awkward + "/pc", LibDir: dollarLib}, "sh")
	require.NoError(t, err)
	for _, before := range []struct{ pc, ld, wantPC, wantLD string }{
		{"", "", awkward + "/pc", "-Wl,-rpath," + dollarLib},
		{"/old", "-lm", awkward + "/pc:/old", "-Wl,-rpath," + dollarLib + " -lm"},
	} {
		cmd := exec.Command("sh", "-c", `eval "$1"; printf '%s\n%s\n%s' "$PKG_CONFIG_PATH" "$CGO_LDFLAGS" "$CGO_ENABLED"`, "sh", out)
		cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
		if before.pc != "" {
			cmd.Env = append(cmd.Env, "PKG_CONFIG_PATH="+before.pc, "CGO_LDFLAGS="+before.ld)
		}
		got, err := cmd.Output()
		require.NoError(t, err, out)
		require.Equal(t, before.wantPC+"\n"+before.wantLD+"\n1", string(got))
	}
}

func TestExportsMake(t *testing.T) {
	if _, err := exec.LookPath("make"); err != nil {
		t.Fatalf("make is needed (the repository's build uses it): %v", err)
	}
	dir := t.TempDir()
	out, err := Exports(Link{PkgConfigDir: "/ft/lib/pkgconfig", LibDir: "/ft/lib"}, "make")
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "env.mk"), []byte(out), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "Makefile"),
		[]byte("include env.mk\nall:\n\t@printf '%s|%s|%s' \"$$PKG_CONFIG_PATH\" \"$$CGO_LDFLAGS\" \"$$CGO_ENABLED\"\n"), 0o644))
	cmd := exec.Command("make", "-s", "-C", dir)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "PKG_CONFIG_PATH=/old"}
	got, err := cmd.Output()
	require.NoError(t, err, out)
	require.Equal(t, "/ft/lib/pkgconfig:/old|-Wl,-rpath,/ft/lib |1", string(got))

	_, err = Exports(Link{PkgConfigDir: "/a b", LibDir: "/ft/lib"}, "make")
	require.ErrorContains(t, err, "make cannot hold")
}

// cgo splits CGO_LDFLAGS at blanks and -Wl, at commas: a library directory
// holding them (or quotes) is refused in every shell, not turned into an
// rpath that does not link.
func TestExportsRefusesAnUnlinkableLibDir(t *testing.T) {
	for _, dir := range []string{"/tmp/my dir/lib", "/tmp/a,b/lib", awkward + "/lib"} {
		for _, sh := range Shells {
			_, err := Exports(Link{PkgConfigDir: "/pc", LibDir: dir}, sh)
			require.ErrorContains(t, err, "cannot pass through CGO_LDFLAGS", "%s %q", sh, dir)
		}
	}
}

func TestExportsFish(t *testing.T) {
	out, err := Exports(Link{PkgConfigDir: awkward, LibDir: "/ft/lib"}, "fish")
	require.NoError(t, err)
	require.Equal(t, `set -gx PKG_CONFIG_PATH '/tmp/my dir\'s "$HOME"' $PKG_CONFIG_PATH
set -gx CGO_LDFLAGS (string join ' ' -- '-Wl,-rpath,/ft/lib' $CGO_LDFLAGS)
set -gx CGO_ENABLED 1
`, out)
	_, err = Exports(Link{}, "csh")
	require.ErrorContains(t, err, `unknown shell "csh"`)
}

// The cgo #error is C text and cannot use the Go constants: it must still
// name exactly the same commands.
func TestShimErrorNamesTheCommands(t *testing.T) {
	shim, err := os.ReadFile("../../cpython/shim.h")
	require.NoError(t, err)
	var line string
	for _, l := range strings.Split(string(shim), "\n") {
		if strings.HasPrefix(l, "#error") {
			line = l
		}
	}
	require.Contains(t, line, "`"+InstallCommand+"`")
	require.Contains(t, line, "`"+EnvCommand+"`")
}

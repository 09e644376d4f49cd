package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestInitWritesTheTemplate checks that init writes examples/quickstart
// byte for byte, plus a go.mod with the module path, the require and the
// replace. internal/newcomer builds and runs what it writes.
func TestInitWritesTheTemplate(t *testing.T) {
	checkout, err := filepath.Abs("../..")
	require.NoError(t, err)
	dir := filepath.Join(t.TempDir(), "new", "app")
	out, err := runCLI(t, "init", "--module", "example.com/me/app", "--replace", checkout, dir)
	require.NoError(t, err, out)
	require.Contains(t, out, "go mod tidy")

	src := filepath.Join(checkout, "examples", "quickstart")
	want, err := os.ReadDir(src)
	require.NoError(t, err)
	got, err := os.ReadDir(dir)
	require.NoError(t, err)
	names := []string{}
	for _, e := range got {
		names = append(names, e.Name())
	}
	wantNames := []string{"go.mod"}
	for _, e := range want {
		if e.IsDir() { // __pycache__ from a run of the Python tests
			continue
		}
		wantNames = append(wantNames, e.Name())
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		require.NoError(t, err)
		w, err := os.ReadFile(filepath.Join(dir, e.Name()))
		require.NoError(t, err)
		require.Equal(t, string(b), string(w), "%s is the template's", e.Name())
	}
	require.ElementsMatch(t, wantNames, names, "every file of examples/quickstart is embedded, and nothing else is written")

	mod, err := os.ReadFile(filepath.Join(dir, "go.mod"))
	require.NoError(t, err)
	require.Regexp(t, `^module example.com/me/app\n\ngo \d+\.\d+(\.\d+)?\n\nrequire github.com/slither-go/slither `+zeroVersion+
		`\n\nreplace github.com/slither-go/slither => `+regexp.QuoteMeta(checkout)+`\n$`, string(mod))
}

// TestInitRefusesToOverwrite: one existing file and init writes nothing.
func TestInitRefusesToOverwrite(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "mymod.py"), []byte("mine"), 0o644))
	out, err := runCLI(t, "init", "--version", "v1.2.3", dir)
	require.ErrorContains(t, err, "already has mymod.py", out)
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Len(t, entries, 1, "nothing was written")
	b, err := os.ReadFile(filepath.Join(dir, "mymod.py"))
	require.NoError(t, err)
	require.Equal(t, "mine", string(b))
}

// TestInitModulePath: the default is DIR's base name; a bad path is
// refused before anything is written.
func TestInitModulePath(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "myapp")
	out, err := runCLI(t, "init", "--version", "v1.2.3", dir)
	require.NoError(t, err, out)
	mod, err := os.ReadFile(filepath.Join(dir, "go.mod"))
	require.NoError(t, err)
	require.Contains(t, string(mod), "module myapp\n")
	require.Contains(t, string(mod), "require github.com/slither-go/slither v1.2.3\n")
	require.NotContains(t, string(mod), "replace")

	bad := filepath.Join(t.TempDir(), "x")
	for _, m := range []string{"has space", "/abs", "a//b", "../up", "a\nb"} {
		_, err := runCLI(t, "init", "--version", "v1.2.3", "--module", m, bad)
		require.ErrorContains(t, err, "not a usable module path", m)
	}
	_, err = os.Stat(bad)
	require.ErrorIs(t, err, os.ErrNotExist)

	_, err = runCLI(t, "init", "--version", "latest", bad)
	require.ErrorContains(t, err, "not a module version")
}

// TestRequireVersion: the binary's own version when it has a fetchable
// one; a checkout build needs --version or --replace.
func TestRequireVersion(t *testing.T) {
	bi := func(v string) *debug.BuildInfo {
		return &debug.BuildInfo{Main: debug.Module{Path: slitherModule, Version: v}}
	}
	v, err := requireVersion("", "", bi("v0.4.1"))
	require.NoError(t, err)
	require.Equal(t, "v0.4.1", v)
	v, err = requireVersion("", "", bi("v0.0.0-20261123101010-0123456789ab"))
	require.NoError(t, err)
	require.Equal(t, "v0.0.0-20261123101010-0123456789ab", v)
	for _, dev := range []string{"(devel)", "v0.0.0-20261123101010-0123456789ab+dirty", ""} {
		_, err = requireVersion("", "", bi(dev))
		require.ErrorContains(t, err, "--version", dev)
		v, err = requireVersion("", "/src/slither", bi(dev))
		require.NoError(t, err)
		require.Equal(t, zeroVersion, v)
	}
	v, err = requireVersion("v2.0.0", "", bi("v0.4.1"))
	require.NoError(t, err)
	require.Equal(t, "v2.0.0", v, "--version wins")
	_, err = requireVersion("", "", nil)
	require.Error(t, err)
	require.Equal(t, "1.26.8", goVersion("go1.26.8"))
	require.Equal(t, "1.27", goVersion("devel go1.27-abcdef"))
}

// A checkout path go.mod cannot take bare (a blank) is written quoted, and
// the result parses: `go mod edit -json` reads it back.
func TestInitQuotesAReplacePathWithBlanks(t *testing.T) {
	checkout := filepath.Join(t.TempDir(), "my checkout")
	require.NoError(t, os.MkdirAll(checkout, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(checkout, "go.mod"), []byte("module github.com/slither-go/slither\n"), 0o644))
	files, err := initFiles(t.TempDir(), "example.com/q", "v0.0.0-00010101000000-000000000000", checkout)
	require.NoError(t, err)
	assert.Contains(t, string(files["go.mod"]), `=> "`+checkout+`"`)
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "go.mod"), files["go.mod"], 0o644))
	cmd := exec.Command("go", "mod", "edit", "-json")
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	assert.Contains(t, string(out), `"Path": "`+checkout+`"`)
}

// Package gilext builds C extension modules for tests: one that does not
// declare Py_mod_gil, so importing it turns the GIL back on in a
// free-threaded interpreter as a real third-party extension would, and one
// that declares Py_MOD_GIL_NOT_USED and leaves it off.
package gilext

import (
	_ "embed"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

var (
	//go:embed nogil_ext.c.in
	source []byte
	//go:embed freeth_ext.c.in
	freeSource []byte
)

// Module is the name the extension built by [Build] is imported by; its
// hello() returns 42.
const Module = "_nogil_ext"

// FreeModule is the name the extension built by [BuildFreeThreaded] is
// imported by; its add(a, b) returns a + b.
const FreeModule = "_freeth_ext"

// Build compiles the GIL-enabling extension with gcc for python (an
// interpreter whose headers are installed) into dir, which then belongs on
// sys.path.
func Build(t testing.TB, python, dir string) {
	t.Helper()
	build(t, python, dir, Module, source)
}

// BuildFreeThreaded compiles the extension that declares
// Py_MOD_GIL_NOT_USED for python into dir, as [Build] does.
func BuildFreeThreaded(t testing.TB, python, dir string) {
	t.Helper()
	build(t, python, dir, FreeModule, freeSource)
}

func build(t testing.TB, python, dir, module string, code []byte) {
	t.Helper()
	out, err := exec.Command(python, "-c",
		`import sysconfig; print(sysconfig.get_paths()["include"]); print(sysconfig.get_config_var("EXT_SUFFIX"))`).Output()
	require.NoError(t, err, "asking %s for its headers", python)
	lines := strings.Fields(string(out))
	require.Len(t, lines, 2)
	src := filepath.Join(dir, module+".c")
	require.NoError(t, os.WriteFile(src, code, 0o644))
	cc := exec.Command("gcc", "-shared", "-fPIC", "-O1", "-I"+lines[0], "-o", filepath.Join(dir, module+lines[1]), src)
	msg, err := cc.CombinedOutput()
	require.NoError(t, err, "compiling the test extension %s: %s", module, msg)
}

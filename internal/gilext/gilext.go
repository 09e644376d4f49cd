// Package gilext builds, for tests, a C extension module that does not
// declare Py_mod_gil: importing it turns the GIL back on in a free-threaded
// interpreter, as a real third-party extension would.
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

//go:embed nogil_ext.c.in
var source []byte

// Module is the name the built extension is imported by.
const Module = "_nogil_ext"

// Build compiles the extension with gcc for python (an interpreter whose
// headers are installed) into dir, which then belongs on sys.path.
func Build(t testing.TB, python, dir string) {
	t.Helper()
	out, err := exec.Command(python, "-c",
		`import sysconfig; print(sysconfig.get_paths()["include"]); print(sysconfig.get_config_var("EXT_SUFFIX"))`).Output()
	require.NoError(t, err, "asking %s for its headers", python)
	lines := strings.Fields(string(out))
	require.Len(t, lines, 2)
	src := filepath.Join(dir, "nogil_ext.c")
	require.NoError(t, os.WriteFile(src, source, 0o644))
	cc := exec.Command("gcc", "-shared", "-fPIC", "-O1", "-I"+lines[0], "-o", filepath.Join(dir, Module+lines[1]), src)
	msg, err := cc.CombinedOutput()
	require.NoError(t, err, "compiling the test extension: %s", msg)
}

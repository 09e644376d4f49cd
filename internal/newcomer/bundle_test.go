package newcomer

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// whereMod reports, from inside a pool, where its Python came from: the
// prefix, the interpreter, the libpython mapped into the process, and a
// module found in the bundled venv's site-packages.
const whereMod = `import sys

import slither
import venvextra


@slither.thread_safe
def where(items):
    lib = next((l.split()[-1] for l in open("/proc/self/maps") if "libpython" in l), "")
    return [{"prefix": sys.prefix, "executable": sys.executable, "libpython": lib,
             "extra": venvextra.__file__, "slither": slither.__file__} for _ in items]
`

// bundledGo is the deployed program: where.py ships beside the binary and
// is found through Config.Paths relative to the executable.
const bundledGo = `package main

import (
	"context"
	"encoding/json"
	"log"
	"os"
	"path/filepath"

	"github.com/slither-go/slither/dispatch"
	"github.com/slither-go/slither/engine"
	"github.com/slither-go/slither/pipe"
	"github.com/slither-go/slither/pools"
)

func main() {
	ctx := context.Background()
	exe, err := os.Executable()
	if err != nil {
		log.Fatal(err)
	}
	eng, err := engine.Start(ctx, engine.Config{
		Paths:  []string{filepath.Dir(exe)}, // where.py ships beside the binary
		Thread: engine.ThreadConfig{Required: true},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer eng.Close(ctx)
	out := map[string]any{}
	for name, route := range map[string]pools.Route{"auto": pools.Auto, "process": pools.Process} {
		p, err := pipe.New(name).Python("where", pipe.Python{Module: "where", Function: "where", Route: route}).Build()
		if err != nil {
			log.Fatal(err)
		}
		res, err := eng.RunPipe(ctx, p, dispatch.Slice([]int{1, 2, 3}), engine.PipeOptions{})
		if err != nil {
			log.Fatalf("%s: %v", name, err)
		}
		out[name] = map[string]any{"ran": res.Report.Stages[0].Ran, "where": res.Outputs[pipe.DefaultOutput][0].Payload}
	}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		log.Fatal(err)
	}
}
`

// bundleSetup is the documented deploy path: link for a bundle at pyrt
// beside the binary, build, lay out the bundle with the venv's packages.
const bundleSetup = `set -eu
CGO_ENABLED=0 go run github.com/slither-go/slither/cmd/slither python install
env_lines=$(CGO_ENABLED=0 go run github.com/slither-go/slither/cmd/slither python bundle --env pyrt)
eval "$env_lines"
go build -o app .
CGO_ENABLED=0 go run github.com/slither-go/slither/cmd/slither python bundle --venv venv pyrt
`

// TestBundleRelocated builds a program linked for a bundle, bundles it
// with a venv, moves binary and bundle to a fresh directory and runs them
// with the build cache out of reach (another HOME, XDG_CACHE_HOME and
// SLITHER_CACHE_DIR, no PKG_CONFIG_PATH, LD_LIBRARY_PATH or SLITHER_*
// Python settings): the embedded pool and a process pool both run the
// bundle's Python, libpython included.
func TestBundleRelocated(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	f := newFresh(ctx, t)
	f.module("example.com/shipped")
	f.write("main.go", bundledGo)
	f.write("where.py", whereMod)
	// A venv of the free-threaded build with one pure-Python module.
	f.run(f.py, "-m", "venv", "--without-pip", "venv")
	site, err := filepath.Glob(filepath.Join(f.dir, "venv", "lib", "python3.*t", "site-packages"))
	require.NoError(t, err)
	require.Len(t, site, 1)
	// venvextra is importable only through a .pth file, as editable
	// installs and namespace packages are.
	require.NoError(t, os.Mkdir(filepath.Join(site[0], "extra"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(site[0], "extra", "venvextra.py"), []byte("VALUE = 1\n"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(site[0], "extra.pth"), []byte("extra\n"), 0o644))
	f.run("sh", "-c", bundleSetup)

	// Ship: the binary, its module and the bundle, moved elsewhere.
	dest := t.TempDir()
	for _, name := range []string{"app", "where.py", "pyrt"} {
		require.NoError(t, os.Rename(filepath.Join(f.dir, name), filepath.Join(dest, name)))
	}
	bundle := filepath.Join(dest, "pyrt")
	cacheLib := filepath.Dir(filepath.Dir(f.py)) // the build's prefix
	for _, elf := range []string{filepath.Join(dest, "app"), filepath.Join(bundle, "bin", "python3.13t"), filepath.Join(bundle, "lib", "libpython3.13t.so.1.0")} {
		out, err := exec.CommandContext(ctx, "readelf", "-d", elf).Output()
		require.NoError(t, err, "readelf -d %s", elf)
		require.Contains(t, string(out), "$ORIGIN", "%s loads libpython relative to itself", elf)
		require.NotContains(t, string(out), cacheLib, "%s has no rpath into the build", elf)
		require.NotContains(t, string(out), ".cache/slither", "%s has no rpath into a cache", elf)
	}
	out, err := exec.CommandContext(ctx, "readelf", "-d", filepath.Join(dest, "app")).Output()
	require.NoError(t, err)
	require.Contains(t, string(out), "[$ORIGIN/pyrt/lib]", "the binary's RUNPATH is the literal $ORIGIN/pyrt/lib")

	// Run with nothing of the build machine's set up.
	empty := t.TempDir()
	cmd := exec.CommandContext(ctx, filepath.Join(dest, "app"))
	cmd.Dir = empty
	cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + filepath.Join(empty, "home"),
		"XDG_CACHE_HOME=" + filepath.Join(empty, "xdg"), "SLITHER_CACHE_DIR=" + filepath.Join(empty, "cache")}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	stdout, err := cmd.Output()
	require.NoError(t, err, "the shipped program\nstdout:\n%s\nstderr:\n%s", stdout, stderr.String())

	var got map[string]struct {
		Ran   map[string]int
		Where map[string]string
	}
	require.NoError(t, json.Unmarshal(stdout, &got), "%s", stdout)
	require.Equal(t, []string{"thread"}, keys(got["auto"].Ran), "Auto ran on the embedded pool")
	require.Equal(t, []string{"process"}, keys(got["process"].Ran))
	for name, w := range map[string]map[string]string{"embedded": got["auto"].Where, "process": got["process"].Where} {
		require.Equal(t, bundle, w["prefix"], "%s pool: sys.prefix is the bundle", name)
		require.Equal(t, filepath.Join(bundle, "bin", "python3.13t"), w["executable"], "%s pool: sys.executable", name)
		require.Equal(t, filepath.Join(bundle, "lib", "libpython3.13t.so.1.0"), w["libpython"], "%s pool: the libpython mapped", name)
		require.Equal(t, filepath.Join(bundle, "lib", "python3.13t", "site-packages", "extra", "venvextra.py"), w["extra"], "%s pool: the venv's package (through its .pth) from the bundle", name)
	}
}

// Package newcomer does what a new user does: a fresh Go module of their
// own, set up with nothing but the documented commands, running its own
// Python module through Slither.
package newcomer

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/slither-go/slither/internal/leaktest"
	"github.com/slither-go/slither/internal/pooltest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m, leaktest.Options()...) }

// mymod is the user's Python module: it imports slither for the decorator
// only, so plain Python runs it too.
const mymod = `import math

import slither


@slither.thread_safe
def score(items):
    return [
        {"n": n, "square": n * n, "root": math.sqrt(n), "digits": sum(int(c) for c in str(n)),
         "label": "even" if n % 2 == 0 else "odd"}
        for n in items
    ]
`

// mainGo is the user's program: mymod.py sits beside it and is found
// through Config.Paths. It prints, as JSON, where each route ran and what
// it returned, in input order.
const mainGo = `package main

import (
	"context"
	"encoding/json"
	"log"
	"os"
	"path/filepath"
	"strconv"

	"github.com/slither-go/slither/dispatch"
	"github.com/slither-go/slither/engine"
	"github.com/slither-go/slither/pipe"
	"github.com/slither-go/slither/pools"
)

type run struct {
	Ran     map[string]int
	Results []any
}

func main() {
	ctx := context.Background()
	dir, err := filepath.Abs(".")
	if err != nil {
		log.Fatal(err)
	}
	eng, err := engine.Start(ctx, engine.Config{
		Paths:  []string{dir}, // mymod.py is beside main.go
		Thread: engine.ThreadConfig{Required: true},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer eng.Close(ctx)

	items := make([]int, 200)
	for i := range items {
		items[i] = i * 37
	}
	out := map[string]run{}
	for name, route := range map[string]pools.Route{"auto": pools.Auto, "process": pools.Process} {
		p, err := pipe.New(name).
			Python("score", pipe.Python{Module: "mymod", Function: "score", Route: route}).
			Build()
		if err != nil {
			log.Fatal(err)
		}
		res, err := eng.RunPipe(ctx, p, dispatch.Slice(items), engine.PipeOptions{})
		if err != nil {
			log.Fatalf("%s: %v", name, err)
		}
		r := run{Ran: res.Report.Stages[0].Ran, Results: make([]any, len(items))}
		for _, it := range res.Outputs[pipe.DefaultOutput] {
			i, err := strconv.Atoi(it.ID)
			if err != nil {
				log.Fatal(err)
			}
			r.Results[i] = it.Payload
		}
		out[name] = r
	}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		log.Fatal(err)
	}
}
`

// reference runs mymod.score in plain Python on the same items.
const reference = `import json, mymod
print(json.dumps(mymod.score([i * 37 for i in range(200)])))
`

// setup is the documented path, as a shell runs it: install (finds the
// build here), the env line, go build; then the directory for plain
// Python's PYTHONPATH. The env output is kept in a variable first only so
// that a failure of the command stops the script (set -e), which a bare
// eval "$(...)" would hide.
const setup = `set -eu
CGO_ENABLED=0 go run github.com/slither-go/slither/cmd/slither python install
env_lines=$(CGO_ENABLED=0 go run github.com/slither-go/slither/cmd/slither python env)
eval "$env_lines"
go build -o app .
CGO_ENABLED=0 go run github.com/slither-go/slither/cmd/slither python path --package >pkgdir
`

// fresh is a new module of the user's in a temp dir, and the environment a
// newcomer's shell has: nothing of the cgo set-up that make (or a test
// runner) exported, no network, and the module cache shared with this
// checkout, whose go.sum therefore lets builds run offline.
type fresh struct {
	t             *testing.T
	ctx           context.Context
	py            string // the free-threaded interpreter this test run uses
	root, dir     string // the checkout, the new module
	goLine, goSum string // from the checkout's go.mod and go.sum
	env           []string
}

func newFresh(ctx context.Context, t *testing.T) *fresh {
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	// Skip nothing: without the free-threaded Python the install step
	// fails and so does the test.
	f := &fresh{t: t, ctx: ctx, py: pooltest.Python(), dir: t.TempDir()}
	out, err := exec.CommandContext(ctx, goBin, "env", "GOMOD").Output()
	require.NoError(t, err)
	f.root = filepath.Dir(strings.TrimSpace(string(out)))
	goMod, err := os.ReadFile(filepath.Join(f.root, "go.mod"))
	require.NoError(t, err)
	goSum, err := os.ReadFile(filepath.Join(f.root, "go.sum"))
	require.NoError(t, err)
	f.goSum = string(goSum)
	for _, l := range strings.Split(string(goMod), "\n") {
		if strings.HasPrefix(l, "go ") {
			f.goLine = l
			break
		}
	}
	require.NotEmpty(t, f.goLine, "the checkout's go.mod has a go line")

	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "PKG_CONFIG_PATH", "CGO_LDFLAGS", "CGO_CFLAGS", "CGO_ENABLED", "LD_LIBRARY_PATH", "GOFLAGS",
			"GOPROXY", "GOTOOLCHAIN", "PY_VERSION", "SLITHER_PYTHON", "SLITHER_PYTHON_PREFIX", "PYTHONPATH", "PATH":
			continue
		}
		f.env = append(f.env, kv)
	}
	f.env = append(f.env, "PATH="+filepath.Dir(goBin)+string(os.PathListSeparator)+os.Getenv("PATH"),
		"GOFLAGS=-mod=mod", "GOPROXY=off", "GOTOOLCHAIN=local",
		// The documented variable for an existing free-threaded build: the
		// one this test run uses.
		"SLITHER_PYTHON="+f.py)
	return f
}

func (f *fresh) write(name, text string) {
	require.NoError(f.t, os.WriteFile(filepath.Join(f.dir, name), []byte(text), 0o644))
}

// module writes go.mod for module path, requiring Slither through a
// replace to this checkout, and the checkout's go.sum.
func (f *fresh) module(path string) {
	f.write("go.mod", "module "+path+"\n\n"+f.goLine+"\n\n"+
		"require github.com/slither-go/slither v0.0.0-00010101000000-000000000000\n\n"+
		"replace github.com/slither-go/slither => "+f.root+"\n")
	f.write("go.sum", f.goSum)
}

// run runs a command in the new module and returns its stdout.
func (f *fresh) run(name string, args ...string) string {
	return f.runIn(f.dir, name, args...)
}

func (f *fresh) runIn(dir, name string, args ...string) string {
	cmd := exec.CommandContext(f.ctx, name, args...)
	cmd.Dir, cmd.Env = dir, f.env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	require.NoError(f.t, cmd.Run(), "%s %s\nstdout:\n%s\nstderr:\n%s", name, strings.Join(args, " "), stdout.String(), stderr.String())
	return stdout.String()
}

// setUp runs the documented set-up (setup, then extra shell lines in the
// same shell) and puts the slither package it printed on PYTHONPATH, beside
// the module's own directory, for the plain-Python runs that follow.
func (f *fresh) setUp(extra string) string {
	out := f.run("sh", "-c", setup+extra)
	pkgDir, err := os.ReadFile(filepath.Join(f.dir, "pkgdir"))
	require.NoError(f.t, err)
	f.env = append(f.env, "PYTHONPATH="+strings.TrimSpace(string(pkgDir))+string(os.PathListSeparator)+f.dir)
	return out
}

// TestNewcomerModule builds a fresh module of the user's own with a replace
// to this checkout, set up only by the documented commands, and checks that
// Auto runs its function on the thread pool, a process pool runs it too,
// and both return exactly what plain Python returns.
func TestNewcomerModule(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	f := newFresh(ctx, t)
	f.module("example.com/newcomer")
	f.write("main.go", mainGo)
	f.write("mymod.py", mymod)
	f.setUp("")

	var got map[string]struct {
		Ran     map[string]int
		Results []any
	}
	require.NoError(t, json.Unmarshal([]byte(f.run(filepath.Join(f.dir, "app"))), &got))

	// Plain Python, with the slither package from `python path --package`.
	var want []any
	require.NoError(t, json.Unmarshal([]byte(f.run(f.py, "-c", reference)), &want))
	require.Len(t, want, 200)

	auto, proc := got["auto"], got["process"]
	require.NotEmpty(t, auto.Ran)
	// Auto runs a @slither.thread_safe function on the embedded pool; when
	// its batches take longer than a process round trip it also measures
	// the process pool with a few (pools.Router's cost model).
	require.Contains(t, keys(auto.Ran), "thread", "Auto runs a @slither.thread_safe function on the embedded pool")
	require.Equal(t, []string{"process"}, keys(proc.Ran))
	require.Equal(t, want, auto.Results, "Auto on the thread pool returns what plain Python returns")
	require.Equal(t, want, proc.Results, "the process pool returns what plain Python returns")
}

// TestInitQuickstart is the template's path: `slither init` writes a module
// (examples/quickstart with a go.mod of its own, here with a replace to
// this checkout), the documented commands set it up, and then its program
// runs both routes, its own `go test` passes (Go and Python tests), and its
// Python tests pass in plain Python, as its README says.
func TestInitQuickstart(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	f := newFresh(ctx, t)
	// What a newcomer runs as `CGO_ENABLED=0 go run .../cmd/slither@latest
	// init`; offline, the checkout stands in for @latest.
	f.runIn(f.root, "sh", "-c", `CGO_ENABLED=0 go run github.com/slither-go/slither/cmd/slither init --module example.com/quick --replace "$1" "$2"`,
		"sh", f.root, f.dir)
	f.write("go.sum", f.goSum) // what `go mod tidy` would write, offline
	testOut := f.setUp("go test -count=1 ./...\n")
	require.Contains(t, testOut, "ok  \texample.com/quick", "the template's own Go tests pass in the new module")

	out := f.run(filepath.Join(f.dir, "app"))
	// Auto runs the @slither.thread_safe function on the embedded pool; it
	// may measure the process pool with a few batches (pools.Router's cost
	// model), as the template's own test allows.
	auto := strings.SplitN(out, "\n", 2)[0]
	require.Contains(t, auto, "auto: 300 sentences scored, batches ran on ")
	require.Contains(t, auto, "thread (")
	require.Contains(t, out, "process: 300 sentences scored, batches ran on process (")

	// unittest reports on stderr.
	py := f.run("sh", "-c", `"$0" -m unittest -v test_mymod 2>&1`, f.py)
	require.Contains(t, py, "Ran 3 tests")
}

func keys(m map[string]int) []string {
	ks := []string{}
	for k := range m {
		ks = append(ks, k)
	}
	return ks
}

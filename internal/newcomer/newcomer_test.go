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

// TestNewcomerModule builds a fresh module of the user's own with a replace
// to this checkout, set up only by the documented commands, and checks that
// Auto runs its function on the thread pool, a process pool runs it too,
// and both return exactly what plain Python returns.
func TestNewcomerModule(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()

	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	// Skip nothing: without the free-threaded Python the install step
	// below fails and so does the test.
	py := pooltest.Python()
	out, err := exec.CommandContext(ctx, goBin, "env", "GOMOD").Output()
	require.NoError(t, err)
	root := filepath.Dir(strings.TrimSpace(string(out)))
	goMod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	require.NoError(t, err)
	goSum, err := os.ReadFile(filepath.Join(root, "go.sum"))
	require.NoError(t, err)
	goLine := ""
	for _, l := range strings.Split(string(goMod), "\n") {
		if strings.HasPrefix(l, "go ") {
			goLine = l
			break
		}
	}
	require.NotEmpty(t, goLine, "the checkout's go.mod has a go line")

	dir := t.TempDir()
	write := func(name, text string) {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644))
	}
	write("go.mod", "module example.com/newcomer\n\n"+goLine+"\n\n"+
		"require github.com/slither-go/slither v0.0.0-00010101000000-000000000000\n\n"+
		"replace github.com/slither-go/slither => "+root+"\n")
	// The module cache is shared with the checkout, so its go.sum lets the
	// build run without the network.
	write("go.sum", string(goSum))
	write("main.go", mainGo)
	write("mymod.py", mymod)

	// Nothing of the cgo set-up that make (or a test runner) exported gets
	// through: the documented commands must provide it.
	env := []string{}
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "PKG_CONFIG_PATH", "CGO_LDFLAGS", "CGO_CFLAGS", "CGO_ENABLED", "LD_LIBRARY_PATH", "GOFLAGS",
			"GOPROXY", "GOTOOLCHAIN", "PY_VERSION", "SLITHER_PYTHON", "SLITHER_PYTHON_PREFIX", "PYTHONPATH", "PATH":
			continue
		}
		env = append(env, kv)
	}
	env = append(env, "PATH="+filepath.Dir(goBin)+string(os.PathListSeparator)+os.Getenv("PATH"),
		"GOFLAGS=-mod=mod", "GOPROXY=off", "GOTOOLCHAIN=local",
		// The documented variable for an existing free-threaded build: the
		// one this test run uses.
		"SLITHER_PYTHON="+py)
	run := func(name string, args ...string) string {
		cmd := exec.CommandContext(ctx, name, args...)
		cmd.Dir, cmd.Env = dir, env
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		require.NoError(t, cmd.Run(), "%s %s\nstdout:\n%s\nstderr:\n%s", name, strings.Join(args, " "), stdout.String(), stderr.String())
		return stdout.String()
	}

	run("sh", "-c", setup)
	pkgDir, err := os.ReadFile(filepath.Join(dir, "pkgdir"))
	require.NoError(t, err)

	var got map[string]struct {
		Ran     map[string]int
		Results []any
	}
	require.NoError(t, json.Unmarshal([]byte(run(filepath.Join(dir, "app"))), &got))

	// Plain Python, with the slither package from `python path --package`.
	env = append(env, "PYTHONPATH="+strings.TrimSpace(string(pkgDir))+string(os.PathListSeparator)+dir)
	var want []any
	require.NoError(t, json.Unmarshal([]byte(run(py, "-c", reference)), &want))
	require.Len(t, want, 200)

	auto, proc := got["auto"], got["process"]
	require.NotEmpty(t, auto.Ran)
	require.Equal(t, []string{"thread"}, keys(auto.Ran), "Auto runs a @slither.thread_safe function on the embedded pool")
	require.Equal(t, []string{"process"}, keys(proc.Ran))
	require.Equal(t, want, auto.Results, "Auto on the thread pool returns what plain Python returns")
	require.Equal(t, want, proc.Results, "the process pool returns what plain Python returns")
}

func keys(m map[string]int) []string {
	ks := []string{}
	for k := range m {
		ks = append(ks, k)
	}
	return ks
}

package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/slither-go/slither/engine"
	"github.com/slither-go/slither/pools"
	"github.com/slither-go/slither/python"
)

// TestScore runs mymod.score for real: Auto must put the marked function
// on the embedded thread pool, the process pool must run it too, and every
// result must match the Go reference (score checks each one).
func TestScore(t *testing.T) {
	ctx := context.Background()
	eng, err := start(ctx, ".")
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close(ctx)
	for route, want := range map[pools.Route]string{pools.Auto: "thread", pools.Process: "process"} {
		ran, err := score(ctx, eng, route, sentences)
		if err != nil {
			t.Fatal(err)
		}
		if route == pools.Auto {
			// Auto measures the process pool with a few batches when the
			// thread pool's batches take longer than a process round trip
			// could (see pools.Router): most run on threads.
			if ran[want] == 0 || ran[want] <= ran["process"] || len(ran) > 2 {
				t.Errorf("route %s ran its batches on %v, want most on %s", route, ran, want)
			}
			continue
		}
		if len(ran) != 1 || ran[want] == 0 {
			t.Errorf("route %s ran its batches on %v, want all on %s", route, ran, want)
		}
	}
}

// TestRun runs the program's own path and checks what it prints.
func TestRun(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), &out, "."); err != nil {
		t.Fatal(err)
	}
	auto, _, _ := strings.Cut(out.String(), "\n")
	if !strings.HasPrefix(auto, "auto: 300 sentences scored, batches ran on ") || !strings.Contains(auto, "thread (") {
		t.Errorf("the first line does not show Auto's batches on threads:\n%s", out.String())
	}
	for _, want := range []string{"process: 300 sentences scored, batches ran on process ("} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}

// TestPythonSide runs test_mymod.py's unittest tests in plain Python, with
// the slither package from python.Dir() on PYTHONPATH: the interpreter is
// $SLITHER_TEST_PYTHON if set, else the one the engine's process pools run
// (engine.DefaultPython: $SLITHER_PYTHON, else the `slither python install`
// build, else python3).
func TestPythonSide(t *testing.T) {
	py := os.Getenv("SLITHER_TEST_PYTHON")
	if py == "" {
		py = engine.DefaultPython()
	}
	pkg, err := python.Dir()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(t.Context(), py, "-m", "unittest", "-v", "test_mymod")
	// No __pycache__ left beside the sources by the test run.
	cmd.Env = append(os.Environ(), "PYTHONPATH="+pkg, "PYTHONDONTWRITEBYTECODE=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s -m unittest test_mymod: %v\n%s", py, err, out)
	}
	if !bytes.Contains(out, []byte("Ran 3 tests")) {
		t.Fatalf("the unittest run did not run the three tests:\n%s", out)
	}
}

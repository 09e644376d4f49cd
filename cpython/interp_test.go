//go:build cgo

package cpython_test

import (
	"bufio"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/slither-go/slither/cpython"
)

// Tests of how the embedded interpreter is set up: stdio, int limits,
// multiprocessing, the import counter, and error records.

const stdioChildEnv = "SLITHER_TEST_STDIO_CHILD"

// stdioChild is the child process of TestPrintReachesPipedStdout: Python
// prints, then Go writes a marker straight to fd 1, then the child waits
// for its stdin to close and is killed there, so nothing is ever flushed
// at exit.
func stdioChild() {
	r, err := cpython.Init(cpython.Config{Paths: []string{"testdata"}})
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	th, err := r.NewThread()
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	if _, err := th.CallBatch("cpytest", "say", []any{"python line one", "python line two", "python, no newline"}); err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	fmt.Print("\ngo: after the batch\n")
	_, _ = bufio.NewReader(os.Stdin).ReadString('\n') // blocks until the parent kills us
	os.Exit(0)
}

// TestPrintReachesPipedStdout: print() in embedded Python reaches a piped
// stdout at once, before the Go side's next write, without a flush and
// although the interpreter is never finalized.
func TestPrintReachesPipedStdout(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), stdioChildEnv+"=1")
	stdin, err := cmd.StdinPipe()
	require.NoError(t, err)
	defer stdin.Close()
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	defer func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}()
	var lines []string
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		line := sc.Text()
		require.NotContains(t, line, "error:")
		lines = append(lines, line)
		if line == "go: after the batch" {
			break
		}
	}
	require.NoError(t, sc.Err())
	assert.Equal(t, []string{"python line one", "python line two", "python, no newline", "go: after the batch"}, lines,
		"Python's output comes first, in order, while the child still runs")
}

// TestBigIntsOfAnySize: ints far past CPython's 4,300-digit text limit
// cross both ways and are real Python ints on arrival.
func TestBigIntsOfAnySize(t *testing.T) {
	th := thread(t)
	text := "9" + strings.Repeat("1234567890", 1000) // 10,001 digits
	x, ok := new(big.Int).SetString(text, 10)
	require.True(t, ok)
	neg := new(big.Int).Neg(x)

	out, err := th.CallBatch("cpytest", "echo", []any{x, neg})
	require.NoError(t, err, "Go -> Python -> Go")
	assert.Equal(t, 0, x.Cmp(out[0].(*big.Int)))
	assert.Equal(t, 0, neg.Cmp(out[1].(*big.Int)))

	out, err = th.CallBatch("cpytest", "big_to_text", []any{x})
	require.NoError(t, err, "Python computes on the received int")
	pair := out[0].([]any)
	assert.Equal(t, text, pair[0])
	assert.Equal(t, 0, new(big.Int).Add(x, big.NewInt(1)).Cmp(pair[1].(*big.Int)))

	out, err = th.CallBatch("cpytest", "big_from_text", []any{"-" + text})
	require.NoError(t, err, "an int made in Python reaches Go")
	assert.Equal(t, 0, neg.Cmp(out[0].(*big.Int)))
}

// TestMultiprocessingSpawns: multiprocessing in the embedded interpreter
// spawns the real Python, never forks the Go process.
func TestMultiprocessingSpawns(t *testing.T) {
	r := rt(t)
	th := thread(t)
	out, err := th.CallBatch("cpytest", "start_method", []any{0})
	require.NoError(t, err)
	require.Equal(t, []any{"spawn"}, out, "never fork: the rest of this test would fork the Go process")

	out, err = th.CallBatch("cpytest", "spawn_square", []any{7})
	require.NoError(t, err)
	assert.Equal(t, []any{[]any{int64(49), r.Executable()}}, out, "a spawned child ran the real interpreter")
}

var countedRuns atomic.Int64

// TestImportsCounts: the import counter moves when a module is imported,
// and only then.
func TestImportsCounts(t *testing.T) {
	r := rt(t)
	dir := t.TempDir()
	mod := fmt.Sprintf("counted_mod_%d", countedRuns.Add(1)) // new in each run of the test
	require.NoError(t, os.WriteFile(filepath.Join(dir, mod+".py"), []byte("def f(b):\n    return b\n"), 0o644))
	require.NoError(t, r.AddPaths(dir))
	th := thread(t)
	_, err := th.CallBatch("cpytest", "echo", nil)
	require.NoError(t, err)

	before := r.Imports()
	_, err = th.CallBatch("cpytest", "echo", []any{1})
	require.NoError(t, err)
	assert.Equal(t, before, r.Imports(), "a call that imports nothing")
	_, err = th.CallBatch(mod, "f", []any{1})
	require.NoError(t, err)
	after := r.Imports()
	assert.Greater(t, after, before, "importing a module counts")
	_, err = th.CallBatch(mod, "f", []any{1})
	require.NoError(t, err)
	assert.Equal(t, after, r.Imports(), "an imported module is not imported again")
}

// TestUnusualExceptions: an exception whose str() raises or holds a lone
// surrogate, or whose class has no __module__, still comes back with its
// type, and the thread keeps serving.
func TestUnusualExceptions(t *testing.T) {
	th := thread(t)
	var exc *cpython.Exception

	_, err := th.CallBatch("cpytest", "raise_kind", []any{"unprintable"})
	require.ErrorAs(t, err, &exc)
	assert.Equal(t, "cpytest.Unprintable", exc.Type)
	assert.Equal(t, "<exception str() failed>", exc.Message)
	assert.Contains(t, exc.Traceback, "in raise_kind")

	_, err = th.CallBatch("cpytest", "raise_kind", []any{"surrogate"})
	require.ErrorAs(t, err, &exc)
	assert.Equal(t, "ValueError", exc.Type)
	assert.Equal(t, `bad \udc80 byte`, exc.Message, "the message is kept, its lone surrogate escaped")
	assert.Contains(t, exc.Traceback, "in raise_kind")

	_, err = th.CallBatch("cpytest", "raise_kind", []any{"nameless"})
	require.ErrorAs(t, err, &exc)
	assert.Equal(t, "Nameless", exc.Type)
	assert.Equal(t, "no module", exc.Message)

	out, err := th.CallBatch("cpytest", "echo", []any{"still serving"})
	require.NoError(t, err)
	assert.Equal(t, []any{"still serving"}, out)
}

//go:build cgo

package thread_test

import (
	"context"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/slither-go/slither/internal/gilext"
	"github.com/slither-go/slither/pools"
	"github.com/slither-go/slither/pools/thread"
	"github.com/slither-go/slither/telemetry"
)

const (
	gilChildEnv = "SLITHER_TEST_THREAD_GIL_DIR"
	gilModeEnv  = "SLITHER_TEST_THREAD_GIL_MODE" // the child's pool mode
)

// inGILChild runs test name in a child process per mode, with the
// GIL-enabling test extension built into a directory on its sys.path: the
// GIL cannot be turned off again in a process. In the child, it runs
// child with that directory and the mode instead.
func inGILChild(t *testing.T, name string, child func(t *testing.T, dir string, mode thread.Mode)) {
	if dir := os.Getenv(gilChildEnv); dir != "" {
		mode := thread.Direct
		if os.Getenv(gilModeEnv) == thread.Dedicated.String() {
			mode = thread.Dedicated
		}
		child(t, dir, mode)
		return
	}
	python := newPool(t, thread.Direct, 1).Runtime().Executable() // the headers of the embedded interpreter itself
	dir := t.TempDir()
	gilext.Build(t, python, dir)

	eachMode(t, func(t *testing.T, mode thread.Mode) {
		cmd := exec.Command(os.Args[0], "-test.run=^"+name+"$", "-test.count=1", "-test.v", "-test.timeout=2m")
		cmd.Env = append(os.Environ(), gilChildEnv+"="+dir, gilModeEnv+"="+mode.String())
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "child:\n%s", out)
		assert.Contains(t, string(out), "--- PASS: "+name)
	})
}

// TestLateImportTurningGILOnIsSeenAtOnce: a module that imports a
// GIL-enabling extension on its second call only: the pool sees the GIL
// turn on right after that batch, and a telemetry handler that asks the
// pool about it meanwhile does not wedge the worker.
func TestLateImportTurningGILOnIsSeenAtOnce(t *testing.T) {
	inGILChild(t, "TestLateImportTurningGILOnIsSeenAtOnce", lateImportChild)
}

// TestGILCheckOfImportingBatch: another batch that ends while a batch's
// import of a GIL-enabling extension has begun (the interpreter counted
// it) but not yet turned the GIL on checks the GIL too early; that check
// must not stand in for the importing batch's own, which must still see
// the GIL on before its Submit returns.
func TestGILCheckOfImportingBatch(t *testing.T) {
	inGILChild(t, "TestGILCheckOfImportingBatch", func(t *testing.T, dir string, mode thread.Mode) {
		p, err := thread.New(thread.Options{Mode: mode, Workers: 2, Paths: []string{"testdata", dir}})
		require.NoError(t, err)
		defer func() { require.NoError(t, p.Close(context.Background())) }()
		require.False(t, p.GILEnabled(), "the child starts with the GIL off")
		// A bound on the failure mode only (a wedged worker).
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_, err = p.Submit(ctx, pools.Batch{Module: "gillate", Function: "noop", Items: []any{1}})
		require.NoError(t, err)

		imported := make(chan error, 1)
		go func() {
			_, err := p.Submit(ctx, pools.Batch{Module: "gillate", Function: "gated_import", Items: []any{1}})
			imported <- err
		}()
		execPy(t, p, "import gillate\nassert gillate.importing.wait(30)\n")
		// On the other worker, after the import was counted.
		_, err = p.Submit(ctx, pools.Batch{Module: "gillate", Function: "noop", Items: []any{2}})
		require.NoError(t, err)
		require.False(t, p.GILEnabled(), "the extension has not run yet")
		execPy(t, p, "import gillate; gillate.go.set()")
		require.NoError(t, <-imported)
		assert.True(t, p.GILEnabled(), "the importing batch's Submit returned after a check")
		assert.Equal(t, "_nogil_ext", p.GILEnabledBy())
	})
}

func lateImportChild(t *testing.T, dir string, mode thread.Mode) {
	bus := telemetry.New(nil)
	var p *thread.Pool
	var mu sync.Mutex
	var seen []thread.GILChange
	var by string
	require.NoError(t, bus.Attach("gil", func(telemetry.Event, telemetry.Measurements, telemetry.Metadata) {
		// Asking the pool from the handler must not deadlock it.
		changes, enabledBy := p.GILChanges(), p.GILEnabledBy()
		mu.Lock()
		seen, by = changes, enabledBy
		mu.Unlock()
	}, telemetry.RuntimeGILChanged))
	var err error
	p, err = thread.New(thread.Options{Mode: mode, Workers: 2, Paths: []string{"testdata", dir}, Telemetry: bus})
	require.NoError(t, err)
	defer func() { require.NoError(t, p.Close(context.Background())) }()
	require.False(t, p.GILEnabled(), "the child starts with the GIL off")

	// A bound on the failure mode only (a wedged worker): passing needs
	// the results, however long they take.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b := pools.Batch{Module: "gillate", Function: "late_import", Items: []any{1}}
	_, err = p.Submit(ctx, b)
	require.NoError(t, err)
	assert.False(t, p.GILEnabled(), "the first call imports nothing")
	_, err = p.Submit(ctx, b)
	require.NoError(t, err)
	assert.True(t, p.GILEnabled(), "the batch that imported the extension is followed by a check")
	assert.Equal(t, "_nogil_ext", p.GILEnabledBy())
	ch := p.GILChanges()
	require.Len(t, ch, 1)
	assert.Equal(t, thread.GILChange{Enabled: true, Module: "_nogil_ext", During: "gillate", At: ch[0].At}, ch[0])

	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, ch, seen, "the handler read the change it was told of")
	assert.Equal(t, "_nogil_ext", by)
}

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

// TestLateImportTurningGILOnIsSeenAtOnce: a module that imports a
// GIL-enabling extension on its second call only: the pool sees the GIL
// turn on right after that batch, and a telemetry handler that asks the
// pool about it meanwhile does not wedge the worker. In a child process:
// the GIL cannot be turned off again in a process.
func TestLateImportTurningGILOnIsSeenAtOnce(t *testing.T) {
	if dir := os.Getenv(gilChildEnv); dir != "" {
		lateImportChild(t, dir, os.Getenv(gilModeEnv))
		return
	}
	python := newPool(t, thread.Direct, 1).Runtime().Executable() // the headers of the embedded interpreter itself
	dir := t.TempDir()
	gilext.Build(t, python, dir)

	eachMode(t, func(t *testing.T, mode thread.Mode) {
		cmd := exec.Command(os.Args[0], "-test.run=^TestLateImportTurningGILOnIsSeenAtOnce$", "-test.count=1", "-test.v", "-test.timeout=2m")
		cmd.Env = append(os.Environ(), gilChildEnv+"="+dir, gilModeEnv+"="+mode.String())
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "child:\n%s", out)
		assert.Contains(t, string(out), "--- PASS: TestLateImportTurningGILOnIsSeenAtOnce")
	})
}

func lateImportChild(t *testing.T, dir, modeName string) {
	mode := thread.Direct
	if modeName == thread.Dedicated.String() {
		mode = thread.Dedicated
	}
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

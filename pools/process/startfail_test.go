package process_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/slither-go/slither/pools"
	"github.com/slither-go/slither/pools/process"
	"github.com/slither-go/slither/telemetry"
)

// workerLog collects a pool's pool.worker.* events.
type workerLog struct {
	mu       sync.Mutex
	restarts int
	exits    []telemetry.Metadata
	exited   chan telemetry.Metadata // each exit, if not nil (never blocks)
}

func (w *workerLog) attach(t *testing.T) *telemetry.Bus {
	t.Helper()
	bus := telemetry.New(quiet())
	require.NoError(t, bus.Attach("test", func(ev telemetry.Event, _ telemetry.Measurements, md telemetry.Metadata) {
		w.mu.Lock()
		defer w.mu.Unlock()
		switch ev {
		case telemetry.PoolWorkerRestart:
			w.restarts++
		case telemetry.PoolWorkerExit:
			w.exits = append(w.exits, md)
			select {
			case w.exited <- md:
			default:
			}
		}
	}, "pool.worker.*"))
	return bus
}

// TestStartFailureEmitsExit: a worker that cannot even be started (its
// Python does not exist) ends in one pool.worker.exit, classed
// start-failed, with no pid.
func TestStartFailureEmitsExit(t *testing.T) {
	var w workerLog
	o := opts(2)
	o.Name = "process/x"
	o.Python = filepath.Join(t.TempDir(), "no-such-python")
	o.Telemetry = w.attach(t)
	_, err := process.New(context.Background(), o)
	require.ErrorIs(t, err, process.ErrStart)

	w.mu.Lock()
	defer w.mu.Unlock()
	require.Len(t, w.exits, 2, "one exit per worker that failed to start")
	workers := map[any]bool{}
	for _, md := range w.exits {
		assert.Equal(t, pools.ExitStartFailed, md["class"])
		assert.Equal(t, 0, md["pid"], "no process started")
		assert.Equal(t, "process/x", md["pool"])
		assert.Equal(t, "process", md["kind"])
		assert.Contains(t, md["reason"], "no-such-python")
		workers[md["worker"]] = true
	}
	assert.Equal(t, map[any]bool{0: true, 1: true}, workers)
}

// TestFailedRestartsEachEmitExit: once the worker's Python is gone, each
// restart of a crashed worker fails to start its process, and each
// pool.worker.restart has its pool.worker.exit (start-failed, no pid; or
// closed for the one Close cancelled).
func TestFailedRestartsEachEmitExit(t *testing.T) {
	// The pool's Python is a script that runs the real one: removed, the
	// next start fails in exec.
	py := filepath.Join(t.TempDir(), "python")
	require.NoError(t, os.WriteFile(py, fmt.Appendf(nil, "#!/bin/sh\nexec %q \"$@\"\n", testPython()), 0o755))
	w := workerLog{exited: make(chan telemetry.Metadata, 16)}
	o := opts(1)
	o.Python = py
	o.Telemetry = w.attach(t)
	p, err := process.New(context.Background(), o)
	require.NoError(t, err)
	assert.Equal(t, []any{"up"}, submit(t, p, batch("echo", "up")))

	require.NoError(t, os.Remove(py))
	require.NoError(t, syscall.Kill(pids(p)[0], syscall.SIGKILL))
	for failed := false; !failed; { // the crash, then the first failed restart
		select {
		case md := <-w.exited:
			failed = md["class"] == pools.ExitStartFailed
		case <-time.After(time.Minute): // a safety net, not a clock the test reads
			t.Fatal("no failed restart within a minute")
		}
	}
	require.NoError(t, p.Close(context.Background())) // waits for every start under way

	w.mu.Lock()
	defer w.mu.Unlock()
	var crashes, startExits int
	for _, md := range w.exits {
		switch md["class"] {
		case pools.ExitCrash:
			crashes++
		case pools.ExitStartFailed, pools.ExitClosed:
			assert.Equal(t, 0, md["pid"], "%v", md)
			startExits++
		default:
			t.Errorf("unexpected exit %v", md)
		}
	}
	assert.Equal(t, 1, crashes)
	assert.Positive(t, w.restarts)
	assert.Equal(t, w.restarts, startExits, "each restart ends in an exit")
}

// TestCancelledStartIsClosed: a start cancelled before its handshake (the
// caller's context ended, as Close ends a restart's) is classed closed,
// not start-failed.
func TestCancelledStartIsClosed(t *testing.T) {
	var w workerLog
	o := opts(1)
	o.Telemetry = w.attach(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := process.New(ctx, o)
	require.ErrorIs(t, err, process.ErrStart)
	require.ErrorContains(t, err, "start cancelled")

	w.mu.Lock()
	defer w.mu.Unlock()
	require.Len(t, w.exits, 1)
	assert.Equal(t, pools.ExitClosed, w.exits[0]["class"])
	assert.NotEqual(t, 0, w.exits[0]["pid"], "the process had started")
}

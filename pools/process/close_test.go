package process_test

import (
	"context"
	"log/slog"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/slither-go/slither/pools/process"
	"github.com/slither-go/slither/telemetry"
)

// Close asks a worker to exit, then sends SIGTERM, then SIGKILL, StopGrace
// apart: a worker that ignores the first two (stubborn_worker says so on
// stderr as each arrives) is killed by the third.
func TestCloseEscalatesToSIGKILL(t *testing.T) {
	defer process.SetWorkerModule("stubborn_worker")()
	bus, events := newWorkerEvents(t)
	lines := make(chan string, 16)
	o := opts(1)
	o.StopGrace = time.Second // ample for the worker to say it ignored each
	o.Telemetry = bus
	o.Logger = slog.New(recordHandler{func(r slog.Record) {
		if strings.HasPrefix(r.Message, "stubborn_worker: ") {
			lines <- strings.TrimPrefix(r.Message, "stubborn_worker: ")
		}
	}})
	p, err := process.New(context.Background(), o)
	require.NoError(t, err)
	pid := pids(p)[0]
	assert.Equal(t, []any{"ok"}, submit(t, p, batch("echo", "ok")))

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	require.NoError(t, p.Close(ctx))
	// Close waits for the worker's output: every line is in.
	close(lines)
	var said []string
	for l := range lines {
		said = append(said, l)
	}
	assert.ElementsMatch(t, []string{"shutdown ignored", "SIGTERM ignored"}, said, "asked to exit, and sent SIGTERM")
	for {
		m := <-events // the exit event came before Close returned
		if m["event"] == string(telemetry.PoolWorkerExit) {
			assert.Equal(t, pid, m["pid"])
			assert.Equal(t, int(syscall.SIGKILL), m["signal"], "then SIGKILL ended it")
			break
		}
	}
	assert.False(t, alive(pid))
}

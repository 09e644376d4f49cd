package process_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/slither-go/slither/pools"
)

// A process that user code started and that holds the worker's output pipe
// must not delay noticing the worker's death: the pool watches the process,
// not only the pipe. One in the worker's process group dies with it; one
// that left the group is waited for only briefly.
func TestCrashNoticedWhileAChildHoldsThePipe(t *testing.T) {
	for _, newSession := range []bool{false, true} {
		t.Run(fmt.Sprintf("new_session=%v", newSession), func(t *testing.T) {
			p := newPool(t, opts(1))
			pidfile := filepath.Join(t.TempDir(), "pid")
			// The child sleeps 600 s: waiting for the pipe to close would
			// outlast this deadline.
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			_, err := p.Submit(ctx, batch("crash_leaking_pipe", pidfile, newSession))
			require.ErrorIs(t, err, pools.ErrWorkerCrashed)
			require.NoError(t, ctx.Err())
			b, err := os.ReadFile(pidfile)
			require.NoError(t, err)
			child, err := strconv.Atoi(string(b))
			require.NoError(t, err)
			if newSession {
				t.Cleanup(func() { _ = syscall.Kill(child, syscall.SIGKILL) })
				assert.True(t, alive(child), "out of the worker's group, nothing kills it")
			} else {
				assert.True(t, waitGone(child, 20*time.Second), "killed with the worker's group")
			}
			assert.Equal(t, []any{"next"}, submit(t, p, batch("echo", "next")))
		})
	}
}

// Processes user code started in a worker end when the pool stops it.
func TestCloseEndsWorkersChildren(t *testing.T) {
	p := newPool(t, opts(1))
	out := submit(t, p, batch("spawn_grandchild", 1, 2))
	require.NoError(t, p.Close(context.Background()))
	for _, v := range out {
		pid := int(v.(int64))
		if !assert.True(t, waitGone(pid, 20*time.Second), "grandchild %d is gone", pid) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// Review 1, item 7: the guardian is told to forget a dead worker's process
// group while the worker is still a zombie, before it is reaped: until
// then no other process can get that group id, so a guardian acting on its
// list (the Go process killed in between) can never kill someone else's.
func TestGuardianForgetsAGroupBeforeItsReap(t *testing.T) {
	p := newPool(t, opts(1))
	pid := pids(p)[0]
	states := make(chan string, 1)
	require.True(t, p.ObserveGuardian(func(op byte, pgid int) {
		if op != '-' || pgid != pid {
			return
		}
		if st, ok := procStat(pid); ok {
			states <- st[0]
		} else {
			states <- "reaped"
		}
	}), "the pool has a guardian")
	require.NoError(t, syscall.Kill(pid, syscall.SIGKILL))
	select {
	case st := <-states:
		assert.Equal(t, "Z", st, "the worker is unregistered as a zombie, not after its reap")
	case <-time.After(time.Minute):
		t.Fatal("the guardian was not told within a minute")
	}
}

//go:build cgo

package cpython_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/slither-go/slither/cpython"
	"github.com/slither-go/slither/python"
)

// Tests of a Caller's context, interrupts, and the per-OS-thread states'
// life (thread exit, sharing with a Thread).

func withSlither(t *testing.T) {
	t.Helper()
	dir, err := python.Dir()
	require.NoError(t, err)
	require.NoError(t, rt(t).AddPaths(dir))
}

// TestCallerContext: slither.context() shows what SetContext and SetTrace
// set, during the calls that follow, read from C: and nothing once cleared.
func TestCallerContext(t *testing.T) {
	withSlither(t)
	c := caller(t)
	read := func(c *cpython.Caller) []any {
		t.Helper()
		out, err := c.CallBatch("cpytest", "ctx", []any{0})
		require.NoError(t, err)
		return out[0].([]any)
	}
	none := []any{nil, "none", nil, nil, nil, false}
	assert.Equal(t, none, read(c), "a Caller whose context was never set: not in a pool")

	tr := [16]byte{0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36}
	sp := [8]byte{0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7}
	c.SetContext(3, "sess-1")
	c.SetTrace(tr, sp)
	assert.Equal(t, []any{int64(3), "thread", "sess-1", "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", true}, read(c))

	// The session's state is the (session, worker) dict, as in a pool.
	out, err := c.CallBatch("cpytest", "session_put", []any{[]any{"a", 1}})
	require.NoError(t, err)
	assert.Equal(t, []any{[]any{"a", int64(1)}}, out)
	out, err = c.CallBatch("cpytest", "session_put", []any{[]any{"b", 2}})
	require.NoError(t, err)
	assert.Equal(t, []any{[]any{"a", int64(1)}, []any{"b", int64(2)}}, out, "kept between calls")
	c.SetContext(4, "sess-1")
	out, err = c.CallBatch("cpytest", "session_put", []any{[]any{"c", 3}})
	require.NoError(t, err)
	assert.Equal(t, []any{[]any{"c", int64(3)}}, out, "another worker's dict")
	_, err = c.Call("slither._context", "_drop_session", "sess-1")
	require.NoError(t, err)

	c.SetContext(5, "")
	c.ClearTrace()
	assert.Equal(t, []any{int64(5), "thread", nil, nil, nil, true}, read(c))
	c.SetContext(-1, "")
	assert.Equal(t, none, read(c), "cleared")

	// Nested calls: the inner Caller's context while it runs, the outer's
	// again after.
	inner := caller(t)
	inner.SetContext(9, "inner")
	c.SetContext(1, "outer")
	c.SetHost(func(name string, args []any) (any, error) {
		out, err := inner.CallBatch("cpytest", "ctx", []any{0})
		if err != nil {
			return nil, err
		}
		return out[0], nil
	})
	out, err = c.CallBatch("cpytest", "ctx_around_host", []any{[]any{"x", []any{}}})
	require.NoError(t, err)
	outer := []any{int64(1), "thread", "outer", nil, nil, true}
	assert.Equal(t, []any{outer, []any{[]any{int64(9), "thread", "inner", nil, nil, true}}, outer}, out)

	// A Thread's calls show their own (Python-bound) context, not a
	// Caller's that ran before on the same OS thread.
	th := thread(t)
	_, err = c.CallBatch("cpytest", "ctx", []any{0})
	require.NoError(t, err)
	out, err = th.CallBatch("cpytest", "ctx", []any{0})
	require.NoError(t, err)
	assert.Equal(t, none, out[0])
}

// TestCallerInterrupt: an interrupt raises Cancelled in the running call,
// from the interrupting goroutine's own thread state; one that comes while
// idle, or as a call ends, never hits the next call.
func TestCallerInterrupt(t *testing.T) {
	c := caller(t)
	started := make(chan struct{}, 1)
	var nestedErr error
	c.SetHost(func(name string, args []any) (any, error) {
		switch name {
		case "started":
			started <- struct{}{}
		case "last": // interrupted as Python is about to return
			c.Interrupt()
		case "nested": // interrupted, then calls in again: the nested call stops at once
			c.Interrupt()
			_, nestedErr = c.CallBatch("cpytest", "echo", []any{1})
		}
		return nil, nil
	})
	done := make(chan error, 1)
	go func() {
		_, err := c.CallBatch("cpytest", "started_then_spin", []any{1})
		done <- err
	}()
	<-started
	assert.NotZero(t, c.TID(), "the running call's OS thread")
	c.Interrupt()
	err := <-done
	require.ErrorIs(t, err, cpython.ErrCancelled)
	var exc *cpython.Exception
	require.ErrorAs(t, err, &exc)
	assert.Equal(t, "_slither_host.Cancelled", exc.Type)
	assert.Contains(t, exc.Traceback, "started_then_spin")

	c.Interrupt() // idle: nothing to hit
	c.ClearInterrupt()
	out, err := c.CallBatch("cpytest", "echo", []any{"after"})
	require.NoError(t, err)
	assert.Equal(t, []any{"after"}, out)

	// Sent as the call ends: it raises there, or it is dropped before the
	// call returns; either way the next call runs clean.
	for range 20 {
		_, err = c.CallBatch("cpytest", "host_last", []any{0})
		if err != nil {
			require.ErrorIs(t, err, cpython.ErrCancelled)
		}
		out, err = c.CallBatch("cpytest", "echo", []any{"clean"})
		require.NoError(t, err, "a late interrupt hit the next call")
		assert.Equal(t, []any{"clean"}, out)
	}

	_, err = c.CallBatch("cpytest", "host", []any{[]any{"nested", []any{}}})
	require.ErrorIs(t, nestedErr, cpython.ErrCancelled, "a call that starts after an interrupt stops at once")
	require.ErrorIs(t, err, cpython.ErrCancelled, "the outer call is interrupted too")
	out, err = c.CallBatch("cpytest", "echo", []any{"clean"})
	require.NoError(t, err)
	assert.Equal(t, []any{"clean"}, out)
}

// TestCallerCallBatchContext: a context cancelled before or during the call.
func TestCallerCallBatchContext(t *testing.T) {
	c := caller(t)
	ctx, cancel := context.WithCancel(context.Background())
	c.SetHost(func(name string, args []any) (any, error) {
		cancel()
		return nil, nil
	})
	_, err := c.CallBatchContext(ctx, "cpytest", "started_then_spin", []any{1})
	require.ErrorIs(t, err, cpython.ErrCancelled)
	_, err = c.CallBatchContext(ctx, "cpytest", "echo", []any{1})
	require.ErrorIs(t, err, context.Canceled, "already cancelled: the call does not start")
	out, err := c.CallBatchContext(context.Background(), "cpytest", "echo", []any{1})
	require.NoError(t, err)
	assert.Equal(t, []any{int64(1)}, out)
	out, err = c.CallBatch("cpytest", "echo", []any{2})
	require.NoError(t, err)
	assert.Equal(t, []any{int64(2)}, out)
}

// TestCallerThreadExit: goroutines that exit while locked to their OS
// thread after direct calls take the thread with them, and the pthread key
// destructor deletes its Python thread state: threading.local values are
// cleared, and a finalizer that makes a host call meanwhile gets HostError
// (C refuses it: Go has let go of the thread) instead of crashing.
func TestCallerThreadExit(t *testing.T) {
	r := rt(t)
	runtime.LockOSThread() // the counts below are taken on one thread with a state
	defer runtime.UnlockOSThread()
	out, err := caller(t).CallBatch("cpytest", "fin_results", []any{0})
	require.NoError(t, err)
	fins := len(out)
	states := cpython.ThreadStates()

	created, deleted := cpython.StateCounts()

	const k = 8
	type result struct {
		err    error
		onMain bool
	}
	results := make(chan result, k)
	release := make(chan struct{})
	defer close(release)
	start := func() {
		go func() {
			runtime.LockOSThread() // never unlocked: the thread exits with the goroutine
			// Go never exits the process's main thread (it parks it
			// instead): a goroutine that landed there holds it, so that the
			// others run elsewhere, and lets go of it at the end.
			if syscall.Gettid() == os.Getpid() {
				results <- result{onMain: true}
				<-release
				runtime.UnlockOSThread()
				return
			}
			c := r.NewCaller()
			c.SetHost(func(string, []any) (any, error) { return nil, nil })
			_, err := c.CallBatch("cpytest", "tlocal", []any{"finalizer"})
			if err == nil {
				err = c.Close()
			}
			results <- result{err: err}
		}()
	}
	for range k {
		start()
	}
	exited := 0
	for exited < k {
		res := <-results
		require.NoError(t, res.err)
		if res.onMain {
			start() // in its place
			continue
		}
		exited++
	}
	require.True(t, cpython.WaitDeleted(deleted+uint64(exited), 60_000), "the destructor deleted every exited thread's state")
	created2, deleted2 := cpython.StateCounts()
	assert.Equal(t, deleted+uint64(exited), deleted2, "one state per exited thread")
	// The exited threads' states are gone from the interpreter, whether
	// they were made for this test or earlier on the same OS threads.
	assert.Equal(t, states+int(created2-created)-exited, cpython.ThreadStates())

	c := caller(t)
	out, err = c.CallBatch("cpytest", "fin_results", []any{0})
	require.NoError(t, err)
	require.Len(t, out, fins+exited, "each exited thread's finalizer ran")
	for _, f := range out[fins:] {
		assert.Equal(t, "HostError: host calls are refused while this OS thread exits (a finalizer ran as its Python thread state was deleted)", f)
	}
	_, err = c.CallBatch("cpytest", "gc_collect", []any{0})
	require.NoError(t, err, "the interpreter still works, a GC included")
}

// TestCallerInThread: a Thread's host function calls a Caller on the same
// OS thread (a Dedicated pool's host function submitting to a Direct pool):
// the Caller runs on the Thread's thread state (no second one), and
// interrupting it leaves the Thread's own call alone.
func TestCallerInThread(t *testing.T) {
	th := thread(t)
	c := caller(t)
	_, err := th.CallBatch("cpytest", "mark", []any{"thread's"})
	require.NoError(t, err)
	states := cpython.ThreadStates()
	started := make(chan struct{}, 1)
	var tid int
	c.SetHost(func(name string, args []any) (any, error) {
		switch name {
		case "started":
			started <- struct{}{}
		case "tid":
			tid = c.TID()
		}
		return nil, nil
	})
	th.SetHost(func(name string, args []any) (any, error) {
		if name == "spin" {
			go func() { <-started; c.Interrupt() }()
			_, err := c.CallBatch("cpytest", "started_then_spin", []any{0})
			return errors.Is(err, cpython.ErrCancelled), nil
		}
		out, err := c.CallBatch("cpytest", "ident_host", []any{[]any{"tid", []any{}}})
		if err != nil {
			return nil, err
		}
		return out[0], nil
	})
	out, err := th.CallBatch("cpytest", "ident_host", []any{[]any{"ident", []any{}}})
	require.NoError(t, err)
	assert.Equal(t, out[0], out[1], "the nested Caller call runs on the Thread's Python thread")
	assert.Equal(t, "thread's", out[1].([]any)[1])
	assert.Equal(t, th.TID(), tid)
	assert.Equal(t, states, cpython.ThreadStates(), "no second thread state for the OS thread")

	out, err = th.CallBatch("cpytest", "host", []any{[]any{"spin", []any{}}, []any{"ident", []any{}}})
	require.NoError(t, err, "the Thread's call is not hit by the nested call's interrupt")
	assert.Equal(t, true, out[0], "the nested call was cancelled")
	th.ClearInterrupt()
	out, err = th.CallBatch("cpytest", "echo", []any{"after"})
	require.NoError(t, err)
	assert.Equal(t, []any{"after"}, out)
}

const gilOnEnv = "SLITHER_TEST_GIL_ON"

// TestCallerGILOn: direct calls in an interpreter running with its GIL
// (as a GIL build would). In a child process: a process has one
// interpreter, and it runs without the GIL here.
func TestCallerGILOn(t *testing.T) {
	if os.Getenv(gilOnEnv) != "" {
		require.True(t, rt(t).GILEnabled(), "the child runs with the GIL")
		return
	}
	tests := "^(TestCallerGILOn|TestCallerCalls|TestCallerHostCalls|TestCallerShared|TestCallerNested|TestCallerInterrupt|TestCallerThreadExit|TestCallerInThread|TestThreadInsideCaller)$"
	cmd := exec.Command(os.Args[0], "-test.run="+tests, "-test.count=1", "-test.v", "-test.timeout=5m")
	cmd.Env = append(os.Environ(), gilOnEnv+"=1")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "child:\n%s", out)
	for _, name := range strings.Split(strings.Trim(tests, "^()$"), "|") {
		assert.Contains(t, string(out), "--- PASS: "+name+" ", "child:\n%s", out)
	}
}

// TestThreadInsideCaller: a Caller's host function opens a Thread on the
// same OS thread, calls it and closes it: the Thread shares the running
// call's state, and closing it keeps that state (a call runs below), so the
// Caller's call goes on. A Thread closed from its own host function refuses.
func TestThreadInsideCaller(t *testing.T) {
	c := caller(t)
	var closeErr, busyErr error
	c.SetHost(func(name string, args []any) (any, error) {
		th, err := rt(t).NewThread()
		if err != nil {
			return nil, err
		}
		th.SetHost(func(string, []any) (any, error) {
			busyErr = th.Close()
			return nil, nil
		})
		out, err := th.CallBatch("cpytest", "ident_host", []any{[]any{"x", []any{}}})
		closeErr = th.Close()
		if err != nil {
			return nil, err
		}
		return out[0], nil
	})
	out, err := c.CallBatch("cpytest", "ident_host", []any{[]any{"x", []any{}}, []any{"x", []any{}}})
	require.NoError(t, err, "the Caller's call survives the Thread's close")
	require.NoError(t, closeErr)
	require.ErrorIs(t, busyErr, cpython.ErrBusy)
	assert.Equal(t, out[0], out[1], "the Thread ran on the call's Python thread")
	assert.Equal(t, out[1], out[2])
}

//go:build cgo

package cpython_test

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/slither-go/slither/cpython"
)

// caller returns a Caller closed at cleanup.
func caller(t testing.TB) *cpython.Caller {
	t.Helper()
	c := rt(t).NewCaller()
	t.Cleanup(func() { require.NoError(t, c.Close()) })
	return c
}

func TestCallerCalls(t *testing.T) {
	c := caller(t)
	in := []any{nil, true, int64(-3), 2.5, "héllo", []byte{0, 255}, []any{int64(1), "x"}, map[string]any{"k": "v"}}
	out, err := c.CallBatch("cpytest", "echo", in)
	require.NoError(t, err)
	assert.Equal(t, in, out)
	out, err = c.CallBatch("cpytest", "echo", nil)
	require.NoError(t, err)
	assert.Empty(t, out)

	v, err := c.Call("cpytest", "echo_args", int64(1), "two")
	require.NoError(t, err)
	assert.Equal(t, []any{int64(1), "two"}, v)

	var exc *cpython.Exception
	_, err = c.CallBatch("cpytest", "boom", []any{"x"})
	require.ErrorAs(t, err, &exc)
	assert.Equal(t, "ValueError", exc.Type)
	assert.Contains(t, exc.Traceback, "in boom")
	_, err = c.CallBatch("no_such_module_xyz", "f", nil)
	require.ErrorAs(t, err, &exc)
	assert.Equal(t, "ModuleNotFoundError", exc.Type)
	_, err = c.CallBatch("cpytest", "echo", []any{make(chan int)})
	assert.ErrorIs(t, err, cpython.ErrConversion)
	_, err = c.Call("cpytest", "make", "set")
	assert.ErrorIs(t, err, cpython.ErrConversion)
	_, err = c.CallBatch("cpytest", "not_a_list", []any{1})
	assert.ErrorContains(t, err, "a batch function must return a list or tuple")

	out, err = c.CallBatch("cpytest", "echo", []any{"still serving"})
	require.NoError(t, err)
	assert.Equal(t, []any{"still serving"}, out)
	assert.Equal(t, 0, c.TID(), "idle")

	require.NoError(t, c.Close())
	require.NoError(t, c.Close(), "Close is idempotent")
	_, err = c.CallBatch("cpytest", "echo", nil)
	assert.ErrorIs(t, err, cpython.ErrClosed)
	_, err = c.Call("cpytest", "echo_args")
	assert.ErrorIs(t, err, cpython.ErrClosed)
	c.Interrupt() // no-ops once closed
	c.ClearInterrupt()
	assert.Equal(t, 0, c.TID())
}

func TestCallerHostCalls(t *testing.T) {
	c := caller(t)
	out, err := c.CallBatch("cpytest", "host", []any{[]any{"x", []any{}}})
	require.NoError(t, err)
	assert.Equal(t, []any{"error: no Go host function serves this Python thread (host calls work inside pool workers)"}, out,
		"refused in C: no host function set")

	var tids []int
	c.SetHost(func(name string, args []any) (any, error) {
		tids = append(tids, c.TID())
		switch name {
		case "add":
			return args[0].(int64) + args[1].(int64), nil
		case "panic":
			panic("boom")
		}
		return nil, errors.New("no host function " + name)
	})
	out, err = c.CallBatch("cpytest", "host", []any{
		[]any{"add", []any{2, 40}}, []any{"nope", []any{}}, []any{"panic", []any{}},
	})
	require.NoError(t, err)
	assert.Equal(t, []any{int64(42), "error: no host function nope", "error: the Go host function panicked: boom"}, out)
	require.Len(t, tids, 3)
	assert.NotZero(t, tids[0], "TID names the running call's OS thread")

	c.SetHost(nil)
	out, err = c.CallBatch("cpytest", "host", []any{[]any{"add", []any{1, 1}}})
	require.NoError(t, err)
	assert.Contains(t, out[0], "no Go host function")
}

// TestCallerShared: many goroutines share a few Callers, one call at a
// time each (a Caller is handed around through a channel), on whatever OS
// threads they run.
func TestCallerShared(t *testing.T) {
	r := rt(t)
	const callers, goroutines, calls = 3, 12, 100
	free := make(chan *cpython.Caller, callers)
	for range callers {
		c := r.NewCaller()
		c.SetHost(func(name string, args []any) (any, error) { return args[0], nil })
		free <- c
	}
	defer func() {
		for range callers {
			require.NoError(t, (<-free).Close())
		}
	}()
	var wg sync.WaitGroup
	errs := make(chan error, goroutines)
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range calls {
				c := <-free
				out, err := c.CallBatch("cpytest", "echo", []any{g, i})
				if err == nil && (out[0] != int64(g) || out[1] != int64(i)) {
					err = fmt.Errorf("goroutine %d call %d: got %v", g, i, out)
				}
				if err == nil && i%10 == 0 {
					var h []any
					h, err = c.CallBatch("cpytest", "host", []any{[]any{"echo", []any{g}}})
					if err == nil && h[0] != int64(g) {
						err = fmt.Errorf("host call: got %v", h)
					}
				}
				free <- c
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestCallerNested: a host function calls in again on the same OS thread
// (the same Caller, and another one): the nested calls run on the same
// thread state, pushed on top of the running call, and the innermost
// call's host function serves.
func TestCallerNested(t *testing.T) {
	outer, inner := caller(t), caller(t)
	depth := 0
	inner.SetHost(func(name string, args []any) (any, error) { return "inner host", nil })
	outer.SetHost(func(name string, args []any) (any, error) {
		switch name {
		case "again": // the same Caller, nested
			if depth++; depth < 3 {
				out, err := outer.CallBatch("cpytest", "host", []any{[]any{"again", []any{}}})
				if err != nil {
					return nil, err
				}
				return out[0], nil
			}
			return "bottom", nil
		case "other": // another Caller on this thread
			out, err := inner.CallBatch("cpytest", "host", []any{[]any{"x", []any{}}})
			if err != nil {
				return nil, err
			}
			id, err := inner.CallBatch("cpytest", "ident", []any{0})
			if err != nil {
				return nil, err
			}
			return []any{out[0], id[0]}, nil
		case "ident":
			id, err := outer.CallBatch("cpytest", "ident", []any{0})
			if err != nil {
				return nil, err
			}
			return id[0], nil
		}
		return nil, errors.New("unknown " + name)
	})
	out, err := outer.CallBatch("cpytest", "host", []any{[]any{"ident", []any{}}, []any{"again", []any{}}, []any{"ident", []any{}}})
	require.NoError(t, err)
	assert.Equal(t, "bottom", out[1], "nested three deep in the same Caller")
	assert.Equal(t, out[0], out[2])

	// The outer call's own Python thread (and its threading.local) is the
	// nested call's: mark it from the outer call first, on a locked thread.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	_, err = outer.CallBatch("cpytest", "mark", []any{"outer's thread-local"})
	require.NoError(t, err)
	out, err = outer.CallBatch("cpytest", "ident_host", []any{[]any{"other", []any{}}, []any{"x", []any{}}})
	require.NoError(t, err)
	got := out[1].([]any)
	assert.Equal(t, "inner host", got[0], "the innermost call's host function serves")
	assert.Equal(t, out[0], got[1], "the nested call runs on the outer call's Python thread, threading.local included")
	assert.Equal(t, "error: unknown x", out[2], "the outer host function serves again after the nested call")
}

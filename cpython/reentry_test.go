//go:build cgo

package cpython_test

import (
	"bytes"
	"context"
	"errors"
	"runtime"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/slither-go/slither/cpython"
)

// Tests of what a call's own callbacks (the SetAlloc function, host
// functions run while C writes the result, a context's AfterFunc) may and
// may not do to the call, and of Close racing a call.

// reentrant is what these tests use of a Thread and a Caller alike.
type reentrant interface {
	pyCaller
	SetHost(h cpython.HostFunc)
	Close() error
}

func eachReentrant(t *testing.T, f func(t *testing.T, c reentrant)) {
	t.Run("Thread", func(t *testing.T) {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		f(t, thread(t))
	})
	t.Run("Caller", func(t *testing.T) { f(t, caller(t)) })
}

// requireFilled asserts that b is n bytes, each v.
func requireFilled(t *testing.T, b any, n int, v byte) {
	t.Helper()
	s, ok := b.([]byte)
	require.True(t, ok, "a %T", b)
	require.Len(t, s, n)
	for i, x := range s {
		if x != v {
			t.Fatalf("byte %d is %d, want %d: read from freed or overwritten memory", i, x, v)
		}
	}
}

// TestCallBatchContextLateCancel: ctx cancelled as the call ends (from its
// last host call, so context.AfterFunc has started its goroutine) must not
// interrupt the Caller's next, unrelated call. Without the wait for the
// AfterFunc, its Interrupt lands in the next call almost every time.
func TestCallBatchContextLateCancel(t *testing.T) {
	c := caller(t)
	var cancel context.CancelFunc
	c.SetHost(func(string, []any) (any, error) { cancel(); return nil, nil })
	for i := range 20 {
		var ctx context.Context
		ctx, cancel = context.WithCancel(context.Background())
		_, err := c.CallBatchContext(ctx, "cpytest", "host_last", []any{0})
		if err != nil {
			require.ErrorIs(t, err, cpython.ErrCancelled, "iteration %d", i)
		}
		// Long enough for a stray interrupt to land in it.
		_, err = c.CallBatch("cpytest", "spin_for", []any{0.02})
		require.NoError(t, err, "iteration %d: the next call was interrupted", i)
	}
	cancel()
}

// TestNestedCallFromAlloc: a call of the same Thread/Caller made from its
// SetAlloc function, while the outer result is decoded, is refused with
// ErrBusy instead of reusing (and freeing) what the outer decoder reads;
// the outer result is intact. Another Caller may be called.
func TestNestedCallFromAlloc(t *testing.T) {
	eachReentrant(t, func(t *testing.T, c reentrant) {
		other := caller(t)
		var nestedErr, otherErr error
		asked := 0
		c.SetAlloc(func(n int) []byte {
			if asked++; asked == 1 {
				_, nestedErr = c.CallBatch("cpytest", "fresh_big", []any{[]any{1 << 17, 3}})
				_, otherErr = other.CallBatch("cpytest", "fresh_big", []any{[]any{1 << 17, 4}})
			}
			return make([]byte, n)
		})
		out, err := c.CallBatch("cpytest", "fresh_big", []any{[]any{1 << 20, 7}, []any{1 << 20, 9}})
		require.NoError(t, err)
		requireFilled(t, out[0], 1<<20, 7)
		requireFilled(t, out[1], 1<<20, 9)
		require.ErrorIs(t, nestedErr, cpython.ErrBusy)
		require.NoError(t, otherErr)

		c.SetAlloc(nil)
		out, err = c.CallBatch("cpytest", "fresh_big", []any{[]any{1 << 17, 5}})
		require.NoError(t, err, "usable after")
		requireFilled(t, out[0], 1<<17, 5)
	})
}

// TestCloseFromAlloc: Thread.Close from the SetAlloc function fails with
// ErrBusy (the decoder still reads the Thread's C memory); Caller.Close
// there takes effect when the call returns. Either way the result is intact.
func TestCloseFromAlloc(t *testing.T) {
	eachReentrant(t, func(t *testing.T, c reentrant) {
		var closeErr error
		asked := 0
		c.SetAlloc(func(n int) []byte {
			if asked++; asked == 1 {
				closeErr = c.Close()
			}
			return make([]byte, n)
		})
		out, err := c.CallBatch("cpytest", "fresh_big", []any{[]any{1 << 20, 7}, []any{1 << 20, 9}})
		require.NoError(t, err)
		requireFilled(t, out[0], 1<<20, 7)
		requireFilled(t, out[1], 1<<20, 9)
		if _, ok := c.(*cpython.Thread); ok {
			require.ErrorIs(t, closeErr, cpython.ErrBusy)
			return
		}
		require.NoError(t, closeErr)
		_, err = c.CallBatch("cpytest", "echo", []any{1})
		require.ErrorIs(t, err, cpython.ErrClosed)
	})
}

// TestNestedCallWhileResultWritten: Python code that runs while C writes
// the result (here an exception's __str__) makes a host call whose Go
// function calls the same Thread/Caller: refused with ErrBusy, so the outer
// error record is not overwritten.
func TestNestedCallWhileResultWritten(t *testing.T) {
	eachReentrant(t, func(t *testing.T, c reentrant) {
		var nestedErr error
		c.SetHost(func(string, []any) (any, error) {
			_, nestedErr = c.CallBatch("cpytest", "fresh_big", []any{[]any{1 << 17, 3}})
			return "ran", nestedErr
		})
		_, err := c.CallBatch("cpytest", "raise_nesting", []any{1})
		require.ErrorIs(t, nestedErr, cpython.ErrBusy)
		var exc *cpython.Exception
		require.ErrorAs(t, err, &exc)
		assert.Equal(t, "cpytest._NestingError", exc.Type)
		assert.Contains(t, exc.Message, "refused: ")
		assert.Contains(t, exc.Traceback, "raise_nesting")

		// Nesting during the call itself still works.
		c.SetHost(func(string, []any) (any, error) {
			out, err := c.CallBatch("cpytest", "echo", []any{"inner"})
			if err != nil {
				return nil, err
			}
			return out[0], nil
		})
		out, err := c.CallBatch("cpytest", "host", []any{[]any{"x", []any{}}})
		require.NoError(t, err)
		assert.Equal(t, []any{"inner"}, out)
	})
}

// TestAllocPanic: a SetAlloc function that panics fails the call with an
// error naming it; what C kept is released and the Thread/Caller serves on.
func TestAllocPanic(t *testing.T) {
	eachReentrant(t, func(t *testing.T, c reentrant) {
		before, err := c.Call("cpytest", "big_refcount", 0)
		require.NoError(t, err)
		c.SetAlloc(func(int) []byte { panic("alloc boom") })
		_, err = c.CallBatch("cpytest", "big_results", []any{"ok"})
		require.ErrorContains(t, err, "SetAlloc function panicked: alloc boom")
		boom := errors.New("typed boom")
		c.SetAlloc(func(int) []byte { panic(boom) })
		_, err = c.CallBatch("cpytest", "big_results", []any{"ok"})
		require.ErrorIs(t, err, boom)

		c.SetAlloc(nil)
		after, err := c.Call("cpytest", "big_refcount", 0)
		require.NoError(t, err)
		assert.Equal(t, before, after, "the kept references were released")
		out, err := c.CallBatch("cpytest", "big_results", []any{"ok"})
		require.NoError(t, err)
		assert.Len(t, out[0], 1<<20)
	})
}

// TestCallerCloseRacesCalls: Close from another goroutine while calls
// start: every call either runs or returns ErrClosed, and the Caller's
// memory is freed once, after the last call (the race detector and the C
// side catch a call that used it after).
func TestCallerCloseRacesCalls(t *testing.T) {
	r := rt(t)
	for i := range 200 {
		c := r.NewCaller()
		started := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; ; n++ {
				if n == 1 {
					close(started)
				}
				_, err := c.CallBatch("cpytest", "echo", []any{n})
				if errors.Is(err, cpython.ErrClosed) {
					if n == 0 {
						close(started)
					}
					return
				}
				if err != nil {
					t.Errorf("iteration %d: call %d: %v", i, n, err)
					return
				}
			}
		}()
		<-started
		require.NoError(t, c.Close())
		wg.Wait()
	}
}

// TestCallerSessionNotUTF8: session ids that are not valid UTF-8 stay
// distinct in Python (decoded with surrogateescape), rather than all
// becoming one id with U+FFFD.
func TestCallerSessionNotUTF8(t *testing.T) {
	withSlither(t)
	c := caller(t)
	for _, s := range []string{"a\xff", "a\xfe", "ok"} {
		c.SetContext(1, s)
		out, err := c.CallBatch("cpytest", "session_bytes", []any{0})
		require.NoError(t, err)
		assert.Equal(t, []byte(s), out[0])
	}
}

// TestInterruptSurvivesANestedCall: an outer call interrupted while a call
// of another Caller runs nested on its thread (its host function called
// it) still ends with Cancelled: the nested call's Python may spend the
// async exception, and it is raised again for the outer call. Outer as a
// Caller and as a Thread.
func TestInterruptSurvivesANestedCall(t *testing.T) {
	type outer interface {
		CallBatch(module, name string, items []any) ([]any, error)
		SetHost(cpython.HostFunc)
		Interrupt()
	}
	for _, kind := range []string{"Caller", "Thread"} {
		t.Run(kind, func(t *testing.T) {
			if kind == "Thread" {
				runtime.LockOSThread()
				defer runtime.UnlockOSThread()
			}
			var a outer
			if kind == "Thread" {
				a = thread(t)
			} else {
				a = caller(t)
			}
			b := caller(t)
			started := make(chan struct{}, 1)
			b.SetHost(func(string, []any) (any, error) { started <- struct{}{}; return nil, nil })
			var interrupted sync.WaitGroup
			var errB error
			a.SetHost(func(string, []any) (any, error) {
				interrupted.Add(1)
				go func() { defer interrupted.Done(); <-started; a.Interrupt() }()
				_, errB = b.CallBatch("cpytest", "started_then_spin_bounded", []any{5.0})
				return nil, nil
			})
			_, err := a.CallBatch("cpytest", "host_then_spin", []any{5.0})
			interrupted.Wait()
			require.ErrorIs(t, err, cpython.ErrCancelled, "the outer call ran to its end (nested: %v)", errB)
			// Nothing is left pending for the next calls of either.
			out, err := a.CallBatch("cpytest", "echo", []any{1})
			require.NoError(t, err)
			assert.Equal(t, []any{int64(1)}, out)
			_, err = b.CallBatch("cpytest", "echo", []any{1})
			require.NoError(t, err)
		})
	}
}

// TestStaleThreadInterruptHitsNothingLater: a Thread's call that was
// interrupted (the interrupt landed, no ClearInterrupt after) leaves no
// mark that a later call's nested call would raise again.
func TestStaleThreadInterruptHitsNothingLater(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	a, b := thread(t), caller(t)
	a.SetHost(func(string, []any) (any, error) { a.Interrupt(); return nil, nil })
	_, err := a.CallBatch("cpytest", "started_then_spin_bounded", []any{5.0})
	require.ErrorIs(t, err, cpython.ErrCancelled)
	a.SetHost(func(string, []any) (any, error) {
		_, err := b.CallBatch("cpytest", "echo", []any{1})
		return nil, err
	})
	_, err = a.CallBatch("cpytest", "host_then_spin", []any{0.0})
	require.NoError(t, err, "a later call with a nested Caller call was cancelled")
}

// TestSparesServeABatchOfLargeItems: several large arguments of one size
// in one batch each get a spare on the next call (none is dropped as
// "kept" because an earlier item of the same batch holds it).
func TestSparesServeABatchOfLargeItems(t *testing.T) {
	c := caller(t)
	items := []any{bytes.Repeat([]byte("a"), 1<<20), bytes.Repeat([]byte("b"), 1<<20), bytes.Repeat([]byte("c"), 1<<20)}
	ids := func() []any {
		out, err := c.CallBatch("cpytest", "ids", items)
		require.NoError(t, err)
		return out
	}
	first, second := ids(), ids()
	assert.ElementsMatch(t, first, second, "each item refilled a spare of the first call")
}

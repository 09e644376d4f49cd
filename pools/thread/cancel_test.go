//go:build cgo

package thread_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/slither-go/slither/cpython"
	"github.com/slither-go/slither/pools"
	"github.com/slither-go/slither/pools/thread"
)

// Cancellation and Close, in both modes.

func TestCancelRunningBatchInterruptsPython(t *testing.T) {
	eachMode(t, func(t *testing.T, mode thread.Mode) {
		p := newPool(t, mode, 2)
		before, err := p.Submit(context.Background(), batch("cancelled_count", 0))
		require.NoError(t, err)

		// Cancelled once it runs in Python (not on a clock, nor on Stats: a
		// batch cancelled before Python started would never reach it).
		execPy(t, p, "import threadtest; threadtest._spinning.clear()")
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		spun := make(chan error, 1)
		go func() {
			_, err := p.Submit(ctx, batch("spin_forever", 1))
			spun <- err
		}()
		execPy(t, p, "import threadtest\nassert threadtest._spinning.wait(30)\n")
		cancel()
		err = <-spun
		require.Error(t, err)
		assert.ErrorIs(t, err, context.Canceled)

		if mode == thread.Direct {
			// Submit returned once Python had stopped: the call raised
			// slither.Cancelled, counted it, and the slot is free.
			assert.ErrorIs(t, err, cpython.ErrCancelled)
			st := p.Stats()
			assert.Zero(t, st.Running)
			assert.Equal(t, uint64(1), st.Totals().Errors)
			after, err := p.Submit(context.Background(), batch("cancelled_count", 0))
			require.NoError(t, err)
			assert.Equal(t, before[0].(int64)+1, after[0].(int64))
		}
		// Python saw slither.Cancelled: the worker is free again and counted it.
		require.Eventually(t, func() bool {
			after, err := p.Submit(context.Background(), batch("cancelled_count", 0))
			return err == nil && after[0].(int64) == before[0].(int64)+1
		}, 10*time.Second, 10*time.Millisecond)
		require.Eventually(t, func() bool { return p.Stats().Totals().Errors == 1 }, 10*time.Second, 10*time.Millisecond)

		// Both workers serve later batches normally (no stray interrupt left behind).
		for i := range 20 {
			out, err := p.Submit(context.Background(), batch("echo", i))
			require.NoError(t, err)
			assert.Equal(t, []any{int64(i)}, out)
		}
	})
}

func TestCancelQueuedBatch(t *testing.T) {
	eachMode(t, func(t *testing.T, mode thread.Mode) {
		p := newPool(t, mode, 1)
		execPy(t, p, "import threadtest; threadtest._rearm()")
		held := make(chan error, 1)
		go func() {
			_, err := p.Submit(context.Background(), batch("hold", 1))
			held <- err
		}()
		require.Eventually(t, func() bool { return p.Stats().Running == 1 }, 5*time.Second, time.Millisecond)
		assert.True(t, p.Stats().Workers[0].Running)

		ctx, cancel := context.WithCancel(context.Background())
		queued := make(chan error, 1)
		go func() {
			_, err := p.Submit(ctx, batch("echo", "never"))
			queued <- err
		}()
		require.Eventually(t, func() bool { return p.Stats().Waiting == 1 }, 5*time.Second, time.Millisecond)
		cancel()
		assert.ErrorIs(t, <-queued, context.Canceled)
		assert.Zero(t, p.Stats().Waiting)

		execPy(t, p, "import threadtest; threadtest._release()")
		require.NoError(t, <-held)
		assert.Equal(t, uint64(1), p.Stats().Totals().Calls, "the withdrawn batch never ran")
	})
}

// TestCancelWhileBlockedInC: a batch blocked in C (a lock wait) sees its
// cancellation only when it returns to Python. A Dedicated pool's Submit
// returns at once; a Direct pool's, whose caller runs the call, once the
// call has stopped.
func TestCancelWhileBlockedInC(t *testing.T) {
	eachMode(t, func(t *testing.T, mode thread.Mode) {
		entered := make(chan struct{}, 1)
		p, err := thread.New(thread.Options{Mode: mode, Workers: 1, Paths: []string{"testdata"},
			Host: func(context.Context, pools.HostCall) (any, error) {
				entered <- struct{}{}
				return nil, nil
			}})
		require.NoError(t, err)
		t.Cleanup(func() { require.NoError(t, p.Close(context.Background())) })
		execPy(t, p, "import threadtest; threadtest._rearm()")
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		done := make(chan error, 1)
		go func() {
			_, err := p.Submit(ctx, batch("enter_and_hold", 1))
			done <- err
		}()
		<-entered // in Python, about to block in C until _release
		cancel()
		if mode == thread.Dedicated {
			assert.ErrorIs(t, <-done, context.Canceled, "Submit returned while the call still blocks")
			assert.Equal(t, 1, p.Stats().Running, "the worker still runs the call")
			execPy(t, p, "import threadtest; threadtest._release()")
			return
		}
		select {
		case err := <-done:
			t.Fatalf("Submit returned (%v) while Python was still blocked in the call", err)
		default:
		}
		assert.Equal(t, 1, p.Stats().Running)
		execPy(t, p, "import threadtest; threadtest._release()")
		// The call returned from the wait without another bytecode
		// boundary, so it ended normally; ctx ended first, so Submit still
		// reports that, as it would have from the wait.
		assert.ErrorIs(t, <-done, context.Canceled)
		assert.Zero(t, p.Stats().Running)
	})
}

// closedProbe reports whether p refuses new batches; it never waits for a
// worker.
func closedProbe(p *thread.Pool) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Millisecond)
	defer cancel()
	_, err := p.Submit(ctx, batch("echo", "probe"))
	return errors.Is(err, pools.ErrClosed)
}

func TestCloseDrainsSubmittedBatches(t *testing.T) {
	eachMode(t, func(t *testing.T, mode thread.Mode) {
		p, err := thread.New(thread.Options{Mode: mode, Workers: 2, Paths: []string{"testdata"}})
		require.NoError(t, err)
		execPy(t, p, "import threadtest; threadtest._rearm()")

		const n = 4 // two run, two wait for a worker
		results := make(chan error, n)
		for i := range n {
			go func() {
				out, err := p.Submit(context.Background(), batch("hold", i))
				if err == nil && out[0] != int64(i) {
					err = fmt.Errorf("got %v for %d", out, i)
				}
				results <- err
			}()
		}
		require.Eventually(t, func() bool { return p.Stats().Waiting == n-2 }, 5*time.Second, time.Millisecond)

		// Close reports how many batches had run when it returned: every
		// batch is held in Python until _release, so a Close that does not
		// wait for them returns with fewer than n.
		type closeResult struct {
			err   error
			calls uint64
		}
		closed := make(chan closeResult, 1)
		go func() {
			err := p.Close(context.Background())
			closed <- closeResult{err, p.Stats().Totals().Calls}
		}()
		require.Eventually(t, func() bool { return closedProbe(p) }, 5*time.Second, time.Millisecond,
			"Submit after Close fails with ErrClosed")
		select {
		case r := <-closed:
			t.Fatalf("Close returned (%v) while the submitted batches were held, %d of %d run", r.err, r.calls, n)
		default:
		}

		execPy(t, p, "import threadtest; threadtest._release()")
		for range n {
			require.NoError(t, <-results)
		}
		r := <-closed
		require.NoError(t, r.err)
		assert.Equal(t, uint64(n), r.calls, "Close returned only once every submitted batch had run")
		require.NoError(t, p.Close(context.Background()), "Close is idempotent")
	})
}

func TestCloseGivesUpAndInterrupts(t *testing.T) {
	eachMode(t, func(t *testing.T, mode thread.Mode) {
		p, err := thread.New(thread.Options{Mode: mode, Workers: 1, Paths: []string{"testdata"}})
		require.NoError(t, err)
		running := make(chan error, 1)
		go func() {
			_, err := p.Submit(context.Background(), batch("spin_forever", 1))
			running <- err
		}()
		require.Eventually(t, func() bool { return p.Stats().Running == 1 }, 5*time.Second, time.Millisecond)
		queued := make(chan error, 1)
		go func() {
			_, err := p.Submit(context.Background(), batch("echo", 1))
			queued <- err
		}()
		require.Eventually(t, func() bool { return p.Stats().Waiting == 1 }, 5*time.Second, time.Millisecond)

		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		err = p.Close(ctx)
		assert.ErrorIs(t, err, context.DeadlineExceeded)

		err = <-running
		assert.ErrorIs(t, err, cpython.ErrCancelled, "the running batch was interrupted")
		assert.ErrorIs(t, <-queued, pools.ErrClosed, "the queued batch was withdrawn")
		require.NoError(t, p.Close(context.Background()), "a second Close waits for the workers to exit")
	})
}

// cancelOnDone is a context cancelled (with cause) the first time its Done
// is asked for: a Direct pool asks first as the call is about to reach
// Python, after every earlier look at ctx found it live.
type cancelOnDone struct {
	context.Context
	once   sync.Once
	cancel context.CancelCauseFunc
	cause  error
}

func (c *cancelOnDone) Done() <-chan struct{} {
	c.once.Do(func() { c.cancel(c.cause) })
	return c.Context.Done()
}

// TestCancelJustBeforePythonWrapsCause: a batch cancelled as its call is
// about to reach Python never runs, and its error names the context's
// cause, as every other cancellation's does.
func TestCancelJustBeforePythonWrapsCause(t *testing.T) {
	eachMode(t, func(t *testing.T, mode thread.Mode) {
		p := newPool(t, mode, 1)
		execPy(t, p, "import threadtest; threadtest._order.clear()")
		cause := errors.New("the caller went away")
		parent, cancel := context.WithCancelCause(context.Background())
		defer cancel(nil)
		ctx := &cancelOnDone{Context: parent, cancel: cancel, cause: cause}
		_, err := p.Submit(ctx, batch("record", "ran"))
		require.Error(t, err)
		assert.ErrorIs(t, err, cause)
		execPy(t, p, "import threadtest\nassert threadtest._order == [], threadtest._order\n")
	})
}

// errGate is a context whose first Err blocks until gate is closed,
// having closed entered: Submit asks first once it has admitted the batch.
type errGate struct {
	context.Context
	once          sync.Once
	entered, gate chan struct{}
}

func (c *errGate) Err() error {
	c.once.Do(func() {
		close(c.entered)
		<-c.gate
	})
	return c.Context.Err()
}

// TestCloseGaveUpWithdrawsAdmittedBatch: a batch admitted before Close,
// that reaches a free worker only after Close gave up, is withdrawn, not
// run.
func TestCloseGaveUpWithdrawsAdmittedBatch(t *testing.T) {
	eachMode(t, func(t *testing.T, mode thread.Mode) {
		p, err := thread.New(thread.Options{Mode: mode, Workers: 1, Paths: []string{"testdata"}})
		require.NoError(t, err)
		ctx := &errGate{Context: context.Background(), entered: make(chan struct{}), gate: make(chan struct{})}
		done := make(chan error, 1)
		go func() {
			_, err := p.Submit(ctx, batch("echo", 1))
			done <- err
		}()
		<-ctx.entered // admitted: Close waits for it

		gone, cancel := context.WithCancel(context.Background())
		cancel()
		assert.ErrorIs(t, p.Close(gone), context.Canceled, "Close gave up at once")
		close(ctx.gate)
		assert.ErrorIs(t, <-done, pools.ErrClosed, "the batch was withdrawn")
		require.NoError(t, p.Close(context.Background()))
		assert.Zero(t, p.Stats().Totals().Calls, "the withdrawn batch never ran")
	})
}

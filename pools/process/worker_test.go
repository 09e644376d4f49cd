package process_test

// The worker runtime (python/slither/worker.py) through a pool: failures
// outside the user's call, cancels, and ThreadsPerWorker > 1.

import (
	"context"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/slither-go/slither/pools"
	"github.com/slither-go/slither/pools/process"
)

const wmod = "workertest"

func wb(fn string, items ...any) pools.Batch {
	return pools.Batch{Module: wmod, Function: fn, Items: items}
}

// threadedPool is one worker with threads threads.
func threadedPool(t *testing.T, threads int, host pools.HostFunc) *process.Pool {
	o := opts(1)
	o.ThreadsPerWorker = threads
	o.Host = host
	return newPool(t, o)
}

func boundedCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// bothThreadsWork fails unless the pool's one worker still runs two calls
// at once: each waits at a barrier for the other. A thread lost to an
// exception outside user code makes them time out.
func bothThreadsWork(t *testing.T, p pools.Pool, name string) {
	t.Helper()
	ctx := boundedCtx(t)
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = p.Submit(ctx, wb("meet", name, 30))
		}()
	}
	wg.Wait()
	require.NoError(t, errors.Join(errs...), "both threads of the worker serve calls")
}

// Defect 2: a cancel that arrives as its call ends must not land outside
// the call (killing the executor thread, so that the next call on it never
// runs) nor in the next call. The host call cancels its own call's
// context, and the call returns just as the worker starts delivering that
// cancel (see return_as_cancel_lands); each round starts a fresh worker,
// whose first cancel is the slowest to deliver.
func TestThreadedCancelAsCallEnds(t *testing.T) {
	for round := range 4 {
		var cancelCall atomic.Pointer[context.CancelFunc]
		p := threadedPool(t, 2, func(ctx context.Context, c pools.HostCall) (any, error) {
			(*cancelCall.Load())()
			return nil, nil
		})
		for i := range 3 {
			ctx, cancel := context.WithCancel(boundedCtx(t))
			cancelCall.Store(&cancel)
			_, err := p.Submit(ctx, wb("return_as_cancel_lands", "cancel"))
			require.ErrorIs(t, err, context.Canceled)
			assert.Equal(t, []any{true}, submit(t, p, wb("cancel_delivered", 1)))
			bothThreadsWork(t, p, fmt.Sprintf("cancel-end-%d-%d", round, i))
		}
		assert.Zero(t, p.Stats().Totals().Restarts, "the worker survived")
	}
}

// startedHost is a host function: "started" cancels the call that sent it
// (a context the test registers); "block" never answers while the test
// runs, so only a cancel (or a crash) ends the call that sent it.
type startedHost struct {
	mu      sync.Mutex
	cancels []context.CancelFunc
	blocked chan struct{}
	release chan struct{}
}

func newStartedHost() *startedHost {
	return &startedHost{blocked: make(chan struct{}, 1), release: make(chan struct{})}
}

// pool starts a pool whose host function is h.serve; h's blocked host
// calls return before the pool closes.
func (h *startedHost) pool(t *testing.T) *process.Pool {
	p := threadedPool(t, 2, h.serve)
	t.Cleanup(func() { close(h.release) })
	return p
}

func (h *startedHost) serve(ctx context.Context, c pools.HostCall) (any, error) {
	switch c.Name {
	case "started":
		h.mu.Lock()
		cancel := h.cancels[0]
		h.cancels = h.cancels[1:]
		h.mu.Unlock()
		cancel()
	case "block":
		h.blocked <- struct{}{}
		<-h.release
		return nil, errors.New("released")
	}
	return nil, nil
}

func TestThreadedCancel(t *testing.T) {
	h := newStartedHost()
	p := h.pool(t)

	// In the user's code: slither.Cancelled is raised there.
	ctx, cancel := context.WithCancel(boundedCtx(t))
	h.mu.Lock()
	h.cancels = append(h.cancels, cancel)
	h.mu.Unlock()
	_, err := p.Submit(ctx, wb("spin_after_host", "started"))
	require.ErrorIs(t, err, context.Canceled)
	bothThreadsWork(t, p, "cancel-spin") // the spinning call has ended
	assert.Equal(t, []any{int64(1)}, submit(t, p, wb("cancelled_count", 1)))

	// In a host call: it raises slither.Cancelled at once, without waiting
	// for Go's answer (which never comes).
	ctx, cancel = context.WithCancel(boundedCtx(t))
	errc := make(chan error, 1)
	go func() {
		_, err := p.Submit(ctx, wb("host_cancelled", "block"))
		errc <- err
	}()
	<-h.blocked
	cancel()
	require.ErrorIs(t, <-errc, context.Canceled)
	bothThreadsWork(t, p, "cancel-host")
	assert.Equal(t, []any{int64(2)}, submit(t, p, wb("cancelled_count", 1)))
	assert.Zero(t, p.Stats().Totals().Restarts)
}

func TestThreadedHostCalls(t *testing.T) {
	p := threadedPool(t, 2, func(ctx context.Context, c pools.HostCall) (any, error) {
		if c.Name == "fail" {
			return nil, errors.New("no such thing")
		}
		return []any{c.Name, c.Args}, nil
	})
	ctx := boundedCtx(t)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out, err := p.Submit(ctx, wb("host", []any{"a", int64(i)}, []any{"b", "x", []byte{byte(i)}}))
			if !assert.NoError(t, err) {
				return
			}
			assert.Equal(t, []any{[]any{"a", []any{int64(i)}}, []any{"b", []any{"x", []byte{byte(i)}}}}, out)
		}()
	}
	wg.Wait()
	_, err := p.Submit(ctx, wb("host", []any{"fail"}))
	var pe *pools.PythonError
	require.ErrorAs(t, err, &pe)
	assert.Equal(t, "slither.HostError", pe.Type)
	assert.Contains(t, pe.Message, "no such thing")
	bothThreadsWork(t, p, "host")
}

// A crash fails every call running on the worker, and a new worker serves
// on with both threads.
func TestThreadedCrash(t *testing.T) {
	h := newStartedHost()
	p := h.pool(t)
	ctx := boundedCtx(t)
	errc := make(chan error, 1)
	go func() {
		_, err := p.Submit(ctx, wb("host_cancelled", "block"))
		errc <- err
	}()
	<-h.blocked // one thread is busy in a host call
	_, err := p.Submit(ctx, wb("segfault", 1))
	require.ErrorIs(t, err, pools.ErrWorkerCrashed)
	require.ErrorIs(t, <-errc, pools.ErrWorkerCrashed, "the other running call fails with the crash too")
	bothThreadsWork(t, p, "crash")
}

// Defect 3: whatever fails outside the user's call fails that call alone,
// with one thread per worker or more.
func TestFailuresOutsideTheCall(t *testing.T) {
	for _, threads := range []int{1, 2} {
		t.Run(fmt.Sprintf("threads=%d", threads), func(t *testing.T) {
			p := threadedPool(t, threads, nil)
			ctx := boundedCtx(t)

			// Big ints cross both ways (json refuses past 4,300 digits by default).
			for _, n := range []int{5000, 60000} {
				want := new(big.Int).Mul(big.NewInt(7), new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(n)), nil))
				out, err := p.Submit(ctx, wb("big_int", n))
				require.NoError(t, err)
				assert.Zero(t, want.Cmp(out[0].(*big.Int)), "Python -> Go, %d digits", n+1)
				out, err = p.Submit(ctx, wb("digits", want))
				require.NoError(t, err)
				assert.Equal(t, int64(n+1), out[0], "Go -> Python, %d digits", n+1)
			}

			// More byte strings than one writev takes (IOV_MAX, 1,024).
			out, err := p.Submit(ctx, wb("many_bytes", 3000))
			require.NoError(t, err)
			require.Len(t, out[0], 3000)
			for i, b := range out[0].([]any) {
				require.Equal(t, []byte{0, 0, byte(i >> 8), byte(i)}, b)
			}

			var pe *pools.PythonError
			_, err = p.Submit(ctx, wb("raise_unprintable", 1))
			require.ErrorAs(t, err, &pe)
			assert.Equal(t, "workertest._NoStr", pe.Type)
			assert.Equal(t, "<exception str() failed>", pe.Message)
			_, err = p.Submit(ctx, wb("raise_unformattable", 1))
			require.ErrorAs(t, err, &pe)
			assert.Equal(t, "ValueError", pe.Type)
			assert.Equal(t, "its traceback cannot be formatted", pe.Message)
			assert.Contains(t, pe.Traceback, "<formatting the traceback failed: notes cannot be read>")

			for kind, want := range map[string]string{
				"set":       "python->go conversion at [0]: Python type 'set' has no Go mapping (supported: None, bool, int, float, str, bytes, bytearray, list, tuple, dict with str keys)",
				"object":    "python->go conversion at [0]: Python type 'object' has no Go mapping",
				"intkey":    "python->go conversion at [0][ok]: dict key 1 of type int is not a str",
				"surrogate": "python->go conversion: str is not valid UTF-8 (it holds a lone surrogate)",
				"self":      "python->go conversion: nesting too deep (or a list or dict that contains itself)",
				"deep":      "python->go conversion: nesting too deep",
				"baditer":   "python->go conversion: KeyError: 'iterating the result fails'",
			} {
				_, err := p.Submit(ctx, wb("unencodable", kind))
				require.ErrorIs(t, err, pools.ErrConversion, kind)
				assert.ErrorContains(t, err, want, kind)
			}
			if threads > 1 {
				bothThreadsWork(t, p, "outside")
			}
			assert.Equal(t, []any{"fine"}, submit(t, p, wb("echo", "fine")))
			assert.Zero(t, p.Stats().Totals().Restarts, "no failure cost the worker")
		})
	}
}

// Defect 19: a host call or view argument that cannot go to Go raises
// TypeError in the user's code, in the embedded pool's words.
func TestHostArgumentErrors(t *testing.T) {
	var called atomic.Int32
	p := threadedPool(t, 1, func(ctx context.Context, c pools.HostCall) (any, error) {
		called.Add(1)
		return nil, nil
	})
	for fn, want := range map[string]string{
		"host_set":       "slither.host_call: argument [0] cannot go to Go: Python type 'set' has no Go mapping (supported: None, bool, int, float, str, bytes, bytearray, list, tuple, dict with str keys)",
		"host_surrogate": "slither.host_call: arguments cannot go to Go: str is not valid UTF-8 (it holds a lone surrogate)",
		"view_bad":       "slither.view: argument k[1] cannot go to Go: Python type 'set' has no Go mapping",
		"view_bad_name":  "slither.view(name, **args): pass the view's name (a str) by position and its arguments by keyword",
	} {
		_, err := p.Submit(boundedCtx(t), wb(fn, 1))
		var pe *pools.PythonError
		require.ErrorAs(t, err, &pe, fn)
		assert.Equal(t, "TypeError", pe.Type, fn)
		assert.True(t, strings.HasPrefix(pe.Message, want), "%s: %q", fn, pe.Message)
	}
	assert.Zero(t, called.Load(), "nothing reached Go")
}

// Defect 15 (part): a process the user's code starts does not inherit the
// worker's protocol pipes, so it can neither read them nor hold them open.
func TestProtocolPipesNotInherited(t *testing.T) {
	p := threadedPool(t, 1, nil)
	assert.Equal(t, []any{[]any{}}, submit(t, p, wb("inherited_fds", 1)))
}

// Review 1, item 4: a call whose worker fails in its own code after the
// call began is still taken off the running calls, so that a cancel for it
// arriving late raises nothing: not in a later call, and not in an idle
// executor thread (which it used to kill).
func TestInternalErrorLeavesNoCallRunning(t *testing.T) {
	for _, threads := range []int{1, 2} {
		t.Run(fmt.Sprintf("threads=%d", threads), func(t *testing.T) {
			p := threadedPool(t, threads, nil)
			_, err := p.Submit(boundedCtx(t), wb("internal_error", 1))
			var pe *pools.PythonError
			require.ErrorAs(t, err, &pe)
			assert.Equal(t, "slither.worker internal error: describe() failed", pe.Message)
			assert.Equal(t, []any{[]any{}}, submit(t, p, wb("stale_calls", 1)), "no call is left running")
			assert.Equal(t, []any{int64(1)}, submit(t, p, wb("late_cancel", 1)), "a late cancel raises nowhere")
			if threads > 1 {
				bothThreadsWork(t, p, "late-cancel")
			}
			assert.Equal(t, []any{"fine"}, submit(t, p, wb("echo", "fine")))
			assert.Zero(t, p.Stats().Totals().Restarts, "the worker survived")
		})
	}
}

// Review 1, item 4: an exception that reaches the worker's serving loop
// between calls (a stray cancel, a bug of ours) costs neither the thread
// nor the worker, and no message is lost to it.
func TestStrayExceptionBetweenCalls(t *testing.T) {
	for _, threads := range []int{1, 2} {
		t.Run(fmt.Sprintf("threads=%d", threads), func(t *testing.T) {
			p := threadedPool(t, threads, nil)
			for i := range 3 {
				assert.Equal(t, []any{int64(i)}, submit(t, p, wb("stray_between_calls", i)))
				if threads > 1 {
					bothThreadsWork(t, p, fmt.Sprintf("stray-%d", i))
				}
				assert.Equal(t, []any{"fine"}, submit(t, p, wb("echo", "fine")))
			}
			assert.Zero(t, p.Stats().Totals().Restarts, "the worker survived")
		})
	}
}

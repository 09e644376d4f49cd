//go:build cgo

package thread_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/slither-go/slither/pools"
	"github.com/slither-go/slither/pools/thread"
)

// A host function that panics is called from C on the worker's thread: the
// panic must become a Python HostError, never unwind through C, and the
// worker keeps serving. A pool without a host function says so.
func TestHostFunctionPanicIsAnError(t *testing.T) {
	eachMode(t, func(t *testing.T, mode thread.Mode) {
		p, err := thread.New(thread.Options{Mode: mode, Workers: 1, Paths: []string{"testdata"},
			Host: func(ctx context.Context, c pools.HostCall) (any, error) {
				if c.Name == "panic" {
					panic("boom")
				}
				return c.Name, nil
			}})
		require.NoError(t, err)
		t.Cleanup(func() { require.NoError(t, p.Close(context.Background())) })
		ctx := context.Background()
		out, err := p.Submit(ctx, batch("call_host", []any{"panic"}, []any{"ok"}))
		require.NoError(t, err)
		assert.Equal(t, `error: host function for "panic" panicked: boom`, out[0])
		assert.Equal(t, "ok", out[1])
		out, err = p.Submit(ctx, batch("call_host", []any{"again"}))
		require.NoError(t, err)
		assert.Equal(t, []any{"again"}, out)

		none := newPool(t, mode, 1)
		out, err = none.Submit(ctx, batch("call_host", []any{"x"}))
		require.NoError(t, err)
		assert.Equal(t, `error: no host function: the pool's Options.Host is nil (called "x")`, out[0])
	})
}

// chainPool is a pool whose host function "submit" submits, with the host
// call's context, the batch [session, function, items] — one whose items
// may make host calls in their turn — and records its error.
type chainPool struct {
	*thread.Pool
	mu   sync.Mutex
	errs []error
}

func newChainPool(t *testing.T, mode thread.Mode, workers int) *chainPool {
	t.Helper()
	c := &chainPool{}
	p, err := thread.New(thread.Options{Mode: mode, Workers: workers, Paths: []string{"testdata"},
		Host: func(ctx context.Context, h pools.HostCall) (any, error) {
			session, fn, items := h.Args[0].(string), h.Args[1].(string), h.Args[2].([]any)
			out, err := c.Submit(ctx, pools.Batch{Module: mod, Function: fn, Items: items, Session: session})
			c.mu.Lock()
			c.errs = append(c.errs, err)
			c.mu.Unlock()
			return out, err
		}})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, p.Close(context.Background())) })
	c.Pool = p
	return c
}

// submitItem is a call_host item that submits [session, fn, items].
func submitItem(session, fn string, items ...any) []any {
	return []any{"submit", session, fn, items}
}

// takeErrs returns the errors of the host submits so far, and forgets them.
func (c *chainPool) takeErrs() []error {
	c.mu.Lock()
	defer c.mu.Unlock()
	errs := c.errs
	c.errs = nil
	return errs
}

// TestReentrantChainFails: a batch submitted from a chain of host calls —
// session A's batch on one worker submits to session B on the other, whose
// batch submits again — fails with ErrReentrant when only workers of the
// chain could run it, however deep in the chain its worker is: they all
// wait for it. A new session is pinned outside the chain. (Each run is
// bounded by a context deadline, a safety net: without the chain, these
// deadlock until it.)
func TestReentrantChainFails(t *testing.T) {
	eachMode(t, func(t *testing.T, mode thread.Mode) {
		// run submits a batch of session a whose host call submits a batch of
		// session b whose host call submits inner; it returns what b's batch
		// got from that host call, and the error of inner's Submit.
		run := func(t *testing.T, p *chainPool, inner []any) (any, error) {
			t.Helper()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			out, err := p.Submit(ctx, pools.Batch{Module: mod, Function: "call_host", Session: "a",
				Items: []any{submitItem("b", "call_host", inner)}})
			require.NoError(t, err)
			require.Len(t, out, 1)
			fromB := out[0].([]any) // b's results: inner's, or "error: ..."
			require.Len(t, fromB, 1)
			errs := p.takeErrs()
			require.Len(t, errs, 2)
			require.NoError(t, errs[1], "a's host call submitting to b")
			return fromB[0], errs[0]
		}
		closeAll := func(p *chainPool, ids ...string) {
			for _, id := range ids {
				p.CloseSession(id)
			}
		}

		t.Run("back to the first session", func(t *testing.T) {
			// Three workers: a on 0, b on 1, and 2 free; but a's batches
			// run only on 0, which waits for b's.
			p := newChainPool(t, mode, 3)
			defer closeAll(p, "a", "b")
			got, err := run(t, p, submitItem("a", "echo", 1))
			assert.ErrorIs(t, err, pools.ErrReentrant)
			assert.Equal(t, "error: pools/thread: threadtest.echo of session a can only run on worker 0, which is busy with the host call "+
				"it was submitted from (the chain of host calls holds workers [0 1]): "+pools.ErrReentrant.Error(), got)
		})

		for name, inner := range map[string][]any{
			"the first session": submitItem("a", "echo", 1),
			"a new session":     submitItem("c", "echo", 1),
			"no session":        submitItem("", "echo", 1),
		} {
			t.Run(name+", every worker in the chain", func(t *testing.T) {
				p := newChainPool(t, mode, 2)
				defer closeAll(p, "a", "b", "c")
				got, err := run(t, p, inner)
				assert.ErrorIs(t, err, pools.ErrReentrant)
				assert.Equal(t, "error: pools/thread: threadtest.echo can run on no worker: each is busy with the host call "+
					"it was submitted from (the chain of host calls holds workers [0 1]): "+pools.ErrReentrant.Error(), got)
			})
		}

		t.Run("a new session pinned outside the chain", func(t *testing.T) {
			p := newChainPool(t, mode, 3)
			ctx := context.Background()
			// Leave worker 2 with one pinned session and the others with none,
			// so that least-pinned alone would put c on worker 0, in the chain.
			for i, s := range []string{"s0", "s1", "s2"} {
				out, err := p.Submit(ctx, pools.Batch{Module: mod, Function: "context", Items: []any{0}, Session: s})
				require.NoError(t, err)
				require.Equal(t, int64(i), out[0].(map[string]any)["worker"], "session %s", s)
			}
			closeAll(p, "s0", "s1")
			defer closeAll(p, "s2", "a", "b", "c")
			got, err := run(t, p, submitItem("c", "context", 0))
			require.NoError(t, err)
			c := got.([]any)[0].(map[string]any)
			assert.Equal(t, int64(2), c["worker"], "c runs on the one worker outside the chain")
			assert.Equal(t, "c", c["session"])
		})
	})
}

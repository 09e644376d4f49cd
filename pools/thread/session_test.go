//go:build cgo

package thread_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/slither-go/slither/pools"
	"github.com/slither-go/slither/pools/thread"
)

var meetings atomic.Int64

// meetingName is a name for a fresh barrier in threadtest.
func meetingName(prefix string) string {
	return prefix + "-" + strconv.FormatInt(meetings.Add(1), 10)
}

// everyWorkerRan returns once every worker of p has taken a batch after
// the call began: Capacity() batches that meet at a barrier, so each runs
// on its own worker. A worker drops released session state before it takes
// a batch, so after this every release queued before it is done.
func everyWorkerRan(t *testing.T, p *thread.Pool) {
	t.Helper()
	n := p.Capacity()
	name := meetingName("every")
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := p.Submit(context.Background(), batch("rendezvous", name, n))
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
}

// requireFreed waits, on the interpreter's main thread (never the worker
// that made it), for threadtest.Tracked(tag) to be freed. In Direct mode
// the state may have been made on one OS thread and dropped on another,
// and then it is freed when the first next runs Python or at the next
// garbage collection (see the session docs): the wait collects meanwhile.
func requireFreed(t *testing.T, p *thread.Pool, tag string) {
	t.Helper()
	fn := "freed"
	if p.Mode() == thread.Direct {
		fn = "freed_collecting"
	}
	execPy(t, p, fmt.Sprintf("import threadtest\nassert threadtest.%s(%q, 30), 'Tracked(%s) is still alive'\n", fn, tag, tag))
}

// requireNoState checks that the interpreter holds no state of session id
// (slither._context._sessions has no entry for it).
func requireNoState(t *testing.T, p *thread.Pool, id string) {
	t.Helper()
	execPy(t, p, fmt.Sprintf("from slither import _context\nassert %q not in _context._sessions, _context._sessions.get(%q)\n", id, id))
}

// TestSessionStateFreedOnClose: closing a session (or ending its context)
// frees what slither.session() and slither.ref held, at once, in an idle
// pool: the state is dropped on the worker that made it.
func TestSessionStateFreedOnClose(t *testing.T) {
	eachMode(t, func(t *testing.T, mode thread.Mode) {
		p := newPool(t, mode, 2)
		ctx := context.Background()

		s := pools.NewSession(ctx, p)
		out, err := s.Submit(ctx, batch("keep_tracked", "closed"))
		require.NoError(t, err)
		ref, ok := pools.AsRef(out[0])
		require.True(t, ok)
		assert.Equal(t, s.ID(), ref.Session)
		s.Close()
		requireFreed(t, p, "closed")
		requireFreed(t, p, "closed:ref")

		sctx, cancel := context.WithCancel(ctx)
		s = pools.NewSession(sctx, p)
		_, err = s.Submit(ctx, batch("keep_tracked", "ended"))
		require.NoError(t, err)
		cancel()
		requireFreed(t, p, "ended")
		requireFreed(t, p, "ended:ref")
	})
}

// TestUnpinnedSessionStateIsPerWorker: unpinned batches of one session on
// two workers each see their own worker's slither.session(), and closing
// the session frees both.
func TestUnpinnedSessionStateIsPerWorker(t *testing.T) {
	eachMode(t, func(t *testing.T, mode thread.Mode) {
		p := newPool(t, mode, 2)
		name := meetingName("unpinned")
		b := pools.Batch{Module: mod, Function: "bump_meet", Items: []any{name, 2}, Session: "unpinned-" + name, Unpinned: true}
		var wg sync.WaitGroup
		outs := make([][]any, 2)
		errs := make([]error, 2)
		for i := range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				outs[i], errs[i] = p.Submit(context.Background(), b)
			}()
		}
		wg.Wait()
		require.NoError(t, errors.Join(errs...))
		w0, w1 := outs[0], outs[1] // [worker, count]
		assert.NotEqual(t, w0[0], w1[0], "the two batches met, so they ran on different workers")
		assert.Equal(t, int64(1), w0[1], "each worker counts in its own state")
		assert.Equal(t, int64(1), w1[1], "each worker counts in its own state")

		p.CloseSession(b.Session)
		requireFreed(t, p, fmt.Sprintf("%s:%d", name, w0[0]))
		requireFreed(t, p, fmt.Sprintf("%s:%d", name, w1[0]))
	})
}

// TestLateBatchCannotResurrectClosedSession: a batch still running when
// its session is closed (its caller gave up, say) makes state after the
// close; that state is released when the batch ends, not kept for good.
func TestLateBatchCannotResurrectClosedSession(t *testing.T) {
	eachMode(t, func(t *testing.T, mode thread.Mode) {
		p := newPool(t, mode, 2)
		execPy(t, p, "import threadtest; threadtest._rearm(); threadtest._rearm_started()")
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		s := pools.NewSession(context.Background(), p)
		late := make(chan error, 1)
		go func() {
			_, err := s.Submit(ctx, batch("hold_then_keep", "late"))
			late <- err
		}()
		execPy(t, p, "import threadtest\nassert threadtest._started.wait(30)\n")
		s.Close() // the batch is running: the release waits for it
		execPy(t, p, "import threadtest; threadtest._release()")
		require.NoError(t, <-late)
		requireFreed(t, p, "late")

		// The same id later opens a fresh session.
		out, err := s.Submit(context.Background(), batch("bump", 1))
		require.NoError(t, err)
		assert.Equal(t, int64(1), out[0].([]any)[1], "nothing of the closed session's state is left")
		p.CloseSession(s.ID())
	})
}

// TestMaxSessions: the pool tracks at most MaxSessions sessions; closing
// one makes room, and the bookkeeping of closed sessions is gone.
func TestMaxSessions(t *testing.T) {
	eachMode(t, func(t *testing.T, mode thread.Mode) {
		p, err := thread.New(thread.Options{Mode: mode, Workers: 2, Paths: []string{"testdata"}, MaxSessions: 2})
		require.NoError(t, err)
		t.Cleanup(func() { require.NoError(t, p.Close(context.Background())) })
		ctx := context.Background()
		submit := func(session string, unpinned bool) error {
			_, err := p.Submit(ctx, pools.Batch{Module: mod, Function: "bump", Items: []any{1}, Session: session, Unpinned: unpinned})
			return err
		}
		require.NoError(t, submit("a", false))
		require.NoError(t, submit("b", true))
		require.NoError(t, submit("a", false), "an open session takes no new room")
		err = submit("c", false)
		require.ErrorIs(t, err, thread.ErrTooManySessions)
		assert.ErrorContains(t, err, "2 are open (Options.MaxSessions)")
		p.CloseSession("a")
		require.NoError(t, submit("c", false))
		for i := range 10 { // a session closed each time never piles up
			id := fmt.Sprintf("loop-%d", i)
			p.CloseSession("c")
			require.NoError(t, submit(id, false))
			p.CloseSession(id)
			require.NoError(t, submit("c", false))
		}
		p.CloseSession("b")
		p.CloseSession("c")

		_, err = thread.New(thread.Options{Mode: mode, MaxSessions: -1})
		assert.ErrorContains(t, err, "Options.MaxSessions is -1")
	})
}

// TestReentrantSubmitFails: a host function that submits a batch that can
// only run on the worker making the host call gets ErrReentrant at once,
// instead of waiting for itself for ever.
func TestReentrantSubmitFails(t *testing.T) {
	eachMode(t, func(t *testing.T, mode thread.Mode) {
		var p *thread.Pool
		var mu sync.Mutex
		var hostErrs []error
		host := func(ctx context.Context, c pools.HostCall) (any, error) {
			switch c.Name {
			case "own-session": // submits to the caller's own pinned session
				_, err := p.Submit(ctx, pools.Batch{Module: mod, Function: "echo", Items: []any{1}, Session: c.Session})
				mu.Lock()
				hostErrs = append(hostErrs, err)
				mu.Unlock()
				return nil, err
			case "other-session": // a new session: pinned to another worker, so it runs
				out, err := p.Submit(ctx, pools.Batch{Module: mod, Function: "echo", Items: []any{"other"}, Session: "other-" + c.Session})
				p.CloseSession("other-" + c.Session)
				if err != nil {
					return nil, err
				}
				return out[0], nil
			case "close": // closing its own session from inside never waits
				p.CloseSession(c.Session)
				return "closed", nil
			}
			return nil, fmt.Errorf("no host function %q", c.Name)
		}
		var err error
		p, err = thread.New(thread.Options{Mode: mode, Workers: 2, Paths: []string{"testdata"}, Host: host})
		require.NoError(t, err)
		t.Cleanup(func() { require.NoError(t, p.Close(context.Background())) })

		ctx := context.Background()
		s := pools.NewSession(ctx, p)
		defer s.Close()
		out, err := s.Submit(ctx, batch("call_host", []any{"own-session"}, []any{"other-session"}))
		require.NoError(t, err)
		assert.Regexp(t, `^error: pools/thread: threadtest.echo of session \S+ can only run on worker \d, which is busy with the host call `+
			`it was submitted from \(the chain of host calls holds workers \[\d\]\): pools: re-entrant submit`, out[0])
		assert.Equal(t, "other", out[1])
		mu.Lock()
		require.Len(t, hostErrs, 1)
		assert.ErrorIs(t, hostErrs[0], pools.ErrReentrant)
		mu.Unlock()

		out, err = s.Submit(ctx, batch("keep_tracked", "closed-inside"))
		require.NoError(t, err)
		require.Len(t, out, 1)
		out, err = s.Submit(ctx, batch("call_host", []any{"close"}))
		require.NoError(t, err)
		assert.Equal(t, []any{"closed"}, out)
		requireFreed(t, p, "closed-inside")

		// With one worker, any batch from a host call would wait for itself.
		var one *thread.Pool
		one, err = thread.New(thread.Options{Mode: mode, Workers: 1, Paths: []string{"testdata"},
			Host: func(ctx context.Context, c pools.HostCall) (any, error) {
				_, err := one.Submit(ctx, batch("echo", 1))
				return nil, err
			}})
		require.NoError(t, err)
		t.Cleanup(func() { require.NoError(t, one.Close(context.Background())) })
		out, err = one.Submit(ctx, batch("call_host", []any{"any"}))
		require.NoError(t, err)
		assert.Equal(t, "error: pools/thread: threadtest.echo can run on no worker: each is busy with the host call it was submitted from "+
			"(the chain of host calls holds workers [0]): "+pools.ErrReentrant.Error(), out[0])
	})
}

// TestCallInfoService: the pool reports the time its worker spent on a
// batch.
func TestCallInfoService(t *testing.T) {
	eachMode(t, func(t *testing.T, mode thread.Mode) {
		p := newPool(t, mode, 1)
		var ci pools.CallInfo
		_, err := p.Submit(pools.WithCallInfo(context.Background(), &ci), batch("cpu", 10000))
		require.NoError(t, err)
		assert.Positive(t, ci.Service)
		assert.Equal(t, 0, ci.Worker)
	})
}

// TestMultiprocessingSpawnsInPool: batches see 'spawn' as multiprocessing's
// default start method: it never forks the Go process.
func TestMultiprocessingSpawnsInPool(t *testing.T) {
	eachMode(t, func(t *testing.T, mode thread.Mode) {
		p := newPool(t, mode, 1)
		out, err := p.Submit(context.Background(), batch("start_method", 0))
		require.NoError(t, err)
		assert.Equal(t, []any{"spawn"}, out)
	})
}

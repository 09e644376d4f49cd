package process_test

import (
	"context"
	"fmt"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/slither-go/slither/pools"
	"github.com/slither-go/slither/pools/process"
)

// Every failure of a pinned session whose worker died matches both
// ErrSessionLost and ErrWorkerCrashed: the batch running when it died, and
// the first one sent after.
func TestSessionLostFromTheFirstFailure(t *testing.T) {
	o := opts(2)
	started := make(chan struct{}, 1)
	o.Host = func(context.Context, pools.HostCall) (any, error) {
		started <- struct{}{}
		return nil, nil
	}
	p := newPool(t, o)
	ctx := context.Background()
	workerOf := func(s *pools.Session) int {
		out, err := s.Submit(ctx, batch("bump", 1))
		require.NoError(t, err)
		return int(out[0].([]any)[0].(int64))
	}

	running := pools.NewSession(ctx, p)
	defer running.Close()
	pid := workerOf(running)
	errc := make(chan error, 1)
	go func() {
		_, err := running.Submit(ctx, batch("started_then_sleep", 600.0))
		errc <- err
	}()
	<-started
	require.NoError(t, syscall.Kill(pid, syscall.SIGKILL))
	err := <-errc
	assert.ErrorIs(t, err, pools.ErrWorkerCrashed)
	assert.ErrorIs(t, err, pools.ErrSessionLost)

	next := pools.NewSession(ctx, p)
	defer next.Close()
	pid = workerOf(next)
	require.NoError(t, syscall.Kill(pid, syscall.SIGKILL))
	_, err = next.Submit(ctx, batch("bump", 1))
	assert.ErrorIs(t, err, pools.ErrWorkerCrashed)
	assert.ErrorIs(t, err, pools.ErrSessionLost)
	_, err = next.Submit(ctx, batch("bump", 1))
	assert.ErrorIs(t, err, pools.ErrSessionLost, "and every later one")
}

// A host function that submits a batch only its own calling worker could
// run gets ErrReentrant instead of waiting forever; one another worker (or
// another thread) can run goes through.
func TestReentrantSubmit(t *testing.T) {
	for _, tc := range []struct {
		name             string
		workers, threads int
		own, any         bool // whether each nested submit succeeds
	}{
		{"one worker", 1, 1, false, false},
		{"two workers", 2, 1, false, true},
		{"two threads", 1, 2, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := opts(tc.workers)
			o.ThreadsPerWorker = tc.threads
			var p *process.Pool
			var mu sync.Mutex
			errs := map[string]error{}
			o.Host = func(ctx context.Context, c pools.HostCall) (any, error) {
				b := batch("echo", c.Name)
				if c.Name == "own" {
					b.Session = c.Session
				}
				out, err := p.Submit(ctx, b)
				mu.Lock()
				errs[c.Name] = err
				mu.Unlock()
				return out, err
			}
			p = newPool(t, o)
			// Waiting for its own worker used to deadlock here.
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			s := pools.NewSession(ctx, p)
			defer s.Close()
			out, err := s.Submit(ctx, batch("nested", []any{"own"}, []any{"any"}))
			require.NoError(t, err)
			for i, name := range []string{"own", "any"} {
				ok := []bool{tc.own, tc.any}[i]
				if ok {
					assert.NoError(t, errs[name], name)
					assert.Equal(t, []any{name}, out[i], name)
				} else {
					assert.ErrorIs(t, errs[name], pools.ErrReentrant, name)
					assert.Contains(t, out[i], "error: ", name)
				}
			}
		})
	}
}

// A session closed while its batch runs keeps its state until the batch
// ends, then loses it for good: the batch cannot re-create it after the
// drop, and a batch sent after the close fails.
func TestCloseSessionWhileItsBatchRuns(t *testing.T) {
	o := opts(1)
	var p *process.Pool
	o.Host = func(_ context.Context, c pools.HostCall) (any, error) {
		p.CloseSession(c.Session)
		return nil, nil
	}
	p = newPool(t, o)
	ctx := context.Background()
	s := pools.NewSession(ctx, p)
	defer s.Close()
	out, err := s.Submit(ctx, batch("bump_close", 1))
	require.NoError(t, err)
	assert.Equal(t, []any{int64(1)}, out)
	require.Eventually(t, func() bool {
		return submit(t, p, batch("session_count", 1))[0] == int64(0)
	}, time.Minute, time.Millisecond, "the state was dropped after the batch, and not re-created")
	_, err = s.Submit(ctx, batch("bump", 1))
	require.ErrorIs(t, err, pools.ErrSessionLost)
	assert.ErrorContains(t, err, "was closed")
	assert.Zero(t, p.SessionRecords())
}

// The pool's records of sessions go when the sessions do: closed, or lost
// with their worker.
func TestSessionRecordsAreBounded(t *testing.T) {
	p := newPool(t, opts(2))
	ctx := context.Background()
	var open []*pools.Session
	for i := range 40 {
		s := pools.NewSession(ctx, p)
		_, err := s.Submit(ctx, batch("bump", 1))
		require.NoError(t, err)
		if i%2 == 0 {
			s.Close()
		} else {
			open = append(open, s)
		}
	}
	assert.Equal(t, 20, p.SessionRecords(), "open sessions only")
	for _, pid := range pids(p) {
		require.NoError(t, syscall.Kill(pid, syscall.SIGKILL))
	}
	require.Eventually(t, func() bool { return p.SessionRecords() == 0 }, time.Minute, time.Millisecond,
		"sessions lost with their workers leave no record")
	for _, s := range open {
		_, err := s.Submit(ctx, batch("bump", 1))
		require.ErrorIs(t, err, pools.ErrSessionLost, "a lost session stays lost")
		s.Close()
	}
	assert.Zero(t, p.SessionRecords())
}

// Review 1, item 1: a pinned batch of a new session, queued behind batches
// whose worker is then killed, is not pinned to the dead process as its
// calls are failed (Submit then panicked on a worker that was no more, or
// the session ran on the replacement with its state gone and no
// ErrSessionLost): it runs on the replacement, where the session stays.
func TestQueuedSessionNotPinnedToADeadWorker(t *testing.T) {
	for _, threads := range []int{1, 2} {
		t.Run(fmt.Sprintf("threads=%d", threads), func(t *testing.T) {
			o := opts(1)
			o.ThreadsPerWorker = threads
			o.MaxRestarts = 100 // the kills are not what this test is about
			started := make(chan struct{}, threads)
			o.Host = func(context.Context, pools.HostCall) (any, error) {
				started <- struct{}{}
				return nil, nil
			}
			p := newPool(t, o)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			for round := range 3 {
				pid := pids(p)[0] // up: the last round's session ran on it
				require.NotZero(t, pid)
				running := make(chan error, threads)
				for range threads {
					go func() {
						_, err := p.Submit(ctx, batch("started_then_sleep", 600.0))
						running <- err
					}()
				}
				for range threads {
					<-started // every thread of the worker is busy
				}
				s := pools.NewSession(ctx, p)
				type result struct {
					out []any
					err error
				}
				queued := make(chan result, 1)
				go func() {
					out, err := s.Submit(ctx, batch("bump", 1))
					queued <- result{out, err}
				}()
				require.Eventually(t, func() bool { return p.Stats().Waiting == 1 }, time.Minute, time.Millisecond)
				require.NoError(t, syscall.Kill(pid, syscall.SIGKILL))
				for range threads {
					require.ErrorIs(t, <-running, pools.ErrWorkerCrashed)
				}
				r := <-queued
				require.NoError(t, r.err, "round %d: the session had no state yet: it starts on the replacement", round)
				first := r.out[0].([]any)
				assert.NotEqual(t, int64(pid), first[0], "round %d", round)
				assert.Equal(t, int64(1), first[1], "round %d", round)
				out, err := s.Submit(ctx, batch("bump", 1))
				require.NoError(t, err, "round %d", round)
				assert.Equal(t, []any{first[0], int64(2)}, out[0], "round %d: the session stays on its worker, with its state", round)
				s.Close()
			}
		})
	}
}

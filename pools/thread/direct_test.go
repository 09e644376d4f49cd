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

	"github.com/slither-go/slither/pools"
	"github.com/slither-go/slither/pools/thread"
)

// Tests of what only Direct mode does: slots and dropping session state on
// the calling thread.

// waitFor and tick bound the polls of Stats below: a bound on the failure
// mode only (a lost slot), never what makes a test pass.
const waitFor, tick = 10 * time.Second, time.Millisecond

// TestDirectSessionStateDroppedAtOnce: with no batch of it in flight, a
// closed session's state is gone from the interpreter when CloseSession
// returns; closed while a batch runs, when that batch's Submit returns;
// still open at Close, when Close returns.
func TestDirectSessionStateDroppedAtOnce(t *testing.T) {
	p, err := thread.New(thread.Options{Workers: 2, Paths: []string{"testdata"}})
	require.NoError(t, err)
	ctx := context.Background()

	s := pools.NewSession(ctx, p)
	_, err = s.Submit(ctx, batch("keep_tracked", "direct-closed"))
	require.NoError(t, err)
	s.Close()
	requireNoState(t, p, s.ID())
	requireFreed(t, p, "direct-closed")

	// Unpinned: state on both slots, both dropped.
	name := meetingName("direct-unpinned")
	b := pools.Batch{Module: mod, Function: "bump_meet", Items: []any{name, 2}, Session: "unpinned-" + name, Unpinned: true}
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = p.Submit(ctx, b)
		}()
	}
	wg.Wait()
	require.NoError(t, errors.Join(errs...))
	p.CloseSession(b.Session)
	requireNoState(t, p, b.Session)

	// Closed while its batch runs: dropped by the goroutine that ran it.
	execPy(t, p, "import threadtest; threadtest._rearm(); threadtest._rearm_started()")
	late := pools.NewSession(ctx, p)
	done := make(chan error, 1)
	go func() {
		_, err := late.Submit(ctx, batch("hold_then_keep", "direct-late"))
		done <- err
	}()
	execPy(t, p, "import threadtest\nassert threadtest._started.wait(30)\n")
	late.Close()
	execPy(t, p, "import threadtest; threadtest._release()")
	require.NoError(t, <-done)
	requireNoState(t, p, late.ID())

	// Open at Close: Close drops it.
	open := pools.NewSession(ctx, p)
	_, err = open.Submit(ctx, batch("keep_tracked", "direct-open"))
	require.NoError(t, err)
	require.NoError(t, p.Close(ctx))
	requireNoState(t, p, open.ID())
	requireFreed(t, p, "direct-open")
}

// TestDirectSlotLimit: n slots run at most n batches at once; the next one
// waits (counted in Stats.Waiting) until a slot is released. A batch of a
// pinned session waits for its own slot even while another is free.
func TestDirectSlotLimit(t *testing.T) {
	entered := make(chan struct{}, 3)
	p, err := thread.New(thread.Options{Workers: 2, Paths: []string{"testdata"},
		Host: func(context.Context, pools.HostCall) (any, error) {
			entered <- struct{}{}
			return nil, nil
		}})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, p.Close(context.Background())) })
	ctx := context.Background()
	execPy(t, p, "import threadtest; threadtest._rearm(); threadtest._reset_inside()")

	const callers = 3
	done := make(chan error, callers)
	for i := range callers {
		go func() {
			_, err := p.Submit(ctx, batch("enter_count_hold", i))
			done <- err
		}()
	}
	<-entered
	<-entered // two slots busy, in Python
	require.Eventually(t, func() bool { return p.Stats().Waiting == 1 }, waitFor, tick, "the third caller waits for a slot")
	st := p.Stats()
	assert.Equal(t, 2, st.Running)
	execPy(t, p, "import threadtest\nassert threadtest._inside == [2, 2], threadtest._inside\n")
	execPy(t, p, "import threadtest; threadtest._release()")
	for range callers {
		require.NoError(t, <-done)
	}
	<-entered
	execPy(t, p, "import threadtest\nassert threadtest._inside == [0, 2], 'at most 2 at once: %r' % threadtest._inside\n")
	assert.Equal(t, uint64(callers), p.Stats().Totals().Calls)

	// A pinned session's second batch waits for its slot; an unpinned
	// batch runs on the other meanwhile.
	execPy(t, p, "import threadtest; threadtest._rearm()")
	s := pools.NewSession(ctx, p)
	defer s.Close()
	first := make(chan error, 1)
	go func() {
		_, err := s.Submit(ctx, batch("enter_and_hold", 1))
		first <- err
	}()
	<-entered
	second := make(chan []any, 1)
	go func() {
		out, err := s.Submit(ctx, batch("context", 2))
		assert.NoError(t, err)
		second <- out
	}()
	require.Eventually(t, func() bool { return p.Stats().Waiting == 1 }, waitFor, tick, "the session's second batch waits for its slot")
	out, err := p.Submit(ctx, batch("context", 3))
	require.NoError(t, err)
	other := out[0].(map[string]any)["worker"]
	assert.Equal(t, 1, p.Stats().Waiting, "still waiting after a batch ran on the other slot")
	execPy(t, p, "import threadtest; threadtest._release()")
	require.NoError(t, <-first)
	got := <-second
	assert.NotEqual(t, other, got[0].(map[string]any)["worker"], "the session's batch ran on its own slot")
	assert.Equal(t, s.ID(), got[0].(map[string]any)["session"])
}

// TestDedicatedHostSubmitsToDirect: a host function of a Dedicated pool's
// batch (on the worker's locked thread, its state detached for the host
// call) submits to a Direct pool: that batch runs nested on the same OS
// thread with the Direct slot's context, and the Dedicated batch sees its
// own context again afterwards.
func TestDedicatedHostSubmitsToDirect(t *testing.T) {
	direct := newPool(t, thread.Direct, 2)
	ded, err := thread.New(thread.Options{Mode: thread.Dedicated, Workers: 1, Paths: []string{"testdata"},
		Host: func(ctx context.Context, c pools.HostCall) (any, error) {
			out, err := direct.Submit(ctx, pools.Batch{Module: mod, Function: "context", Items: []any{c.Name}, Session: "inner"})
			if err != nil {
				return nil, err
			}
			return out[0], nil
		}})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, ded.Close(context.Background())) })
	defer direct.CloseSession("inner")

	out, err := ded.Submit(context.Background(), pools.Batch{Module: mod, Function: "host_then_context",
		Items: []any{[]any{"a"}, []any{"b"}}, Session: "outer"})
	require.NoError(t, err)
	require.Len(t, out, 2)
	for i, r := range out {
		pair := r.([]any)
		inner, after := pair[0].(map[string]any), pair[1].(map[string]any)
		assert.Equal(t, "thread", inner["pool"])
		assert.Equal(t, "inner", inner["session"])
		assert.Equal(t, fmt.Sprint([]string{"a", "b"}[i]), inner["item"])
		assert.Contains(t, []any{int64(0), int64(1)}, inner["worker"])
		assert.Equal(t, map[string]any{"worker": int64(0), "pool": "thread", "session": "outer"}, after,
			"the Dedicated batch's own context after the nested Direct call")
	}
}

//go:build cgo

package thread_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/slither-go/slither/pools"
	"github.com/slither-go/slither/pools/thread"
)

// Direct mode's slots: who gets a released slot, and what a release owes
// the sessions it serves.

// TestDirectSlotGoesToOldestWaiter: a released slot goes to the batch that
// has waited longest, pinned or not, so that a session keeping its slot
// busy cannot starve batches of no session.
func TestDirectSlotGoesToOldestWaiter(t *testing.T) {
	p := newPool(t, thread.Direct, 1)
	ctx := context.Background()
	execPy(t, p, "import threadtest; threadtest._rearm(); threadtest._rearm_started(); threadtest._order.clear()")
	s := pools.NewSession(ctx, p)
	defer s.Close()

	held := make(chan error, 1)
	go func() {
		_, err := s.Submit(ctx, batch("hold_then_keep", "oldest-waiter"))
		held <- err
	}()
	execPy(t, p, "import threadtest\nassert threadtest._started.wait(30)\n")
	unpinned := make(chan error, 1)
	go func() {
		_, err := p.Submit(ctx, batch("record", "unpinned"))
		unpinned <- err
	}()
	require.Eventually(t, func() bool { return p.Stats().Waiting == 1 }, waitFor, tick)
	pinned := make(chan error, 1)
	go func() {
		_, err := s.Submit(ctx, batch("record", "pinned"))
		pinned <- err
	}()
	require.Eventually(t, func() bool { return p.Stats().Waiting == 2 }, waitFor, tick)

	execPy(t, p, "import threadtest; threadtest._release()")
	require.NoError(t, <-held)
	require.NoError(t, <-unpinned)
	require.NoError(t, <-pinned)
	execPy(t, p, "import threadtest\nassert threadtest._order == ['unpinned', 'pinned'], threadtest._order\n")
}

// TestDirectSessionDropDuringRelease: a session closed while the slot
// holding its state is being released by another batch (here: while that
// release drops another session's state) still has its state dropped by
// the time both have returned. CloseSession cannot take the held slot, so
// the releasing goroutine must see the drop it left.
func TestDirectSessionDropDuringRelease(t *testing.T) {
	p := newPool(t, thread.Direct, 1)
	ctx := context.Background()
	execPy(t, p, "import threadtest; threadtest._rearm(); threadtest._rearm_started()")

	idle := pools.NewSession(ctx, p)
	_, err := idle.Submit(ctx, batch("bump", 1))
	require.NoError(t, err)

	execPy(t, p, "import threadtest; threadtest._gate_drops()")
	t.Cleanup(func() { execPy(t, p, "import threadtest; threadtest._ungate_drops()") })
	busy := pools.NewSession(ctx, p)
	done := make(chan error, 1)
	go func() {
		_, err := busy.Submit(ctx, batch("hold_then_keep", "drop-during-release"))
		done <- err
	}()
	execPy(t, p, "import threadtest\nassert threadtest._started.wait(30)\n")
	busy.Close() // in flight: its batch's goroutine drops its state on release
	execPy(t, p, "import threadtest; threadtest._release()")
	// That goroutine now drops busy's state, paused: it holds the slot.
	execPy(t, p, "import threadtest\nassert threadtest.drop_entered.wait(30)\n")
	idle.Close()
	execPy(t, p, "import threadtest; threadtest.drop_go.set()")
	require.NoError(t, <-done)
	requireNoState(t, p, busy.ID())
	requireNoState(t, p, idle.ID())
}

// panicOnDone is a context whose Done panics: a Direct pool asks for it
// first as the call is about to start, holding the slot. It stands for any
// panic on the goroutine that runs a batch.
type panicOnDone struct{ context.Context }

func (panicOnDone) Done() <-chan struct{} { panic("no Done today") }

// TestDirectPanicKeepsSlot: a panic on the goroutine running a batch
// reaches the caller, who may recover; the pool keeps its slot, and the
// session its count of batches in flight.
func TestDirectPanicKeepsSlot(t *testing.T) {
	p := newPool(t, thread.Direct, 1)
	ctx := context.Background()
	s := pools.NewSession(ctx, p)
	_, err := s.Submit(ctx, batch("bump", 1))
	require.NoError(t, err)
	func() {
		defer func() { assert.Equal(t, "no Done today", recover()) }()
		_, err := s.Submit(panicOnDone{ctx}, batch("bump", 1))
		t.Errorf("Submit returned (%v) instead of panicking", err)
	}()

	st := p.Stats()
	assert.Zero(t, st.Running)
	assert.Equal(t, pools.WorkerIdle, st.Workers[0].State)
	// A bound on the failure mode only (a lost slot).
	bounded, cancel := context.WithTimeout(ctx, waitFor)
	defer cancel()
	out, err := p.Submit(bounded, batch("echo", 1))
	require.NoError(t, err, "the slot is free again")
	assert.Equal(t, []any{int64(1)}, out)
	s.Close() // none of its batches in flight: dropped at once
	requireNoState(t, p, s.ID())
}

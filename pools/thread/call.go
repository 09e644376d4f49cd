//go:build cgo

package thread

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/slither-go/slither/cpython"
	"github.com/slither-go/slither/pools"
)

// One batch's call on a worker: run on the worker's Python thread (its own
// in Dedicated mode, the submitting goroutine's in Direct mode), its
// interruption and its accounting.

type result struct {
	out []any
	err error
}

// run runs b on w's Python thread and returns its result and how long it
// took. ctx cancels it: a running call is interrupted.
func (w *worker) run(ctx context.Context, b pools.Batch) (result, time.Duration) {
	// Calls are told apart by sequence number: a late interrupt must never
	// hit a later call.
	w.seq++
	start := time.Now()
	out, err := w.call(ctx, b, w.seq, start)
	elapsed := time.Since(start)

	if err == nil {
		out, err = pools.CheckResults(b, out)
	} else {
		var exc *cpython.Exception
		switch {
		case errors.As(err, &exc):
			err = &pools.PythonError{Type: exc.Type, Message: exc.Message, Traceback: exc.Traceback, Err: err}
		case err == ctx.Err():
			// Direct: ctx ended just before the call reached Python, and
			// the Caller reports only that: report the cause, as every
			// other cancellation does.
			err = context.Cause(ctx)
		}
		if errors.Is(err, cpython.ErrCancelled) && ctx.Err() != nil {
			err = fmt.Errorf("%w (%w)", context.Cause(ctx), err)
		}
		err = fmt.Errorf("pools/thread: %s.%s: %w", b.Module, b.Function, err)
	}
	w.calls.Add(1)
	w.items.Add(uint64(len(b.Items)))
	w.busy.Add(int64(elapsed))
	if err != nil {
		w.errs.Add(1)
		out = nil
	}
	return result{out: out, err: err}, elapsed
}

// call runs b on w's Python thread as call seq, started at start. w shows
// as idle again when it returns, even by a panic (in Direct mode, where
// the caller may recover).
func (w *worker) call(ctx context.Context, b pools.Batch, seq uint64, start time.Time) ([]any, error) {
	w.mu.Lock()
	w.cur, w.since, w.curMod, w.curFn = seq, start, b.Module, b.Function
	w.mu.Unlock()
	w.active.Store(true)
	defer w.idle()
	if w.cl != nil {
		// Direct: the Caller interrupts the call when ctx ends, with no
		// window before the call starts in which a cancellation is missed,
		// and drops an interrupt that comes too late before it returns.
		return w.cl.CallBatchContext(ctx, b.Module, b.Function, b.Items)
	}
	if ctx.Done() != nil {
		stop := context.AfterFunc(ctx, func() { w.interrupt(seq) })
		defer stop()
	}
	return w.th.CallBatch(b.Module, b.Function, b.Items)
}

// idle marks w's call ended.
func (w *worker) idle() {
	w.active.Store(false)
	w.mu.Lock()
	w.cur = 0
	w.mu.Unlock()
	// An interrupt that raced with the end of the call must not hit the next one.
	w.py.ClearInterrupt()
}

// pid is this process's id (a syscall each time os.Getpid is asked).
var pid = os.Getpid()

// interrupt raises slither.Cancelled in the worker's running call if it is
// call seq (any running call, for seq == 0).
func (w *worker) interrupt(seq uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.cur != 0 && (seq == 0 || w.cur == seq) {
		w.py.Interrupt()
	}
}

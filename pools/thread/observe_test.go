//go:build cgo

package thread_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/slither-go/slither/internal/pooltest"
	"github.com/slither-go/slither/internal/spantest"
	"github.com/slither-go/slither/pools"
	"github.com/slither-go/slither/pools/thread"
)

// TestTraceIDsReachPython: a batch whose context carries a span context
// sees its trace and span ids in slither.context(); the next batch on the
// same worker without one sees None again, and so does a batch of a pool
// that never traced.
func TestTraceIDsReachPython(t *testing.T) {
	eachMode(t, func(t *testing.T, mode thread.Mode) {
		p := newPool(t, mode, 1) // one worker: every batch below runs on the same thread
		const traceHex, spanHex = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"

		out, err := p.Submit(context.Background(), batch("trace_ids", 0))
		require.NoError(t, err)
		assert.Equal(t, []any{[]any{nil, nil}}, out, "no span context: no ids")

		out, err = p.Submit(spantest.SpanContext(t, traceHex, spanHex), batch("trace_ids", 0, 1))
		require.NoError(t, err)
		assert.Equal(t, []any{[]any{traceHex, spanHex}, []any{traceHex, spanHex}}, out)

		const otherSpan = "1111111111111111"
		out, err = p.Submit(spantest.SpanContext(t, traceHex, otherSpan), batch("trace_ids", 0))
		require.NoError(t, err)
		assert.Equal(t, []any{[]any{traceHex, otherSpan}}, out, "each batch sees its own span")

		out, err = p.Submit(context.Background(), batch("trace_ids", 0))
		require.NoError(t, err)
		assert.Equal(t, []any{[]any{nil, nil}}, out, "the last traced batch's ids are cleared")
	})
}

// TestStatsShowTheRunningBatch: while a batch is blocked in Python (it has
// told the test which OS thread it runs on), Stats shows its worker busy
// with it, on that thread, since it started; the other worker idle; and,
// once it has returned, both idle; after Close, stopped.
func TestStatsShowTheRunningBatch(t *testing.T) {
	eachMode(t, func(t *testing.T, mode thread.Mode) {
		entered := make(chan int64, 1)
		p, err := thread.New(thread.Options{Mode: mode, Workers: 2, Paths: []string{"testdata"},
			Host: func(_ context.Context, c pools.HostCall) (any, error) {
				entered <- c.Args[0].(int64)
				return nil, nil
			}})
		require.NoError(t, err)
		closed := false
		t.Cleanup(func() {
			if !closed {
				_ = p.Close(context.Background())
			}
		})
		execPy(t, p, "import threadtest\nthreadtest._rearm()\n")

		st := p.Stats()
		assert.Equal(t, "thread", st.Name)
		assert.Equal(t, "thread", p.Name())
		assert.Equal(t, "thread", pools.NameOf(p))
		threads := map[int]bool{}
		for _, w := range st.Workers {
			assert.Equal(t, pools.WorkerIdle, w.State, "worker %d", w.ID)
			if mode == thread.Dedicated {
				assert.NotZero(t, w.Thread, "worker %d has its OS thread id", w.ID)
			} else {
				assert.Zero(t, w.Thread, "an idle slot runs on no thread")
			}
			threads[w.Thread] = true
			assert.Empty(t, w.Current)
			assert.True(t, w.Since.IsZero())
		}
		if mode == thread.Dedicated {
			assert.Len(t, threads, 2, "each worker has its own thread")
		}

		before := time.Now()
		done := make(chan error, 1)
		var ci pools.CallInfo
		go func() {
			_, err := p.Submit(pools.WithCallInfo(context.Background(), &ci), batch("enter_and_hold", 1, 2))
			done <- err
		}()
		tid := <-entered // the batch runs, and blocks until released

		st = p.Stats()
		by := pooltest.ByState(st)
		busy, idle := by[pools.WorkerBusy], by[pools.WorkerIdle]
		require.Len(t, busy, 1, "%+v", st.Workers)
		require.Len(t, idle, 1, "%+v", st.Workers)
		b := busy[0]
		assert.True(t, b.Running)
		assert.Equal(t, mod+".enter_and_hold", b.Current)
		assert.Equal(t, int(tid), b.Thread, "Stats names the OS thread Python runs on")
		assert.Equal(t, os.Getpid(), b.Pid)
		assert.False(t, b.Since.Before(before), "since %v, submitted at %v", b.Since, before)
		assert.False(t, b.Since.After(time.Now()))
		assert.Equal(t, 1, st.Running)
		assert.Empty(t, idle[0].Current)

		execPy(t, p, "threadtest._release()\n")
		require.NoError(t, <-done)
		assert.Equal(t, "thread", ci.Pool)
		assert.Equal(t, b.ID, ci.Worker)
		for _, w := range p.Stats().Workers {
			assert.Equal(t, pools.WorkerIdle, w.State, "worker %d after the batch", w.ID)
			assert.Empty(t, w.Current)
		}

		require.NoError(t, p.Close(context.Background()))
		closed = true
		for _, w := range p.Stats().Workers {
			assert.Equal(t, pools.WorkerStopped, w.State, "worker %d after Close", w.ID)
		}
	})
}

package process_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/slither-go/slither/internal/pooltest"
	"github.com/slither-go/slither/internal/spantest"
	"github.com/slither-go/slither/pools"
	"github.com/slither-go/slither/pools/process"
	"github.com/slither-go/slither/telemetry"
)

// TestTraceIDsReachPython: the call frame carries the batch's trace
// context; Python sees it in slither.context() for that call only, with
// one thread per worker (the worker's main thread runs calls) and with two.
func TestTraceIDsReachPython(t *testing.T) {
	const traceHex, spanHex = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	for _, threads := range []int{1, 2} {
		t.Run(fmt.Sprintf("threads=%d", threads), func(t *testing.T) {
			o := opts(1)
			o.ThreadsPerWorker = threads
			p := newPool(t, o)
			for range threads { // every thread of the worker has run untraced
				assert.Equal(t, []any{[]any{nil, nil}}, submit(t, p, batch("trace_ids", 0)))
			}
			out, err := p.Submit(spantest.SpanContext(t, traceHex, spanHex), batch("trace_ids", 0, 1))
			require.NoError(t, err)
			assert.Equal(t, []any{[]any{traceHex, spanHex}, []any{traceHex, spanHex}}, out)
			for range threads { // cleared after the call, on whichever thread ran it
				assert.Equal(t, []any{[]any{nil, nil}}, submit(t, p, batch("trace_ids", 0)), "untraced after a traced call")
			}
		})
	}
}

// TestWorkerIgnoresMalformedTraceIDs: the trace ids in a call's header are
// checked by the worker; anything but 32 and 16 lowercase hex digits (not
// all zero) leaves both None, and the call runs as usual.
func TestWorkerIgnoresMalformedTraceIDs(t *testing.T) {
	rw := startRawWorker(t, rawCtx(t))
	const tr, sp = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	cases := []struct {
		fields string
		want   []any
	}{
		{`"tr":"` + tr + `","sp":"` + sp + `"`, []any{tr, sp}},
		{`"tr":"` + tr + `"`, []any{nil, nil}},
		{`"tr":"4BF92F3577B34DA6A3CE929D0E0E4736","sp":"` + sp + `"`, []any{nil, nil}},
		{`"tr":"` + tr + `0","sp":"` + sp + `"`, []any{nil, nil}},
		{`"tr":"` + tr + `","sp":"00f067aa0ba902bz"`, []any{nil, nil}},
		{`"tr":"00000000000000000000000000000000","sp":"` + sp + `"`, []any{nil, nil}},
		{`"tr":12,"sp":["x"]`, []any{nil, nil}},
		{`"tr":null,"sp":null`, []any{nil, nil}},
		{`"tr":"` + tr + `","sp":"` + sp + `"`, []any{tr, sp}},
	}
	for i, c := range cases {
		id := uint64(i + 1)
		require.NoError(t, rw.send(headerFrame(fmt.Sprintf(`{"t":"call","id":%d,"m":"proctest","f":"trace_ids",%s,"v":[0]}`, id, c.fields))))
		out, perr := rw.result(id)
		require.Nil(t, perr, "call %d (%s)", id, c.fields)
		assert.Equal(t, []any{c.want}, out, "call %d (%s)", id, c.fields)
	}
}

// heldHost is a host function whose "entered" calls report the calling
// worker's pid and block until released.
type heldHost struct {
	entered chan int64
	release chan struct{}
}

func newHeldHost() *heldHost {
	h := &heldHost{entered: make(chan int64, 4), release: make(chan struct{})}
	return h
}

func (h *heldHost) serve(ctx context.Context, c pools.HostCall) (any, error) {
	if c.Name == "entered" {
		h.entered <- c.Args[0].(int64)
		select {
		case <-h.release:
		case <-ctx.Done():
		}
	}
	return nil, nil
}

// TestStatsShowTheRunningBatch: while a batch is blocked in Python (in a
// host call the test holds), Stats shows its worker busy with it since it
// started, with the pid Python reported; the other worker idle; both idle
// once it returned. The pool's name is Options.Name, in Stats and in
// CallInfo.
func TestStatsShowTheRunningBatch(t *testing.T) {
	h := newHeldHost()
	o := opts(2)
	o.Name = "process/cpu"
	o.Host = h.serve
	p := newPool(t, o)
	assert.Equal(t, "process/cpu", p.Name())
	assert.Equal(t, "process/cpu", pools.NameOf(p))
	st := p.Stats()
	assert.Equal(t, "process/cpu", st.Name)
	for _, w := range st.Workers {
		assert.Equal(t, pools.WorkerIdle, w.State, "worker %d", w.ID)
		assert.Empty(t, w.Current)
	}

	before := time.Now()
	var ci pools.CallInfo
	done := make(chan error, 1)
	go func() {
		_, err := p.Submit(pools.WithCallInfo(context.Background(), &ci), batch("enter_and_hold", 1))
		done <- err
	}()
	pid := <-h.entered

	st = p.Stats()
	by := pooltest.ByState(st)
	busy, idle := by[pools.WorkerBusy], by[pools.WorkerIdle]
	require.Len(t, busy, 1, "%+v", st.Workers)
	require.Len(t, idle, 1, "%+v", st.Workers)
	assert.Equal(t, mod+".enter_and_hold", busy[0].Current)
	assert.Equal(t, int(pid), busy[0].Pid)
	assert.False(t, busy[0].Since.Before(before), "since %v, submitted at %v", busy[0].Since, before)
	assert.False(t, busy[0].Since.After(time.Now()))
	assert.Zero(t, busy[0].Thread, "the thread id is the thread pool's")
	assert.Empty(t, idle[0].Current)
	assert.True(t, idle[0].Since.IsZero())
	assert.Equal(t, 1, st.Running)

	close(h.release)
	require.NoError(t, <-done)
	assert.Equal(t, "process/cpu", ci.Pool)
	assert.Equal(t, int(pid), ci.Pid)
	for _, w := range p.Stats().Workers {
		assert.Equal(t, pools.WorkerIdle, w.State, "worker %d", w.ID)
		assert.Empty(t, w.Current)
	}
}

// TestStatsShowRecycling: a worker past MaxCalls with a call still running
// is "recycling" until that call ends; then it is replaced.
func TestStatsShowRecycling(t *testing.T) {
	h := newHeldHost()
	o := opts(1)
	o.ThreadsPerWorker = 2
	o.MaxCalls = 1
	o.Host = h.serve
	p := newPool(t, o)

	done := make(chan error, 1)
	go func() {
		_, err := p.Submit(context.Background(), batch("enter_and_hold", 1))
		done <- err
	}()
	first := <-h.entered
	out := submit(t, p, batch("pid", 1)) // the worker's first finished call: it is due
	require.Equal(t, first, out[0].(map[string]any)["pid"])
	w := p.Stats().Workers[0]
	assert.Equal(t, pools.WorkerRecycling, w.State)
	assert.Equal(t, mod+".enter_and_hold", w.Current, "the call it waits for")

	close(h.release)
	require.NoError(t, <-done)
	out = submit(t, p, batch("pid", 1))
	assert.NotEqual(t, first, out[0].(map[string]any)["pid"], "replaced")
}

// TestWorkerEventClasses: pool.worker.* events name the pool and its kind,
// and each exit's class says why it ended: recycled, timed out, crashed,
// closed, or never started.
func TestWorkerEventClasses(t *testing.T) {
	bus := telemetry.New(quiet())
	var mu sync.Mutex
	var exits []string
	var starts, restarts int
	require.NoError(t, bus.Attach("test", func(ev telemetry.Event, _ telemetry.Measurements, md telemetry.Metadata) {
		mu.Lock()
		defer mu.Unlock()
		assert.Equal(t, "process/x", md["pool"], "%s", ev)
		assert.Equal(t, "process", md["kind"], "%s", ev)
		switch ev {
		case telemetry.PoolWorkerStart:
			starts++
		case telemetry.PoolWorkerRestart:
			restarts++
		case telemetry.PoolWorkerExit:
			exits = append(exits, md["class"].(string))
		}
	}, "pool.worker.*"))
	o := opts(1)
	o.Name = "process/x"
	o.Telemetry = bus
	o.MaxCalls = 2
	o.CallTimeout = 2 * time.Second
	p, err := process.New(context.Background(), o)
	require.NoError(t, err)
	submit(t, p, batch("pid", 1))
	submit(t, p, batch("pid", 1)) // recycled after this one
	_, err = p.Submit(context.Background(), batch("hang", 1))
	require.ErrorIs(t, err, pools.ErrTimeout)
	_, err = p.Submit(context.Background(), batch("segfault", 1))
	require.ErrorIs(t, err, pools.ErrWorkerCrashed)
	submit(t, p, batch("pid", 1))
	require.NoError(t, p.Close(context.Background())) // waits for every worker's end, events included

	restore := process.SetWorkerModule("badproto")
	defer restore()
	_, err = process.New(context.Background(), o)
	require.ErrorIs(t, err, process.ErrStart)

	mu.Lock()
	defer mu.Unlock()
	assert.ElementsMatch(t, []string{pools.ExitRecycle, pools.ExitTimeout, pools.ExitCrash, pools.ExitClosed, pools.ExitStartFailed}, exits)
	assert.Equal(t, 4, starts, "the first worker and three replacements")
	assert.Equal(t, 3, restarts)
}

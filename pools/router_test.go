package pools_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/slither-go/slither/pools"
	"github.com/slither-go/slither/telemetry"
)

// fakePool stands in for a pool in the router's own unit tests (the
// routing rules are pure Go); router_e2e_test.go routes real pools.
type fakePool struct {
	kind         pools.Kind
	freeThreaded bool
	gil          bool
	marked       map[string]bool
	inspected    int
	submitted    []pools.Batch
	closed       []string
}

func (f *fakePool) Submit(_ context.Context, b pools.Batch) ([]any, error) {
	f.submitted = append(f.submitted, b)
	return []any{string(f.kind)}, nil
}
func (f *fakePool) Capacity() int { return 2 }
func (f *fakePool) Stats() pools.Stats {
	return pools.Stats{Kind: f.kind, Workers: make([]pools.WorkerStats, 2)}
}
func (f *fakePool) Kind() pools.Kind            { return f.kind }
func (f *fakePool) CloseSession(id string)      { f.closed = append(f.closed, id) }
func (f *fakePool) Close(context.Context) error { return nil }
func (f *fakePool) FreeThreadedBuild() bool     { return f.freeThreaded }
func (f *fakePool) GILEnabled() bool            { return f.gil }
func (f *fakePool) GILEnabledBy() string        { return "_ext" }
func (f *fakePool) ThreadSafe(_ context.Context, m, fn string) (bool, error) {
	f.inspected++
	return f.marked[m+"."+fn], nil
}

func TestRoutingRules(t *testing.T) {
	type decl int
	const (
		none decl = iota
		python
		golang
	)
	for _, build := range []bool{true, false} {
		for _, gil := range []bool{false, true} {
			for _, d := range []decl{none, python, golang} {
				for _, route := range []pools.Route{pools.Auto, pools.Thread, pools.Process} {
					name := fmt.Sprintf("freethreaded=%v/gil=%v/decl=%d/route=%v", build, gil, d, route)
					t.Run(name, func(t *testing.T) {
						th := &fakePool{kind: pools.KindThread, freeThreaded: build, gil: gil, marked: map[string]bool{}}
						pr := &fakePool{kind: pools.KindProcess}
						r := &pools.Router{Thread: th, Process: pr}
						switch d {
						case python:
							th.marked["m.f"] = true
						case golang:
							r.DeclareThreadSafe("m", "f")
						}
						dec, err := r.Decide(context.Background(), pools.Batch{Module: "m", Function: "f", Route: route})
						require.NoError(t, err)
						want := pools.Process
						switch {
						case route == pools.Thread:
							want = pools.Thread
						case route == pools.Process:
						case build && !gil && d != none:
							want = pools.Thread
						}
						assert.Equal(t, want, dec.Route, dec.Reason)
						if route != pools.Auto {
							assert.Contains(t, dec.Reason, "requested")
							return
						}
						switch {
						case !build:
							assert.Equal(t, "the embedded interpreter is not a free-threaded build", dec.Reason)
						case gil:
							assert.Equal(t, "the GIL is enabled in the embedded interpreter (re-enabled by module _ext)", dec.Reason)
						case d == none:
							assert.Contains(t, dec.Reason, "m.f is not declared thread-safe")
						case d == python:
							assert.Equal(t, "m.f is declared thread-safe (@slither.thread_safe) and the GIL is off", dec.Reason)
						case d == golang:
							assert.Equal(t, "m.f is declared thread-safe (declared in Go) and the GIL is off", dec.Reason)
							assert.Zero(t, th.inspected, "a Go declaration needs no import")
						}
					})
				}
			}
		}
	}
}

func TestRouterMissingPoolsAndSessions(t *testing.T) {
	ctx := context.Background()
	b := pools.Batch{Module: "m", Function: "f"}

	onlyProcess := &pools.Router{Process: &fakePool{kind: pools.KindProcess}}
	d, err := onlyProcess.Decide(ctx, b)
	require.NoError(t, err)
	assert.Equal(t, "no embedded thread pool", d.Reason)
	_, err = onlyProcess.Decide(ctx, pools.Batch{Module: "m", Function: "f", Route: pools.Thread})
	assert.ErrorIs(t, err, pools.ErrNoRoute)

	th := &fakePool{kind: pools.KindThread, freeThreaded: true, marked: map[string]bool{}}
	onlyThread := &pools.Router{Thread: th}
	_, err = onlyThread.Decide(ctx, b)
	assert.ErrorIs(t, err, pools.ErrNoRoute)
	assert.ErrorContains(t, err, "would go to a process pool (m.f is not declared thread-safe")

	// A session stays where it started, even when the rules change.
	bus := telemetry.New(nil)
	var events []telemetry.Metadata
	require.NoError(t, bus.Attach("t", func(_ telemetry.Event, _ telemetry.Measurements, md telemetry.Metadata) {
		events = append(events, md)
	}, telemetry.RouterDecision))
	pr := &fakePool{kind: pools.KindProcess}
	r := &pools.Router{Thread: th, Process: pr, Telemetry: bus}
	r.DeclareThreadSafe("m", "f")
	s := pools.Batch{Module: "m", Function: "f", Session: "s1"}
	out, err := r.Submit(ctx, s)
	require.NoError(t, err)
	assert.Equal(t, []any{"thread"}, out)
	th.gil = true // an import turned the GIL on
	out, err = r.Submit(ctx, s)
	require.NoError(t, err)
	assert.Equal(t, []any{"thread"}, out, "the session's state lives in the thread pool")
	out, err = r.Submit(ctx, b)
	require.NoError(t, err)
	assert.Equal(t, []any{"process"}, out, "new work follows the rules")
	r.CloseSession("s1")
	assert.Equal(t, []string{"s1"}, th.closed)
	assert.Empty(t, pr.closed)
	assert.Equal(t, map[string]int{"thread": 1, "process": 1}, r.Counts())
	require.Len(t, events, 2)
	assert.Equal(t, "process", events[1]["route"])
	assert.Equal(t, 4, r.Capacity())
	assert.Len(t, r.Stats().Workers, 4)
	assert.Equal(t, pools.KindRouter, r.Kind())
}

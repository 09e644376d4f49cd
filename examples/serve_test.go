//go:build cgo

package examples_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/slither-go/slither/dispatch"
	"github.com/slither-go/slither/engine"
	"github.com/slither-go/slither/examples"
	"github.com/slither-go/slither/examples/text_analysis"
	"github.com/slither-go/slither/internal/pyhold"
	"github.com/slither-go/slither/monitor"
	"github.com/slither-go/slither/pools"
)

// TestServe keeps text_analysis running with its monitor served: the
// first round prints and checks as Run does, later rounds run quietly on
// the same engine, and the monitor's state counts every round's items.
// Ending the context ends Serve without an error.
func TestServe(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out bytes.Buffer
	var eng *engine.Engine
	var states []monitor.State
	var results []*examples.Result
	err := examples.Serve(ctx, text_analysis.Example, examples.ServeOptions{
		HTTP:    engine.HTTPConfig{Addr: "127.0.0.1:0"},
		Out:     &out,
		Serving: func(e *engine.Engine) { eng = e },
		Round: func(n int, res *examples.Result, err error) {
			require.NoError(t, err, "round %d", n)
			results = append(results, res)
			// The monitor's own reading: the handler shares one reading
			// for 250 ms, and a round can take less.
			states = append(states, eng.Monitor().State())
			if n == 1 { // the handler's first reading is fresh
				resp, err := http.Get("http://" + eng.HTTPAddr() + "/debug/slither/state")
				require.NoError(t, err)
				defer resp.Body.Close()
				var served monitor.State
				require.NoError(t, json.NewDecoder(resp.Body).Decode(&served))
				assert.Equal(t, states[0].Totals, served.Totals, "the state served")
			}
			if n == 3 {
				cancel()
			}
		},
	})
	require.NoError(t, err)
	require.NotNil(t, eng)
	require.Len(t, results, 3)
	assert.True(t, results[0].OK(), out.String())
	assert.Equal(t, 1, strings.Count(out.String(), "== text_analysis"), "only the first round prints")
	assert.Contains(t, out.String(), "verdict (against a serial reference)")
	// Every round analyzes the same documents on one engine: the items
	// add up round after round.
	per := states[0].Totals.ItemsOK
	require.Positive(t, per)
	for i, st := range states {
		assert.Equal(t, per*int64(i+1), st.Totals.ItemsOK, "after round %d", i+1)
		assert.Equal(t, states[0].Started, st.Started, "one engine")
	}
	assert.NotEmpty(t, states[2].Pools)

	err = examples.Serve(context.Background(), text_analysis.Example, examples.ServeOptions{})
	assert.ErrorContains(t, err, "needs an HTTP address")
}

// TestServeReturnsWhileABatchHoldsOn: Ctrl-C (ctx ending) while a batch is
// blocked in Python, in C where the thread pool's interrupt does not reach
// it, so the pool cannot drain. Serve still returns, CloseTimeout after,
// with an error saying it gave up on the batch, instead of waiting for it
// for ever.
func TestServeReturnsWhileABatchHoldsOn(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	h := pyhold.New(t, t.TempDir(), "held")
	ex := examples.Example{
		Name:   "held",
		Python: fstest.MapFS{"heldex.py": {Data: []byte(pyhold.Source)}},
		Run: func(ctx context.Context, env *examples.Env) error {
			_, err := env.Engine.Dispatch(ctx, dispatch.Items(h.Item), engine.DispatchOptions{Options: dispatch.Options{
				Module: "heldex", Function: "hold", Route: pools.Thread}})
			return err
		},
	}
	done := make(chan error, 1)
	go func() {
		done <- examples.Serve(ctx, ex, examples.ServeOptions{HTTP: engine.HTTPConfig{Addr: "127.0.0.1:0"},
			CloseTimeout: time.Second})
	}()
	started := make(chan error, 1)
	go func() { started <- h.Started() }()
	select {
	case err := <-started:
		require.NoError(t, err)
	case err := <-done:
		t.Fatalf("Serve ended before the batch started: %v", err)
	}
	cancel()
	err := <-done // the batch is still held
	require.ErrorIs(t, err, context.DeadlineExceeded)
	assert.ErrorContains(t, err, "examples: closing held's engine: ")
	assert.ErrorContains(t, err, "gave up waiting for running batches")
	h.Release() // the worker can end now, and the leak check sees it gone
}

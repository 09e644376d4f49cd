//go:build cgo

package examples_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/slither-go/slither/engine"
	"github.com/slither-go/slither/examples"
	"github.com/slither-go/slither/examples/text_analysis"
	"github.com/slither-go/slither/monitor"
)

// TestServe keeps text_analysis running with its monitor served: the
// first round prints and checks as Run does, later rounds run quietly on
// the same engine, and the monitor's state counts every round's items.
// Ending the context ends Serve without an error.
func TestServe(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out bytes.Buffer
	var addr string
	var states []monitor.State
	var results []*examples.Result
	err := examples.Serve(ctx, text_analysis.Example, examples.ServeOptions{
		HTTP:    engine.HTTPConfig{Addr: "127.0.0.1:0"},
		Out:     &out,
		Serving: func(a string) { addr = a },
		Round: func(n int, res *examples.Result, err error) {
			require.NoError(t, err, "round %d", n)
			results = append(results, res)
			resp, err := http.Get("http://" + addr + "/debug/slither/state")
			require.NoError(t, err)
			defer resp.Body.Close()
			var st monitor.State
			require.NoError(t, json.NewDecoder(resp.Body).Decode(&st))
			states = append(states, st)
			if n == 3 {
				cancel()
			}
		},
	})
	require.NoError(t, err)
	require.NotEmpty(t, addr)
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

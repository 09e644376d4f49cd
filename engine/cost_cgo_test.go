//go:build cgo

package engine_test

import (
	"bytes"
	"context"
	"fmt"
	"regexp"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/slither-go/slither/capacity"
	"github.com/slither-go/slither/engine"
	"github.com/slither-go/slither/pools"
)

// TestAutoFollowsMeasuredCosts routes two thread-safe functions through a
// real engine (the embedded thread pool and a process pool running the
// system's GIL Python): a pure-Python CPU loop and sha256+zlib of 1 MiB.
// Auto measures both pools on each and sends each function to the pool
// that measured faster, saying so with the ratio. Which pool wins depends
// on the machine (3.13t runs bytecode slower than 3.11; 1 MiB crosses the
// process pool's pipe each way), so the test asserts that the decision
// follows the router's own measurements, and logs what they were.
func TestAutoFollowsMeasuredCosts(t *testing.T) {
	ctx := context.Background()
	if gil := capacity.Probe(ctx, "/usr/bin/python3"); gil.Error != "" || !gil.GILEnabled {
		t.Skip("needs a Python with the GIL at /usr/bin/python3")
	}
	// No seeds for costtest.* (slither bench saves its own functions'), and
	// SLITHER_CACHE_DIR stays: the embedded interpreter, started once per
	// process, keeps the slither package's directory from its first start.
	eng, err := engine.Start(ctx, engine.Config{
		Thread:  engine.ThreadConfig{Workers: 1},
		Process: map[string]engine.ProcessConfig{"default": {Python: "/usr/bin/python3", Workers: 1}},
		Paths:   []string{testdata(t)},
		Logger:  quiet(),
	})
	require.NoError(t, err)
	defer func() { require.NoError(t, eng.Close(ctx)) }()
	if eng.ThreadPool() == nil {
		t.Skip("no embedded thread pool (make python)")
	}
	p, err := eng.Pool("")
	require.NoError(t, err)
	r := p.(*pools.Router)

	mb := bytes.Repeat([]byte{7}, 1<<20)
	for _, tc := range []struct {
		fn    string
		items []any
	}{
		{"spin", []any{20_000, 20_000}},
		{"digest", []any{mb, mb}},
	} {
		t.Run(tc.fn, func(t *testing.T) {
			name := "costtest." + tc.fn
			routes := map[string]int{}
			for range 24 {
				var ci pools.CallInfo
				out, err := r.Submit(pools.WithCallInfo(ctx, &ci), pools.Batch{Module: "costtest", Function: tc.fn, Items: tc.items})
				require.NoError(t, err)
				require.Len(t, out, len(tc.items))
				routes[ci.Route+"/"+ci.RouteClass]++
			}
			assert.Equal(t, 5, routes["thread/thread-safe"], "threads first, as the safety rule says, then every other batch: %v", routes)
			// Then three probes measure the process pool; more follow when a
			// probe's batch beat the threads' estimate (a noisy machine).
			assert.GreaterOrEqual(t, routes["process/probe"], 3, "then the process pool is measured: %v", routes)

			var c pools.FunctionCost
			for _, fc := range r.Costs() {
				if fc.Function == name {
					c = fc
				}
			}
			require.True(t, c.Thread.Measured && c.Process.Measured, "%+v", c)
			d, err := r.Decide(ctx, pools.Batch{Module: "costtest", Function: tc.fn})
			require.NoError(t, err)
			if d.Class == pools.RouteProbe { // the next one is not
				d, err = r.Decide(ctx, pools.Batch{Module: "costtest", Function: tc.fn})
				require.NoError(t, err)
			}
			t.Logf("%s: thread %.0f ns/item, process (GIL) %.0f ns/item: %s", name, c.Thread.NsPerItem, c.Process.NsPerItem, d.Reason)
			require.Equal(t, pools.RouteFaster, d.Class, d.Reason)
			assert.Equal(t, c.Thread.NsPerItem, d.ThreadCost)
			assert.Equal(t, c.Process.NsPerItem, d.ProcessCost)
			chosen, other := c.Thread.NsPerItem, c.Process.NsPerItem
			if d.Route == pools.Process {
				chosen, other = other, chosen
			}
			// The chosen pool is the cheaper one (or within the 5% that
			// keeps near-equal pools from alternating).
			assert.LessOrEqual(t, chosen, other*1.05, d.Reason)
			assert.Contains(t, d.Reason, name+" is thread-safe (@slither.thread_safe)")
			if m := regexp.MustCompile(`ran it ([0-9.]+)x faster`).FindStringSubmatch(d.Reason); m != nil {
				got, err := strconv.ParseFloat(m[1], 64)
				require.NoError(t, err)
				assert.InDelta(t, other/chosen, got, 0.051, "the ratio in the reason is the measured one")
				want := "the " + d.Route.String() + " pool ran it"
				if d.Route == pools.Process {
					want = "but the process pool ran it"
				}
				assert.Contains(t, d.Reason, want)
			} else {
				assert.Contains(t, d.Reason, fmt.Sprintf("the %s pool is about as fast as", d.Route))
			}
		})
	}
}

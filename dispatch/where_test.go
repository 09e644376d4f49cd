//go:build cgo

package dispatch_test

import (
	"context"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/codes"

	"github.com/slither-go/slither/dispatch"
	"github.com/slither-go/slither/internal/pooltest"
	"github.com/slither-go/slither/internal/spantest"
	"github.com/slither-go/slither/pools"
	"github.com/slither-go/slither/pools/process"
	"github.com/slither-go/slither/telemetry"
)

// namedProcessPool is a one-worker process pool called name.
func namedProcessPool(t *testing.T, name string) *process.Pool {
	t.Helper()
	abs, err := filepath.Abs("testdata")
	require.NoError(t, err)
	p, err := process.New(context.Background(), process.Options{Name: name, Workers: 1, Python: pooltest.Python(),
		Paths: []string{abs}, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, p.Close(context.Background())) })
	return p
}

// TestTimedOutBatchNamesItsPool: a batch that runs past Options.Timeout
// returns before the pool has said where it ran, and its events and span
// still name the pool dispatch submitted to — by its name, as the other
// events of the run do, not by its kind — and, through a Router, the
// route and its class (written before the batch reached the pool).
func TestTimedOutBatchNamesItsPool(t *testing.T) {
	for _, c := range []struct {
		name        string
		pool        func(t *testing.T) pools.Pool
		wantPool    string
		startPool   string // before the router chose: its own name
		wantKind    string
		route       string
		routeClass  string
		batchRoute  pools.Route
		wantNoRoute bool
	}{
		{name: "process", pool: func(t *testing.T) pools.Pool { return namedProcessPool(t, "process/x") },
			wantPool: "process/x", startPool: "process/x", wantKind: "process", wantNoRoute: true},
		{name: "router", pool: func(t *testing.T) pools.Pool {
			return &pools.Router{Process: namedProcessPool(t, "process/x"), Logger: slog.New(slog.DiscardHandler)}
		}, wantPool: "process/x", startPool: "router", wantKind: "process", route: "process", routeClass: pools.RouteRequested, batchRoute: pools.Process},
	} {
		t.Run(c.name, func(t *testing.T) {
			tp, exp := spantest.Recorder(t)
			bus := telemetry.New(nil)
			var mu sync.Mutex
			var got events
			require.NoError(t, bus.Attach("collect", func(ev telemetry.Event, m telemetry.Measurements, md telemetry.Metadata) {
				mu.Lock()
				defer mu.Unlock()
				got.evs, got.mds = append(got.evs, ev), append(got.mds, md)
			}, "dispatch.*"))
			// The batch sleeps 2 s, well past the timeout: that is the
			// workload under test, not a wait for something.
			o := dispatch.Options{Module: mod, Function: "sleepy", Strategy: dispatch.FixedBatch(1), MaxInFlight: 1,
				Timeout: 100 * time.Millisecond, Route: c.batchRoute, Telemetry: bus, TracerProvider: tp}
			_, err := dispatch.Run(context.Background(), c.pool(t), dispatch.Slice([]float64{2}), o)
			require.ErrorIs(t, err, pools.ErrTimeout)

			mu.Lock()
			defer mu.Unlock()
			var exc telemetry.Metadata
			for i, ev := range got.evs {
				md := got.mds[i]
				switch ev {
				case telemetry.DispatchBatchException, telemetry.DispatchBatchStop:
					assert.Equal(t, c.wantPool, md["pool"], "%s names the pool that ran the batch", ev)
					exc = md
				default:
					assert.Equal(t, c.startPool, md["pool"], "%s names the pool dispatch submits to", ev)
				}
			}
			require.NotNil(t, exc, "the batch's exception event, in %v", got.evs)
			assert.Equal(t, c.wantKind, exc["kind"])
			assert.Contains(t, exc["error"], "timeout")
			if c.wantNoRoute {
				assert.NotContains(t, exc, "route")
				assert.NotContains(t, exc, "class")
			} else {
				assert.Equal(t, c.route, exc["route"])
				assert.Equal(t, c.routeClass, exc["class"])
			}

			batches := spantest.Named(exp.GetSpans(), "slither.batch")
			require.Len(t, batches, 1)
			a := spantest.Attrs(batches[0].Attributes)
			assert.Equal(t, codes.Error, batches[0].Status.Code)
			assert.Equal(t, c.wantPool, a["slither.pool"])
			if c.wantNoRoute {
				assert.NotContains(t, a, "slither.route")
			} else {
				assert.Equal(t, c.route, a["slither.route"])
				assert.Equal(t, c.routeClass, a["slither.route.class"])
			}
		})
	}
}

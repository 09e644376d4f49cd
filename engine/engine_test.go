package engine_test

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/slither-go/slither/dispatch"
	"github.com/slither-go/slither/engine"
	"github.com/slither-go/slither/internal/leaktest"
	"github.com/slither-go/slither/pools"
	"github.com/slither-go/slither/store"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, leaktest.Options()...)
}

func testdata(t *testing.T) string {
	abs, err := filepath.Abs("testdata")
	require.NoError(t, err)
	return abs
}

func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

func TestLoadConfigYAMLAndEnvironment(t *testing.T) {
	path := filepath.Join(t.TempDir(), "slither.yaml")
	require.NoError(t, os.WriteFile(path, []byte(`
thread:
  workers: 3
process:
  default:
    workers: 2
    call_timeout: 30s
  legacy:
    python: /usr/bin/python3
    max_calls: 1000
paths: [/srv/py]
thread_safe:
  - {module: feats, function: extract}
`), 0o644))
	t.Setenv("SLITHER_POOL_LEGACY_WORKERS", "5")
	t.Setenv("SLITHER_THREAD_WORKERS", "4")
	c, err := engine.LoadConfig(path)
	require.NoError(t, err)
	assert.Equal(t, 4, c.Thread.Workers, "the environment wins over the file")
	assert.Equal(t, engine.ProcessConfig{Workers: 2, CallTimeout: 30 * time.Second}, c.Process["default"])
	assert.Equal(t, engine.ProcessConfig{Python: "/usr/bin/python3", Workers: 5, MaxCalls: 1000}, c.Process["legacy"])
	assert.Equal(t, []engine.Function{{Module: "feats", Function: "extract"}}, c.ThreadSafe)

	require.NoError(t, os.WriteFile(path, []byte("thread:\n  wrokers: 3\n"), 0o644))
	_, err = engine.LoadConfig(path)
	assert.ErrorContains(t, err, "field wrokers not found")

	var env engine.Config
	err = env.ApplyEnv([]string{"SLITHER_POOL_X_WORKERS=many", "SLITHER_POOL_X_COLOR=red"})
	assert.ErrorContains(t, err, `SLITHER_POOL_X_WORKERS="many": not a number`)
	assert.ErrorContains(t, err, "SLITHER_POOL_X_COLOR: unknown setting")

	_, err = engine.Start(context.Background(), engine.Config{Thread: engine.ThreadConfig{Workers: -1}})
	assert.ErrorContains(t, err, "engine: invalid config: thread.workers is -1")
}

func TestStartFailsCleanly(t *testing.T) {
	_, err := engine.Start(context.Background(), engine.Config{
		Thread:  engine.ThreadConfig{Disabled: true},
		Process: map[string]engine.ProcessConfig{"broken": {Python: "/no/such/python", Workers: 1}},
		Logger:  quiet(),
	})
	assert.ErrorContains(t, err, `engine: process pool "broken"`)
	assert.ErrorContains(t, err, "no such file or directory")
}

func TestEngineRoutesStoresAndSessions(t *testing.T) {
	ctx := context.Background()
	prices := store.Definition{
		Name:   "prices",
		Tables: []store.TableSpec{{Name: "sku"}},
		Load:   func(ctx context.Context, w *store.Loader) error { return w.Put("sku", "A1", 9.5) },
		Views: []store.View{{Name: "price", Fn: func(ctx context.Context, c store.ViewCall) (any, error) {
			sku, err := c.String("sku")
			if err != nil {
				return nil, err
			}
			v, _, err := c.Store.Get("sku", sku)
			return v, err
		}}},
	}
	eng, err := engine.Start(ctx, engine.Config{
		Thread:  engine.ThreadConfig{Workers: 2},
		Process: map[string]engine.ProcessConfig{"default": {Workers: 1}},
		Paths:   []string{testdata(t)},
		Stores:  []store.Definition{prices},
		Logger:  quiet(),
	})
	require.NoError(t, err)
	defer func() { require.NoError(t, eng.Close(ctx)) }()
	require.NotNil(t, eng.ProcessPool(""))
	require.NotNil(t, eng.Store("prices"))

	run := func(fn string, route pools.Route) []dispatch.Result {
		out, err := eng.Dispatch(ctx, dispatch.Slice([]string{"A1"}), engine.DispatchOptions{
			Options: dispatch.Options{Module: "enginetest", Function: fn, Route: route}})
		require.NoError(t, err)
		return out.Results
	}
	assert.Equal(t, "process", run("where", pools.Process)[0].Value)
	assert.Equal(t, "process", run("where", pools.Auto)[0].Value, "not declared thread-safe")
	if eng.ThreadPool() != nil {
		assert.Equal(t, "thread", run("where", pools.Thread)[0].Value)
		assert.Equal(t, "thread", run("safe_where", pools.Auto)[0].Value, "@slither.thread_safe and the GIL off")
		assert.Contains(t, eng.Metrics().Pools, "thread")
	}
	assert.Equal(t, 9.5, run("price", pools.Process)[0].Value, "a store view from a process worker")
	assert.Equal(t, 9.5, run("price", pools.Auto)[0].Value)

	snap := eng.Metrics()
	assert.Zero(t, snap.InFlightBatches)
	assert.Positive(t, snap.CompletedBatches)
	assert.Contains(t, snap.Pools, "process/default")
	assert.Positive(t, snap.Routes["process"])

	_, err = eng.Pool("nope")
	assert.ErrorContains(t, err, `engine: no process pool named "nope" (pools: [default])`)
	s, err := eng.Session(ctx, "")
	require.NoError(t, err)
	defer s.Close()
	out, err := s.Submit(ctx, pools.Batch{Module: "enginetest", Function: "where", Items: []any{0}})
	require.NoError(t, err)
	assert.Equal(t, []any{"process"}, out)
}

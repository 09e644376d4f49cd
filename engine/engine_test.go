package engine_test

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/slither-go/slither/dispatch"
	"github.com/slither-go/slither/engine"
	"github.com/slither-go/slither/internal/leaktest"
	"github.com/slither-go/slither/internal/storetest"
	"github.com/slither-go/slither/pools"
	"github.com/slither-go/slither/pools/process/wire"
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

	env := engine.Config{Process: map[string]engine.ProcessConfig{"x": {}}}
	err = env.ApplyEnv([]string{"SLITHER_POOL_X_WORKERS=many", "SLITHER_POOL_X_COLOR=red"})
	assert.ErrorContains(t, err, `SLITHER_POOL_X_WORKERS="many": not a number`)
	assert.ErrorContains(t, err, `SLITHER_POOL_X_COLOR: unknown setting for process pool "x" (settings: CALL_TIMEOUT, DIR,`)

	_, err = engine.Start(context.Background(), engine.Config{Thread: engine.ThreadConfig{Workers: -1}})
	assert.ErrorContains(t, err, "engine: invalid config: thread.workers is -1")
}

// TestApplyEnvRejectsUnknownNames: a misspelled pool name or setting is an
// error naming the variable and what is valid, never a new pool.
func TestApplyEnvRejectsUnknownNames(t *testing.T) {
	var zero engine.Config
	err := zero.ApplyEnv([]string{"SLITHER_POOL_DEFUALT_WORKERS=4"})
	assert.ErrorContains(t, err, "SLITHER_POOL_DEFUALT_WORKERS: names no configured process pool (SLITHER_POOL_<NAME>_<SETTING>, names: DEFAULT; settings: ")
	assert.Empty(t, zero.Process, "no pool was created")

	require.NoError(t, zero.ApplyEnv([]string{"SLITHER_POOL_DEFAULT_WORKERS=4", "SLITHER_PYTHON=/x", "HOME=/root"}))
	assert.Equal(t, map[string]engine.ProcessConfig{"default": {Workers: 4}}, zero.Process, "the default pool, when the config names none")

	c := engine.Config{Process: map[string]engine.ProcessConfig{"cpu": {}, "cpu_big": {}}}
	require.NoError(t, c.ApplyEnv([]string{
		"SLITHER_POOL_CPU_BIG_WORKERS=2", "SLITHER_POOL_CPU_THREADS=3", "SLITHER_POOL_CPU_MAX_RESTARTS=9",
		"SLITHER_POOL_CPU_RESTART_WINDOW=1m", "SLITHER_POOL_CPU_START_TIMEOUT=5s", "SLITHER_POOL_CPU_STOP_GRACE=2s",
		"SLITHER_POOL_CPU_RESTART_BACKOFF=3s", "SLITHER_POOL_CPU_MAX_FRAME=1048576", "SLITHER_POOL_CPU_INHERIT_ENV=1",
		"SLITHER_THREAD_REQUIRED=true",
	}))
	assert.Equal(t, engine.ProcessConfig{Workers: 2}, c.Process["cpu_big"])
	assert.Equal(t, engine.ProcessConfig{ThreadsPerWorker: 3, MaxRestarts: 9, RestartWindow: time.Minute,
		StartTimeout: 5 * time.Second, StopGrace: 2 * time.Second, RestartBackoff: 3 * time.Second, MaxFrame: 1 << 20,
		InheritEnv: true}, c.Process["cpu"])
	assert.True(t, c.Thread.Required)

	err = c.ApplyEnv([]string{"SLITHER_POOL_GPU_WORKERS=1", "SLITHER_THREAD_WROKERS=2", "SLITHER_THREAD_DISABLED=yes",
		"SLITHER_POOL_CPU_PATHS=/x"})
	assert.ErrorContains(t, err, "SLITHER_POOL_GPU_WORKERS: names no configured process pool (SLITHER_POOL_<NAME>_<SETTING>, names: CPU, CPU_BIG; ")
	assert.ErrorContains(t, err, "SLITHER_THREAD_WROKERS: unknown setting (SLITHER_THREAD_<SETTING>, settings: DISABLED, MAX_SESSIONS, MODE, REQUIRED, WORKERS)")
	assert.ErrorContains(t, err, `SLITHER_THREAD_DISABLED="yes": not a boolean`)
	assert.ErrorContains(t, err, `SLITHER_POOL_CPU_PATHS: unknown setting for process pool "cpu"`, "lists are set in the file")
	assert.Len(t, c.Process, 2)
}

func TestParseConfigIsStrict(t *testing.T) {
	c, err := engine.ParseConfig(nil)
	require.NoError(t, err, "an empty file is the zero config")
	assert.Equal(t, engine.Config{}, c)
	_, err = engine.ParseConfig([]byte("thread: {workers: 1}\n---\nthread: {workers: 2}\n"))
	assert.ErrorContains(t, err, "more than one YAML document")
	_, err = engine.ParseConfig([]byte("process: {a: {stop_grace: -1s}}"))
	assert.ErrorContains(t, err, `process pool "a": stop_grace is negative`)
	_, err = engine.ParseConfig([]byte("process: {a: {}, A: {}}"))
	assert.ErrorContains(t, err, `process pools "A" and "a" differ only in case`)
	_, err = engine.ParseConfig(make([]byte, engine.MaxConfigSize+1))
	assert.ErrorContains(t, err, "engine: config is over 1048576 bytes")
	c, err = engine.ParseConfig([]byte(`process: {default: {max_restarts: 3, restart_window: 30s, restart_backoff: 2s,
  start_timeout: 1m, stop_grace: 1s, dir: /srv, max_frame: 65536, inherit_env: true}}`))
	require.NoError(t, err)
	assert.Equal(t, engine.ProcessConfig{MaxRestarts: 3, RestartWindow: 30 * time.Second, RestartBackoff: 2 * time.Second,
		StartTimeout: time.Minute, StopGrace: time.Second, Dir: "/srv", MaxFrame: 1 << 16, InheritEnv: true}, c.Process["default"])
}

// TestProcessSettingsReachThePool: a setting of the config is the pool's
// (here the frame limit: a batch over it fails at once).
func TestProcessSettingsReachThePool(t *testing.T) {
	ctx := context.Background()
	eng, err := engine.Start(ctx, engine.Config{
		Thread:  engine.ThreadConfig{Disabled: true},
		Process: map[string]engine.ProcessConfig{"default": {Workers: 1, MaxFrame: 4 << 10}},
		Paths:   []string{testdata(t)},
		Logger:  quiet(),
	})
	require.NoError(t, err)
	defer func() { require.NoError(t, eng.Close(ctx)) }()
	_, err = eng.ProcessPool("").Submit(ctx, pools.Batch{Module: "enginetest", Function: "where", Items: []any{strings.Repeat("x", 8<<10)}})
	assert.ErrorIs(t, err, wire.ErrFrameTooLarge)
	out, err := eng.ProcessPool("").Submit(ctx, pools.Batch{Module: "enginetest", Function: "where", Items: []any{"small"}})
	require.NoError(t, err)
	assert.Equal(t, []any{"process"}, out)
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
	prices := storetest.Prices()
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

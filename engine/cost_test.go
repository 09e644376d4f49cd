package engine_test

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/slither-go/slither/capacity"
	"github.com/slither-go/slither/engine"
	"github.com/slither-go/slither/pools"
)

func TestRoutesConfig(t *testing.T) {
	c, err := engine.ParseConfig([]byte("routes:\n  feats.extract: process\n  pkg.mod.score: thread\n  a.b: auto\n"))
	require.NoError(t, err)
	assert.Equal(t, map[string]string{"feats.extract": "process", "pkg.mod.score": "thread", "a.b": "auto"}, c.Routes)

	_, err = engine.ParseConfig([]byte("routes: {extract: thread, feats.: process, m.f: threads}\n"))
	assert.ErrorContains(t, err, `routes: "extract" is not module.function`)
	assert.ErrorContains(t, err, `routes: "feats." is not module.function`)
	assert.ErrorContains(t, err, `routes: m.f: "threads" is not a route (auto, thread or process)`)
}

// TestEngineSeedsAndRoutesReachTheRouter: slither bench's saved costs seed
// every router (the process pool's executor picked by its Python), and
// config routes become route preferences that Auto follows.
func TestEngineSeedsAndRoutesReachTheRouter(t *testing.T) {
	ctx := context.Background()
	cache := t.TempDir()
	// Only with the thread pool disabled: the embedded interpreter, started
	// once per process, would keep this temporary directory's slither
	// package on its path.
	t.Setenv("SLITHER_CACHE_DIR", cache)
	path, err := capacity.MeasuredPath()
	require.NoError(t, err)
	require.Equal(t, filepath.Join(cache, "measured.json"), path)
	require.NoError(t, capacity.Measured{Costs: map[string]map[string]float64{
		"enginetest.safe_where": {"thread": 2e6, "process-gil": 1e6, "process-ft": 3e6},
	}}.Save(path))

	eng, err := engine.Start(ctx, engine.Config{
		Thread:  engine.ThreadConfig{Disabled: true},
		Process: map[string]engine.ProcessConfig{"default": {Workers: 1}},
		Paths:   []string{testdata(t)},
		Routes:  map[string]string{"enginetest.where": "process"},
		Logger:  quiet(),
	})
	require.NoError(t, err)
	defer func() { require.NoError(t, eng.Close(ctx)) }()
	costs := eng.Costs()["default"]
	require.Len(t, costs, 2)
	want := 1e6
	if eng.ProcessPool("").FreeThreaded() {
		want = 3e6
	}
	assert.Equal(t, "enginetest.safe_where", costs[0].Function)
	assert.Equal(t, 2e6, costs[0].Thread.Seed)
	assert.Equal(t, want, costs[0].Process.Seed, "the seed of the process pool's kind of Python")
	assert.Equal(t, "enginetest.where", costs[1].Function)
	assert.Equal(t, pools.Process, costs[1].Preferred)

	p, err := eng.Pool("")
	require.NoError(t, err)
	d, err := p.(*pools.Router).Decide(ctx, pools.Batch{Module: "enginetest", Function: "where"})
	require.NoError(t, err)
	assert.Equal(t, pools.RoutePreferred, d.Class)
	out, err := p.Submit(ctx, pools.Batch{Module: "enginetest", Function: "where", Items: []any{1}})
	require.NoError(t, err)
	assert.Equal(t, []any{"process"}, out)
	assert.Equal(t, 1, eng.Costs()["default"][1].Process.Batches, "batches through the router are measured")
}

// TestEngineIgnoresUnreadableSeeds: a corrupt measurements file is logged
// and ignored; the engine starts, and Auto measures from scratch.
func TestEngineIgnoresUnreadableSeeds(t *testing.T) {
	ctx := context.Background()
	cache := t.TempDir()
	t.Setenv("SLITHER_CACHE_DIR", cache)
	require.NoError(t, os.WriteFile(filepath.Join(cache, "measured.json"), []byte("{not json"), 0o600))
	var logs bytes.Buffer
	eng, err := engine.Start(ctx, engine.Config{
		Thread:  engine.ThreadConfig{Disabled: true},
		Process: map[string]engine.ProcessConfig{"default": {Workers: 1}},
		Logger:  slog.New(slog.NewTextHandler(&logs, nil)),
	})
	require.NoError(t, err)
	defer func() { require.NoError(t, eng.Close(ctx)) }()
	assert.Contains(t, logs.String(), "level=WARN")
	assert.Contains(t, logs.String(), "ignoring slither bench's measurements")
	assert.Contains(t, logs.String(), filepath.Join(cache, "measured.json"))
	assert.Empty(t, eng.Costs()["default"])
}

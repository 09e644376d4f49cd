//go:build cgo

package engine_test

import (
	"context"
	"log/slog"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/slither-go/slither/engine"
	"github.com/slither-go/slither/pools"
	"github.com/slither-go/slither/pools/thread"
)

// thread.max_sessions reaches the embedded pool: one session more than it
// allows fails with thread.ErrTooManySessions, and closing one makes room.
func TestThreadMaxSessionsReachesThePool(t *testing.T) {
	ctx := context.Background()
	eng, err := engine.Start(ctx, engine.Config{Logger: slog.New(slog.DiscardHandler),
		Thread: engine.ThreadConfig{Workers: 1, MaxSessions: 1}})
	require.NoError(t, err)
	defer eng.Close(ctx)
	th := eng.ThreadPool()
	require.NotNil(t, th)
	b := pools.Batch{Module: "slither._demo", Function: "count_primes", Items: []any{[]any{0, 10}}}

	a := pools.NewSession(ctx, th)
	_, err = a.Submit(ctx, b)
	require.NoError(t, err)
	other := pools.NewSession(ctx, th)
	defer other.Close()
	_, err = other.Submit(ctx, b)
	assert.ErrorIs(t, err, thread.ErrTooManySessions)

	a.Close()
	// The release is handed to the worker; the next batch there runs after it.
	_, err = other.Submit(ctx, b)
	assert.NoError(t, err)
}

// thread.mode picks the embedded pool's mode, from YAML or the
// environment; anything else is refused; empty means Direct.
func TestThreadModeReachesThePool(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		yaml, env string
		want      thread.Mode
	}{
		{"thread: {workers: 1}\n", "", thread.Direct},
		{"thread: {workers: 1, mode: dedicated}\n", "", thread.Dedicated},
		{"thread: {workers: 1, mode: dedicated}\n", "direct", thread.Direct},
	} {
		cfg, err := engine.ParseConfig([]byte(tc.yaml))
		require.NoError(t, err)
		if tc.env != "" {
			require.NoError(t, cfg.ApplyEnv([]string{"SLITHER_THREAD_MODE=" + tc.env}))
		}
		cfg.Logger = slog.New(slog.DiscardHandler)
		eng, err := engine.Start(ctx, cfg)
		require.NoError(t, err)
		th, ok := eng.ThreadPool().(*thread.Pool)
		require.True(t, ok)
		assert.Equal(t, tc.want, th.Mode(), "%q with SLITHER_THREAD_MODE=%q", tc.yaml, tc.env)
		out, err := th.Submit(ctx, pools.Batch{Module: "slither._demo", Function: "count_primes", Items: []any{[]any{0, 10}}})
		require.NoError(t, err)
		assert.Equal(t, []any{int64(4)}, out)
		require.NoError(t, eng.Close(ctx))
	}
	_, err := engine.Start(ctx, engine.Config{Logger: slog.New(slog.DiscardHandler), Thread: engine.ThreadConfig{Mode: "shared"}})
	assert.ErrorContains(t, err, `thread.mode is "shared"`)
}

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

//go:build cgo

package pools_test

import (
	"context"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/slither-go/slither/internal/pooltest"
	"github.com/slither-go/slither/pools"
	"github.com/slither-go/slither/pools/process"
	"github.com/slither-go/slither/pools/thread"
)

// A chain of host calls through both pools: a batch of thread session T
// calls a host function that submits to process session P, whose batch
// calls one that submits to T again. T's worker is busy waiting for that
// chain, so the last submit must fail with ErrReentrant, not deadlock:
// the chain is one mechanism (pools.HostChain) that both pools extend.
func TestHostChainAcrossPools(t *testing.T) {
	// A deadlock fails the test at this bound rather than hanging it.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// threadtest.call_host makes each item's host call: the thread pool's
	// test module serves both pools here.
	abs, err := filepath.Abs(filepath.Join("thread", "testdata"))
	require.NoError(t, err)
	var th *thread.Pool
	var pr *process.Pool
	call := func(items ...any) pools.Batch {
		return pools.Batch{Module: "threadtest", Function: "call_host", Items: items}
	}
	host := func(ctx context.Context, c pools.HostCall) (any, error) {
		switch c.Name {
		case "to_process":
			b := call([]any{"to_thread"})
			b.Session = "P"
			out, err := pr.Submit(ctx, b)
			if err != nil {
				return nil, err
			}
			return out[0], nil
		case "to_thread":
			b := call([]any{"leaf"})
			b.Session = "T"
			out, err := th.Submit(ctx, b)
			if err != nil {
				return nil, err
			}
			return out[0], nil
		}
		return c.Name, nil
	}
	th, err = thread.New(thread.Options{Workers: 2, Paths: []string{abs}, Host: host})
	require.NoError(t, err)
	defer th.Close(context.Background())
	pr, err = process.New(ctx, process.Options{Workers: 1, Python: pooltest.Python(), Paths: []string{abs}, Host: host,
		Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	defer pr.Close(context.Background())

	b := call([]any{"leaf"})
	b.Session = "T"
	out, err := th.Submit(ctx, b) // pins T to a worker
	require.NoError(t, err)
	require.Equal(t, []any{"leaf"}, out)

	b = call([]any{"to_process"})
	b.Session = "T"
	out, err = th.Submit(ctx, b)
	require.NoError(t, err, "the outer batch itself succeeds; the innermost host call fails")
	require.Len(t, out, 1)
	assert.Contains(t, out[0], "error: ")
	assert.Contains(t, out[0], pools.ErrReentrant.Error())
}

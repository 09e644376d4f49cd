//go:build cgo

package thread_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/slither-go/slither/pools"
	"github.com/slither-go/slither/pools/thread"
)

// A host function that panics is called from C on the worker's thread: the
// panic must become a Python HostError, never unwind through C, and the
// worker keeps serving. A pool without a host function says so.
func TestHostFunctionPanicIsAnError(t *testing.T) {
	p, err := thread.New(thread.Options{Workers: 1, Paths: []string{"testdata"},
		Host: func(ctx context.Context, c pools.HostCall) (any, error) {
			if c.Name == "panic" {
				panic("boom")
			}
			return c.Name, nil
		}})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, p.Close(context.Background())) })
	ctx := context.Background()
	out, err := p.Submit(ctx, batch("call_host", []any{"panic"}, []any{"ok"}))
	require.NoError(t, err)
	assert.Equal(t, `error: host function for "panic" panicked: boom`, out[0])
	assert.Equal(t, "ok", out[1])
	out, err = p.Submit(ctx, batch("call_host", []any{"again"}))
	require.NoError(t, err)
	assert.Equal(t, []any{"again"}, out)

	none := newPool(t, 1)
	out, err = none.Submit(ctx, batch("call_host", []any{"x"}))
	require.NoError(t, err)
	assert.Equal(t, `error: no host function: the pool's Options.Host is nil (called "x")`, out[0])
}

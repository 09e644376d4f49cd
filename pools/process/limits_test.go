package process_test

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/slither-go/slither/pools"
	"github.com/slither-go/slither/pools/process"
	"github.com/slither-go/slither/pools/process/wire"
)

// A message over Options.MaxFrame fails its call at once, either way, and
// the worker serves on.
func TestFrameOverLimit(t *testing.T) {
	o := opts(1)
	o.MaxFrame = 1 << 20
	o.Host = func(_ context.Context, c pools.HostCall) (any, error) {
		return bytes.Repeat([]byte{7}, int(c.Args[0].(int64))), nil
	}
	p := newPool(t, o)
	pid := pids(p)[0]
	// The call used to wait forever for a frame that was never sent.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	_, err := p.Submit(ctx, batch("echo", make([]byte, 2<<20)))
	require.ErrorIs(t, err, wire.ErrFrameTooLarge)
	assert.NotErrorIs(t, err, pools.ErrWorkerCrashed)
	assert.ErrorContains(t, err, "MaxFrame")

	out, err := p.Submit(ctx, batch("host", []any{"blob", 2 << 20}, []any{"blob", 3}))
	require.NoError(t, err, "the host's answer over the limit reaches Python as an error")
	assert.Contains(t, out[0], "error: the host function's result cannot be sent")
	assert.Equal(t, []byte{7, 7, 7}, out[1])
	assert.Equal(t, pid, pids(p)[0], "the same worker serves on")

	_, err = p.Submit(ctx, batch("big_result", 2<<20))
	require.Error(t, err, "a result over the limit fails its call")
	assert.Equal(t, []any{"ok"}, submit(t, p, batch("echo", "ok")))
	require.NoError(t, ctx.Err())
}

func TestMaxFrameValidated(t *testing.T) {
	o := opts(1)
	o.MaxFrame = -1
	_, err := process.New(context.Background(), o)
	assert.ErrorContains(t, err, "MaxFrame -1")
}

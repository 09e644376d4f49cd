package pools_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"go.uber.org/goleak"

	"github.com/slither-go/slither/internal/leaktest"
	"github.com/slither-go/slither/internal/safecall"
	"github.com/slither-go/slither/pools"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, leaktest.Options()...)
}

func TestValidate(t *testing.T) {
	assert.NoError(t, pools.Batch{Module: "m", Function: "f"}.Validate())
	err := pools.Batch{Function: "f"}.Validate()
	assert.ErrorIs(t, err, pools.ErrInvalidBatch)
	assert.EqualError(t, err, "pools: invalid batch: empty module name")
	err = pools.Batch{Module: "m"}.Validate()
	assert.ErrorIs(t, err, pools.ErrInvalidBatch)
	assert.EqualError(t, err, "pools: invalid batch: empty function name for module m")
	err = pools.Batch{Module: "m", Function: "f", Session: "s\xff"}.Validate()
	assert.ErrorIs(t, err, pools.ErrInvalidBatch)
	assert.EqualError(t, err, `pools: invalid batch: session id "s\xff" is not valid UTF-8`)
	assert.NoError(t, pools.Batch{Module: "m", Function: "f", Session: "séance"}.Validate())
}

func TestCheckResults(t *testing.T) {
	b := pools.Batch{Module: "m", Function: "f", Items: []any{1, 2}}
	out, err := pools.CheckResults(b, []any{"a", "b"})
	assert.NoError(t, err)
	assert.Equal(t, []any{"a", "b"}, out)

	out, err = pools.CheckResults(b, []any{"a"})
	assert.Nil(t, out, "a short reply returns no results at all")
	var rc *pools.ResultCountError
	assert.True(t, errors.As(err, &rc))
	assert.Equal(t, 2, rc.Items)
	assert.Equal(t, 1, rc.Results)
	assert.ErrorIs(t, err, pools.ErrResultCount)
	assert.EqualError(t, err, "pools: m.f returned 1 results for 2 items (a batch function must return exactly one result per item)")
}

func TestTotals(t *testing.T) {
	s := pools.Stats{Workers: []pools.WorkerStats{
		{ID: 0, Calls: 2, Items: 10, Errors: 1, Busy: time.Second, Restarts: 1, RSS: 100},
		{ID: 1, Calls: 3, Items: 5, Busy: 2 * time.Second, RSS: 50},
	}}
	assert.Equal(t, pools.WorkerStats{ID: -1, Calls: 5, Items: 15, Errors: 1, Busy: 3 * time.Second, Restarts: 1, RSS: 150}, s.Totals())
}

// TestHostFuncCall: the pools call host functions through HostFunc.Call,
// so a panicking one is an error naming the call in both pools.
func TestHostFuncCall(t *testing.T) {
	ctx := context.Background()
	var h pools.HostFunc = func(_ context.Context, c pools.HostCall) (any, error) {
		switch c.Name {
		case "panic":
			panic("boom")
		case "fail":
			return nil, errors.New("no")
		}
		return len(c.Args), nil
	}
	v, err := h.Call(ctx, pools.HostCall{Name: "count", Args: []any{1, 2}})
	assert.NoError(t, err)
	assert.Equal(t, 2, v)
	_, err = h.Call(ctx, pools.HostCall{Name: "fail"})
	assert.EqualError(t, err, "no")
	_, err = h.Call(ctx, pools.HostCall{Name: "panic"})
	assert.ErrorIs(t, err, safecall.ErrPanic)
	assert.EqualError(t, err, `host function for "panic" panicked: boom`)
	_, err = pools.HostFunc(nil).Call(ctx, pools.HostCall{Name: "x"})
	assert.EqualError(t, err, `no host function: the pool's Options.Host is nil (called "x")`)
}

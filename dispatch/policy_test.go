//go:build cgo

package dispatch_test

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/slither-go/slither/dispatch"
	"github.com/slither-go/slither/internal/pooltest"
	"github.com/slither-go/slither/pools"
	"github.com/slither-go/slither/pools/process"
)

// pills are where the poison goes in a 55-item input cut in batches of 10:
// one in each of the first five batches, as in examples/batch_stats.
var pills = []int{5, 16, 27, 38, 49}

func TestBisectIsolatesPoisonPills(t *testing.T) {
	p := threadPool(t, 2)
	ctx := context.Background()
	o := opts("fail_on")
	o.Strategy = dispatch.FixedBatch(10)
	in := dispatch.Slice(withNegatives(55, pills...))

	o.OnError = dispatch.Skip{}
	out, err := dispatch.Run(ctx, p, in, o)
	require.NoError(t, err)
	assert.Equal(t, 50, out.Report.SkippedItems, "Skip drops each pill's whole batch")

	o.OnError = dispatch.Bisect{Then: dispatch.Skip{}}
	out, err = dispatch.Run(ctx, p, in, o)
	require.NoError(t, err)
	assert.Equal(t, 5, out.Report.SkippedItems, "Bisect drops the pills alone")
	assert.Zero(t, out.Report.SkippedBatches)
	require.Len(t, out.Results, 50)
	var ids []int
	for _, r := range out.Results {
		i, _ := strconv.Atoi(r.Item.ID)
		ids = append(ids, i)
		assert.Equal(t, int64(i*10), r.Value)
		assert.NotContains(t, pills, i)
	}
	assert.True(t, slices.IsSorted(ids), "input order kept across the halves")
	// Each pill's batch of 10: halves of 5, then 2 or 3, then 1 or 2 ...
	assert.GreaterOrEqual(t, out.Report.Bisections, 5*4)
	assert.LessOrEqual(t, out.Report.Bisections, 5*8)

	o.OnError = dispatch.Bisect{Then: dispatch.Route(func(it dispatch.Item, err error) string { return "pills" })}
	out, err = dispatch.Run(ctx, p, in, o)
	require.NoError(t, err)
	require.Len(t, out.Buckets["pills"], 5)
	for k, r := range out.Buckets["pills"] {
		assert.Equal(t, strconv.Itoa(pills[k]), r.Item.ID)
		var pe *pools.PythonError
		require.ErrorAs(t, r.Err, &pe)
		assert.Equal(t, "negative item -1", pe.Message)
	}
	assert.Len(t, out.Results, 50)

	// Then nil is Halt: the error names the pill alone.
	o.OnError = dispatch.Bisect{}
	o.MaxInFlight = 1
	_, err = dispatch.Run(ctx, p, in, o)
	var be *dispatch.BatchError
	require.ErrorAs(t, err, &be)
	assert.Equal(t, []string{"5"}, be.ItemIDs)
	assert.Equal(t, 0, be.Batch)
}

// processPoolRestarts is a process pool that lets crashes restart workers
// often: bisecting a crash pill crashes a worker at each level.
func processPoolRestarts(t *testing.T, workers, restarts int) *process.Pool {
	t.Helper()
	abs, err := filepath.Abs("testdata")
	require.NoError(t, err)
	p, err := process.New(context.Background(), process.Options{Workers: workers, Python: pooltest.Python(),
		Paths: []string{abs}, Logger: slog.New(slog.DiscardHandler), MaxRestarts: restarts})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, p.Close(context.Background())) })
	return p
}

func TestBisectIsolatesCrashes(t *testing.T) {
	p := processPoolRestarts(t, 2, 20)
	xs := ints(20)
	xs[7], xs[16] = 1000, -1 // a crash pill and a raising one
	o := opts("crash_on")
	o.Strategy = dispatch.FixedBatch(5)
	o.OnError = dispatch.Retry{Attempts: 1, Then: dispatch.Bisect{Then: dispatch.Route(func(it dispatch.Item, err error) string {
		return "bad"
	})}}
	out, err := dispatch.Run(context.Background(), p, dispatch.Slice(xs), o)
	require.NoError(t, err)
	require.Len(t, out.Results, 18)
	for _, r := range out.Results {
		i, _ := strconv.Atoi(r.Item.ID)
		assert.Equal(t, int64(i*10), r.Value)
	}
	bad := out.Buckets["bad"]
	require.Len(t, bad, 2)
	assert.Equal(t, "7", bad[0].Item.ID)
	assert.ErrorIs(t, bad[0].Err, pools.ErrWorkerCrashed)
	assert.Equal(t, "16", bad[1].Item.ID)
	var pe *pools.PythonError
	assert.ErrorAs(t, bad[1].Err, &pe)
	assert.Equal(t, 2, out.Report.Retries, "each failing batch retried whole once first")
	assert.Positive(t, out.Report.Bisections)
}

func TestBisectLeavesWhatHalvingCannotHelp(t *testing.T) {
	p := threadPool(t, 1)
	o := opts("square")
	o.Strategy = dispatch.FixedBatch(4)
	o.OnError = dispatch.Bisect{Then: dispatch.Skip{}}
	require.NoError(t, p.Close(context.Background()))
	out, err := dispatch.Run(context.Background(), p, dispatch.Slice(ints(8)), o)
	require.NoError(t, err)
	assert.Zero(t, out.Report.Bisections, "a closed pool fails every half the same way")
	assert.Equal(t, 2, out.Report.SkippedBatches)
	assert.False(t, dispatch.Splittable(fmt.Errorf("x: %w", pools.ErrSessionLost)))
	assert.True(t, dispatch.Splittable(fmt.Errorf("x: %w", pools.ErrWorkerCrashed)))
	assert.True(t, dispatch.Splittable(fmt.Errorf("x: %w", pools.ErrConversion)), "one value that cannot cross is one item's fault")
}

// TestRetryNeverResubmitsALostSession is defect 12: a session whose worker
// died has lost its state; resubmitting into it cannot succeed (and must
// not silently run on a fresh worker). The old Retryable retried it until
// the attempts were spent.
func TestRetryNeverResubmitsALostSession(t *testing.T) {
	assert.False(t, dispatch.Retryable(fmt.Errorf("call: %w", pools.ErrSessionLost)))
	assert.True(t, dispatch.Retryable(fmt.Errorf("call: %w", pools.ErrWorkerCrashed)))

	p := processPool(t, 2)
	marker := filepath.Join(t.TempDir(), "crashed")
	o := opts("crash_once")
	o.Session = "lost"
	o.Strategy = dispatch.FixedBatch(5)
	o.OnError = dispatch.Retry{Attempts: 5}
	_, err := dispatch.Run(context.Background(), p, dispatch.Slice([]any{[]any{marker, 1}}), o)
	var be *dispatch.BatchError
	require.ErrorAs(t, err, &be)
	require.ErrorIs(t, err, pools.ErrSessionLost)
	assert.LessOrEqual(t, be.Attempts, 2, "at most the crash, then the lost session, which is not retried")
}

// miscount is a pool from outside this module that returns the wrong
// number of results: dispatch checks every Submit's count (defect 15).
type miscount struct {
	pools.Pool
	delta int
}

func (m miscount) Submit(ctx context.Context, b pools.Batch) ([]any, error) {
	out, err := m.Pool.Submit(ctx, b)
	if err != nil || m.delta < 0 {
		return out[:max(len(out)+m.delta, 0)], err
	}
	return append(out, make([]any, m.delta)...), nil
}

func TestThirdPartyPoolResultCountIsChecked(t *testing.T) {
	p := threadPool(t, 1)
	o := opts("square")
	o.Strategy = dispatch.FixedBatch(4)
	for _, delta := range []int{-1, 1} {
		_, err := dispatch.Run(context.Background(), miscount{p, delta}, dispatch.Slice(ints(8)), o)
		var rc *pools.ResultCountError
		require.ErrorAs(t, err, &rc, "delta %d", delta)
		assert.Equal(t, 4, rc.Items)
		assert.Equal(t, 4+delta, rc.Results)
	}
}

// deadlinePool is a pool from outside this module that answers a context
// that ended with the bare context error.
type deadlinePool struct{ pools.Pool }

func (deadlinePool) Submit(ctx context.Context, b pools.Batch) ([]any, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

func TestTimeoutIsATimeoutWhateverThePoolSays(t *testing.T) {
	p := threadPool(t, 1)
	o := opts("square")
	o.Timeout = 1 // ns: every submission times out
	var bucketErr error
	o.OnError = dispatch.Retry{Attempts: 2, Then: dispatch.Route(func(it dispatch.Item, err error) string {
		bucketErr = err
		return "late"
	})}
	out, err := dispatch.Run(context.Background(), deadlinePool{p}, dispatch.Slice(ints(1)), o)
	require.NoError(t, err)
	assert.Equal(t, 2, out.Report.Retries, "a timeout is worth retrying")
	assert.ErrorIs(t, bucketErr, pools.ErrTimeout)
	assert.Len(t, out.Buckets["late"], 1)
}

//go:build cgo

package dispatch_test

import (
	"context"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/slither-go/slither/dispatch"
	"github.com/slither-go/slither/pools"
)

// Defect 16: a panic in any user callback of a run is an error naming the
// callback, carrying the value and the stack, and the run's policy applies
// where there are items to apply it to. Before, each of these panicked on
// a goroutine of the run and killed the process.

func weightPanicsOn(id string) func(dispatch.Item) float64 {
	return func(it dispatch.Item) float64 {
		if it.ID == id {
			panic("no weight for item " + id)
		}
		return 1
	}
}

func TestPanicInABatcherFailsItsItemAlone(t *testing.T) {
	p := threadPool(t, 2)
	ctx := context.Background()
	o := opts("square")
	o.Strategy = dispatch.WeightedBatch(3, weightPanicsOn("4"))
	in := dispatch.Slice(ints(10))

	o.OnError = dispatch.Skip{}
	out, err := dispatch.Run(ctx, p, in, o)
	require.NoError(t, err)
	require.Len(t, out.Results, 9)
	assert.Equal(t, 1, out.Report.SkippedItems)
	for _, r := range out.Results {
		assert.NotEqual(t, "4", r.Item.ID)
	}

	o.OnError = dispatch.Route(func(it dispatch.Item, err error) string { return "panicked" })
	out, err = dispatch.Run(ctx, p, in, o)
	require.NoError(t, err)
	require.Len(t, out.Buckets["panicked"], 1)
	r := out.Buckets["panicked"][0]
	assert.Equal(t, "4", r.Item.ID)
	require.ErrorIs(t, r.Err, dispatch.ErrPanic)
	var pe *dispatch.PanicError
	require.ErrorAs(t, r.Err, &pe)
	assert.Equal(t, "dispatch: Batcher.Add", pe.Name)
	assert.Equal(t, "no weight for item 4", pe.Value)
	assert.Contains(t, string(pe.Stack), "weightPanicsOn", "the stack shows the callback")

	o.OnError = dispatch.Retry{Attempts: 3} // nothing to retry: Then (Halt) applies
	_, err = dispatch.Run(ctx, p, in, o)
	var be *dispatch.BatchError
	require.ErrorAs(t, err, &be)
	assert.Equal(t, []string{"4"}, be.ItemIDs)
	assert.Zero(t, be.Attempts)
	assert.ErrorIs(t, err, dispatch.ErrPanic)
	assert.Contains(t, err.Error(), "dispatch: items 4 failed before they were batched: dispatch: Batcher.Add panicked: no weight for item 4")

	o.Strategy = dispatch.KeyPartition(func(it dispatch.Item) string {
		if it.ID == "7" {
			var m map[string]string
			m["x"] = "y" // a runtime error: assignment to entry in nil map
		}
		return "k"
	}, 4)
	o.OnError = dispatch.Skip{}
	out, err = dispatch.Run(ctx, p, in, o)
	require.NoError(t, err)
	assert.Len(t, out.Results, 9)
	assert.Equal(t, 1, out.Report.SkippedItems)
}

// strategy is a custom Strategy whose parts panic on demand.
type strategy struct{ newPanics, flushPanics, nilBatcher bool }

func (s strategy) NewBatcher() (dispatch.Batcher, error) {
	switch {
	case s.newPanics:
		panic("cannot make a batcher")
	case s.nilBatcher:
		return nil, nil
	}
	return &holder{panics: s.flushPanics}, nil
}

type holder struct {
	items  []dispatch.Item
	panics bool
}

func (h *holder) Add(it dispatch.Item) [][]dispatch.Item { h.items = append(h.items, it); return nil }
func (h *holder) Flush() [][]dispatch.Item {
	if h.panics {
		panic("lost my items")
	}
	b := h.items
	h.items = nil
	return [][]dispatch.Item{b}
}

func TestPanicsWithNoItemToBlameEndTheRun(t *testing.T) {
	p := threadPool(t, 1)
	ctx := context.Background()
	o := opts("square")
	o.OnError = dispatch.Skip{} // nothing to skip: the run cannot go on without losing items
	for _, c := range []struct {
		s    strategy
		want string
	}{
		{strategy{newPanics: true}, "dispatch: Strategy.NewBatcher panicked: cannot make a batcher"},
		{strategy{flushPanics: true}, "the items it held are lost: dispatch: Batcher.Flush panicked: lost my items"},
	} {
		o.Strategy = c.s
		_, err := dispatch.Run(ctx, p, dispatch.Slice(ints(5)), o)
		require.ErrorIs(t, err, dispatch.ErrPanic)
		assert.ErrorContains(t, err, c.want)
	}
	o.Strategy = strategy{nilBatcher: true}
	_, err := dispatch.Run(ctx, p, dispatch.Slice(ints(5)), o)
	assert.ErrorContains(t, err, "returned no Batcher and no error")

	o.Strategy = dispatch.FixedBatch(2)
	input := func(yield func(dispatch.Item) bool) {
		for i := range 3 {
			if !yield(dispatch.Item{ID: strconv.Itoa(i), Payload: i}) {
				return
			}
		}
		panic("the input broke")
	}
	_, err = dispatch.Run(ctx, p, input, o)
	require.ErrorIs(t, err, dispatch.ErrPanic)
	assert.ErrorContains(t, err, "dispatch: the input iterator panicked: the input broke")
}

func TestPanicsInPolicyFunctionsHaltTheRun(t *testing.T) {
	p := threadPool(t, 1)
	ctx := context.Background()
	o := opts("fail_on")
	o.Strategy = dispatch.FixedBatch(2)
	for _, pol := range []dispatch.Policy{
		dispatch.Route(func(it dispatch.Item, err error) string { panic("no bucket") }),
		dispatch.Retry{Attempts: 2, If: func(err error) bool { panic("cannot tell") }},
		dispatch.Bisect{Then: dispatch.Route(func(it dispatch.Item, err error) string { panic("no bucket") })},
	} {
		o.OnError = pol
		_, err := dispatch.Run(ctx, p, dispatch.Slice(withNegatives(6, 3)), o)
		var be *dispatch.BatchError
		require.ErrorAs(t, err, &be, "%T", pol)
		require.ErrorIs(t, err, dispatch.ErrPanic)
		var pe *pools.PythonError
		assert.ErrorAs(t, err, &pe, "the batch's own error is kept")
	}
}

// panicky is a pool from outside this module whose Submit panics on a
// batch holding 13.
type panicky struct{ pools.Pool }

func (p panicky) Submit(ctx context.Context, b pools.Batch) ([]any, error) {
	for _, x := range b.Items {
		if x == 13 {
			panic("unlucky")
		}
	}
	return p.Pool.Submit(ctx, b)
}

func TestPanicInAPoolsSubmitFailsItsBatch(t *testing.T) {
	p := panicky{threadPool(t, 1)}
	o := opts("square")
	o.Strategy = dispatch.FixedBatch(4)
	o.OnError = dispatch.Skip{}
	out, err := dispatch.Run(context.Background(), p, dispatch.Slice(ints(20)), o)
	require.NoError(t, err)
	assert.Len(t, out.Results, 16)
	assert.Equal(t, 1, out.Report.SkippedBatches)

	o.OnError = dispatch.Bisect{Then: dispatch.Route(func(it dispatch.Item, err error) string { return "bad" })}
	out, err = dispatch.Run(context.Background(), p, dispatch.Slice(ints(20)), o)
	require.NoError(t, err)
	assert.Len(t, out.Results, 19)
	require.Len(t, out.Buckets["bad"], 1)
	assert.ErrorIs(t, out.Buckets["bad"][0].Err, dispatch.ErrPanic)
	assert.True(t, strings.HasPrefix(out.Buckets["bad"][0].Err.Error(), "dispatch: the pool's Submit panicked: unlucky"))
}

// A panic in the consumer's own loop body is the consumer's: it goes on up,
// but only once every goroutine of the run (the input's reader included)
// has ended. Before, the run's goroutines were left blocked for ever.
func TestPanicInTheLoopLeavesNothingBehind(t *testing.T) {
	p := threadPool(t, 2)
	inputDone := make(chan struct{})
	endless := func(yield func(dispatch.Item) bool) {
		defer close(inputDone)
		for i := 0; ; i++ {
			if !yield(dispatch.Item{ID: strconv.Itoa(i), Payload: i}) {
				return
			}
		}
	}
	o := opts("square")
	o.Strategy = dispatch.FixedBatch(3)
	assert.PanicsWithValue(t, "consumer", func() {
		for range dispatch.Stream(context.Background(), p, endless, o).Results() {
			panic("consumer")
		}
	})
	select {
	case <-inputDone:
	default:
		t.Fatal("the run's input was still being read after the panic left the loop")
	}
	// goleak (TestMain) checks the rest of the run.
}

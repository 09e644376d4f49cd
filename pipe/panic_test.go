package pipe_test

import (
	"context"
	"slices"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/slither-go/slither/dispatch"
	"github.com/slither-go/slither/pipe"
	"github.com/slither-go/slither/pools"
)

// Defect 16: a panic in any user function of a pipeline is an error naming
// the function, and the stage's policy applies to the items it failed.
// Before, a router's predicate ran without a recover and killed the process.

func bigRouter(panicOn int) pipe.Route {
	return pipe.When("big", func(it Item) bool {
		if it.Payload.(int) == panicOn {
			panic("cannot judge " + strconv.Itoa(panicOn))
		}
		return it.Payload.(int) >= 5
	})
}

func TestPanickingPredicateFailsItsItem(t *testing.T) {
	ctx := context.Background()
	build := func(p dispatch.Policy) *pipe.Pipe {
		pp, err := pipe.New("routing").Router("r", bigRouter(3)).Output("big").OnError("r", p).Build()
		require.NoError(t, err)
		return pp
	}
	_, err := build(dispatch.Halt{}).Run(ctx, pipe.Env{}, dispatch.Slice(ints(10)))
	require.ErrorIs(t, err, dispatch.ErrPanic)
	assert.ErrorContains(t, err, `pipe routing: stage "r" failed on items [3]: predicate for output "big" of stage "r" panicked: cannot judge 3`)
	var pe *dispatch.PanicError
	require.ErrorAs(t, err, &pe)
	assert.Contains(t, string(pe.Stack), "bigRouter", "the stack shows the predicate")

	res, err := build(dispatch.Skip{}).Run(ctx, pipe.Env{}, dispatch.Slice(ints(10)))
	require.NoError(t, err)
	assert.Len(t, res.Outputs["big"], 5)
	assert.Len(t, res.Outputs["default"], 4)
	assert.Equal(t, 1, res.Report.Stages[0].Errors)
	assert.Equal(t, 1, res.Report.Stages[0].Skipped)

	pp, err := pipe.New("routing").Router("r", bigRouter(3)).Output("big").
		OnError("r", dispatch.Route(func(it Item, err error) string { return "unjudged" })).Build()
	require.NoError(t, err)
	res, err = pp.Run(ctx, pipe.Env{}, dispatch.Slice(ints(10)))
	require.NoError(t, err)
	require.Len(t, res.Outputs["unjudged"], 1)
	assert.Contains(t, res.Outputs["unjudged"][0].Meta["error"], "cannot judge 3")
}

func TestPanickingHandlersFailTheirItems(t *testing.T) {
	ctx := context.Background()
	pp, err := pipe.New("h").Map("m", func(ctx context.Context, it Item) (Item, error) {
		if it.Payload.(int) == 2 {
			var m map[int]int
			m[0] = 1
		}
		return it, nil
	}).Build()
	require.NoError(t, err)
	_, err = pp.Run(ctx, pipe.Env{}, dispatch.Slice(ints(5)))
	require.ErrorIs(t, err, dispatch.ErrPanic)
	assert.ErrorContains(t, err, `Map function of stage "m" panicked: assignment to entry in nil map`)

	// Bisect: a Batch stage's failing batch is halved until the item that
	// fails stands alone.
	poison := func(ctx context.Context, items []Item) ([]Item, error) {
		for _, it := range items {
			if it.Payload.(int)%10 == 7 {
				panic("poison " + it.ID)
			}
		}
		return items, nil
	}
	pp, err = pipe.New("b").Batch("check", 8, poison).OnError("*", dispatch.Bisect{Then: dispatch.Skip{}}).Build()
	require.NoError(t, err)
	res, err := pp.Run(ctx, pipe.Env{}, dispatch.Slice(ints(40)))
	require.NoError(t, err)
	var got []int
	for _, it := range res.Outputs["default"] {
		got = append(got, it.Payload.(int))
	}
	want := slices.DeleteFunc(ints(40), func(x int) bool { return x%10 == 7 })
	assert.Equal(t, want, got, "only the four poisoned items are gone, the rest in order")
	st := res.Report.Stages[0]
	assert.Equal(t, 4, st.Skipped)
	assert.Equal(t, 4, st.Errors)
	assert.Positive(t, st.Bisections)

	// Without Bisect, Skip drops the whole batch.
	pp, err = pipe.New("b").Batch("check", 8, poison).OnError("*", dispatch.Skip{}).Build()
	require.NoError(t, err)
	res, err = pp.Run(ctx, pipe.Env{}, dispatch.Slice(ints(40)))
	require.NoError(t, err)
	assert.Len(t, res.Outputs["default"], 8, "the one batch of 8 without a 7 in it")
}

func TestPanickingPolicyFunctionsHaltTheRun(t *testing.T) {
	ctx := context.Background()
	for _, pol := range []dispatch.Policy{
		dispatch.Route(func(it Item, err error) string { panic("no bucket") }),
		dispatch.Retry{Attempts: 2, If: func(error) bool { panic("cannot tell") }},
	} {
		pp, err := pipe.New("pol").Map("check", failing(3)).OnError("*", pol).Build()
		require.NoError(t, err)
		_, err = pp.Run(ctx, pipe.Env{}, dispatch.Slice(ints(5)))
		require.ErrorIs(t, err, dispatch.ErrPanic, "%T", pol)
		assert.ErrorContains(t, err, "cannot take 3", "the item's own error is kept")
	}
}

func TestPanickingInputAndEnvEndTheRun(t *testing.T) {
	ctx := context.Background()
	id := func(ctx context.Context, it Item) (Item, error) { return it, nil }
	pp, err := pipe.New("in").Map("id", id).Build()
	require.NoError(t, err)
	input := func(yield func(Item) bool) {
		yield(Item{ID: "0", Payload: 0})
		panic("the input broke")
	}
	_, err = pp.Run(ctx, pipe.Env{}, input)
	require.ErrorIs(t, err, dispatch.ErrPanic)
	assert.ErrorContains(t, err, "pipe in: the input iterator panicked: the input broke")

	py, err := pipe.New("py").Python("s", pipe.Python{Module: "m", Function: "f"}).Build()
	require.NoError(t, err)
	env := pipe.Env{Pool: func(name string) (pools.Pool, error) { panic("no pools today") }}
	_, err = py.Run(ctx, env, dispatch.Slice(ints(1)))
	require.ErrorIs(t, err, dispatch.ErrPanic)
	assert.ErrorContains(t, err, `stage "s": pipe: Env.Pool panicked: no pools today`)
}

// A panic in the consumer's loop goes on up, once every goroutine of the
// run (the input's reader included) has ended.
func TestPanicInTheLoopLeavesNothingBehind(t *testing.T) {
	id := func(ctx context.Context, it Item) (Item, error) { return it, nil }
	pp, err := pipe.New("loop").Map("a", id).Map("b", id).Build()
	require.NoError(t, err)
	inputDone := make(chan struct{})
	endless := func(yield func(Item) bool) {
		defer close(inputDone)
		for i := 0; ; i++ {
			if !yield(Item{ID: strconv.Itoa(i), Payload: i}) {
				return
			}
		}
	}
	assert.PanicsWithValue(t, "consumer", func() {
		for range pp.Stream(context.Background(), pipe.Env{}, endless).Outputs() {
			panic("consumer")
		}
	})
	select {
	case <-inputDone:
	default:
		t.Fatal("the run's input was still being read after the panic left the loop")
	}
}

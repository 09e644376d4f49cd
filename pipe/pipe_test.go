package pipe_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/slither-go/slither/dispatch"
	"github.com/slither-go/slither/internal/leaktest"
	"github.com/slither-go/slither/pipe"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, leaktest.Options()...)
}

type Item = pipe.Item

func ints(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i
	}
	return out
}

func payloads(items []Item) []any {
	var out []any
	for _, it := range items {
		out = append(out, it.Payload)
	}
	return out
}

func TestBuildRejectsInvalidDefinitions(t *testing.T) {
	id := func(ctx context.Context, it Item) (Item, error) { return it, nil }
	pred := func(Item) bool { return true }
	for _, c := range []struct {
		b    *pipe.Builder
		want []string
	}{
		{pipe.New("p"), []string{"no stages"}},
		{pipe.New("p").Map("a", id).Map("a", id), []string{`stage "a" is declared twice`}},
		{pipe.New("p").Router("r", pipe.When("accept", pred)).Output("review"),
			[]string{`stage "r" routes to output "accept", which is not declared (outputs: [review default])`}},
		{pipe.New("p").Map("a", id).OnError("b", dispatch.Skip{}), []string{`OnError names stage "b", which does not exist (stages: [a])`}},
		{pipe.New("p").Python("py", pipe.Python{Module: "m"}), []string{`stage "py": a Python stage needs a Module and a Function`}},
		{pipe.New("p").Map("a", nil).Output("x", "x"), []string{`stage "a": nil function`, `output "x" is declared twice`}},
		{pipe.New("p").Map("a", id).OnError("*", dispatch.Retry{Then: dispatch.Retry{}}), []string{"Retry.Then cannot be another Retry"}},
	} {
		_, err := c.b.Build()
		require.ErrorIs(t, err, pipe.ErrInvalid)
		for _, w := range c.want {
			assert.ErrorContains(t, err, w)
		}
	}
}

func TestGoStagesRouterAndOutputs(t *testing.T) {
	p, err := pipe.New("go-only").
		Map("double", func(ctx context.Context, it Item) (Item, error) {
			n := it.Payload.(int)
			switch {
			case n%10 == 9:
				return it, pipe.ErrSkip
			case n == 5:
				return it, pipe.ToOutput("special")
			}
			it.Payload = n * 2
			return it, nil
		}).
		FlatMap("split", func(ctx context.Context, it Item) ([]Item, error) {
			n := it.Payload.(int)
			if n == 0 {
				return nil, nil // cardinality zero
			}
			a, b := it, it
			a.ID, b.ID = it.ID+"a", it.ID+"b"
			b.Payload = -n
			return []Item{a, b}, nil
		}).
		Router("sign", pipe.When("pos", func(it Item) bool { return it.Payload.(int) > 0 })).
		Batch("tag", 4, func(ctx context.Context, items []Item) ([]Item, error) {
			for i := range items {
				items[i].Meta = map[string]any{"batch": len(items)} // stages after a router still run
			}
			return items, nil
		}).
		Output("pos", "special").
		Build()
	require.NoError(t, err)
	assert.Equal(t, []string{"double", "split", "sign", "tag"}, p.Stages())
	assert.Equal(t, []string{"pos", "special", "default"}, p.Outputs())

	res, err := p.Run(context.Background(), pipe.Env{}, dispatch.Slice(ints(20)))
	require.NoError(t, err)
	// 20 in; 9 and 19 skipped; 5 to "special"; 0 split into nothing; 16 split in two.
	assert.Equal(t, []any{5}, payloads(res.Outputs["special"]))
	assert.Len(t, res.Outputs["pos"], 16)
	assert.Len(t, res.Outputs["default"], 16)
	assert.Equal(t, 4, res.Outputs["pos"][0].Meta["batch"])
	assert.Equal(t, "pos", res.Outputs["pos"][0].Route, "the router's choice stays on the item")
	rep := res.Report
	require.Len(t, rep.Stages, 4)
	assert.Equal(t, pipe.StageReport{Name: "double", Kind: "map", In: 20, Out: 18, Skipped: 2}, zeroBusy(rep.Stages[0]))
	assert.Equal(t, 17, rep.Stages[1].In)
	assert.Equal(t, 32, rep.Stages[1].Out)
	assert.Equal(t, 1, rep.Stages[1].Skipped)
	assert.Equal(t, map[string]int{"pos": 16, "default": 16}, rep.Stages[2].Routes)
	assert.NotEmpty(t, rep.Session)
}

func zeroBusy(r pipe.StageReport) pipe.StageReport {
	r.Busy = 0
	return r
}

func failing(ids ...int) func(ctx context.Context, it Item) (Item, error) {
	return func(ctx context.Context, it Item) (Item, error) {
		if slices.Contains(ids, it.Payload.(int)) {
			return it, fmt.Errorf("cannot take %d", it.Payload)
		}
		return it, nil
	}
}

func TestGoStageErrorPolicies(t *testing.T) {
	ctx := context.Background()
	halt, err := pipe.New("halt").Map("check", failing(7)).Build()
	require.NoError(t, err)
	_, err = halt.Run(ctx, pipe.Env{}, dispatch.Slice(ints(20)))
	assert.ErrorContains(t, err, `pipe halt: stage "check" failed on items [7]: cannot take 7`)

	skip, err := pipe.New("skip").Map("check", failing(3, 4)).Map("after", failing()).OnError("*", dispatch.Skip{}).Build()
	require.NoError(t, err)
	res, err := skip.Run(ctx, pipe.Env{}, dispatch.Slice(ints(10)))
	require.NoError(t, err)
	assert.Len(t, res.Outputs[pipe.DefaultOutput], 8)
	assert.Equal(t, 2, res.Report.Stages[0].Errors)
	assert.Equal(t, 2, res.Report.Stages[0].Skipped)

	route, err := pipe.New("route").Map("check", failing(2)).
		OnError("check", dispatch.Route(func(it Item, err error) string { return "rejects" })).
		OnError("*", dispatch.Halt{}).Build()
	require.NoError(t, err)
	res, err = route.Run(ctx, pipe.Env{}, dispatch.Slice(ints(5)))
	require.NoError(t, err)
	require.Len(t, res.Outputs["rejects"], 1)
	assert.Equal(t, "cannot take 2", res.Outputs["rejects"][0].Meta["error"])

	var mu sync.Mutex
	tries := map[string]int{}
	flaky := func(ctx context.Context, it Item) (Item, error) {
		mu.Lock()
		defer mu.Unlock()
		tries[it.ID]++
		if tries[it.ID] < 3 {
			return it, errors.New("not yet")
		}
		return it, nil
	}
	retry, err := pipe.New("retry").Map("flaky", flaky).OnError("flaky", dispatch.Retry{Attempts: 2}).Build()
	require.NoError(t, err)
	res, err = retry.Run(ctx, pipe.Env{}, dispatch.Slice(ints(5)))
	require.NoError(t, err)
	assert.Len(t, res.Outputs[pipe.DefaultOutput], 5)
	assert.Equal(t, 10, res.Report.Stages[0].Retries)
}

func TestPythonStageNeedsPools(t *testing.T) {
	p, err := pipe.New("py").Python("s", pipe.Python{Module: "m", Function: "f"}).Build()
	require.NoError(t, err)
	_, err = p.Run(context.Background(), pipe.Env{}, dispatch.Slice(ints(1)))
	assert.ErrorContains(t, err, `stage "s" is a Python stage and the run has no pools`)
}

func TestEarlyBreakAndRunOnce(t *testing.T) {
	p, err := pipe.New("p").Map("id", func(ctx context.Context, it Item) (Item, error) { return it, nil }).Build()
	require.NoError(t, err)
	s := p.Stream(context.Background(), pipe.Env{}, dispatch.Slice(ints(100_000)))
	n := 0
	for o, err := range s.Outputs() {
		require.NoError(t, err)
		assert.Equal(t, strconv.Itoa(n), o.Item.ID)
		if n++; n == 50 {
			break
		}
	}
	assert.Less(t, s.Report().Stages[0].In, 100_000)
	for _, err := range s.Outputs() {
		assert.ErrorContains(t, err, "a Stream runs once")
	}
}

// TestCancelWithBlockedInput: an input that waits for a channel nobody
// closes does not hold a cancelled run when it watches the run's context.
func TestCancelWithBlockedInput(t *testing.T) {
	p, err := pipe.New("p").Map("id", func(ctx context.Context, it Item) (Item, error) { return it, nil }).Build()
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch := make(chan int) // never closed
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		ch <- 1
	}()
	var outs int
	for _, err = range p.Stream(ctx, pipe.Env{}, dispatch.ChanContext(ctx, ch)).Outputs() {
		if err != nil {
			break
		}
		outs++
		cancel() // the input now waits on ch
	}
	assert.ErrorIs(t, err, context.Canceled)
	assert.Equal(t, 1, outs)
	<-sent
}

// TestRunOwnsItsInputReader is the pipe half of defect 1's cause: the
// run's input was read on a goroutine nobody waited for. The input below
// waits after its first item until the consumer has broken out; the loop
// must not end before the input has returned.
func TestRunOwnsItsInputReader(t *testing.T) {
	p, err := pipe.New("p").Map("id", func(ctx context.Context, it Item) (Item, error) { return it, nil }).Build()
	require.NoError(t, err)
	for range 20 {
		waiting, gate, inputDone := make(chan struct{}), make(chan struct{}), make(chan struct{})
		items := func(yield func(Item) bool) {
			defer close(inputDone)
			if !yield(Item{ID: "0", Payload: 0}) {
				return
			}
			close(waiting)
			<-gate
			yield(Item{ID: "1", Payload: 1})
		}
		broke, loopDone := make(chan struct{}), make(chan bool)
		go func() {
			for _, err := range p.Stream(context.Background(), pipe.Env{}, items).Outputs() {
				assert.NoError(t, err)
				close(broke)
				break
			}
			select {
			case <-inputDone:
				loopDone <- true
			default:
				loopDone <- false
			}
		}()
		<-broke
		<-waiting
		close(gate)
		require.True(t, <-loopDone, "the run's loop ended before its input's goroutine")
	}
}

func TestOneDefaultOutput(t *testing.T) {
	assert.Equal(t, "default", pipe.DefaultOutput)
	assert.Equal(t, pipe.DefaultOutput, pipe.Unmatched)
	id := func(ctx context.Context, it Item) (Item, error) { return it, nil }

	plain, err := pipe.New("plain").Map("id", id).Build()
	require.NoError(t, err)
	assert.Equal(t, []string{"default"}, plain.Outputs())
	res, err := plain.Run(context.Background(), pipe.Env{}, dispatch.Slice(ints(3)))
	require.NoError(t, err)
	assert.Len(t, res.Outputs["default"], 3, "items never routed")

	routed, err := pipe.New("routed").Router("r", pipe.When("big", func(it Item) bool { return it.Payload.(int) > 1 })).
		Output("big").Build()
	require.NoError(t, err)
	assert.Equal(t, []string{"big", "default"}, routed.Outputs())
	res, err = routed.Run(context.Background(), pipe.Env{}, dispatch.Slice(ints(3)))
	require.NoError(t, err)
	assert.Len(t, res.Outputs["default"], 2, "items no route matched")
	assert.Len(t, res.Outputs["big"], 1)
	assert.Len(t, res.Outputs, 2, "no other output")
}

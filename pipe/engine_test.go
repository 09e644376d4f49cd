//go:build cgo

package pipe_test

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"maps"
	"path/filepath"
	"runtime/debug"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/slither-go/slither/dispatch"
	"github.com/slither-go/slither/engine"
	"github.com/slither-go/slither/internal/pooltest"
	"github.com/slither-go/slither/pipe"
	"github.com/slither-go/slither/pools"
	"github.com/slither-go/slither/store"
)

func startEngine(t testing.TB) *engine.Engine { return startEngineN(t, 2) }

func startEngineN(t testing.TB, workers int) *engine.Engine {
	t.Helper()
	abs, err := filepath.Abs("testdata")
	require.NoError(t, err)
	eng, err := engine.Start(context.Background(), engine.Config{
		Thread:  engine.ThreadConfig{Workers: workers, Required: true},
		Process: map[string]engine.ProcessConfig{"default": {Workers: workers}},
		Paths:   []string{abs},
		Logger:  slog.New(slog.DiscardHandler),
	})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, eng.Close(context.Background())) })
	return eng
}

func TestPythonStageErrorPolicies(t *testing.T) {
	eng := startEngine(t)
	ctx := context.Background()
	in := []int{1, 2, -3, 4, 5, 6, -7, 8}
	build := func(p dispatch.Policy) *pipe.Pipe {
		pp, err := pipe.New("py").
			Python("times10", pipe.Python{Module: "pipetest", Function: "fail_negative", Route: pools.Process,
				Strategy: dispatch.FixedBatch(2)}).
			OnError("*", p).Build()
		require.NoError(t, err)
		return pp
	}
	_, err := eng.RunPipe(ctx, build(dispatch.Halt{}), dispatch.Slice(in), engine.PipeOptions{})
	// Batches 1 and 3 both fail; whichever fails first halts the run.
	assert.Regexp(t, `stage "times10": dispatch: batch (1 \(items 2, 3\)|3 \(items 6, 7\)) failed after 1 attempt: .*ValueError: negative: -[37]`, err)

	res, err := eng.RunPipe(ctx, build(dispatch.Skip{}), dispatch.Slice(in), engine.PipeOptions{})
	require.NoError(t, err)
	assert.Equal(t, []any{int64(10), int64(20), int64(50), int64(60)}, payloads(res.Outputs[pipe.DefaultOutput]))
	assert.Equal(t, 4, res.Report.Stages[0].Skipped)
	assert.Equal(t, map[string]int{"process": 4}, res.Report.Stages[0].Ran, "four batches, all in processes")

	res, err = eng.RunPipe(ctx, build(dispatch.Route(func(it dispatch.Item, err error) string { return "bad" })),
		dispatch.Slice(in), engine.PipeOptions{})
	require.NoError(t, err)
	assert.Len(t, res.Outputs["bad"], 4)
	assert.Contains(t, res.Outputs["bad"][0].Meta["error"], "negative: -3")
}

func TestRunSessionViewsAndAffinity(t *testing.T) {
	eng := startEngine(t)
	var session string
	p, err := pipe.New("views").
		Python("info", pipe.Python{Module: "pipetest", Function: "run_info", Route: pools.Process}).
		Python("where", pipe.Python{Module: "pipetest", Function: "where", Route: pools.Thread, Affinity: true,
			Strategy: dispatch.FixedBatch(1)}).
		Build()
	require.NoError(t, err)
	view := store.View{Name: "run_info", Fn: func(ctx context.Context, c store.ViewCall) (any, error) {
		return fmt.Sprintf("%s:%v", c.Session, c.Args["item"]), nil
	}}
	res, err := eng.RunPipe(context.Background(), p, dispatch.Slice([]int{1, 2, 3, 4, 5, 6}), engine.PipeOptions{SessionViews: []store.View{view}})
	require.NoError(t, err)
	session = res.Report.Session
	outs := res.Outputs[pipe.DefaultOutput]
	require.Len(t, outs, 6)
	worker := outs[0].Payload.(map[string]any)["worker"]
	for _, o := range outs {
		m := o.Payload.(map[string]any)
		assert.Equal(t, "thread", m["pool"])
		assert.Equal(t, session, m["session"])
		assert.Equal(t, worker, m["worker"], "Affinity keeps the run's batches on one worker")
	}
	_, err = eng.Views().Call(context.Background(), "run_info", nil, session)
	assert.ErrorIs(t, err, store.ErrNoView, "the run's session view is gone after the run")
}

// The seed's scoring pipe, in Go: prepare -> predict -> route.
func ExamplePipe_scoring() {
	ctx := context.Background()
	eng, err := engine.Start(ctx, engine.Config{Paths: []string{"testdata"}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer eng.Close(ctx)

	scoring, err := pipe.New("scoring").
		Map("prepare", func(ctx context.Context, it pipe.Item) (pipe.Item, error) {
			r := it.Payload.(map[string]any)
			r["amount"] = r["amount"].(float64) * 1.1 // add tax before scoring
			return it, nil
		}).
		Python("predict", pipe.Python{Module: "pipetest", Function: "score", Route: pools.Auto}).
		Router("route",
			pipe.When("accept", func(it pipe.Item) bool { return it.Payload.(map[string]any)["score"].(float64) >= 0.7 }),
			pipe.When("review", func(it pipe.Item) bool { return it.Payload.(map[string]any)["score"].(float64) >= 0.4 })).
		Output("accept", "review").
		Build()
	if err != nil {
		fmt.Println(err)
		return
	}
	records := []any{
		map[string]any{"id": "a", "amount": 120.0, "risk": 0.1},
		map[string]any{"id": "b", "amount": 2000.0, "risk": 0.2},
		map[string]any{"id": "c", "amount": 50.0, "risk": 0.9},
		map[string]any{"id": "d", "amount": 980.0, "risk": 0.3},
	}
	res, err := eng.RunPipe(ctx, scoring, dispatch.Slice(records), engine.PipeOptions{})
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, out := range []string{"accept", "review", "default"} {
		fmt.Print(out, ":")
		for _, it := range res.Outputs[out] {
			r := it.Payload.(map[string]any)
			fmt.Printf(" %s=%.2f", r["id"], r["score"])
		}
		fmt.Println()
	}
	fmt.Println("predict ran in:", slices.Sorted(maps.Keys(res.Report.Stages[1].Ran)))
	// Output:
	// accept: a=0.92
	// review: b=0.64 d=0.56
	// default: c=0.28
	// predict ran in: [thread]
}

func TestRefsInBothPools(t *testing.T) {
	// One worker per pool: the Python-side check of the model's release
	// must run in the process that held it.
	eng := startEngineN(t, 1)
	ctx := context.Background()
	for _, route := range []pools.Route{pools.Thread, pools.Process} {
		t.Run(route.String(), func(t *testing.T) {
			sess, err := eng.Session(ctx, "")
			require.NoError(t, err)
			b := func(fn string, items ...any) pools.Batch {
				return pools.Batch{Module: "pipetest", Function: fn, Items: items, Route: route}
			}
			out, err := sess.Submit(ctx, b("train", 100))
			require.NoError(t, err)
			ref, ok := pools.AsRef(out[0])
			require.True(t, ok, "train returned a ref: %v", out[0])
			assert.Equal(t, sess.ID(), ref.Session)
			var modelID any
			for i := range 100 {
				got, err := sess.Submit(ctx, b("predict", []any{out[0], i}))
				require.NoError(t, err)
				r := got[0].([]any)
				assert.Equal(t, int64(100+i), r[0])
				if i == 0 {
					modelID = r[1]
				}
				assert.Equal(t, modelID, r[1], "the same model object every time")
				assert.Equal(t, int64(i+1), r[2])
			}
			// Another session cannot use it.
			other, err := eng.Session(ctx, "")
			require.NoError(t, err)
			got, err := other.Submit(ctx, b("use_ref", out[0]))
			require.NoError(t, err)
			assert.Contains(t, got[0], "belongs to session "+sess.ID())

			alive, err := other.Submit(ctx, b("models_alive", 0))
			require.NoError(t, err)
			before := alive[0].(int64)
			sess.Close()
			require.Eventually(t, func() bool {
				alive, err := other.Submit(ctx, b("models_alive", 0))
				return err == nil && alive[0].(int64) == before-1
			}, 10*time.Second, 20*time.Millisecond, "closing the session released the model (seen from Python)")
			other.Close()
		})
	}
}

func TestCancelMidRun(t *testing.T) {
	eng := startEngine(t)
	p, err := pipe.New("endless").
		Map("id", func(ctx context.Context, it pipe.Item) (pipe.Item, error) { return it, nil }).
		Python("nap", pipe.Python{Module: "pipetest", Function: "sleepy", Route: pools.Process, Strategy: dispatch.FixedBatch(8)}).
		Build()
	require.NoError(t, err)
	endless := func(yield func(pipe.Item) bool) {
		for i := 0; ; i++ {
			if !yield(pipe.Item{ID: fmt.Sprint(i), Payload: i}) {
				return
			}
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	n := 0
	for _, err = range eng.StreamPipe(ctx, p, endless, engine.PipeOptions{}).Outputs() {
		if err != nil {
			break
		}
		if n++; n == 20 {
			cancel() // mid-run: batches in flight, the input endless
		}
	}
	require.ErrorIs(t, err, context.Canceled)
	assert.GreaterOrEqual(t, n, 20)
	// goleak (TestMain) checks that nothing of the run is left behind.
}

// TestForwardedItemsNeverMeetAClosedOutput is defect 1: a Python stage
// forwards the items already bound for an output (ToOutput upstream) from
// the goroutine that reads its input, and nobody waited for that goroutine:
// when the stage ended (it halted, the run was cancelled, or its consumer
// stopped) it closed its output while the goroutine could still send on
// it, and "send on closed channel" killed the process in most runs.
func TestForwardedItemsNeverMeetAClosedOutput(t *testing.T) {
	eng := startEngine(t)
	p, err := pipe.New("forward").
		Map("side", func(ctx context.Context, it pipe.Item) (pipe.Item, error) {
			if it.Payload.(int) >= 0 {
				return it, pipe.ToOutput("side")
			}
			return it, nil
		}).
		Python("py", pipe.Python{Module: "pipetest", Function: "fail_negative", Route: pools.Thread, Strategy: dispatch.FixedBatch(1)}).
		Output("side").
		Build()
	require.NoError(t, err)
	input := func(first int) iter.Seq[pipe.Item] {
		return func(yield func(pipe.Item) bool) {
			for i := range 2000 {
				x := i - 1
				if i == 0 {
					x = first
				}
				if !yield(pipe.Item{ID: fmt.Sprint(i), Payload: x}) {
					return
				}
			}
		}
	}
	for range 30 {
		// The Python stage halts on its first item while the rest flow past it.
		_, err := eng.RunPipe(context.Background(), p, input(-1), engine.PipeOptions{})
		require.ErrorContains(t, err, "negative: -1")

		// The consumer stops, or cancels, while items flow past the stage.
		for _, cancelFirst := range []bool{false, true} {
			ctx, cancel := context.WithCancel(context.Background())
			n := 0
			for _, err := range eng.StreamPipe(ctx, p, input(-2), engine.PipeOptions{}).Outputs() {
				if err != nil { // cancelled, or the stage failed first
					if !errors.Is(err, context.Canceled) {
						require.ErrorContains(t, err, "negative: -2")
					}
					break
				}
				if n++; n == 10 {
					if cancelFirst {
						cancel()
						continue
					}
					break
				}
			}
			cancel()
		}
	}
}

func peakHeap(t *testing.T, eng *engine.Engine, p *pipe.Pipe, n int) uint64 {
	var in iter.Seq[int] = func(yield func(int) bool) {
		for i := range n {
			if !yield(i) {
				return
			}
		}
	}
	count := 0
	peak := pooltest.PeakHeap(func() {
		for _, err := range eng.StreamPipe(context.Background(), p, dispatch.Wrap(in), engine.PipeOptions{}).Outputs() {
			require.NoError(t, err)
			count++
		}
	})
	require.Equal(t, n, count)
	return peak
}

func TestStreamingMillionItemsInBoundedMemory(t *testing.T) {
	eng := startEngine(t)
	p, err := pipe.New("million").
		Map("inc", func(ctx context.Context, it pipe.Item) (pipe.Item, error) {
			it.Payload = it.Payload.(int) + 1
			return it, nil
		}).
		Python("echo", pipe.Python{Module: "pipetest", Function: "noop", Route: pools.Thread, Strategy: dispatch.FixedBatch(256)}).
		Router("parity", pipe.When("even", func(it pipe.Item) bool { return it.Payload.(int64)%2 == 0 })).
		Output("even").
		Build()
	require.NoError(t, err)
	defer debug.SetGCPercent(debug.SetGCPercent(5)) // the heap tracks live data (see dispatch's test)
	peakHeap(t, eng, p, 1000)
	small := peakHeap(t, eng, p, 10_000)
	large := peakHeap(t, eng, p, 1_000_000)
	t.Logf("peak heap: %d KiB for 10k items, %d KiB for 1M items (%.2fx)", small>>10, large>>10, float64(large)/float64(small))
	assert.Less(t, float64(large), 2*float64(small))
}

// BenchmarkStreamingOverlap runs three stages that each take about the
// same time per batch, as a pipeline (stages overlap) and one after
// another over the whole input (as a barrier pipeline would), and reports
// the speed-up.
func BenchmarkStreamingOverlap(b *testing.B) {
	eng := startEngine(b)
	const items = 2048
	nap := func(ctx context.Context, batch []pipe.Item) ([]pipe.Item, error) {
		time.Sleep(time.Duration(len(batch)) * 200 * time.Microsecond) // the stage's cost, not synchronization
		return batch, nil
	}
	py := pipe.Python{Module: "pipetest", Function: "sleepy", Route: pools.Process, Strategy: dispatch.FixedBatch(64), MaxInFlight: 1}
	full, err := pipe.New("overlap").Batch("go1", 64, nap).Python("py", py).Batch("go2", 64, nap).Build()
	require.NoError(b, err)
	stages := []*pipe.Pipe{}
	for _, p := range []*pipe.Builder{pipe.New("s1").Batch("go1", 64, nap), pipe.New("s2").Python("py", py), pipe.New("s3").Batch("go2", 64, nap)} {
		pp, err := p.Build()
		require.NoError(b, err)
		stages = append(stages, pp)
	}
	ctx := context.Background()
	var piped, serial time.Duration
	for b.Loop() {
		start := time.Now()
		_, err := eng.RunPipe(ctx, full, dispatch.Slice(ints(items)), engine.PipeOptions{})
		require.NoError(b, err)
		piped += time.Since(start)
		start = time.Now()
		for _, s := range stages {
			_, err := eng.RunPipe(ctx, s, dispatch.Slice(ints(items)), engine.PipeOptions{})
			require.NoError(b, err)
		}
		serial += time.Since(start)
	}
	b.ReportMetric(float64(piped.Milliseconds())/float64(b.N), "ms/pipelined")
	b.ReportMetric(float64(serial.Milliseconds())/float64(b.N), "ms/stage-by-stage")
	b.ReportMetric(float64(serial)/float64(piped), "speedup")
}

// Package batch_stats is the batch-statistics example: 50 datasets and 5
// poison pills (nil, NaN, empty, and one that crashes its worker process
// for real) through four batching strategies with Skip, then with Bisect
// (which isolates the pills, so each costs one item rather than its
// batch), per-worker Welford accumulators, a fault report and proof that
// the pool recovered.
package batch_stats

import (
	"context"
	"embed"
	"fmt"
	"log/slog"
	"math"
	"math/rand"
	"slices"
	"strings"
	"time"

	"github.com/slither-go/slither/dispatch"
	"github.com/slither-go/slither/engine"
	"github.com/slither-go/slither/examples"
	"github.com/slither-go/slither/pools"
	"github.com/slither-go/slither/pools/process"
)

//go:embed *.py
var py embed.FS

// Example is the batch_stats example.
var Example = examples.Example{
	Name:    "batch_stats",
	Summary: "statistics over 50 datasets and 5 poison pills, four batching strategies, Skip and Bisect, a real worker crash",
	Python:  py,
	Run:     run,
}

func datasets(n int) ([]dispatch.Item, map[string][2]float64) {
	rng := rand.New(rand.NewSource(9))
	var items []dispatch.Item
	ref := map[string][2]float64{}
	for i := range n {
		k := 20 + rng.Intn(80)
		vals := make([]any, k)
		var sum, sq float64
		for j := range vals {
			x := rng.NormFloat64()*2 + float64(i%7)
			vals[j] = x
			sum += x
		}
		mean := sum / float64(k)
		for _, v := range vals {
			sq += (v.(float64) - mean) * (v.(float64) - mean)
		}
		id := fmt.Sprintf("ds%02d", i)
		ref[id] = [2]float64{mean, sq / float64(k-1)}
		items = append(items, dispatch.Item{ID: id, Route: fmt.Sprint("group", i%3),
			Payload: map[string]any{"id": id, "values": vals}})
	}
	pills := []map[string]any{
		{"id": "pill-crash", "crash": true, "values": []any{1.0}},
		{"id": "pill-nil", "values": nil},
		{"id": "pill-nan", "values": []any{1.0, math.NaN(), 2.0}},
		{"id": "pill-empty", "values": []any{}},
		{"id": "pill-nil2", "values": nil},
	}
	for i, p := range pills { // spread the pills through the input
		at := (i*11 + 5) % len(items)
		items = append(items[:at], append([]dispatch.Item{{ID: p["id"].(string), Route: "pills", Payload: p}}, items[at:]...)...)
	}
	return items, ref
}

func run(ctx context.Context, env *examples.Env) error {
	items, ref := datasets(50 * env.Scale)
	weight := func(it dispatch.Item) float64 {
		v, _ := it.Payload.(map[string]any)["values"].([]any)
		return float64(max(1, len(v)))
	}
	runs := []struct {
		name     string
		strategy dispatch.Strategy
		order    dispatch.Ordering
	}{
		{"FixedBatch(10)", dispatch.FixedBatch(10), dispatch.Preserve},
		{"WeightedBatch(500)", dispatch.WeightedBatch(500, weight), dispatch.Preserve},
		{"KeyPartition(group, 10)", dispatch.KeyPartition(func(it dispatch.Item) string { return it.Route }, 10), dispatch.Preserve},
		{"streaming, as completed", dispatch.FixedBatch(5), dispatch.AsCompleted},
	}
	pool := env.Engine.ProcessPool("default")
	skipFixed := -1 // items Skip dropped with FixedBatch(10)
	for _, r := range runs {
		out, err := env.Engine.Dispatch(ctx, dispatch.Items(items...), engine.DispatchOptions{Options: dispatch.Options{
			Module: "stats", Function: "summarize", Route: pools.Process, Strategy: r.strategy, Ordering: r.order,
			OnError: dispatch.Skip{}, MaxInFlight: 2}})
		if err != nil {
			return err
		}
		rep := out.Report
		wrong := 0
		for _, res := range out.Results {
			m := res.Value.(map[string]any)
			want := ref[m["id"].(string)]
			if math.Abs(m["mean"].(float64)-want[0]) > 1e-9 || math.Abs(m["var"].(float64)-want[1]) > 1e-9 {
				wrong++
			}
		}
		env.Printf("%-24s %2d batches, %d skipped (%d items, pills included), %d results completed, %d wrong\n",
			r.name, rep.Batches, rep.SkippedBatches, rep.SkippedItems, len(out.Results), wrong)
		ok := wrong == 0 && len(out.Results)+rep.SkippedItems == len(items) && rep.SkippedBatches >= 1
		env.Check(r.name+": every completed dataset exact, every skipped one accounted for", ok,
			"%d completed + %d skipped = %d items, %d wrong", len(out.Results), rep.SkippedItems, len(items), wrong)
		if r.name == "FixedBatch(10)" {
			skipFixed = rep.SkippedItems
		}
	}
	if err := bisect(ctx, env, items, ref, skipFixed); err != nil {
		return err
	}
	// The worker the crash pill killed comes back: wait for it.
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if !slices.ContainsFunc(pool.Stats().Workers, func(w pools.WorkerStats) bool { return w.Pid == 0 }) {
			break
		}
	}
	st := pool.Stats().Totals()
	_, err := pool.Submit(ctx, pools.Batch{Module: "stats", Function: "summarize",
		Items: []any{map[string]any{"id": "after", "values": []any{1.0, 2.0, 3.0}}}})
	env.Printf("fault report: 5 pills in each of 4 runs; workers the crash pill killed and the pool replaced: %d; a call after all runs: %s\n",
		st.Restarts, errText(err))
	env.Check("the pool recovered from the crashing pill", err == nil && st.Restarts >= 1 && len(pool.Stats().Workers) == 2,
		"%d worker processes killed and replaced (when an earlier pill in its batch failed first, the crash pill never ran); 2 workers serving after", st.Restarts)
	for _, w := range pool.Stats().Workers {
		env.Printf("  worker %d (pid %d): %d batches, %d failed\n", w.ID, w.Pid, w.Calls, w.Errors)
	}
	return nil
}

// bisect runs FixedBatch(10) again with Bisect{Then: Skip{}}: a failing
// batch is halved until each pill stands alone, so only the pills are
// skipped. It runs on a pool of its own: every level of halving that holds
// the crash pill crashes a worker again, more restarts than the shared
// pool's intensity limit allows in its window.
func bisect(ctx context.Context, env *examples.Env, items []dispatch.Item, ref map[string][2]float64, skipFixed int) error {
	pool, err := process.New(ctx, process.Options{Python: env.FreeThreaded, Workers: 2, Paths: []string{env.Dir},
		MaxRestarts: 50, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return err
	}
	defer pool.Close(ctx)
	out, err := dispatch.Run(ctx, pool, dispatch.Items(items...), dispatch.Options{
		Module: "stats", Function: "summarize", Strategy: dispatch.FixedBatch(10),
		OnError: dispatch.Bisect{Then: dispatch.Skip{}}, MaxInFlight: 2})
	if err != nil {
		return err
	}
	rep := out.Report
	done := map[string]bool{}
	wrong := 0
	for _, res := range out.Results {
		m := res.Value.(map[string]any)
		want := ref[m["id"].(string)]
		if math.Abs(m["mean"].(float64)-want[0]) > 1e-9 || math.Abs(m["var"].(float64)-want[1]) > 1e-9 {
			wrong++
		}
		done[res.Item.ID] = true
	}
	var skipped, pills []string
	for _, it := range items {
		if !done[it.ID] {
			skipped = append(skipped, it.ID)
		}
		if it.Route == "pills" {
			pills = append(pills, it.ID)
		}
	}
	env.Printf("%-24s %2d batches, %d halves resubmitted, %d skipped items (%s), %d results completed, %d wrong\n",
		"FixedBatch(10) + Bisect", rep.Batches, rep.Bisections, rep.SkippedItems, strings.Join(skipped, " "), len(out.Results), wrong)
	env.Printf("poison isolation: with FixedBatch(10), Skip dropped %d of %d items, Bisect then Skip %d\n",
		skipFixed, len(items), rep.SkippedItems)
	env.Check("Bisect skips the pills alone, every other dataset exact",
		wrong == 0 && slices.Equal(skipped, pills) && rep.SkippedItems == len(pills) && len(out.Results)+rep.SkippedItems == len(items) &&
			skipFixed > rep.SkippedItems,
		"skipped %v, the pills are %v; %d skipped against %d with Skip; %d completed, %d wrong", skipped, pills,
		rep.SkippedItems, skipFixed, len(out.Results), wrong)
	return nil
}

func errText(err error) string {
	if err == nil {
		return "ok"
	}
	return err.Error()
}

// Package image_pipeline is the image example: 30 pictures from 100x100 up
// to 3840x2160 are generated in batches of 10, then thumbnailed in batches
// bounded by weight (2 megapixels) with at most 2 in flight, so memory stays
// bounded however large the pictures; one corrupt picture is skipped.
package image_pipeline

import (
	"context"
	"embed"
	"fmt"
	"maps"
	"slices"

	"github.com/slither-go/slither/dispatch"
	"github.com/slither-go/slither/engine"
	"github.com/slither-go/slither/examples"
	"github.com/slither-go/slither/pipe"
	"github.com/slither-go/slither/pools"
)

//go:embed *.py
var py embed.FS

// Example is the image_pipeline example.
var Example = examples.Example{
	Name:     "image_pipeline",
	Summary:  "30 pictures up to 4K: generate, then thumbnail with weight-bounded batches and backpressure",
	Python:   py,
	Modules:  []string{"PIL"},
	Packages: []string{"python3-pil"},
	Run:      run,
}

func run(ctx context.Context, env *examples.Env) error {
	var items []dispatch.Item
	worst := 0.0
	for s := range env.Scale {
		for i := range 30 {
			w, h := 100+i*60, 100+i*40
			if i >= 25 {
				w, h = 3840, 2160
			}
			id := fmt.Sprintf("img%02d-%d", i, s)
			items = append(items, dispatch.Item{ID: id, Payload: map[string]any{"id": id, "w": w, "h": h},
				Meta: map[string]any{"pixels": float64(w * h)}})
			worst += float64(w*h*3) / (1 << 20)
		}
	}
	pixels := func(it dispatch.Item) float64 { return it.Meta["pixels"].(float64) }
	p, err := pipe.New("images").
		Python("generate", pipe.Python{Module: "images", Function: "generate", Pool: "system", Route: pools.Process,
			Strategy: dispatch.FixedBatch(10)}).
		Map("corrupt-one", func(ctx context.Context, it pipe.Item) (pipe.Item, error) {
			if it.ID == "img07-0" { // a broken upload
				it.Payload = []byte("not a picture")
			}
			return it, nil
		}).
		Python("thumbnail", pipe.Python{Module: "images", Function: "thumbnail", Pool: "system", Route: pools.Process,
			Strategy: dispatch.WeightedBatch(2_000_000, pixels), MaxInFlight: 2}).
		// A picture its function failed on alone (slither.failed) goes to the
		// "failed" bucket with its error; the rest of its batch is fine.
		OnError("thumbnail", dispatch.Route(func(dispatch.Item, error) string { return "failed" })).
		Build()
	if err != nil {
		return err
	}
	res, err := env.Engine.RunPipe(ctx, p, dispatch.Items(items...), engine.PipeOptions{})
	if err != nil {
		return err
	}
	thumbs := res.Outputs[pipe.DefaultOutput]
	failed := res.Outputs["failed"]
	peak := map[any]float64{}
	okSize := 0
	for _, it := range thumbs {
		r := it.Payload.(map[string]any)
		peak[r["pid"]] = max(peak[r["pid"]], r["peak_mb"].(float64))
		w, h := r["w"].(int64), r["h"].(int64)
		if max(w, h) == 128 || (w <= 128 && h <= 128) {
			okSize++
		}
	}
	tn := res.Report.Stages[2]
	env.Printf("%d pictures: %d thumbnails, %d failed alone (%v), %d skipped\n", len(items), len(thumbs), len(failed), errorsOf(failed), tn.Skipped)
	for _, pid := range slices.SortedFunc(maps.Keys(peak), func(a, b any) int { return int(a.(int64) - b.(int64)) }) {
		env.Printf("  worker pid %v: peak memory %.0f MB\n", pid, peak[pid])
	}
	top := 0.0
	for _, v := range peak {
		top = max(top, v)
	}
	env.Printf("without backpressure the worst case would be %.0f MB (every picture decoded at once); with it, peak per worker was %.0f MB\n", worst, top)
	env.Check("every good picture got a thumbnail within 128 px", okSize == len(thumbs) && len(thumbs) == len(items)-1,
		"%d thumbnails for %d good pictures", len(thumbs), len(items)-1)
	env.Check("the corrupt picture failed alone, not its batch", len(failed) == 1 && failed[0].ID == "img07-0" && tn.Skipped == 0,
		"%d failed (slither.failed, routed to \"failed\"), %d skipped", len(failed), tn.Skipped)
	env.Check("memory stayed bounded", top < worst, "peak %.0f MB per worker < %.0f MB unbounded", top, worst)
	return nil
}

func errorsOf(items []pipe.Item) []string {
	var out []string
	for _, it := range items {
		out = append(out, fmt.Sprintf("%s: %v", it.ID, it.Meta["error"]))
	}
	return out
}

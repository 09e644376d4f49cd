// Package text_analysis is the text-analysis example: documents flow
// through a Go stage that drops stopwords read from a store, a Python stage
// that computes word frequencies, readability and sentiment while keeping
// per-worker state, and a router by sentiment; Go merges the per-worker
// figures and checks them against a serial reference.
package text_analysis

import (
	"context"
	"embed"
	"fmt"
	"maps"
	"math/rand"
	"slices"
	"strings"

	"github.com/slither-go/slither/dispatch"
	"github.com/slither-go/slither/engine"
	"github.com/slither-go/slither/examples"
	"github.com/slither-go/slither/pipe"
	"github.com/slither-go/slither/pools"
	"github.com/slither-go/slither/store"
)

//go:embed *.py
var py embed.FS

var stopwords = []string{"the", "a", "of", "and", "to", "in", "is", "it"}

var lexicon = []string{"good", "great", "excellent", "happy", "bright", "calm", "strong", "clear",
	"bad", "poor", "terrible", "sad", "dark", "noisy", "weak", "broken",
	"river", "city", "music", "garden", "engine", "market", "window", "letter", "forest", "paper"}

// Example is the text_analysis example.
var Example = examples.Example{
	Name:    "text_analysis",
	Summary: "stopwords from a store, Python word statistics with per-worker state, a sentiment router",
	Python:  py,
	Stores: func() []store.Definition {
		return []store.Definition{{
			Name:   "text",
			Tables: []store.TableSpec{{Name: "stopwords"}},
			Load: func(ctx context.Context, w *store.Loader) error {
				for _, s := range stopwords {
					if err := w.Put("stopwords", s, true); err != nil {
						return err
					}
				}
				return nil
			},
		}}
	},
	Run: run,
}

func documents(n int) []string {
	rng := rand.New(rand.NewSource(42))
	docs := make([]string, n)
	for i := range docs {
		words := make([]string, 60+rng.Intn(60))
		for j := range words {
			if rng.Intn(4) == 0 {
				words[j] = stopwords[rng.Intn(len(stopwords))]
			} else {
				words[j] = lexicon[rng.Intn(len(lexicon))]
			}
		}
		docs[i] = strings.Join(words, " ")
	}
	return docs
}

func run(ctx context.Context, env *examples.Env) error {
	docs := documents(44 * env.Scale)
	st := env.Engine.Store("text")
	p, err := pipe.New("text_analysis").
		Map("prepare", func(ctx context.Context, it pipe.Item) (pipe.Item, error) {
			var words []any
			for _, w := range strings.Fields(strings.ToLower(it.Payload.(string))) {
				if _, stop, _ := st.Get("stopwords", w); !stop {
					words = append(words, w)
				}
			}
			it.Payload = map[string]any{"id": it.ID, "words": words}
			return it, nil
		}).
		Python("analyze", pipe.Python{Module: "textan", Function: "analyze", Route: pools.Auto, Strategy: dispatch.FixedBatch(4)}).
		Router("classify",
			pipe.When("positive", func(it pipe.Item) bool { return it.Payload.(map[string]any)["sentiment"].(int64) > 0 }),
			pipe.When("negative", func(it pipe.Item) bool { return it.Payload.(map[string]any)["sentiment"].(int64) < 0 })).
		Output("positive", "negative").
		Build()
	if err != nil {
		return err
	}
	res, err := env.Engine.RunPipe(ctx, p, dispatch.Slice(docs), engine.PipeOptions{})
	if err != nil {
		return err
	}

	// Go merges what the workers computed.
	merged := map[string]int64{}
	perWorker := map[string]int{}
	lastSeen := map[string]int64{}
	classes := map[string]int{}
	for out, items := range res.Outputs {
		classes[out] = len(items)
		for _, it := range items {
			r := it.Payload.(map[string]any)
			for w, n := range r["freq"].(map[string]any) {
				merged[w] += n.(int64)
			}
			key := fmt.Sprintf("worker %v (pid %v)", r["worker"], r["pid"])
			perWorker[key]++
			lastSeen[key] = max(lastSeen[key], r["worker_docs"].(int64))
		}
	}
	env.Printf("%d documents; classes: positive %d, negative %d, neutral %d\n", len(docs), classes["positive"], classes["negative"], classes["default"])
	total := 0
	for _, k := range slices.Sorted(maps.Keys(perWorker)) {
		env.Printf("  %s analyzed %d documents (its own running count: %d)\n", k, perWorker[k], lastSeen[k])
		total += perWorker[k]
	}
	top := slices.SortedFunc(maps.Keys(merged), func(a, b string) int {
		if merged[a] != merged[b] {
			return int(merged[b] - merged[a])
		}
		return strings.Compare(a, b)
	})[:5]
	env.Printf("merged top words:")
	for _, w := range top {
		env.Printf(" %s=%d", w, merged[w])
	}
	env.Printf("\n")

	// The serial reference.
	ref := map[string]int64{}
	refClass := map[string]int{}
	pos := map[string]bool{"good": true, "great": true, "excellent": true, "happy": true, "bright": true, "calm": true, "strong": true, "clear": true}
	neg := map[string]bool{"bad": true, "poor": true, "terrible": true, "sad": true, "dark": true, "noisy": true, "weak": true, "broken": true}
	for _, d := range docs {
		score := 0
		for _, w := range strings.Fields(d) {
			if slices.Contains(stopwords, w) {
				continue
			}
			ref[w]++
			if pos[w] {
				score++
			}
			if neg[w] {
				score--
			}
		}
		switch {
		case score > 0:
			refClass["positive"]++
		case score < 0:
			refClass["negative"]++
		default:
			refClass["default"]++
		}
	}
	env.Check("every document analyzed once", total == len(docs), "per-worker counts sum to %d of %d", total, len(docs))
	workersAgree := true
	for k, n := range perWorker {
		workersAgree = workersAgree && int64(n) <= lastSeen[k]
	}
	env.Check("per-worker state agrees with Go's merge", workersAgree, "each worker's running count covers what Go counted for it")
	env.Check("merged word counts equal the serial reference", maps.Equal(merged, ref), "%d distinct words, %d words in all", len(ref), sum(ref))
	env.Check("classes equal the serial reference", maps.Equal(classes, refClass), "positive %d, negative %d, neutral %d", refClass["positive"], refClass["negative"], refClass["default"])
	return nil
}

func sum(m map[string]int64) int64 {
	t := int64(0)
	for _, v := range m {
		t += v
	}
	return t
}

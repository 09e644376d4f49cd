// Package ml_scoring is the scoring example: two sessions train
// scikit-learn logistic regressions on different distributions at the same
// time, keep them as refs in their sessions, and score the same records;
// diverging predictions prove the sessions are isolated.
package ml_scoring

import (
	"context"
	"embed"
	"fmt"
	"math/rand"
	"sync"

	"github.com/slither-go/slither/capacity"
	"github.com/slither-go/slither/examples"
	"github.com/slither-go/slither/pools"
)

//go:embed *.py
var py embed.FS

// Example is the ml_scoring example.
var Example = examples.Example{
	Name:     "ml_scoring",
	Summary:  "two sessions train scikit-learn models at once and score through both: isolation via refs",
	Python:   py,
	Modules:  []string{"numpy", "sklearn"},
	Packages: []string{"python3-numpy", "python3-sklearn"},
	Run:      run,
}

type session struct {
	name  string
	shift float64
	s     *pools.Session
	ref   any
	info  map[string]any
}

func run(ctx context.Context, env *examples.Env) error {
	c := capacity.CheckModule(ctx, env.FreeThreaded, "sklearn")
	env.Printf("scikit-learn on the embedded free-threaded build: %s", c.Verdict())
	if c.Error != "" {
		env.Printf(" (%s)", c.Error)
	}
	env.Printf("; on %s it imports: the stages run in the \"system\" process pool\n", env.System)

	sessions := []*session{{name: "A", shift: 0}, {name: "B", shift: 3}}
	var wg sync.WaitGroup
	errs := make([]error, len(sessions))
	for i, s := range sessions {
		var err error
		if s.s, err = env.Engine.Session(ctx, "system"); err != nil {
			return err
		}
		defer s.s.Close()
		wg.Add(1)
		go func() { // both train at once
			defer wg.Done()
			out, err := s.s.Submit(ctx, pools.Batch{Module: "mlscore", Function: "train", Items: []any{s.shift, 7 + i}})
			if err != nil {
				errs[i] = err
				return
			}
			s.ref, s.info = out[0], out[1].(map[string]any)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	rng := rand.New(rand.NewSource(5))
	records := make([][2]float64, 20)
	for i := range records {
		records[i] = [2]float64{rng.Float64()*6 - 1.5, rng.Float64()*6 - 1.5}
	}
	preds := map[string][]int64{}
	for _, s := range sessions {
		items := make([]any, len(records))
		for i, r := range records {
			items[i] = []any{s.ref, r[0], r[1]}
		}
		out, err := s.s.Submit(ctx, pools.Batch{Module: "mlscore", Function: "score", Items: items})
		if err != nil {
			return err
		}
		sameModel := true
		for _, o := range out {
			row := o.([]any)
			preds[s.name] = append(preds[s.name], row[0].(int64))
			sameModel = sameModel && row[1] == s.info["model_id"] && row[2] == s.info["pid"]
		}
		ref, _ := pools.AsRef(s.ref)
		env.Printf("session %s (boundary x1+x2=%.0f): worker %v, pid %v, model id %v, ref %s\n", s.name, s.shift,
			s.info["worker"], s.info["pid"], s.info["model_id"], ref.ID)
		correct := 0
		for i, r := range records {
			want := int64(0)
			if r[0]+r[1] > s.shift {
				want = 1
			}
			if preds[s.name][i] == want {
				correct++
			}
		}
		env.Check(fmt.Sprintf("session %s scored with its own model", s.name), sameModel,
			"every call found model %v on pid %v", s.info["model_id"], s.info["pid"])
		env.Check(fmt.Sprintf("session %s agrees with its boundary", s.name), correct >= 18,
			"%d of 20 predictions match x1+x2 > %.0f", correct, s.shift)
	}
	differ := 0
	for i := range records {
		if preds["A"][i] != preds["B"][i] {
			differ++
		}
	}
	env.Printf("predictions: A %v\n             B %v\n", preds["A"], preds["B"])
	env.Check("the two sessions' predictions diverge", differ > 0, "%d of 20 records scored differently", differ)
	d, err := env.Engine.Pool("system")
	if err != nil {
		return err
	}
	if r, ok := d.(*pools.Router); ok {
		dec, err := r.Decide(ctx, pools.Batch{Module: "mlscore", Function: "score", Route: pools.Auto})
		if err == nil {
			env.Printf("Auto would send mlscore.score to the %s pool: %s\n", dec.Route, dec.Reason)
		}
	}
	return nil
}

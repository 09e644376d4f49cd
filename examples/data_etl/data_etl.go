// Package data_etl is the ETL example: rows validated against a schema the
// Go side reads from a store, with a hot reload from a lenient schema (v1)
// to a strict one (v2) between batches; every row carries the schema it
// was checked against, proving there was no torn read.
package data_etl

import (
	"context"
	"embed"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/slither-go/slither/dispatch"
	"github.com/slither-go/slither/engine"
	"github.com/slither-go/slither/examples"
	"github.com/slither-go/slither/pipe"
	"github.com/slither-go/slither/pools"
	"github.com/slither-go/slither/store"
)

//go:embed *.py
var py embed.FS

var version atomic.Int64 // what the loader loads

func schema(v int64) map[string]any {
	if v == 1 {
		return map[string]any{"version": v, "required": []any{"name"}, "email_at": false}
	}
	return map[string]any{"version": v, "required": []any{"name", "email"}, "email_at": true}
}

// Example is the data_etl example.
var Example = examples.Example{
	Name:    "data_etl",
	Summary: "a schema in a store, hot-reloaded from v1 (lenient) to v2 (strict) between batches, no torn reads",
	Python:  py,
	Stores: func() []store.Definition {
		version.Store(1)
		return []store.Definition{{
			Name:   "etl",
			Tables: []store.TableSpec{{Name: "schema"}},
			Load: func(ctx context.Context, w *store.Loader) error {
				return w.Put("schema", "current", schema(version.Load()))
			},
		}}
	},
	Run: run,
}

func rows(batch, n int) []any {
	out := make([]any, n)
	for i := range out {
		r := map[string]any{"id": fmt.Sprintf("b%d-r%02d", batch, i), "name": fmt.Sprintf("customer %d", i)}
		if i%4 == 3 {
			r["name"] = ""
		}
		switch i % 3 {
		case 0:
			r["email"] = fmt.Sprintf("C%d@Example.org", i)
		case 1:
			r["email"] = fmt.Sprintf("c%d-at-example.org", i)
		}
		out[i] = r
	}
	return out
}

// valid is the serial reference.
func valid(row map[string]any, v int64) bool {
	name, _ := row["name"].(string)
	email, _ := row["email"].(string)
	if v == 1 {
		return name != ""
	}
	return name != "" && email != "" && strings.Contains(email, "@")
}

func run(ctx context.Context, env *examples.Env) error {
	st := env.Engine.Store("etl")
	p, err := pipe.New("etl").
		Map("prepare", func(ctx context.Context, it pipe.Item) (pipe.Item, error) {
			s, _, err := st.Get("schema", "current") // one read: one whole schema
			if err != nil {
				return it, err
			}
			it.Payload = map[string]any{"row": it.Payload, "schema": s}
			return it, nil
		}).
		Python("validate", pipe.Python{Module: "etl", Function: "validate", Route: pools.Process, Strategy: dispatch.FixedBatch(4)}).
		Map("transform", func(ctx context.Context, it pipe.Item) (pipe.Item, error) {
			r := it.Payload.(map[string]any)
			row := r["row"].(map[string]any)
			if e, ok := row["email"].(string); ok {
				row["email"] = strings.ToLower(e)
			}
			return it, nil
		}).
		Router("route", pipe.When("valid", func(it pipe.Item) bool { return it.Payload.(map[string]any)["valid"].(bool) })).
		Output("valid").
		Build()
	if err != nil {
		return err
	}
	audits := map[any]int64{}
	for b := 1; b <= 2; b++ {
		if b == 2 {
			version.Store(2)
			if err := st.Reload(ctx); err != nil {
				return err
			}
			env.Printf("-- hot reload: schema v2 (name and an email with @ required)\n")
		}
		in := rows(b, 16*env.Scale)
		res, err := env.Engine.RunPipe(ctx, p, dispatch.Slice(in), engine.PipeOptions{})
		if err != nil {
			return err
		}
		versions := map[int64]int{}
		refValid, mismatch := 0, 0
		for _, row := range in {
			if valid(row.(map[string]any), int64(b)) {
				refValid++
			}
		}
		for _, items := range res.Outputs {
			for _, it := range items {
				r := it.Payload.(map[string]any)
				versions[r["schema"].(int64)]++
				if r["valid"].(bool) != valid(r["row"].(map[string]any), int64(b)) {
					mismatch++
				}
				audits[r["pid"]] = max(audits[r["pid"]], r["audit"].(int64))
			}
		}
		env.Printf("batch %d: %d rows, %d valid, %d invalid; schema versions seen: %v\n", b, len(in),
			len(res.Outputs["valid"]), len(res.Outputs["default"]), versions)
		env.Check(fmt.Sprintf("batch %d saw only schema v%d", b, b), versions[int64(b)] == len(in) && len(versions) == 1,
			"versions seen: %v", versions)
		env.Check(fmt.Sprintf("batch %d validity equals the serial reference", b), mismatch == 0 && refValid == len(res.Outputs["valid"]),
			"%d valid (reference %d), %d disagreements", len(res.Outputs["valid"]), refValid, mismatch)
	}
	total := int64(0)
	pids := slices.SortedFunc(maps.Keys(audits), func(a, b any) int { return int(a.(int64) - b.(int64)) })
	for _, pid := range pids {
		env.Printf("  worker pid %v: audit log of %d rows\n", pid, audits[pid])
		total += audits[pid]
	}
	env.Check("the per-worker audit logs cover every row", total == int64(32*env.Scale), "%d entries for %d rows", total, 32*env.Scale)
	return nil
}

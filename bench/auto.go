package bench

import (
	"context"
	"fmt"
	"maps"
	"strings"
	"sync"

	"github.com/slither-go/slither/engine"
	"github.com/slither-go/slither/pools"
	"github.com/slither-go/slither/telemetry"
)

// autoExecutor is the "auto" column: an engine started as a Go service
// would start it (its embedded pool, and a process pool on the GIL
// interpreter, the run's worker count each), every batch submitted to its
// router on Route Auto. The cell's note and Routes say where the router
// sent the timed batches, and why.
func autoExecutor(ctx context.Context, o Options, rep *Report) (runner, func(), error) {
	cfg := engine.Config{
		// With cgo the embedded pool must start: auto without it would
		// measure only the process pool and still look like a choice.
		Thread:  engine.ThreadConfig{Workers: o.Workers, Required: embedded},
		Process: map[string]engine.ProcessConfig{engine.DefaultPool: {Python: o.GIL, Workers: o.Workers}},
		Logger:  o.Logger,
	}
	e, err := engine.Start(ctx, cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("bench: auto: %w", err)
	}
	p, err := e.Pool("")
	if err != nil {
		_ = e.Close(context.Background())
		return nil, nil, fmt.Errorf("bench: auto: %w", err)
	}
	// Seeds: what this run measured on the pools (they ran before auto),
	// as a service's router starts from a saved `slither bench` (the
	// engine reads capacity.MeasuredPath; this run's may not be saved, and
	// a quick run never is). A router's fields may be set before its first
	// batch.
	if r, ok := p.(*pools.Router); ok {
		r.CostSeeds = rep.Measured().Costs
	}
	var rt routeTally
	if err := e.Telemetry().Attach("bench.auto", rt.handle, telemetry.RouterDecision); err != nil {
		_ = e.Close(context.Background())
		return nil, nil, fmt.Errorf("bench: auto: %w", err)
	}
	run := func(ctx context.Context, w workload) Cell {
		// Batch.Route is left at its zero value, Auto, as a service's is.
		c := drive(ctx, p, w, w.function, "", o.Workers, &rt, nil)
		c.Routes, c.Note = rt.summary(c.Note)
		return c
	}
	return run, func() { _ = e.Close(context.Background()) }, nil
}

// routeTally counts the router's decisions (router.decision events) by
// route and reason class, keeping the last reason of each, from drive's
// start to its stop (the timed batches).
type routeTally struct {
	mu      sync.Mutex
	on      bool
	counts  map[string]int
	reasons map[string]string
}

func (t *routeTally) handle(_ telemetry.Event, _ telemetry.Measurements, md telemetry.Metadata) {
	route, _ := md["route"].(string)
	class, _ := md["class"].(string)
	reason, _ := md["reason"].(string)
	key := route + "/" + class
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.on {
		return
	}
	if t.counts == nil {
		t.counts, t.reasons = map[string]int{}, map[string]string{}
	}
	t.counts[key]++
	t.reasons[key] = reason
}

// start forgets the decisions so far and counts the next ones.
func (t *routeTally) start() {
	t.mu.Lock()
	defer t.mu.Unlock()
	clear(t.counts)
	clear(t.reasons)
	t.on = true
}

// stop stops counting.
func (t *routeTally) stop() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.on = false
}

// summary returns the counts and a note saying where the batches went, most
// first, after the cell's own note (if any).
func (t *routeTally) summary(note string) (map[string]int, string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	var parts []string
	for _, k := range sortedByCount(t.counts) {
		route, class, _ := strings.Cut(k, "/")
		parts = append(parts, fmt.Sprintf("%d to %s [%s: %s]", t.counts[k], route, class, t.reasons[k]))
	}
	s := "Auto sent " + strings.Join(parts, "; ")
	if len(parts) == 0 {
		s = "Auto made no decision"
	}
	if note != "" {
		s = note + "; " + s
	}
	return maps.Clone(t.counts), s
}

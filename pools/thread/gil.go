//go:build cgo

package thread

import (
	"context"
	"slices"
	"strings"
	"time"

	"github.com/slither-go/slither/capacity"
	"github.com/slither-go/slither/pools"
	"github.com/slither-go/slither/telemetry"
)

// GILChange is a change of the embedded interpreter's GIL state that the
// pool saw, usually an import re-enabling it.
type GILChange struct {
	Enabled bool
	// Module is the module CPython named when it re-enabled the GIL, or
	// empty if it named none (the GIL was turned on some other way).
	Module string
	// During is the module of the batch after which the change was seen.
	During string
	At     time.Time
}

// checkGIL compares the GIL state with the last one seen and records and
// announces (runtime.gil_changed) a change. Runs on the thread of a batch
// during which (or since its worker's last check) the interpreter
// imported something.
func (p *Pool) checkGIL(py pyThread, during string) {
	// One check at a time, so that two workers that saw the same import
	// record one change. The event goes out after the lock is released: a
	// handler may well ask for GILChanges.
	p.gilMu.Lock()
	v, err := py.Call("slither._gil", "state")
	st, _ := v.([]any)
	if err != nil || len(st) != 2 {
		p.gilMu.Unlock()
		return
	}
	on, _ := st[0].(bool)
	mods, _ := st[1].([]any)
	if on == p.gil.Load() && len(mods) == 0 {
		p.gilMu.Unlock()
		return
	}
	p.gil.Store(on)
	c := GILChange{Enabled: on, During: during, At: time.Now()}
	if len(mods) > 0 {
		c.Module, _ = mods[0].(string)
	}
	p.gilChanges = append(p.gilChanges, c)
	p.gilMu.Unlock()
	p.tel.Emit(telemetry.RuntimeGILChanged, telemetry.Measurements{}, telemetry.Metadata{
		"pool": poolName, "kind": string(pools.KindThread), "enabled": on, "module": c.Module, "during": during})
}

// FreeThreadedBuild reports whether the embedded interpreter was built
// with --disable-gil.
func (p *Pool) FreeThreadedBuild() bool { return p.rt.FreeThreadedBuild() }

// GILEnabled reports the GIL state as of the pool's last check: at start,
// and after every batch during which the interpreter imported a module
// (anywhere in the process), before that batch's Submit returns.
func (p *Pool) GILEnabled() bool { return p.gil.Load() }

// Describe reports the embedded interpreter for `slither doctor`: build,
// GIL state, the modules that re-enabled the GIL, and (with calls > 0) the
// mean time of that many no-op calls through this pool.
func (p *Pool) Describe(ctx context.Context, calls int) (capacity.Embedded, error) {
	e := capacity.Embedded{Available: true, Version: strings.Fields(p.rt.Version())[0], Executable: p.rt.Executable(),
		FreeThreaded: p.FreeThreadedBuild(), GILEnabled: p.GILEnabled()}
	for _, c := range p.GILChanges() {
		if c.Enabled && c.Module != "" && !slices.Contains(e.EnabledBy, c.Module) {
			e.EnabledBy = append(e.EnabledBy, c.Module)
		}
	}
	if calls > 0 {
		b := pools.Batch{Module: "slither._demo", Function: "noop", Items: []any{0}}
		if _, err := p.Submit(ctx, b); err != nil { // warm-up: the import
			return e, err
		}
		start := time.Now()
		for range calls {
			if _, err := p.Submit(ctx, b); err != nil {
				return e, err
			}
		}
		e.CallOverhead = time.Since(start) / time.Duration(calls)
	}
	return e, nil
}

// GILEnabledBy names the module that last turned the GIL on, if it is on
// because of one.
func (p *Pool) GILEnabledBy() string {
	p.gilMu.Lock()
	defer p.gilMu.Unlock()
	if n := len(p.gilChanges); n > 0 && p.gil.Load() {
		return p.gilChanges[n-1].Module
	}
	return ""
}

// GILChanges lists the GIL changes the pool has seen, oldest first.
func (p *Pool) GILChanges() []GILChange {
	p.gilMu.Lock()
	defer p.gilMu.Unlock()
	return slices.Clone(p.gilChanges)
}

// ThreadSafe reports whether module.function is marked
// @slither.thread_safe. It imports the module in the embedded interpreter
// (on a worker), which may itself turn the GIL on: the pool notices.
func (p *Pool) ThreadSafe(ctx context.Context, module, function string) (bool, error) {
	out, err := p.Submit(ctx, pools.Batch{Module: "slither._gil", Function: "thread_safe", Items: []any{[]any{module, function}}})
	if err != nil {
		return false, err
	}
	ok, _ := out[0].(bool)
	return ok, nil
}

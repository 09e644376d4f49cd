//go:build cgo

package thread

import (
	"time"

	"github.com/slither-go/slither/pools"
)

// What the pool shows of itself: its name, per-worker state, and the
// batch's trace ids in Python.

// Name is the pool's name in telemetry: "thread", as there is one embedded
// interpreter per process (see [pools.Named]).
func (p *Pool) Name() string { return poolName }

// poolName is the embedded pool's name (Stats.Name, CallInfo.Pool, event
// metadata "pool").
const poolName = string(pools.KindThread)

// Stats returns a snapshot of the workers' (Direct: slots') counters. A
// Direct slot's Thread is the OS thread running its batch, 0 when idle.
func (p *Pool) Stats() pools.Stats {
	s := pools.Stats{Name: poolName, Kind: pools.KindThread, Waiting: int(p.waiting.Load())}
	for _, w := range p.workers {
		active := w.active.Load()
		if active {
			s.Running++
		}
		ws := pools.WorkerStats{
			ID:      w.id,
			Running: active,
			Pid:     pid,
			Calls:   w.calls.Load(),
			Items:   w.items.Load(),
			Errors:  w.errs.Load(),
			Busy:    time.Duration(w.busy.Load()),
		}
		w.mu.Lock()
		ws.Thread = w.tid
		switch {
		case w.exited:
			ws.State = pools.WorkerStopped
		case w.py == nil:
			ws.State = pools.WorkerStarting
		case w.cur != 0:
			ws.State, ws.Since = pools.WorkerBusy, w.since
			ws.Current = w.curMod + "." + w.curFn
			if w.cl != nil { // Direct: the thread of the goroutine holding the slot
				ws.Thread = w.cl.TID()
			}
		default:
			ws.State = pools.WorkerIdle
		}
		w.mu.Unlock()
		s.Workers = append(s.Workers, ws)
	}
	return s
}

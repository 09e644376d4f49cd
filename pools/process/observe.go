package process

import (
	"time"

	"github.com/slither-go/slither/pools"
)

// What the pool shows of itself: its name and per-worker state.

// Name is the pool's name in telemetry: Options.Name, or "process" (see
// [pools.Named]).
func (p *Pool) Name() string { return p.name }

// Stats returns a snapshot of the workers' counters; RSS is sampled now.
// A busy worker's Current and Since are those of its oldest running call.
func (p *Pool) Stats() pools.Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := pools.Stats{Name: p.name, Kind: pools.KindProcess, Waiting: len(p.waiters)}
	for _, s := range p.slots {
		ws := pools.WorkerStats{
			ID:       s.id,
			Running:  s.inflight > 0,
			Calls:    s.calls.Load(),
			Items:    s.items.Load(),
			Errors:   s.errs.Load(),
			Busy:     time.Duration(s.busy.Load()),
			Restarts: s.restarts.Load(),
		}
		switch {
		case s.recycling || (s.retiring && s.proc != nil): // retiring stays set until the new process is in
			ws.State = pools.WorkerRecycling
		case s.proc == nil && s.starting:
			ws.State = pools.WorkerStarting
		case s.proc == nil:
			ws.State = pools.WorkerStopped
		case s.inflight > 0:
			ws.State = pools.WorkerBusy
		default:
			ws.State = pools.WorkerIdle
		}
		if s.proc != nil {
			ws.Pid = s.proc.pid
			if rss, ok := readRSS(s.proc.pid); ok {
				s.rss.Store(rss)
			}
			ws.RSS = s.rss.Load()
			if c := s.proc.oldest(); c != nil {
				ws.Current, ws.Since = c.b.Module+"."+c.b.Function, c.start
			}
		}
		st.Running += s.inflight
		st.Workers = append(st.Workers, ws)
	}
	return st
}

// oldest returns the running call that started first, or nil.
func (pr *proc) oldest() *call {
	pr.pmu.Lock()
	defer pr.pmu.Unlock()
	var o *call
	for _, c := range pr.pending {
		if o == nil || c.start.Before(o.start) {
			o = c
		}
	}
	return o
}

package process

import (
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/slither-go/slither/pools"
	"github.com/slither-go/slither/telemetry"
)

// releaseLocked frees the thread a grant took and recycles the worker if it
// is due. A dead worker has left its slot (detachLocked) before its calls
// end, so it is never retired as recycled: its death counts as a crash.
// p.mu held.
func (p *Pool) releaseLocked(s *slot, pr *proc) {
	s.inflight--
	if s.proc == pr && !s.retiring && s.pins == 0 && !p.stopping && p.due(s, pr) {
		s.retiring = true
	}
	if s.retiring && s.inflight == 0 && s.proc == pr {
		s.proc = nil
		s.starting, s.recycling = true, true
		pr.recycled.Store(true)
		p.bg.Add(1)
		go func() {
			defer p.bg.Done()
			pr.stop(p.opts.StopGrace)
			p.mu.Lock()
			s.recycling = false
			p.mu.Unlock()
			p.restart(s)
		}()
	}
	p.dispatch()
}

// due reports whether pr has reached a recycling limit. p.mu held.
func (p *Pool) due(s *slot, pr *proc) bool {
	o := p.opts
	if o.MaxCalls > 0 && pr.calls >= o.MaxCalls {
		return true
	}
	if o.MaxAge > 0 && time.Since(pr.started) >= o.MaxAge {
		return true
	}
	if o.MaxRSSMB > 0 {
		if rss, ok := readRSS(pr.pid); ok {
			s.rss.Store(rss)
			return rss >= uint64(o.MaxRSSMB)<<20
		}
	}
	return false
}

// detachLocked takes the dead process pr off its slot and marks the
// sessions pinned to it lost, in one step and before its calls are failed:
// failing them frees threads for waiting batches, and none may be granted
// to pr (a new session pinned to it would lose its state with no
// ErrSessionLost, and a batch sent to it would find no worker), nor may
// pr be retired as recycled. p.mu held.
func (p *Pool) detachLocked(pr *proc, crash *CrashError) {
	s := pr.slot
	if s.proc == pr {
		s.proc = nil
	}
	p.unpinLocked(s, pr, crash)
}

// onExit runs when a worker process has died and its calls have been
// failed (detachLocked has taken it off its slot): it starts a replacement
// unless the pool is stopping, recycled it (its replacement is on the way)
// or has its breaker open. p.mu held.
func (p *Pool) onExit(s *slot, pr *proc, crash *CrashError) {
	if pr.recycled.Load() || p.stopping || p.failed != nil {
		p.dispatch()
		return
	}
	// A call's timeout is the user's slow call, not the worker's fault.
	if pr.endCause() == endTimeout {
		p.log.Info("slither worker killed after a call timed out; restarting", "worker", s.id, "pid", pr.pid)
		p.startLocked(s)
	} else {
		p.log.Warn("slither worker crashed; restarting", "worker", s.id, "pid", pr.pid, "reason", crash.Reason)
		if p.countRestartLocked(crash) {
			p.startLocked(s)
		}
	}
	p.dispatch()
}

// installLocked puts a freshly started process on s. p.mu held.
func (p *Pool) installLocked(s *slot, pr *proc) {
	s.proc, s.retiring = pr, false
	if s.started {
		s.restarts.Add(1)
	}
	s.started = true
}

// startLocked starts a process for the empty slot s in the background.
// p.mu held.
func (p *Pool) startLocked(s *slot) {
	if s.starting || s.proc != nil {
		return
	}
	s.starting = true
	p.bg.Add(1)
	go func() {
		defer p.bg.Done()
		p.restart(s)
	}()
}

// restart starts a new process for s (whose starting flag the caller set),
// retrying failed starts with a back-off while the restart intensity
// allows; past it the breaker takes over.
func (p *Pool) restart(s *slot) {
	backoff := 50 * time.Millisecond
	for {
		p.mu.Lock()
		if p.stopping || p.failed != nil {
			s.starting = false
			p.startEndedLocked(false, nil)
			p.dispatch()
			p.mu.Unlock()
			return
		}
		p.mu.Unlock()
		p.opts.Telemetry.Emit(telemetry.PoolWorkerRestart, telemetry.Measurements{}, telemetry.Metadata{
			"pool": p.name, "kind": string(pools.KindProcess), "worker": s.id})
		pr, err := p.spawn(p.life, s)
		p.mu.Lock()
		if err == nil {
			s.starting = false
			if p.stopping {
				p.mu.Unlock()
				pr.kill("pool closing", endStopped)
				return
			}
			p.installLocked(s, pr)
			p.startEndedLocked(true, nil)
			p.dispatch()
			p.mu.Unlock()
			return
		}
		if p.stopping {
			s.starting = false
			p.mu.Unlock()
			return
		}
		p.log.Error("slither worker failed to start", "worker", s.id, "error", err)
		if !p.countRestartLocked(err) {
			s.starting = false
			p.dispatch()
			p.mu.Unlock()
			return
		}
		if p.failed != nil { // the breaker opened meanwhile: its probe starts workers now
			s.starting = false
			p.startEndedLocked(false, err)
			p.dispatch()
			p.mu.Unlock()
			return
		}
		p.mu.Unlock()
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-p.life.Done():
			t.Stop()
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

// stopLocked marks the pool stopping: no restarts, no breaker probes, and
// starts under way are cancelled. p.mu held.
func (p *Pool) stopLocked() {
	p.stopping = true
	p.stopLife()
	p.brk.stop()
}

// readRSS reads a process's resident set size from /proc.
func readRSS(pid int) (uint64, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/statm", pid))
	if err != nil {
		return 0, false
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0, false
	}
	var pages uint64
	if _, err := fmt.Sscan(f[1], &pages); err != nil {
		return 0, false
	}
	return pages * uint64(os.Getpagesize()), true
}

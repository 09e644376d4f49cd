package process

import (
	"fmt"
	"time"

	"github.com/slither-go/slither/pools"
	"github.com/slither-go/slither/telemetry"
)

// breaker is the pool's restart circuit breaker. Closed, it counts crashes
// and failed starts; more than MaxRestarts within RestartWindow open it:
// calls fail at once (Pool.failed) and no worker is started for a back-off.
// Then it is half-open: one start is tried; success closes it, failure
// reopens it with twice the back-off. Only a successful start (or every
// worker being up) closes it: when the workers missing are all being
// started already, the first of those starts to end decides instead.
// Fields are guarded by Pool.mu.
type breaker struct {
	restarts []time.Time // counted restarts within the window
	backoff  time.Duration
	timer    *time.Timer // the pending half-open probe while open
	awaiting bool        // half-open, waiting for the starts under way
	closedAt time.Time   // when it last closed after being open
}

// stop cancels a pending probe.
func (b *breaker) stop() {
	if b.timer != nil {
		b.timer.Stop()
		b.timer = nil
	}
	b.awaiting = false
}

// maxBackoff is the longest the breaker stays open between attempts.
func (p *Pool) maxBackoff() time.Duration { return max(time.Minute, p.opts.RestartBackoff) }

// countRestartLocked records a restart; past the intensity limit it opens
// the breaker and returns false. p.mu held.
func (p *Pool) countRestartLocked(cause error) bool {
	b := &p.brk
	now := time.Now()
	b.restarts = append(b.restarts, now)
	cut := 0
	for cut < len(b.restarts) && now.Sub(b.restarts[cut]) > p.opts.RestartWindow {
		cut++
	}
	b.restarts = b.restarts[cut:]
	if len(b.restarts) <= p.opts.MaxRestarts {
		return true
	}
	// Reopening soon after closing means the pool is not well yet: wait
	// longer than last time.
	if b.backoff == 0 || now.Sub(b.closedAt) > p.opts.RestartWindow {
		b.backoff = p.opts.RestartBackoff
	} else {
		b.backoff = min(2*b.backoff, p.maxBackoff())
	}
	p.openLocked(fmt.Errorf("%w: %d worker restarts within %v (limit %d); no worker is started for %v; last cause: %w",
		pools.ErrPoolFailed, len(b.restarts), p.opts.RestartWindow, p.opts.MaxRestarts, b.backoff, cause))
	return false
}

// openLocked opens the breaker with err (the calls' error) and schedules
// the half-open probe after the current back-off. p.mu held.
func (p *Pool) openLocked(err error) {
	b := &p.brk
	b.restarts = nil
	p.failed = err
	p.log.Error("slither process pool failing fast", "error", err)
	b.stop()
	b.timer = time.AfterFunc(b.backoff, p.probe)
	p.dispatch()
}

// probe is the half-open state, after the back-off.
func (p *Pool) probe() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.brk.timer = nil
	p.probeLocked()
}

// probeLocked tries one start on an empty slot, closing the breaker on
// success and reopening it with a longer back-off on failure. With no
// empty slot to try, it closes the breaker if every worker is up, and
// otherwise (every missing one is being started: a restart or a recycle
// begun before) waits for the first of those starts to end
// (startEndedLocked). p.mu held.
func (p *Pool) probeLocked() {
	p.brk.awaiting = false
	if p.stopping || p.failed == nil {
		return
	}
	var s *slot
	up := 0
	for _, x := range p.slots {
		switch {
		case x.proc != nil:
			up++
		case !x.starting && s == nil:
			s = x
		}
	}
	if s == nil {
		if up == len(p.slots) {
			p.closeLocked()
		} else {
			p.brk.awaiting = true
			p.log.Debug("slither process pool: the breaker's probe waits for the worker starts under way")
		}
		return
	}
	s.starting = true
	p.bg.Add(1) // Close (and a failed New) waits for it: p.bg.Wait
	go func() {
		defer p.bg.Done()
		p.probeStart(s)
	}()
}

// startEndedLocked runs when a start that was not the probe's has ended
// (its slot is no longer starting). A probe waiting for it takes its
// outcome: installed, it closes the breaker; failed (err), it reopens it
// with a longer back-off; given up before trying (neither), the probe
// tries a start itself. p.mu held.
func (p *Pool) startEndedLocked(installed bool, err error) {
	if !p.brk.awaiting {
		return
	}
	switch {
	case installed:
		p.closeLocked()
	case err != nil:
		p.probeFailedLocked(err)
	default:
		p.probeLocked()
	}
}

// probeStart is the probe's start on s (whose starting flag is set).
func (p *Pool) probeStart(s *slot) {
	p.opts.Telemetry.Emit(telemetry.PoolWorkerRestart, telemetry.Measurements{}, telemetry.Metadata{
		"pool": p.name, "kind": string(pools.KindProcess), "worker": s.id, "probe": true})
	pr, err := p.spawn(p.life, s)
	p.mu.Lock()
	defer p.mu.Unlock()
	s.starting = false
	switch {
	case p.stopping:
		if err == nil {
			pr.kill("pool closing", endStopped)
		}
	case err != nil:
		p.probeFailedLocked(err)
	default:
		p.installLocked(s, pr)
		p.closeLocked()
	}
}

// probeFailedLocked reopens the breaker after the start that decides the
// half-open state failed with err. p.mu held.
func (p *Pool) probeFailedLocked(err error) {
	p.brk.backoff = min(2*p.brk.backoff, p.maxBackoff())
	p.openLocked(fmt.Errorf("%w: a worker start after the back-off failed; the next attempt is in %v: %w",
		pools.ErrPoolFailed, p.brk.backoff, err))
}

// closeLocked closes the breaker and starts the workers still missing.
// p.mu held.
func (p *Pool) closeLocked() {
	p.brk.stop()
	p.failed = nil
	p.brk.restarts = nil
	p.brk.closedAt = time.Now()
	p.log.Info("slither process pool serving again after its restart back-off")
	for _, s := range p.slots {
		p.startLocked(s)
	}
	p.dispatch()
}

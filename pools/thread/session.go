//go:build cgo

package thread

import (
	"errors"
	"fmt"
	"slices"

	"github.com/slither-go/slither/pools"
)

// defaultMaxSessions is the default of [Options.MaxSessions].
const defaultMaxSessions = 1 << 16

// ErrTooManySessions is matched by errors of batches that would open more
// sessions than [Options.MaxSessions] allows.
var ErrTooManySessions = errors.New("pools/thread: too many open sessions")

// session is what the pool knows of one open session.
//
// Its state lives in Python, one dict per worker (slot) that ran its
// batches (slither.session(): a pinned session has one, an unpinned
// session's batches each use their worker's). A Dedicated worker makes and
// drops it on its own thread: on a free-threaded build (biased reference
// counting) an object released by another thread is only queued for the
// thread that made it, and freed when that thread next runs Python. A
// Direct slot runs on whichever thread holds it, so its dict may be made
// on one OS thread and dropped on another: objects of the first are then
// freed when it next runs Python, or at the next cyclic garbage
// collection, or when the thread exits — late, never leaked.
//
// Late batches: a session's state is released once the session is closed
// and none of its batches is in flight (submitted, not yet finished). A
// batch submitted before the release still sees the state, and the release
// follows the last such batch, so a batch still running when its session
// closed (one whose caller gave up, say) cannot bring the state back for
// good. A batch submitted after the release opens the session afresh, with
// empty state, to be closed in its turn.
type session struct {
	id       string
	pinned   *worker   // the worker (slot) of its pinned batches; nil before the first
	holders  []*worker // the workers that ran a batch of it, so may hold state
	inflight int       // batches submitted and not yet finished
	closed   bool      // CloseSession was called: release when inflight is 0
}

// admit counts a batch of b.Session as in flight, opening the session if
// needed, and returns it with the worker the batch must run on if it is
// pinned (nil otherwise). chain is the chain of host calls that submits b,
// if any: a pinned batch cannot wait for a worker in it, and a new session
// is pinned to a worker outside it.
func (p *Pool) admit(b pools.Batch, chain pools.HostChain) (*session, *worker, error) {
	p.sessMu.Lock()
	defer p.sessMu.Unlock()
	s := p.sessions[b.Session]
	if s == nil {
		if len(p.sessions) >= p.maxSessions {
			return nil, nil, fmt.Errorf("pools/thread: %s.%s: cannot open session %s: %w: %d are open (Options.MaxSessions); "+
				"close each session when done with it (Session.Close, or the end of the context given to pools.NewSession)",
				b.Module, b.Function, b.Session, ErrTooManySessions, len(p.sessions))
		}
		s = &session{id: b.Session}
		p.sessions[b.Session] = s
	}
	var pin *worker
	if b.Pinned() {
		if s.pinned == nil {
			s.pinned = p.leastPinned(chain)
			s.pinned.pins++
		}
		pin = s.pinned
		if chain.Count(pin) > 0 {
			if s.inflight == 0 && len(s.holders) == 0 { // opened for nothing
				p.forget(s)
			}
			return nil, nil, p.reentrant(b, chain, pin)
		}
	}
	s.inflight++
	return s, pin, nil
}

// leastPinned returns the worker with the fewest pinned sessions among
// those outside chain, or among all workers if chain holds every one.
func (p *Pool) leastPinned(chain pools.HostChain) *worker {
	var best, held *worker
	for _, w := range p.workers {
		if chain.Count(w) > 0 {
			if held == nil || w.pins < held.pins {
				held = w
			}
		} else if best == nil || w.pins < best.pins {
			best = w
		}
	}
	if best == nil {
		return held
	}
	return best
}

// finish ends one in-flight batch of s (nothing when s is nil); ran is the
// worker that ran it, nil if it did not run. The session's state is
// released if it is closed and this was its last batch in flight. In
// Direct mode the caller holds ran's slot: ran drops its part when the
// slot is released, the free slots' parts are dropped here, on this
// thread.
func (p *Pool) finish(s *session, ran *worker) {
	if s == nil {
		return
	}
	p.sessMu.Lock()
	if ran != nil && !slices.Contains(s.holders, ran) {
		s.holders = append(s.holders, ran)
	}
	s.inflight--
	released := s.closed && s.inflight == 0
	if released {
		p.release(s)
	}
	p.sessMu.Unlock()
	if released && p.mode == Direct {
		p.dropFree(s.holders)
	}
}

// release forgets s and has each worker that may hold its state drop it.
// p.sessMu held: the drops are queued before a batch of a session opened
// again under the same id can reach those workers.
func (p *Pool) release(s *session) {
	p.forget(s)
	for _, w := range s.holders {
		w.queueRelease(s.id)
	}
}

// forget removes s from the pool's sessions and unpins it. p.sessMu held.
func (p *Pool) forget(s *session) {
	if p.sessions[s.id] == s {
		delete(p.sessions, s.id)
	}
	if s.pinned != nil {
		s.pinned.pins--
		s.pinned = nil
	}
}

// CloseSession closes session id; see [pools.Pool.CloseSession]. It never
// waits for a batch: once the session's batches still in flight have
// finished, the state each worker holds of it is dropped — by a Dedicated
// worker on its own thread before its next batch (at once when idle); for
// a Direct slot by whichever goroutine finishes the session's last batch,
// or here, on the calling thread, when none is in flight (a slot busy
// with another batch drops it when that batch ends). So it may be called
// from anywhere, a host call of the session's own batch included.
func (p *Pool) CloseSession(id string) {
	p.sessMu.Lock()
	s := p.sessions[id]
	if s == nil || s.closed {
		p.sessMu.Unlock()
		return
	}
	s.closed = true
	released := s.inflight == 0
	if released {
		p.release(s)
	}
	p.sessMu.Unlock()
	if !released || p.mode != Direct {
		return
	}
	// Counted as a submit, so that Close waits for the drops before it
	// closes the Callers; once closed, Close drops every state itself.
	p.mu.RLock()
	if p.closed {
		p.mu.RUnlock()
		return
	}
	p.submits.Add(1)
	p.mu.RUnlock()
	defer p.submits.Done()
	p.dropFree(s.holders)
}

// queueRelease has w drop session id's state, and wakes it if idle
// (Dedicated; a Direct slot has no wake channel: see dropFree).
func (w *worker) queueRelease(id string) {
	w.relMu.Lock()
	w.releases = append(w.releases, id)
	w.pending.Store(true)
	w.relMu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default: // a wake-up is already pending
	}
}

// dropReleased drops the session states queued for w, on w's thread.
// Cheap when there are none. Worker goroutine, or slot holder, only.
func (w *worker) dropReleased() {
	if !w.pending.Load() {
		return
	}
	w.relMu.Lock()
	ids := w.releases
	w.releases = nil
	w.pending.Store(false)
	w.relMu.Unlock()
	for _, id := range ids {
		// Nothing waits for the answer, and an exception raised by a
		// finalizer of the state is reported by Python itself (as
		// unraisable); _drop_session has no failure of its own to report.
		_, _ = w.py.Call("slither._context", "_drop_session", id, w.id)
	}
}

// releaseAll drops, as the pool closes, every session state w holds: the
// interpreter outlives the pool. Worker goroutine, or Close once every
// slot is free, only.
func (w *worker) releaseAll() {
	p := w.pool
	p.sessMu.Lock()
	for _, s := range p.sessions {
		if slices.Contains(s.holders, w) {
			w.queueRelease(s.id)
		}
	}
	p.sessMu.Unlock()
	w.dropReleased()
}

package process

import (
	"fmt"

	"github.com/slither-go/slither/pools"
	"github.com/slither-go/slither/pools/process/wire"
)

// session is the pool's record of one session id. It exists while batches
// of the session are in flight (queued or running) or while the session is
// pinned to a live worker, so the map of them is bounded by what the caller
// holds open; a closed or lost session leaves a tombstone instead.
//
// The rule for a closed session: CloseSession lets the batches already
// submitted finish with the session's state and drops the state after the
// last of them (so none re-creates it after the drop); a batch submitted
// after CloseSession fails with pools.ErrSessionLost.
type session struct {
	id       string
	refs     int   // batches submitted and not yet ended
	slot     *slot // the worker it is pinned to, once a pinned batch ran
	proc     *proc
	lost     error // set when its pinned worker died
	unpinned bool  // an unpinned batch ran: its state may be on any worker
	closing  bool  // CloseSession was called: it ends when refs drops to 0
}

// lostError is the error of a session batch whose worker died.
func lostError(id string, s *slot, pr *proc, crash *CrashError) error {
	return fmt.Errorf("%w: session %s was on worker %d (pid %d): %w", pools.ErrSessionLost, id, s.id, pr.pid, crash)
}

// enter records a batch of b's session as in flight; it fails for a
// session closed or lost before. p.mu is taken.
func (p *Pool) enter(b pools.Batch) (*session, error) {
	if b.Session == "" {
		return nil, nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	sess := p.sessions[b.Session]
	if sess == nil {
		sess = &session{id: b.Session}
		if e, ok := p.ended.Get(b.Session); ok {
			if e.Closed {
				return nil, e.Err
			}
			sess.lost = e.Err // its unpinned batches may still run
		}
		p.sessions[b.Session] = sess
	}
	if sess.closing {
		return nil, pools.SessionClosedError(b.Session)
	}
	if sess.lost != nil && b.Pinned() {
		return nil, sess.lost
	}
	sess.refs++
	if !b.Pinned() {
		sess.unpinned = true
	}
	return sess, nil
}

// leaveLocked ends a batch of sess (nil: none) and returns the close
// messages its end makes due, to send once p.mu is released.
func (p *Pool) leaveLocked(sess *session) closeSends {
	if sess == nil {
		return closeSends{}
	}
	sess.refs--
	return p.settleLocked(sess)
}

// settleLocked drops sess's record once nothing holds it. p.mu held.
func (p *Pool) settleLocked(sess *session) closeSends {
	if sess.refs > 0 {
		return closeSends{}
	}
	switch {
	case sess.closing:
		delete(p.sessions, sess.id)
		p.ended.Put(sess.id, pools.EndedSession{Err: pools.SessionClosedError(sess.id), Closed: true})
		if sess.slot != nil && sess.lost == nil {
			sess.slot.pins--
		}
		cs := closeSends{id: sess.id}
		switch {
		case sess.unpinned || sess.slot == nil: // unpinned batches may have left state on any worker
			cs.to = p.liveLocked()
		case sess.lost == nil:
			cs.to = []*proc{sess.proc}
		}
		return cs
	case sess.lost != nil:
		delete(p.sessions, sess.id)
		p.ended.Put(sess.id, pools.EndedSession{Err: sess.lost})
	case sess.slot == nil: // never pinned: nothing to remember
		delete(p.sessions, sess.id)
	}
	return closeSends{}
}

// closeSends are close_session messages to send.
type closeSends struct {
	id string
	to []*proc
}

func (cs closeSends) send() {
	for _, pr := range cs.to {
		_ = pr.write(wire.AppendCloseSession(nil, cs.id), nil)
	}
}

// CloseSession drops session id's state on its worker and unpins it; see
// [pools.Pool.CloseSession]. Batches of the session already submitted
// finish first, with its state; the state is dropped after the last of
// them. Batches submitted for id afterwards fail with [pools.ErrSessionLost]
// (the pool remembers the last 16,384 closed or lost ids).
func (p *Pool) CloseSession(id string) {
	p.mu.Lock()
	var cs closeSends
	if sess := p.sessions[id]; sess != nil {
		if !sess.closing {
			sess.closing = true
			cs = p.settleLocked(sess)
		}
	} else if e, ok := p.ended.Get(id); !ok || !e.Closed {
		p.ended.Put(id, pools.EndedSession{Err: pools.SessionClosedError(id), Closed: true})
		if !ok { // unknown: unpinned batches may have left state on any worker
			cs = closeSends{id: id, to: p.liveLocked()}
		}
	}
	p.mu.Unlock()
	cs.send()
}

// unpinLocked marks the sessions pinned to the dead process pr lost.
// p.mu held.
func (p *Pool) unpinLocked(s *slot, pr *proc, crash *CrashError) {
	for _, sess := range p.sessions {
		if sess.proc == pr && sess.lost == nil {
			sess.lost = lostError(sess.id, s, pr, crash)
			s.pins--
			p.settleLocked(sess)
		}
	}
}

// reentrantLocked fails a batch that would wait for a worker whose threads
// are all held by the chain of host calls it was submitted from: they wait
// for it, so it would wait forever. p.mu held.
func (p *Pool) reentrantLocked(chain pools.HostChain, sess *session, pinned bool) error {
	if chain.Empty() {
		return nil
	}
	held := func(pr *proc) int { return chain.Count(pr) }
	if pinned && sess.slot != nil {
		if held(sess.proc) < p.threads {
			return nil
		}
		return fmt.Errorf("%w: session %s runs on worker %d (pid %d), whose threads are all running the batches that made this call from a host function",
			pools.ErrReentrant, sess.id, sess.slot.id, sess.proc.pid)
	}
	for _, s := range p.slots {
		if s.proc == nil || held(s.proc) < p.threads {
			return nil
		}
	}
	return fmt.Errorf("%w: every worker's threads are running the batches that made this call from a host function", pools.ErrReentrant)
}

package remote

import (
	"fmt"
	"strconv"

	"github.com/slither-go/slither/pools"
)

// session is the pool's record of one session: kept while batches of it
// are in flight, while it is pinned to a node, or while unpinned batches
// may have left state on any node; a closed or lost session leaves a
// tombstone instead.
type session struct {
	id       string
	refs     int    // batches submitted and not yet ended
	node     string // the node it is pinned to, once a pinned batch was sent
	lost     error  // set when that node went away
	unpinned bool   // an unpinned batch ran: its state may be on any node
	closing  bool   // CloseSession was called: it ends when refs drops to 0
}

// enter admits a Submit of b: it fails after Close, and for a session
// closed or lost before. A pinned batch gets its session's node (chosen
// now at the session's first pinned batch). Every successful enter is
// followed by one leave.
func (p *Pool) enter(b pools.Batch) (*session, string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, "", fmt.Errorf("remote pool %s: %w", p.o.Name, pools.ErrClosed)
	}
	if b.Session == "" {
		p.active++
		return nil, "", nil
	}
	sess := p.sessions[b.Session]
	if sess == nil {
		sess = &session{id: b.Session}
		if e, ok := p.ended.Get(b.Session); ok {
			if e.Closed {
				return nil, "", e.Err
			}
			sess.lost = e.Err // its unpinned batches may still run
		}
	}
	if sess.closing {
		return nil, "", pools.SessionClosedError(b.Session)
	}
	if b.Pinned() {
		if sess.lost != nil {
			return nil, "", sess.lost
		}
		if sess.node == "" {
			n := p.pickLocked()
			if n == nil {
				return nil, "", fmt.Errorf("remote pool %s: session %s: %w right now (none live and not draining)", p.o.Name, b.Session, ErrNoNodes)
			}
			sess.node = n.id
			n.sessions++
		}
	} else {
		sess.unpinned = true
	}
	p.sessions[b.Session] = sess
	sess.refs++
	p.active++
	return sess, sess.node, nil
}

// leave ends a Submit that enter admitted.
func (p *Pool) leave(sess *session) {
	p.mu.Lock()
	p.active--
	var cs closeSends
	if sess != nil {
		sess.refs--
		cs = p.settleLocked(sess)
	}
	p.checkIdleLocked()
	p.mu.Unlock()
	p.sendCloses(cs)
}

// closeSends are close-session control calls to send: session id, to nodes.
type closeSends struct {
	id string
	to []string
}

// settleLocked drops sess's record once nothing holds it and returns the
// control calls its end makes due. p.mu held.
func (p *Pool) settleLocked(sess *session) closeSends {
	if sess.refs > 0 {
		return closeSends{}
	}
	switch {
	case sess.closing:
		delete(p.sessions, sess.id)
		p.ended.Put(sess.id, pools.EndedSession{Err: pools.SessionClosedError(sess.id), Closed: true})
		cs := closeSends{id: sess.id}
		if sess.node != "" && sess.lost == nil {
			if n := p.nodes[sess.node]; n != nil {
				n.sessions--
			}
			cs.to = append(cs.to, sess.node)
		}
		if sess.unpinned { // its state may be on any node
			for id, n := range p.nodes {
				if n.live && id != sess.node {
					cs.to = append(cs.to, id)
				}
			}
		}
		return cs
	case sess.lost != nil:
		delete(p.sessions, sess.id)
		p.ended.Put(sess.id, pools.EndedSession{Err: sess.lost})
	case sess.node == "" && !sess.unpinned: // nothing to remember
		delete(p.sessions, sess.id)
	}
	return closeSends{}
}

// CloseSession drops session id's state on the node that holds it; see
// [pools.Pool.CloseSession]. Batches of the session already submitted end
// first, with its state; then a close-session control call goes to its
// node (to every live node when unpinned batches ran). Batches submitted
// for id afterwards fail with pools.ErrSessionLost (the pool remembers the
// last 16,384 closed or lost ids).
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
	}
	p.mu.Unlock()
	p.sendCloses(cs)
}

// sendCloses publishes the close-session calls of cs to their nodes'
// subjects (durably: a node busy with the session's last batches reads it
// after them), in the background.
func (p *Pool) sendCloses(cs closeSends) {
	for _, node := range cs.to {
		p.goBackground(func() {
			ctx, cancel := cleanupContext(p.life)
			defer cancel()
			call := Call{ID: p.coord + "-c" + strconv.FormatUint(p.seq.Add(1), 10), Coord: p.coord, Pool: p.o.Name,
				Node: node, Batch: pools.Batch{Session: cs.id}, Control: ControlCloseSession}
			msg, err := p.codec.EncodeCall(ctx, call)
			if err == nil {
				_, err = p.js.PublishMsg(ctx, msg)
			}
			if err != nil {
				p.log.Warn("remote pool: sending close-session", "session", cs.id, "node", node, "err", err)
			}
		})
	}
}

package remote

import (
	"fmt"
	"strconv"

	"github.com/slither-go/slither/pools"
)

// maxEnded is how many closed or lost session ids a pool remembers, so
// that their later batches fail with pools.ErrSessionLost.
const maxEnded = 16384

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

// tombstone is the end of a session: closed, or lost with its node.
type tombstone struct {
	err    error
	closed bool
}

// tombstones remember the last maxEnded ended sessions.
type tombstones struct {
	m     map[string]tombstone
	order []string
}

func (t *tombstones) get(id string) (tombstone, bool) {
	e, ok := t.m[id]
	return e, ok
}

func (t *tombstones) put(id string, e tombstone) {
	if t.m == nil {
		t.m = map[string]tombstone{}
	}
	if _, ok := t.m[id]; !ok {
		if len(t.order) == maxEnded {
			delete(t.m, t.order[0])
			t.order = t.order[1:]
		}
		t.order = append(t.order, id)
	}
	t.m[id] = e
}

func closedError(id string) error {
	return fmt.Errorf("%w: session %s was closed (CloseSession); its state is gone", pools.ErrSessionLost, id)
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
		if e, ok := p.ended.get(b.Session); ok {
			if e.closed {
				return nil, "", e.err
			}
			sess.lost = e.err // its unpinned batches may still run
		}
	}
	if sess.closing {
		return nil, "", closedError(b.Session)
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
		p.ended.put(sess.id, tombstone{err: closedError(sess.id), closed: true})
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
		p.ended.put(sess.id, tombstone{err: sess.lost})
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
	} else if e, ok := p.ended.get(id); !ok || !e.closed {
		p.ended.put(id, tombstone{err: closedError(id), closed: true})
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

package pools

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"sync"
)

// Session is a handle on one session of one pool: its batches all run on
// the same worker, where Python keeps its state in slither.session(). It is
// closed by Close or when the context given to [NewSession] ends, whichever
// comes first; its methods are safe for concurrent use.
type Session struct {
	id   string
	pool Pool
	once sync.Once
	stop func() bool
}

// NewSession opens a session on p with a fresh random id. The session is
// closed (its state dropped on its worker) when ctx ends.
func NewSession(ctx context.Context, p Pool) *Session {
	var b [12]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	s := &Session{id: "s-" + hex.EncodeToString(b[:]), pool: p}
	s.stop = context.AfterFunc(ctx, s.close)
	return s
}

// ID is the session id Python sees as slither.context().session_id.
func (s *Session) ID() string { return s.id }

// Submit runs b in this session; see [Pool.Submit]. b.Session is ignored.
func (s *Session) Submit(ctx context.Context, b Batch) ([]any, error) {
	b.Session = s.id
	return s.pool.Submit(ctx, b)
}

// Close drops the session's state on its worker. Batches of the session
// should have returned first. Close is idempotent.
func (s *Session) Close() {
	s.stop()
	s.close()
}

func (s *Session) close() { s.once.Do(func() { s.pool.CloseSession(s.id) }) }

package pools

import (
	"fmt"

	"github.com/slither-go/slither/internal/bounded"
)

// MaxEndedSessions is how many ended session ids an [EndedSessions]
// remembers.
const MaxEndedSessions = 1 << 14

// EndedSession is how a session ended: closed (CloseSession), or lost
// with its worker or node.
type EndedSession struct {
	// Err is what later batches of the session get (it matches
	// ErrSessionLost).
	Err    error
	Closed bool
}

// EndedSessions remembers how the most recent ended sessions of a pool
// ended, so that their later batches fail with [ErrSessionLost] instead of
// starting a fresh session silently: for pool implementations (the process
// and remote pools). It holds at most [MaxEndedSessions] ids, forgetting
// the oldest, so a long-lived pool's memory stays bounded. The zero value is
// ready; it is not safe for concurrent use (pools hold their own lock).
type EndedSessions struct {
	m bounded.Map[string, EndedSession]
}

// Get returns how session id ended, if it is remembered.
func (t *EndedSessions) Get(id string) (EndedSession, bool) { return t.m.Get(id) }

// Put records how session id ended (replacing what was recorded).
func (t *EndedSessions) Put(id string, e EndedSession) {
	t.m.Max = MaxEndedSessions
	t.m.Put(id, e)
}

// SessionClosedError is the error of a batch submitted for session id
// after CloseSession.
func SessionClosedError(id string) error {
	return fmt.Errorf("%w: session %s was closed (CloseSession); its state is gone", ErrSessionLost, id)
}

package remote

import (
	"context"
	"time"
)

// Hooks observe moments of a Pool that tests synchronize on; they run on
// the pool's goroutines and must not block.
type Hooks struct {
	Published func(id string, seq uint64) // a batch was stored in the work stream
	Dropped   func(id string)             // a result no Submit waited for was dropped
	Node      func(id string, gone bool)  // a node advert (or its end) was applied
}

// NewWithHooks is New with test hooks installed before anything starts.
func NewWithHooks(ctx context.Context, o Options, h Hooks) (*Pool, error) {
	return newPool(ctx, o, testHooks{published: h.Published, dropped: h.Dropped, node: h.Node})
}

// ResyncGrace is how long a restarted nodes watch would wait now.
func (p *Pool) ResyncGrace() time.Duration { return p.resyncGrace() }

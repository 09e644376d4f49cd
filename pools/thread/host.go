//go:build cgo

package thread

import (
	"context"
	"fmt"
	"slices"

	"github.com/slither-go/slither/pools"
)

// origin is one link of a chain of host calls: the worker whose batch made
// the call, and the link of the host call that submitted that batch, if
// any. A host function's context carries the chain — through other pools
// too, as long as they hand on the context — so that a batch submitted with
// it can be refused when only workers busy waiting for it could run it.
// One link per worker is not enough: W1's host call submits to a session
// on W2, whose batch's host call submits to a session on W1.
type origin struct {
	w      *worker
	parent *origin
}

type originKey struct{}

// originFrom returns the chain of host calls ctx comes from, or nil.
func originFrom(ctx context.Context) *origin {
	o, _ := ctx.Value(originKey{}).(*origin)
	return o
}

// holds reports whether w is in the chain: busy with a batch that waits,
// through host calls, for the batch now being submitted.
func (o *origin) holds(w *worker) bool {
	for ; o != nil; o = o.parent {
		if o.w == w {
			return true
		}
	}
	return false
}

// held returns the ids of p's workers in the chain, sorted, each once.
func (o *origin) held(p *Pool) []int {
	var ids []int
	for ; o != nil; o = o.parent {
		if o.w.pool == p && !slices.Contains(ids, o.w.id) {
			ids = append(ids, o.w.id)
		}
	}
	slices.Sort(ids)
	return ids
}

// allHeld reports whether every worker of p is in the chain, so that no
// batch submitted from it could ever run.
func (p *Pool) allHeld(chain *origin) bool {
	return chain != nil && len(chain.held(p)) == len(p.workers)
}

// reentrant is the error of b, submitted from chain, when it could only run
// on worker only (nil: on any worker, all of them held by the chain).
func (p *Pool) reentrant(b pools.Batch, chain *origin, only *worker) error {
	if only == nil {
		return fmt.Errorf("pools/thread: %s.%s can run on no worker: each is busy with the host call it was submitted from "+
			"(the chain of host calls holds workers %v): %w", b.Module, b.Function, chain.held(p), pools.ErrReentrant)
	}
	return fmt.Errorf("pools/thread: %s.%s of session %s can only run on worker %d, which is busy with the host call it was submitted from "+
		"(the chain of host calls holds workers %v): %w", b.Module, b.Function, b.Session, only.id, chain.held(p), pools.ErrReentrant)
}

// hostCall serves a host call from Python on worker w: during a batch,
// with that batch's context, or from Python code run between batches (a
// finalizer, say) with a background one.
func (p *Pool) hostCall(w *worker, name string, args []any) (any, error) {
	parent, session := context.Background(), ""
	if j := w.job; j != nil {
		parent, session = j.ctx, j.b.Session
	}
	if w.hostCtx == nil { // one per batch: host calls can be many
		w.hostCtx = context.WithValue(parent, originKey{}, &origin{w: w, parent: originFrom(parent)})
	}
	// Call turns a panic into an error: one crossing back into C must never
	// unwind through it.
	return p.host.Call(w.hostCtx, pools.HostCall{Name: name, Args: args, Worker: w.id, Pid: pid, Session: session, Pool: pools.KindThread})
}

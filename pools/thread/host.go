//go:build cgo

package thread

import (
	"context"
	"fmt"
	"slices"

	"github.com/slither-go/slither/pools"
)

// held returns the ids of p's workers in chain, sorted, each once.
func (p *Pool) held(chain pools.HostChain) []int {
	var ids []int
	for x := range chain.Workers() {
		if w, ok := x.(*worker); ok && w.pool == p && !slices.Contains(ids, w.id) {
			ids = append(ids, w.id)
		}
	}
	slices.Sort(ids)
	return ids
}

// allHeld reports whether every worker of p is in the chain, so that no
// batch submitted from it could ever run.
func (p *Pool) allHeld(chain pools.HostChain) bool {
	return !chain.Empty() && len(p.held(chain)) == len(p.workers)
}

// reentrant is the error of b, submitted from chain, when it could only run
// on worker only (nil: on any worker, all of them held by the chain).
func (p *Pool) reentrant(b pools.Batch, chain pools.HostChain, only *worker) error {
	if only == nil {
		return fmt.Errorf("pools/thread: %s.%s can run on no worker: each is busy with the host call it was submitted from "+
			"(the chain of host calls holds workers %v): %w", b.Module, b.Function, p.held(chain), pools.ErrReentrant)
	}
	return fmt.Errorf("pools/thread: %s.%s of session %s can only run on worker %d, which is busy with the host call it was submitted from "+
		"(the chain of host calls holds workers %v): %w", b.Module, b.Function, b.Session, only.id, p.held(chain), pools.ErrReentrant)
}

// hostCall serves a host call from Python on worker w (on the goroutine
// running w's batch): during a batch, with that batch's context, or from
// Python code run between batches (a finalizer, say) with a background one.
func (p *Pool) hostCall(w *worker, name string, args []any) (any, error) {
	parent, session := context.Background(), ""
	if w.ctx != nil {
		parent, session = w.ctx, w.session
	}
	if w.hostCtx == nil { // one per batch: host calls can be many
		w.hostCtx = pools.HostChain{}.With(parent, w)
	}
	// Call turns a panic into an error: one crossing back into C must never
	// unwind through it.
	return p.host.Call(w.hostCtx, pools.HostCall{Name: name, Args: args, Worker: w.id, Pid: pid, Session: session, Pool: pools.KindThread})
}

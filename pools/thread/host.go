//go:build cgo

package thread

import (
	"context"
	"fmt"

	"github.com/slither-go/slither/pools"
)

// callerKey marks the context a host call hands the host function with
// the worker making the call, so that a Submit made with it can tell that
// it would wait for its own caller.
type callerKey struct{}

// callerOf returns the worker of p whose host call ctx comes from, or nil.
func callerOf(ctx context.Context, p *Pool) *worker {
	if w, _ := ctx.Value(callerKey{}).(*worker); w != nil && w.pool == p {
		return w
	}
	return nil
}

func reentrant(b pools.Batch, w *worker) error {
	what := "it"
	if b.Session != "" {
		what = "session " + b.Session
	}
	return fmt.Errorf("pools/thread: %s.%s submitted from a host call of worker %d, the only worker %s can run on, which is busy with that call: %w",
		b.Module, b.Function, w.id, what, pools.ErrReentrant)
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
		w.hostCtx = context.WithValue(parent, callerKey{}, w)
	}
	// Call turns a panic into an error: one crossing back into C must never
	// unwind through it.
	return p.host.Call(w.hostCtx, pools.HostCall{Name: name, Args: args, Worker: w.id, Pid: pid, Session: session, Pool: pools.KindThread})
}

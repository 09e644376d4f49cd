//go:build cgo

package thread

import (
	"context"
	"slices"
	"sync"

	"go.opentelemetry.io/otel/trace"

	"github.com/slither-go/slither/pools"
)

// Direct mode: slots. A batch runs on the goroutine that submits it, with
// the Caller of a slot it holds for the call; the slots bound how many
// batches run at once, and a pinned session's batches wait for its slot,
// so they never run at once and all see one state dict.

// waiter is a batch waiting for a slot: a releasing goroutine hands the
// slot over on ch.
type waiter struct {
	ch     chan *worker // buffered(1)
	ticket uint64       // its place in the order of arrival (Pool.tickets)
}

var waiterPool = sync.Pool{New: func() any { return &waiter{ch: make(chan *worker, 1)} }}

// startSlots makes n slots, each with its Caller.
func (p *Pool) startSlots(n int) error {
	for i := range n {
		w := &worker{pool: p, id: i}
		cl := p.rt.NewCaller()
		if p.alloc != nil {
			cl.SetAlloc(p.alloc)
		}
		cl.SetHost(func(name string, args []any) (any, error) { return p.hostCall(w, name, args) })
		w.cl, w.py = cl, cl
		w.exit = p.events(w, 0)
		p.workers = append(p.workers, w)
		p.free = append(p.free, w)
	}
	// The slot most recently released is taken first: reverse so that an
	// idle pool hands out slot 0 first.
	slices.Reverse(p.free)
	return nil
}

// submitDirect runs b (admitted: s is its session, pin the slot it is
// pinned to) on the calling goroutine, holding a free slot (pin, if set).
func (p *Pool) submitDirect(ctx context.Context, b pools.Batch, s *session, pin *worker) ([]any, error) {
	w, err := p.acquireSlot(ctx, b, pin)
	if err != nil {
		p.finish(s, nil)
		return nil, err
	}
	// Deferred, so that a panic on this goroutine (from a method of the
	// caller's ctx, say) unwinding to a caller that recovers leaves neither
	// the slot held nor the session's batch counted in flight.
	var ran *worker
	defer func() {
		p.finish(s, ran)
		p.releaseSlot(w)
	}()
	// Released session states go before the batch: a session closed and
	// then opened again under its id must not lose the new state.
	w.dropReleased()
	if err := ctx.Err(); err != nil { // cancelled while it waited for the slot
		return nil, cancelled(b, ctx)
	}
	select {
	case <-p.abort: // Close gave up: a batch not yet running is withdrawn, not run
		return nil, withdrawn(b)
	default:
	}
	w.cl.SetContext(w.id, b.Session)
	// Without tracing this costs a context lookup and nothing else.
	sc := trace.SpanContextFromContext(ctx)
	if sc.IsValid() {
		w.cl.SetTrace(sc.TraceID(), sc.SpanID())
	}
	p.active.Add(1)
	w.ctx, w.session, w.hostCtx = ctx, b.Session, nil
	ran = w
	defer func() {
		w.ctx, w.hostCtx = nil, nil
		if sc.IsValid() {
			w.cl.ClearTrace()
		}
		p.active.Add(-1)
	}()
	r, service := w.run(ctx, b)
	if ci := pools.CallInfoFrom(ctx); ci != nil {
		ci.Worker, ci.Pid, ci.Service, ci.Pool = w.id, pid, service, poolName
	}
	// An import can turn the GIL back on: check after any batch that ended
	// with the interpreter's import count past this slot's last check, on
	// this thread, so that the caller sees the change when Submit returns.
	// The count is the slot's own, as a Dedicated worker's: one shared by
	// all would let another batch's check, made while this batch's import
	// had begun but not yet turned the GIL on, stand in for this batch's.
	if n := p.rt.Imports(); n != w.imports {
		w.imports = n
		p.checkGIL(w.cl, b.Module)
	}
	if r.err == nil && ctx.Err() != nil {
		// ctx ended during a call that then ran to its end (blocked in C
		// past the interrupt, say): report the cancellation, as a
		// Dedicated pool would have at once.
		return nil, cancelled(b, ctx)
	}
	return r.out, r.err
}

// acquireSlot returns a slot for b, pin if set, waiting for one to be
// released. It fails when ctx ends or Close gives up first.
func (p *Pool) acquireSlot(ctx context.Context, b pools.Batch, pin *worker) (*worker, error) {
	p.slotMu.Lock()
	if pin == nil {
		if n := len(p.free); n > 0 {
			w := p.free[n-1]
			p.free = p.free[:n-1]
			w.held = true
			p.slotMu.Unlock()
			return w, nil
		}
	} else if !pin.held {
		p.take(pin)
		p.slotMu.Unlock()
		return pin, nil
	}
	wt := waiterPool.Get().(*waiter)
	p.tickets++
	wt.ticket = p.tickets
	if pin == nil {
		p.queue = append(p.queue, wt)
	} else {
		pin.waiters = append(pin.waiters, wt)
	}
	p.slotMu.Unlock()

	p.waiting.Add(1)
	var err error
	select {
	case w := <-wt.ch:
		p.waiting.Add(-1)
		waiterPool.Put(wt)
		return w, nil
	case <-ctx.Done():
		err = cancelled(b, ctx)
	case <-p.abort:
		err = withdrawn(b)
	}
	p.waiting.Add(-1)
	p.slotMu.Lock()
	var queued bool
	if pin == nil {
		p.queue, queued = remove(p.queue, wt)
	} else {
		pin.waiters, queued = remove(pin.waiters, wt)
	}
	p.slotMu.Unlock()
	if !queued { // handed a slot meanwhile: pass it on
		p.releaseSlot(<-wt.ch)
	}
	waiterPool.Put(wt)
	return nil, err
}

// remove returns q without wt, and whether wt was in it.
func remove(q []*waiter, wt *waiter) ([]*waiter, bool) {
	i := slices.Index(q, wt)
	if i < 0 {
		return q, false
	}
	return slices.Delete(q, i, i+1), true
}

// take marks the free slot w held. p.slotMu held.
func (p *Pool) take(w *worker) {
	if i := slices.Index(p.free, w); i >= 0 {
		p.free = slices.Delete(p.free, i, i+1)
	}
	w.held = true
}

// tryAcquire takes slot w if it is free, without waiting.
func (p *Pool) tryAcquire(w *worker) bool {
	p.slotMu.Lock()
	defer p.slotMu.Unlock()
	if w.held || p.stopped {
		return false
	}
	p.take(w)
	return true
}

// releaseSlot gives slot w back, held by the calling goroutine, to the
// batch that has waited longest among those that may take it: any batch
// not pinned, and those of sessions pinned to w. (Pinned batches first
// would starve the others while a session keeps its slot busy.) The
// session states queued for w to drop are dropped first, on this thread.
func (p *Pool) releaseSlot(w *worker) {
	for {
		w.dropReleased()
		p.slotMu.Lock()
		var next *waiter
		pinned, queued := len(w.waiters) > 0, len(p.queue) > 0
		switch {
		case pinned && (!queued || w.waiters[0].ticket < p.queue[0].ticket):
			next = w.waiters[0] // apart: slices.Delete shifts the array in place
			w.waiters = slices.Delete(w.waiters, 0, 1)
		case queued:
			next = p.queue[0]
			p.queue = slices.Delete(p.queue, 0, 1)
		default:
			w.held = false
			p.free = append(p.free, w)
		}
		p.slotMu.Unlock()
		if next != nil {
			next.ch <- w
			return
		}
		// A session released since dropReleased above queued its drop
		// here and found w still held (dropFree), so left the drop to
		// this goroutine: take w back for it. pending is set before
		// dropFree's tryAcquire, so either that succeeds or this sees it.
		if !w.pending.Load() || !p.tryAcquire(w) {
			return
		}
	}
}

// dropFree drops, on the calling goroutine's thread, the session states
// queued for the slots among holders that are free now; a held slot drops
// its own when released. Called after a session's release, so its state
// goes at once rather than with the slot's next batch.
func (p *Pool) dropFree(holders []*worker) {
	for _, w := range holders {
		if w.pending.Load() && p.tryAcquire(w) {
			p.releaseSlot(w)
		}
	}
}

// stopSlots waits for the batches submitted before Close, drops the
// session state the slots hold, closes their Callers, and closes p.done.
func (p *Pool) stopSlots() {
	p.submits.Wait()
	p.slotMu.Lock()
	p.stopped = true
	p.slotMu.Unlock()
	for _, w := range p.workers {
		w.releaseAll()
	}
	for _, w := range p.workers {
		if w.cl == nil {
			continue
		}
		// Close fails only on a Caller closed already: nothing to report.
		_ = w.cl.Close()
		w.mu.Lock()
		w.exited = true
		w.mu.Unlock()
		if w.exit != nil {
			w.exit()
		}
	}
	close(p.done)
}

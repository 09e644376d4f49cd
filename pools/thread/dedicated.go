//go:build cgo

package thread

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	"go.opentelemetry.io/otel/trace"

	"github.com/slither-go/slither/pools"
)

// Dedicated mode: worker goroutines locked to their OS threads for the
// pool's life; Submit hands each batch to one (see handoff.go).

// Job states: a queued job is taken by a worker or withdrawn by its
// caller, whichever comes first.
const (
	jobQueued int32 = iota
	jobTaken
	jobWithdrawn
)

type job struct {
	state atomic.Int32
	ctx   context.Context
	b     pools.Batch
	sess  *session    // b's session, nil without one; see Pool.finish
	res   chan result // buffered(1): the worker never blocks on a caller that left
}

var jobPool = sync.Pool{New: func() any { return &job{res: make(chan result, 1)} }}

// startWorkers starts n worker goroutines and waits until each has its
// thread state.
func (p *Pool) startWorkers(n int) error {
	p.jobs = make(chan *job, n)
	ready := make(chan error, n)
	for i := range n {
		w := &worker{pool: p, id: i, pinned: make(chan *job, 1), wake: make(chan struct{}, 1)}
		p.workers = append(p.workers, w)
		p.running.Add(1)
		go p.work(w, ready) // stopWorkers waits for it (p.running.Wait) before it closes p.done
	}
	var startErr error
	for range n {
		if err := <-ready; err != nil && startErr == nil {
			startErr = err
		}
	}
	return startErr
}

// submitDedicated hands b (admitted: s is its session, pin the worker it
// is pinned to) to a worker and waits for its result or ctx.
func (p *Pool) submitDedicated(ctx context.Context, b pools.Batch, s *session, pin *worker) ([]any, error) {
	queue := p.jobs
	if pin != nil {
		queue = pin.pinned
	}
	j := jobPool.Get().(*job)
	j.ctx, j.b, j.sess = ctx, b, s
	p.waiting.Add(1)
	select {
	case queue <- j: // still waiting until a worker takes it
	case <-ctx.Done():
		p.waiting.Add(-1)
		p.recycle(j)
		p.finish(s, nil)
		return nil, cancelled(b, ctx)
	case <-p.abort:
		p.waiting.Add(-1)
		p.recycle(j)
		p.finish(s, nil)
		return nil, withdrawn(b)
	}
	if r, _, got := tryRecv(p, j.res); got {
		p.recycle(j)
		return r.out, r.err
	}
	select {
	case r := <-j.res:
		p.recycle(j)
		return r.out, r.err
	case <-ctx.Done():
		// Still queued: withdraw it, and the worker drops it unrun.
		// Running: the worker interrupts the call. Either way the worker
		// holds j, so it is not recycled here.
		if j.state.CompareAndSwap(jobQueued, jobWithdrawn) {
			p.waiting.Add(-1)
			p.finish(s, nil)
		}
		return nil, cancelled(b, ctx)
	}
}

func (p *Pool) recycle(j *job) {
	j.ctx, j.b, j.sess = nil, pools.Batch{}, nil
	j.state.Store(jobQueued)
	jobPool.Put(j)
}

// stopWorkers ends the workers once no Submit is still handing off, and
// closes p.done when they have all exited.
func (p *Pool) stopWorkers() {
	p.submits.Wait() // no Submit is still handing off: jobs can close
	if p.jobs != nil {
		close(p.jobs)
	}
	for _, w := range p.workers {
		close(w.pinned)
	}
	p.running.Wait()
	close(p.done)
}

// work is a worker's whole life: one locked OS thread, one thread state.
func (p *Pool) work(w *worker, ready chan<- error) {
	defer p.running.Done()
	defer func() {
		w.mu.Lock()
		w.exited = true
		w.mu.Unlock()
	}()
	th, err := p.rt.NewThread()
	if err != nil {
		ready <- fmt.Errorf("pools/thread: worker %d: %w", w.id, err)
		return
	}
	defer th.Close()
	if _, err := th.Call("slither._context", "_bind", w.id, string(pools.KindThread)); err != nil {
		ready <- fmt.Errorf("pools/thread: worker %d: binding slither.context: %w", w.id, err)
		return
	}
	if p.alloc != nil {
		th.SetAlloc(p.alloc)
	}
	w.mu.Lock()
	w.th, w.py = th, th
	w.tid = th.TID()
	w.mu.Unlock()
	w.imports = p.rt.Imports()
	th.SetHost(func(name string, args []any) (any, error) { return p.hostCall(w, name, args) })
	ready <- nil
	defer p.events(w, w.tid)()

	defer w.releaseAll() // last: the session state this worker holds goes with it

	session := ""
	jobs, pinned := p.jobs, w.pinned
	for {
		j, ok := p.next(w, &jobs, &pinned)
		// Released states go before the next batch runs: a session closed
		// and then opened again under its id must not lose the new state.
		w.dropReleased()
		if !ok {
			return
		}
		if j == nil { // woken for releases only
			continue
		}
		if !j.state.CompareAndSwap(jobQueued, jobTaken) {
			p.recycle(j) // withdrawn: its caller has gone and will not touch j
			continue
		}
		p.waiting.Add(-1)
		if err := j.ctx.Err(); err != nil {
			p.finish(j.sess, nil)
			j.res <- result{err: cancelled(j.b, j.ctx)}
			continue
		}
		select {
		case <-p.abort: // Close gave up: queued batches are withdrawn, not run
			p.finish(j.sess, nil)
			j.res <- result{err: withdrawn(j.b)}
			continue
		default:
		}
		if j.b.Session != session {
			if _, err := th.Call("slither._context", "_set_session", j.b.Session); err != nil {
				p.finish(j.sess, nil)
				j.res <- result{err: fmt.Errorf("pools/thread: worker %d: setting session: %w", w.id, err)}
				continue
			}
			session = j.b.Session
		}
		// Without tracing this costs a context lookup and nothing else.
		sc := trace.SpanContextFromContext(j.ctx)
		if sc.IsValid() {
			th.SetTrace(sc.TraceID(), sc.SpanID())
		}
		p.active.Add(1)
		w.ctx, w.session, w.hostCtx = j.ctx, j.b.Session, nil
		r, service := w.run(j.ctx, j.b)
		if sc.IsValid() {
			// Cleared at once: a finalizer run between batches must not
			// see this batch's ids (a write to the slot, no call).
			th.ClearTrace()
		}
		w.ctx, w.hostCtx = nil, nil
		if ci := pools.CallInfoFrom(j.ctx); ci != nil {
			ci.Worker, ci.Pid, ci.Service, ci.Pool = w.id, pid, service, poolName
		}
		p.active.Add(-1) // before the reply, so this worker may spin for the next batch
		// An import can turn the GIL back on: check after any batch during
		// which (or since this worker's last check) the interpreter imported
		// something, so that the caller sees the change when Submit returns.
		if n := p.rt.Imports(); n != w.imports {
			w.imports = n
			p.checkGIL(th, j.b.Module)
		}
		p.finish(j.sess, w)
		j.res <- r
	}
}

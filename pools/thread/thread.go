//go:build cgo

package thread

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/slither-go/slither/cpython"
	"github.com/slither-go/slither/pools"
	"github.com/slither-go/slither/python"
	"github.com/slither-go/slither/telemetry"
)

// LowLatencySpin is a good [Options.Spin] for a pool whose callers wait on
// small, unbatched calls while cores are spare: measured here, it cuts a
// one-item round trip from tens of microseconds to one or two.
const LowLatencySpin = 20 * time.Microsecond

// Options configure a [Pool]. The zero value is valid.
type Options struct {
	// Workers is the number of Python threads. Zero means
	// runtime.GOMAXPROCS(0); negative is an error.
	Workers int
	// Paths are directories to add to sys.path (process-wide), e.g. where
	// the modules named in batches live.
	Paths []string
	// Python configures the interpreter when this pool is the first user of
	// it in the process; later pools share the one interpreter (see
	// [cpython.Init]).
	Python cpython.Config
	// Host serves slither.host_call (and so slither.view) from Python:
	// a direct call back into Go on the worker's own goroutine, no
	// serialization through a pipe. Nil makes host calls fail clearly.
	Host pools.HostFunc
	// Telemetry receives pool.worker.start and pool.worker.exit events;
	// nil sends none.
	Telemetry *telemetry.Bus
	// MaxSessions bounds the sessions the pool keeps track of at once: those
	// with batches in flight or state on a worker, until CloseSession (or
	// the end of a [pools.NewSession] context). A batch that would open one
	// more fails with [ErrTooManySessions]. Zero means 65,536; negative is
	// an error.
	MaxSessions int
	// Spin is how long an idle worker polls for its next batch, and a
	// caller for its result, before parking. Parking and waking a locked OS
	// thread costs microseconds each way (golang/go#18023), more than a
	// small Python call; spinning avoids it but burns a core, so it happens
	// only while cores are spare (spinners plus running workers at most
	// GOMAXPROCS). Zero or negative: never spin, best for throughput when
	// the pool has as many workers as cores (see the package benchmarks).
	Spin time.Duration
}

// Pool is a [pools.Pool] of embedded Python threads. Its methods are safe
// for concurrent use.
type Pool struct {
	rt   *cpython.Runtime
	tel  *telemetry.Bus
	host pools.HostFunc
	spin time.Duration

	sessMu      sync.Mutex
	sessions    map[string]*session // open sessions (see session.go)
	maxSessions int

	// GIL watch: the state after the last check and the changes seen.
	gil        atomic.Bool
	gilMu      sync.Mutex
	gilChanges []GILChange

	// Spinning pays only on a spare core: a goroutine polling on the last
	// free P starves the very goroutine that would hand it work. So
	// spinners + workers running Python stay within procs (GOMAXPROCS).
	spinners atomic.Int32
	active   atomic.Int32 // workers running a batch
	procs    int32
	jobs     chan *job // buffered (one per worker): a send need not wake a spinning worker
	workers  []*worker

	mu      sync.RWMutex // guards closed against new submits
	closed  bool
	submits sync.WaitGroup // admitted Submit calls still handing off
	waiting atomic.Int64

	running   sync.WaitGroup // worker goroutines
	done      chan struct{}  // closed when every worker has exited
	abort     chan struct{}  // closed when Close gives up waiting
	abortOnce sync.Once
}

var (
	_ pools.Pool    = (*Pool)(nil)
	_ pools.Runtime = (*Pool)(nil)
)

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

type result struct {
	out []any
	err error
}

var jobPool = sync.Pool{New: func() any { return &job{res: make(chan result, 1)} }}

type worker struct {
	pool   *Pool
	id     int
	th     *cpython.Thread
	pinned chan *job // batches of the sessions pinned to this worker
	pins   int       // sessions pinned here; guarded by Pool.sessMu

	// mu guards cur against interrupts from other goroutines, and what
	// Stats reads of the running call; the worker takes it twice per batch
	// anyway (for cur), so Stats costs the hot path nothing more.
	mu            sync.Mutex
	cur           uint64    // sequence number of the running call; 0 when idle
	curMod, curFn string    // the running call's batch, while cur != 0
	since         time.Time // when the running call started, while cur != 0
	tid           int       // the locked OS thread's id; 0 until started
	exited        bool      // the worker goroutine has ended
	seq           uint64    // last sequence number used (worker goroutine only)

	// Session states this worker must drop, on its own thread (session.go).
	relMu    sync.Mutex
	releases []string
	pending  atomic.Bool   // releases is not empty
	wake     chan struct{} // buffered(1): wakes an idle worker for releases

	imports            uint64          // the interpreter's import count at this worker's last GIL check (worker goroutine only)
	job                *job            // the running batch, for host calls (worker goroutine only)
	hostCtx            context.Context // job's context marked as this worker's, made on its first host call (worker goroutine only)
	calls, items, errs atomic.Uint64
	busy               atomic.Int64
	active             atomic.Bool
}

// New starts a pool; it returns once every worker has its thread state and
// the slither Python package is importable.
func New(opts Options) (*Pool, error) {
	n := opts.Workers
	if n < 0 {
		return nil, fmt.Errorf("pools/thread: Options.Workers is %d; it must be >= 0 (0 means GOMAXPROCS)", n)
	}
	if n == 0 {
		n = runtime.GOMAXPROCS(0)
	}
	maxSessions := opts.MaxSessions
	if maxSessions < 0 {
		return nil, fmt.Errorf("pools/thread: Options.MaxSessions is %d; it must be >= 0 (0 means %d)", maxSessions, defaultMaxSessions)
	}
	if maxSessions == 0 {
		maxSessions = defaultMaxSessions
	}
	pkg, err := python.Dir()
	if err != nil {
		return nil, fmt.Errorf("pools/thread: %w", err)
	}
	cfg := opts.Python
	cfg.Paths = append(append([]string{pkg}, cfg.Paths...), opts.Paths...)
	rt, err := cpython.Init(cfg)
	if err != nil {
		return nil, fmt.Errorf("pools/thread: %w", err)
	}
	spin := max(opts.Spin, 0)
	p := &Pool{
		rt:          rt,
		tel:         opts.Telemetry,
		host:        opts.Host,
		spin:        spin,
		procs:       int32(runtime.GOMAXPROCS(0)),
		jobs:        make(chan *job, n),
		sessions:    map[string]*session{},
		maxSessions: maxSessions,
		done:        make(chan struct{}),
		abort:       make(chan struct{}),
	}
	ready := make(chan error, n)
	for i := range n {
		w := &worker{pool: p, id: i, pinned: make(chan *job, 1), wake: make(chan struct{}, 1)}
		p.workers = append(p.workers, w)
		p.running.Add(1)
		go p.work(w, ready)
	}
	var startErr error
	for range n {
		if err := <-ready; err != nil && startErr == nil {
			startErr = err
		}
	}
	if startErr != nil {
		_ = p.Close(context.Background())
		return nil, startErr
	}
	if err := rt.Exec("import slither._gil\nslither._gil.install()\n"); err != nil {
		_ = p.Close(context.Background())
		return nil, fmt.Errorf("pools/thread: installing the GIL watch: %w", err)
	}
	p.gil.Store(rt.GILEnabled())
	return p, nil
}

// Runtime is the interpreter the pool's threads run on.
func (p *Pool) Runtime() *cpython.Runtime { return p.rt }

// Kind returns [pools.KindThread].
func (p *Pool) Kind() pools.Kind { return pools.KindThread }

// Capacity is the number of workers.
func (p *Pool) Capacity() int { return len(p.workers) }

// Submit runs b on the next free worker; see [pools.Pool.Submit]. The
// Python function sees slither.context() with this worker's id, pool
// "thread" and b.Session. Cancelling ctx while the batch runs raises
// slither.Cancelled inside it at its next bytecode boundary (code blocked in
// C notices when it returns); Submit returns at once either way, so the
// batch may still be running — and its effects may still happen — after
// Submit returned (a retry can then run it twice: at-least-once).
//
// Submitted from a host call (or view) of this pool's batch, with the host
// call's context, a batch that could only run on workers busy with that
// call — the calling worker, and every worker whose batch made the host
// call that submitted the calling batch, and so on up the chain — fails
// with an error wrapping [pools.ErrReentrant]: a batch of a session pinned
// to one of them, or any batch when they are all the pool's workers.
// Waiting for them would deadlock. A new session submitted so is pinned to
// a worker outside the chain.
func (p *Pool) Submit(ctx context.Context, b pools.Batch) ([]any, error) {
	if err := b.Validate(); err != nil {
		return nil, err
	}
	p.mu.RLock()
	if p.closed {
		p.mu.RUnlock()
		return nil, fmt.Errorf("pools/thread: %s.%s: %w", b.Module, b.Function, pools.ErrClosed)
	}
	p.submits.Add(1)
	p.mu.RUnlock()
	defer p.submits.Done()
	if err := ctx.Err(); err != nil {
		return nil, cancelled(b, ctx)
	}
	chain := pools.HostChainFrom(ctx)
	if p.allHeld(chain) {
		return nil, p.reentrant(b, chain, nil)
	}
	queue := p.jobs
	var s *session
	if b.Session != "" {
		var pin *worker
		var err error
		if s, pin, err = p.admit(b, chain); err != nil {
			return nil, err
		}
		if pin != nil {
			queue = pin.pinned
		}
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

func withdrawn(b pools.Batch) error {
	return fmt.Errorf("pools/thread: %s.%s withdrawn: %w", b.Module, b.Function, pools.ErrClosed)
}

func cancelled(b pools.Batch, ctx context.Context) error {
	return fmt.Errorf("pools/thread: %s.%s: %w", b.Module, b.Function, context.Cause(ctx))
}

// Close stops the pool; see [pools.Pool.Close]. Workers finish what was
// submitted before Close, drop the session state they hold, then release
// their thread states.
func (p *Pool) Close(ctx context.Context) error {
	p.mu.Lock()
	if !p.closed {
		p.closed = true
		go func() {
			p.submits.Wait() // no Submit is still handing off: jobs can close
			close(p.jobs)
			for _, w := range p.workers {
				close(w.pinned)
			}
			p.running.Wait()
			close(p.done)
		}()
	}
	p.mu.Unlock()
	select {
	case <-p.done:
		return nil
	case <-ctx.Done():
		p.abortOnce.Do(func() {
			close(p.abort)
			for _, w := range p.workers {
				w.interrupt(0)
			}
		})
		return fmt.Errorf("pools/thread: close gave up waiting for running batches: %w", context.Cause(ctx))
	}
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
	w.mu.Lock()
	w.th = th
	w.tid = th.TID()
	w.mu.Unlock()
	w.imports = p.rt.Imports()
	th.SetHost(func(name string, args []any) (any, error) { return p.hostCall(w, name, args) })
	ready <- nil
	md := telemetry.Metadata{"pool": poolName, "kind": string(pools.KindThread), "worker": w.id, "pid": pid,
		"thread": w.tid}
	p.tel.Emit(telemetry.PoolWorkerStart, telemetry.Measurements{}, md)
	defer p.tel.Emit(telemetry.PoolWorkerExit, telemetry.Measurements{}, telemetry.Metadata{
		"pool": poolName, "kind": string(pools.KindThread), "worker": w.id, "pid": pid, "thread": w.tid,
		"reason": "pool closed", "class": pools.ExitClosed})

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
			w.th.SetTrace(sc.TraceID(), sc.SpanID())
		}
		p.active.Add(1)
		w.job, w.hostCtx = j, nil
		r, service := w.run(j)
		if sc.IsValid() {
			// Cleared at once: a finalizer run between batches must not
			// see this batch's ids (a write to the slot, no call).
			w.th.ClearTrace()
		}
		w.job, w.hostCtx = nil, nil
		if ci := pools.CallInfoFrom(j.ctx); ci != nil {
			ci.Worker, ci.Pid, ci.Service, ci.Pool = w.id, pid, service, poolName
		}
		p.active.Add(-1) // before the reply, so this worker may spin for the next batch
		// An import can turn the GIL back on: check after any batch during
		// which (or since this worker's last check) the interpreter imported
		// something, so that the caller sees the change when Submit returns.
		if n := p.rt.Imports(); n != w.imports {
			w.imports = n
			p.checkGIL(w.th, j.b.Module)
		}
		p.finish(j.sess, w)
		j.res <- r
	}
}

// run runs j's batch and returns its result and how long it took.
func (w *worker) run(j *job) (result, time.Duration) {
	// Calls are told apart by sequence number, not by *job: job structs are
	// reused, and a late interrupt must never hit a later call.
	w.seq++
	seq := w.seq
	start := time.Now()
	w.mu.Lock()
	w.cur, w.since, w.curMod, w.curFn = seq, start, j.b.Module, j.b.Function
	w.mu.Unlock()
	var stop func() bool
	if j.ctx.Done() != nil {
		stop = context.AfterFunc(j.ctx, func() { w.interrupt(seq) })
	}

	w.active.Store(true)
	out, err := w.th.CallBatch(j.b.Module, j.b.Function, j.b.Items)
	elapsed := time.Since(start)
	w.active.Store(false)

	if stop != nil {
		stop()
	}
	w.mu.Lock()
	w.cur = 0
	w.mu.Unlock()
	// An interrupt that raced with the end of the call must not hit the next one.
	w.th.ClearInterrupt()

	if err == nil {
		out, err = pools.CheckResults(j.b, out)
	} else {
		var exc *cpython.Exception
		if errors.As(err, &exc) {
			err = &pools.PythonError{Type: exc.Type, Message: exc.Message, Traceback: exc.Traceback, Err: err}
		}
		if errors.Is(err, cpython.ErrCancelled) && j.ctx.Err() != nil {
			err = fmt.Errorf("%w (%w)", context.Cause(j.ctx), err)
		}
		err = fmt.Errorf("pools/thread: %s.%s: %w", j.b.Module, j.b.Function, err)
	}
	w.calls.Add(1)
	w.items.Add(uint64(len(j.b.Items)))
	w.busy.Add(int64(elapsed))
	if err != nil {
		w.errs.Add(1)
		out = nil
	}
	return result{out: out, err: err}, elapsed
}

// pid is this process's id (a syscall each time os.Getpid is asked).
var pid = os.Getpid()

// interrupt raises slither.Cancelled in the worker's running call if it is
// call seq (any running call, for seq == 0).
func (w *worker) interrupt(seq uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.cur != 0 && (seq == 0 || w.cur == seq) {
		w.th.Interrupt()
	}
}

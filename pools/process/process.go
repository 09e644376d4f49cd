// Package process is Slither's pool of isolated Python subprocess workers.
//
// Each worker is `python -m slither.worker` (python/slither/worker.py,
// stdlib only, any CPython >= 3.10) talking to the pool over pipes in the
// framed protocol of package wire. A worker whose interpreter is
// free-threaded can run ThreadsPerWorker batches at once on its own threads.
//
// The pool supervises its workers: a crash (a signal, an exit, a broken
// pipe) fails only the calls running on that worker, with a [*CrashError]
// matching [pools.ErrWorkerCrashed], and the worker is restarted. A worker's
// exit is watched on its own, not through its pipes, so a process the worker
// started (which may hold them) cannot delay it. When crashes come faster
// than the pool's restart intensity allows, the pool fails fast
// ([pools.ErrPoolFailed]) for a back-off and then tries one start: success
// resumes service, failure backs off longer (a circuit breaker). A call that
// runs past CallTimeout gets [pools.ErrTimeout] and its worker is killed and
// replaced; timeouts and recycling do not count as crashes. Workers are
// recycled after MaxCalls calls, above MaxRSSMB or after MaxAge, once their
// running calls finish.
//
// Each worker runs in its own process group, which the pool kills whenever
// the worker ends, so that processes user code started in it end too.
// Workers get a parent-death signal and exit by themselves when their input
// pipe closes; a small guardian process per pool (the pool's Python running
// a few lines, in a process group of its own) kills the workers' groups when
// the Go process ends, even by SIGKILL. A process that leaves its worker's
// group (setsid, start_new_session) escapes both.
//
// Batches of one session run on one worker (strict affinity); if that
// worker dies, every call of the session fails with [pools.ErrSessionLost]
// (and [pools.ErrWorkerCrashed] for those it crashed under).
//
// Delivery is at least once, not exactly once, around cancellation and
// timeouts: a Submit that returns because its context ended (or, with
// CallTimeout, because its worker was killed) may leave the batch's side
// effects done in whole or in part, so a caller that retries it may run it
// twice.
package process

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/slither-go/slither/pools"
	"github.com/slither-go/slither/pools/process/wire"
	"github.com/slither-go/slither/python"
)

// workerModule is the module workers run; tests point it elsewhere.
var workerModule = "slither.worker"

// Pool is a [pools.Pool] of Python subprocesses. Its methods are safe for
// concurrent use.
type Pool struct {
	name     string // Options.Name, or "process"
	opts     Options
	log      *slog.Logger
	threads  int
	python   string
	env      []string
	maxFrame int
	guard    *guardian

	mu       sync.Mutex
	slots    []*slot
	waiters  []*waiter
	sessions map[string]*session // sessions with batches in flight or a live pin
	ended    pools.EndedSessions // recently closed or lost sessions
	closed   bool                // no new Submits
	stopping bool                // workers are being stopped: no restarts
	failed   error               // set while the restart breaker is open
	brk      breaker
	info     Interpreter

	life     context.Context // ends when stopping is set
	stopLife context.CancelFunc
	nextID   atomic.Uint64
	bg       sync.WaitGroup // goroutines: per-process readers and watchers, starters, host calls
	drained  chan struct{}  // closed once closed with nothing queued or running
	done     chan struct{}  // closed when Close has stopped everything
	abort    sync.Once
}

var _ pools.Pool = (*Pool)(nil)

type slot struct {
	id       int
	proc     *proc // nil while starting
	inflight int
	retiring bool
	starting bool // a goroutine is starting a process for it
	// recycling: its process is being stopped to be replaced (MaxCalls,
	// MaxRSSMB, MaxAge); a start follows.
	recycling bool
	pins      int  // live sessions pinned to its process
	started   bool // a first process ran: later ones count as restarts

	calls, items, errs, restarts, rss atomic.Uint64
	busy                              atomic.Int64
}

type waiter struct {
	sess   *session // the batch's session, or nil
	pinned bool
	ready  chan grant // buffered(1)
}

type grant struct {
	s   *slot
	pr  *proc
	err error
}

// New starts the workers and returns once every one has answered its
// handshake, or fails with an error wrapping [ErrStart] that says which
// worker failed and why (its stderr tail included).
func New(ctx context.Context, opts Options) (*Pool, error) {
	n := opts.Workers
	if n < 0 {
		return nil, fmt.Errorf("pools/process: Options.Workers is %d; it must be >= 0 (0 means GOMAXPROCS)", n)
	}
	if n == 0 {
		n = runtime.GOMAXPROCS(0)
	}
	if opts.ThreadsPerWorker < 0 {
		return nil, fmt.Errorf("pools/process: Options.ThreadsPerWorker is %d; it must be >= 0", opts.ThreadsPerWorker)
	}
	if opts.MaxCalls < 0 || opts.MaxRSSMB < 0 || opts.MaxAge < 0 || opts.CallTimeout < 0 || opts.MaxRestarts < 0 ||
		opts.RestartWindow < 0 || opts.RestartBackoff < 0 || opts.StartTimeout < 0 || opts.StopGrace < 0 || opts.MaxFrame < 0 {
		return nil, fmt.Errorf("pools/process: negative limit in Options (MaxCalls %d, MaxRSSMB %d, MaxAge %v, CallTimeout %v, MaxRestarts %d, RestartWindow %v, RestartBackoff %v, StartTimeout %v, StopGrace %v, MaxFrame %d)",
			opts.MaxCalls, opts.MaxRSSMB, opts.MaxAge, opts.CallTimeout, opts.MaxRestarts, opts.RestartWindow,
			opts.RestartBackoff, opts.StartTimeout, opts.StopGrace, opts.MaxFrame)
	}
	if opts.MaxFrame > wire.MaxFrameLimit {
		return nil, fmt.Errorf("pools/process: Options.MaxFrame is %d; a frame's length cannot exceed %d", opts.MaxFrame, uint64(wire.MaxFrameLimit))
	}
	p := &Pool{
		name:     opts.Name,
		opts:     opts,
		log:      opts.Logger,
		threads:  max(opts.ThreadsPerWorker, 1),
		python:   opts.Python,
		maxFrame: opts.MaxFrame,
		sessions: map[string]*session{},
		drained:  make(chan struct{}),
		done:     make(chan struct{}),
	}
	p.life, p.stopLife = context.WithCancel(context.Background())
	if p.log == nil {
		p.log = slog.Default()
	}
	if p.python == "" {
		p.python = "python3"
	}
	if p.name == "" {
		p.name = string(pools.KindProcess)
	}
	if p.maxFrame == 0 {
		p.maxFrame = wire.DefaultMaxFrame
	}
	if p.opts.StartTimeout == 0 {
		p.opts.StartTimeout = 30 * time.Second
	}
	if p.opts.MaxRestarts == 0 {
		p.opts.MaxRestarts = 5
	}
	if p.opts.RestartWindow == 0 {
		p.opts.RestartWindow = 10 * time.Second
	}
	if p.opts.RestartBackoff == 0 {
		p.opts.RestartBackoff = time.Second
	}
	if p.opts.StopGrace == 0 {
		p.opts.StopGrace = 5 * time.Second
	}
	pkg, err := python.Dir()
	if err != nil {
		return nil, fmt.Errorf("pools/process: %w", err)
	}
	p.env = workerEnv(opts.InheritEnv, opts.Env, append([]string{pkg}, opts.Paths...), p.threads, opts.Preload, p.maxFrame)
	p.guard, err = startGuardian(p.python, p.env)
	if err != nil { // the workers' own start says what is wrong, if anything
		p.log.Warn("slither process pool: no guardian; processes started by workers may outlive a killed Go process", "error", err)
	}

	for i := range n {
		p.slots = append(p.slots, &slot{id: i})
	}
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i, s := range p.slots {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pr, err := p.spawn(ctx, s)
			errs[i] = err
			if err == nil {
				p.mu.Lock()
				s.proc, s.started = pr, true
				p.info = pr.info
				p.mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		p.mu.Lock()
		p.closed = true
		p.stopLocked()
		live := p.liveLocked()
		p.mu.Unlock()
		for _, pr := range live {
			pr.kill("pool start failed", endStopped)
		}
		p.bg.Wait()
		p.guard.stop()
		return nil, err
	}
	return p, nil
}

// Interpreter describes the workers' Python, from the first handshake.
func (p *Pool) Interpreter() Interpreter {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.info
}

// FreeThreaded reports whether the workers' Python is a free-threaded
// build with the GIL off at start (see pools.FreeThreadedPool).
func (p *Pool) FreeThreaded() bool {
	in := p.Interpreter()
	return in.FreeThreaded && !in.GILEnabled
}

// Kind returns [pools.KindProcess].
func (p *Pool) Kind() pools.Kind { return pools.KindProcess }

// Capacity is Workers x ThreadsPerWorker.
func (p *Pool) Capacity() int { return len(p.slots) * p.threads }

// Submit runs b on a worker; see [pools.Pool.Submit]. Cancelling ctx while
// the batch runs raises slither.Cancelled inside it (at its next bytecode
// boundary) and returns at once; the worker stays busy until the function
// actually returns. The batch may have done some or all of its work by
// then: a caller that submits it again may run it twice (at-least-once
// delivery). A batch of a session closed by CloseSession fails with
// [pools.ErrSessionLost]; one that only the worker running its caller's
// batch could run fails with [pools.ErrReentrant].
func (p *Pool) Submit(ctx context.Context, b pools.Batch) ([]any, error) {
	if err := b.Validate(); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, p.wrap(b, context.Cause(ctx))
	}
	sess, err := p.enter(b)
	if err != nil {
		return nil, p.wrap(b, err)
	}
	var c *call
	var g grant
	for {
		g, err = p.acquire(ctx, sess, b.Pinned())
		if err != nil {
			p.mu.Lock()
			closes := p.leaveLocked(sess)
			p.mu.Unlock()
			closes.send()
			return nil, p.wrap(b, err)
		}
		c = &call{id: p.nextID.Add(1), b: b, ctx: ctx, sess: sess, done: make(chan result, 1), start: time.Now()}
		if g.pr.start(c) {
			break
		}
		// The worker died between the grant and the send: the call never
		// reached it, so it goes to another (a session's fails as lost).
		p.mu.Lock()
		p.releaseLocked(g.s, g.pr)
		p.mu.Unlock()
	}
	select {
	case r := <-c.done:
		if r.err != nil {
			return nil, p.wrap(b, r.err)
		}
		return r.out, nil
	case <-ctx.Done():
		g.pr.cancel(c)
		return nil, p.wrap(b, context.Cause(ctx))
	}
}

func (p *Pool) wrap(b pools.Batch, err error) error {
	return fmt.Errorf("pools/process: %s.%s: %w", b.Module, b.Function, err)
}

// acquire waits for a worker with a free thread: the session's own worker
// for a pinned session.
func (p *Pool) acquire(ctx context.Context, sess *session, pinned bool) (grant, error) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return grant{}, pools.ErrClosed
	}
	if p.failed != nil {
		err := p.failed
		p.mu.Unlock()
		return grant{}, err
	}
	if len(p.waiters) == 0 {
		if g, ok := p.tryGrant(sess, pinned); ok {
			p.mu.Unlock()
			return g, g.err
		}
	}
	if err := p.reentrantLocked(pools.HostChainFrom(ctx), sess, pinned); err != nil {
		p.mu.Unlock()
		return grant{}, err
	}
	w := &waiter{sess: sess, pinned: pinned, ready: make(chan grant, 1)}
	p.waiters = append(p.waiters, w)
	p.mu.Unlock()

	select {
	case g := <-w.ready:
		return g, g.err
	case <-ctx.Done():
		p.mu.Lock()
		if i := slices.Index(p.waiters, w); i >= 0 {
			p.waiters = slices.Delete(p.waiters, i, i+1)
			p.checkDrained()
			p.mu.Unlock()
			return grant{}, context.Cause(ctx)
		}
		p.mu.Unlock()
		if g := <-w.ready; g.err == nil { // granted meanwhile: give it back
			p.mu.Lock()
			p.releaseLocked(g.s, g.pr)
			p.mu.Unlock()
		}
		return grant{}, context.Cause(ctx)
	}
}

// tryGrant takes a free thread for a batch of sess (nil: none); ok is false
// when the caller must wait. A grant with err set ends the wait with that
// error. p.mu held.
func (p *Pool) tryGrant(sess *session, pinned bool) (grant, bool) {
	if pinned {
		if sess.lost != nil {
			return grant{err: sess.lost}, true
		}
		if s := sess.slot; s != nil {
			if s.proc != sess.proc {
				// Its worker has left the slot. detachLocked marks such
				// sessions lost as it does that, so this is a backstop: a
				// session never moves to another process silently.
				return grant{err: fmt.Errorf("%w: session %s was on worker %d (pid %d), which has exited",
					pools.ErrSessionLost, sess.id, s.id, sess.proc.pid)}, true
			}
			if s.inflight < p.threads {
				s.inflight++
				return grant{s: s, pr: s.proc}, true
			}
			return grant{}, false
		}
	}
	var best *slot
	for _, s := range p.slots {
		if s.proc == nil || s.retiring || s.inflight >= p.threads {
			continue
		}
		if best == nil || s.inflight < best.inflight || (pinned && s.inflight == best.inflight && s.pins < best.pins) {
			best = s
		}
	}
	if best == nil {
		return grant{}, false
	}
	best.inflight++
	if pinned {
		sess.slot, sess.proc = best, best.proc
		best.pins++
	}
	return grant{s: best, pr: best.proc}, true
}

// dispatch hands free threads to waiters in arrival order. p.mu held.
func (p *Pool) dispatch() {
	for i := 0; i < len(p.waiters); {
		w := p.waiters[i]
		var g grant
		var ok bool
		if p.failed != nil {
			g, ok = grant{err: p.failed}, true
		} else {
			g, ok = p.tryGrant(w.sess, w.pinned)
		}
		if !ok {
			i++
			continue
		}
		p.waiters = slices.Delete(p.waiters, i, i+1)
		w.ready <- g
	}
	p.checkDrained()
}

// checkDrained closes p.drained once the pool is closed and idle. p.mu held.
func (p *Pool) checkDrained() {
	if !p.closed || len(p.waiters) > 0 {
		return
	}
	for _, s := range p.slots {
		if s.inflight > 0 {
			return
		}
	}
	select {
	case <-p.drained:
	default:
		close(p.drained)
	}
}

// Close stops the pool; see [pools.Pool.Close]. After the drain, each worker
// is asked to exit, then sent SIGTERM, then SIGKILL, StopGrace apart.
func (p *Pool) Close(ctx context.Context) error {
	p.mu.Lock()
	if !p.closed {
		p.closed = true
		p.checkDrained()
		p.bg.Add(1)
		go p.shutdown()
	}
	p.mu.Unlock()
	select {
	case <-p.done:
		return nil
	case <-ctx.Done():
		p.abort.Do(func() {
			p.mu.Lock()
			p.stopLocked()
			for _, w := range p.waiters {
				w.ready <- grant{err: fmt.Errorf("withdrawn: %w", pools.ErrClosed)}
			}
			p.waiters = nil
			live := p.liveLocked()
			p.mu.Unlock()
			for _, pr := range live {
				pr.kill("pool closed before its calls finished", endStopped)
			}
		})
		return fmt.Errorf("pools/process: close gave up waiting for running batches: %w", context.Cause(ctx))
	}
}

// shutdown waits for the drain, then stops every worker.
func (p *Pool) shutdown() {
	defer p.bg.Done()
	<-p.drained
	p.mu.Lock()
	p.stopLocked()
	live := p.liveLocked()
	p.mu.Unlock()
	var wg sync.WaitGroup
	for _, pr := range live {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pr.stop(p.opts.StopGrace)
		}()
	}
	wg.Wait()
	go func() {
		p.bg.Wait()
		p.guard.stop() // every group is gone: it has nothing left to kill
		close(p.done)
	}()
}

// liveLocked lists the worker processes running now. p.mu held.
func (p *Pool) liveLocked() []*proc {
	var live []*proc
	for _, s := range p.slots {
		if s.proc != nil {
			live = append(live, s.proc)
		}
	}
	return live
}

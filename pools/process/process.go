// Package process is Slither's pool of isolated Python subprocess workers.
//
// Each worker is `python -m slither.worker` (python/slither/worker.py,
// stdlib only, any CPython >= 3.10) talking to the pool over two pipes in
// the framed protocol of package wire. A worker whose interpreter is
// free-threaded can run ThreadsPerWorker batches at once on its own threads.
//
// The pool supervises its workers: a crash (a signal, an exit, a broken
// pipe) fails only the calls running on that worker, with a [*CrashError]
// matching [pools.ErrWorkerCrashed], and the worker is restarted — unless
// restarts come faster than the pool's intensity limit, which marks the pool
// failed ([pools.ErrPoolFailed]) instead of looping. A call that runs past
// CallTimeout gets [pools.ErrTimeout] and its worker is killed and replaced.
// Workers are recycled after MaxCalls calls, above MaxRSSMB or after MaxAge,
// once their running calls finish. Workers run in their own process group
// with a parent-death signal, and exit by themselves when their input pipe
// closes, so none outlives the Go process, even one killed with SIGKILL.
//
// Batches of one session run on one worker (strict affinity); if that
// worker dies, the session's calls fail with [pools.ErrSessionLost].
package process

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/slither-go/slither/pools"
	"github.com/slither-go/slither/pools/process/wire"
	"github.com/slither-go/slither/python"
	"github.com/slither-go/slither/telemetry"
)

// Options configure a [Pool]. The zero value runs GOMAXPROCS workers of the
// python3 found in PATH, one thread each.
type Options struct {
	// Workers is the number of worker processes; 0 means GOMAXPROCS.
	Workers int
	// ThreadsPerWorker is how many batches one worker runs at once, on its
	// own threads; 0 means 1. More than 1 runs in parallel only on a
	// free-threaded interpreter (see [Interpreter.FreeThreaded]).
	ThreadsPerWorker int
	// Python is the interpreter to run; default "python3" from PATH.
	Python string
	// Paths are prepended to the workers' PYTHONPATH (after the slither
	// package itself).
	Paths []string
	// Env is the workers' environment; nil means this process's.
	Env []string
	// Dir is the workers' working directory; empty means this process's.
	Dir string
	// Preload lists modules every worker imports before its handshake, so
	// that import errors surface at start and the GIL state the handshake
	// reports includes their effect.
	Preload []string
	// StartTimeout bounds a worker's start up to its handshake; 0 means 30s.
	StartTimeout time.Duration
	// CallTimeout, when positive, bounds every call: past it, the worker is
	// killed and replaced and the call fails with pools.ErrTimeout.
	CallTimeout time.Duration
	// MaxCalls, MaxRSSMB and MaxAge recycle a worker (replace it with a
	// fresh process once its running calls end) after that many calls,
	// above that resident memory, or after that age. Zero disables each. A
	// worker holding open sessions is not recycled until they close.
	MaxCalls int
	MaxRSSMB int
	MaxAge   time.Duration
	// MaxRestarts within RestartWindow (crashes, timeouts and failed
	// starts, not recycling) mark the pool failed. Defaults: 5 in 10s.
	MaxRestarts   int
	RestartWindow time.Duration
	// StopGrace is how long Close waits for a worker to exit after asking
	// it to, then after SIGTERM, before SIGKILL; 0 means 5s.
	StopGrace time.Duration
	// Host serves slither.host_call(name, *args) from Python; nil makes
	// every host call fail with a clear error.
	Host pools.HostFunc
	// Telemetry receives pool.worker.start, pool.worker.exit and
	// pool.worker.restart events; nil sends none.
	Telemetry *telemetry.Bus
	// Logger receives worker output (stdout and stderr lines, with worker
	// id and pid) and supervision events; nil means slog.Default().
	Logger *slog.Logger
}

// Interpreter describes a worker's Python, from its handshake.
type Interpreter struct {
	Executable   string
	Version      string
	FreeThreaded bool // built with --disable-gil
	GILEnabled   bool // sys._is_gil_enabled() after start and preloads
	Protocol     int
}

// workerModule is the module workers run; tests point it elsewhere.
var workerModule = "slither.worker"

// Pool is a [pools.Pool] of Python subprocesses. Its methods are safe for
// concurrent use.
type Pool struct {
	opts    Options
	log     *slog.Logger
	threads int
	python  string
	env     []string

	mu       sync.Mutex
	slots    []*slot
	waiters  []*waiter
	pins     map[string]*pin
	closed   bool  // no new Submits
	stopping bool  // workers are being stopped: no restarts
	failed   error // set once: the pool gave up
	restarts []time.Time
	info     Interpreter

	nextID  atomic.Uint64
	bg      sync.WaitGroup // goroutines: per-process readers, starters, host calls
	drained chan struct{}  // closed once closed with nothing queued or running
	done    chan struct{}  // closed when Close has stopped everything
	abort   sync.Once
}

var _ pools.Pool = (*Pool)(nil)

type slot struct {
	id       int
	proc     *proc // nil while starting
	inflight int
	retiring bool
	pins     int
	started  bool // a first process ran: later ones count as restarts

	calls, items, errs, restarts, rss atomic.Uint64
	busy                              atomic.Int64
}

type pin struct {
	slot *slot
	proc *proc
	lost error
}

type waiter struct {
	session string
	ready   chan grant // buffered(1)
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
	if opts.MaxCalls < 0 || opts.MaxRSSMB < 0 || opts.MaxAge < 0 || opts.CallTimeout < 0 || opts.MaxRestarts < 0 {
		return nil, fmt.Errorf("pools/process: negative limit in Options (MaxCalls %d, MaxRSSMB %d, MaxAge %v, CallTimeout %v, MaxRestarts %d)",
			opts.MaxCalls, opts.MaxRSSMB, opts.MaxAge, opts.CallTimeout, opts.MaxRestarts)
	}
	p := &Pool{
		opts:    opts,
		log:     opts.Logger,
		threads: max(opts.ThreadsPerWorker, 1),
		python:  opts.Python,
		pins:    map[string]*pin{},
		drained: make(chan struct{}),
		done:    make(chan struct{}),
	}
	if p.log == nil {
		p.log = slog.Default()
	}
	if p.python == "" {
		p.python = "python3"
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
	if p.opts.StopGrace == 0 {
		p.opts.StopGrace = 5 * time.Second
	}
	pkg, err := python.Dir()
	if err != nil {
		return nil, fmt.Errorf("pools/process: %w", err)
	}
	p.env = workerEnv(opts.Env, append([]string{pkg}, opts.Paths...), p.threads, opts.Preload)

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
		p.closed, p.stopping = true, true
		live := p.liveLocked()
		p.mu.Unlock()
		for _, pr := range live {
			pr.kill("pool start failed")
		}
		p.bg.Wait()
		return nil, err
	}
	return p, nil
}

// workerEnv builds the workers' environment: base (or this process's),
// with PYTHONPATH led by paths and the worker's settings.
func workerEnv(base []string, paths []string, threads int, preload []string) []string {
	if base == nil {
		base = os.Environ()
	}
	env := make([]string, 0, len(base)+6)
	pythonPath := strings.Join(paths, string(os.PathListSeparator))
	for _, kv := range base {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "PYTHONPATH":
			if v != "" {
				pythonPath += string(os.PathListSeparator) + v
			}
			continue
		case "SLITHER_WORKER_FDS", "SLITHER_WORKER_ID", "SLITHER_WORKER_THREADS", "SLITHER_WORKER_PRELOAD", "PYTHONUNBUFFERED":
			continue
		}
		env = append(env, kv)
	}
	return append(env,
		"PYTHONPATH="+pythonPath,
		"PYTHONUNBUFFERED=1", // worker output reaches the log as it is written
		"SLITHER_WORKER_FDS=3,4,5",
		fmt.Sprintf("SLITHER_WORKER_THREADS=%d", threads),
		"SLITHER_WORKER_PRELOAD="+strings.Join(preload, ","),
	)
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

// Stats returns a snapshot of the workers' counters; RSS is sampled now.
func (p *Pool) Stats() pools.Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := pools.Stats{Kind: pools.KindProcess, Waiting: len(p.waiters)}
	for _, s := range p.slots {
		ws := pools.WorkerStats{
			ID:       s.id,
			Running:  s.inflight > 0,
			Calls:    s.calls.Load(),
			Items:    s.items.Load(),
			Errors:   s.errs.Load(),
			Busy:     time.Duration(s.busy.Load()),
			Restarts: s.restarts.Load(),
		}
		if s.proc != nil {
			ws.Pid = s.proc.pid
			if rss, ok := readRSS(s.proc.pid); ok {
				s.rss.Store(rss)
			}
			ws.RSS = s.rss.Load()
		}
		st.Running += s.inflight
		st.Workers = append(st.Workers, ws)
	}
	return st
}

// Submit runs b on a worker; see [pools.Pool.Submit]. Cancelling ctx while
// the batch runs raises slither.Cancelled inside it (at its next bytecode
// boundary) and returns at once; the worker stays busy until the function
// actually returns.
func (p *Pool) Submit(ctx context.Context, b pools.Batch) ([]any, error) {
	if err := b.Validate(); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, p.wrap(b, context.Cause(ctx))
	}
	var g grant
	var c *call
	for {
		var err error
		pin := ""
		if b.Pinned() {
			pin = b.Session
		}
		g, err = p.acquire(ctx, pin)
		if err != nil {
			return nil, p.wrap(b, err)
		}
		c = &call{id: p.nextID.Add(1), b: b, ctx: ctx, done: make(chan result, 1), start: time.Now()}
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
func (p *Pool) acquire(ctx context.Context, session string) (grant, error) {
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
		if g, ok := p.tryGrant(session); ok {
			p.mu.Unlock()
			return g, g.err
		}
	}
	w := &waiter{session: session, ready: make(chan grant, 1)}
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

// tryGrant takes a free thread for session; ok is false when the caller
// must wait. A grant with err set ends the wait with that error. p.mu held.
func (p *Pool) tryGrant(session string) (grant, bool) {
	if session != "" {
		if pn := p.pins[session]; pn != nil {
			if pn.lost != nil {
				return grant{err: pn.lost}, true
			}
			s := pn.slot
			if s.proc != pn.proc {
				pn.lost = fmt.Errorf("%w: session %s was on worker %d (pid %d), which died", pools.ErrSessionLost, session, s.id, pn.proc.pid)
				return grant{err: pn.lost}, true
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
		if best == nil || s.inflight < best.inflight || (session != "" && s.inflight == best.inflight && s.pins < best.pins) {
			best = s
		}
	}
	if best == nil {
		return grant{}, false
	}
	best.inflight++
	if session != "" {
		p.pins[session] = &pin{slot: best, proc: best.proc}
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
			g, ok = p.tryGrant(w.session)
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

// releaseLocked frees the thread a grant took and recycles the worker if it
// is due. p.mu held.
func (p *Pool) releaseLocked(s *slot, pr *proc) {
	s.inflight--
	if s.proc == pr && !s.retiring && s.pins == 0 && !p.stopping && p.due(s, pr) {
		s.retiring = true
	}
	if s.retiring && s.inflight == 0 && s.proc == pr {
		s.proc = nil
		pr.recycled.Store(true)
		p.bg.Add(1)
		go func() {
			defer p.bg.Done()
			pr.stop(p.opts.StopGrace)
			p.restart(s, nil)
		}()
	}
	p.dispatch()
}

// due reports whether pr has reached a recycling limit. p.mu held.
func (p *Pool) due(s *slot, pr *proc) bool {
	o := p.opts
	if o.MaxCalls > 0 && pr.calls >= o.MaxCalls {
		return true
	}
	if o.MaxAge > 0 && time.Since(pr.started) >= o.MaxAge {
		return true
	}
	if o.MaxRSSMB > 0 {
		if rss, ok := readRSS(pr.pid); ok {
			s.rss.Store(rss)
			return rss >= uint64(o.MaxRSSMB)<<20
		}
	}
	return false
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

// onExit runs when a worker process has died and its calls have been
// failed: it unpins its sessions and starts a replacement. p.mu held.
func (p *Pool) onExit(s *slot, pr *proc, crash *CrashError) {
	p.unpin(s, pr, crash)
	if pr.recycled.Load() || p.stopping || p.failed != nil {
		p.dispatch()
		return
	}
	p.log.Warn("slither worker crashed; restarting", "worker", s.id, "pid", pr.pid, "reason", crash.Reason)
	if p.countRestart(crash) {
		p.bg.Add(1)
		go func() {
			defer p.bg.Done()
			p.restart(s, nil)
		}()
	}
	p.dispatch()
}

// unpin takes a dead process off its slot and marks its sessions lost.
// p.mu held.
func (p *Pool) unpin(s *slot, pr *proc, crash *CrashError) {
	if s.proc == pr {
		s.proc = nil
	}
	for id, pn := range p.pins {
		if pn.proc == pr && pn.lost == nil {
			pn.lost = fmt.Errorf("%w: session %s was on worker %d (pid %d): %w", pools.ErrSessionLost, id, s.id, pr.pid, crash)
		}
	}
}

// countRestart records a restart; past the intensity limit it marks the
// pool failed and returns false. p.mu held.
func (p *Pool) countRestart(cause error) bool {
	now := time.Now()
	p.restarts = append(p.restarts, now)
	cut := 0
	for cut < len(p.restarts) && now.Sub(p.restarts[cut]) > p.opts.RestartWindow {
		cut++
	}
	p.restarts = p.restarts[cut:]
	if len(p.restarts) <= p.opts.MaxRestarts {
		return true
	}
	p.failed = fmt.Errorf("%w: %d worker restarts within %v (limit %d); last cause: %w",
		pools.ErrPoolFailed, len(p.restarts), p.opts.RestartWindow, p.opts.MaxRestarts, cause)
	p.log.Error("slither process pool failed", "error", p.failed)
	return false
}

// restart starts a new process for s, retrying failed starts with backoff
// while the restart intensity allows.
func (p *Pool) restart(s *slot, _ error) {
	backoff := 50 * time.Millisecond
	for {
		p.mu.Lock()
		if p.stopping || p.failed != nil {
			p.dispatch()
			p.mu.Unlock()
			return
		}
		p.mu.Unlock()
		p.opts.Telemetry.Emit(telemetry.PoolWorkerRestart, telemetry.Measurements{}, telemetry.Metadata{"pool": "process", "worker": s.id})
		pr, err := p.spawn(context.Background(), s)
		p.mu.Lock()
		if err == nil {
			if p.stopping {
				p.mu.Unlock()
				pr.kill("pool closing")
				return
			}
			s.proc, s.retiring = pr, false
			if s.started {
				s.restarts.Add(1)
			}
			s.started = true
			p.dispatch()
			p.mu.Unlock()
			return
		}
		p.log.Error("slither worker failed to start", "worker", s.id, "error", err)
		ok := p.countRestart(err)
		if !ok {
			p.dispatch()
		}
		p.mu.Unlock()
		if !ok {
			return
		}
		time.Sleep(backoff)
		backoff = min(2*backoff, 2*time.Second)
	}
}

// CloseSession drops session id's state on its worker and unpins it; see
// [pools.Pool.CloseSession].
func (p *Pool) CloseSession(id string) {
	p.mu.Lock()
	pn, ok := p.pins[id]
	var targets []*proc
	if ok {
		delete(p.pins, id)
		pn.slot.pins--
		if pn.lost == nil {
			targets = append(targets, pn.proc)
		}
	} else { // unpinned batches may have left state on any worker
		targets = p.liveLocked()
	}
	p.mu.Unlock()
	for _, pr := range targets {
		_ = pr.write(wire.AppendCloseSession(nil, id), nil)
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
			p.stopping = true
			for _, w := range p.waiters {
				w.ready <- grant{err: fmt.Errorf("withdrawn: %w", pools.ErrClosed)}
			}
			p.waiters = nil
			live := p.liveLocked()
			p.mu.Unlock()
			for _, pr := range live {
				pr.kill("pool closed before its calls finished")
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
	p.stopping = true
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

// readRSS reads a process's resident set size from /proc.
func readRSS(pid int) (uint64, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/statm", pid))
	if err != nil {
		return 0, false
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0, false
	}
	var pages uint64
	if _, err := fmt.Sscan(f[1], &pages); err != nil {
		return 0, false
	}
	return pages * uint64(os.Getpagesize()), true
}

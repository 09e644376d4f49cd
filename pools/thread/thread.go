//go:build cgo

package thread

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/slither-go/slither/capacity"
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
	rt    *cpython.Runtime
	tel   *telemetry.Bus
	host  pools.HostFunc
	spin  time.Duration
	pinMu sync.Mutex
	pins  map[string]*worker // session id -> its worker

	// GIL watch: the state after the last check, the changes seen, and the
	// modules whose first use has been checked.
	gil        atomic.Bool
	gilMu      sync.Mutex
	gilChanges []GILChange
	imported   sync.Map

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
	res   chan result // buffered(1): the worker never blocks on a caller that left
}

type result struct {
	out []any
	err error
}

var jobPool = sync.Pool{New: func() any { return &job{res: make(chan result, 1)} }}

type worker struct {
	id     int
	th     *cpython.Thread
	pinned chan *job // batches of the sessions pinned to this worker
	pins   int       // sessions pinned here; guarded by Pool.pinMu

	mu  sync.Mutex // guards cur, against interrupts from other goroutines
	cur uint64     // sequence number of the running call; 0 when idle
	seq uint64     // last sequence number used (worker goroutine only)

	batches            uint64 // worker goroutine only
	job                *job   // the running batch, for host calls (worker goroutine only)
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
		rt:    rt,
		tel:   opts.Telemetry,
		host:  opts.Host,
		spin:  spin,
		procs: int32(runtime.GOMAXPROCS(0)),
		jobs:  make(chan *job, n),
		pins:  map[string]*worker{},
		done:  make(chan struct{}),
		abort: make(chan struct{}),
	}
	ready := make(chan error, n)
	for i := range n {
		w := &worker{id: i, pinned: make(chan *job, 1)}
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

// Stats returns a snapshot of the workers' counters.
func (p *Pool) Stats() pools.Stats {
	s := pools.Stats{Kind: pools.KindThread, Waiting: int(p.waiting.Load())}
	pid := os.Getpid()
	for _, w := range p.workers {
		active := w.active.Load()
		if active {
			s.Running++
		}
		s.Workers = append(s.Workers, pools.WorkerStats{
			ID:      w.id,
			Running: active,
			Pid:     pid,
			Calls:   w.calls.Load(),
			Items:   w.items.Load(),
			Errors:  w.errs.Load(),
			Busy:    time.Duration(w.busy.Load()),
		})
	}
	return s
}

// Submit runs b on the next free worker; see [pools.Pool.Submit]. The
// Python function sees slither.context() with this worker's id, pool
// "thread" and b.Session. Cancelling ctx while the batch runs raises
// slither.Cancelled inside it at its next bytecode boundary (code blocked in
// C notices when it returns); Submit returns at once either way.
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

	j := jobPool.Get().(*job)
	j.ctx, j.b = ctx, b
	p.waiting.Add(1)
	queue := p.jobs
	if b.Pinned() {
		queue = p.pin(b.Session).pinned
	}
	select {
	case queue <- j: // still waiting until a worker takes it
	case <-ctx.Done():
		p.waiting.Add(-1)
		p.recycle(j)
		return nil, cancelled(b, ctx)
	case <-p.abort:
		p.waiting.Add(-1)
		p.recycle(j)
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
		}
		return nil, cancelled(b, ctx)
	}
}

func (p *Pool) recycle(j *job) {
	j.ctx, j.b = nil, pools.Batch{}
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
// submitted before Close, then release their thread states.
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
	w.mu.Unlock()
	th.SetHost(func(name string, args []any) (any, error) { return p.hostCall(w, name, args) })
	ready <- nil
	md := telemetry.Metadata{"pool": string(pools.KindThread), "worker": w.id, "pid": os.Getpid()}
	p.tel.Emit(telemetry.PoolWorkerStart, telemetry.Measurements{}, md)
	defer p.tel.Emit(telemetry.PoolWorkerExit, telemetry.Measurements{}, telemetry.Metadata{
		"pool": string(pools.KindThread), "worker": w.id, "pid": os.Getpid(), "reason": "pool closed"})

	session := ""
	pid := os.Getpid()
	jobs, pinned := p.jobs, w.pinned
	for {
		j, ok := p.next(&jobs, &pinned)
		if !ok {
			return
		}
		if !j.state.CompareAndSwap(jobQueued, jobTaken) {
			p.recycle(j) // withdrawn: its caller has gone and will not touch j
			continue
		}
		p.waiting.Add(-1)
		if err := j.ctx.Err(); err != nil {
			j.res <- result{err: cancelled(j.b, j.ctx)}
			continue
		}
		select {
		case <-p.abort: // Close gave up: queued batches are withdrawn, not run
			j.res <- result{err: withdrawn(j.b)}
			continue
		default:
		}
		if j.b.Session != session {
			if _, err := th.Call("slither._context", "_set_session", j.b.Session); err != nil {
				j.res <- result{err: fmt.Errorf("pools/thread: worker %d: setting session: %w", w.id, err)}
				continue
			}
			session = j.b.Session
		}
		p.active.Add(1)
		w.job = j
		r := w.run(j)
		w.job = nil
		if ci := pools.CallInfoFrom(j.ctx); ci != nil {
			ci.Worker, ci.Pid = w.id, pid
		}
		p.active.Add(-1) // before the reply, so this worker may spin for the next batch
		// An import can turn the GIL back on: check after a module's first
		// batch, after an inspection, and every 64th batch (imports inside
		// functions).
		w.batches++
		if _, seen := p.imported.LoadOrStore(j.b.Module, true); !seen || w.batches%64 == 0 || j.b.Module == "slither._gil" {
			p.checkGIL(w.th, j.b.Module)
		}
		j.res <- r
	}
}

// next returns the worker's next batch, from its pinned sessions or the
// shared queue, or false once the pool is closed and both are drained.
func (p *Pool) next(jobs, pinned *chan *job) (*job, bool) {
	if *jobs == nil && *pinned == nil {
		return nil, false
	}
	if j := p.poll(*jobs, *pinned); j != nil {
		return j, true
	}
	select {
	case j, ok := <-*jobs:
		if !ok {
			*jobs = nil
			return p.next(jobs, pinned)
		}
		return j, true
	case j, ok := <-*pinned:
		if !ok {
			*pinned = nil
			return p.next(jobs, pinned)
		}
		return j, true
	}
}

// poll polls both queues for up to p.spin while Ps are spare (see
// tryRecv). It returns nil when nothing came or a queue is closed: the
// blocking receive that follows sorts that out.
func (p *Pool) poll(jobs, pinned chan *job) *job {
	if !p.startSpin() {
		return nil
	}
	defer p.spinners.Add(-1)
	deadline := time.Now().Add(p.spin)
	for i := 0; ; i++ {
		select {
		case j := <-jobs:
			return j
		case j := <-pinned:
			return j
		default:
		}
		if i%32 == 31 && time.Now().After(deadline) {
			return nil
		}
	}
}

// startSpin reserves a spinner slot; the caller releases it.
func (p *Pool) startSpin() bool {
	if p.spin <= 0 {
		return false
	}
	if p.spinners.Add(1)+p.active.Load() > p.procs {
		p.spinners.Add(-1)
		return false
	}
	return true
}

// pin returns the worker of session id, pinning a new session to the
// worker with the fewest sessions.
func (p *Pool) pin(id string) *worker {
	p.pinMu.Lock()
	defer p.pinMu.Unlock()
	if w, ok := p.pins[id]; ok {
		return w
	}
	w := p.workers[0]
	for _, c := range p.workers[1:] {
		if c.pins < w.pins {
			w = c
		}
	}
	w.pins++
	p.pins[id] = w
	return w
}

// CloseSession drops session id's state (slither.session()) and unpins it;
// see [pools.Pool.CloseSession]. It runs briefly on the interpreter's main
// thread, not on a worker.
func (p *Pool) CloseSession(id string) {
	p.pinMu.Lock()
	if w, ok := p.pins[id]; ok {
		delete(p.pins, id)
		w.pins--
	}
	p.pinMu.Unlock()
	// Session state lives in one process-wide dict keyed by session id,
	// whether the session was pinned or its batches ran unpinned.
	_ = p.rt.Exec("import slither._context as _c\n_c._drop_session(" + strconv.Quote(id) + ")\ndel _c\n")
}

// tryRecv polls ch for up to p.spin while Ps are spare, so that a hand-off
// need not park one OS thread and wake another (microseconds each). got is
// false when nothing came.
func tryRecv[T any](p *Pool, ch <-chan T) (v T, ok, got bool) {
	if !p.startSpin() {
		return v, false, false
	}
	defer p.spinners.Add(-1)
	deadline := time.Now().Add(p.spin)
	for i := 0; ; i++ {
		select {
		case v, ok = <-ch:
			return v, ok, true
		default:
		}
		if i%32 == 31 && time.Now().After(deadline) {
			return v, false, false
		}
	}
}

func (w *worker) run(j *job) result {
	// Calls are told apart by sequence number, not by *job: job structs are
	// reused, and a late interrupt must never hit a later call.
	w.seq++
	seq := w.seq
	w.mu.Lock()
	w.cur = seq
	w.mu.Unlock()
	var stop func() bool
	if j.ctx.Done() != nil {
		stop = context.AfterFunc(j.ctx, func() { w.interrupt(seq) })
	}

	w.active.Store(true)
	start := time.Now()
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
		if errors.Is(err, cpython.ErrConversion) {
			err = conversionError{err}
		}
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
	return result{out: out, err: err}
}

// pid is this process's id (a syscall each time os.Getpid is asked).
var pid = os.Getpid()

// hostCall serves a host call from Python on worker w, during its batch.
func (p *Pool) hostCall(w *worker, name string, args []any) (any, error) {
	if p.host == nil {
		return nil, fmt.Errorf("no host function: the pool's Options.Host is nil (called %q)", name)
	}
	ctx, session := context.Background(), ""
	if j := w.job; j != nil {
		ctx, session = j.ctx, j.b.Session
	}
	return p.host(ctx, pools.HostCall{Name: name, Args: args, Worker: w.id, Pid: pid, Session: session, Pool: pools.KindThread})
}

// GILChange is a change of the embedded interpreter's GIL state that the
// pool saw, usually an import re-enabling it.
type GILChange struct {
	Enabled bool
	// Module is the module CPython named when it re-enabled the GIL, or
	// empty if it named none (the GIL was turned on some other way).
	Module string
	// During is the module of the batch after which the change was seen.
	During string
	At     time.Time
}

// checkGIL compares the GIL state with the last one seen and records and
// announces (runtime.gil_changed) a change. Runs on a worker's thread.
func (p *Pool) checkGIL(th *cpython.Thread, during string) {
	v, err := th.Call("slither._gil", "state")
	st, _ := v.([]any)
	if err != nil || len(st) != 2 {
		return
	}
	on, _ := st[0].(bool)
	mods, _ := st[1].([]any)
	p.gilMu.Lock()
	defer p.gilMu.Unlock()
	if on == p.gil.Load() && len(mods) == 0 {
		return
	}
	p.gil.Store(on)
	c := GILChange{Enabled: on, During: during, At: time.Now()}
	if len(mods) > 0 {
		c.Module, _ = mods[0].(string)
	}
	p.gilChanges = append(p.gilChanges, c)
	p.tel.Emit(telemetry.RuntimeGILChanged, telemetry.Measurements{}, telemetry.Metadata{
		"pool": string(pools.KindThread), "enabled": on, "module": c.Module, "during": during})
}

// FreeThreadedBuild reports whether the embedded interpreter was built
// with --disable-gil.
func (p *Pool) FreeThreadedBuild() bool { return p.rt.FreeThreadedBuild() }

// GILEnabled reports the GIL state as of the pool's last check: at start,
// after each module's first batch, and every 64th batch of a worker.
func (p *Pool) GILEnabled() bool { return p.gil.Load() }

// Describe reports the embedded interpreter for `slither doctor`: build,
// GIL state, the modules that re-enabled the GIL, and (with calls > 0) the
// mean time of that many no-op calls through this pool.
func (p *Pool) Describe(ctx context.Context, calls int) (capacity.Embedded, error) {
	e := capacity.Embedded{Available: true, Version: strings.Fields(p.rt.Version())[0], Executable: p.rt.Executable(),
		FreeThreaded: p.FreeThreadedBuild(), GILEnabled: p.GILEnabled()}
	for _, c := range p.GILChanges() {
		if c.Enabled && c.Module != "" && !slices.Contains(e.EnabledBy, c.Module) {
			e.EnabledBy = append(e.EnabledBy, c.Module)
		}
	}
	if calls > 0 {
		b := pools.Batch{Module: "slither._demo", Function: "noop", Items: []any{0}}
		if _, err := p.Submit(ctx, b); err != nil { // warm-up: the import
			return e, err
		}
		start := time.Now()
		for range calls {
			if _, err := p.Submit(ctx, b); err != nil {
				return e, err
			}
		}
		e.CallOverhead = time.Since(start) / time.Duration(calls)
	}
	return e, nil
}

// GILEnabledBy names the module that last turned the GIL on, if it is on
// because of one.
func (p *Pool) GILEnabledBy() string {
	p.gilMu.Lock()
	defer p.gilMu.Unlock()
	if n := len(p.gilChanges); n > 0 && p.gil.Load() {
		return p.gilChanges[n-1].Module
	}
	return ""
}

// GILChanges lists the GIL changes the pool has seen, oldest first.
func (p *Pool) GILChanges() []GILChange {
	p.gilMu.Lock()
	defer p.gilMu.Unlock()
	return slices.Clone(p.gilChanges)
}

// ThreadSafe reports whether module.function is marked
// @slither.thread_safe. It imports the module in the embedded interpreter
// (on a worker), which may itself turn the GIL on: the pool notices.
func (p *Pool) ThreadSafe(ctx context.Context, module, function string) (bool, error) {
	out, err := p.Submit(ctx, pools.Batch{Module: "slither._gil", Function: "thread_safe", Items: []any{[]any{module, function}}})
	if err != nil {
		return false, err
	}
	ok, _ := out[0].(bool)
	return ok, nil
}

// conversionError makes a cpython conversion error match
// pools.ErrConversion too.
type conversionError struct{ error }

func (e conversionError) Unwrap() error        { return e.error }
func (e conversionError) Is(target error) bool { return target == pools.ErrConversion }

// interrupt raises slither.Cancelled in the worker's running call if it is
// call seq (any running call, for seq == 0).
func (w *worker) interrupt(seq uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.cur != 0 && (seq == 0 || w.cur == seq) {
		w.th.Interrupt()
	}
}

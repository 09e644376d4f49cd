//go:build cgo

package thread

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/slither-go/slither/cpython"
	"github.com/slither-go/slither/pools"
	"github.com/slither-go/slither/python"
	"github.com/slither-go/slither/telemetry"
)

// LowLatencySpin is a good [Options.Spin] for a [Dedicated] pool whose
// callers wait on small, unbatched calls while cores are spare: measured
// here, it cuts a one-item round trip from tens of microseconds to one or
// two.
const LowLatencySpin = 20 * time.Microsecond

// Mode is how a pool runs its batches: on the submitting goroutine's own
// OS thread ([Direct]) or on worker threads of its own ([Dedicated]).
type Mode int

const (
	// Direct (the default) runs each batch on the goroutine that submits
	// it: the goroutine is locked to its OS thread for the call, which
	// runs on the Python thread state kept for that OS thread (made on
	// its first call, deleted when the thread exits). Workers are slots,
	// a concurrency limit: a batch waits for a free slot, never for a
	// hand-off to another thread, so a small call costs about a
	// microsecond instead of tens.
	//
	// Cancelling a running batch raises slither.Cancelled in it at its
	// next bytecode boundary, and Submit returns once the call has
	// stopped: the submitting goroutine is the one running it. Code
	// blocked in C (time.sleep, a socket read) notices only when it
	// returns to Python, and Submit waits for that.
	Direct Mode = iota
	// Dedicated runs batches on worker goroutines locked to their OS
	// threads for the pool's life, each with one Python thread state; a
	// batch is handed to a free worker and its result handed back.
	// Cancelling a running batch raises slither.Cancelled in it just the
	// same, but Submit returns at once, while the call may still run.
	//
	// Choose it for thread-affine Python: libraries whose objects must be
	// used on the thread that made them (sqlite3 connections with
	// check_same_thread, GUI, OpenGL and some driver or CUDA contexts),
	// code that keeps threading.local caches it expects one per worker,
	// sessions whose state holds such objects; and for callers that must
	// get control back at once on cancellation while Python is blocked
	// in C.
	Dedicated
)

// String returns "direct" or "dedicated".
func (m Mode) String() string {
	switch m {
	case Direct:
		return "direct"
	case Dedicated:
		return "dedicated"
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

// Options configure a [Pool]. The zero value is valid.
type Options struct {
	// Mode is [Direct] (the zero value) or [Dedicated].
	Mode Mode
	// Workers is the number of batches that may run at once: worker
	// threads in [Dedicated] mode, slots in [Direct] mode. Zero means
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
	// a direct call back into Go on the goroutine running the batch, no
	// serialization through a pipe. Nil makes host calls fail clearly.
	Host pools.HostFunc
	// Telemetry receives pool.worker.start and pool.worker.exit events
	// (one per worker or slot, at New and Close); nil sends none.
	Telemetry *telemetry.Bus
	// MaxSessions bounds the sessions the pool keeps track of at once: those
	// with batches in flight or state on a worker, until CloseSession (or
	// the end of a [pools.NewSession] context). A batch that would open one
	// more fails with [ErrTooManySessions]. Zero means 65,536; negative is
	// an error.
	MaxSessions int
	// Spin ([Dedicated] mode only) is how long an idle worker polls for its
	// next batch, and a caller for its result, before parking. Parking and
	// waking a locked OS thread costs microseconds each way
	// (golang/go#18023), more than a small Python call; spinning avoids it
	// but burns a core, so it happens only while cores are spare (spinners
	// plus running workers at most GOMAXPROCS). Zero or negative: never
	// spin, best for throughput when the pool has as many workers as cores
	// (see the package benchmarks). Direct mode has no hand-off to spin
	// for.
	Spin time.Duration
	// Alloc, if set, allocates the Go memory of large bytes results (64 KiB
	// and more; see [cpython.Caller.SetAlloc]), so that a caller that
	// recycles its buffers gets warm memory instead of fresh pages. It is
	// called on the thread running the batch, concurrently from several;
	// nil means make.
	Alloc func(n int) []byte
}

// Pool is a [pools.Pool] of embedded Python threads. Its methods are safe
// for concurrent use.
type Pool struct {
	rt    *cpython.Runtime
	mode  Mode
	tel   *telemetry.Bus
	host  pools.HostFunc
	alloc func(n int) []byte
	spin  time.Duration

	sessMu      sync.Mutex
	sessions    map[string]*session // open sessions (see session.go)
	maxSessions int

	// GIL watch: the state after the last check and the changes seen.
	gil        atomic.Bool
	gilMu      sync.Mutex
	gilChanges []GILChange

	active  atomic.Int32 // workers running a batch
	workers []*worker    // the worker threads (Dedicated) or slots (Direct)

	// Dedicated: the hand-off (dedicated.go, handoff.go). Spinning pays
	// only on a spare core: a goroutine polling on the last free P starves
	// the very goroutine that would hand it work. So spinners + workers
	// running Python stay within procs (GOMAXPROCS).
	spinners atomic.Int32
	procs    int32
	jobs     chan *job // buffered (one per worker): a send need not wake a spinning worker
	running  sync.WaitGroup

	// Direct: the slots (direct.go).
	slotMu  sync.Mutex
	free    []*worker // free slots, the last released last (so reused first)
	queue   []*waiter // batches waiting for any slot, oldest first
	tickets uint64    // waiters so far: each one's ticket (its order of arrival)
	stopped bool      // Close has taken the slots

	mu      sync.RWMutex // guards closed against new submits
	closed  bool
	submits sync.WaitGroup // admitted Submit calls (and Direct session drops) not yet returned
	waiting atomic.Int64

	done      chan struct{} // closed when every worker has exited (every slot closed)
	abort     chan struct{} // closed when Close gives up waiting
	abortOnce sync.Once
}

var (
	_ pools.Pool    = (*Pool)(nil)
	_ pools.Runtime = (*Pool)(nil)
)

// pyThread is what a worker runs Python on: a [cpython.Thread] of its own
// (Dedicated) or a [cpython.Caller] on the submitting goroutine's thread
// (Direct).
type pyThread interface {
	Call(module, name string, args ...any) (any, error)
	Interrupt()
	ClearInterrupt()
}

// worker is one unit of the pool's concurrency: a goroutine locked to its
// own OS thread (Dedicated), or a slot that whichever goroutine holds it
// runs batches with (Direct). Its id is slither.context().worker_id.
type worker struct {
	pool *Pool
	id   int
	py   pyThread        // set once started; guarded by mu until then
	th   *cpython.Thread // Dedicated
	cl   *cpython.Caller // Direct
	pins int             // sessions pinned here; guarded by Pool.sessMu

	// Dedicated: the worker's queues.
	pinned chan *job     // batches of the sessions pinned to this worker
	wake   chan struct{} // buffered(1): wakes an idle worker for releases

	// Direct: guarded by Pool.slotMu.
	held    bool      // a goroutine holds the slot
	waiters []*waiter // batches of sessions pinned here waiting for it, oldest first

	// mu guards cur against interrupts from other goroutines, and what
	// Stats reads of the running call; run takes it twice per batch anyway
	// (for cur), so Stats costs the hot path nothing more.
	mu            sync.Mutex
	cur           uint64    // sequence number of the running call; 0 when idle
	curMod, curFn string    // the running call's batch, while cur != 0
	since         time.Time // when the running call started, while cur != 0
	tid           int       // Dedicated: the locked OS thread's id; 0 until started
	exited        bool      // the worker goroutine has ended (the slot is closed)
	exit          func()    // Direct: emits the slot's pool.worker.exit

	// The rest belongs to the worker goroutine (Dedicated) or to the
	// goroutine holding the slot (Direct).
	seq     uint64          // last sequence number used
	imports uint64          // the import count at this worker's (slot's) last GIL check
	ctx     context.Context // the running batch's context, for host calls; nil between batches
	session string          // the running batch's session
	hostCtx context.Context // ctx marked as this worker's, made on the batch's first host call

	// Session states this worker must drop, on its own thread (session.go).
	relMu    sync.Mutex
	releases []string
	pending  atomic.Bool // releases is not empty

	calls, items, errs atomic.Uint64
	busy               atomic.Int64
	active             atomic.Bool
}

// New starts a pool; it returns once every worker has its thread state (or
// every slot its Caller) and the slither Python package is importable.
func New(opts Options) (*Pool, error) {
	n := opts.Workers
	if n < 0 {
		return nil, fmt.Errorf("pools/thread: Options.Workers is %d; it must be >= 0 (0 means GOMAXPROCS)", n)
	}
	if n == 0 {
		n = runtime.GOMAXPROCS(0)
	}
	if opts.Mode != Direct && opts.Mode != Dedicated {
		return nil, fmt.Errorf("pools/thread: Options.Mode is %v; it must be Direct or Dedicated", opts.Mode)
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
	p := &Pool{
		rt:          rt,
		mode:        opts.Mode,
		tel:         opts.Telemetry,
		host:        opts.Host,
		alloc:       opts.Alloc,
		spin:        max(opts.Spin, 0),
		procs:       int32(runtime.GOMAXPROCS(0)),
		sessions:    map[string]*session{},
		maxSessions: maxSessions,
		done:        make(chan struct{}),
		abort:       make(chan struct{}),
	}
	if p.mode == Direct {
		err = p.startSlots(n)
	} else {
		err = p.startWorkers(n)
	}
	if err != nil {
		_ = p.Close(context.Background())
		return nil, err
	}
	if err := rt.Exec("import slither._gil\nslither._gil.install()\n"); err != nil {
		_ = p.Close(context.Background())
		return nil, fmt.Errorf("pools/thread: installing the GIL watch: %w", err)
	}
	if p.mode == Direct {
		// No batch has run yet: the slots are this goroutine's.
		n := rt.Imports()
		for _, w := range p.workers {
			w.imports = n
		}
	}
	p.gil.Store(rt.GILEnabled())
	return p, nil
}

// Runtime is the interpreter the pool's threads run on.
func (p *Pool) Runtime() *cpython.Runtime { return p.rt }

// Mode is the pool's [Mode].
func (p *Pool) Mode() Mode { return p.mode }

// Kind returns [pools.KindThread].
func (p *Pool) Kind() pools.Kind { return pools.KindThread }

// Capacity is the number of workers (slots in [Direct] mode).
func (p *Pool) Capacity() int { return len(p.workers) }

// Submit runs b on the next free worker; see [pools.Pool.Submit]. The
// Python function sees slither.context() with this worker's id, pool
// "thread" and b.Session.
//
// In [Direct] mode the calling goroutine runs b itself, once it holds a
// free slot (the slot of b's session if it is pinned). Cancelling ctx
// while b waits for a slot withdraws it; while it runs, it raises
// slither.Cancelled inside it at its next bytecode boundary (code blocked
// in C notices when it returns), and Submit returns once the call has
// stopped.
//
// In [Dedicated] mode b is handed to a worker thread. Cancelling ctx
// raises slither.Cancelled the same way, but Submit returns at once, so
// the batch may still be running — and its effects may still happen —
// after Submit returned (a retry can then run it twice: at-least-once).
//
// Submitted from a host call (or view) of this pool's batch, with the host
// call's context, a batch that could only run on workers busy with that
// call — the calling worker, and every worker whose batch made the host
// call that submitted the calling batch, and so on up the chain — fails
// with an error wrapping [pools.ErrReentrant]: a batch of a session pinned
// to one of them, or any batch when they are all the pool's workers.
// Waiting for them would deadlock. A new session submitted so is pinned to
// a worker outside the chain. (In Direct mode a batch that may run on
// another slot runs nested on the host call's own thread, once it holds
// that slot.)
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
	var s *session
	var pin *worker
	if b.Session != "" {
		var err error
		if s, pin, err = p.admit(b, chain); err != nil {
			return nil, err
		}
	}
	if p.mode == Direct {
		return p.submitDirect(ctx, b, s, pin)
	}
	return p.submitDedicated(ctx, b, s, pin)
}

func withdrawn(b pools.Batch) error {
	return fmt.Errorf("pools/thread: %s.%s withdrawn: %w", b.Module, b.Function, pools.ErrClosed)
}

func cancelled(b pools.Batch, ctx context.Context) error {
	return fmt.Errorf("pools/thread: %s.%s: %w", b.Module, b.Function, context.Cause(ctx))
}

// Close stops the pool; see [pools.Pool.Close]. Batches submitted before
// Close finish first; then the session state the workers hold is dropped
// and their thread states (Callers) released. If ctx ends first, running
// batches are interrupted, waiting ones withdrawn, and Close returns; a
// later Close waits for the rest.
func (p *Pool) Close(ctx context.Context) error {
	p.mu.Lock()
	if !p.closed {
		p.closed = true
		// Close waits for it through p.done, which it closes last; a Close
		// that gave up leaves it to the next Close (or to the batches it
		// waits for, which the abort has interrupted).
		if p.mode == Direct {
			go p.stopSlots()
		} else {
			go p.stopWorkers()
		}
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

// events emits pool.worker.start for w and returns the pool.worker.exit
// to emit when it stops.
func (p *Pool) events(w *worker, thread int) func() {
	md := telemetry.Metadata{"pool": poolName, "kind": string(pools.KindThread), "worker": w.id, "pid": pid,
		"mode": p.mode.String()}
	if thread != 0 {
		md["thread"] = thread
	}
	p.tel.Emit(telemetry.PoolWorkerStart, telemetry.Measurements{}, md)
	return func() {
		exit := telemetry.Metadata{"reason": "pool closed", "class": pools.ExitClosed}
		for k, v := range md {
			exit[k] = v
		}
		p.tel.Emit(telemetry.PoolWorkerExit, telemetry.Measurements{}, exit)
	}
}

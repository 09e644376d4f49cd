// Package pools defines the contract every Slither worker pool keeps, whether
// its workers are Python threads embedded in this process (pools/thread) or
// Python subprocesses (pools/process).
//
// A pool runs batches: one call of module.function(items) in Python that
// returns exactly one result per item. A pool never drops or reorders
// results: a reply of the wrong length is a [*ResultCountError].
package pools

import (
	"context"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/slither-go/slither/internal/convert"
	"github.com/slither-go/slither/internal/safecall"
)

// Kind names a pool implementation; Python code sees it as
// slither.context().pool.
type Kind string

const (
	// KindThread runs batches on threads of the free-threaded interpreter
	// embedded in the Go process.
	KindThread Kind = "thread"
	// KindProcess runs batches in isolated Python subprocesses.
	KindProcess Kind = "process"
	// KindRemote runs batches on `slither node` processes, through a NATS
	// JetStream work queue (pools/remote).
	KindRemote Kind = "remote"
)

// Batch is one call: Module.Function(Items) in Python.
type Batch struct {
	// Module is an importable Python module name, e.g. "mypkg.features".
	Module string
	// Function is a callable attribute of Module that takes a list and
	// returns a list (or tuple) with one result per item.
	Function string
	// Items are converted to Python values as cpython documents; the zero
	// value (nil) sends an empty list.
	Items []any
	// Session is the session id Python sees as slither.context().session_id;
	// empty means none. Batches of one session all run on the same worker
	// (strict affinity), where slither.session() is that session's state.
	Session string
	// Unpinned lets a batch of Session run on any worker: Python still
	// sees the session id (for session-scoped views), but slither.session()
	// state is then that worker's for the session.
	Unpinned bool
	// Route says where a [Router] sends the batch; pools ignore it.
	Route Route
}

// Pinned reports whether b must run on its session's worker.
func (b Batch) Pinned() bool { return b.Session != "" && !b.Unpinned }

// Validate reports a batch that names no module or function, wrapping
// [ErrInvalidBatch]. Pools call it before queueing.
func (b Batch) Validate() error {
	if b.Module == "" {
		return fmt.Errorf("%w: empty module name", ErrInvalidBatch)
	}
	if b.Function == "" {
		return fmt.Errorf("%w: empty function name for module %s", ErrInvalidBatch, b.Module)
	}
	if !utf8.ValidString(b.Session) {
		// Python sees it as a str: two ids differing only in invalid bytes
		// would otherwise name one state, or none that can be dropped.
		return fmt.Errorf("%w: session id %q is not valid UTF-8", ErrInvalidBatch, b.Session)
	}
	return nil
}

// Pool runs batches on a fixed set of workers. All methods are safe for
// concurrent use.
type Pool interface {
	// Submit runs b on the next free worker and returns its results, one
	// per item, in item order. It blocks until a worker is free and the
	// call ends, or ctx ends: then a queued batch is withdrawn and a running
	// one is interrupted, and the error wraps ctx's error. After Close it
	// returns an error wrapping [ErrClosed].
	//
	// Delivery is at-least-once once a batch has started: after a cancel
	// or a timeout the Python call may still be running (or have finished)
	// when Submit returns, so a caller that submits it again may run it
	// twice. Functions that must run once make their effects idempotent.
	Submit(ctx context.Context, b Batch) ([]any, error)
	// Capacity is the number of batches the pool runs at once.
	Capacity() int
	// Stats is a snapshot of per-worker counters.
	Stats() Stats
	// Kind says which implementation this is.
	Kind() Kind
	// CloseSession drops the state that session id holds on its worker
	// (slither.session() in Python) and unpins it. It does not wait: the
	// state may be dropped just after it returns, once batches of the
	// session still in flight have finished. Closing an unknown or already
	// closed session does nothing.
	CloseSession(id string)
	// Close stops accepting batches and waits for those already submitted
	// to finish (drain). If ctx ends first, queued batches fail with
	// [ErrClosed], running ones are interrupted, and Close returns ctx's
	// error without waiting further. Close is idempotent.
	Close(ctx context.Context) error
}

// Named is implemented by pools that have a name in telemetry: the
// embedded pool is "thread", a process pool its Options.Name.
type Named interface {
	Name() string
}

// NameOf returns p's name: its Name() when it is [Named], else its Kind.
func NameOf(p Pool) string {
	if n, ok := p.(Named); ok {
		return n.Name()
	}
	return string(p.Kind())
}

// Stats is a snapshot of a pool's counters.
type Stats struct {
	// Name is the pool's name in telemetry: "thread" for the embedded
	// pool, process.Options.Name for a process pool ("process" by default).
	Name    string
	Kind    Kind
	Workers []WorkerStats
	// Waiting is the number of submitted batches waiting for a worker.
	Waiting int
	// Running is the number of workers running a batch right now.
	Running int
}

// Totals sums the per-worker counters (ID is -1; RSS sums the workers').
func (s Stats) Totals() WorkerStats {
	t := WorkerStats{ID: -1}
	for _, w := range s.Workers {
		t.Calls += w.Calls
		t.Items += w.Items
		t.Errors += w.Errors
		t.Busy += w.Busy
		t.Restarts += w.Restarts
		t.RSS += w.RSS
	}
	return t
}

// WorkerState is what a worker is doing at the moment of a [Stats] snapshot.
type WorkerState string

const (
	// WorkerIdle: the worker waits for a batch.
	WorkerIdle WorkerState = "idle"
	// WorkerBusy: the worker runs a batch (see WorkerStats.Current).
	WorkerBusy WorkerState = "busy"
	// WorkerStarting: the worker's process is starting (process pool).
	WorkerStarting WorkerState = "starting"
	// WorkerRecycling: the worker's process finishes its running calls
	// and is then replaced (process pool).
	WorkerRecycling WorkerState = "recycling"
	// WorkerStopped: the worker has no process and none is starting: the
	// pool is closed, or its restart breaker is open.
	WorkerStopped WorkerState = "stopped"
)

// Classes of a worker's end: the "class" metadata of pool.worker.exit
// events, a low-cardinality summary of its "reason".
const (
	// ExitCrash: the worker died by itself (a signal, an exit, a broken pipe).
	ExitCrash = "crash"
	// ExitTimeout: the pool killed it after a call ran past CallTimeout.
	ExitTimeout = "timeout"
	// ExitRecycle: the pool replaced it after MaxCalls, MaxRSSMB or MaxAge.
	ExitRecycle = "recycle"
	// ExitClosed: the pool stopped it as it closed.
	ExitClosed = "closed"
	// ExitKilled: the pool killed it because its stream broke (a protocol
	// error, a failed write).
	ExitKilled = "killed"
	// ExitStartFailed: it never finished starting (no handshake, an exit
	// before it, a wrong protocol).
	ExitStartFailed = "start-failed"
)

// WorkerStats counts what one worker has done since the pool started.
type WorkerStats struct {
	// ID is the worker's index, as Python sees it in slither.context().worker_id.
	ID int
	// State is what the worker does now.
	State WorkerState
	// Running says whether the worker is running a batch right now.
	Running bool
	// Thread is the OS thread id of the worker's locked thread (thread
	// pool only; 0 before it started).
	Thread int
	// Current is "module.function" of the batch the worker runs now, ""
	// when it runs none. A process worker with several threads names one
	// of its running batches (the oldest).
	Current string
	// Since is when the batch named in Current started; zero when idle.
	Since time.Time
	// Pid is the worker's process id: this process for the thread pool, the
	// current subprocess for the process pool (0 while it restarts).
	Pid int
	// Restarts counts the worker's process replacements: after crashes,
	// timeouts and recycling (process pool only).
	Restarts uint64
	// RSS is the worker process's resident memory in bytes when last
	// sampled (process pool only; 0 when unknown).
	RSS uint64
	// Calls is the number of batches the worker ran (including failed ones).
	Calls uint64
	// Items is the number of items in those batches.
	Items uint64
	// Errors is the number of batches that failed.
	Errors uint64
	// Busy is the time spent running batches, conversion included.
	Busy time.Duration
}

var (
	// ErrClosed is returned for batches submitted to, or withdrawn by, a
	// closed pool.
	ErrClosed = errors.New("pools: pool is closed")
	// ErrInvalidBatch is wrapped by errors for batches that name no module
	// or function.
	ErrInvalidBatch = errors.New("pools: invalid batch")
	// ErrResultCount is matched by every [*ResultCountError].
	ErrResultCount = errors.New("pools: wrong number of results")
	// ErrWorkerCrashed is matched by errors of calls whose worker process
	// died under them (a signal, an exit, a broken pipe). The worker is
	// restarted; the call is not retried.
	ErrWorkerCrashed = errors.New("pools: worker crashed")
	// ErrTimeout is matched by errors of calls that ran past the pool's
	// per-call timeout; their worker was killed and replaced.
	ErrTimeout = errors.New("pools: call timed out")
	// ErrSessionLost is matched by errors of calls whose session's worker
	// died: its state is gone, and a session is never moved to another
	// worker silently.
	ErrSessionLost = errors.New("pools: session lost")
	// ErrConversion is matched by errors of batches holding a value that
	// has no mapping between Go and Python (either way), in either pool.
	// It is the same value as cpython.ErrConversion and wire.ErrConversion.
	ErrConversion = convert.ErrConversion
	// ErrPoolFailed is matched by calls to a pool whose workers crashed too
	// often too quickly: while its restart breaker is open calls fail fast
	// with it; after a back-off one restart is tried again.
	ErrPoolFailed = errors.New("pools: pool failed")
	// ErrPanic is matched by the error of any user callback that panicked
	// and was recovered: host functions here, and predicates, handlers,
	// strategies, loaders, views and telemetry handlers in dispatch, pipe,
	// store and telemetry. It is dispatch.ErrPanic too.
	ErrPanic = safecall.ErrPanic
	// ErrReentrant is matched by errors of batches submitted, from inside a
	// host call (or view), that only the workers busy with that host call's
	// own batch (and its callers') could run — its own pinned session, say,
	// or any batch of a one-worker pool: waiting for them would deadlock.
	ErrReentrant = errors.New("pools: re-entrant submit to a session's own busy worker")
)

// PythonError is an exception raised by the Python function of a batch, in
// either pool. Match it with errors.As.
type PythonError struct {
	Type      string // qualified type name, e.g. "ValueError" or "mymod.MyError"
	Message   string // str(exc)
	Traceback string // traceback.format_exception's text
	// Err is the pool's own error value for the exception, if any (the
	// thread pool's *cpython.Exception); Unwrap returns it.
	Err error
}

// Unwrap returns e.Err.
func (e *PythonError) Unwrap() error { return e.Err }

func (e *PythonError) Error() string {
	if e.Message == "" {
		return "python: " + e.Type
	}
	return "python: " + e.Type + ": " + e.Message
}

// ResultCountError says a Python batch function returned a list whose
// length differs from its batch's: the results cannot be matched to items,
// so none are returned.
type ResultCountError struct {
	Module, Function string
	Items, Results   int
}

func (e *ResultCountError) Error() string {
	return fmt.Sprintf("pools: %s.%s returned %d results for %d items (a batch function must return exactly one result per item)",
		e.Module, e.Function, e.Results, e.Items)
}

// Is makes errors.Is(err, ErrResultCount) true.
func (e *ResultCountError) Is(target error) bool { return target == ErrResultCount }

// CheckResults returns results, or a [*ResultCountError] when their number
// differs from the batch's.
func CheckResults(b Batch, results []any) ([]any, error) {
	if len(results) != len(b.Items) {
		return nil, &ResultCountError{Module: b.Module, Function: b.Function, Items: len(b.Items), Results: len(results)}
	}
	return results, nil
}

// CallInfo says where a batch ran. A pool fills it in before Submit returns
// when Submit's context carries it (see [WithCallInfo]); it is not to be
// read after a Submit that returned because its context ended.
type CallInfo struct {
	Worker int // the worker's index
	Pid    int // the worker's process id
	// Pool is the name of the pool that ran the batch (see [Stats.Name]).
	Pool string
	// Route and RouteClass are where a [Router] sent the batch
	// ("thread" or "process") and the class of its reason (a
	// Route* constant such as [RouteGILEnabled]); empty when the
	// batch went through no router.
	Route      string
	RouteClass string
	// RoutePool is the name of the pool the Router chose. Like Route, it
	// is written before the batch is handed to that pool, so it may be
	// read even after a Submit that returned because its context ended.
	RoutePool string
	// Service is how long the worker spent on the batch (conversion and the
	// Python call), without the time it waited for a worker: what a batch
	// size costs, for strategies that learn from it. 0 when unknown.
	Service time.Duration
}

type callInfoKey struct{}

// WithCallInfo returns a context that asks the pool to record where the
// batch ran in ci.
func WithCallInfo(ctx context.Context, ci *CallInfo) context.Context {
	return context.WithValue(ctx, callInfoKey{}, ci)
}

// CallInfoFrom returns the CallInfo ctx carries, or nil; for pool
// implementations.
func CallInfoFrom(ctx context.Context) *CallInfo {
	ci, _ := ctx.Value(callInfoKey{}).(*CallInfo)
	return ci
}

package process

import (
	"log/slog"
	"time"

	"github.com/slither-go/slither/pools"
	"github.com/slither-go/slither/telemetry"
)

// Options configure a [Pool]. The zero value runs GOMAXPROCS workers of the
// python3 found in PATH, one thread each.
type Options struct {
	// Name names the pool in telemetry (Stats.Name, CallInfo.Pool, event
	// metadata "pool"); empty means "process". The engine names its
	// pools "process/NAME".
	Name string
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
	// Env adds KEY=VALUE variables to the workers' environment, replacing
	// any of the same name. By default workers get only these from this
	// process: PATH, HOME, USER, LOGNAME, LANG, LANGUAGE, LC_*, TZ, TMPDIR,
	// LD_LIBRARY_PATH and SLITHER_*, so that secrets in the environment do
	// not reach Python code unasked. A PYTHONPATH given here follows Paths.
	Env []string
	// InheritEnv starts the workers' environment from all of this
	// process's variables instead (Env still applies on top).
	InheritEnv bool
	// Dir is the workers' working directory; empty means this process's.
	// It is not on sys.path (Python >= 3.11): a module there does not
	// shadow another by accident.
	Dir string
	// Preload lists modules every worker imports before its handshake, so
	// that import errors surface at start and the GIL state the handshake
	// reports includes their effect.
	Preload []string
	// StartTimeout bounds a worker's start up to its handshake; 0 means 30s.
	StartTimeout time.Duration
	// CallTimeout, when positive, bounds every call: past it, the worker is
	// killed and replaced and the call fails with pools.ErrTimeout. The
	// batch may have done part of its work by then (see the package doc on
	// delivery).
	CallTimeout time.Duration
	// MaxCalls, MaxRSSMB and MaxAge recycle a worker (replace it with a
	// fresh process once its running calls end) after that many calls,
	// above that resident memory, or after that age. Zero disables each. A
	// worker holding open sessions is not recycled until they close.
	MaxCalls int
	MaxRSSMB int
	MaxAge   time.Duration
	// More than MaxRestarts crashes (and failed starts) within
	// RestartWindow open the pool's breaker: calls fail at once with
	// pools.ErrPoolFailed for RestartBackoff, then one start is tried;
	// success resumes service, failure doubles the back-off (up to a
	// minute, or RestartBackoff if longer). Timeouts and recycling are not
	// crashes. Defaults: 5 in 10s, back-off 1s.
	MaxRestarts    int
	RestartWindow  time.Duration
	RestartBackoff time.Duration
	// StopGrace is how long Close waits for a worker to exit after asking
	// it to, then after SIGTERM, before SIGKILL; 0 means 5s.
	StopGrace time.Duration
	// MaxFrame bounds one message between the pool and a worker, either
	// way (a batch's items, a result, a host call or its answer, each
	// whole); 0 means wire.DefaultMaxFrame (256 MiB). A batch over it fails
	// at once with an error matching wire.ErrFrameTooLarge.
	MaxFrame int
	// SharedMemory is the size of each half of the shared memory every
	// worker gets for large byte strings (one half for calls, one for
	// results): a byte string of 256 KiB or more is copied there instead
	// of through the pipe when it fits, which saves a copy and the pipe's
	// system calls and wake-ups. The memory is mapped once per worker and
	// kept for its life, so it stays warm; the pages a worker has touched
	// count in its resident memory (MaxRSSMB). 0 means 16 MiB; negative
	// turns it off (everything goes through the pipe, as it does wherever
	// memfd_create or mmap fails).
	SharedMemory int
	// Host serves slither.host_call(name, *args) from Python; nil makes
	// every host call fail with a clear error. Its context is the calling
	// batch's, and also ends when the worker is killed (by CallTimeout
	// among others: the cause then matches pools.ErrTimeout) or dies (the
	// cause matches pools.ErrWorkerCrashed). A host function that blocks
	// must return when its context ends: until it does, a worker with one
	// thread reads nothing else, and Close waits for it. A host function
	// that submits a batch to this pool which only the calling worker
	// could run (its own pinned session, when the worker's threads are all
	// in the chain of calls) gets an error matching pools.ErrReentrant
	// instead of waiting forever.
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

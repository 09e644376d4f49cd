// Package thread is Slither's embedded pool: batches run on threads of the
// free-threaded CPython embedded in this process, truly in parallel while the
// GIL is off.
//
// # Modes
//
// In [Direct] mode (the default) the goroutine that submits a batch runs
// it: it locks itself to its OS thread for the call and runs it on the
// Python thread state kept for that OS thread, in one crossing into C each
// way. [Options.Workers] is a number of slots, a concurrency limit; the
// slot is what slither.context().worker_id and [Pool.Stats] show. Python
// sees one thread per OS thread the Go program ran calls on (Go keeps
// idle threads, so usually for the process's life): threading.local values
// live that long, and are not one per worker.
//
// In [Dedicated] mode each worker is a goroutine locked to its own OS
// thread for the pool's life, with one persistent Python thread state; a
// batch costs one hand-off to that goroutine and back (tens of
// microseconds when threads park). Use it for thread-affine Python (see
// [Dedicated]).
//
// Cancellation differs: both raise slither.Cancelled in the running call
// at its next bytecode boundary, but in Direct mode Submit returns once the
// call has stopped (the caller's goroutine runs it), while in Dedicated
// mode it returns at once and the call may go on for a while.
//
// A crash in Python code run here (a segfault in an extension) kills the
// whole Go process: send work that is not known to be thread-safe and
// crash-free to a process pool.
//
// # Sessions
//
// A session's state (slither.session(), slither.ref) is one dict per worker
// (slot) that ran its batches: a pinned session has one, and its batches
// run one at a time on its worker (in Direct mode they wait for its slot);
// each unpinned batch sees its own worker's. [Pool.CloseSession] never
// waits: the state is dropped once the session's batches still in flight
// have ended — so a batch still running when its session closes cannot
// keep the state alive for good. A Dedicated worker drops its part on its
// own thread before its next batch (at once when idle). In Direct mode
// the state is dropped by whichever goroutine finishes the session's last
// batch, or by CloseSession itself when none is in flight, on its own
// thread; objects made on another OS thread are then freed when that
// thread next runs Python or at the next garbage collection (a
// free-threaded build frees an object at once only on the thread that
// made it). At most [Options.MaxSessions] sessions are open at once.
//
// # The GIL
//
// The pool re-checks whether the GIL is on after every batch during which
// the interpreter imported anything ([cpython.Runtime.Imports]), before
// that batch's Submit returns, and announces a change as
// runtime.gil_changed.
//
// The package needs cgo. Built with CGO_ENABLED=0 it is empty, and only
// process pools (pools/process) are available.
package thread

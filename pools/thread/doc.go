// Package thread is Slither's embedded pool: batches run on threads of the
// free-threaded CPython embedded in this process, truly in parallel while the
// GIL is off.
//
// Each worker is a goroutine locked to its own OS thread for its whole life,
// owning one persistent Python thread state; a batch costs one hand-off to
// that goroutine and one crossing into C each way. A crash in Python code
// run here (a segfault in an extension) kills the whole Go process: send
// work that is not known to be thread-safe and crash-free to a process pool.
//
// # Sessions
//
// A session's state (slither.session(), slither.ref) is one dict per worker
// that ran its batches: a pinned session has one; each unpinned batch sees
// its own worker's. It is made and dropped on that worker's thread, because
// a free-threaded build frees an object at once only on the thread that
// created it. [Pool.CloseSession] never waits: each worker drops its part
// before its next batch (at once when idle), after the session's batches
// still in flight have ended — so a batch still running when its session
// closes cannot keep the state alive for good. At most
// [Options.MaxSessions] sessions are open at once.
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

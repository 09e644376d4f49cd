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
// The package needs cgo. Built with CGO_ENABLED=0 it is empty, and only
// process pools (pools/process) are available.
package thread

//go:build cgo

package cpython

/*
#include "shim.h"
*/
import "C"

import (
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"unsafe"
)

// Thread runs calls on one OS thread, which it keeps for its whole life:
// [Runtime.NewThread] locks the calling goroutine to its OS thread until
// [Thread.Close]. It uses that OS thread's persistent PyThreadState
// (attached per call, detached after), so creating and destroying thread
// states never happens on the hot path.
//
// Use a Thread where Python code must always run on the same OS thread
// (thread-affine libraries, threading.local state per worker); a [Caller]
// runs on whichever thread the calling goroutine is on and needs no
// hand-off to a locked goroutine.
//
// A Thread is not safe for concurrent use: every method except Interrupt
// must be called from the goroutine that created it. A call from another
// OS thread fails with [ErrWrongThread] (checked in C: no system call).
type Thread struct {
	rt    *Runtime
	ts    *C.PyThreadState // this OS thread's state, shared with Callers that run here
	ident uint64           // Python thread id, for interrupts
	tid   int              // OS thread id
	b     binding
	calls int // calls running (a host function may call in again)

	mu          sync.Mutex // guards interrupted, with Interrupt
	interrupted bool
}

// ErrBusy is returned by [Thread.Close] called during one of the
// Thread's own calls (from its host function or its SetAlloc function),
// and matched by the error of a call of a Thread or [Caller] made while
// its own result is written or read: from its SetAlloc function, or from
// a host call that Python code run to convert the result makes (a
// __str__, a __repr__, a __del__).
var ErrBusy = errors.New("cpython: busy with its own call")

// NewThread locks the calling goroutine to its current OS thread until
// Close (the lock nests with any the caller already holds) and takes that
// thread's Python thread state, making it if the thread has none yet.
//
// An OS thread has one thread state, whoever uses it: a Thread and
// [Caller] calls made on the same OS thread (a Thread's host function
// calling a Caller) share it, so an interrupt hits exactly the call running
// there and extensions' PyGILState_Ensure finds it. Close deletes the state
// when no other Thread holds it and no call runs on the thread below, as
// creating and closing a Thread always did (its threading.local values go
// with it).
func (rt *Runtime) NewThread() (*Thread, error) {
	b, err := newBinding(false)
	if err != nil {
		return nil, err
	}
	runtime.LockOSThread()
	var ident C.uint64_t
	var tid C.int64_t
	ts := C.slither_thread_new(&ident, &tid)
	if ts == nil {
		runtime.UnlockOSThread()
		b.release(nil)
		return nil, errors.New("cpython: PyThreadState_New failed")
	}
	return &Thread{rt: rt, ts: ts, ident: uint64(ident), tid: int(tid), b: b}, nil
}

// TID is the id of the OS thread the Thread is bound to (gettid, asked
// once per OS thread).
func (t *Thread) TID() int { return t.tid }

// SetTrace makes Python's slither.context() show traceID and spanID
// (as lowercase hex) during the calls that follow, until ClearTrace. It
// writes the Thread's C context directly: no cgo call and no Python call,
// so a traced batch costs nothing more than an untraced one until Python
// asks. Like the other methods it must be called on the Thread's own
// goroutine.
func (t *Thread) SetTrace(traceID [16]byte, spanID [8]byte) { t.b.setTrace(traceID, spanID) }

// ClearTrace undoes SetTrace: slither.context() shows no trace ids.
func (t *Thread) ClearTrace() { t.b.clearTrace() }

// SetAlloc makes alloc allocate the []byte of each bytes (or bytearray)
// result of at least [AllocThreshold] bytes, instead of make: a caller that
// recycles its buffers gets warm memory (a fresh large allocation costs page
// faults and GC work far above the copy itself). alloc(n) returns a slice of
// length n (or capacity at least n; it is resliced to n); the caller then
// owns it. nil restores make. alloc runs while the result is read: a call
// of this Thread from it fails with [ErrBusy], and a panic in it fails the
// call with an error that wraps what it panicked with (when an error).
func (t *Thread) SetAlloc(alloc func(n int) []byte) { t.b.alloc = alloc }

// CallBatch calls module.name(items) with items as one Python list and
// returns the list (or tuple) it returns. The whole batch is converted in a
// single crossing each way. It does not check the result's length: callers
// that need one result per item check it.
func (t *Thread) CallBatch(module, name string, items []any) ([]any, error) {
	v, err := t.call(module, name, items, C.SLITHER_CALL_BATCH)
	if err != nil {
		return nil, err
	}
	return v.([]any), nil
}

// Call calls module.name(*args) and returns its result.
func (t *Thread) Call(module, name string, args ...any) (any, error) {
	return t.call(module, name, args, C.SLITHER_CALL_ARGS)
}

func (t *Thread) call(module, name string, items []any, mode C.int) (any, error) {
	if t.ts == nil {
		return nil, ErrClosed
	}
	if err := t.b.checkIdle(); err != nil {
		return nil, err
	}
	fn, err := t.b.lookup(t.ts, module, name)
	if err != nil {
		return nil, err
	}
	in, err := t.b.encode(items)
	if err != nil {
		return nil, err
	}
	v, err := t.invoke(fn, in, t.b.enc.refs, mode)
	runtime.KeepAlive(items) // what refs point into
	return v, err
}

// callRaw calls module.name(items) with in, the items as one encoded list,
// taken as is: codec.c must refuse a malformed one cleanly (the fuzz tests
// feed it anything).
func (t *Thread) callRaw(module, name string, in []byte) (any, error) {
	if t.ts == nil {
		return nil, ErrClosed
	}
	if err := t.b.checkIdle(); err != nil {
		return nil, err
	}
	fn, err := t.b.lookup(t.ts, module, name)
	if err != nil {
		return nil, err
	}
	return t.invoke(fn, in, nil, C.SLITHER_CALL_BATCH) // no references: raw bytes name no memory
}

func (t *Thread) invoke(fn *C.PyObject, in []byte, refList []uintptr, mode C.int) (any, error) {
	// Counted until the result is read: Close from the SetAlloc function
	// would free the C memory the decoder reads.
	t.calls++
	defer func() { t.calls-- }()
	refs, nrefs := crefs(refList)
	status := C.slither_call(t.ts, t.b.ctx, fn, cbytes(in), C.size_t(len(in)), refs, nrefs, mode, C.int(MaxDepth))
	runtime.KeepAlive(in)
	if t.calls == 1 {
		// The interrupt mark is for the call that ended: a later call's
		// nested calls must not raise it again (resend_outer). An async
		// exception still pending is ClearInterrupt's to drop.
		atomic.StoreUint32((*uint32)(unsafe.Pointer(&t.b.ctx.cancel)), 0)
	}
	return t.b.result(status)
}

// Interrupt raises _slither_host.Cancelled (slither.Cancelled in Python)
// inside this thread's running Python code, at its next bytecode boundary.
// Code blocked in C (a sleep, a read) sees it only once it returns to Python.
// Safe to call from any goroutine; it raises it from the calling
// goroutine's own OS thread state (no hop to Python's main thread). A
// pending interrupt that arrives after the call ended is discarded by
// [Thread.ClearInterrupt].
func (t *Thread) Interrupt() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.ts == nil {
		return
	}
	t.interrupted = true
	// Marked in the C context too, so that a call nested in this one (a
	// host call submitting to a Caller on this thread) that spends the
	// exception raises it again for this call (calls.c, resend_outer).
	if t.b.ctx != nil {
		atomic.StoreUint32((*uint32)(unsafe.Pointer(&t.b.ctx.cancel)), 1)
	}
	interruptThread(t.ident)
}

// ClearInterrupt drops an interrupt that was raised too late to hit the call
// it was meant for, so it cannot hit the next one. Cheap when none is pending.
func (t *Thread) ClearInterrupt() {
	t.mu.Lock()
	pending := t.interrupted
	t.interrupted = false
	if pending && t.ts != nil && t.b.ctx != nil {
		atomic.StoreUint32((*uint32)(unsafe.Pointer(&t.b.ctx.cancel)), 0)
	}
	t.mu.Unlock()
	if pending && t.ts != nil {
		C.slither_clear_interrupt(t.ts)
	}
}

// Close drops the cached functions, lets go of the thread state (deleting
// it unless another Thread or a call below still uses it) and unlocks the
// goroutine from its OS thread. Further calls return ErrClosed. Closing from
// the Thread's own host function or SetAlloc function, during its call,
// fails with [ErrBusy].
func (t *Thread) Close() error {
	if t.ts == nil {
		return nil
	}
	if C.slither_thread_check(t.ts) != 0 {
		return ErrWrongThread
	}
	if t.calls > 0 {
		return ErrBusy
	}
	t.b.release(t.ts)
	t.mu.Lock()
	C.slither_thread_delete(t.ts)
	t.ts = nil
	t.mu.Unlock()
	runtime.UnlockOSThread()
	return nil
}

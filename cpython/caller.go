//go:build cgo

package cpython

/*
#include "shim.h"
*/
import "C"

import (
	"context"
	"runtime"
	"sync/atomic"
	"unsafe"
)

// Caller runs calls on the calling goroutine's own OS thread: each call
// locks the goroutine to its current OS thread for the call's duration,
// attaches the Python thread state kept for that OS thread (made on its
// first call there, kept in C thread-local storage, deleted when the thread
// exits), calls, detaches and unlocks — state and call in one cgo crossing.
// There is no hand-off to a locked goroutine, which is what a [Thread]-based
// worker pays microseconds for; a Caller pays tenths of one.
//
// Choose a [Thread] instead where Python code must always see the same OS
// thread: thread-affine libraries (sqlite3 connections with
// check_same_thread, GUI or GL contexts), state kept in threading.local per
// worker. Python running under a Caller sees one thread per OS thread the
// Go program ran calls on, and threading.local values live as long as that
// OS thread (Go keeps idle threads: usually for the process's life).
//
// A Caller makes one call at a time: it is not safe for concurrent calls
// (use one per concurrent caller; a call nested in a call of the same
// Caller, from its host function on the same goroutine, works). Interrupt,
// ClearInterrupt and TID are safe from any goroutine.
//
// A call made on an OS thread that already holds a [Thread] (a Thread's
// host function calling a Caller) runs on that thread's one Python thread
// state, the Thread's, pushed on top of the Thread's own call like any
// nested call: an OS thread never holds two of our states, so interrupts and
// PyGILState_Ensure find the right one. The Thread's threading.local values
// are visible to the nested call.
type Caller struct {
	rt      *Runtime
	b       binding
	session string // what the C context holds

	active   atomic.Int32 // calls running, nested ones included
	inflight atomic.Int32 // Interrupt, TID and ending calls reading the C context
	closed   atomic.Bool
	released atomic.Bool // the C context is (being) freed: by Close or the last call's end
}

// NewCaller returns a Caller. It holds no OS thread and no thread state:
// those belong to the threads its calls run on.
func (rt *Runtime) NewCaller() *Caller {
	b, err := newBinding(true)
	if err != nil {
		// calloc of a few dozen bytes failed: the process is out of memory.
		panic(err)
	}
	return &Caller{rt: rt, b: b}
}

// CallBatch calls module.name(items) with items as one Python list and
// returns the list (or tuple) it returns, on the calling goroutine's OS
// thread. The whole batch is converted in a single crossing each way. It
// does not check the result's length.
func (c *Caller) CallBatch(module, name string, items []any) ([]any, error) {
	v, err := c.call(module, name, items, C.SLITHER_CALL_BATCH)
	if err != nil {
		return nil, err
	}
	return v.([]any), nil
}

// Call calls module.name(*args) and returns its result.
func (c *Caller) Call(module, name string, args ...any) (any, error) {
	return c.call(module, name, args, C.SLITHER_CALL_ARGS)
}

// CallBatchContext is CallBatch, interrupted (the call raises
// slither.Cancelled at its next bytecode boundary, and the error matches
// [ErrCancelled]) when ctx is done. Unlike registering Interrupt with
// context.AfterFunc before CallBatch, it has no window in which a
// cancellation arriving just before the call starts is missed. It returns
// when the call has stopped: the calling goroutine is the one running it.
func (c *Caller) CallBatchContext(ctx context.Context, module, name string, items []any) ([]any, error) {
	if ctx.Done() == nil {
		return c.CallBatch(module, name, items)
	}
	// Counted as running before ctx is looked at, so that an interrupt from
	// here on is not taken for one that came while idle; end clears what it
	// left, as for any outermost call.
	if !c.begin() {
		return nil, ErrClosed
	}
	defer c.end()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	// An AfterFunc that has started runs Interrupt on its own goroutine,
	// which may come after the call returned: wait for it before end (run
	// after this), which then clears what it sent, or it would hit the
	// Caller's next call. Interrupt never waits for this goroutine.
	done := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		defer close(done)
		c.Interrupt()
	})
	defer func() {
		if !stop() {
			<-done
		}
	}()
	return c.CallBatch(module, name, items)
}

func (c *Caller) call(module, name string, items []any, mode C.int) (any, error) {
	if !c.begin() {
		return nil, ErrClosed
	}
	defer c.end()
	if err := c.b.checkIdle(); err != nil {
		return nil, err
	}
	fn, err := c.b.lookup(nil, module, name)
	if err != nil {
		return nil, err
	}
	in, err := c.b.encode(items)
	if err != nil {
		return nil, err
	}
	refs, nrefs := crefs(c.b.enc.refs)
	status := C.slither_direct_call(c.b.ctx, fn, cbytes(in), C.size_t(len(in)), refs, nrefs, mode, C.int(MaxDepth))
	runtime.KeepAlive(in)
	runtime.KeepAlive(items)
	return c.b.result(status)
}

// begin counts a call as running and locks its OS thread, unless the
// Caller is closed (false: nothing is held). Counting before looking at
// closed pairs with Close, which sets closed before looking at active:
// either the call sees closed, or Close sees the call and leaves the
// release to its end.
func (c *Caller) begin() bool {
	runtime.LockOSThread()
	c.active.Add(1)
	if !c.closed.Load() {
		return true
	}
	// Close may have released already (it saw no call): touch nothing of
	// the C context. If it saw this call, the release is this call's.
	if c.active.Add(-1) == 0 {
		c.releaseOnce()
	}
	runtime.UnlockOSThread()
	return false
}

// end closes a call, still on its OS thread. The outermost call waits for
// any Interrupt in progress, then clears what interrupts left behind (the
// cancel flag, an async exception that arrived after Python finished), so
// that a late interrupt never hits a later call. It counts itself in
// inflight meanwhile, so that a Close from another goroutine, which may
// see no call running once active is down, frees nothing it still reads.
func (c *Caller) end() {
	defer runtime.UnlockOSThread()
	c.inflight.Add(1)
	last := c.active.Add(-1) == 0
	if last {
		for c.inflight.Load() != 1 {
			runtime.Gosched() // an Interrupt is between its check and its async exception
		}
		if atomic.LoadUint32(c.flag(&c.b.ctx.cancel)) != 0 || atomic.LoadUint32(c.flag(&c.b.ctx.sent)) != 0 {
			C.slither_direct_clear(c.b.ctx)
		}
	}
	c.inflight.Add(-1)
	if last && c.closed.Load() {
		c.releaseOnce()
	}
}

func (c *Caller) flag(p *C.uint32_t) *uint32 { return (*uint32)(unsafe.Pointer(p)) }

// Interrupt raises _slither_host.Cancelled (slither.Cancelled in Python)
// in the running call, at its next bytecode boundary; a call about to start
// stops at once. The exception is raised from the calling goroutine's own
// OS thread state: no hop to Python's main thread. It is a no-op when the
// Caller is idle or closed. An Interrupt that has begun before the call's
// end is dropped by the call before it returns; one that begins later, as
// the Caller's next call runs, hits that call: a caller that triggers
// Interrupt asynchronously (its own context.AfterFunc) must make sure it
// has returned before the next call starts, as [Caller.CallBatchContext]
// does. Code blocked in C (a sleep, a read) sees it only once it returns
// to Python. Safe to call from any goroutine.
func (c *Caller) Interrupt() {
	c.inflight.Add(1)
	defer c.inflight.Add(-1)
	if c.closed.Load() || c.active.Load() == 0 {
		return
	}
	ctx := c.b.ctx
	atomic.StoreUint32(c.flag(&ctx.cancel), 1)
	if ident := atomic.LoadUint64((*uint64)(unsafe.Pointer(&ctx.ident))); ident != 0 {
		atomic.StoreUint32(c.flag(&ctx.sent), 1)
		interruptThread(ident)
	}
}

// ClearInterrupt drops an interrupt that arrived too late for the call it
// was meant for. Every call already does so before it returns, so this is a
// no-op kept for symmetry with [Thread.ClearInterrupt]: a pool can treat
// both alike. Safe to call from any goroutine.
func (c *Caller) ClearInterrupt() {}

// TID is the OS thread id (gettid) of the call running now, 0 when idle.
// It is read from the C context, where the call's OS thread wrote the id it
// asked once per thread: no system call. Safe to call from any goroutine.
func (c *Caller) TID() int {
	c.inflight.Add(1)
	defer c.inflight.Add(-1)
	if c.released.Load() {
		return 0
	}
	return int(atomic.LoadInt64((*int64)(unsafe.Pointer(&c.b.ctx.tid))))
}

// SetHost makes h serve the host calls made during the Caller's calls
// (nil stops serving them). For nested calls (a host function calling in
// again on the same OS thread) the innermost call's host function serves,
// and the outer one's serves again when the inner call returns.
func (c *Caller) SetHost(h HostFunc) {
	if !c.closed.Load() {
		c.b.setHost(h)
	}
}

// SetTrace makes Python's slither.context() show traceID and spanID (as
// lowercase hex) during the calls that follow, until ClearTrace. The ids
// travel in the Caller's C context: no extra crossing, no Python call.
func (c *Caller) SetTrace(traceID [16]byte, spanID [8]byte) {
	if !c.closed.Load() {
		c.b.setTrace(traceID, spanID)
	}
}

// ClearTrace undoes SetTrace.
func (c *Caller) ClearTrace() {
	if !c.closed.Load() {
		c.b.clearTrace()
	}
}

// SetContext makes slither.context() show worker_id worker (None when
// worker < 0), pool "thread" and session_id session (None when "") during
// the calls that follow. Python reads them from the Caller's C context only
// when it asks: setting them costs no Python call. With worker < 0 and no
// session, slither.context() shows pool "none" (not in a pool), as plain
// Python would. A session id that is not valid UTF-8 reaches Python
// decoded with surrogateescape: distinct ids stay distinct, and
// id.encode("utf-8", "surrogateescape") gives its bytes back.
func (c *Caller) SetContext(worker int, session string) {
	if c.closed.Load() {
		return
	}
	c.b.ctx.worker = clampWorker(worker)
	if session == c.session {
		return
	}
	var p *C.char
	if session != "" {
		p = (*C.char)(unsafe.Pointer(unsafe.StringData(session)))
	}
	if C.slither_ctx_set_session(c.b.ctx, p, C.size_t(len(session))) != 0 {
		C.slither_ctx_set_session(c.b.ctx, nil, 0) // out of memory: no session rather than a stale one
		session = ""
	}
	c.session = session
}

// SetAlloc makes alloc allocate the []byte of each bytes (or bytearray)
// result of at least [AllocThreshold] bytes, instead of make: a caller that
// recycles its buffers gets warm memory (a fresh large allocation costs page
// faults and GC work far above the copy itself). alloc(n) returns a slice of
// length n (or capacity at least n; it is resliced to n); the caller then
// owns it. nil restores make. alloc runs while the result is read: a call
// of this Caller from it fails with [ErrBusy], and a panic in it fails the
// call with an error that wraps what it panicked with (when an error).
func (c *Caller) SetAlloc(alloc func(n int) []byte) { c.b.alloc = alloc }

// Close drops the cached function references and frees the Caller's C
// memory; further calls return [ErrClosed]. It is idempotent. Called from
// the Caller's own host function or SetAlloc function (during its call),
// or from another goroutine while a call runs, it takes effect when the
// outermost call returns; a call that starts after Close returns
// ErrClosed.
func (c *Caller) Close() error {
	if c.closed.Swap(true) {
		return nil
	}
	if c.active.Load() == 0 {
		lockedCall(c.releaseOnce)
	}
	return nil
}

// releaseOnce frees what the Caller holds, once (Close and the end of the
// last call may both get here), after every Interrupt, TID and ending call
// that reads it. The goroutine holds its OS thread.
func (c *Caller) releaseOnce() {
	if !c.released.CompareAndSwap(false, true) {
		return
	}
	for c.inflight.Load() != 0 {
		runtime.Gosched()
	}
	c.b.release(nil)
}

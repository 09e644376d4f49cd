//go:build cgo

package cpython

/*
#include "shim.h"
*/
import "C"

import (
	"fmt"
	"runtime"
	"sync"
	"syscall"
	"unsafe"
)

// Thread owns one persistent PyThreadState bound to one OS thread. It
// attaches the state for each call and detaches it afterwards, so creating
// and destroying thread states never happens on the hot path.
//
// A Thread is not safe for concurrent use: every method except Interrupt
// must be called from the goroutine that created it, which [Runtime.NewThread]
// locks to its OS thread until [Thread.Close].
type Thread struct {
	rt  *Runtime
	ts  *C.PyThreadState
	tid int // OS thread id, to catch use from another thread
	fns map[fnKey]*C.PyObject
	enc encoder
	out C.slither_buf // reused between calls; C memory

	host     HostFunc // serves host calls made on this thread
	hostEnc  encoder
	hostKeys map[string]string // interned names and map keys of host calls

	mu          sync.Mutex // guards interrupted, with Interrupt
	interrupted bool

	trace *C.slither_trace // this OS thread's trace slot (C thread-local memory)
}

type fnKey struct{ module, name string }

// maxKeptBuffer bounds the result buffer a Thread keeps between calls.
const maxKeptBuffer = 1 << 20

// NewThread creates a thread state for the calling goroutine, which it locks
// to its current OS thread until Close (the lock nests with any the caller
// already holds).
func (rt *Runtime) NewThread() (*Thread, error) {
	runtime.LockOSThread()
	ts := C.slither_thread_new()
	if ts == nil {
		runtime.UnlockOSThread()
		return nil, fmt.Errorf("cpython: PyThreadState_New failed")
	}
	return &Thread{rt: rt, ts: ts, tid: syscall.Gettid(), fns: map[fnKey]*C.PyObject{}, trace: C.slither_trace_slot()}, nil
}

// TID is the id of the OS thread the Thread is bound to (gettid).
func (t *Thread) TID() int { return t.tid }

// SetTrace makes Python's slither.context() show traceID and spanID
// (as lowercase hex) for the calls that follow on this thread, until
// ClearTrace. It writes this thread's C slot directly: no cgo call and no
// Python call, so a traced batch costs nothing more than an untraced one
// until Python asks. Like the other methods it must be called on the
// Thread's own goroutine.
func (t *Thread) SetTrace(traceID [16]byte, spanID [8]byte) {
	if t.ts == nil { // closed: the OS thread may serve other goroutines now
		return
	}
	t.trace.trace_id = *(*[16]C.uint8_t)(unsafe.Pointer(&traceID))
	t.trace.span_id = *(*[8]C.uint8_t)(unsafe.Pointer(&spanID))
	t.trace.valid = 1
}

// ClearTrace undoes SetTrace: slither.context() shows no trace ids.
func (t *Thread) ClearTrace() {
	if t.ts != nil {
		t.trace.valid = 0
	}
}

func (t *Thread) check() error {
	if t.ts == nil {
		return ErrClosed
	}
	if syscall.Gettid() != t.tid {
		return ErrWrongThread
	}
	return nil
}

// lookup returns module.name, importing the module on first use and keeping
// a reference to the callable for later calls.
func (t *Thread) lookup(module, name string) (*C.PyObject, error) {
	k := fnKey{module, name}
	if fn, ok := t.fns[k]; ok {
		return fn, nil
	}
	cm, cn := C.CString(module), C.CString(name)
	defer C.free(unsafe.Pointer(cm))
	defer C.free(unsafe.Pointer(cn))
	fn := C.slither_lookup(t.ts, cm, cn, &t.out)
	if fn == nil {
		return nil, decodeError(&t.out)
	}
	t.fns[k] = fn
	return fn, nil
}

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
	if err := t.check(); err != nil {
		return nil, err
	}
	fn, err := t.lookup(module, name)
	if err != nil {
		return nil, err
	}
	t.enc.buf = t.enc.buf[:0]
	if err := t.enc.encodeList(items); err != nil {
		return nil, err
	}
	if t.enc.buf == nil || cap(t.enc.buf) > maxKeptBuffer {
		defer func() { t.enc.buf = nil }()
	}
	return t.invoke(fn, t.enc.buf, mode)
}

// callRaw calls module.name(items) with in, the items as one encoded list,
// taken as is: shim.c must refuse a malformed one cleanly (the fuzz tests
// feed it anything).
func (t *Thread) callRaw(module, name string, in []byte) (any, error) {
	if err := t.check(); err != nil {
		return nil, err
	}
	fn, err := t.lookup(module, name)
	if err != nil {
		return nil, err
	}
	return t.invoke(fn, in, C.SLITHER_CALL_BATCH)
}

// invoke calls fn on the encoded list in and decodes its result.
func (t *Thread) invoke(fn *C.PyObject, in []byte, mode C.int) (any, error) {
	var p *C.char
	if len(in) > 0 {
		p = (*C.char)(unsafe.Pointer(&in[0]))
	}
	status := C.slither_call(t.ts, fn, p, C.size_t(len(in)), mode, C.int(MaxDepth), &t.out)
	runtime.KeepAlive(in)
	defer t.trimOut()
	b := unsafe.Slice((*byte)(unsafe.Pointer(t.out.data)), int(t.out.len))
	if status != C.SLITHER_OK {
		return nil, decodeError(&t.out)
	}
	d := decoder{b: b[1:]}
	v, err := d.decode()
	if err != nil {
		return nil, err
	}
	if len(d.b) != 0 {
		return nil, errCorrupt
	}
	return v, nil
}

func (t *Thread) trimOut() {
	if t.out.cap > maxKeptBuffer {
		C.slither_buf_free(&t.out)
	}
}

// Interrupt raises _slither_host.Cancelled (slither.Cancelled in Python)
// inside this thread's running Python code, at its next bytecode boundary.
// Code blocked in C (a sleep, a read) sees it only once it returns to Python.
// Safe to call from any goroutine; a pending interrupt that arrives after the
// call ended is discarded by [Thread.ClearInterrupt].
func (t *Thread) Interrupt() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.ts == nil {
		return
	}
	t.interrupted = true
	t.rt.interrupt(C.slither_thread_id(t.ts))
}

// ClearInterrupt drops an interrupt that was raised too late to hit the call
// it was meant for, so it cannot hit the next one. Cheap when none is pending.
func (t *Thread) ClearInterrupt() {
	t.mu.Lock()
	pending := t.interrupted
	t.interrupted = false
	t.mu.Unlock()
	if pending && t.ts != nil {
		C.slither_clear_interrupt(t.ts)
	}
}

// Close drops the cached functions, destroys the thread state and unlocks
// the goroutine from its OS thread. Further calls return ErrClosed.
func (t *Thread) Close() error {
	if t.ts == nil {
		return nil
	}
	if err := t.check(); err != nil {
		return err
	}
	t.SetHost(nil)
	for k, fn := range t.fns {
		C.slither_decref(t.ts, fn)
		delete(t.fns, k)
	}
	C.slither_buf_free(&t.out)
	t.ClearTrace() // the OS thread outlives the Thread
	t.mu.Lock()
	C.slither_thread_delete(t.ts)
	t.ts = nil
	t.mu.Unlock()
	runtime.UnlockOSThread()
	return nil
}

//go:build cgo

package cpython

/*
#include <stdlib.h>
#include "shim.h"
*/
import "C"

import (
	"errors"
	"fmt"
	"math"
	"runtime"
	"unsafe"
)

// binding is what a [Thread] and a [Caller] keep between calls: the
// callables they looked up, the encoder and the C result buffer they reuse,
// their C context (trace and context ids, host function handle, interrupt
// handshake) and their host function.
type binding struct {
	fns   map[fnKey]*C.PyObject
	last  fnKey // the last callable looked up, spared the map
	lastF *C.PyObject
	enc   encoder
	out   *C.slither_buf // the result buffer in ctx, reused between calls
	ctx   *C.slither_ctx
	host  hostServer
	alloc func(n int) []byte
}

type fnKey struct{ module, name string }

// maxKeptBuffer bounds the buffers a Thread or Caller keeps between calls:
// room for a 1 MiB value (a str; bytes that large cross by reference) with
// its framing, after the buffers' growth by doubling, so that such a value
// does not cost a fresh buffer per call.
const maxKeptBuffer = 2 << 20

var errNoMemory = errors.New("cpython: out of C memory")

func newBinding(bound bool) (binding, error) {
	var b C.int32_t
	if bound {
		b = 1
	}
	ctx := C.slither_ctx_new(b)
	if ctx == nil {
		return binding{}, errNoMemory
	}
	return binding{fns: map[fnKey]*C.PyObject{}, ctx: ctx, out: &ctx.out, enc: encoder{byRef: true}}, nil
}

// lookup returns module.name, importing the module on first use and keeping
// a reference to the callable for later calls. ts is a Thread's state, nil
// for a Caller (the OS thread's own).
func (b *binding) lookup(ts *C.PyThreadState, module, name string) (*C.PyObject, error) {
	k := fnKey{module, name}
	if k == b.last && b.lastF != nil {
		return b.lastF, nil
	}
	if fn, ok := b.fns[k]; ok {
		b.last, b.lastF = k, fn
		return fn, nil
	}
	cm, cn := C.CString(module), C.CString(name)
	defer C.free(unsafe.Pointer(cm))
	defer C.free(unsafe.Pointer(cn))
	var status C.int
	fn := C.slither_lookup(ts, cm, cn, b.out, &status)
	if fn == nil {
		if status == C.SLITHER_WRONG_THREAD {
			return nil, ErrWrongThread
		}
		return nil, decodeError(b.out)
	}
	b.fns[k] = fn
	b.last, b.lastF = k, fn
	return fn, nil
}

// errBusy refuses a call made while the same Thread's or Caller's result
// is written (by Python code that C's writing runs, through a host call)
// or read (by the SetAlloc function): it would overwrite the record being
// read and drop the large bytes the outer call still copies from.
var errBusy = fmt.Errorf("%w: called while its own result is written or read (from its SetAlloc function, or Python code run to convert the result)", ErrBusy)

// checkIdle refuses a call that would reuse the C result of the call
// whose result is being written or read; calls nested in the running
// Python code itself are fine.
func (b *binding) checkIdle() error {
	if b.ctx.busy != 0 {
		return errBusy
	}
	return nil
}

// encode encodes items, the call's argument list, into the reused buffer.
func (b *binding) encode(items []any) ([]byte, error) {
	b.enc.buf = b.enc.buf[:0]
	if err := b.enc.encodeList(items); err != nil {
		b.enc.unpin()
		b.trimEnc()
		return nil, err
	}
	return b.enc.buf, nil
}

func (b *binding) trimEnc() {
	if cap(b.enc.buf) > maxKeptBuffer {
		b.enc.buf = nil
	}
}

// cbytes is in as a C argument (nil when empty).
func cbytes(in []byte) *C.char {
	if len(in) == 0 {
		return nil
	}
	return (*C.char)(unsafe.Pointer(&in[0]))
}

// crefs is the encoder's reference table as C arguments.
func crefs(refs []uintptr) (*C.slither_ref, C.size_t) {
	if len(refs) == 0 {
		return nil, 0
	}
	return (*C.slither_ref)(unsafe.Pointer(&refs[0])), C.size_t(len(refs) / 2)
}

// result decodes the outcome of a call that returned status into out,
// copying the large bytes C kept straight out of their objects, which it
// then lets go of. The caller still holds the call's OS thread. The
// context is idle again when it returns (even by a panic).
func (b *binding) result(status C.int) (any, error) {
	b.enc.unpin()
	defer b.trimEnc()
	defer b.trimOut()
	defer func() { b.ctx.busy = 0 }()
	if status == C.SLITHER_WRONG_THREAD {
		return nil, ErrWrongThread
	}
	if status != C.SLITHER_OK {
		return nil, decodeError(b.out)
	}
	if b.out.len == 0 {
		return nil, errCorrupt
	}
	d := decoder{b: unsafe.Slice((*byte)(unsafe.Pointer(b.out.data)), int(b.out.len))[1:], alloc: b.alloc}
	if n := b.ctx.keep.n; n > 0 {
		d.kept = unsafe.Slice((*keptRef)(unsafe.Pointer(b.ctx.keep.refs)), int(n))
		defer C.slither_release_kept(b.ctx)
	}
	v, err := d.decode()
	if err != nil {
		return nil, err
	}
	if len(d.b) != 0 {
		return nil, errCorrupt
	}
	return v, nil
}

func (b *binding) trimOut() {
	if b.out.cap > maxKeptBuffer {
		C.slither_buf_free(b.out)
	}
}

func (b *binding) setTrace(traceID [16]byte, spanID [8]byte) {
	if b.ctx == nil {
		return
	}
	b.ctx.trace.trace_id = *(*[16]C.uint8_t)(unsafe.Pointer(&traceID))
	b.ctx.trace.span_id = *(*[8]C.uint8_t)(unsafe.Pointer(&spanID))
	b.ctx.trace.valid = 1
}

func (b *binding) clearTrace() {
	if b.ctx != nil {
		b.ctx.trace.valid = 0
	}
}

// setHost makes h serve the host calls of this binding's calls.
func (b *binding) setHost(h HostFunc) {
	if b.ctx == nil {
		return
	}
	b.ctx.host = C.uintptr_t(b.host.set(h))
}

// release drops the cached callables (with ts attached: a Thread's state,
// or nil for the OS thread's own) and frees the C memory. The caller holds
// the OS thread.
func (b *binding) release(ts *C.PyThreadState) {
	for k, fn := range b.fns {
		C.slither_decref(ts, fn)
		delete(b.fns, k)
	}
	b.last, b.lastF = fnKey{}, nil
	b.host.close()
	C.slither_ctx_drop_spares(ts, b.ctx)
	C.slither_ctx_free(b.ctx) // and the result buffer in it
	b.ctx, b.out = nil, nil
	b.enc.buf = nil
}

// lockedCall runs f with the goroutine locked to its OS thread.
func lockedCall(f func()) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	f()
}

// interruptThread raises _slither_host.Cancelled in the Python thread
// ident, from the calling goroutine's own OS thread state.
func interruptThread(ident uint64) {
	lockedCall(func() { C.slither_interrupt(C.uint64_t(ident)) })
}

// clampWorker fits a worker id into the C context (< 0: none).
func clampWorker(w int) C.int32_t {
	if w < 0 || w > math.MaxInt32 {
		return -1
	}
	return C.int32_t(w)
}

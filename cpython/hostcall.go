//go:build cgo

package cpython

/*
#include "shim.h"
*/
import "C"

import (
	"fmt"
	"sync"
	"unsafe"
)

// HostFunc serves _slither_host.call(name, args) — what slither.host_call
// uses in the embedded interpreter — made by Python code running on a
// [Thread]. It runs on that Thread's own goroutine, in the middle of the
// Thread's call, with the Python thread state detached. A returned error
// reaches Python as _slither_host.HostError carrying its text.
type HostFunc func(name string, args []any) (any, error)

// hostThreads maps a PyThreadState address to its Thread, for host calls.
var hostThreads sync.Map

// SetHost makes h serve host calls made on t (nil stops serving them).
func (t *Thread) SetHost(h HostFunc) {
	t.host = h
	key := uintptr(unsafe.Pointer(t.ts))
	if h == nil {
		hostThreads.Delete(key)
		return
	}
	hostThreads.Store(key, t)
}

//export slitherHostCall
func slitherHostCall(ts C.uintptr_t, in *C.char, inlen C.size_t, out *C.slither_buf) (status C.int) {
	fail := func(msg string) C.int {
		b := []byte(msg)
		if len(b) == 0 {
			b = []byte("host call failed")
		}
		C.slither_buf_set(out, (*C.char)(unsafe.Pointer(&b[0])), C.size_t(len(b)))
		return 1
	}
	defer func() {
		if r := recover(); r != nil {
			status = fail(fmt.Sprintf("the Go host function panicked: %v", r))
		}
	}()
	v, ok := hostThreads.Load(uintptr(ts))
	if !ok {
		return fail("no Go host function serves this Python thread (host calls work inside pool workers)")
	}
	t := v.(*Thread)
	if t.hostKeys == nil {
		t.hostKeys = map[string]string{}
	}
	// The call is the list [name, args]: read its frame by hand, so that
	// the name is interned and no outer list is built.
	d := decoder{b: unsafe.Slice((*byte)(unsafe.Pointer(in)), int(inlen)), intern: t.hostKeys}
	if len(d.b) < 1 || d.b[0] != tagList {
		return fail("malformed host call")
	}
	d.b = d.b[1:]
	if n, err := d.u64(); err != nil || n != 2 || len(d.b) < 1 || d.b[0] != tagStr {
		return fail("malformed host call")
	}
	d.b = d.b[1:]
	name, err := d.key()
	if err != nil {
		return fail("malformed host call")
	}
	payload, err := d.decode()
	args, ok := payload.([]any)
	if err != nil || !ok {
		return fail(fmt.Sprintf("malformed host call (%v)", err))
	}
	res, err := t.host(name, args)
	if err != nil {
		return fail(err.Error())
	}
	t.hostEnc.buf = t.hostEnc.buf[:0]
	if err := t.hostEnc.encode(res, []string{"result"}, 1); err != nil {
		return fail(err.Error())
	}
	b := t.hostEnc.buf
	if C.slither_buf_set(out, (*C.char)(unsafe.Pointer(&b[0])), C.size_t(len(b))) != 0 {
		return fail("out of memory")
	}
	if cap(b) > maxKeptBuffer {
		t.hostEnc.buf = nil
	}
	return 0
}

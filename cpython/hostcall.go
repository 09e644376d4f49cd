//go:build cgo

package cpython

/*
#include "shim.h"
*/
import "C"

import (
	"fmt"
	"runtime/cgo"
	"unsafe"
)

// HostFunc serves _slither_host.call(name, args) — what slither.host_call
// uses in the embedded interpreter — made by Python code running in a call
// of a [Thread] or a [Caller]. It runs on the goroutine that made the call,
// in the middle of it, with the Python thread state detached. A returned
// error reaches Python as _slither_host.HostError carrying its text.
type HostFunc func(name string, args []any) (any, error)

// hostServer serves the host calls of one Thread or Caller. C finds it
// through a runtime/cgo handle kept in the C context of the call running on
// the thread (saved and restored around nested calls), never by a lookup
// keyed by the thread state.
type hostServer struct {
	fn     HostFunc
	handle cgo.Handle // 0 until a host function is set
	enc    encoder
	keys   map[string]string // interned names and map keys of host calls
}

// set makes fn serve host calls and returns the handle C should call
// through, 0 for none.
func (s *hostServer) set(fn HostFunc) cgo.Handle {
	s.fn = fn
	if fn == nil {
		return 0
	}
	if s.handle == 0 {
		s.handle = cgo.NewHandle(s)
	}
	return s.handle
}

func (s *hostServer) close() {
	s.fn = nil
	if s.handle != 0 {
		s.handle.Delete()
		s.handle = 0
	}
}

// SetHost makes h serve host calls made during t's calls (nil stops serving
// them). For a call nested in another one on the same OS thread (a host
// function calling in again), the innermost call's host function serves.
func (t *Thread) SetHost(h HostFunc) { t.b.setHost(h) }

//export slitherHostCall
func slitherHostCall(host C.uintptr_t, in *C.char, inlen C.size_t, out *C.slither_buf) (status C.int) {
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
	s, ok := cgo.Handle(host).Value().(*hostServer)
	if !ok || s.fn == nil {
		return fail("no Go host function serves this Python thread (host calls work inside pool workers)")
	}
	if s.keys == nil {
		s.keys = map[string]string{}
	}
	// The call is the list [name, args]: read its frame by hand, so that
	// the name is interned and no outer list is built.
	d := decoder{b: unsafe.Slice((*byte)(unsafe.Pointer(in)), int(inlen)), intern: s.keys}
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
	res, err := s.fn(name, args)
	if err != nil {
		return fail(err.Error())
	}
	s.enc.buf = s.enc.buf[:0]
	if err := s.enc.encode(res, []string{"result"}, 1); err != nil {
		return fail(err.Error())
	}
	b := s.enc.buf
	if C.slither_buf_set(out, (*C.char)(unsafe.Pointer(&b[0])), C.size_t(len(b))) != 0 {
		return fail("out of memory")
	}
	if cap(b) > maxKeptBuffer {
		s.enc.buf = nil
	}
	return 0
}

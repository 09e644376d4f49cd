//go:build cgo

package cpython

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/big"
	"runtime"
	"slices"
	"strings"
	"unsafe"

	"github.com/slither-go/slither/internal/convert"
)

// MaxDepth is how deeply lists and dicts may nest in a value that crosses
// between Go and Python, either way; every pointer a Go value goes through
// counts as a level too. Deeper (or cyclic) values fail with a
// [*ConversionError] rather than exhausting the stack.
const MaxDepth = convert.MaxDepth

// ErrConversion is matched (errors.Is) by every [*ConversionError]. It is
// the same value as pools.ErrConversion and wire.ErrConversion.
var ErrConversion = convert.ErrConversion

// ConversionError reports a value that has no mapping between Go and Python.
// Path locates it inside the value, e.g. "[3][name]"; it is empty for the
// top level. Both pools report conversion failures with this one type.
type ConversionError = convert.ConversionError

// Wire tags, shared with codec.c.
const (
	tagNone   = 'N'
	tagTrue   = 'T'
	tagFalse  = 'F'
	tagInt    = 'i'
	tagBigInt = 'I'
	tagFloat  = 'd'
	tagStr    = 's'
	tagBytes  = 'b'
	tagList   = 'l'
	tagMap    = 'm'
	tagRef    = 'r' // u64 index into the table that travels beside the buffer
)

// refMin is the size from which a bytes value crosses by reference (shim.h
// SLITHER_REF_MIN): copied once, by Python straight from the Go slice or by
// Go straight from the Python object, never through a buffer.
const refMin = 32 << 10

// encoder appends Go values in the wire format. It is the
// [convert.Emitter] of the shared walk, which does the type mapping and
// every check.
type encoder struct {
	buf  []byte
	walk convert.Walker
	// byRef lets Bytes pass large slices by reference: refs gets their
	// (address, length) pairs, pinned by pin until unpin, after the call.
	// Only a call's arguments do; a host call's result is copied.
	byRef bool
	refs  []uintptr
	pin   runtime.Pinner
}

// unpin ends the call's references.
func (e *encoder) unpin() {
	if len(e.refs) > 0 {
		e.pin.Unpin()
		clear(e.refs)
		e.refs = e.refs[:0]
	}
}

// encodeList encodes items as one Python list, the top-level shape of every call.
func (e *encoder) encodeList(items []any) error { return e.walk.List(e, items) }

// encode encodes v, found at depth inside the value sent, at path (the
// segments joined).
func (e *encoder) encode(v any, path []string, depth int) error {
	return e.walk.Value(e, v, depth, strings.Join(path, ""))
}

func (e *encoder) u64(v uint64) { e.buf = binary.LittleEndian.AppendUint64(e.buf, v) }

func (e *encoder) str(tag byte, s string) {
	e.buf = append(e.buf, tag)
	e.u64(uint64(len(s)))
	e.buf = append(e.buf, s...)
}

func (e *encoder) None() { e.buf = append(e.buf, tagNone) }

func (e *encoder) Bool(v bool) {
	if v {
		e.buf = append(e.buf, tagTrue)
	} else {
		e.buf = append(e.buf, tagFalse)
	}
}

func (e *encoder) Int(v int64) {
	e.buf = append(e.buf, tagInt)
	e.u64(uint64(v))
}

func (e *encoder) BigInt(v *big.Int) {
	e.buf = append(e.buf, tagBigInt)
	at := len(e.buf)
	e.u64(0) // the length, once known
	e.buf = v.Append(e.buf, 10)
	binary.LittleEndian.PutUint64(e.buf[at:], uint64(len(e.buf)-at-8))
}

func (e *encoder) Float(v float64) {
	e.buf = append(e.buf, tagFloat)
	e.u64(math.Float64bits(v))
}

func (e *encoder) String(s string) { e.str(tagStr, s) }

func (e *encoder) Bytes(b []byte) {
	if e.byRef && len(b) >= refMin {
		// Pinned, the slice stays where it is and alive (even a temporary
		// one of the walk's) until the call ends; the pair is only bytes to
		// cgo's pointer check.
		p := unsafe.SliceData(b)
		e.pin.Pin(p)
		e.buf = append(e.buf, tagRef)
		e.u64(uint64(len(e.refs) / 2))
		e.refs = append(e.refs, uintptr(unsafe.Pointer(p)), uintptr(len(b)))
		return
	}
	e.buf = append(e.buf, tagBytes)
	e.u64(uint64(len(b)))
	e.buf = append(e.buf, b...)
}

func (e *encoder) BeginList(n int) {
	e.buf = append(e.buf, tagList)
	e.u64(uint64(n))
}

func (e *encoder) Item(int) {}
func (e *encoder) EndList() {}

func (e *encoder) BeginDict(keys []string) {
	e.buf = append(e.buf, tagMap)
	e.u64(uint64(len(keys)))
}

func (e *encoder) Key(_ int, k string) {
	e.u64(uint64(len(k)))
	e.buf = append(e.buf, k...)
}

func (e *encoder) EndDict() {}

// decoder reads values written by codec.c. It copies everything it keeps, so
// the buffer may be freed afterwards.
type decoder struct {
	b []byte
	// alloc, when set, allocates bytes values of AllocThreshold bytes or
	// more (SetAlloc).
	alloc func(n int) []byte
	// kept is the table 'r' values index: C memory of the call's result
	// (bytes objects C keeps alive until the decoding is done); empty
	// elsewhere, where 'r' is corrupt.
	kept []keptRef
	// intern, when set, dedupes map keys (few distinct ones, decoded over
	// and over by host calls) so that they cost no allocation.
	intern map[string]string
}

// maxInterned bounds a decoder's intern table.
const maxInterned = 4096

func (d *decoder) key() (string, error) {
	b, err := d.bytes()
	if err != nil || d.intern == nil {
		return string(b), err
	}
	if s, ok := d.intern[string(b)]; ok { // no allocation for the lookup
		return s, nil
	}
	s := string(b)
	if len(d.intern) < maxInterned {
		d.intern[s] = s
	}
	return s, nil
}

// AllocThreshold is the size from which a bytes result is allocated by
// the function given to SetAlloc ([Thread.SetAlloc], [Caller.SetAlloc]).
const AllocThreshold = 64 << 10

// clone copies s into memory of its own, from d.alloc when s is large.
func (d *decoder) clone(s []byte) ([]byte, error) {
	if d.alloc == nil || len(s) < AllocThreshold {
		return slices.Clone(s), nil
	}
	b, err := d.allocate(len(s))
	if err != nil {
		return nil, err
	}
	if cap(b) < len(s) {
		b = make([]byte, len(s))
	}
	b = b[:len(s)]
	copy(b, s)
	return b, nil
}

// allocate calls the user's SetAlloc function, whose panic becomes the
// call's error: the caller (a pool's slot, a worker goroutine) goes on,
// and the decoding's deferred clean-up (kept references, busy flag) runs
// as for any other error.
func (d *decoder) allocate(n int) (b []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			if e, ok := r.(error); ok {
				err = fmt.Errorf("cpython: the SetAlloc function panicked: %w", e)
			} else {
				err = fmt.Errorf("cpython: the SetAlloc function panicked: %v", r)
			}
		}
	}()
	return d.alloc(n), nil
}

// keptRef mirrors shim.h's slither_kept.
type keptRef struct {
	p   unsafe.Pointer // C memory: a bytes object's contents
	n   uint64
	obj unsafe.Pointer
}

var errCorrupt = errors.New("cpython: corrupt value buffer from C")

func (d *decoder) u64() (uint64, error) {
	if len(d.b) < 8 {
		return 0, errCorrupt
	}
	v := binary.LittleEndian.Uint64(d.b)
	d.b = d.b[8:]
	return v, nil
}

func (d *decoder) bytes() ([]byte, error) {
	n, err := d.u64()
	if err != nil || uint64(len(d.b)) < n {
		return nil, errCorrupt
	}
	s := d.b[:n]
	d.b = d.b[n:]
	return s, nil
}

func (d *decoder) string() (string, error) {
	s, err := d.bytes()
	return string(s), err
}

// decode reads one value. Nothing it allocates is larger than a small
// multiple of the input it has left: every claimed length or count is
// checked against the remaining bytes first, and nesting deeper than
// MaxDepth (which codec.c never writes) is corrupt.
func (d *decoder) decode() (any, error) { return d.value(0) }

// minMapEntry is the smallest encoding of a dict entry: a key length and a
// one-byte value.
const minMapEntry = 8 + 1

func (d *decoder) value(depth int) (any, error) {
	if len(d.b) == 0 || depth > MaxDepth {
		return nil, errCorrupt
	}
	tag := d.b[0]
	d.b = d.b[1:]
	switch tag {
	case tagNone:
		return nil, nil
	case tagTrue:
		return true, nil
	case tagFalse:
		return false, nil
	case tagInt:
		v, err := d.u64()
		return int64(v), err
	case tagFloat:
		v, err := d.u64()
		return math.Float64frombits(v), err
	case tagStr:
		return d.string()
	case tagBytes:
		s, err := d.bytes()
		if err != nil {
			return nil, err
		}
		return d.clone(s)
	case tagRef:
		i, err := d.u64()
		if err != nil || i >= uint64(len(d.kept)) || d.kept[i].n > math.MaxInt {
			return nil, errCorrupt
		}
		k := d.kept[i]
		return d.clone(unsafe.Slice((*byte)(k.p), int(k.n))) // the one copy
	case tagBigInt:
		s, err := d.string()
		if err != nil {
			return nil, err
		}
		v, ok := new(big.Int).SetString(s, 10)
		if !ok {
			return nil, errCorrupt
		}
		return v, nil
	case tagList:
		n, err := d.u64()
		if err != nil || n > uint64(len(d.b)) { // an item takes a byte at least
			return nil, errCorrupt
		}
		out := make([]any, n)
		for i := range out {
			if out[i], err = d.value(depth + 1); err != nil {
				return nil, err
			}
		}
		return out, nil
	case tagMap:
		n, err := d.u64()
		if err != nil || n > uint64(len(d.b)/minMapEntry) {
			return nil, errCorrupt
		}
		out := make(map[string]any, n)
		for range n {
			k, err := d.key()
			if err != nil {
				return nil, err
			}
			if out[k], err = d.value(depth + 1); err != nil {
				return nil, err
			}
		}
		return out, nil
	}
	return nil, errCorrupt
}

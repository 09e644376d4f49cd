package wire

import (
	"bytes"
	"encoding/json"
	"strconv"

	"github.com/slither-go/slither/internal/convert"
)

// Shared memory: a worker and the pool may also pass large byte strings
// through a memory area both have mapped (the process pool's per-worker
// arena), each side writing into its own half. A byte string there is the
// tag {"$a": [off, n]} from Go (n bytes at offset off of Go's half) and
// {"$a": [slot, off, n]} from a worker (slot: the entry of the worker's
// table that Go clears once it has copied the bytes out). Offsets and
// lengths are untrusted: the reader checks them against the area.
const tagShared = "$a"

// Sharer places byte strings in the sender's half of a shared area.
type Sharer interface {
	// Share copies b there and returns its offset, or false (nothing
	// done) when b is too small to be worth it or there is no room: b
	// then travels in the frame.
	Share(b []byte) (off int, ok bool)
}

// Loader reads the byte strings a worker placed in its half of a shared
// area.
type Loader interface {
	// Load returns a copy of the n bytes at off and frees slot, or an
	// error naming what is wrong with the reference.
	Load(slot, off, n uint64) ([]byte, error)
}

// shared appends the tag of b placed at off.
func (e *emitter) shared(off, n int) {
	e.Buf = append(e.Buf, `{"$a":[`...)
	e.Buf = strconv.AppendInt(e.Buf, int64(off), 10)
	e.Buf = append(e.Buf, ',')
	e.Buf = strconv.AppendInt(e.Buf, int64(n), 10)
	e.Buf = append(e.Buf, "]}"...)
}

// DecodeShared is [Decode] for a message whose byte strings may be in a
// shared area: ld copies them out (and frees them). A reference ld
// rejects fails the decoding with a [*ConversionError] that says why.
func DecodeShared(data []byte, atts [][]byte, ld Loader) (any, error) {
	return decode(data, atts, ld)
}

// resolveShared resolves {"$a": [slot, off, n]}.
func resolveShared(tv any, ld Loader) (any, *convert.Trace) {
	v, bad := sharedRef(tv)
	if bad != "" {
		return nil, convert.Failf("bad shared-memory reference %v: %s", tv, bad)
	}
	if ld == nil {
		return nil, convert.Failf("shared-memory reference %v, but no shared memory", tv)
	}
	b, err := ld.Load(v[0], v[1], v[2])
	if err != nil {
		return nil, convert.Failf("%v", err)
	}
	return b, nil
}

// sharedRef parses a worker's reference [slot, off, n], or says what is
// wrong with it.
func sharedRef(tv any) (v [3]uint64, bad string) {
	l, ok := tv.([]any)
	if !ok || len(l) != 3 {
		return v, "not [slot, offset, length]"
	}
	for i := range v {
		n, _ := l[i].(json.Number)
		x, err := strconv.ParseUint(string(n), 10, 64)
		if err != nil {
			return v, "not three non-negative integers"
		}
		v[i] = x
	}
	return v, ""
}

// SharedRefs calls f with every well-formed worker reference
// {"$a": [slot, off, n]} in the value data, whatever else is wrong with
// it: decoding stops at the first error, and the pieces after it must be
// freed all the same.
func SharedRefs(data []byte, f func(slot, off, n uint64)) {
	d := json.NewDecoder(bytes.NewReader(data))
	d.UseNumber()
	var v any
	if d.Decode(&v) == nil {
		sharedRefs(v, f, 0)
	}
}

func sharedRefs(v any, f func(slot, off, n uint64), depth int) {
	if depth > MaxDepth {
		return
	}
	switch x := v.(type) {
	case []any:
		for _, item := range x {
			sharedRefs(item, f, depth+1)
		}
	case map[string]any:
		if tv, ok := x[tagShared]; ok && len(x) == 1 {
			if r, bad := sharedRef(tv); bad == "" {
				f(r[0], r[1], r[2])
			}
			return
		}
		for _, item := range x {
			sharedRefs(item, f, depth+1)
		}
	}
}

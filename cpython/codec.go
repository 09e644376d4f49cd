//go:build cgo

package cpython

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/big"
	"reflect"
	"slices"
	"strconv"
	"unicode/utf8"
)

// MaxDepth is how deeply lists and dicts may nest in a value that crosses
// between Go and Python, either way. Deeper values fail with a
// [*ConversionError] rather than exhausting the C stack.
const MaxDepth = 1000

// ErrConversion is matched (errors.Is) by every [*ConversionError].
var ErrConversion = errors.New("cpython: value cannot cross between Go and Python")

// ConversionError reports a value that has no mapping between Go and Python.
// Path locates it inside the value, e.g. "[3][name]"; it is empty for the
// top level.
type ConversionError struct {
	Direction string // "go->python" or "python->go"
	Path      string
	Reason    string
}

func (e *ConversionError) Error() string {
	at := ""
	if e.Path != "" {
		at = " at " + e.Path
	}
	return fmt.Sprintf("cpython: %s conversion%s: %s", e.Direction, at, e.Reason)
}

// Is makes errors.Is(err, ErrConversion) true.
func (e *ConversionError) Is(target error) bool { return target == ErrConversion }

// Wire tags, shared with shim.c.
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
)

// encoder appends Go values in the wire format.
type encoder struct {
	buf []byte
}

func (e *encoder) u64(v uint64) { e.buf = binary.LittleEndian.AppendUint64(e.buf, v) }

func (e *encoder) str(tag byte, s string) {
	e.buf = append(e.buf, tag)
	e.u64(uint64(len(s)))
	e.buf = append(e.buf, s...)
}

func (e *encoder) raw(tag byte, b []byte) {
	e.buf = append(e.buf, tag)
	e.u64(uint64(len(b)))
	e.buf = append(e.buf, b...)
}

func convErr(path []string, format string, args ...any) error {
	p := ""
	for _, s := range path {
		p += s
	}
	return &ConversionError{Direction: "go->python", Path: p, Reason: fmt.Sprintf(format, args...)}
}

// encodeList encodes items as one Python list, the top-level shape of every call.
func (e *encoder) encodeList(items []any) error {
	e.buf = append(e.buf, tagList)
	e.u64(uint64(len(items)))
	path := make([]string, 0, 8)
	for i, v := range items {
		if err := e.encode(v, append(path, "["+strconv.Itoa(i)+"]"), 1); err != nil {
			return err
		}
	}
	return nil
}

func (e *encoder) encode(v any, path []string, depth int) error {
	if depth > MaxDepth {
		return convErr(path, "nesting deeper than %d levels", MaxDepth)
	}
	switch x := v.(type) {
	case nil:
		e.buf = append(e.buf, tagNone)
	case bool:
		if x {
			e.buf = append(e.buf, tagTrue)
		} else {
			e.buf = append(e.buf, tagFalse)
		}
	case int:
		e.int(int64(x))
	case int64:
		e.int(x)
	case int32:
		e.int(int64(x))
	case int16:
		e.int(int64(x))
	case int8:
		e.int(int64(x))
	case uint:
		e.uint(uint64(x))
	case uint64:
		e.uint(x)
	case uint32:
		e.int(int64(x))
	case uint16:
		e.int(int64(x))
	case uint8:
		e.int(int64(x))
	case float64:
		e.float(x)
	case float32:
		e.float(float64(x))
	case string:
		if !utf8.ValidString(x) {
			return convErr(path, "string is not valid UTF-8")
		}
		e.str(tagStr, x)
	case []byte:
		e.raw(tagBytes, x)
	case *big.Int:
		if x == nil {
			e.buf = append(e.buf, tagNone)
		} else {
			e.str(tagBigInt, x.String())
		}
	case []any:
		e.buf = append(e.buf, tagList)
		e.u64(uint64(len(x)))
		for i, item := range x {
			if err := e.encode(item, append(path, "["+strconv.Itoa(i)+"]"), depth+1); err != nil {
				return err
			}
		}
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		e.buf = append(e.buf, tagMap)
		e.u64(uint64(len(keys)))
		for _, k := range keys {
			if err := e.key(k, path); err != nil {
				return err
			}
			if err := e.encode(x[k], append(path, "["+k+"]"), depth+1); err != nil {
				return err
			}
		}
	default:
		return e.reflect(reflect.ValueOf(v), path, depth)
	}
	return nil
}

func (e *encoder) key(k string, path []string) error {
	if !utf8.ValidString(k) {
		return convErr(path, "map key %q is not valid UTF-8", k)
	}
	e.u64(uint64(len(k)))
	e.buf = append(e.buf, k...)
	return nil
}

func (e *encoder) int(v int64) {
	e.buf = append(e.buf, tagInt)
	e.u64(uint64(v))
}

func (e *encoder) uint(v uint64) {
	if v > math.MaxInt64 {
		e.str(tagBigInt, strconv.FormatUint(v, 10))
		return
	}
	e.int(int64(v))
}

func (e *encoder) float(v float64) {
	e.buf = append(e.buf, tagFloat)
	e.u64(math.Float64bits(v))
}

// reflect handles typed slices, arrays, string-keyed maps and pointers, so
// that []string or map[string]float64 cross without the caller re-boxing.
func (e *encoder) reflect(rv reflect.Value, path []string, depth int) error {
	switch rv.Kind() {
	case reflect.Pointer, reflect.Interface:
		if rv.IsNil() {
			e.buf = append(e.buf, tagNone)
			return nil
		}
		return e.encode(rv.Elem().Interface(), path, depth)
	case reflect.Bool:
		return e.encode(rv.Bool(), path, depth)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		e.int(rv.Int())
		return nil
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		e.uint(rv.Uint())
		return nil
	case reflect.Float32, reflect.Float64:
		e.float(rv.Float())
		return nil
	case reflect.String:
		return e.encode(rv.String(), path, depth)
	case reflect.Slice, reflect.Array:
		if rv.Kind() == reflect.Slice && rv.IsNil() {
			e.buf = append(e.buf, tagNone)
			return nil
		}
		if rv.Type().Elem().Kind() == reflect.Uint8 {
			b := make([]byte, rv.Len())
			reflect.Copy(reflect.ValueOf(b), rv)
			e.raw(tagBytes, b)
			return nil
		}
		n := rv.Len()
		e.buf = append(e.buf, tagList)
		e.u64(uint64(n))
		for i := range n {
			if err := e.encode(rv.Index(i).Interface(), append(path, "["+strconv.Itoa(i)+"]"), depth+1); err != nil {
				return err
			}
		}
		return nil
	case reflect.Map:
		if rv.Type().Key().Kind() != reflect.String {
			return convErr(path, "map key type %s is not a string (Python dicts from Go need string keys)", rv.Type().Key())
		}
		if rv.IsNil() {
			e.buf = append(e.buf, tagNone)
			return nil
		}
		keys := rv.MapKeys()
		slices.SortFunc(keys, func(a, b reflect.Value) int { return cmp.Compare(a.String(), b.String()) })
		e.buf = append(e.buf, tagMap)
		e.u64(uint64(len(keys)))
		for _, k := range keys {
			if err := e.key(k.String(), path); err != nil {
				return err
			}
			if err := e.encode(rv.MapIndex(k).Interface(), append(path, "["+k.String()+"]"), depth+1); err != nil {
				return err
			}
		}
		return nil
	}
	if !rv.IsValid() {
		e.buf = append(e.buf, tagNone)
		return nil
	}
	return convErr(path, "Go type %s has no Python mapping", rv.Type())
}

// decoder reads values written by shim.c. It copies everything it keeps, so
// the buffer may be freed afterwards.
type decoder struct {
	b []byte
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

func (d *decoder) decode() (any, error) {
	if len(d.b) == 0 {
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
		return slices.Clone(s), nil
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
		if err != nil || n > uint64(len(d.b)) {
			return nil, errCorrupt
		}
		out := make([]any, n)
		for i := range out {
			if out[i], err = d.decode(); err != nil {
				return nil, err
			}
		}
		return out, nil
	case tagMap:
		n, err := d.u64()
		if err != nil || n > uint64(len(d.b)) {
			return nil, errCorrupt
		}
		out := make(map[string]any, n)
		for range n {
			k, err := d.key()
			if err != nil {
				return nil, err
			}
			if out[k], err = d.decode(); err != nil {
				return nil, err
			}
		}
		return out, nil
	}
	return nil, errCorrupt
}

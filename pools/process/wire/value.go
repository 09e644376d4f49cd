package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/big"
	"strconv"
	"strings"

	"github.com/slither-go/slither/internal/convert"
)

// MaxDepth is how deeply lists and maps may nest in a value sent either way
// (every pointer a Go value goes through counts as a level too); the same
// limit as the embedded pool's.
const MaxDepth = convert.MaxDepth

// ErrConversion is matched (errors.Is) by every [*ConversionError]. It is
// the same value as pools.ErrConversion and cpython.ErrConversion.
var ErrConversion = convert.ErrConversion

// ConversionError reports a value with no mapping between Go and Python.
// Path locates it inside the value, e.g. "[3][name]". Both pools report
// conversion failures with this one type.
type ConversionError = convert.ConversionError

// Tags: a JSON object with exactly one of these keys is not a plain dict.
const (
	tagBytes = "$b" // {"$b": i}: attachment i
	tagFloat = "$f" // {"$f": "nan"|"inf"|"-inf"}
	tagDict  = "$d" // {"$d": [[k, v], ...]}: a dict whose one key is a tag
	tagInt   = "$i" // reserved
	// tagShared ("$a"): a byte string in shared memory (shared.go).
)

func isTag(k string) bool {
	return k == tagBytes || k == tagFloat || k == tagDict || k == tagInt || k == tagShared
}

// Encoder appends Go values as tagged JSON, moving byte strings into
// attachments (or, with Share set, into shared memory when it takes them).
// The zero value is ready; Reset reuses its buffers. Which Go values map to
// what is the shared walk's ([convert.Walker]), the same as the embedded
// pool's; big integers of any size become JSON numbers.
type Encoder struct {
	Buf  []byte
	Atts [][]byte
	// Share, when set, is offered every byte string first; Shared lists
	// the offsets it took, for the caller to free once the receiver has
	// copied them out, and SharedBytes counts their bytes.
	Share       Sharer
	Shared      []int
	SharedBytes int
	walk        convert.Walker
	esc         []bool // for each dict being written, whether it is tag-escaped
}

// Reset empties the encoder, keeping its buffers.
func (e *Encoder) Reset() {
	e.Buf = e.Buf[:0]
	clear(e.Atts)
	e.Atts = e.Atts[:0]
	e.Share = nil
	e.Shared = e.Shared[:0]
	e.SharedBytes = 0
	e.esc = e.esc[:0]
}

// List appends items as one JSON array, the shape of every batch.
func (e *Encoder) List(items []any) error {
	e.esc = e.esc[:0] // a failed walk may have left dicts open
	return e.walk.List((*emitter)(e), items)
}

// emitter writes the shared walk's events as tagged JSON. It is a distinct
// type so that its methods are not part of Encoder's API.
type emitter Encoder

func (e *emitter) None()       { e.Buf = append(e.Buf, "null"...) }
func (e *emitter) Bool(v bool) { e.Buf = strconv.AppendBool(e.Buf, v) }
func (e *emitter) Int(v int64) { e.Buf = strconv.AppendInt(e.Buf, v, 10) }

func (e *emitter) BigInt(v *big.Int) { e.Buf = v.Append(e.Buf, 10) }

func (e *emitter) Float(f float64) {
	switch {
	case math.IsNaN(f):
		e.Buf = append(e.Buf, `{"$f":"nan"}`...)
	case math.IsInf(f, 1):
		e.Buf = append(e.Buf, `{"$f":"inf"}`...)
	case math.IsInf(f, -1):
		e.Buf = append(e.Buf, `{"$f":"-inf"}`...)
	default:
		start := len(e.Buf)
		e.Buf = strconv.AppendFloat(e.Buf, f, 'g', -1, 64)
		// Python must read a float, never an int: "2" becomes "2.0".
		if !bytes.ContainsAny(e.Buf[start:], ".eE") {
			e.Buf = append(e.Buf, ".0"...)
		}
	}
}

func (e *emitter) String(s string) { e.Buf = AppendString(e.Buf, s) }

func (e *emitter) Bytes(b []byte) {
	if e.Share != nil {
		if off, ok := e.Share.Share(b); ok {
			e.Shared = append(e.Shared, off)
			e.SharedBytes += len(b)
			e.shared(off, len(b))
			return
		}
	}
	e.Buf = append(e.Buf, `{"$b":`...)
	e.Buf = strconv.AppendInt(e.Buf, int64(len(e.Atts)), 10)
	e.Buf = append(e.Buf, '}')
	e.Atts = append(e.Atts, b)
}

func (e *emitter) BeginList(int) { e.Buf = append(e.Buf, '[') }

func (e *emitter) Item(i int) {
	if i > 0 {
		e.Buf = append(e.Buf, ',')
	}
}

func (e *emitter) EndList() { e.Buf = append(e.Buf, ']') }

// BeginDict starts a JSON object, or, for a dict whose one key is a tag, a
// {"$d": [[key, value]]} escape so that it does not read as a tag.
func (e *emitter) BeginDict(keys []string) {
	escaped := len(keys) == 1 && isTag(keys[0])
	e.esc = append(e.esc, escaped)
	if escaped {
		e.Buf = append(e.Buf, `{"$d":[`...)
	} else {
		e.Buf = append(e.Buf, '{')
	}
}

func (e *emitter) Key(i int, k string) {
	if e.esc[len(e.esc)-1] {
		e.Buf = append(e.Buf, '[')
		e.Buf = AppendString(e.Buf, k)
		e.Buf = append(e.Buf, ',')
		return
	}
	if i > 0 {
		e.Buf = append(e.Buf, ',')
	}
	e.Buf = AppendString(e.Buf, k)
	e.Buf = append(e.Buf, ':')
}

func (e *emitter) EndDict() {
	escaped := e.esc[len(e.esc)-1]
	e.esc = e.esc[:len(e.esc)-1]
	if escaped {
		e.Buf = append(e.Buf, "]]}"...)
	} else {
		e.Buf = append(e.Buf, '}')
	}
}

// AppendString appends s as a JSON string. It escapes only what JSON
// requires, so non-ASCII text stays UTF-8.
func AppendString(buf []byte, s string) []byte {
	const hex = "0123456789abcdef"
	buf = append(buf, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		buf = append(buf, s[start:i]...)
		switch c {
		case '"', '\\':
			buf = append(buf, '\\', c)
		case '\n':
			buf = append(buf, '\\', 'n')
		case '\r':
			buf = append(buf, '\\', 'r')
		case '\t':
			buf = append(buf, '\\', 't')
		default:
			buf = append(buf, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		}
		start = i + 1
	}
	buf = append(buf, s[start:]...)
	return append(buf, '"')
}

// Decode parses one tagged JSON value, resolving attachments, into the Go
// types the embedded pool returns: nil, bool, int64 (or *big.Int, of any
// size, when it does not fit), float64, string, []byte, []any and
// map[string]any. Values nested deeper than MaxDepth fail with a
// [*ConversionError].
func Decode(data []byte, atts [][]byte) (any, error) { return decode(data, atts, nil) }

func decode(data []byte, atts [][]byte, ld Loader) (any, error) {
	d := json.NewDecoder(bytes.NewReader(data))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, fmt.Errorf("wire: decoding value: %w", err)
	}
	if _, err := d.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("wire: decoding value: data after the value")
	}
	v, t := resolve(v, atts, 0, ld)
	if t != nil {
		return nil, t.Err(convert.PythonToGo)
	}
	return v, nil
}

// resolve turns numbers into int64, *big.Int or float64 and tagged objects
// into what they stand for, in place.
func resolve(v any, atts [][]byte, depth int, ld Loader) (any, *convert.Trace) {
	if depth > MaxDepth {
		return nil, convert.TooDeep()
	}
	switch x := v.(type) {
	case json.Number:
		return number(string(x))
	case []any:
		for i, item := range x {
			r, t := resolve(item, atts, depth+1, ld)
			if t != nil {
				return nil, t.AtIndex(i)
			}
			x[i] = r
		}
		return x, nil
	case map[string]any:
		if len(x) == 1 {
			for k, tv := range x {
				if isTag(k) && k != tagInt {
					return resolveTag(k, tv, atts, depth, ld)
				}
			}
		}
		for k, item := range x {
			r, t := resolve(item, atts, depth+1, ld)
			if t != nil {
				return nil, t.AtKey(k)
			}
			x[k] = r
		}
		return x, nil
	}
	return v, nil
}

// number parses a JSON number: an integer of any length, or a float.
func number(s string) (any, *convert.Trace) {
	if strings.ContainsAny(s, ".eE") {
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return nil, convert.Failf("float %s: %v", s, err)
		}
		return f, nil
	}
	if i, err := strconv.ParseInt(s, 10, 64); err == nil {
		return i, nil
	}
	b, ok := new(big.Int).SetString(s, 10)
	if !ok {
		return nil, convert.Failf("bad integer %q", s)
	}
	return b, nil
}

// resolveTag resolves {tag: tv}.
func resolveTag(tag string, tv any, atts [][]byte, depth int, ld Loader) (any, *convert.Trace) {
	switch tag {
	case tagBytes:
		n, ok := tv.(json.Number)
		i, err := strconv.Atoi(string(n))
		if !ok || err != nil || i < 0 || i >= len(atts) {
			return nil, convert.Failf("attachment %v out of range (%d attachments)", tv, len(atts))
		}
		return atts[i], nil
	case tagShared:
		return resolveShared(tv, ld)
	case tagFloat:
		switch tv {
		case "nan":
			return math.NaN(), nil
		case "inf":
			return math.Inf(1), nil
		case "-inf":
			return math.Inf(-1), nil
		}
		return nil, convert.Failf("bad float tag %v", tv)
	}
	// tagDict: the escape of a dict whose one key is a tag.
	pairs, ok := tv.([]any)
	if !ok {
		return nil, convert.Failf("bad dict tag")
	}
	m := make(map[string]any, len(pairs))
	for _, p := range pairs {
		kv, ok := p.([]any)
		if !ok || len(kv) != 2 {
			return nil, convert.Failf("bad dict tag pair")
		}
		key, ok := kv[0].(string)
		if !ok {
			return nil, convert.Failf("bad dict tag key")
		}
		r, t := resolve(kv[1], atts, depth+1, ld)
		if t != nil {
			return nil, t.AtKey(key)
		}
		m[key] = r
	}
	return m, nil
}

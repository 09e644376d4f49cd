package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/big"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/slither-go/slither/pools"
)

// MaxDepth is how deeply lists and maps may nest in a value sent either way;
// the same limit as the embedded pool's.
const MaxDepth = 1000

// ErrConversion is matched (errors.Is) by every [*ConversionError].
var ErrConversion = errors.New("wire: value cannot cross between Go and Python")

// ConversionError reports a value with no mapping between Go and Python.
// Path locates it inside the value, e.g. "[3][name]".
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
	return fmt.Sprintf("wire: %s conversion%s: %s", e.Direction, at, e.Reason)
}

// Is makes errors.Is(err, ErrConversion) and errors.Is(err,
// pools.ErrConversion) true.
func (e *ConversionError) Is(target error) bool {
	return target == ErrConversion || target == pools.ErrConversion
}

// Tags: a JSON object with exactly one of these keys is not a plain dict.
const (
	tagBytes = "$b" // {"$b": i}: attachment i
	tagFloat = "$f" // {"$f": "nan"|"inf"|"-inf"}
	tagDict  = "$d" // {"$d": [[k, v], ...]}: a dict whose one key is a tag
	tagInt   = "$i" // reserved
)

func isTag(k string) bool { return k == tagBytes || k == tagFloat || k == tagDict || k == tagInt }

// Encoder appends Go values as tagged JSON, moving byte strings into
// attachments. The zero value is ready; Reset reuses its buffers.
type Encoder struct {
	Buf  []byte
	Atts [][]byte
	path []string
}

// Reset empties the encoder, keeping its buffers.
func (e *Encoder) Reset() {
	e.Buf = e.Buf[:0]
	clear(e.Atts)
	e.Atts = e.Atts[:0]
	e.path = e.path[:0]
}

func (e *Encoder) fail(format string, args ...any) error {
	return &ConversionError{Direction: "go->python", Path: strings.Join(e.path, ""), Reason: fmt.Sprintf(format, args...)}
}

// List appends items as one JSON array, the shape of every batch.
func (e *Encoder) List(items []any) error {
	e.Buf = append(e.Buf, '[')
	for i, v := range items {
		if i > 0 {
			e.Buf = append(e.Buf, ',')
		}
		e.path = append(e.path, "["+strconv.Itoa(i)+"]")
		if err := e.value(v, 1); err != nil {
			return err
		}
		e.path = e.path[:len(e.path)-1]
	}
	e.Buf = append(e.Buf, ']')
	return nil
}

func (e *Encoder) value(v any, depth int) error {
	if depth > MaxDepth {
		return e.fail("nesting deeper than %d levels", MaxDepth)
	}
	switch x := v.(type) {
	case nil:
		e.Buf = append(e.Buf, "null"...)
	case bool:
		e.Buf = strconv.AppendBool(e.Buf, x)
	case int:
		e.Buf = strconv.AppendInt(e.Buf, int64(x), 10)
	case int64:
		e.Buf = strconv.AppendInt(e.Buf, x, 10)
	case int32:
		e.Buf = strconv.AppendInt(e.Buf, int64(x), 10)
	case int16:
		e.Buf = strconv.AppendInt(e.Buf, int64(x), 10)
	case int8:
		e.Buf = strconv.AppendInt(e.Buf, int64(x), 10)
	case uint:
		e.Buf = strconv.AppendUint(e.Buf, uint64(x), 10)
	case uint64:
		e.Buf = strconv.AppendUint(e.Buf, x, 10)
	case uint32:
		e.Buf = strconv.AppendUint(e.Buf, uint64(x), 10)
	case uint16:
		e.Buf = strconv.AppendUint(e.Buf, uint64(x), 10)
	case uint8:
		e.Buf = strconv.AppendUint(e.Buf, uint64(x), 10)
	case float64:
		e.float(x)
	case float32:
		e.float(float64(x))
	case string:
		return e.str(x)
	case []byte:
		e.bytes(x)
	case *big.Int:
		if x == nil {
			e.Buf = append(e.Buf, "null"...)
		} else {
			e.Buf = x.Append(e.Buf, 10)
		}
	case []any:
		e.Buf = append(e.Buf, '[')
		for i, item := range x {
			if i > 0 {
				e.Buf = append(e.Buf, ',')
			}
			e.path = append(e.path, "["+strconv.Itoa(i)+"]")
			if err := e.value(item, depth+1); err != nil {
				return err
			}
			e.path = e.path[:len(e.path)-1]
		}
		e.Buf = append(e.Buf, ']')
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		return e.dict(keys, func(k string) any { return x[k] }, depth)
	default:
		return e.reflect(reflect.ValueOf(v), depth)
	}
	return nil
}

func (e *Encoder) float(f float64) {
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

func (e *Encoder) bytes(b []byte) {
	e.Buf = append(e.Buf, `{"$b":`...)
	e.Buf = strconv.AppendInt(e.Buf, int64(len(e.Atts)), 10)
	e.Buf = append(e.Buf, '}')
	e.Atts = append(e.Atts, b)
}

func (e *Encoder) str(s string) error {
	if !utf8.ValidString(s) {
		return e.fail("string is not valid UTF-8")
	}
	e.Buf = AppendString(e.Buf, s)
	return nil
}

// dict appends a string-keyed map with keys in the given order.
func (e *Encoder) dict(keys []string, get func(string) any, depth int) error {
	for _, k := range keys {
		if !utf8.ValidString(k) {
			return e.fail("map key %q is not valid UTF-8", k)
		}
	}
	escaped := len(keys) == 1 && isTag(keys[0])
	if escaped {
		e.Buf = append(e.Buf, `{"$d":[`...)
	} else {
		e.Buf = append(e.Buf, '{')
	}
	for i, k := range keys {
		if i > 0 {
			e.Buf = append(e.Buf, ',')
		}
		if escaped {
			e.Buf = append(e.Buf, '[')
		}
		e.Buf = AppendString(e.Buf, k)
		if escaped {
			e.Buf = append(e.Buf, ',')
		} else {
			e.Buf = append(e.Buf, ':')
		}
		e.path = append(e.path, "["+k+"]")
		if err := e.value(get(k), depth+1); err != nil {
			return err
		}
		e.path = e.path[:len(e.path)-1]
		if escaped {
			e.Buf = append(e.Buf, ']')
		}
	}
	if escaped {
		e.Buf = append(e.Buf, "]}"...)
	} else {
		e.Buf = append(e.Buf, '}')
	}
	return nil
}

// reflect handles typed slices, arrays, string-keyed maps and pointers.
func (e *Encoder) reflect(rv reflect.Value, depth int) error {
	switch rv.Kind() {
	case reflect.Pointer, reflect.Interface:
		if rv.IsNil() {
			e.Buf = append(e.Buf, "null"...)
			return nil
		}
		return e.value(rv.Elem().Interface(), depth)
	case reflect.Bool:
		return e.value(rv.Bool(), depth)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		e.Buf = strconv.AppendInt(e.Buf, rv.Int(), 10)
		return nil
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		e.Buf = strconv.AppendUint(e.Buf, rv.Uint(), 10)
		return nil
	case reflect.Float32, reflect.Float64:
		e.float(rv.Float())
		return nil
	case reflect.String:
		return e.str(rv.String())
	case reflect.Slice, reflect.Array:
		if rv.Kind() == reflect.Slice && rv.IsNil() {
			e.Buf = append(e.Buf, "null"...)
			return nil
		}
		if rv.Type().Elem().Kind() == reflect.Uint8 {
			b := make([]byte, rv.Len())
			reflect.Copy(reflect.ValueOf(b), rv)
			e.bytes(b)
			return nil
		}
		e.Buf = append(e.Buf, '[')
		for i := range rv.Len() {
			if i > 0 {
				e.Buf = append(e.Buf, ',')
			}
			e.path = append(e.path, "["+strconv.Itoa(i)+"]")
			if err := e.value(rv.Index(i).Interface(), depth+1); err != nil {
				return err
			}
			e.path = e.path[:len(e.path)-1]
		}
		e.Buf = append(e.Buf, ']')
		return nil
	case reflect.Map:
		if rv.Type().Key().Kind() != reflect.String {
			return e.fail("map key type %s is not a string", rv.Type().Key())
		}
		if rv.IsNil() {
			e.Buf = append(e.Buf, "null"...)
			return nil
		}
		keys := make([]string, 0, rv.Len())
		vals := make(map[string]any, rv.Len())
		for it := rv.MapRange(); it.Next(); {
			k := it.Key().String()
			keys = append(keys, k)
			vals[k] = it.Value().Interface()
		}
		slices.Sort(keys)
		return e.dict(keys, func(k string) any { return vals[k] }, depth)
	}
	return e.fail("a Go %s has no Python mapping", rv.Type())
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

// Decode parses a tagged JSON value, resolving attachments, into the Go
// types the embedded pool returns: nil, bool, int64 (or *big.Int when it
// does not fit), float64, string, []byte, []any and map[string]any.
func Decode(data []byte, atts [][]byte) (any, error) {
	d := json.NewDecoder(bytes.NewReader(data))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, fmt.Errorf("wire: decoding value: %w", err)
	}
	return resolve(v, atts, nil)
}

func resolve(v any, atts [][]byte, path []string) (any, error) {
	fail := func(format string, args ...any) error {
		return &ConversionError{Direction: "python->go", Path: strings.Join(path, ""), Reason: fmt.Sprintf(format, args...)}
	}
	switch x := v.(type) {
	case json.Number:
		s := string(x)
		if strings.ContainsAny(s, ".eE") {
			f, err := strconv.ParseFloat(s, 64)
			if err != nil {
				return nil, fail("float %s: %v", s, err)
			}
			return f, nil
		}
		if i, err := strconv.ParseInt(s, 10, 64); err == nil {
			return i, nil
		}
		b, ok := new(big.Int).SetString(s, 10)
		if !ok {
			return nil, fail("bad integer %q", s)
		}
		return b, nil
	case []any:
		for i, item := range x {
			r, err := resolve(item, atts, append(path, "["+strconv.Itoa(i)+"]"))
			if err != nil {
				return nil, err
			}
			x[i] = r
		}
		return x, nil
	case map[string]any:
		if len(x) == 1 {
			for k, tv := range x {
				switch k {
				case tagBytes:
					n, ok := tv.(json.Number)
					i, err := strconv.Atoi(string(n))
					if !ok || err != nil || i < 0 || i >= len(atts) {
						return nil, fail("attachment %v out of range (%d attachments)", tv, len(atts))
					}
					return atts[i], nil
				case tagFloat:
					switch tv {
					case "nan":
						return math.NaN(), nil
					case "inf":
						return math.Inf(1), nil
					case "-inf":
						return math.Inf(-1), nil
					}
					return nil, fail("bad float tag %v", tv)
				case tagDict:
					pairs, ok := tv.([]any)
					if !ok {
						return nil, fail("bad dict tag")
					}
					m := make(map[string]any, len(pairs))
					for _, p := range pairs {
						kv, ok := p.([]any)
						if !ok || len(kv) != 2 {
							return nil, fail("bad dict tag pair")
						}
						key, ok := kv[0].(string)
						if !ok {
							return nil, fail("bad dict tag key")
						}
						r, err := resolve(kv[1], atts, append(path, "["+key+"]"))
						if err != nil {
							return nil, err
						}
						m[key] = r
					}
					return m, nil
				}
			}
		}
		for k, item := range x {
			r, err := resolve(item, atts, append(path, "["+k+"]"))
			if err != nil {
				return nil, err
			}
			x[k] = r
		}
		return x, nil
	}
	return v, nil
}

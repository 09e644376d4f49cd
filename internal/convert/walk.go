package convert

import (
	"cmp"
	"math"
	"math/big"
	"reflect"
	"slices"
	"unicode/utf8"
)

// Emitter receives a Go value as the Python value it maps to, one event at
// a time, from a [Walker]. Each codec implements it to write its own
// format; the walk has already checked everything (UTF-8, key types,
// depth), so an Emitter cannot fail. It must not keep the slices it is
// given beyond the call, except Bytes's.
type Emitter interface {
	None()
	Bool(v bool)
	Int(v int64)
	// BigInt is an int outside int64's range, or a *big.Int (never nil).
	BigInt(v *big.Int)
	Float(v float64)
	String(s string) // valid UTF-8
	Bytes(b []byte)
	// BeginList starts a list of n items; each item is preceded by Item
	// with its index, and the list ends with EndList.
	BeginList(n int)
	Item(i int)
	EndList()
	// BeginDict starts a dict with these keys (valid UTF-8, sorted); each
	// value is preceded by Key, and the dict ends with EndDict.
	BeginDict(keys []string)
	Key(i int, k string)
	EndDict()
}

// Walker walks Go values into an [Emitter], mapping them to Python:
//
//	nil, nil pointer/slice/map           -> None
//	bool                                 -> bool
//	int*, uint*, uintptr, *big.Int, big.Int -> int
//	float32, float64                     -> float (NaN, ±Inf kept)
//	string (valid UTF-8)                 -> str
//	[]byte, [N]byte (any byte-kind elements) -> bytes
//	[]any, other slices and arrays       -> list
//	map[string]any, map[K]V with a string-kind K -> dict, keys sorted
//	pointer                              -> its target
//
// Named types map like their underlying kind. Anything else (structs other
// than big.Int, channels, funcs, complex numbers, maps with other keys) and
// nesting deeper than [MaxDepth] fail with a [*ConversionError] naming the
// path. The common shapes (scalars, []any, map[string]any) are handled by a
// type switch; reflection is only for the rest.
//
// The zero Walker is ready. It keeps scratch space between walks, so reuse
// one (it is not safe for concurrent use).
type Walker struct {
	e     Emitter
	keys  []string   // sorted keys of the map[string]any values being walked, a stack
	pairs []keyValue // entries of the reflected maps being walked, a stack
}

type keyValue struct {
	k string
	v reflect.Value
}

// List walks items as one list, the shape of every batch: an item is at
// depth 1 and its path starts with its index.
func (w *Walker) List(e Emitter, items []any) error {
	w.e = e
	defer func() { w.e = nil }()
	e.BeginList(len(items))
	for i, v := range items {
		e.Item(i)
		if t := w.value(v, 1); t != nil {
			return t.AtIndex(i).Err(GoToPython)
		}
	}
	e.EndList()
	return nil
}

// Value walks one value found at depth inside the whole value sent, at
// path (which prefixes the path of an error).
func (w *Walker) Value(e Emitter, v any, depth int, path string) error {
	w.e = e
	defer func() { w.e = nil }()
	if t := w.value(v, depth); t != nil {
		err := t.Err(GoToPython)
		err.Path = path + err.Path
		return err
	}
	return nil
}

var (
	bigIntType    = reflect.TypeFor[big.Int]()
	bigIntPtrType = reflect.TypeFor[*big.Int]()
	byteType      = reflect.TypeFor[byte]()
)

func (w *Walker) value(v any, depth int) *Trace {
	if depth > MaxDepth {
		return TooDeep()
	}
	e := w.e
	switch x := v.(type) {
	case nil:
		e.None()
	case bool:
		e.Bool(x)
	case int:
		e.Int(int64(x))
	case int64:
		e.Int(x)
	case int32:
		e.Int(int64(x))
	case int16:
		e.Int(int64(x))
	case int8:
		e.Int(int64(x))
	case uint:
		w.uint(uint64(x))
	case uint64:
		w.uint(x)
	case uint32:
		e.Int(int64(x))
	case uint16:
		e.Int(int64(x))
	case uint8:
		e.Int(int64(x))
	case float64:
		e.Float(x)
	case float32:
		e.Float(float64(x))
	case string:
		return w.str(x)
	case []byte:
		e.Bytes(x)
	case *big.Int:
		if x == nil {
			e.None()
		} else {
			e.BigInt(x)
		}
	case []any:
		e.BeginList(len(x))
		for i, item := range x {
			e.Item(i)
			if t := w.value(item, depth+1); t != nil {
				return t.AtIndex(i)
			}
		}
		e.EndList()
	case map[string]any:
		base := len(w.keys)
		for k := range x {
			w.keys = append(w.keys, k)
		}
		keys := w.keys[base:]
		slices.Sort(keys)
		t := w.beginDict(keys)
		for i := 0; t == nil && i < len(keys); i++ {
			e.Key(i, keys[i])
			if t = w.value(x[keys[i]], depth+1); t != nil {
				t.AtKey(keys[i])
			}
		}
		if t == nil {
			e.EndDict()
		}
		clear(w.keys[base:])
		w.keys = w.keys[:base]
		return t
	default:
		return w.reflect(reflect.ValueOf(v), depth)
	}
	return nil
}

func (w *Walker) uint(u uint64) {
	if u > math.MaxInt64 {
		w.e.BigInt(new(big.Int).SetUint64(u))
		return
	}
	w.e.Int(int64(u))
}

func (w *Walker) str(s string) *Trace {
	if !utf8.ValidString(s) {
		return Failf("string is not valid UTF-8")
	}
	w.e.String(s)
	return nil
}

// beginDict checks a dict's keys and starts it.
func (w *Walker) beginDict(keys []string) *Trace {
	for _, k := range keys {
		if !utf8.ValidString(k) {
			return Failf("map key %q is not valid UTF-8", k)
		}
	}
	w.e.BeginDict(keys)
	return nil
}

// reflect walks the values the type switch does not know: named types,
// typed slices, arrays and maps, pointers. It works on the reflected value
// itself, so the items of a []int are not boxed one by one.
func (w *Walker) reflect(rv reflect.Value, depth int) *Trace {
	if depth > MaxDepth {
		return TooDeep()
	}
	e := w.e
	switch rv.Kind() {
	case reflect.Invalid:
		e.None()
		return nil
	case reflect.Interface:
		if rv.IsNil() {
			e.None()
			return nil
		}
		// Interface of an Interface-kind value does not allocate: the
		// dynamic value goes back through the type switch.
		return w.value(rv.Interface(), depth)
	case reflect.Pointer:
		if rv.IsNil() {
			e.None()
			return nil
		}
		if rv.Type() == bigIntPtrType {
			e.BigInt(rv.Interface().(*big.Int))
			return nil
		}
		// A dereference is a level: a pointer cycle ends at MaxDepth.
		return w.reflect(rv.Elem(), depth+1)
	case reflect.Bool:
		e.Bool(rv.Bool())
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		e.Int(rv.Int())
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		w.uint(rv.Uint())
	case reflect.Float32, reflect.Float64:
		e.Float(rv.Float())
	case reflect.String:
		return w.str(rv.String())
	case reflect.Slice:
		if rv.IsNil() {
			e.None()
			return nil
		}
		if rv.Type().Elem().Kind() == reflect.Uint8 {
			e.Bytes(rv.Bytes())
			return nil
		}
		return w.list(rv, depth)
	case reflect.Array:
		if rv.Type().Elem().Kind() == reflect.Uint8 {
			b := make([]byte, rv.Len())
			if rv.Type().Elem() == byteType {
				reflect.Copy(reflect.ValueOf(b), rv)
			} else { // a named byte type, which reflect.Copy refuses
				for i := range b {
					b[i] = byte(rv.Index(i).Uint())
				}
			}
			e.Bytes(b)
			return nil
		}
		return w.list(rv, depth)
	case reflect.Map:
		if rv.Type().Key().Kind() != reflect.String {
			return Failf("map key type %s is not a string (Python dicts from Go need string keys)", rv.Type().Key())
		}
		if rv.IsNil() {
			e.None()
			return nil
		}
		base := len(w.pairs)
		for it := rv.MapRange(); it.Next(); {
			w.pairs = append(w.pairs, keyValue{it.Key().String(), it.Value()})
		}
		pairs := w.pairs[base:]
		slices.SortFunc(pairs, func(a, b keyValue) int { return cmp.Compare(a.k, b.k) })
		kbase := len(w.keys)
		for _, p := range pairs {
			w.keys = append(w.keys, p.k)
		}
		keys := w.keys[kbase:]
		t := w.beginDict(keys)
		for i := 0; t == nil && i < len(keys); i++ {
			e.Key(i, keys[i])
			if t = w.reflect(pairs[i].v, depth+1); t != nil {
				t.AtKey(keys[i])
			}
		}
		if t == nil {
			e.EndDict()
		}
		clear(w.keys[kbase:])
		w.keys = w.keys[:kbase]
		clear(w.pairs[base:])
		w.pairs = w.pairs[:base]
		return t
	case reflect.Struct:
		if rv.Type() == bigIntType {
			if rv.CanAddr() {
				e.BigInt(rv.Addr().Interface().(*big.Int))
			} else {
				b := rv.Interface().(big.Int)
				e.BigInt(&b)
			}
			return nil
		}
		return Failf("Go type %s has no Python mapping", rv.Type())
	default:
		return Failf("Go type %s has no Python mapping", rv.Type())
	}
	return nil
}

func (w *Walker) list(rv reflect.Value, depth int) *Trace {
	n := rv.Len()
	w.e.BeginList(n)
	for i := range n {
		w.e.Item(i)
		if t := w.reflect(rv.Index(i), depth+1); t != nil {
			return t.AtIndex(i)
		}
	}
	w.e.EndList()
	return nil
}

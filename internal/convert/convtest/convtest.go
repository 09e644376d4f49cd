// Package convtest builds Go values from fuzzer bytes, with the value a
// pool gives back for each, and compares values the way a round trip
// should preserve them. It serves the fuzz tests of both codecs (cpython
// and pools/process/wire), so that both explore the same space of values.
package convtest

import (
	"bytes"
	"encoding/binary"
	"math"
	"math/big"
	"strings"
)

// Named types, which map like their underlying kind.
type (
	name   string
	level  int32
	octet  byte
	floats []float64
)

const (
	maxDepth = 6  // nesting of generated containers
	maxLen   = 8  // items of a generated container
	maxBytes = 48 // bytes of a generated string, byte string or big int
)

// Build returns a Go value made from data, and the value it comes back as
// after a round trip through either pool (to Python and back): int64 for
// every integer that fits, else *big.Int; float64; string; []byte; []any;
// map[string]any; nil. Every value it builds is convertible.
func Build(data []byte) (in, want any) {
	r := reader{b: data}
	return r.value(0)
}

type reader struct{ b []byte }

func (r *reader) byte() byte {
	if len(r.b) == 0 {
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

func (r *reader) u64() uint64 {
	var a [8]byte
	n := copy(a[:], r.b)
	r.b = r.b[n:]
	return binary.LittleEndian.Uint64(a[:])
}

func (r *reader) bytes() []byte {
	n := min(int(r.byte())%(maxBytes+1), len(r.b))
	b := bytes.Clone(r.b[:n])
	r.b = r.b[n:]
	return b
}

func (r *reader) str() string { return strings.ToValidUTF8(string(r.bytes()), "\uFFFD") }

// key returns a dict key, often one of the wire format's tags.
func (r *reader) key() string {
	if c := r.byte(); c < 4 {
		return []string{"$b", "$f", "$d", "$i"}[c]
	}
	return r.str()
}

// integer is want for an integer value.
func integer(b *big.Int) any {
	if b.IsInt64() {
		return b.Int64()
	}
	return b
}

func (r *reader) value(depth int) (in, want any) {
	op := r.byte()
	if depth >= maxDepth && op >= 20 {
		op %= 20 // only scalars this deep
	}
	switch op % 30 {
	case 0:
		return nil, nil
	case 1:
		b := r.byte()&1 == 1
		return b, b
	case 2:
		v := int64(r.u64())
		return v, v
	case 3:
		v := r.u64()
		return int(v), int64(int(v))
	case 4:
		v := int8(r.byte())
		return v, int64(v)
	case 5:
		v := int32(r.u64())
		return level(v), int64(v)
	case 6:
		v := r.u64()
		return v, integer(new(big.Int).SetUint64(v))
	case 7:
		v := uint16(r.u64())
		return v, int64(v)
	case 8:
		v := math.Float64frombits(r.u64())
		return v, v
	case 9:
		v := math.Float32frombits(uint32(r.u64()))
		return v, float64(v)
	case 10:
		v := []float64{0, math.Copysign(0, -1), math.Inf(1), math.Inf(-1), math.NaN(), 1e300, 5e-324, 2}[r.byte()%8]
		return v, v
	case 11:
		s := r.str()
		return s, s
	case 12:
		s := r.str()
		return name(s), s
	case 13:
		b := r.bytes()
		return b, b
	case 14:
		var a [3]octet
		copy(a[:], []octet{octet(r.byte()), octet(r.byte()), octet(r.byte())})
		return a, []byte{byte(a[0]), byte(a[1]), byte(a[2])}
	case 15, 16:
		b := new(big.Int).SetBytes(r.bytes())
		if r.byte()&1 == 1 {
			b.Neg(b)
		}
		if op%30 == 16 {
			return *b, integer(b)
		}
		return b, integer(b)
	case 17:
		return (*big.Int)(nil), nil
	case 18:
		return []int(nil), nil
	case 19:
		return map[string]int(nil), nil
	case 20, 21, 22:
		n := int(r.byte()) % (maxLen + 1)
		in, want := make([]any, n), make([]any, n)
		for i := range n {
			in[i], want[i] = r.value(depth + 1)
		}
		return in, want
	case 23, 24, 25:
		n := int(r.byte()) % (maxLen + 1)
		in, want := make(map[string]any, n), make(map[string]any, n)
		for range n {
			k := r.key()
			in[k], want[k] = r.value(depth + 1)
		}
		return in, want
	case 26:
		n := int(r.byte()) % (maxLen + 1)
		in, want := make(floats, n), make([]any, n)
		for i := range n {
			in[i] = math.Float64frombits(r.u64())
			want[i] = in[i]
		}
		return in, want
	case 27:
		n := int(r.byte()) % (maxLen + 1)
		in, want := make(map[name][]string, n), make(map[string]any, n)
		for range n {
			k, s := r.key(), r.str()
			in[name(k)], want[k] = []string{s}, []any{s}
		}
		return in, want
	case 28:
		v, want := r.value(depth + 1)
		return &v, want
	default:
		v, want := r.value(depth + 1)
		p := &v
		return &p, want
	}
}

// Equal reports whether got is want after a round trip: floats compare by
// bits (so -0 stays -0) except that any NaN equals any NaN, big integers
// by value, and a nil byte string equals an empty one.
func Equal(want, got any) bool {
	switch w := want.(type) {
	case nil:
		return got == nil
	case bool, int64, string:
		return want == got
	case float64:
		g, ok := got.(float64)
		return ok && (math.Float64bits(w) == math.Float64bits(g) || math.IsNaN(w) && math.IsNaN(g))
	case *big.Int:
		g, ok := got.(*big.Int)
		return ok && w.Cmp(g) == 0
	case []byte:
		g, ok := got.([]byte)
		return ok && bytes.Equal(w, g)
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) != len(w) {
			return false
		}
		for i := range w {
			if !Equal(w[i], g[i]) {
				return false
			}
		}
		return true
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok || len(g) != len(w) {
			return false
		}
		for k, wv := range w {
			gv, ok := g[k]
			if !ok || !Equal(wv, gv) {
				return false
			}
		}
		return true
	}
	return false
}

// Cyclic is a value that refers to itself, which a codec must reject with a
// conversion error (nesting deeper than MaxDepth) rather than overflow the
// stack.
type Cyclic struct {
	Name  string
	Value any
	// Seg is the path segment each turn of the cycle adds: the error's
	// path for the value sent as item 0 is "[0]" and Seg repeated.
	Seg string
}

// selfPointer is a pointer type whose values can point to themselves.
type selfPointer *selfPointer

// Cycles returns self-referential values of every shape the walk follows.
func Cycles() []Cyclic {
	var x any
	x = &x
	var p selfPointer
	p = &p
	m := map[string]any{}
	m["self"] = m
	tm := map[string][]any{}
	tm["k"] = []any{tm}
	s := []any{nil}
	s[0] = s
	ps := []any{nil}
	ps[0] = &ps
	return []Cyclic{
		{"interface pointing to itself", x, ""},
		{"pointer pointing to itself", p, ""},
		{"map holding itself", m, "[self]"},
		{"typed map holding itself", tm, "[k][0]"},
		{"slice holding itself", s, "[0]"},
		{"slice holding a pointer to itself", ps, "[0]"},
	}
}

// Seeds are the fuzz seeds for [Build] that both codecs' round-trip fuzz
// targets start from.
var Seeds = [][]byte{
	nil,
	{20, 3, 2, 1, 0, 0, 0, 0, 0, 0, 0, 11, 2, 'h', 'i', 28, 15, 3, 1, 2, 3, 1},
	{23, 4, 0, 13, 1, 9, 1, 10, 4, 2, 6, 255, 255, 255, 255, 255, 255, 255, 255, 3, 16, 20, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 0},
	{26, 3, 0, 0, 0, 0, 0, 0, 0xf8, 0x7f, 0, 0, 0, 0, 0, 0, 0, 0x80, 1, 2, 3, 4, 5, 6, 7, 8, 27, 2, 4, 1, 'k', 1, 'v', 1, 1, 'w'},
	{29, 14, 1, 2, 3, 12, 3, 0xe6, 0x97, 0xa5, 17, 18, 19, 5, 1, 2, 3, 4, 7, 1, 2},
}

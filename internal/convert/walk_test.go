package convert_test

import (
	"errors"
	"fmt"
	"math"
	"math/big"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/slither-go/slither/internal/convert"
	"github.com/slither-go/slither/internal/convert/convtest"
)

// recorder writes the walk's events as text, to check the mapping itself.
type recorder struct{ sb strings.Builder }

func (r *recorder) put(format string, args ...any) { fmt.Fprintf(&r.sb, format, args...) }

func (r *recorder) None()                { r.put("N ") }
func (r *recorder) Bool(v bool)          { r.put("%v ", v) }
func (r *recorder) Int(v int64)          { r.put("i%d ", v) }
func (r *recorder) BigInt(v *big.Int)    { r.put("I%s ", v) }
func (r *recorder) Float(v float64)      { r.put("f%v ", v) }
func (r *recorder) String(s string)      { r.put("%q ", s) }
func (r *recorder) Bytes(b []byte)       { r.put("b%x ", b) }
func (r *recorder) BeginList(n int)      { r.put("[%d ", n) }
func (r *recorder) Item(int)             {}
func (r *recorder) EndList()             { r.put("] ") }
func (r *recorder) BeginDict(k []string) { r.put("{%d ", len(k)) }
func (r *recorder) Key(_ int, k string)  { r.put("%s: ", k) }
func (r *recorder) EndDict()             { r.put("} ") }

func walk(t *testing.T, v any) string {
	t.Helper()
	var r recorder
	var w convert.Walker
	require.NoError(t, w.Value(&r, v, 0, ""))
	return strings.TrimSpace(r.sb.String())
}

type (
	celsius float64
	label   string
	octet   byte
	octets  []octet
	flag    bool
)

func TestWalkMapping(t *testing.T) {
	huge, _ := new(big.Int).SetString("-123456789012345678901234567890", 10)
	one := 1
	var nilMap map[string]int
	for _, c := range []struct {
		v    any
		want string
	}{
		{nil, "N"},
		{true, "true"},
		{flag(false), "false"},
		{int8(-8), "i-8"},
		{uint8(255), "i255"},
		{uint32(math.MaxUint32), "i4294967295"},
		{uint64(math.MaxInt64), "i9223372036854775807"},
		{uint64(math.MaxUint64), "I18446744073709551615"},
		{uint(math.MaxUint64), "I18446744073709551615"},
		{uintptr(7), "i7"},
		{huge, "I-123456789012345678901234567890"},
		{*huge, "I-123456789012345678901234567890"}, // a big.Int value, not only a pointer
		{[]big.Int{*big.NewInt(3)}, "[1 I3 ]"},
		{[]*big.Int{big.NewInt(4), nil}, "[2 I4 N ]"},
		{(*big.Int)(nil), "N"},
		{celsius(1.5), "f1.5"},
		{float32(0.5), "f0.5"},
		{label("x"), `"x"`},
		{[]byte{1, 2}, "b0102"},
		{[2]byte{3, 4}, "b0304"},
		{octets{5}, "b05"},
		{[2]octet{6, 7}, "b0607"}, // reflect.Copy refuses named byte types
		{[]int(nil), "N"},
		{nilMap, "N"},
		{[]string{"a"}, `[1 "a" ]`},
		{[2]any{1, nil}, "[2 i1 N ]"},
		{&one, "i1"},
		{map[string]any{"b": 1, "a": []any{}}, "{2 a: [0 ] b: i1 }"},
		{map[label]float64{"z": 1, "m": 2}, "{2 m: f2 z: f1 }"},
	} {
		assert.Equal(t, c.want, walk(t, c.v), "%T %v", c.v, c.v)
	}
}

func TestWalkRejects(t *testing.T) {
	for _, c := range []struct {
		v    any
		want string
	}{
		{make(chan int), "go->python conversion at [0]: Go type chan int has no Python mapping"},
		{struct{ A int }{1}, "go->python conversion at [0]: Go type struct { A int } has no Python mapping"},
		{complex(1, 2), "Go type complex128 has no Python mapping"},
		{"\xff", "at [0]: string is not valid UTF-8"},
		{label("\xff"), "at [0]: string is not valid UTF-8"},
		{map[int]int{1: 1}, "at [0]: map key type int is not a string (Python dicts from Go need string keys)"},
		{map[string]any{"\xc3": 1}, `at [0]: map key "\xc3" is not valid UTF-8`},
		{map[string]any{"a": []any{1, func() {}}}, "at [0][a][1]: Go type func() has no Python mapping"},
		{map[label][]any{"a": {1, func() {}}}, "at [0][a][1]: Go type func() has no Python mapping"},
	} {
		var w convert.Walker
		err := w.List(&recorder{}, []any{c.v})
		var ce *convert.ConversionError
		require.ErrorAs(t, err, &ce, "%T", c.v)
		assert.Equal(t, convert.GoToPython, ce.Direction)
		assert.ErrorIs(t, err, convert.ErrConversion)
		assert.ErrorContains(t, err, c.want)
	}
}

// A Walker is reused: a failed walk leaves no state behind for the next.
func TestWalkerReuse(t *testing.T) {
	var w convert.Walker
	require.Error(t, w.List(&recorder{}, []any{map[string]any{"a": map[string]any{"b": make(chan int)}}}))
	var r recorder
	require.NoError(t, w.List(&r, []any{map[string]any{"x": 1}}))
	assert.Equal(t, "[1 {1 x: i1 } ]", strings.TrimSpace(r.sb.String()))
}

// Defect 4: a value that refers to itself fails at MaxDepth with the path
// of the cycle, instead of overflowing the stack.
func TestWalkCycles(t *testing.T) {
	for _, c := range convtest.Cycles() {
		t.Run(c.Name, func(t *testing.T) {
			var w convert.Walker
			err := w.List(&recorder{}, []any{c.Value})
			var ce *convert.ConversionError
			require.ErrorAs(t, err, &ce)
			assert.True(t, errors.Is(err, convert.ErrConversion))
			assert.Contains(t, ce.Reason, "nesting deeper than 1000 levels")
			require.True(t, strings.HasPrefix(ce.Path, "[0]"), ce.Path)
			rest := strings.TrimPrefix(ce.Path, "[0]")
			if c.Seg == "" {
				assert.Empty(t, rest)
			} else {
				assert.Empty(t, strings.ReplaceAll(rest, c.Seg, ""), "the path repeats %s", c.Seg)
				assert.NotEmpty(t, rest)
			}
		})
	}
}

// Every pointer dereference counts as a level: a chain of pointers as deep
// as the limit still crosses, one more does not.
func TestWalkPointerDepth(t *testing.T) {
	chain := func(n int) any {
		var v any = "end"
		for range n {
			p := v
			v = &p
		}
		return v
	}
	var w convert.Walker
	var r recorder
	// The item is at depth 1, so MaxDepth-1 dereferences reach MaxDepth.
	require.NoError(t, w.List(&r, []any{chain(convert.MaxDepth - 1)}))
	assert.Equal(t, `[1 "end" ]`, strings.TrimSpace(r.sb.String()))
	err := w.List(&recorder{}, []any{chain(convert.MaxDepth)})
	assert.ErrorContains(t, err, "go->python conversion at [0]: nesting deeper than 1000 levels")
}

func TestConversionErrorText(t *testing.T) {
	err := convert.Failf("bad %s", "thing").AtKey("k").AtIndex(2).Err(convert.PythonToGo)
	assert.Equal(t, "python->go conversion at [2][k]: bad thing", err.Error())
	err = convert.Failf("bad").Err(convert.GoToPython)
	assert.Equal(t, "go->python conversion: bad", err.Error())
	assert.ErrorIs(t, err, convert.ErrConversion)
}

// The walk is exercised on every generated value: the mapping the fuzz
// tests of both codecs rely on never fails or panics.
func FuzzWalk(f *testing.F) {
	for _, seed := range [][]byte{nil, {20, 3, 2, 1, 11, 2, 'h', 'i', 28, 15, 3, 1, 2, 3, 1}, {23, 2, 0, 13, 1, 9, 27, 1, 5, 1, 'x'}} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		in, _ := convtest.Build(data)
		var w convert.Walker
		require.NoError(t, w.List(&recorder{}, []any{in}))
	})
}

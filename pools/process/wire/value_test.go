package wire_test

import (
	"errors"
	"math"
	"math/big"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/slither-go/slither/internal/convert/convtest"
	"github.com/slither-go/slither/pools"
	"github.com/slither-go/slither/pools/process/wire"
)

// Defect 4: a self-referential Go value used to overflow the stack (a fatal
// error, not a panic); it must fail as a conversion error naming its path.
func TestEncodeCyclicValues(t *testing.T) {
	for _, c := range convtest.Cycles() {
		t.Run(c.Name, func(t *testing.T) {
			var e wire.Encoder
			err := e.List([]any{"ok", c.Value})
			var ce *wire.ConversionError
			require.ErrorAs(t, err, &ce)
			assert.True(t, errors.Is(err, wire.ErrConversion))
			assert.True(t, errors.Is(err, pools.ErrConversion))
			assert.Equal(t, "go->python", ce.Direction)
			assert.True(t, strings.HasPrefix(ce.Path, "[1]"), ce.Path)
			assert.Contains(t, err.Error(), "nesting deeper than 1000 levels")

			// The encoder is reusable after the failure.
			e.Reset()
			require.NoError(t, e.List([]any{map[string]any{"$b": 1}}))
			assert.Equal(t, `[{"$d":[["$b",1]]}]`, string(e.Buf))
		})
	}
}

// Integers of any size cross both ways as JSON numbers: *big.Int and
// big.Int values out, any length in (int64 when it fits).
func TestBigIntsAnySize(t *testing.T) {
	huge := new(big.Int).Exp(big.NewInt(7), big.NewInt(12000), nil) // 10,142 digits
	neg := new(big.Int).Neg(huge)
	var e wire.Encoder
	require.NoError(t, e.List([]any{huge, *neg, big.NewInt(5)}))
	assert.Equal(t, "["+huge.String()+","+neg.String()+",5]", string(e.Buf))
	v, err := wire.Decode(e.Buf, nil)
	require.NoError(t, err)
	out := v.([]any)
	assert.Equal(t, 0, huge.Cmp(out[0].(*big.Int)))
	assert.Equal(t, 0, neg.Cmp(out[1].(*big.Int)))
	assert.Equal(t, int64(5), out[2], "an int that fits is an int64")

	v, err = wire.Decode([]byte(`[9223372036854775807,-9223372036854775808,9223372036854775808,-9223372036854775809,-0]`), nil)
	require.NoError(t, err)
	out = v.([]any)
	assert.Equal(t, int64(math.MaxInt64), out[0])
	assert.Equal(t, int64(math.MinInt64), out[1])
	assert.Equal(t, "9223372036854775808", out[2].(*big.Int).String())
	assert.Equal(t, "-9223372036854775809", out[3].(*big.Int).String())
	assert.Equal(t, int64(0), out[4])
}

func TestDecodeDepthLimit(t *testing.T) {
	nest := func(levels int) []byte {
		return []byte(strings.Repeat("[", levels) + "null" + strings.Repeat("]", levels))
	}
	_, err := wire.Decode(nest(wire.MaxDepth), nil) // null at depth MaxDepth
	require.NoError(t, err)
	_, err = wire.Decode(nest(wire.MaxDepth+1), nil)
	var ce *wire.ConversionError
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, "python->go", ce.Direction)
	assert.Contains(t, ce.Reason, "nesting deeper than 1000 levels")
	assert.True(t, ce.Path == strings.Repeat("[0]", wire.MaxDepth+1), "the path to the value too deep")

	// An escaped dict is one level, as on the way out.
	_, err = wire.Decode([]byte(`[{"$d":[["$b",{"$d":[["$f",[1]]]}]]}]`), nil)
	require.NoError(t, err)
}

func TestDecodeTrailingData(t *testing.T) {
	_, err := wire.Decode([]byte(`[1] [2]`), nil)
	assert.ErrorContains(t, err, "data after the value")
	v, err := wire.Decode([]byte(" [1] \n"), nil)
	require.NoError(t, err)
	assert.Equal(t, []any{int64(1)}, v)
}

func TestDecodeErrorPaths(t *testing.T) {
	_, err := wire.Decode([]byte(`[1,{"a":[{"$f":"zero"}]}]`), nil)
	var ce *wire.ConversionError
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, "python->go conversion at [1][a][0]: bad float tag zero", err.Error())
	_, err = wire.Decode([]byte(`[{"$d":[["k",{"$b":9}]]}]`), [][]byte{nil})
	assert.ErrorContains(t, err, "at [0][k]: attachment 9 out of range (1 attachments)")
}

// FuzzWireDecode feeds arbitrary bytes to Decode as a value with two
// attachments: it must never panic or hang, and a list it accepts must
// encode and decode back to an equal value.
func FuzzWireDecode(f *testing.F) {
	for _, s := range []string{
		`[null,true,false,-3,18446744073709551616,2.0,0.1,"a\"b\\c\n\u0000é",{"$b":0},{"$b":1}]`,
		`[{"$f":"nan"},{"$f":"-inf"},{"$d":[["$b",{"$d":[["$f",1]]}]]},{"$i":4},{"a":{"b":[]}}]`,
		`[1e400]`, `[{"$b":-1}]`, `[{"$d":[[1,2]]}]`, `[1] x`, `{"a":1}`, `"\ud800"`, `[-0, -0.0, 1E5]`,
		`[` + strings.Repeat("1", 400) + `]`,
	} {
		f.Add([]byte(s), []byte("att0"), []byte{})
	}
	f.Fuzz(func(t *testing.T, data, a0, a1 []byte) {
		v, err := wire.Decode(data, [][]byte{a0, a1})
		if err != nil {
			return
		}
		list, ok := v.([]any)
		if !ok { // results and host-call arguments are lists
			return
		}
		var e wire.Encoder
		require.NoError(t, e.List(list), "an accepted value encodes back")
		again, err := wire.Decode(e.Buf, e.Atts)
		require.NoError(t, err)
		require.True(t, convtest.Equal(list, again), "got %#v\nwant %#v", again, list)
	})
}

// FuzzWireEncodeRoundTrip encodes generated Go values and decodes them:
// each must come back as the value the pools document for it.
func FuzzWireEncodeRoundTrip(f *testing.F) {
	for _, seed := range convtest.Seeds {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		in, want := convtest.Build(data)
		var e wire.Encoder
		require.NoError(t, e.List([]any{in}))
		v, err := wire.Decode(e.Buf, e.Atts)
		require.NoError(t, err, "%s", e.Buf)
		out := v.([]any)
		require.Len(t, out, 1)
		require.True(t, convtest.Equal(want, out[0]), "got %#v\nwant %#v\njson %s", out[0], want, e.Buf)
	})
}

func benchItems() map[string][]any {
	ints, mixed, typed := make([]any, 64), make([]any, 64), make([]any, 64)
	for i := range 64 {
		ints[i] = int64(i * 1000)
		mixed[i] = map[string]any{"id": i, "name": "item", "score": 1.5, "tags": []any{"a", "b"}, "raw": []byte("xyz")}
		typed[i] = []int{1, 2, 3, 4, 5, 6, 7, 8}
	}
	return map[string][]any{"ints": ints, "mixed": mixed, "typed": typed}
}

// BenchmarkEncoder is the Go side of a batch's conversion: 64 items of the
// common shapes. It allocates nothing once warm.
func BenchmarkEncoder(b *testing.B) {
	for _, name := range []string{"ints", "mixed", "typed"} {
		items := benchItems()[name]
		b.Run(name, func(b *testing.B) {
			var e wire.Encoder
			b.ReportAllocs()
			for b.Loop() {
				e.Reset()
				if err := e.List(items); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkDecode decodes what BenchmarkEncoder encodes.
func BenchmarkDecode(b *testing.B) {
	for _, name := range []string{"ints", "mixed"} {
		var e wire.Encoder
		if err := e.List(benchItems()[name]); err != nil {
			b.Fatal(err)
		}
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := wire.Decode(e.Buf, e.Atts); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

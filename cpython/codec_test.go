//go:build cgo

package cpython

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"math/big"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/slither-go/slither/internal/convert/convtest"
)

// Defect 4: a self-referential Go value used to overflow the stack (a fatal
// error, not a panic); it must fail as a conversion error naming its path.
func TestEncodeCyclicValues(t *testing.T) {
	for _, c := range convtest.Cycles() {
		t.Run(c.Name, func(t *testing.T) {
			var e encoder
			err := e.encodeList([]any{"ok", c.Value})
			var ce *ConversionError
			require.ErrorAs(t, err, &ce)
			assert.True(t, errors.Is(err, ErrConversion))
			assert.Equal(t, "go->python", ce.Direction)
			assert.True(t, strings.HasPrefix(ce.Path, "[1]"), ce.Path)
			assert.Contains(t, err.Error(), "nesting deeper than 1000 levels")
		})
	}
}

// encodeDecode encodes items and decodes them with the Go decoder (the same
// tags codec.c reads and writes).
func encodeDecode(t *testing.T, items []any) []any {
	t.Helper()
	var e encoder
	require.NoError(t, e.encodeList(items))
	d := decoder{b: e.buf}
	v, err := d.decode()
	require.NoError(t, err)
	require.Empty(t, d.b, "the whole buffer is one value")
	return v.([]any)
}

// Integers of any size leave Go as Python ints: *big.Int, big.Int values and
// uint64s above MaxInt64, as decimal text under the big-int tag.
func TestEncodeBigInts(t *testing.T) {
	huge := new(big.Int).Exp(big.NewInt(7), big.NewInt(12000), nil) // 10,142 digits
	neg := new(big.Int).Neg(huge)
	out := encodeDecode(t, []any{huge, *neg, uint64(math.MaxUint64), (*big.Int)(nil)})
	assert.Equal(t, 0, huge.Cmp(out[0].(*big.Int)))
	assert.Equal(t, 0, neg.Cmp(out[1].(*big.Int)))
	assert.Equal(t, 0, new(big.Int).SetUint64(math.MaxUint64).Cmp(out[2].(*big.Int)))
	assert.Nil(t, out[3])

	var e encoder
	require.NoError(t, e.encodeList([]any{big.NewInt(-42)}))
	want := []byte{tagList, 1, 0, 0, 0, 0, 0, 0, 0, tagBigInt, 3, 0, 0, 0, 0, 0, 0, 0, '-', '4', '2'}
	assert.Equal(t, want, e.buf)
}

// The host-call reply path encodes one value at a path and depth.
func TestEncodeAtPath(t *testing.T) {
	var e encoder
	err := e.encode(map[string]any{"k": make(chan int)}, []string{"result"}, 1)
	assert.ErrorContains(t, err, "go->python conversion at result[k]: Go type chan int has no Python mapping")
}

func u64(v uint64) []byte { return binary.LittleEndian.AppendUint64(nil, v) }

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

// A claimed length or count larger than what is left of the buffer fails
// before anything is allocated for it.
func TestDecodeBounds(t *testing.T) {
	for name, b := range map[string][]byte{
		"list count":      cat([]byte{tagList}, u64(1<<60), []byte{tagNone}),
		"list count > n":  cat([]byte{tagList}, u64(3), []byte{tagNone, tagNone}),
		"map count":       cat([]byte{tagMap}, u64(1<<40), u64(0), []byte{tagNone}),
		"map count > n/9": cat([]byte{tagMap}, u64(2), u64(0), []byte{tagNone}, u64(0)),
		"str length":      cat([]byte{tagStr}, u64(math.MaxUint64), []byte("abc")),
		"bytes length":    cat([]byte{tagBytes}, u64(1<<50), []byte("abc")),
		"bigint length":   cat([]byte{tagBigInt}, u64(1<<62), []byte("123")),
		"map key length":  cat([]byte{tagMap}, u64(1), u64(1<<40), []byte("k"), []byte{tagNone}),
		"short int":       {tagInt, 1, 2},
		"bad tag":         {'?'},
		"empty":           {},
		"bad big int":     cat([]byte{tagBigInt}, u64(3), []byte("1x3")),
		"ref, no table":   cat([]byte{tagRef}, u64(0)), // only a call's result has one
	} {
		allocs := testing.AllocsPerRun(10, func() {
			d := decoder{b: b}
			_, err := d.decode()
			if !errors.Is(err, errCorrupt) {
				t.Errorf("%s: got %v, want errCorrupt", name, err)
			}
		})
		// A map of one entry, or SetString's result, is allocated before
		// its bad content is read; nothing sized by a bad length is.
		if name != "bad big int" && name != "map key length" {
			assert.Zero(t, allocs, name)
		}
	}
}

// The decoder stops at MaxDepth, as codec.c's encoder does.
func TestDecodeDepth(t *testing.T) {
	nest := func(levels int) []byte {
		var b []byte
		for range levels {
			b = append(b, tagList)
			b = append(b, u64(1)...)
		}
		return append(b, tagNone)
	}
	d := decoder{b: nest(MaxDepth)} // None at depth MaxDepth
	_, err := d.decode()
	require.NoError(t, err)
	d = decoder{b: nest(MaxDepth + 1)}
	_, err = d.decode()
	assert.ErrorIs(t, err, errCorrupt)
	d = decoder{b: nest(1 << 20)}
	_, err = d.decode()
	assert.ErrorIs(t, err, errCorrupt)
}

// FuzzCpythonDecode feeds arbitrary bytes to the decoder of values coming
// from C: it must never panic, hang or allocate beyond its input, and a
// value it accepts must encode back to the same bytes' meaning.
func FuzzCpythonDecode(f *testing.F) {
	for _, items := range [][]any{
		{nil, true, false, int64(-1), 1.5, "héllo", []byte{0, 1}},
		{[]any{[]any{}}, map[string]any{"a": int64(1), "b": map[string]any{}}},
		{new(big.Int).Lsh(big.NewInt(1), 100), math.NaN(), math.Inf(-1)},
	} {
		var e encoder
		if err := e.encodeList(items); err != nil {
			f.Fatal(err)
		}
		f.Add(e.buf)
	}
	f.Add(cat([]byte{tagList}, u64(1<<60)))
	f.Add(cat([]byte{tagMap}, u64(1), u64(3), []byte("abc"), []byte{tagStr}, u64(2), []byte{0xff, 0xfe}))
	f.Add(cat([]byte{tagList}, u64(2), []byte{tagRef}, u64(0), []byte{tagRef}, u64(1<<62)))
	f.Fuzz(func(t *testing.T, data []byte) {
		d := decoder{b: data, intern: map[string]string{}}
		v, err := d.decode()
		if err != nil {
			return
		}
		// Re-encoding refuses what Go would never send (strings that are
		// not UTF-8); whatever it takes must decode to the same encoding.
		var e encoder
		if e.encode(v, nil, 0) != nil {
			return
		}
		once := bytes.Clone(e.buf)
		d2 := decoder{b: once}
		v2, err := d2.decode()
		require.NoError(t, err)
		require.Empty(t, d2.b)
		e.buf = e.buf[:0]
		require.NoError(t, e.encode(v2, nil, 0))
		require.Equal(t, once, e.buf)
	})
}

// BenchmarkEncode is the Go side of a call's conversion: a batch of 64
// items of the common shapes. It allocates nothing once warm.
func BenchmarkEncode(b *testing.B) {
	ints, mixed, typed := make([]any, 64), make([]any, 64), make([]any, 64)
	for i := range 64 {
		ints[i] = int64(i * 1000)
		mixed[i] = map[string]any{"id": i, "name": "item", "score": 1.5, "tags": []any{"a", "b"}, "raw": []byte("xyz")}
		typed[i] = []int{1, 2, 3, 4, 5, 6, 7, 8}
	}
	for _, c := range []struct {
		name  string
		items []any
	}{{"ints", ints}, {"mixed", mixed}, {"typed", typed}} {
		b.Run(c.name, func(b *testing.B) {
			var e encoder
			b.ReportAllocs()
			for b.Loop() {
				e.buf = e.buf[:0]
				if err := e.encodeList(c.items); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

//go:build cgo

package cpython_test

import (
	"encoding/binary"
	"math"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// wireLen appends a tag and a little-endian u64, the framing of codec.c's
// format (see the top of codec.c).
func wireLen(tag byte, n uint64) []byte {
	return binary.LittleEndian.AppendUint64([]byte{tag}, n)
}

func wireStr(tag byte, s string) []byte { return append(wireLen(tag, uint64(len(s))), s...) }

func wireList(items ...[]byte) []byte {
	b := wireLen('l', uint64(len(items)))
	for _, it := range items {
		b = append(b, it...)
	}
	return b
}

// FuzzShimDecode feeds arbitrary bytes to codec.c's decoder (Go -> Python)
// through a real call: it must refuse malformed input with an error and
// never crash, over-allocate or recurse without bound, and the thread must
// keep serving afterwards.
func FuzzShimDecode(f *testing.F) {
	f.Add(wireList())
	f.Add(wireList([]byte{'N'}, []byte{'T'}, []byte{'F'}))
	f.Add(wireList(binary.LittleEndian.AppendUint64([]byte{'i'}, math.MaxUint64)))
	f.Add(wireList(binary.LittleEndian.AppendUint64([]byte{'d'}, math.Float64bits(math.NaN()))))
	f.Add(wireList(wireStr('s', "héllo"), wireStr('b', "\x00\xff")))
	f.Add(wireList(wireStr('I', "-"+strings.Repeat("9", 5000))))
	f.Add(wireList(wireStr('I', "12\x0034")))
	f.Add(wireList(wireStr('s', "\xff")))
	f.Add(wireList(append(wireLen('m', 1), append(binary.LittleEndian.AppendUint64(nil, 1), 'k', 'N')...)))
	f.Add(wireLen('l', math.MaxUint64))
	f.Add(wireLen('l', 1<<40))
	f.Add(append(wireLen('l', 1), wireLen('b', math.MaxUint64)...))
	deep := []byte{}
	for range 1200 {
		deep = append(deep, wireLen('l', 1)...)
	}
	f.Add(append(deep, 'N'))
	f.Add([]byte{})
	f.Add([]byte{'x'})
	// References name entries of a table only the Go encoder makes: raw
	// input comes with none, so any 'r' is refused.
	f.Add(wireList(wireLen('r', 0)))
	f.Add(wireList(wireStr('b', "x"), wireLen('r', math.MaxUint64)))

	f.Fuzz(func(t *testing.T, in []byte) {
		th := thread(t) // this goroutine's own: a fuzz input may run on any
		_, err := th.CallRaw("cpytest", "echo", in)
		if err != nil {
			assert.NotContains(t, err.Error(), "corrupt value buffer from C", "the C side always writes a well-formed record")
		}
		out, err := th.CallBatch("cpytest", "echo", []any{"still serving"})
		require.NoError(t, err)
		require.Equal(t, []any{"still serving"}, out)
	})
}

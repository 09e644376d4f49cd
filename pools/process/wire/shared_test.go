package wire_test

import (
	"bytes"
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/slither-go/slither/pools/process/wire"
)

// memShare is a shared area in Go memory: Share takes byte strings of at
// least min bytes while room lasts; Load reads [off, off+n) of it and
// records the slots it freed.
type memShare struct {
	mem   []byte
	used  int
	min   int
	freed []uint64
}

func (m *memShare) Share(b []byte) (int, bool) {
	if len(b) < m.min || m.used+len(b) > len(m.mem) {
		return 0, false
	}
	off := m.used
	m.used += copy(m.mem[off:], b)
	return off, true
}

func (m *memShare) Load(slot, off, n uint64) ([]byte, error) {
	if off > uint64(len(m.mem)) || n > uint64(len(m.mem))-off {
		return nil, fmt.Errorf("reference [%d, %d, %d] is outside", slot, off, n)
	}
	m.freed = append(m.freed, slot)
	return bytes.Clone(m.mem[off : off+n]), nil
}

func TestEncoderShares(t *testing.T) {
	sh := &memShare{mem: make([]byte, 100), min: 10}
	big1, big2, small, tooBig := bytes.Repeat([]byte{1}, 40), bytes.Repeat([]byte{2}, 50), []byte("abc"), make([]byte, 20)
	var e wire.Encoder
	e.Share = sh
	require.NoError(t, e.List([]any{big1, small, big2, tooBig, map[string]any{"$a": 1}}))
	assert.Equal(t, `[{"$a":[0,40]},{"$b":0},{"$a":[40,50]},{"$b":1},{"$d":[["$a",1]]}]`, string(e.Buf),
		"a dict whose one key is the shared tag is escaped")
	assert.Equal(t, []int{0, 40}, e.Shared, "the offsets it took")
	assert.Equal(t, [][]byte{small, tooBig}, e.Atts, "what was too small, or found no room, is attached")
	assert.Equal(t, append(bytes.Clone(big1), big2...), sh.mem[:90])
	e.Reset()
	assert.Nil(t, e.Share, "Reset forgets the area")
	assert.Empty(t, e.Shared)

	// A worker's references name a slot too.
	v, err := wire.DecodeShared([]byte(`[{"$a":[3,0,40]},{"$b":0},{"$a":[7,40,50]},{"$d":[["$a",1]]}]`), [][]byte{small}, sh)
	require.NoError(t, err)
	assert.Equal(t, []any{big1, small, big2, map[string]any{"$a": int64(1)}}, v)
	assert.Equal(t, []uint64{3, 7}, sh.freed)
}

func TestBadSharedReferences(t *testing.T) {
	sh := &memShare{mem: make([]byte, 100)}
	for _, c := range []struct{ in, want string }{
		{`[{"$a":[0,0,101]}]`, "at [0]: reference [0, 0, 101] is outside"},
		{`[{"$a":[0,100,1]}]`, "reference [0, 100, 1] is outside"},
		{`[{"$a":[0,18446744073709551615,2]}]`, "is outside"},
		{`[{"$a":[0,-1,2]}]`, "not three non-negative integers"},
		{`[{"$a":[0,1.5,2]}]`, "not three non-negative integers"},
		{`[{"$a":[0,1,2,3]}]`, "not [slot, offset, length]"},
		{`[{"$a":[0,1]}]`, "not [slot, offset, length]"},
		{`[{"$a":"x"}]`, "not [slot, offset, length]"},
		{`[{"$a":[0,18446744073709551616,2]}]`, "not three non-negative integers"},
	} {
		_, err := wire.DecodeShared([]byte(c.in), nil, sh)
		require.ErrorIs(t, err, wire.ErrConversion, c.in)
		assert.ErrorContains(t, err, c.want, c.in)
	}
	_, err := wire.Decode([]byte(`[{"$a":[0,0,1]}]`), nil)
	assert.ErrorContains(t, err, "shared-memory reference [0 0 1], but no shared memory")
	assert.Empty(t, sh.freed, "a rejected reference frees nothing")
}

// FuzzDecodeShared decodes arbitrary tagged JSON against a small shared
// area: it never panics, every reference the loader is handed is one the
// JSON spelled out (the loader checks it), and what fails fails with a
// decoding error or a conversion error.
func FuzzDecodeShared(f *testing.F) {
	f.Add([]byte(`[{"$a":[0,0,10]}]`))
	f.Add([]byte(`[{"$a":[63,4096,1]},{"$b":0}]`))
	f.Add([]byte(`{"$a":[1,2]}`))
	f.Add([]byte(`[{"$d":[["$a",[0,0,1]]]}]`))
	f.Add([]byte(`[{"$a":[0,99999999999999999999,1]}]`))
	f.Fuzz(func(t *testing.T, in []byte) {
		sh := &memShare{mem: make([]byte, 64)}
		_, err := wire.DecodeShared(in, [][]byte{[]byte("x")}, sh)
		if err != nil && !errors.Is(err, wire.ErrConversion) && !bytes.Contains([]byte(err.Error()), []byte("wire: decoding value")) {
			t.Fatalf("undocumented error: %v", err)
		}
	})
}

// SharedRefs finds every well-formed worker reference, wherever it is
// nested, and nothing else.
func TestSharedRefs(t *testing.T) {
	var got [][3]uint64
	wire.SharedRefs([]byte(`[{"$a":[1,2,3]},{"$a":"x"},{"$a":[0,-1,2]},[{"k":{"$a":[4,5,6]}}],`+
		`{"$d":[["$a",{"$a":[7,8,9]}]]},{"$a":[1,2,3],"b":{"$a":[10,11,12]}}]`),
		func(slot, off, n uint64) { got = append(got, [3]uint64{slot, off, n}) })
	assert.ElementsMatch(t, [][3]uint64{{1, 2, 3}, {4, 5, 6}, {7, 8, 9}, {10, 11, 12}}, got)
	wire.SharedRefs([]byte(`[{"$a":[1,2,3]}`), func(uint64, uint64, uint64) { t.Fatal("not JSON: no references") })
}

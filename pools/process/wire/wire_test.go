package wire_test

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"math"
	"math/big"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/slither-go/slither/pools/process/wire"
)

func TestFrameRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	big := bytes.Repeat([]byte{9}, 100<<10) // written without a copy
	_, err := wire.WriteFrame(&buf, nil, []byte(`{"t":"x"}`), [][]byte{[]byte("ab"), nil, big})
	require.NoError(t, err)
	_, err = wire.WriteFrame(&buf, nil, []byte(`{"t":"y"}`), nil)
	require.NoError(t, err)
	r := bufio.NewReader(&buf)
	hdr, atts, err := wire.ReadFrame(r)
	require.NoError(t, err)
	assert.Equal(t, `{"t":"x"}`, string(hdr))
	require.Len(t, atts, 3)
	assert.Equal(t, []byte("ab"), atts[0])
	assert.Empty(t, atts[1])
	assert.Equal(t, big, atts[2])
	hdr, atts, err = wire.ReadFrame(r)
	require.NoError(t, err)
	assert.Equal(t, `{"t":"y"}`, string(hdr))
	assert.Nil(t, atts)
}

func TestBadFrames(t *testing.T) {
	for name, b := range map[string][]byte{
		"too short":           binary.BigEndian.AppendUint32(nil, 3),
		"header overruns":     append(binary.BigEndian.AppendUint32(nil, 8), 0, 0, 0, 50, 0, 0, 0, 0),
		"attachment overruns": append(binary.BigEndian.AppendUint32(nil, 12), 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 9),
	} {
		_, _, err := wire.ReadFrame(bufio.NewReader(bytes.NewReader(b)))
		assert.Error(t, err, name)
	}
}

func TestValuesRoundTripInGo(t *testing.T) {
	b, _ := new(big.Int).SetString("-99999999999999999999999", 10)
	in := []any{nil, true, int64(-3), uint64(math.MaxUint64), b, 2.0, 0.1, math.Inf(-1), "a\"b\\c\n\x00é",
		[]byte{0, 255}, []string{"x", "y"}, map[string]int{"b": 2, "a": 1},
		map[string]any{"$b": "not bytes"}, [2]byte{1, 2}}
	var e wire.Encoder
	require.NoError(t, e.List(in))
	v, err := wire.Decode(e.Buf, e.Atts)
	require.NoError(t, err)
	out := v.([]any)
	want := []any{nil, true, int64(-3), new(big.Int).SetUint64(math.MaxUint64), b, 2.0, 0.1, math.Inf(-1), "a\"b\\c\n\x00é",
		[]byte{0, 255}, []any{"x", "y"}, map[string]any{"a": int64(1), "b": int64(2)},
		map[string]any{"$b": "not bytes"}, []byte{1, 2}}
	require.Len(t, out, len(want))
	for i := range want {
		if w, ok := want[i].(*big.Int); ok {
			assert.Equal(t, 0, w.Cmp(out[i].(*big.Int)), "item %d", i)
			continue
		}
		assert.Equal(t, want[i], out[i], "item %d", i)
	}
	assert.Contains(t, string(e.Buf), `2.0`, "a whole float stays a float for Python")
	assert.Contains(t, string(e.Buf), `{"a":1,"b":2}`, "map keys in sorted order")

	e.Reset()
	require.NoError(t, e.List([]any{math.NaN()}))
	v, err = wire.Decode(e.Buf, e.Atts)
	require.NoError(t, err)
	assert.True(t, math.IsNaN(v.([]any)[0].(float64)))
}

func TestEncodeErrors(t *testing.T) {
	for _, c := range []struct {
		v    any
		want string
	}{
		{make(chan int), "at [0]: Go type chan int has no Python mapping"},
		{"\xff", "at [0]: string is not valid UTF-8"},
		{map[int]int{1: 1}, "at [0]: map key type int is not a string"},
		{[]any{map[string]any{"k": struct{}{}}}, "at [0][0][k]: Go type struct {} has no Python mapping"},
	} {
		var e wire.Encoder
		err := e.List([]any{c.v})
		assert.ErrorIs(t, err, wire.ErrConversion)
		assert.ErrorContains(t, err, c.want)
	}
	deep := any(nil)
	for range wire.MaxDepth + 1 {
		deep = []any{deep}
	}
	var e wire.Encoder
	assert.ErrorContains(t, e.List([]any{deep}), "nesting deeper than")
}

func TestDecodeErrors(t *testing.T) {
	_, err := wire.Decode([]byte(`[{"$b":3}]`), nil)
	assert.ErrorContains(t, err, "attachment 3 out of range (0 attachments)")
	_, err = wire.Decode([]byte(`[{"$f":"zero"}]`), nil)
	assert.ErrorContains(t, err, "bad float tag")
	_, err = wire.Decode([]byte(`[1,`), nil)
	assert.Error(t, err)
}

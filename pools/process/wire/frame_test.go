package wire_test

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"runtime"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/slither-go/slither/pools/process/wire"
)

// frame builds a frame by hand: its announced length n (0: the true one),
// the header's length and the attachments' lengths as announced, then body.
func frame(n, hl uint32, lens []uint32, body []byte) []byte {
	var b []byte
	if n == 0 {
		n = 8 + 4*uint32(len(lens)) + uint32(len(body))
	}
	b = binary.BigEndian.AppendUint32(b, n)
	b = binary.BigEndian.AppendUint32(b, hl)
	b = binary.BigEndian.AppendUint32(b, uint32(len(lens)))
	for _, l := range lens {
		b = binary.BigEndian.AppendUint32(b, l)
	}
	return append(b, body...)
}

func TestDefaultMaxFrame(t *testing.T) {
	assert.Equal(t, 256<<20, wire.DefaultMaxFrame)
}

func TestFrameLimit(t *testing.T) {
	var buf bytes.Buffer
	hdr := []byte(`{"t":"x"}`)
	att := make([]byte, 100)
	_, err := wire.WriteFrameLimit(&buf, nil, hdr, [][]byte{att}, 120)
	require.ErrorIs(t, err, wire.ErrFrameTooLarge)
	assert.ErrorContains(t, err, "121 bytes (a header of 9 bytes and 1 attachments) exceed the 120-byte limit")
	assert.Zero(t, buf.Len(), "a refused frame writes nothing: the stream stays usable")

	_, err = wire.WriteFrameLimit(&buf, nil, hdr, [][]byte{att}, 121)
	require.NoError(t, err)
	raw := bytes.Clone(buf.Bytes())
	_, _, err = wire.ReadFrameLimit(bytes.NewReader(raw), 120)
	require.ErrorIs(t, err, wire.ErrFrame)
	require.ErrorIs(t, err, wire.ErrFrameTooLarge)
	assert.ErrorContains(t, err, "length 121 exceeds the 120-byte limit")
	got, atts, err := wire.ReadFrameLimit(bytes.NewReader(raw), 121)
	require.NoError(t, err)
	assert.Equal(t, hdr, got)
	assert.Equal(t, [][]byte{att}, atts)

	// The old signatures keep the default limit.
	big := frame(wire.DefaultMaxFrame+1, 0, nil, nil)
	_, _, err = wire.ReadFrame(bufio.NewReader(bytes.NewReader(big)))
	assert.ErrorIs(t, err, wire.ErrFrameTooLarge)
}

func TestMalformedFrames(t *testing.T) {
	for _, c := range []struct {
		name string
		in   []byte
		want string
	}{
		{"too short", binary.BigEndian.AppendUint32(nil, 3), "length 3 is shorter than the 8 bytes"},
		{"header overruns", frame(8, 50, nil, nil), "a header of 50 bytes and 0 attachment lengths overrun the 8-byte frame"},
		{"lengths overrun", frame(12, 0, []uint32{1, 2}, nil), "a header of 0 bytes and 2 attachment lengths overrun the 12-byte frame"},
		{"attachment overruns", frame(12, 0, []uint32{9}, nil), "add up to 21 bytes, not the 12 it announces"},
		{"slack after the parts", frame(0, 1, []uint32{1}, []byte("{x--")), "add up to 14 bytes, not the 16 it announces"},
		{"lengths wrap around", frame(20, 0, []uint32{0xFFFFFFFF, 0xFFFFFFFF, 2}, nil), "add up to"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, _, err := wire.ReadFrameLimit(bytes.NewReader(c.in), 0)
			require.ErrorIs(t, err, wire.ErrFrame)
			assert.NotErrorIs(t, err, wire.ErrFrameTooLarge)
			assert.ErrorContains(t, err, c.want)
		})
	}
}

func TestTruncatedFrames(t *testing.T) {
	whole := frame(0, 2, []uint32{3}, []byte("{}abc"))
	_, _, err := wire.ReadFrameLimit(bytes.NewReader(nil), 0)
	assert.Equal(t, io.EOF, err, "the end of input between frames is a clean EOF")
	for cut := 1; cut < len(whole); cut++ {
		_, _, err := wire.ReadFrameLimit(bytes.NewReader(whole[:cut]), 0)
		require.ErrorIs(t, err, io.ErrUnexpectedEOF, "cut at %d", cut)
		assert.NotErrorIs(t, err, wire.ErrFrame, "cut at %d", cut)
	}
	hdr, atts, err := wire.ReadFrameLimit(bytes.NewReader(whole), 0)
	require.NoError(t, err)
	assert.Equal(t, "{}", string(hdr))
	assert.Equal(t, [][]byte{[]byte("abc")}, atts)
}

// A reader's own errors come back wrapped, so callers can match them.
func TestReadFrameKeepsReaderErrors(t *testing.T) {
	boom := errors.New("boom")
	r := io.MultiReader(bytes.NewReader(frame(100, 92, nil, nil)), errReader{boom})
	_, _, err := wire.ReadFrameLimit(r, 0)
	assert.ErrorIs(t, err, boom)
}

type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }

// allocated returns the bytes f allocates.
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// Four stray bytes that read as a length must not cost that length in
// memory: past the eager 16 MiB, a frame's buffer grows with the bytes that
// actually arrive.
func TestLyingLengthAllocatesLittle(t *testing.T) {
	in := frame(200<<20, 200<<20-8, nil, []byte("{}"))
	var err error
	n := allocated(func() { _, _, err = wire.ReadFrameLimit(bytes.NewReader(in), 0) })
	require.ErrorIs(t, err, io.ErrUnexpectedEOF)
	assert.Less(t, n, uint64(17<<20), "a 200 MiB claim backed by 2 bytes allocated %d bytes", n)

	// Attachment lengths too are read as they arrive.
	in = make([]byte, 1<<20)
	copy(in, frame(200<<20, 0, nil, nil))
	binary.BigEndian.PutUint32(in[8:], 50<<20-2) // the attachment count: all lengths, all zeros
	n = allocated(func() { _, _, err = wire.ReadFrameLimit(bytes.NewReader(in), 0) })
	require.ErrorIs(t, err, io.ErrUnexpectedEOF)
	assert.Less(t, n, uint64(8<<20), "1 MiB of a 200 MiB frame allocated %d bytes", n)
}

// A frame of up to 16 MiB is read into one buffer of its exact size: a
// large attachment costs one allocation, never a grown copy.
func TestFrameReadAtExactSize(t *testing.T) {
	for _, size := range []int{1 << 20, 3 << 20, 15 << 20} {
		var buf bytes.Buffer
		att := bytes.Repeat([]byte{3}, size)
		_, err := wire.WriteFrame(&buf, nil, []byte(`{"t":"result","id":1,"v":[{"$b":0}]}`), [][]byte{att})
		require.NoError(t, err)
		frameLen := uint64(buf.Len())
		var got [][]byte
		n := allocated(func() { _, got, err = wire.ReadFrameLimit(&buf, 0) })
		require.NoError(t, err)
		require.True(t, bytes.Equal(att, got[0]))
		assert.Less(t, n, frameLen+16<<10, "a %d-byte frame allocated %d bytes", frameLen, n)
		assert.Equal(t, size, cap(got[0]), "the attachment's slice ends where it does")
	}
}

func TestLargeFrameRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	atts := [][]byte{bytes.Repeat([]byte{7}, 3<<20), nil, []byte("x")}
	_, err := wire.WriteFrame(&buf, nil, []byte(`{"t":"big"}`), atts)
	require.NoError(t, err)
	// One byte at a time at first, so that every growth step is exercised.
	r := io.MultiReader(io.LimitReader(oneByte{&buf}, 4096), &buf)
	hdr, got, err := wire.ReadFrameLimit(r, 0)
	require.NoError(t, err)
	assert.Equal(t, `{"t":"big"}`, string(hdr))
	require.Len(t, got, 3)
	assert.True(t, bytes.Equal(atts[0], got[0]))
	assert.Empty(t, got[1])
	assert.Equal(t, []byte("x"), got[2])
}

type oneByte struct{ r io.Reader }

func (o oneByte) Read(p []byte) (int, error) { return o.r.Read(p[:min(len(p), 1)]) }

// FuzzReadFrame feeds arbitrary bytes to ReadFrameLimit: it never panics,
// allocates in proportion to the input, not to the lengths the input claims,
// fails only with the errors it documents, and what it accepts writes back
// to the same bytes.
func FuzzReadFrame(f *testing.F) {
	f.Add(frame(0, 2, nil, []byte("{}")))
	f.Add(frame(0, 9, []uint32{2, 0, 3}, []byte(`{"t":"x"}abxyz`)))
	f.Add(frame(0, 0, nil, nil))
	f.Add(frame(200<<20, 200<<20-8, nil, []byte("{}")))
	f.Add(frame(12, 0, []uint32{9}, nil))
	f.Add(frame(0xFFFFFFFF, 0xFFFFFFF0, []uint32{0xFFFFFFFF}, nil))
	f.Add([]byte{0, 0, 0})
	f.Add(append(frame(0, 2, nil, []byte("{}")), frame(0, 1, []uint32{1}, []byte("ab"))...))
	f.Fuzz(func(t *testing.T, in []byte) {
		r := bytes.NewReader(in)
		var hdr []byte
		var atts [][]byte
		var err error
		n := allocated(func() { hdr, atts, err = wire.ReadFrameLimit(r, 0) })
		// The frame's buffer is its exact size up to 16 MiB (once its
		// lengths have arrived and add up); past that it at most doubles
		// past what arrived, plus the eager 16 MiB, and the slice of
		// attachments (one per 4 bytes).
		eager := uint64(16 << 20)
		if len(in) >= 4 {
			eager = min(eager, uint64(binary.BigEndian.Uint32(in)))
		}
		if limit := eager + 2*uint64(len(in)) + 8*uint64(len(in)) + 64<<10; n > limit {
			t.Fatalf("%d input bytes allocated %d bytes (limit %d)", len(in), n, limit)
		}
		if err != nil {
			if err != io.EOF && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, wire.ErrFrame) {
				t.Fatalf("undocumented error: %v", err)
			}
			return
		}
		used := len(in) - r.Len()
		var out bytes.Buffer
		if _, err := wire.WriteFrame(&out, nil, hdr, atts); err != nil {
			t.Fatalf("a frame read back does not write: %v", err)
		}
		if !bytes.Equal(out.Bytes(), in[:used]) {
			t.Fatalf("frame %x wrote back as %x", in[:used], out.Bytes())
		}
	})
}

// TestCallHeaderTrace: a call's header carries its trace context as hex
// only when it is valid; either way it is valid JSON.
func TestCallHeaderTrace(t *testing.T) {
	var tr wire.Trace
	assert.False(t, tr.Valid())
	assert.Equal(t, `{"t":"call","id":7,"m":"m","f":"f","v":[1]}`, string(wire.AppendCall(nil, 7, "m", "f", "", []byte("[1]"))))
	assert.Equal(t, `{"t":"call","id":7,"m":"m","f":"f","v":[1]}`, string(wire.AppendCallTrace(nil, 7, "m", "f", "", tr, []byte("[1]"))))
	tr.TraceID = [16]byte{0x4b, 0xf9, 15: 0x36}
	assert.False(t, tr.Valid(), "a trace id without a span id")
	tr.SpanID = [8]byte{0x00, 0xf0, 7: 0xb7}
	require.True(t, tr.Valid())
	hdr := wire.AppendCallTrace(nil, 7, "m", "f", "s1", tr, []byte("[]"))
	assert.Equal(t, `{"t":"call","id":7,"m":"m","f":"f","s":"s1","tr":"4bf90000000000000000000000000036","sp":"00f00000000000b7","v":[]}`, string(hdr))
	var m map[string]any
	require.NoError(t, json.Unmarshal(hdr, &m))
}

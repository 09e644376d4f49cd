package process_test

// The worker's frame reader (python/slither/_wire.py Conn): frames that
// arrive in pieces of any size, several in one write, and frames larger
// than its buffer, read into one reused buffer.

import (
	"bytes"
	"context"
	"encoding/binary"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/slither-go/slither/pools/process"
	"github.com/slither-go/slither/pools/process/wire"
)

// payloadFrame is a call frame of payloadtest.fn on items.
func payloadFrame(t testing.TB, id uint64, fn string, items ...any) []byte {
	var e wire.Encoder
	require.NoError(t, e.List(items))
	var buf bytes.Buffer
	_, err := wire.WriteFrame(&buf, nil, wire.AppendCall(nil, id, payloadMod, fn, "", e.Buf), e.Atts)
	require.NoError(t, err)
	return buf.Bytes()
}

// sendInPieces writes b in pieces of the given sizes, cycling, so that
// frames arrive cut at every kind of place; it returns the first error,
// through errc (it runs on a goroutine of its own: a frame larger than the
// pipe holds is read while it is written).
func sendInPieces(rw *rawWorker, b []byte, sizes []int, errc chan<- error) {
	for i := 0; len(b) > 0; i++ {
		n := min(len(b), max(1, sizes[i%len(sizes)]))
		if err := rw.send(b[:n]); err != nil {
			errc <- err
			return
		}
		b = b[n:]
	}
	errc <- nil
}

func TestWorkerReadsFramesInPieces(t *testing.T) {
	rw := startRawWorker(t, rawCtx(t))
	var stream []byte
	sizes := []int{1 << 20, 3 << 20, 10, 20<<20 + 5, 70 << 10, 1 << 20}
	for i, n := range sizes {
		stream = append(stream, payloadFrame(t, uint64(i+1), "check", []any{pattern(n, uint64(i)), uint64(i)})...)
	}
	sent := make(chan error, 1)
	go sendInPieces(rw, stream, []int{1, 3, 4, 7, 65<<10 + 3, 12, 1 << 20, 2, 5 << 20}, sent)
	for i, n := range sizes {
		out, e := rw.result(uint64(i + 1))
		require.Nil(t, e)
		assert.Equal(t, []any{[]any{true, int64(n)}}, out, "frame %d (%d bytes)", i+1, n)
	}
	require.NoError(t, <-sent)
}

// workerReadBuffer is the size of the worker's read buffer when it starts
// (_START in python/slither/_wire.py).
const workerReadBuffer = 64 << 10

// fillerFrame is a call frame of exactly n bytes (payloadtest.check on a
// byte string sized to make it so).
func fillerFrame(t *testing.T, id uint64, n int) []byte {
	empty := len(payloadFrame(t, id, "check", []any{[]byte{}, uint64(7)}))
	require.Greater(t, n, empty)
	b := payloadFrame(t, id, "check", []any{pattern(n-empty, 7), uint64(7)})
	require.Len(t, b, n)
	return b
}

// A frame whose length, head or attachment lengths the end of the worker's
// read buffer cuts, at every offset: each round is one write of a frame
// that leaves j bytes of the buffer and then a frame of eight attachments,
// so the worker's first read fills its buffer to the end with the second
// frame's first j bytes. The worker must read the rest of that frame, and
// no more, wherever its bytes have moved in the buffer meanwhile.
func TestWorkerFrameHeadAtBufferEnd(t *testing.T) {
	rw := startRawWorker(t, rawCtx(t))
	process.GrowPipe(rw.w) // a round's bytes reach the worker in one read
	var items, want []any
	for i := range 8 {
		b := pattern(i+1, uint64(i))
		items, want = append(items, b), append(want, reversed(b))
	}
	id := uint64(0)
	for j := 1; j <= 12+4*len(items)+8; j++ {
		id += 2
		round := append(fillerFrame(t, id-1, workerReadBuffer-j), payloadFrame(t, id, "reverse", items...)...)
		require.NoError(t, rw.send(round))
		out, e := rw.result(id - 1)
		require.Nil(t, e, "filler of round %d", j)
		require.Len(t, out, 1)
		assert.Equal(t, true, out[0].([]any)[0], "filler of round %d", j)
		out, e = rw.result(id)
		require.Nil(t, e, "round %d", j)
		require.Equal(t, want, out, "the frame cut %d bytes into it", j)
	}
}

// A call of more byte strings than the worker's read buffer has room for
// their lengths (4 bytes each): 20,000 one-byte strings.
func TestWorkerManyAttachments(t *testing.T) {
	rw := startRawWorker(t, rawCtx(t))
	items := make([]any, 20000)
	for i := range items {
		items[i] = []byte{byte(i)}
	}
	frame := payloadFrame(t, 1, "reverse", items...)
	sent := make(chan error, 1)
	go func() { sent <- rw.send(frame) }() // more than the pipe holds
	out, e := rw.result(1)
	require.Nil(t, e)
	require.NoError(t, <-sent)
	assert.Equal(t, items, out)
}

// FuzzWorkerFrameSplits cuts a stream of well-formed call frames (a large
// one among them, and a run of small ones with several attachments each,
// which cross the end of the worker's read buffer at places that depend on
// how the pieces arrive) at fuzzed places: the worker answers every call,
// right. The worker serves input after input, except that smalls' top bit
// asks for a fresh one: a worker's read buffer only grows (up to 16 MiB),
// so after a large frame a run of small ones no longer reaches its end.
func FuzzWorkerFrameSplits(f *testing.F) {
	const fresh = 1 << 15
	f.Add([]byte{1, 2, 3, 4, 5, 6, 7, 8}, uint32(70000), uint16(0))
	f.Add([]byte{255, 0, 17}, uint32(1<<20+3), uint16(3))
	f.Add([]byte{}, uint32(0), uint16(0))
	f.Add([]byte{}, uint32(5), uint16(fresh+398)) // a head cut 9 bytes into it by the buffer's end
	f.Add([]byte{}, uint32(5), uint16(fresh+392)) // attachment lengths cut by it
	f.Add([]byte{0, 200, 9, 0, 31, 7}, uint32(1000), uint16(fresh+1023))
	f.Add([]byte{0, 200, 9, 0, 31, 7}, uint32(70000), uint16(1023))
	shared := startRawWorker(f, context.Background())
	var id uint64
	f.Fuzz(func(t *testing.T, cuts []byte, big uint32, smalls uint16) {
		rw, id := shared, &id
		if smalls&fresh != 0 { // its calls numbered from 1, so that a seed's frames lie where it means
			rw, id = startRawWorker(t, context.Background()), new(uint64)
		}
		rw.t = t
		deadline := time.Now().Add(60 * time.Second)
		_ = rw.rf.SetDeadline(deadline)
		_ = rw.w.SetDeadline(deadline)
		var stream []byte
		var want [][]any
		first := *id + 1
		add := func(fn string, out []any, items ...any) {
			*id++
			stream = append(stream, payloadFrame(t, *id, fn, items...)...)
			want = append(want, out)
		}
		checked := func(n int, seed uint64) {
			add("check", []any{[]any{true, int64(n)}}, []any{pattern(n, seed), seed})
		}
		checked(int(big%(3<<20)), 0)
		checked(5, 1)
		checked(64<<10-1, 2)
		checked(64<<10, 3)
		// Last: a frame that the worker misreads as longer than it is must
		// not be saved by the bytes of later ones.
		for i := range int(smalls % 1024) { // about 170 bytes each
			var in, out []any
			for k := range 1 + i%5 {
				b := pattern((i*7+k+int(smalls))%40, uint64(i))
				in, out = append(in, b), append(out, reversed(b))
			}
			add("reverse", out, in...)
		}
		sizes := []int{len(stream)}
		if len(cuts) > 0 {
			sizes = sizes[:0]
			for i := 0; i+1 < len(cuts); i += 2 {
				sizes = append(sizes, int(binary.BigEndian.Uint16(cuts[i:]))*8+1)
			}
			sizes = append(sizes, int(cuts[len(cuts)-1])+1)
		}
		sent := make(chan error, 1)
		go sendInPieces(rw, stream, sizes, sent)
		for i, w := range want {
			out, e := rw.result(first + uint64(i))
			if e != nil {
				t.Fatalf("%s: %s", e.Type, e.Message)
			}
			if !assert.Equal(t, w, out, "frame %d", i) {
				t.FailNow()
			}
		}
		if err := <-sent; err != nil {
			t.Fatal(err)
		}
	})
}

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

// FuzzWorkerFrameSplits cuts a stream of well-formed call frames (a large
// one among them) at fuzzed places: the worker answers every call, right.
func FuzzWorkerFrameSplits(f *testing.F) {
	f.Add([]byte{1, 2, 3, 4, 5, 6, 7, 8}, uint32(70000))
	f.Add([]byte{255, 0, 17}, uint32(1<<20+3))
	f.Add([]byte{}, uint32(0))
	rw := startRawWorker(f, context.Background())
	var id uint64
	f.Fuzz(func(t *testing.T, cuts []byte, big uint32) {
		rw.t = t
		deadline := time.Now().Add(60 * time.Second)
		_ = rw.rf.SetDeadline(deadline)
		_ = rw.w.SetDeadline(deadline)
		lens := []int{int(big % (3 << 20)), 5, 64<<10 - 1, 64 << 10}
		var stream []byte
		first := id + 1
		for i, n := range lens {
			id++
			stream = append(stream, payloadFrame(t, id, "check", []any{pattern(n, uint64(i)), uint64(i)})...)
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
		for i, n := range lens {
			out, e := rw.result(first + uint64(i))
			if e != nil {
				t.Fatalf("%s: %s", e.Type, e.Message)
			}
			if !assert.Equal(t, []any{[]any{true, int64(n)}}, out, "frame %d (%d bytes)", i, n) {
				t.FailNow()
			}
		}
		if err := <-sent; err != nil {
			t.Fatal(err)
		}
	})
}

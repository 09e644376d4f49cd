package process_test

// Payloads at the edges of the worker's frame reader and shared memory:
// many small byte strings in one call, buffers that are not bytes, and a
// worker whose result exceeds the frame limit only with its frame counted.

import (
	"bytes"
	"context"
	"encoding/binary"
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/slither-go/slither/pools"
)

// One call of 20,000 one-byte strings: their lengths alone overflow the
// worker's first read buffer.
func TestManySmallByteStrings(t *testing.T) {
	p := newPool(t, opts(1))
	items := make([]any, 20000)
	for i := range items {
		items[i] = []byte("x")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute) // a worker that misreads the call never answers
	defer cancel()
	out, err := p.Submit(ctx, batch("echo", items...))
	require.NoError(t, err)
	assert.Equal(t, items, out)
}

// doubles is the float64s 0, 1, ... n-1 in the machine's byte order, as
// an array('d') holds them.
func doubles(n int) []byte {
	b := make([]byte, 0, 8*n)
	for i := range n {
		b = binary.NativeEndian.AppendUint64(b, math.Float64bits(float64(i)))
	}
	return b
}

// A result that is a memoryview of something other than bytes (doubles,
// in one or two dimensions, or every other one) arrives as its bytes, and
// through shared memory when those are many: its size is its bytes, not
// its items. No piece of shared memory is left in use.
func TestSharedMemoryViewsOfDoubles(t *testing.T) {
	o := opts(1)
	o.SharedMemory = 4 << 20
	p := newPool(t, o)
	ctx := context.Background()
	for _, n := range []int{40000, 300000} { // fewer items than the 256 KiB threshold, and more
		for _, kind := range []string{"view", "2d", "strided"} {
			before := p.SharedMemoryUse()[0].Loaded
			out, err := p.Submit(ctx, payloadBatch("views", []any{kind, n}))
			require.NoError(t, err, "%s of %d doubles", kind, n)
			require.Len(t, out, 1)
			assert.True(t, bytes.Equal(doubles(n), out[0].([]byte)), "%s of %d doubles", kind, n)
			use := p.SharedMemoryUse()[0]
			assert.Equal(t, before+1, use.Loaded, "%s of %d doubles came through shared memory", kind, n)
			assert.Zero(t, use.Worker, "no piece of the worker's half is left in use")
		}
	}
	// An array itself has no Go mapping, as through the pipe.
	_, err := p.Submit(ctx, payloadBatch("views", []any{"array", 300000}))
	require.ErrorIs(t, err, pools.ErrConversion)
	assert.ErrorContains(t, err, "Python type 'array' has no Go mapping")
	assert.Zero(t, p.SharedMemoryUse()[0].Worker)
}

// The frame counts against MaxFrame with the byte strings in shared
// memory: a worker whose references stay within the limit but not with
// its frame beside them (what an honest one never sends) fails that call,
// and the pool copies out no more than the limit allows one message.
func TestSharedReferencesAndFrameOverLimit(t *testing.T) {
	o := opts(1)
	o.SharedMemory = 1 << 20
	o.MaxFrame = 2 << 20
	p := newPool(t, o)
	ctx := context.Background()
	ref := func(n int) []int64 { return []int64{0, 1<<20 + 4096, int64(n)} } // within the worker's half
	pipe := 1536 << 10                                                       // more than the worker's half: through the pipe

	// 1.5 MiB in the frame and 3 x 130 KiB in shared memory: within the
	// limit (four items, four results).
	out, err := p.Submit(ctx, payloadBatch("over_budget", ref(130<<10), 3, 130<<10, pipe))
	require.NoError(t, err)
	require.Len(t, out, 4)
	for _, b := range out[:3] {
		assert.Len(t, b, 130<<10)
	}
	assert.Equal(t, bytes.Repeat([]byte("p"), pipe), out[3])

	// 1.5 MiB and 3 x 200 KiB: over it, though each is within it alone.
	_, err = p.Submit(ctx, payloadBatch("over_budget", ref(200<<10), 3, 200<<10, pipe))
	require.ErrorIs(t, err, pools.ErrConversion)
	assert.ErrorContains(t, err, "the byte strings in shared memory exceed the 2097152-byte limit (Options.MaxFrame)")
	assert.Zero(t, p.SharedMemoryUse()[0].Worker, "the references it did not copy out are freed")

	in := pattern(300<<10, 2)
	out, err = p.Submit(ctx, payloadBatch("reverse", in))
	require.NoError(t, err, "the worker serves on")
	assert.True(t, bytes.Equal(reversed(in), out[0].([]byte)))
}

// A result that fails to decode at a bad shared-memory reference still
// frees the worker's pieces after it (never copied out): none of its half
// stays taken.
func TestBadSharedReferenceFreesTheRest(t *testing.T) {
	o := opts(1)
	o.SharedMemory = 1 << 20
	p := newPool(t, o)
	_, err := p.Submit(context.Background(), payloadBatch("bad_then_shared", []int64{64, 1<<20 + 4096, 10}, 0))
	require.ErrorIs(t, err, pools.ErrConversion)
	assert.ErrorContains(t, err, "is outside the worker's half")
	assert.Zero(t, p.SharedMemoryUse()[0].Worker)
}

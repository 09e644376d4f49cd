package process_test

// Large payloads through the pool: bytes of 1 and 3 MiB each way, many at
// once, and workers that die in the middle of a transfer.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/slither-go/slither/dispatch"
	"github.com/slither-go/slither/pools"
	"github.com/slither-go/slither/pools/process"
)

const payloadMod = "payloadtest"

// pattern is testdata/payloadtest.py's pattern(n, seed).
func pattern(n int, seed uint64) []byte {
	out := make([]byte, 0, n+31)
	var in [16]byte
	binary.BigEndian.PutUint64(in[:], seed)
	for i := uint64(0); len(out) < n; i++ {
		binary.BigEndian.PutUint64(in[8:], i)
		sum := sha256.Sum256(in[:])
		out = append(out, sum[:]...)
	}
	return out[:n]
}

func reversed(b []byte) []byte {
	r := slices.Clone(b)
	slices.Reverse(r)
	return r
}

func payloadBatch(fn string, items ...any) pools.Batch {
	return pools.Batch{Module: payloadMod, Function: fn, Items: items}
}

func TestLargePayloadsEachWay(t *testing.T) {
	p := newPool(t, opts(1))
	ctx := context.Background()
	for _, n := range []int{1 << 20, 1<<20 + 1, 3 << 20, 3<<20 - 7} {
		seed := uint64(n)
		want := pattern(n, seed)

		// Go -> Python: the worker checks what it got against the pattern.
		out, err := p.Submit(ctx, payloadBatch("check", []any{want, seed}))
		require.NoError(t, err)
		assert.Equal(t, []any{[]any{true, int64(n)}}, out, "%d bytes to Python", n)

		// Python -> Go.
		out, err = p.Submit(ctx, payloadBatch("make", []any{n, seed}))
		require.NoError(t, err)
		require.Len(t, out, 1)
		assert.True(t, bytes.Equal(want, out[0].([]byte)), "%d bytes from Python", n)

		// Both ways in one call, two items.
		other := pattern(n/2, seed+1)
		out, err = p.Submit(ctx, payloadBatch("reverse", want, other))
		require.NoError(t, err)
		require.Len(t, out, 2)
		assert.True(t, bytes.Equal(reversed(want), out[0].([]byte)), "%d bytes both ways", n)
		assert.True(t, bytes.Equal(reversed(other), out[1].([]byte)), "%d bytes both ways", n/2)
	}
}

// Many large calls at once, on workers that run two at a time: each gets
// its own bytes back.
func TestConcurrentLargePayloads(t *testing.T) {
	o := opts(2)
	o.ThreadsPerWorker = 2
	p := newPool(t, o)
	const callers, calls = 8, 4
	var wg sync.WaitGroup
	errs := make(chan error, callers*calls)
	for c := range callers {
		wg.Go(func() {
			for i := range calls {
				seed := uint64(c*calls + i)
				in := pattern(1<<20+int(seed)*4099, seed)
				out, err := p.Submit(context.Background(), payloadBatch("reverse", in))
				if err != nil {
					errs <- err
					continue
				}
				if !bytes.Equal(reversed(in), out[0].([]byte)) {
					errs <- errors.New("a call got bytes that are not its own, reversed")
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// A worker that dies with a result frame cut short fails its call with a
// crash; the pool replaces it and serves on.
func TestWorkerDiesMidResult(t *testing.T) {
	p := newPool(t, opts(1))
	ctx := context.Background()
	_, err := p.Submit(ctx, payloadBatch("die_mid_result", 1))
	require.ErrorIs(t, err, pools.ErrWorkerCrashed)
	var crash *process.CrashError
	require.ErrorAs(t, err, &crash)
	in := pattern(3<<20, 9)
	out, err := p.Submit(ctx, payloadBatch("reverse", in))
	require.NoError(t, err)
	assert.True(t, bytes.Equal(reversed(in), out[0].([]byte)))
}

// Large batches under Retry while a worker is killed with SIGKILL in the
// middle of them (its other thread's calls still in transfer): every item
// gets exactly one result, the right one.
func TestLargePayloadsSurviveKill(t *testing.T) {
	o := opts(2)
	o.ThreadsPerWorker = 2
	o.Env = []string{"PAYLOADTEST_MARKER=" + filepath.Join(t.TempDir(), "killed")}
	p := newPool(t, o)
	var items [][]byte
	for i := range 24 {
		items = append(items, pattern(1<<20+i*65537, uint64(i)))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := dispatch.Run(ctx, p, dispatch.Wrap(slices.Values(items)), dispatch.Options{
		Module: payloadMod, Function: "reverse_or_die", Strategy: dispatch.FixedBatch(1), MaxInFlight: 8,
		OnError: dispatch.Retry{Attempts: 3, Backoff: time.Millisecond},
	})
	require.NoError(t, err)
	require.Len(t, out.Results, len(items))
	seen := map[string]bool{}
	for _, r := range out.Results {
		require.False(t, seen[r.Item.ID], "item %s has one result", r.Item.ID)
		seen[r.Item.ID] = true
		require.True(t, bytes.Equal(reversed(r.Item.Payload.([]byte)), r.Value.([]byte)), "item %s", r.Item.ID)
	}
	assert.Positive(t, out.Report.Retries, "the kill landed in a batch")
	// The killed worker's replacement has shared memory of its own, and
	// no piece of any is left in use.
	for _, u := range p.SharedMemoryUse() {
		assert.Equal(t, process.SharedUse{Pid: u.Pid, Mapped: true, Sent: u.Sent, Loaded: u.Loaded}, u)
		assert.Equal(t, u.Sent, u.Loaded, "every byte string came back through it")
	}
}

// Byte strings of 256 KiB and more go through each worker's shared memory,
// both ways, and every piece is freed once its call has ended: none leaks,
// through many calls that each fill most of it.
func TestSharedMemoryCarriesLargeBytes(t *testing.T) {
	o := opts(1)
	o.SharedMemory = 4 << 20
	p := newPool(t, o)
	ctx := context.Background()
	for i := range 12 {
		in := pattern(1<<20+i, uint64(i))
		small := pattern(1000, uint64(i))
		out, err := p.Submit(ctx, payloadBatch("reverse", in, small, in))
		require.NoError(t, err)
		require.Len(t, out, 3)
		assert.True(t, bytes.Equal(reversed(in), out[0].([]byte)))
		assert.True(t, bytes.Equal(reversed(small), out[1].([]byte)))
		assert.True(t, bytes.Equal(reversed(in), out[2].([]byte)))
		use := p.SharedMemoryUse()
		require.Len(t, use, 1)
		n := uint64(2 * (i + 1)) // the two large items of every call, each way
		assert.Equal(t, process.SharedUse{Pid: use[0].Pid, Mapped: true, Sent: n, Loaded: n}, use[0], "call %d: nothing left in use", i)
	}
	// Larger than the memory: through the pipe.
	in := pattern(5<<20, 77)
	out, err := p.Submit(ctx, payloadBatch("reverse", in))
	require.NoError(t, err)
	assert.True(t, bytes.Equal(reversed(in), out[0].([]byte)))
	assert.Equal(t, uint64(24), p.SharedMemoryUse()[0].Sent)

	// Turned off: the pipe carries everything.
	o.SharedMemory = -1
	p = newPool(t, o)
	in = pattern(1<<20, 78)
	out, err = p.Submit(ctx, payloadBatch("reverse", in))
	require.NoError(t, err)
	assert.True(t, bytes.Equal(reversed(in), out[0].([]byte)))
	assert.False(t, p.SharedMemoryUse()[0].Mapped)
}

// A worker that sends a shared-memory reference outside its half fails
// that call with an error saying so; the worker serves on.
func TestBadSharedReferenceFromWorker(t *testing.T) {
	o := opts(1)
	o.SharedMemory = 1 << 20
	p := newPool(t, o)
	ctx := context.Background()
	pid := p.SharedMemoryUse()[0].Pid
	for _, ref := range [][]int64{
		{64, 1<<20 + 4096, 10},          // no such slot
		{0, 0, 10},                      // in the pool's half
		{0, 1<<20 + 4096, 1<<20 - 4095}, // past the end
	} {
		_, err := p.Submit(ctx, payloadBatch("bad_shared_reference", ref))
		require.ErrorIs(t, err, pools.ErrConversion, "reference %v", ref)
		assert.ErrorContains(t, err, "is outside the worker's half")
		in := pattern(300<<10, 1)
		out, err := p.Submit(ctx, payloadBatch("reverse", in))
		require.NoError(t, err)
		assert.True(t, bytes.Equal(reversed(in), out[0].([]byte)))
	}
	assert.Equal(t, pid, p.SharedMemoryUse()[0].Pid, "the same worker serves on")
}

// A worker whose shared-memory references add up to more than the frame
// limit (each one valid) fails that call: the pool copies out no more than
// MaxFrame allows one message.
func TestSharedReferencesOverFrameLimit(t *testing.T) {
	o := opts(1)
	o.SharedMemory = 1 << 20
	o.MaxFrame = 1 << 20
	p := newPool(t, o)
	ctx := context.Background()
	ref := []int64{0, 1<<20 + 4096, 600 << 10} // the worker's half, within bounds
	_, err := p.Submit(ctx, payloadBatch("over_budget", ref, 3, 300<<10))
	require.ErrorIs(t, err, pools.ErrConversion)
	assert.ErrorContains(t, err, "the byte strings in shared memory exceed the 1048576-byte limit (Options.MaxFrame)")
	in := pattern(300<<10, 2)
	out, err := p.Submit(ctx, payloadBatch("reverse", in))
	require.NoError(t, err, "the worker serves on")
	assert.True(t, bytes.Equal(reversed(in), out[0].([]byte)))
}

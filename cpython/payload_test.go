//go:build cgo

package cpython_test

import (
	"bytes"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/slither-go/slither/cpython"
)

// Large bytes cross by reference, each copied once: Python copies a Go
// slice straight into its bytes object, Go copies a bytes object straight
// into the destination (SetAlloc's, or make's).

// caller-or-thread: both run the same code; each test runs on both.
type pyCaller interface {
	CallBatch(module, name string, items []any) ([]any, error)
	Call(module, name string, args ...any) (any, error)
	SetAlloc(func(n int) []byte)
}

func eachKind(t *testing.T, f func(t *testing.T, c pyCaller)) {
	t.Run("Thread", func(t *testing.T) {
		runtime.LockOSThread() // a subtest's goroutine; the Thread locks too
		defer runtime.UnlockOSThread()
		f(t, thread(t))
	})
	t.Run("Caller", func(t *testing.T) { f(t, caller(t)) })
}

func TestLargeBytesByReference(t *testing.T) {
	eachKind(t, func(t *testing.T, c pyCaller) {
		big := bytes.Repeat([]byte("0123456789abcdef"), 1<<20/16)
		arr := [40 << 10]byte{1, 2, 3} // an array: the walk passes a temporary copy
		in := []any{big, map[string]any{"k": big[:64<<10]}, []any{big[1:]}, arr, []byte("small")}
		out, err := c.CallBatch("cpytest", "echo", in)
		require.NoError(t, err)
		require.Len(t, out, 5)
		assert.Equal(t, big, out[0])
		assert.Equal(t, map[string]any{"k": big[:64<<10]}, out[1])
		assert.Equal(t, []any{big[1:]}, out[2])
		assert.Equal(t, arr[:], out[3])
		assert.Equal(t, []byte("small"), out[4])
		assert.NotSame(t, &big[0], &out[0].([]byte)[0], "the caller owns a copy")

		// Python copied the slice: what it keeps does not see later writes.
		head, err := c.CallBatch("cpytest", "keep_first", []any{big})
		require.NoError(t, err)
		assert.Equal(t, []any{[]byte("0123")}, head)
		copy(big, "XXXX")
		head, err = c.CallBatch("cpytest", "kept_head", []any{0})
		require.NoError(t, err)
		assert.Equal(t, []any{[]byte("0123")}, head)

		// A bytearray (mutable) is copied under its lock, whatever its size.
		out, err = c.CallBatch("cpytest", "big_bytearray", []any{1 << 20})
		require.NoError(t, err)
		assert.Equal(t, bytes.Repeat([]byte{2}, 1<<20), out[0])
	})
}

// TestLargeBytesKeptReleased: the bytes objects C keeps for Go to copy
// from are released after every call, failed conversions included.
func TestLargeBytesKeptReleased(t *testing.T) {
	eachKind(t, func(t *testing.T, c pyCaller) {
		refs := func() int64 {
			v, err := c.Call("cpytest", "big_refcount", 0)
			require.NoError(t, err)
			return v.(int64)
		}
		before := refs()
		out, err := c.CallBatch("cpytest", "big_results", []any{"ok"})
		require.NoError(t, err)
		one := bytes.Repeat([]byte{1}, 1<<20)
		assert.Equal(t, []any{one, one, map[string]any{"k": one}}, out)
		assert.Equal(t, before, refs(), "kept references released")
		_, err = c.CallBatch("cpytest", "big_results", []any{"bad"})
		require.ErrorIs(t, err, cpython.ErrConversion)
		assert.Equal(t, before, refs(), "released when the result fails to convert")
	})
}

// TestSetAlloc: bytes results of AllocThreshold or more are allocated by
// the SetAlloc function; smaller ones, and a short slice from it, by make.
func TestSetAlloc(t *testing.T) {
	eachKind(t, func(t *testing.T, c pyCaller) {
		var mu sync.Mutex
		var asked []int
		var given [][]byte
		c.SetAlloc(func(n int) []byte {
			mu.Lock()
			defer mu.Unlock()
			asked = append(asked, n)
			if n == 1<<20+1 {
				return make([]byte, 10) // too short: make is used instead
			}
			b := make([]byte, 0, n+100) // capacity to spare: resliced to n
			given = append(given, b)
			return b
		})
		small := make([]byte, cpython.AllocThreshold-1)
		large := bytes.Repeat([]byte{7}, cpython.AllocThreshold)
		odd := bytes.Repeat([]byte{8}, 1<<20+1)
		out, err := c.CallBatch("cpytest", "echo", []any{small, large, odd})
		require.NoError(t, err)
		assert.Equal(t, []int{cpython.AllocThreshold, 1<<20 + 1}, asked)
		require.Len(t, given, 1)
		assert.Equal(t, large, out[1])
		assert.Same(t, &given[0][:1][0], &out[1].([]byte)[0], "the result is the allocated slice")
		assert.Len(t, out[1], cpython.AllocThreshold)
		assert.Equal(t, odd, out[2])
		assert.Equal(t, small, out[0])

		out, err = c.CallBatch("cpytest", "big_bytearray", []any{cpython.AllocThreshold})
		require.NoError(t, err)
		assert.Len(t, given, 2, "a large bytearray result too")
		assert.Same(t, &given[1][:1][0], &out[0].([]byte)[0])

		c.SetAlloc(nil)
		_, err = c.CallBatch("cpytest", "echo", []any{large})
		require.NoError(t, err)
		assert.Len(t, asked, 3, "nil restores make")
	})
}

// TestLargeValuesKeepBuffers: a 1 MiB value does not cost fresh buffers
// per call (the encoder's and C's are kept): what a call allocates is its
// result.
func TestLargeValuesKeepBuffers(t *testing.T) {
	eachKind(t, func(t *testing.T, c pyCaller) {
		for name, v := range map[string]any{
			"bytes": bytes.Repeat([]byte{3}, 1<<20),
			"str":   strings.Repeat("s", 1<<20),
		} {
			items := []any{v}
			_, err := c.CallBatch("cpytest", "echo", items) // grows the buffers once
			require.NoError(t, err)
			allocs := testing.AllocsPerRun(5, func() {
				if _, err := c.CallBatch("cpytest", "echo", items); err != nil {
					t.Error(err)
				}
			})
			// The result list, its boxing, the value: nothing per buffer.
			assert.LessOrEqual(t, allocs, 4.0, name)
		}
	})
}

// TestLargeArgumentsRefilled: the bytes object Python got for a large
// argument is refilled in place on the next call of the same size when
// nothing in Python holds it any more (warm memory, no fresh allocation),
// its cached hash reset; one that Python kept — a reference, or a
// memoryview exporting its buffer — is never touched again.
func TestLargeArgumentsRefilled(t *testing.T) {
	eachKind(t, func(t *testing.T, c pyCaller) {
		a := bytes.Repeat([]byte("a"), 1<<20)
		b := bytes.Repeat([]byte("b"), 1<<20)
		first, err := c.CallBatch("cpytest", "hash_and_id", []any{a})
		require.NoError(t, err)
		second, err := c.CallBatch("cpytest", "hash_and_id", []any{b})
		require.NoError(t, err)
		assert.Equal(t, first[1], second[1], "the same object, refilled")
		assert.Equal(t, []byte("bbbb"), second[2])
		assert.NotEqual(t, first[0], second[0], "a stale cached hash would be a's")
		want, err := c.Call("builtins", "hash", b)
		require.NoError(t, err)
		assert.Equal(t, want, second[0])

		// Kept by reference: never refilled, a new object instead.
		_, err = c.CallBatch("cpytest", "keep_first", []any{a})
		require.NoError(t, err)
		third, err := c.CallBatch("cpytest", "hash_and_id", []any{b})
		require.NoError(t, err)
		assert.Equal(t, []byte("bbbb"), third[2])
		head, err := c.CallBatch("cpytest", "kept_head", []any{0})
		require.NoError(t, err)
		assert.Equal(t, []any{[]byte("aaaa")}, head, "what Python kept changed under it")

		// Kept through a memoryview only.
		_, err = c.CallBatch("cpytest", "keep_view", []any{a})
		require.NoError(t, err)
		for range 3 {
			_, err = c.CallBatch("cpytest", "hash_and_id", []any{b})
			require.NoError(t, err)
		}
		head, err = c.CallBatch("cpytest", "view_head", []any{0})
		require.NoError(t, err)
		assert.Equal(t, []any{[]byte("aaaa")}, head, "a buffer Python still views changed under it")
	})
}

//go:build cgo

package cpython_test

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestHostCalls(t *testing.T) {
	th := thread(t)
	out, err := th.CallBatch("cpytest", "host", []any{[]any{"x", []any{}}})
	require.NoError(t, err)
	assert.Equal(t, []any{"error: no Go host function serves this Python thread (host calls work inside pool workers)"}, out)

	var seen []string
	th.SetHost(func(name string, args []any) (any, error) {
		seen = append(seen, name)
		switch name {
		case "add":
			return args[0].(int64) + args[1].(int64), nil
		case "echo":
			return args, nil
		case "panic":
			panic("boom")
		}
		return nil, errors.New("no host function " + name)
	})
	items := []any{
		[]any{"add", []any{2, 40}},
		[]any{"echo", []any{"é", []byte{0, 1}, map[string]any{"k": 1.5}, nil}},
		[]any{"nope", []any{}},
		[]any{"panic", []any{}},
	}
	out, err = th.CallBatch("cpytest", "host", items)
	require.NoError(t, err)
	assert.Equal(t, int64(42), out[0])
	assert.Equal(t, []any{"é", []byte{0, 1}, map[string]any{"k": 1.5}, nil}, out[1])
	assert.Equal(t, "error: no host function nope", out[2])
	assert.Equal(t, "error: the Go host function panicked: boom", out[3])
	assert.Equal(t, []string{"add", "echo", "nope", "panic"}, seen, "every call ran on this goroutine, in order")

	th.SetHost(nil)
	out, err = th.CallBatch("cpytest", "host", []any{[]any{"add", []any{1, 1}}})
	require.NoError(t, err)
	assert.Contains(t, out[0], "no Go host function")
}

func BenchmarkHostCall(b *testing.B) {
	th, err := rt(b).NewThread()
	require.NoError(b, err)
	defer th.Close()
	th.SetHost(func(name string, args []any) (any, error) { return args[0], nil })
	// One batch makes n host calls from Python; report the cost per call.
	const n = 1000
	items := make([]any, n)
	for i := range items {
		items[i] = []any{"get", []any{"k"}}
	}
	b.ResetTimer()
	for b.Loop() {
		if _, err := th.CallBatch("cpytest", "host", items); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/hostcall")
}

func TestTraceSlot(t *testing.T) {
	th := thread(t)
	read := func() any {
		out, err := th.CallBatch("cpytest", "trace_ids", []any{0})
		require.NoError(t, err)
		return out[0]
	}
	assert.Nil(t, read(), "no trace until one is set")
	tr := [16]byte{0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36}
	sp := [8]byte{0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7}
	th.SetTrace(tr, sp)
	assert.Equal(t, []any{"4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"}, read())
	sp[7] = 0xff
	th.SetTrace(tr, sp)
	assert.Equal(t, []any{"4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902ff"}, read(), "a later batch's ids replace the earlier")
	th.ClearTrace()
	assert.Nil(t, read())

	// The slot is the OS thread's: another thread's Python sees nothing.
	th.SetTrace(tr, sp)
	done := make(chan any)
	go func() {
		other, err := rt(t).NewThread()
		if err != nil {
			done <- err
			return
		}
		defer other.Close()
		out, err := other.CallBatch("cpytest", "trace_ids", []any{0})
		if err != nil {
			done <- err
			return
		}
		done <- out[0]
	}()
	assert.Nil(t, <-done)
	th.ClearTrace()
}

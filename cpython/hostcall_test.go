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

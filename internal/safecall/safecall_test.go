package safecall_test

import (
	"errors"
	"io"
	"runtime"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/slither-go/slither/internal/safecall"
)

func boom() error { panic("boom") }

func TestCallTurnsAPanicIntoAnError(t *testing.T) {
	err := safecall.Call("weight function", boom)
	require.ErrorIs(t, err, safecall.ErrPanic)
	var pe *safecall.PanicError
	require.ErrorAs(t, err, &pe)
	assert.Equal(t, "weight function", pe.Name)
	assert.Equal(t, "boom", pe.Value)
	assert.Equal(t, "weight function panicked: boom", err.Error())
	assert.True(t, strings.Contains(string(pe.Stack), "safecall_test.boom"), "the stack shows where it panicked:\n%s", pe.Stack)
}

func TestCallPassesErrorsThrough(t *testing.T) {
	assert.NoError(t, safecall.Call("f", func() error { return nil }))
	assert.Same(t, io.EOF, safecall.Call("f", func() error { return io.EOF }))
}

func TestPanicValueErrorsUnwrap(t *testing.T) {
	err := safecall.Call("f", func() error { panic(io.ErrUnexpectedEOF) })
	assert.ErrorIs(t, err, io.ErrUnexpectedEOF)
	assert.ErrorIs(t, err, safecall.ErrPanic)

	err = safecall.Call("index", func() error {
		var xs []int
		_ = xs[3]
		return nil
	})
	var re runtime.Error
	assert.True(t, errors.As(err, &re), "a runtime error stays matchable: %v", err)

	err = safecall.Call("nil", func() error { panic(nil) })
	var pn *runtime.PanicNilError
	assert.ErrorAs(t, err, &pn)
}

func TestValueAndValues(t *testing.T) {
	v, err := safecall.Value("key", func() string { return "k" })
	require.NoError(t, err)
	assert.Equal(t, "k", v)
	v, err = safecall.Value("key", func() string { panic("no key") })
	assert.Empty(t, v)
	assert.ErrorContains(t, err, "key panicked: no key")

	n, err := safecall.Values("f", func() (int, error) { return 3, io.EOF })
	assert.Equal(t, 3, n)
	assert.Same(t, io.EOF, err)
	n, err = safecall.Values("f", func() (int, error) { panic(7) })
	assert.Zero(t, n)
	assert.ErrorIs(t, err, safecall.ErrPanic)
}

// Package safecall runs user callbacks so that a panic in one becomes an
// error naming the callback, carrying the panic value and the stack, instead
// of killing the process: one recover for every package of this module.
package safecall

import (
	"errors"
	"fmt"
	"runtime/debug"
)

// ErrPanic is matched (errors.Is) by every [*PanicError].
var ErrPanic = errors.New("callback panicked")

// PanicError is a panic recovered from a user callback.
type PanicError struct {
	// Name says which callback panicked, e.g. `pipe "p" stage "route": predicate for output "x"`.
	Name string
	// Value is what the callback passed to panic.
	Value any
	// Stack is the panicking goroutine's stack, taken where it was recovered.
	Stack []byte
}

func (e *PanicError) Error() string { return fmt.Sprintf("%s panicked: %v", e.Name, e.Value) }

// Unwrap returns ErrPanic and, when the panic value is an error (a runtime
// error, or panic(err)), that error too.
func (e *PanicError) Unwrap() []error {
	if err, ok := e.Value.(error); ok {
		return []error{ErrPanic, err}
	}
	return []error{ErrPanic}
}

// Call runs fn and returns its error, or a *PanicError naming the callback
// when fn panics. A panic(nil) is reported too (Go 1.21+ turns it into a
// *runtime.PanicNilError).
func Call(name string, fn func() error) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = &PanicError{Name: name, Value: p, Stack: debug.Stack()}
		}
	}()
	return fn()
}

// Value runs fn and returns its result, or the zero value and a
// *PanicError naming the callback when fn panics.
func Value[T any](name string, fn func() T) (v T, err error) {
	err = Call(name, func() error { v = fn(); return nil })
	return v, err
}

// Values runs fn and returns its result and error, or the zero value and a
// *PanicError naming the callback when fn panics.
func Values[T any](name string, fn func() (T, error)) (v T, err error) {
	err = Call(name, func() error {
		var e error
		v, e = fn()
		return e
	})
	return v, err
}

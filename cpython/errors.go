//go:build cgo

package cpython

import (
	"errors"
	"strings"
)

// Exception is a Python exception raised by a call, carried into Go. Match it
// with errors.As; its Traceback is the text traceback.format_exception gives.
type Exception struct {
	Type      string // fully qualified type name, e.g. "ValueError" or "mymod.MyError"
	Message   string // str(exc)
	Traceback string
}

func (e *Exception) Error() string {
	if e.Message == "" {
		return "python: " + e.Type
	}
	return "python: " + e.Type + ": " + e.Message
}

// Is makes errors.Is(err, ErrCancelled) true for the exception Slither raises
// inside a call whose Go context was cancelled.
func (e *Exception) Is(target error) bool {
	return target == ErrCancelled && e.Type == "_slither_host.Cancelled"
}

// ErrCancelled is matched by the [*Exception] a cancelled call raised.
var ErrCancelled = errors.New("cpython: call cancelled")

// ErrNotInitialized is returned by operations that need [Init] first.
var ErrNotInitialized = errors.New("cpython: runtime not initialized")

// ErrWrongThread is returned when a [Thread] is used from an OS thread other
// than the one that created it.
var ErrWrongThread = errors.New("cpython: thread state used from another OS thread")

// ErrClosed is returned by a closed [Thread] or [Caller].
var ErrClosed = errors.New("cpython: closed")

// errorRecord decodes the non-OK records written by codec.c.
func errorRecord(status byte, d *decoder) error {
	switch status {
	case 1:
		t, err1 := d.string()
		m, err2 := d.string()
		tb, err3 := d.string()
		if err := errors.Join(err1, err2, err3); err != nil {
			return err
		}
		return &Exception{Type: t, Message: m, Traceback: strings.TrimRight(tb, "\n")}
	case 2:
		p, err1 := d.string()
		r, err2 := d.string()
		if err := errors.Join(err1, err2); err != nil {
			return err
		}
		return &ConversionError{Direction: "python->go", Path: p, Reason: r}
	case 3:
		r, err := d.string()
		if err != nil {
			return err
		}
		return errors.New("cpython: " + r)
	}
	return errCorrupt
}

// Package convert holds what the two value codecs (the embedded pool's
// binary one in cpython, the process pool's tagged JSON in
// pools/process/wire) share: the walk that turns an arbitrary Go value into
// Python-shaped events for an [Emitter], the nesting limit, and the one
// conversion error type. A fix to how Go values map lands here once.
//
// It is pure Go, imports nothing of this module, and builds without cgo.
package convert

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// MaxDepth is how deeply values may nest when they cross between Go and
// Python, either way. Every list and dict counts one level, and so does
// every pointer a Go value is dereferenced through, so that a cyclic value
// fails with a [*ConversionError] instead of exhausting the stack.
const MaxDepth = 1000

// Directions of a [ConversionError].
const (
	GoToPython = "go->python"
	PythonToGo = "python->go"
)

// ErrConversion is matched (errors.Is) by every [*ConversionError]. The
// cpython, wire and pools packages export this same value.
var ErrConversion = errors.New("value cannot cross between Go and Python")

// ConversionError reports a value that has no mapping between Go and
// Python. Path locates it inside the value, e.g. "[3][name]"; it is empty
// for the top level.
type ConversionError struct {
	Direction string // GoToPython or PythonToGo
	Path      string
	Reason    string
}

func (e *ConversionError) Error() string {
	at := ""
	if e.Path != "" {
		at = " at " + e.Path
	}
	return fmt.Sprintf("%s conversion%s: %s", e.Direction, at, e.Reason)
}

// Is makes errors.Is(err, ErrConversion) true.
func (e *ConversionError) Is(target error) bool { return target == ErrConversion }

// Trace is a [ConversionError] under construction. A walk or decode that
// fails creates it at the failing value with [Failf]; each enclosing level
// adds its path segment while the recursion unwinds ([Trace.AtIndex],
// [Trace.AtKey]), and the top turns it into the error ([Trace.Err]). The
// path is therefore only built when something fails: a successful
// conversion formats no indexes.
type Trace struct {
	reason string
	segs   []string // innermost first
}

// Failf starts a Trace at the failing value.
func Failf(format string, args ...any) *Trace {
	return &Trace{reason: fmt.Sprintf(format, args...)}
}

// TooDeep is the failure of a value nested deeper than [MaxDepth].
func TooDeep() *Trace {
	return Failf("nesting deeper than %d levels (each list, dict and pointer counts one: is the value cyclic?)", MaxDepth)
}

// AtIndex records that the failing value is item i of its enclosing list.
func (t *Trace) AtIndex(i int) *Trace {
	t.segs = append(t.segs, "["+strconv.Itoa(i)+"]")
	return t
}

// AtKey records that the failing value is under key k of its enclosing dict.
func (t *Trace) AtKey(k string) *Trace {
	t.segs = append(t.segs, "["+k+"]")
	return t
}

// Err returns the finished error.
func (t *Trace) Err(direction string) *ConversionError {
	segs := slices.Clone(t.segs)
	slices.Reverse(segs)
	return &ConversionError{Direction: direction, Path: strings.Join(segs, ""), Reason: t.reason}
}

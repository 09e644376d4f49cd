// Package pools defines the contract every Slither worker pool keeps, whether
// its workers are Python threads embedded in this process (pools/thread) or
// Python subprocesses (pools/process).
//
// A pool runs batches: one call of module.function(items) in Python that
// returns exactly one result per item. A pool never drops or reorders
// results: a reply of the wrong length is a [*ResultCountError].
package pools

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Kind names a pool implementation; Python code sees it as
// slither.context().pool.
type Kind string

const (
	// KindThread runs batches on threads of the free-threaded interpreter
	// embedded in the Go process.
	KindThread Kind = "thread"
	// KindProcess runs batches in isolated Python subprocesses.
	KindProcess Kind = "process"
)

// Batch is one call: Module.Function(Items) in Python.
type Batch struct {
	// Module is an importable Python module name, e.g. "mypkg.features".
	Module string
	// Function is a callable attribute of Module that takes a list and
	// returns a list (or tuple) with one result per item.
	Function string
	// Items are converted to Python values as cpython documents; the zero
	// value (nil) sends an empty list.
	Items []any
	// Session is the session id Python sees as slither.context().session_id;
	// empty means none.
	Session string
}

// Validate reports a batch that names no module or function, wrapping
// [ErrInvalidBatch]. Pools call it before queueing.
func (b Batch) Validate() error {
	if b.Module == "" {
		return fmt.Errorf("%w: empty module name", ErrInvalidBatch)
	}
	if b.Function == "" {
		return fmt.Errorf("%w: empty function name for module %s", ErrInvalidBatch, b.Module)
	}
	return nil
}

// Pool runs batches on a fixed set of workers. All methods are safe for
// concurrent use.
type Pool interface {
	// Submit runs b on the next free worker and returns its results, one
	// per item, in item order. It blocks until a worker is free and the
	// call ends, or ctx ends: then a queued batch is withdrawn and a running
	// one is interrupted, and the error wraps ctx's error. After Close it
	// returns an error wrapping [ErrClosed].
	Submit(ctx context.Context, b Batch) ([]any, error)
	// Capacity is the number of batches the pool runs at once.
	Capacity() int
	// Stats is a snapshot of per-worker counters.
	Stats() Stats
	// Kind says which implementation this is.
	Kind() Kind
	// Close stops accepting batches and waits for those already submitted
	// to finish (drain). If ctx ends first, queued batches fail with
	// [ErrClosed], running ones are interrupted, and Close returns ctx's
	// error without waiting further. Close is idempotent.
	Close(ctx context.Context) error
}

// Stats is a snapshot of a pool's counters.
type Stats struct {
	Kind    Kind
	Workers []WorkerStats
	// Waiting is the number of submitted batches waiting for a worker.
	Waiting int
	// Running is the number of workers running a batch right now.
	Running int
}

// Totals sums the per-worker counters.
func (s Stats) Totals() WorkerStats {
	t := WorkerStats{ID: -1}
	for _, w := range s.Workers {
		t.Calls += w.Calls
		t.Items += w.Items
		t.Errors += w.Errors
		t.Busy += w.Busy
	}
	return t
}

// WorkerStats counts what one worker has done since the pool started.
type WorkerStats struct {
	// ID is the worker's index, as Python sees it in slither.context().worker_id.
	ID int
	// Running says whether the worker is running a batch right now.
	Running bool
	// Calls is the number of batches the worker ran (including failed ones).
	Calls uint64
	// Items is the number of items in those batches.
	Items uint64
	// Errors is the number of batches that failed.
	Errors uint64
	// Busy is the time spent running batches, conversion included.
	Busy time.Duration
}

var (
	// ErrClosed is returned for batches submitted to, or withdrawn by, a
	// closed pool.
	ErrClosed = errors.New("pools: pool is closed")
	// ErrInvalidBatch is wrapped by errors for batches that name no module
	// or function.
	ErrInvalidBatch = errors.New("pools: invalid batch")
	// ErrResultCount is matched by every [*ResultCountError].
	ErrResultCount = errors.New("pools: wrong number of results")
)

// ResultCountError says a Python batch function returned a list whose
// length differs from its batch's: the results cannot be matched to items,
// so none are returned.
type ResultCountError struct {
	Module, Function string
	Items, Results   int
}

func (e *ResultCountError) Error() string {
	return fmt.Sprintf("pools: %s.%s returned %d results for %d items (a batch function must return exactly one result per item)",
		e.Module, e.Function, e.Results, e.Items)
}

// Is makes errors.Is(err, ErrResultCount) true.
func (e *ResultCountError) Is(target error) bool { return target == ErrResultCount }

// CheckResults returns results, or a [*ResultCountError] when their number
// differs from the batch's.
func CheckResults(b Batch, results []any) ([]any, error) {
	if len(results) != len(b.Items) {
		return nil, &ResultCountError{Module: b.Module, Function: b.Function, Items: len(b.Items), Results: len(results)}
	}
	return results, nil
}

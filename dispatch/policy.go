package dispatch

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/slither-go/slither/internal/safecall"
	"github.com/slither-go/slither/pools"
)

// Policy says what happens to a batch that failed: [Halt], [Skip],
// [Route], [Retry] or [Bisect].
type Policy interface{ policy() }

// Halt stops the run: in-flight batches are cancelled and the run returns
// a [*BatchError] naming the failed batch and its items. The default.
type Halt struct{}

// Skip drops the failed batch and goes on; the report counts it.
type Skip struct{}

// Route sends each item of a failed batch, with its error, to the error
// bucket the function names; the run goes on. Run collects buckets in
// Output.Buckets; Stream yields such items with Result.Bucket set. A
// Route function that panics halts the run with an error wrapping both the
// batch's error and the panic ([ErrPanic]).
type Route func(it Item, err error) string

// Retry submits a failed batch again, up to Attempts more times, waiting
// Backoff before the first retry and twice as long before each next one
// (at most 30s). A batch whose worker crashed goes to another worker: the
// crashed one is being replaced. When the attempts are spent, or If says
// an error is not worth retrying, Then applies (nil means Halt; a
// [Bisect] there retries the batch whole first, then isolates what still
// fails).
//
// Delivery is at least once: a batch that timed out, or whose submission
// was cancelled, may still be running in its worker when Retry submits it
// again (a worker is told to stop, and a process worker that runs past a
// timeout is killed, but Python code may already have had effects), so the
// function should be idempotent per item when side effects matter.
type Retry struct {
	Attempts int
	Backoff  time.Duration
	// If reports whether err is worth retrying; nil retries everything but
	// cancellation, a closed or failed pool, an invalid batch, values that
	// cannot cross to Python and a lost session (see [Retryable]). If it
	// panics, the run halts with an error wrapping both the batch's error
	// and the panic ([ErrPanic]).
	If   func(err error) bool
	Then Policy
}

// Bisect isolates the items that make a batch fail. When a batch fails as
// a whole — a Python exception, a crashed worker, a timeout, a value that
// cannot cross, a wrong number of results — Bisect halves it and submits
// each half again, recursively, until each failing item stands alone; Then
// applies to those items (nil means Halt). The rest of the batch
// succeeds, so one poison pill costs one item, not its batch, for about
// 2·log2(batch size) extra submissions (Report.Bisections counts them).
//
// Errors that say nothing about the items are not bisected and Then
// applies to the whole batch: cancellation, a closed or failed pool, an
// invalid batch, a lost session ([Splittable]). Items that fail on their
// own (slither.failed) are isolated already. Under [Retry], put Bisect in
// Retry.Then: the batch is retried whole first. As with Retry, the items
// of a half that crashed or timed out may have run before: delivery is at
// least once.
type Bisect struct {
	// Then applies to each item that still fails alone: Halt (nil), Skip or
	// Route.
	Then Policy
}

func (Halt) policy()   {}
func (Skip) policy()   {}
func (Route) policy()  {}
func (Retry) policy()  {}
func (Bisect) policy() {}

// ErrPanic is matched (errors.Is) by the error of a user callback that
// panicked — a strategy's batcher, a weight or key function, the input
// iterator, a Route or Retry.If function, a pool's Submit; errors.As with
// a *[PanicError] gives the callback's name, the panic value and the
// stack.
var ErrPanic = safecall.ErrPanic

// PanicError is a panic recovered from a user callback; see [ErrPanic].
type PanicError = safecall.PanicError

// Retryable is Retry's default test: false for errors that would fail the
// same way again, and for a lost session (its state is gone; a new
// session must be opened).
func Retryable(err error) bool {
	for _, e := range []error{context.Canceled, context.DeadlineExceeded, pools.ErrClosed,
		pools.ErrPoolFailed, pools.ErrInvalidBatch, pools.ErrConversion, pools.ErrSessionLost,
		pools.ErrReentrant} {
		if errors.Is(err, e) {
			return false
		}
	}
	return true
}

// Splittable is Bisect's test: whether a failed batch's error may come
// from some of its items, so that halving it can isolate them. False for
// cancellation, a closed or failed pool, an invalid batch, a lost session
// and a re-entrant submit: every half would fail the same way.
func Splittable(err error) bool {
	for _, e := range []error{context.Canceled, context.DeadlineExceeded, pools.ErrClosed,
		pools.ErrPoolFailed, pools.ErrInvalidBatch, pools.ErrSessionLost, pools.ErrReentrant} {
		if errors.Is(err, e) {
			return false
		}
	}
	return true
}

// CheckPolicy reports whether p is a policy a run accepts: Retry.Then may
// be Halt, Skip, Route or Bisect; Bisect.Then may be Halt, Skip or Route;
// a Route needs a function; Retry's Attempts and Backoff are not negative.
func CheckPolicy(p Policy) error { return checkPolicy(p, "") }

// checkPolicy checks p, found in the Then of the policy named by in ("" at
// the top).
func checkPolicy(p Policy, in string) error {
	switch x := p.(type) {
	case nil, Halt, Skip:
		return nil
	case Route:
		if x == nil {
			return fmt.Errorf("dispatch: Route policy with a nil function")
		}
		return nil
	case Retry:
		if in != "" {
			return fmt.Errorf("dispatch: %s.Then cannot be another Retry", in)
		}
		if x.Attempts < 0 || x.Backoff < 0 {
			return fmt.Errorf("dispatch: Retry with Attempts %d and Backoff %v; neither may be negative", x.Attempts, x.Backoff)
		}
		return checkPolicy(x.Then, "Retry")
	case Bisect:
		if in == "Bisect" {
			return fmt.Errorf("dispatch: Bisect.Then cannot be another Bisect")
		}
		return checkPolicy(x.Then, "Bisect")
	}
	return fmt.Errorf("dispatch: unknown policy %T", p)
}

// Final is the policy that settles the items that still fail under p: p
// without its Retry and Bisect layers — Halt (or nil, meaning Halt), Skip
// or Route.
func Final(p Policy) Policy {
	for {
		switch x := p.(type) {
		case Retry:
			p = x.Then
		case Bisect:
			p = x.Then
		default:
			return p
		}
	}
}

// BatchError is the error of a run halted by a failed batch.
type BatchError struct {
	Batch    int      // the batch's number, from 0 in the order batches were formed
	ItemIDs  []string // the ids of its failed items (all of them, unless some failed alone or Bisect isolated them)
	Attempts int      // how many times they were submitted (0: never, their batcher failed on them)
	Err      error
}

func (e *BatchError) Error() string {
	ids := e.ItemIDs
	more := ""
	if len(ids) > 8 {
		more = fmt.Sprintf(", ... (%d items)", len(ids))
		ids = ids[:8]
	}
	if e.Attempts == 0 { // its batcher failed on it (see ErrPanic)
		return fmt.Sprintf("dispatch: items %s%s failed before they were batched: %v", strings.Join(ids, ", "), more, e.Err)
	}
	plural := "s"
	if e.Attempts == 1 {
		plural = ""
	}
	return fmt.Sprintf("dispatch: batch %d (items %s%s) failed after %d attempt%s: %v",
		e.Batch, strings.Join(ids, ", "), more, e.Attempts, plural, e.Err)
}

func (e *BatchError) Unwrap() error { return e.Err }

package dispatch

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/slither-go/slither/pools"
)

// Policy says what happens to a batch that failed: [Halt], [Skip],
// [Route] or [Retry].
type Policy interface{ policy() }

// Halt stops the run: in-flight batches are cancelled and the run returns
// a [*BatchError] naming the failed batch and its items. The default.
type Halt struct{}

// Skip drops the failed batch and goes on; the report counts it.
type Skip struct{}

// Route sends each item of a failed batch, with its error, to the error
// bucket the function names; the run goes on. Run collects buckets in
// Output.Buckets; Stream yields such items with Result.Bucket set.
type Route func(it Item, err error) string

// Retry submits a failed batch again, up to Attempts more times, waiting
// Backoff before the first retry and twice as long before each next one
// (at most 30s). A batch whose worker crashed goes to another worker: the
// crashed one is being replaced. When the attempts are spent, or If says
// an error is not worth retrying, Then applies (nil means Halt).
type Retry struct {
	Attempts int
	Backoff  time.Duration
	// If reports whether err is worth retrying; nil retries everything but
	// cancellation, a closed or failed pool, an invalid batch and values
	// that cannot cross to Python (see [Retryable]).
	If   func(err error) bool
	Then Policy
}

func (Halt) policy()  {}
func (Skip) policy()  {}
func (Route) policy() {}
func (Retry) policy() {}

// Retryable is Retry's default test: false for errors that would fail the
// same way again.
func Retryable(err error) bool {
	for _, e := range []error{context.Canceled, context.DeadlineExceeded, pools.ErrClosed,
		pools.ErrPoolFailed, pools.ErrInvalidBatch, pools.ErrConversion} {
		if errors.Is(err, e) {
			return false
		}
	}
	return true
}

func checkPolicy(p Policy, nested bool) error {
	switch x := p.(type) {
	case nil, Halt, Skip:
		return nil
	case Route:
		if x == nil {
			return fmt.Errorf("dispatch: Route policy with a nil function")
		}
		return nil
	case Retry:
		if nested {
			return fmt.Errorf("dispatch: Retry.Then cannot be another Retry")
		}
		if x.Attempts < 0 || x.Backoff < 0 {
			return fmt.Errorf("dispatch: Retry with Attempts %d and Backoff %v; neither may be negative", x.Attempts, x.Backoff)
		}
		return checkPolicy(x.Then, true)
	}
	return fmt.Errorf("dispatch: unknown policy %T", p)
}

// BatchError is the error of a run halted by a failed batch.
type BatchError struct {
	Batch    int      // the batch's number, from 0 in the order batches were formed
	ItemIDs  []string // the ids of its items
	Attempts int      // how many times it was submitted
	Err      error
}

func (e *BatchError) Error() string {
	ids := e.ItemIDs
	more := ""
	if len(ids) > 8 {
		more = fmt.Sprintf(", ... (%d items)", len(ids))
		ids = ids[:8]
	}
	plural := "s"
	if e.Attempts == 1 {
		plural = ""
	}
	return fmt.Sprintf("dispatch: batch %d (items %s%s) failed after %d attempt%s: %v",
		e.Batch, strings.Join(ids, ", "), more, e.Attempts, plural, e.Err)
}

func (e *BatchError) Unwrap() error { return e.Err }

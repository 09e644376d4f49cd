package dispatch

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/slither-go/slither/internal/safecall"
	"github.com/slither-go/slither/pools"
	"github.com/slither-go/slither/telemetry"
	"go.opentelemetry.io/otel/attribute"
)

// failedWhole is the outcome of a batch that failed as a whole with err.
func failedWhole(idx []int, err error, attempt int) outcome {
	res := outcome{whole: err}
	for _, i := range idx {
		res.failed = append(res.failed, failure{i: i, err: err, attempt: attempt})
	}
	return res
}

// submit sends the items of b at idx to the pool as one batch, records the
// values of those that succeed and returns those that failed: every one
// when Submit fails, or the ones the Python function failed on their own
// (slither.failed).
func (r *runner) submit(b *batch, idx []int, attempt int) outcome {
	o := &r.d.opts
	seq := b.seq
	sub := make([]Item, len(idx))
	payloads := make([]any, len(idx))
	for k, i := range idx {
		sub[k], payloads[k] = b.items[i], b.items[i].Payload
	}
	pb := pools.Batch{Module: o.Module, Function: o.Function, Items: payloads, Session: o.Session,
		Unpinned: o.Unpinned, Route: o.Route}
	m := telemetry.Measurements{Items: len(sub), BatchSize: len(sub)}
	r.emit(telemetry.DispatchBatchStart, m, seq, attempt, nil, nil)
	// The batch's span is the parent of whatever the pool does for it, and
	// its context is what Python sees in slither.context().
	bctx, span := r.ctx, noSpan
	if r.traceBatches {
		bctx, span = r.tracer.Start(r.ctx, "slither.batch")
	}
	defer span.End()
	if span.IsRecording() {
		span.SetAttributes(attribute.String("slither.function", r.fn), attribute.Int("slither.batch.index", seq),
			attribute.Int("slither.batch.items", len(sub)), attribute.Int("slither.attempt", attempt))
	}
	var ci pools.CallInfo
	start := time.Now()
	sctx, cancel := bctx, context.CancelFunc(func() {})
	if o.Timeout > 0 {
		sctx, cancel = context.WithTimeoutCause(bctx, o.Timeout, fmt.Errorf("%w: batch ran past the %v timeout", pools.ErrTimeout, o.Timeout))
	}
	out, err := safecall.Values("dispatch: the pool's Submit", func() ([]any, error) {
		return r.d.pool.Submit(pools.WithCallInfo(sctx, &ci), pb)
	})
	// The pool fills ci before Submit returns, unless Submit returned
	// because sctx ended: then the pool may still be writing it.
	w := r.whereOf(&ci, err == nil || sctx.Err() == nil)
	if err == nil {
		// A pool from outside this module may return any number of results.
		out, err = pools.CheckResults(pb, out)
	} else if sctx.Err() != nil && r.ctx.Err() == nil && !errors.Is(err, pools.ErrTimeout) {
		// Our timeout ended it, whatever the pool says: a bare
		// context.DeadlineExceeded would read as not worth retrying.
		err = fmt.Errorf("%w (the pool returned: %v)", context.Cause(sctx), err)
	}
	cancel()
	m.Duration = time.Since(start)
	if span.IsRecording() {
		spanWhere(span, &w)
	}

	if err != nil {
		if r.ctx.Err() != nil { // cancelled: the consumer is stopping
			// Not this batch's failure: neither the event nor the span
			// carries an error, and the run's span tells why it ended.
			r.emit(telemetry.DispatchBatchException, m, seq, attempt, &w, nil)
			if span.IsRecording() {
				span.SetAttributes(attribute.Bool("slither.batch.cancelled", true))
			}
			return outcome{cancelled: true}
		}
		r.emit(telemetry.DispatchBatchException, m, seq, attempt, &w, err)
		RecordError(span, err, true)
		return failedWhole(idx, err, attempt)
	}
	if o.Telemetry != nil {
		// Before Observe, which may yet fail the batch: the stop event
		// ends the batch's time in flight whatever follows.
		if n := countFailed(out); n > 0 {
			m.Extra = map[string]float64{"failed_items": float64(n)}
		}
		r.emit(telemetry.DispatchBatchStop, m, seq, attempt, &w, nil)
	}
	if r.observer != nil {
		// Service time: the wall time also holds the wait for a worker,
		// which says nothing of what a batch size costs.
		svc := ci.Service
		if svc <= 0 { // a pool that does not measure it
			svc = m.Duration
		}
		// A panicking Observe fails this batch like any error, so the
		// run's policy applies.
		if err := safecall.Call("dispatch: the batcher's Observe", func() error { r.observer.Observe(len(sub), svc); return nil }); err != nil {
			RecordError(span, err, true)
			return failedWhole(idx, err, attempt)
		}
	}
	var res outcome
	for k, v := range out {
		if msg, bad := failedMarker(v); bad {
			res.failed = append(res.failed, failure{i: idx[k], err: &ItemError{ID: sub[k].ID, Message: msg}, attempt: attempt})
			continue
		}
		b.values[idx[k]], b.has[idx[k]] = v, true
	}
	ok := len(out) - len(res.failed)
	if len(res.failed) > 0 && span.IsRecording() {
		span.SetAttributes(attribute.Int("slither.batch.failed_items", len(res.failed)))
	}
	r.d.count(func(rep *Report) {
		rep.Succeeded += ok
		rep.FailedItems += len(res.failed)
		rep.PerWorker[ci.Worker]++
	})
	return res
}

// countFailed counts the values that are slither.failed markers.
func countFailed(out []any) int {
	n := 0
	for _, v := range out {
		if _, bad := failedMarker(v); bad {
			n++
		}
	}
	return n
}

// failedMarker reports whether v is what slither.failed(message) returns
// for one item that failed on its own.
func failedMarker(v any) (string, bool) {
	m, ok := v.(map[string]any)
	if !ok || len(m) != 1 {
		return "", false
	}
	msg, ok := m["__slither_failed__"].(string)
	return msg, ok
}

// ItemError is the error of one item that its Python function failed on
// its own (slither.failed), leaving the rest of its batch good.
type ItemError struct {
	ID      string
	Message string
}

func (e *ItemError) Error() string { return fmt.Sprintf("item %s failed: %s", e.ID, e.Message) }

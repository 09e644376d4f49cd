package dispatch

import (
	"errors"
	"time"

	"github.com/slither-go/slither/internal/safecall"
	"github.com/slither-go/slither/telemetry"
)

// batch is one batch while it runs: its items and the values gathered so
// far, across retries and bisection.
type batch struct {
	seq    int
	items  []Item
	values []any
	has    []bool
}

// failure is an item that failed, with its error and the number of the
// submission it failed in.
type failure struct {
	i       int // index into batch.items
	err     error
	attempt int
}

// outcome is what is left of a batch after a submission (or after Retry or
// Bisect acted): the items that failed.
type outcome struct {
	failed []failure
	// whole is the error of a submission that failed as a whole; failed
	// then holds every item of that submission.
	whole error
	// halt, when set, ends the run whatever the policy: a policy's own
	// callback failed (it wraps the batch's error and the panic).
	halt error
	// cancelled says the run ended meanwhile; the batch is dropped.
	cancelled bool
}

func (o outcome) indices() []int {
	idx := make([]int, len(o.failed))
	for k, f := range o.failed {
		idx[k] = f.i
	}
	return idx
}

func allIndices(n int) []int {
	idx := make([]int, n)
	for i := range idx {
		idx[i] = i
	}
	return idx
}

// run submits one batch and applies the error policy: Retry resubmits
// what failed (the whole batch, or just the items that failed on their
// own), Bisect splits what still fails as a whole, and the final policy
// (Skip, Route, Halt) settles the rest. Results keep their input order.
// A non-nil pre is an error the items met before they could be submitted
// (their batcher panicked): only the final policy applies to it.
func (r *runner) run(seq int, items []Item, pre error) done {
	b := &batch{seq: seq, items: items, values: make([]any, len(items)), has: make([]bool, len(items))}
	policy := r.d.opts.OnError
	var out outcome
	if pre != nil {
		for i := range items {
			out.failed = append(out.failed, failure{i: i, err: pre})
		}
		return r.settle(b, out, Final(policy))
	}
	out = r.submit(b, allIndices(len(items)), 1)
	if rt, ok := policy.(Retry); ok {
		out = r.retry(b, out, rt)
		policy = rt.Then
	}
	if bs, ok := policy.(Bisect); ok {
		out = r.bisect(b, out)
		policy = bs.Then
	}
	if out.cancelled {
		return done{seq: seq, skipped: true}
	}
	return r.settle(b, out, policy)
}

// retry resubmits what failed while rt allows it.
func (r *runner) retry(b *batch, out outcome, rt Retry) outcome {
	retryable := Retryable
	if rt.If != nil {
		retryable = rt.If
	}
	var backoff time.Duration
	for n := 0; n < rt.Attempts && len(out.failed) > 0 && !out.cancelled; n++ {
		first := out.failed[0]
		ok, err := safecall.Value("dispatch: Retry.If", func() bool { return retryable(first.err) })
		if err != nil {
			out.halt = errors.Join(first.err, err)
			return out
		}
		if !ok {
			break
		}
		if backoff == 0 {
			backoff = rt.Backoff
		} else {
			backoff = min(2*backoff, 30*time.Second)
		}
		if backoff > 0 {
			t := time.NewTimer(backoff)
			select {
			case <-t.C:
			case <-r.ctx.Done():
				t.Stop()
				return outcome{cancelled: true}
			}
		}
		r.d.count(func(rep *Report) { rep.Retries++ })
		r.emit(telemetry.DispatchBatchRetry, telemetry.Measurements{Items: len(out.failed), BatchSize: len(out.failed)}, b.seq, first.attempt+1, nil, nil)
		out = r.submit(b, out.indices(), first.attempt+1)
	}
	return out
}

// bisect halves what failed as a whole and submits each half, recursively,
// until the items that fail stand alone (or fail on their own, or fail
// with an error that halving cannot help: see Splittable).
func (r *runner) bisect(b *batch, out outcome) outcome {
	if out.whole == nil || len(out.failed) < 2 || out.halt != nil || out.cancelled || !Splittable(out.whole) {
		return out
	}
	idx := out.indices()
	attempt := out.failed[0].attempt + 1
	var res outcome
	for _, half := range [][]int{idx[:len(idx)/2], idx[len(idx)/2:]} {
		r.d.count(func(rep *Report) { rep.Bisections++ })
		r.emit(telemetry.DispatchBatchRetry, telemetry.Measurements{Items: len(half), BatchSize: len(half)}, b.seq, attempt, nil, nil)
		h := r.bisect(b, r.submit(b, half, attempt))
		if h.cancelled {
			return h
		}
		res.failed = append(res.failed, h.failed...)
	}
	return res
}

// settle applies the final policy to the items that still fail and
// returns the batch's results.
func (r *runner) settle(b *batch, out outcome, policy Policy) done {
	var routed []Result
	skipped := 0
	if len(out.failed) > 0 && out.halt == nil {
		switch p := policy.(type) {
		case Skip:
			skipped = len(out.failed)
			whole := out.whole != nil && len(out.failed) == len(b.items)
			r.d.count(func(rep *Report) {
				if whole {
					rep.SkippedBatches++
				}
				rep.SkippedItems += skipped
			})
		case Route:
			for _, f := range out.failed {
				it := b.items[f.i]
				bucket, err := safecall.Value("dispatch: the Route policy's function", func() string { return p(it, f.err) })
				if err != nil {
					out.halt = errors.Join(f.err, err)
					break
				}
				routed = append(routed, Result{Item: it, Err: f.err, Bucket: bucket})
			}
			if out.halt == nil {
				r.d.count(func(rep *Report) { rep.Routed += len(routed) })
			}
		default: // Halt
			out.halt = out.failed[0].err
		}
	}
	if out.halt != nil {
		r.d.count(func(rep *Report) { rep.Halted += len(out.failed) })
		ids := make([]string, len(out.failed))
		for k, f := range out.failed {
			ids[k] = b.items[f.i].ID
		}
		return done{seq: b.seq, err: &BatchError{Batch: b.seq, ItemIDs: ids, Attempts: out.failed[0].attempt, Err: out.halt}}
	}
	d := done{seq: b.seq, routed: routed, skipped: skipped == len(b.items)}
	for i, it := range b.items {
		if b.has[i] {
			d.items = append(d.items, it)
			d.values = append(d.values, b.values[i])
		}
	}
	return d
}

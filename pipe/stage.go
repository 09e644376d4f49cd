package pipe

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"maps"
	"time"

	"github.com/slither-go/slither/dispatch"
	"github.com/slither-go/slither/internal/safecall"
	"github.com/slither-go/slither/pools"
	"github.com/slither-go/slither/telemetry"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// stageRun is one stage of one run.
type stageRun struct {
	s       *Stream
	st      *stage
	stats   *stageStats
	pool    pools.Pool
	policy  dispatch.Policy
	session string
	in      <-chan envelope
	out     chan<- envelope
	fail    func(error)
	span    trace.Span // the stage's span, set when it starts
}

func (r *stageRun) emit(ctx context.Context, e envelope) bool {
	select {
	case r.out <- e:
		return true
	case <-ctx.Done():
		return false
	}
}

// event sends a pipe.stage.* event; md, which may be nil, holds more
// metadata than the stage's own.
func (r *stageRun) event(ev telemetry.Event, m telemetry.Measurements, md telemetry.Metadata) {
	tel := r.s.env.Telemetry
	if tel == nil {
		return
	}
	if md == nil {
		md = telemetry.Metadata{}
	}
	md["pipe"], md["stage"], md["kind"], md["session"] = r.s.p.name, r.st.name, kindName(r.st.kind), r.session
	tel.Emit(ev, m, md)
}

func (r *stageRun) run(ctx context.Context) {
	// The stage's work, its user functions and its Python batches, runs
	// under its span.
	ctx, r.span = r.s.tracer.Start(ctx, "slither.pipe.stage")
	if r.span.IsRecording() {
		r.span.SetAttributes(attribute.String("slither.pipe", r.s.p.name), attribute.String("slither.stage", r.st.name),
			attribute.String("slither.stage.kind", kindName(r.st.kind)))
	}
	r.event(telemetry.PipeStageStart, telemetry.Measurements{}, nil)
	defer func() {
		rep := r.stats.snapshot()
		if r.span.IsRecording() {
			r.span.SetAttributes(attribute.Int("slither.items.in", rep.In), attribute.Int("slither.items.out", rep.Out),
				attribute.Int("slither.items.skipped", rep.Skipped), attribute.Int("slither.items.failed", rep.Errors),
				attribute.Int("slither.retries", rep.Retries))
		}
		r.span.End()
		if r.s.env.Telemetry == nil {
			return
		}
		md := telemetry.Metadata{"in": rep.In, "skipped": rep.Skipped, "errors": rep.Errors, "retries": rep.Retries}
		if r.st.kind == kindRouter {
			md["routed"] = rep.Routes
		}
		r.event(telemetry.PipeStageStop, telemetry.Measurements{Items: rep.Out, Duration: rep.Busy}, md)
	}()
	switch r.st.kind {
	case kindPython:
		r.python(ctx)
	case kindBatch:
		r.batch(ctx)
	default:
		for e := range recv(ctx, r.in) {
			if e.out != "" { // already bound for an output
				if !r.emit(ctx, e) {
					return
				}
				continue
			}
			r.stats.in.Add(1)
			if !r.item(ctx, e.it) {
				return
			}
		}
	}
}

// recv yields what ch delivers until it is closed or ctx ends.
func recv(ctx context.Context, ch <-chan envelope) iter.Seq[envelope] {
	return func(yield func(envelope) bool) {
		for {
			select {
			case e, ok := <-ch:
				if !ok || !yield(e) {
					return
				}
			case <-ctx.Done():
				return
			}
		}
	}
}

// item runs a per-item stage on one item; false stops the stage.
func (r *stageRun) item(ctx context.Context, it Item) bool {
	start := time.Now()
	var outs []Item
	var err error
	switch r.st.kind {
	case kindRouter:
		outs, err = r.attempt(ctx, func() ([]Item, error) { return r.route(it) })
		if err == nil {
			r.stats.count(&r.stats.routes, outs[0].Route, 1)
		}
	case kindMap:
		outs, err = r.attempt(ctx, func() ([]Item, error) {
			o, err := safecall.Values(r.callback("Map function"), func() (Item, error) { return r.st.mapFn(ctx, it) })
			return []Item{o}, err
		})
	default:
		outs, err = r.attempt(ctx, func() ([]Item, error) {
			return safecall.Values(r.callback("FlatMap function"), func() ([]Item, error) { return r.st.flatFn(ctx, it) })
		})
	}
	r.stats.busy.Add(int64(time.Since(start)))
	return r.deliver(ctx, []Item{it}, outs, err)
}

// route tags it with the output of the first route whose predicate holds,
// or DefaultOutput.
func (r *stageRun) route(it Item) ([]Item, error) {
	out := DefaultOutput
	for _, rt := range r.st.routes {
		ok, err := safecall.Value(r.callback(fmt.Sprintf("predicate for output %q", rt.Output)), func() bool { return rt.When(it) })
		if err != nil {
			return nil, err
		}
		if ok {
			out = rt.Output
			break
		}
	}
	it.Route = out
	return []Item{it}, nil
}

// callback names a user function of this stage in errors.
func (r *stageRun) callback(what string) string {
	return fmt.Sprintf("%s of stage %q", what, r.st.name)
}

// batch runs a batch stage: up to batchN items per call.
func (r *stageRun) batch(ctx context.Context) {
	var buf []Item
	flush := func() bool {
		if len(buf) == 0 {
			return true
		}
		items := buf
		buf = nil
		start := time.Now()
		outs, err := r.attempt(ctx, func() ([]Item, error) { return r.callBatch(ctx, items) })
		r.stats.busy.Add(int64(time.Since(start)))
		if isBisect(r.policy) {
			return r.bisect(ctx, items, outs, err)
		}
		return r.deliver(ctx, items, outs, err)
	}
	for it := range r.inputs(ctx) {
		buf = append(buf, it)
		if len(buf) >= r.st.batchN && !flush() {
			return
		}
	}
	flush()
}

// inputs yields the items this stage works on, counting them, and forwards
// on the way those an earlier router bound for an output. It ends when the
// input does or ctx ends.
func (r *stageRun) inputs(ctx context.Context) iter.Seq[Item] {
	return func(yield func(Item) bool) {
		for e := range recv(ctx, r.in) {
			if e.out != "" {
				if !r.emit(ctx, e) {
					return
				}
				continue
			}
			r.stats.in.Add(1)
			if !yield(e.it) {
				return
			}
		}
	}
}

func (r *stageRun) callBatch(ctx context.Context, items []Item) ([]Item, error) {
	return safecall.Values(r.callback("Batch function"), func() ([]Item, error) { return r.st.batchFn(ctx, items) })
}

// isBisect reports whether p bisects failed batches, itself or after Retry.
func isBisect(p dispatch.Policy) bool {
	if rt, ok := p.(dispatch.Retry); ok {
		p = rt.Then
	}
	_, ok := p.(dispatch.Bisect)
	return ok
}

// bisect delivers a batch stage's result; a batch that failed as a whole
// is halved and each half run again, recursively, so that the policy
// settles only the items that still fail alone (dispatch.Bisect).
func (r *stageRun) bisect(ctx context.Context, items, outs []Item, err error) bool {
	var pf *policyFailure
	if err == nil || !isFailure(err) || len(items) < 2 || !dispatch.Splittable(err) || errors.As(err, &pf) {
		return r.deliver(ctx, items, outs, err)
	}
	for _, half := range [][]Item{items[:len(items)/2], items[len(items)/2:]} {
		r.stats.bisections.Add(1)
		outs, err := r.callBatch(ctx, half)
		if !r.bisect(ctx, half, outs, err) {
			return false
		}
	}
	return true
}

// policyFailure is the error of a policy's own callback (Retry.If, a Route
// function) that panicked: the run halts whatever the policy.
type policyFailure struct{ err error }

func (p *policyFailure) Error() string { return p.err.Error() }
func (p *policyFailure) Unwrap() error { return p.err }

// attempt runs fn, retrying as a Retry policy says.
func (r *stageRun) attempt(ctx context.Context, fn func() ([]Item, error)) ([]Item, error) {
	outs, err := fn()
	rt, ok := r.policy.(dispatch.Retry)
	if !ok {
		return outs, err
	}
	backoff := rt.Backoff
	retryable := dispatch.Retryable
	if rt.If != nil {
		retryable = rt.If
	}
	for n := 0; err != nil && isFailure(err) && n < rt.Attempts; n++ {
		again, perr := safecall.Value(r.callback("Retry.If"), func() bool { return retryable(err) })
		if perr != nil {
			return nil, &policyFailure{errors.Join(err, perr)}
		}
		if !again {
			break
		}
		if backoff > 0 {
			t := time.NewTimer(backoff)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return nil, context.Cause(ctx)
			}
			backoff = min(2*backoff, 30*time.Second)
		}
		r.stats.retry.Add(1)
		outs, err = fn()
	}
	return outs, err
}

// isFailure tells a real error from the skip and to-output signals.
func isFailure(err error) bool {
	var to *toOutput
	return !errors.Is(err, ErrSkip) && !errors.As(err, &to)
}

// deliver passes a stage's outputs on, or applies its error policy.
func (r *stageRun) deliver(ctx context.Context, in, outs []Item, err error) bool {
	var to *toOutput
	switch {
	case err == nil:
		for _, o := range outs {
			r.stats.out.Add(1)
			if !r.emit(ctx, envelope{it: o}) {
				return false
			}
		}
		if len(outs) == 0 {
			r.stats.skipped.Add(int64(len(in)))
		}
		return true
	case errors.Is(err, ErrSkip):
		r.stats.skipped.Add(int64(len(in)))
		return true
	case errors.As(err, &to):
		if !r.declared(to.name) {
			return r.failItems(ctx, in, fmt.Errorf("sent an item to output %q, which is not declared (outputs: %v)", to.name, r.s.p.outputs))
		}
		for _, o := range outs {
			r.stats.out.Add(1)
			if !r.emit(ctx, envelope{it: o, out: to.name}) {
				return false
			}
		}
		return true
	}
	return r.failItems(ctx, in, err)
}

func (r *stageRun) declared(name string) bool {
	for _, o := range r.s.p.outputs {
		if o == name {
			return true
		}
	}
	return false
}

// failItems applies the stage's policy (after any retries) to failed items.
func (r *stageRun) failItems(ctx context.Context, items []Item, err error) bool {
	r.stats.errs.Add(int64(len(items)))
	if r.s.env.Telemetry != nil {
		md := telemetry.Metadata{}
		dispatch.ErrorMetadata(md, err)
		r.event(telemetry.PipeStageException, telemetry.Measurements{Items: len(items)}, md)
	}
	// The policy may still keep the run going: the span fails only if
	// the stage halts it (see halt).
	dispatch.RecordError(r.span, err, false)
	policy := dispatch.Final(r.policy)
	if pf := (*policyFailure)(nil); errors.As(err, &pf) {
		policy = dispatch.Halt{}
	}
	switch pol := policy.(type) {
	case dispatch.Skip:
		r.stats.skipped.Add(int64(len(items)))
		return true
	case dispatch.Route:
		for _, it := range items {
			out, perr := safecall.Value(r.callback("Route policy's function"), func() string { return pol(it, err) })
			if perr != nil {
				return r.halt(items, errors.Join(err, perr))
			}
			if !r.emit(ctx, envelope{it: withError(it, err), out: out}) {
				return false
			}
		}
		return true
	default:
		return r.halt(items, err)
	}
}

// halt fails the run on items.
func (r *stageRun) halt(items []Item, err error) bool {
	ids := make([]string, len(items))
	for i, it := range items {
		ids[i] = it.ID
	}
	err = fmt.Errorf("pipe %s: stage %q failed on items %v: %w", r.s.p.name, r.st.name, ids, err)
	if r.span.IsRecording() {
		r.span.SetStatus(codes.Error, err.Error())
	}
	r.fail(err)
	return false
}

func withError(it Item, err error) Item {
	m := maps.Clone(it.Meta)
	if m == nil {
		m = map[string]any{}
	}
	m["error"] = err.Error()
	it.Meta = m
	return it
}

// python runs a Python stage through dispatch, streaming.
func (r *stageRun) python(ctx context.Context) {
	py := r.st.py
	pool := &countingPool{Pool: r.pool, stats: r.stats}
	// Read on dispatch's input goroutine, which the run owns: forwarding
	// to r.out ends before the stage returns and closes it.
	input := r.inputs(ctx)
	opts := dispatch.Options{Module: py.Module, Function: py.Function, Session: r.session, Unpinned: !py.Affinity,
		Route: py.Route, Strategy: py.Strategy, MaxInFlight: py.MaxInFlight, Timeout: py.Timeout,
		OnError: r.policy, Telemetry: r.s.env.Telemetry, Name: r.s.p.name + "/" + r.st.name,
		TracerProvider: r.s.env.TracerProvider}
	start := time.Now()
	d := dispatch.Stream(ctx, pool, input, opts)
	for res, err := range d.Results() {
		if err != nil {
			if ctx.Err() == nil {
				var be *dispatch.BatchError
				if errors.As(err, &be) {
					r.stats.errs.Add(int64(len(be.ItemIDs)))
				}
				err = fmt.Errorf("pipe %s: stage %q: %w", r.s.p.name, r.st.name, err)
				dispatch.RecordError(r.span, err, true)
				r.fail(err)
			}
			break
		}
		if res.Bucket != "" {
			r.stats.errs.Add(1)
			if !r.emit(ctx, envelope{it: withError(res.Item, res.Err), out: res.Bucket}) {
				break
			}
			continue
		}
		it := res.Item
		it.Payload = res.Value
		r.stats.out.Add(1)
		if !r.emit(ctx, envelope{it: it}) {
			break
		}
	}
	rep := d.Report()
	r.stats.skipped.Add(int64(rep.SkippedItems))
	r.stats.errs.Add(int64(rep.SkippedItems))
	r.stats.retry.Add(int64(rep.Retries))
	r.stats.bisections.Add(int64(rep.Bisections))
	r.stats.busy.Add(int64(time.Since(start)))
}

// countingPool records where each batch of a Python stage ran.
type countingPool struct {
	pools.Pool
	stats *stageStats
}

// Name is the name of the pool it counts for: embedding hides it.
func (c *countingPool) Name() string { return pools.NameOf(c.Pool) }

func (c *countingPool) Submit(ctx context.Context, b pools.Batch) ([]any, error) {
	if rt, ok := c.Pool.(*pools.Router); ok {
		d, err := rt.Decide(ctx, b)
		if err != nil {
			return nil, err
		}
		c.stats.count(&c.stats.ran, d.Route.String(), 1)
		return d.Submit(ctx, b)
	}
	c.stats.count(&c.stats.ran, string(c.Pool.Kind()), 1)
	return c.Pool.Submit(ctx, b)
}

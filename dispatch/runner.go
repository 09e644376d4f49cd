package dispatch

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/slither-go/slither/internal/safecall"
	"github.com/slither-go/slither/pools"
	"github.com/slither-go/slither/telemetry"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
)

// runner holds one run's plumbing.
type runner struct {
	d       *Dispatch
	ctx     context.Context
	slots   chan struct{} // batches being submitted (MaxInFlight)
	window  chan struct{} // batches not yet yielded (2 x MaxInFlight)
	results chan done
	wg      sync.WaitGroup

	observer Observer // the batcher, if it learns from batch times

	tracer       trace.Tracer
	traceBatches bool   // whether batches get spans (see Results)
	name         string // the run's label: Options.Name, or "module.function"
	fn           string // "module.function"
	pool         string // the pool's name (pools.NameOf), where nothing better is known
	kind         string // the pool's Kind

	// The event metadata's constant values, boxed once: converting a
	// string to an interface allocates, and a batch sends three events.
	boxed    struct{ name, module, function, pool, kind any }
	interned sync.Map // string -> any: pool names and kinds seen in CallInfo, boxed once
}

// newRunner prepares a run of d with maxIn batches in flight at most; its
// ctx is set once the run's span has started.
func (d *Dispatch) newRunner(maxIn int) *runner {
	o := &d.opts
	fn := o.Module + "." + o.Function
	name := o.Name
	if name == "" {
		name = fn
	}
	r := &runner{d: d, slots: make(chan struct{}, maxIn), window: make(chan struct{}, 2*maxIn),
		results: make(chan done), tracer: telemetry.Tracer(o.TracerProvider), name: name, fn: fn,
		pool: pools.NameOf(d.pool), kind: string(d.pool.Kind())}
	r.boxed.name, r.boxed.module, r.boxed.function, r.boxed.pool, r.boxed.kind = r.name, o.Module, o.Function, r.pool, r.kind
	return r
}

// box returns s as an interface value, boxed once per distinct s.
func (r *runner) box(s string) any {
	if v, ok := r.interned.Load(s); ok {
		return v
	}
	v, _ := r.interned.LoadOrStore(s, any(s))
	return v
}

// produce pulls items, forms batches and starts them; it closes results
// once every batch has reported and the input's reader has exited.
func (r *runner) produce(b Batcher) {
	in := make(chan Item)
	var reader sync.WaitGroup
	reader.Go(func() { r.read(in) })
	defer func() {
		r.wg.Wait()
		reader.Wait()
		close(r.results)
	}()
	seq := 0
	send := func(batches [][]Item) bool {
		for _, items := range batches {
			if !r.launch(seq, items, nil) {
				return false
			}
			seq++
		}
		return true
	}
	add := func(it Item) bool {
		batches, err := safecall.Value("dispatch: Batcher.Add", func() [][]Item { return b.Add(it) })
		if err != nil {
			// The item fails alone, and the policy settles it as it would
			// an item of a failed batch.
			ok := r.launch(seq, []Item{it}, err)
			seq++
			return ok
		}
		return send(batches)
	}
	flush := func() bool {
		batches, err := safecall.Value("dispatch: Batcher.Flush", b.Flush)
		if err != nil {
			// Which items the batcher held is unknown: the run cannot go on
			// without losing them silently.
			r.results <- done{err: fmt.Errorf("dispatch: the run's batcher failed; the items it held are lost: %w", err)}
			return false
		}
		return send(batches)
	}
	var linger <-chan time.Time
	var timer *time.Timer
	if r.d.opts.Linger > 0 {
		timer = time.NewTimer(r.d.opts.Linger)
		defer timer.Stop()
	}
	for {
		if timer != nil {
			linger = timer.C
		}
		select {
		case it, ok := <-in:
			if !ok {
				flush()
				return
			}
			r.d.count(func(rep *Report) { rep.Items++ })
			if !add(it) {
				return
			}
			if timer != nil {
				timer.Reset(r.d.opts.Linger)
			}
		case <-linger:
			if !flush() {
				return
			}
			timer.Reset(r.d.opts.Linger)
		case <-r.ctx.Done():
			return
		}
	}
}

// read pulls the input into in. It runs on a goroutine of its own so that
// forming batches (and the Linger timer) never waits inside the input's
// iterator. It ends when the input ends, when the input yields after the
// run was cancelled, or when the input returns of itself because it
// watches the run's context (see Stream); until then the run waits for it.
// A panicking input ends the run with the panic as its error.
func (r *runner) read(in chan<- Item) {
	defer close(in)
	err := safecall.Call("dispatch: the input iterator", func() error {
		for it := range r.d.items {
			if r.ctx.Err() != nil { // a select could still pick the send
				return nil
			}
			select {
			case in <- it:
			case <-r.ctx.Done():
				return nil
			}
		}
		return nil
	})
	if err != nil {
		r.results <- done{err: err} // produce closes results only after this goroutine ends
	}
}

// launch waits for room, then runs one batch on its own goroutine. It
// returns false when the run is cancelled. A non-nil pre is the error the
// items met before they could form a batch (see runner.run).
func (r *runner) launch(seq int, items []Item, pre error) bool {
	if pre == nil {
		r.d.count(func(rep *Report) { rep.Batches++ })
		r.emit(telemetry.DispatchBatchQueued, telemetry.Measurements{Items: len(items), BatchSize: len(items)}, seq, 0, nil, nil)
	}
	// A batch that never starts says so, so that what waits adds up.
	dropped := func() bool {
		if pre == nil {
			r.emit(telemetry.DispatchBatchDropped, telemetry.Measurements{Items: len(items), BatchSize: len(items)}, seq, 0, nil, nil)
		}
		return false
	}
	select {
	case r.window <- struct{}{}:
	case <-r.ctx.Done():
		return dropped()
	}
	select {
	case r.slots <- struct{}{}:
	case <-r.ctx.Done():
		<-r.window
		return dropped()
	}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		res := r.run(seq, items, pre)
		// Handed over before the slot is freed: with the slot free first,
		// a later batch could start, end and be handed over before this
		// one (Halt would then name the later batch's error, even with
		// MaxInFlight 1). The consumer drains until results closes.
		r.results <- res
		<-r.slots
	}()
	return true
}

// where is where a batch ran, as far as dispatch can tell.
type where struct {
	pool, kind   string
	route, class string
	worker       int
	ran          bool // worker is known
}

// whereOf reads ci once the pool's Submit has returned. complete is false
// when Submit returned because the batch's context ended: the pool may
// then still be writing ci's Worker, Pid, Service and Pool, so only Route
// and RouteClass are read — pools.Decision.Submit writes them on the
// goroutine that calls Submit, before it hands the batch to its pool,
// with RoutePool, the name of the pool the router chose.
func (r *runner) whereOf(ci *pools.CallInfo, complete bool) where {
	w := where{pool: r.pool, kind: r.kind, route: ci.Route, class: ci.RouteClass}
	if w.route != "" {
		// A router's Kind says nothing of where the batch ran; its
		// routes are named after the kinds of pool.
		w.kind = w.route
		if ci.RoutePool != "" {
			w.pool = ci.RoutePool
		}
	}
	if complete {
		w.worker, w.ran = ci.Worker, true
		if ci.Pool != "" {
			w.pool = ci.Pool
		}
	}
	return w
}

// emit sends a batch event. w, when not nil, says where the batch ran
// (stop and exception events); err is the batch's error (exception).
func (r *runner) emit(ev telemetry.Event, m telemetry.Measurements, seq, attempt int, w *where, err error) {
	o := &r.d.opts
	if o.Telemetry == nil {
		return
	}
	b := &r.boxed
	md := telemetry.Metadata{"dispatch": b.name, "module": b.module, "function": b.function,
		"batch": seq, "attempt": attempt, "pool": b.pool, "kind": b.kind}
	if w != nil {
		md["pool"], md["kind"] = r.box(w.pool), r.box(w.kind)
		if w.ran {
			md["worker"] = w.worker
		}
		if w.route != "" {
			md["route"] = r.box(w.route)
		}
		if w.class != "" {
			md["class"] = r.box(w.class)
		}
	}
	ErrorMetadata(md, err)
	o.Telemetry.Emit(ev, m, md)
}

// emitRun sends a dispatch.run.* event; extra holds more metadata as
// name, value pairs (a nil value is left out).
func (r *runner) emitRun(ev telemetry.Event, m telemetry.Measurements, maxIn int, extra ...any) {
	o := &r.d.opts
	if o.Telemetry == nil {
		return
	}
	m.Extra = map[string]float64{"max_in_flight": float64(maxIn)}
	b := &r.boxed
	md := telemetry.Metadata{"dispatch": b.name, "module": b.module, "function": b.function, "pool": b.pool, "kind": b.kind}
	for i := 0; i+1 < len(extra); i += 2 {
		switch v := extra[i+1].(type) {
		case nil:
		case error:
			md[extra[i].(string)] = v.Error()
		default:
			md[extra[i].(string)] = v
		}
	}
	o.Telemetry.Emit(ev, m, md)
}

// spanWhere records on span where its batch ran.
func spanWhere(span trace.Span, w *where) {
	attrs := make([]attribute.KeyValue, 0, 4)
	attrs = append(attrs, attribute.String("slither.pool", w.pool))
	if w.ran {
		attrs = append(attrs, attribute.Int("slither.worker", w.worker))
	}
	if w.route != "" {
		attrs = append(attrs, attribute.String("slither.route", w.route))
	}
	if w.class != "" {
		attrs = append(attrs, attribute.String("slither.route.class", w.class))
	}
	span.SetAttributes(attrs...)
}

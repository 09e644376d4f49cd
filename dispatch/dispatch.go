// Package dispatch fans items out to a pool in batches, with at most
// MaxInFlight batches in flight, results in input order or as they
// complete, and an error policy per run.
//
// Input is pulled lazily from an iter.Seq (or a channel, see [Chan]):
// dispatch reads an item only when a batch has room, and forms a batch only
// when a slot is free, so an endless input runs in bounded memory — at most
// 2 x MaxInFlight batches are held at once, counting those whose results
// wait for an earlier batch under [Preserve] ordering.
//
// Every run takes a context: cancelling it (or leaving a [Stream] early)
// cancels the batches in flight and returns once every goroutine of the run
// has exited — the one reading the input included (see [Stream] for what
// that asks of an input that waits for its items).
//
// A failed batch meets the run's error policy ([Halt], [Skip], [Route],
// [Retry], [Bisect]). Delivery is at least once for batches that are
// submitted again (Retry, Bisect) after a timeout, a crash or a cancelled
// submission: the first submission may still be running, or have run part
// way, in its worker. A panic in a user callback — the input, a strategy's
// batcher, a weight or key function, a policy's function, a pool's Submit —
// is an error naming the callback ([ErrPanic]), never a crash.
//
// A run is traced with OpenTelemetry (Options.TracerProvider, or the
// global provider: a no-op unless the program installed one): a
// "slither.dispatch" span for the run, a child of the span in the run's
// context, and a "slither.batch" span per submission of a batch under it.
// The batch span's context is what the pool receives, so Python's
// slither.context().trace_id and span_id are the batch span's. A failed
// submission records the Python exception's type and traceback (see
// [Exception]); one in flight when the run is cancelled did not fail: its
// span has slither.batch.cancelled and no exception. Attributes are built
// only for spans that record.
package dispatch

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"maps"
	"sync"
	"time"

	"github.com/slither-go/slither/internal/safecall"
	"github.com/slither-go/slither/pools"
	"github.com/slither-go/slither/telemetry"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
)

// Ordering says in which order results come out.
type Ordering int

const (
	// Preserve yields results in input order (the default).
	Preserve Ordering = iota
	// AsCompleted yields each batch's results as soon as it completes.
	AsCompleted
)

// Options configure a run. Module and Function are required.
type Options struct {
	// Module and Function name the Python batch function.
	Module, Function string
	// Session, if set, runs every batch in that session (one worker,
	// unless Unpinned).
	Session string
	// Unpinned lets the session's batches run on any worker (Python still
	// sees the session, e.g. for session views).
	Unpinned bool
	// Route is where a pools.Router sends the batches (pools.Auto by
	// default); plain pools ignore it.
	Route pools.Route
	// Timeout, when positive, bounds each submission of a batch; a batch
	// that runs past it fails like any other (the error policy applies).
	Timeout time.Duration
	// Strategy forms the batches; nil means Adaptive with default settings.
	Strategy Strategy
	// MaxInFlight bounds the batches submitted at once; 0 means the pool's
	// capacity.
	MaxInFlight int
	// Ordering of the results; the zero value is Preserve.
	Ordering Ordering
	// OnError is the policy for failed batches; nil means Halt.
	OnError Policy
	// Linger, when positive, sends a partly formed batch once no item has
	// arrived for that long, so a slow input still makes progress.
	Linger time.Duration
	// Telemetry receives dispatch.run.* and dispatch.batch.* events; nil
	// sends none. Their "pool" is the name of the pool that ran the batch
	// when it is known (pools.CallInfo.Pool), else that of the pool the
	// run submits to (pools.NameOf: a Router's is "router"), as for a
	// batch that timed out before its pool said where it ran; "kind" is
	// the kind of pool, and a batch that went through a Router carries
	// its "route" and "class" too.
	Telemetry *telemetry.Bus
	// Name labels this run's events (metadata "dispatch") and spans
	// (slither.dispatch); empty means "Module.Function".
	Name string
	// TracerProvider makes the run's spans ("slither.dispatch", and a
	// "slither.batch" per submission); nil means otel.GetTracerProvider(),
	// a no-op unless the program installed one.
	TracerProvider trace.TracerProvider
}

// Result is one item's outcome.
type Result struct {
	Item Item
	// Value is what the Python function returned for the item.
	Value any
	// Err and Bucket are set for items a Route policy sent to an error
	// bucket; Value is then nil.
	Err    error
	Bucket string
}

// Report counts what a run did.
type Report struct {
	Batches        int // batches formed
	Items          int // items read from the input
	Succeeded      int // items with a Value
	SkippedBatches int // batches dropped by Skip
	SkippedItems   int // items dropped by Skip: whole batches', and single failed items
	// FailedItems counts items the Python function failed on their own
	// (slither.failed), before the policy acted on them.
	FailedItems int
	Routed      int // items sent to error buckets by Route
	// Halted counts the items whose failure ended the run (Halt, or an
	// error a policy could not handle): the items of the batch that halted.
	Halted  int
	Retries int // re-submissions by Retry
	// Bisections counts the submissions Bisect made of halves of failed
	// batches, to isolate the items that fail.
	Bisections int
	// PerWorker counts the batches each worker (by index) completed.
	PerWorker map[int]int
	Duration  time.Duration
}

// Output is everything a [Run] produced.
type Output struct {
	// Results holds the successful items' results, in the run's ordering.
	Results []Result
	// Buckets holds, by name, the items a Route policy sent to an error
	// bucket.
	Buckets map[string][]Result
	Report  Report
}

// Run dispatches every item of items to pool and collects the results.
// It returns the output gathered so far with the error that ended the run.
func Run(ctx context.Context, pool pools.Pool, items iter.Seq[Item], opts Options) (*Output, error) {
	s := Stream(ctx, pool, items, opts)
	out := &Output{Buckets: map[string][]Result{}}
	var err error
	for r, e := range s.Results() {
		if e != nil {
			err = e
			break
		}
		if r.Bucket != "" {
			out.Buckets[r.Bucket] = append(out.Buckets[r.Bucket], r)
			continue
		}
		out.Results = append(out.Results, r)
	}
	out.Report = s.Report()
	return out, err
}

// CallBatch runs one pre-made batch, applying opts.OnError (Retry
// included); Strategy, MaxInFlight and Ordering are ignored.
func CallBatch(ctx context.Context, pool pools.Pool, items []Item, opts Options) ([]Result, error) {
	opts.Strategy = StrategyFunc(func() (Batcher, error) { return &whole{}, nil })
	opts.MaxInFlight = 1
	out, err := Run(ctx, pool, Items(items...), opts)
	if err != nil {
		return nil, err
	}
	res := out.Results
	for _, b := range out.Buckets {
		res = append(res, b...)
	}
	return res, nil
}

// whole makes one batch of the whole input.
type whole struct{ items []Item }

func (w *whole) Add(it Item) [][]Item { w.items = append(w.items, it); return nil }
func (w *whole) Flush() [][]Item {
	if len(w.items) == 0 {
		return nil
	}
	return [][]Item{w.items}
}

// A Dispatch is one lazy run; see [Stream].
type Dispatch struct {
	ctx   context.Context
	pool  pools.Pool
	items iter.Seq[Item]
	opts  Options

	mu     sync.Mutex
	report Report
	used   bool
}

// Stream prepares a run; nothing happens until its Results are iterated.
//
// The run reads items on a goroutine it owns and does not return before
// that goroutine has: it stops at the input's next yield once the run is
// cancelled or abandoned. An input that waits for its next item (a
// channel nobody closes) therefore holds a cancelled run, or a loop that
// breaks, until it yields or ends — make such an input watch ctx, as
// [ChanContext] does, and cancel ctx to stop early: the run then returns
// promptly.
func Stream(ctx context.Context, pool pools.Pool, items iter.Seq[Item], opts Options) *Dispatch {
	return &Dispatch{ctx: ctx, pool: pool, items: items, opts: opts}
}

// Report returns the run's counts; final once Results' loop has ended.
func (d *Dispatch) Report() Report {
	d.mu.Lock()
	defer d.mu.Unlock()
	r := d.report
	r.PerWorker = maps.Clone(r.PerWorker)
	return r
}

func (d *Dispatch) count(f func(r *Report)) {
	d.mu.Lock()
	f(&d.report)
	d.mu.Unlock()
}

// done is one finished batch on its way to the consumer.
type done struct {
	seq     int
	items   []Item
	values  []any
	routed  []Result
	skipped bool
	err     error // halts the run
}

// Results runs the dispatch and yields each result as the ordering allows;
// an error ends the sequence (yielded once, with a zero Result). Breaking
// out of the loop cancels the run. However the loop ends, every goroutine
// of the run has exited when it does — the input's reader included, so
// the loop's end waits for an input that is waiting for its next item (see
// [Stream]). A Dispatch runs once.
func (d *Dispatch) Results() iter.Seq2[Result, error] {
	return func(yield func(Result, error) bool) {
		batcher, err := d.start()
		if err != nil {
			yield(Result{}, err)
			return
		}
		start := time.Now()
		maxIn := d.opts.MaxInFlight
		if maxIn == 0 {
			maxIn = max(d.pool.Capacity(), 1)
		}
		r := d.newRunner(maxIn)
		sctx, span := r.tracer.Start(d.ctx, "slither.dispatch")
		// A provider that makes nothing of the run (no provider installed:
		// no ids, nothing recorded) would make nothing of its batches:
		// they skip the tracer, so that tracing costs them nothing.
		r.traceBatches = span.IsRecording() || span.SpanContext().IsValid()
		if span.IsRecording() {
			span.SetAttributes(attribute.String("slither.dispatch", r.name), attribute.String("slither.function", r.fn),
				attribute.Int("slither.max_in_flight", maxIn))
		}
		r.emitRun(telemetry.DispatchRunStart, telemetry.Measurements{}, maxIn)
		// runErr is the error the run ended with, for its span and event.
		var runErr error
		fail := func(err error) {
			runErr = err
			yield(Result{}, err)
		}
		// Deferred first so it runs last: after every batch has ended.
		defer func() {
			d.count(func(r *Report) { r.Duration = time.Since(start) })
			rep := d.Report()
			endRun(span, rep, runErr)
			r.emitRun(telemetry.DispatchRunStop, telemetry.Measurements{Duration: rep.Duration, Items: rep.Items}, maxIn,
				"report", rep, "error", runErr)
		}()

		ctx, cancel := context.WithCancelCause(sctx)
		defer cancel(nil)
		r.ctx = ctx
		r.observer, _ = batcher.(Observer)
		if w, ok := batcher.(WorkerAware); ok {
			if err := safecall.Call("dispatch: the batcher's SetWorkers", func() error { w.SetWorkers(maxIn); return nil }); err != nil {
				fail(err)
				return
			}
		}
		go r.produce(batcher)
		// However the loop ends (the input ended, an error, a break, a panic
		// in the loop's body), the run is cancelled and results drained:
		// produce closes results once every batch and the input's reader
		// have exited.
		defer func() {
			cancel(errStopped)
			for range r.results {
			}
		}()

		next := 0
		pending := map[int]done{}
		emit := func(b done) bool {
			defer func() { <-r.window }()
			for i, v := range b.values {
				if !yield(Result{Item: b.items[i], Value: v}, nil) {
					return false
				}
			}
			for _, res := range b.routed {
				if !yield(res, nil) {
					return false
				}
			}
			return true
		}
		for b := range r.results {
			if b.err != nil {
				// Cancel the rest, then tell the consumer, who may need to
				// release an input that waits (see Stream) before the
				// deferred drain can end.
				cancel(b.err)
				fail(b.err)
				return
			}
			if d.opts.Ordering == AsCompleted {
				if !emit(b) {
					return
				}
				continue
			}
			pending[b.seq] = b
			for {
				nb, ok := pending[next]
				if !ok {
					break
				}
				delete(pending, next)
				next++
				if !emit(nb) {
					return
				}
			}
		}
		if d.ctx.Err() != nil { // cancelled by the caller: batches were dropped
			fail(fmt.Errorf("dispatch: run cancelled: %w", context.Cause(d.ctx)))
		}
	}
}

var errStopped = errors.New("dispatch: the consumer stopped reading results")

func (d *Dispatch) strategy() Strategy {
	if d.opts.Strategy == nil {
		return Adaptive(AdaptiveOptions{})
	}
	return d.opts.Strategy
}

// start validates the options and makes the run's batcher; a Dispatch
// runs once.
func (d *Dispatch) start() (Batcher, error) {
	d.mu.Lock()
	used := d.used
	d.used = true
	d.mu.Unlock()
	switch {
	case used:
		return nil, fmt.Errorf("dispatch: a Dispatch runs once; call Stream again")
	case d.pool == nil:
		return nil, fmt.Errorf("dispatch: no pool")
	case d.items == nil:
		return nil, fmt.Errorf("dispatch: no input (items is nil)")
	case d.opts.Module == "" || d.opts.Function == "":
		return nil, fmt.Errorf("dispatch: Options.Module (%q) and Options.Function (%q) are both required", d.opts.Module, d.opts.Function)
	case d.opts.MaxInFlight < 0:
		return nil, fmt.Errorf("dispatch: Options.MaxInFlight is %d; it must be >= 0 (0 means the pool's capacity)", d.opts.MaxInFlight)
	case d.opts.Linger < 0 || d.opts.Timeout < 0:
		return nil, fmt.Errorf("dispatch: Options.Linger (%v) and Options.Timeout (%v) must be >= 0", d.opts.Linger, d.opts.Timeout)
	}
	if err := CheckPolicy(d.opts.OnError); err != nil {
		return nil, err
	}
	b, err := safecall.Values("dispatch: Strategy.NewBatcher", d.strategy().NewBatcher)
	if err != nil {
		return nil, err
	}
	if b == nil {
		return nil, fmt.Errorf("dispatch: Strategy.NewBatcher (%T) returned no Batcher and no error", d.strategy())
	}
	d.count(func(r *Report) { r.PerWorker = map[int]int{} })
	return b, nil
}

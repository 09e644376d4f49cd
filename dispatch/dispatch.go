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
// has exited.
package dispatch

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"maps"
	"sync"
	"time"

	"github.com/slither-go/slither/pools"
	"github.com/slither-go/slither/telemetry"
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
	// Telemetry receives dispatch.batch.* events; nil sends none.
	Telemetry *telemetry.Bus
	// Name labels this run's events (metadata "dispatch").
	Name string
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
	Retries     int // re-submissions by Retry
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
// out of the loop cancels the run; either way every goroutine of the run
// has exited when the loop ends. A Dispatch runs once.
func (d *Dispatch) Results() iter.Seq2[Result, error] {
	return func(yield func(Result, error) bool) {
		if err := d.start(); err != nil {
			yield(Result{}, err)
			return
		}
		start := time.Now()
		defer func() { d.count(func(r *Report) { r.Duration = time.Since(start) }) }()

		ctx, cancel := context.WithCancelCause(d.ctx)
		defer cancel(nil)
		maxIn := d.opts.MaxInFlight
		if maxIn == 0 {
			maxIn = max(d.pool.Capacity(), 1)
		}
		r := &runner{d: d, ctx: ctx, slots: make(chan struct{}, maxIn), window: make(chan struct{}, 2*maxIn),
			results: make(chan done)}
		batcher, _ := d.strategy().NewBatcher() // validated in start
		r.observer, _ = batcher.(Observer)
		go r.produce(batcher)

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
		stop := func(err error) {
			cancel(err)
			for range r.results { // let every batch goroutine finish
			}
		}
		for b := range r.results {
			if b.err != nil {
				stop(b.err)
				yield(Result{}, b.err)
				return
			}
			if d.opts.Ordering == AsCompleted {
				if !emit(b) {
					stop(errStopped)
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
					stop(errStopped)
					return
				}
			}
		}
		if d.ctx.Err() != nil { // cancelled by the caller: batches were dropped
			yield(Result{}, fmt.Errorf("dispatch: run cancelled: %w", context.Cause(d.ctx)))
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

// start validates the options; a Dispatch runs once.
func (d *Dispatch) start() error {
	d.mu.Lock()
	used := d.used
	d.used = true
	d.mu.Unlock()
	switch {
	case used:
		return fmt.Errorf("dispatch: a Dispatch runs once; call Stream again")
	case d.pool == nil:
		return fmt.Errorf("dispatch: no pool")
	case d.items == nil:
		return fmt.Errorf("dispatch: no input (items is nil)")
	case d.opts.Module == "" || d.opts.Function == "":
		return fmt.Errorf("dispatch: Options.Module (%q) and Options.Function (%q) are both required", d.opts.Module, d.opts.Function)
	case d.opts.MaxInFlight < 0:
		return fmt.Errorf("dispatch: Options.MaxInFlight is %d; it must be >= 0 (0 means the pool's capacity)", d.opts.MaxInFlight)
	case d.opts.Linger < 0 || d.opts.Timeout < 0:
		return fmt.Errorf("dispatch: Options.Linger (%v) and Options.Timeout (%v) must be >= 0", d.opts.Linger, d.opts.Timeout)
	}
	if err := checkPolicy(d.opts.OnError, false); err != nil {
		return err
	}
	if _, err := d.strategy().NewBatcher(); err != nil {
		return err
	}
	d.count(func(r *Report) { r.PerWorker = map[int]int{} })
	return nil
}

// runner holds one run's plumbing.
type runner struct {
	d       *Dispatch
	ctx     context.Context
	slots   chan struct{} // batches being submitted (MaxInFlight)
	window  chan struct{} // batches not yet yielded (2 x MaxInFlight)
	results chan done
	wg      sync.WaitGroup

	observer Observer // the batcher, if it learns from batch times
}

// produce pulls items, forms batches and starts them, then closes results
// once every batch has reported.
func (r *runner) produce(b Batcher) {
	defer func() {
		r.wg.Wait()
		close(r.results)
	}()
	in := make(chan Item)
	// The input is read on a goroutine of its own: an input that blocks
	// (a channel nobody closes) must not stall a cancelled run. That
	// goroutine ends when the input yields its next item, or ends.
	go func() {
		defer close(in)
		for it := range r.d.items {
			select {
			case in <- it:
			case <-r.ctx.Done():
				return
			}
		}
	}()
	seq := 0
	send := func(batches [][]Item) bool {
		for _, items := range batches {
			if !r.launch(seq, items) {
				return false
			}
			seq++
		}
		return true
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
				send(b.Flush())
				return
			}
			r.d.count(func(rep *Report) { rep.Items++ })
			if !send(b.Add(it)) {
				return
			}
			if timer != nil {
				timer.Reset(r.d.opts.Linger)
			}
		case <-linger:
			if !send(b.Flush()) {
				return
			}
			timer.Reset(r.d.opts.Linger)
		case <-r.ctx.Done():
			return
		}
	}
}

// launch waits for room, then runs one batch on its own goroutine. It
// returns false when the run is cancelled.
func (r *runner) launch(seq int, items []Item) bool {
	r.d.count(func(rep *Report) { rep.Batches++ })
	r.emit(telemetry.DispatchBatchQueued, telemetry.Measurements{Items: len(items), BatchSize: len(items)}, seq, 0)
	select {
	case r.window <- struct{}{}:
	case <-r.ctx.Done():
		return false
	}
	select {
	case r.slots <- struct{}{}:
	case <-r.ctx.Done():
		<-r.window
		return false
	}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		res := r.run(seq, items)
		<-r.slots
		r.results <- res // the consumer drains until results closes
	}()
	return true
}

func (r *runner) emit(ev telemetry.Event, m telemetry.Measurements, seq, attempt int) {
	o := &r.d.opts
	if o.Telemetry == nil {
		return
	}
	o.Telemetry.Emit(ev, m, telemetry.Metadata{"dispatch": o.Name, "module": o.Module, "function": o.Function,
		"batch": seq, "attempt": attempt, "pool": string(r.d.pool.Kind())})
}

// run submits one batch, retrying and applying the error policy. A whole
// batch fails when Submit fails; single items fail when the Python function
// returns slither.failed(...) for them. Retries resubmit what failed (the
// whole batch, or just the failed items); results keep their input order.
func (r *runner) run(seq int, items []Item) done {
	o := &r.d.opts
	values := make([]any, len(items))
	hasValue := make([]bool, len(items))
	var routed []Result
	skippedItems := 0
	pending := make([]int, len(items)) // indices still to run
	for i := range pending {
		pending[i] = i
	}
	policy := o.OnError
	backoff := time.Duration(0)
	for attempt := 1; ; attempt++ {
		sub := make([]Item, len(pending))
		payloads := make([]any, len(pending))
		for k, i := range pending {
			sub[k], payloads[k] = items[i], items[i].Payload
		}
		b := pools.Batch{Module: o.Module, Function: o.Function, Items: payloads, Session: o.Session,
			Unpinned: o.Unpinned, Route: o.Route}
		m := telemetry.Measurements{Items: len(sub), BatchSize: len(sub)}
		r.emit(telemetry.DispatchBatchStart, m, seq, attempt)
		var ci pools.CallInfo
		start := time.Now()
		sctx, cancel := r.ctx, context.CancelFunc(func() {})
		if o.Timeout > 0 {
			sctx, cancel = context.WithTimeoutCause(r.ctx, o.Timeout, fmt.Errorf("%w: batch ran past the %v timeout", pools.ErrTimeout, o.Timeout))
		}
		out, err := r.d.pool.Submit(pools.WithCallInfo(sctx, &ci), b)
		cancel()
		m.Duration = time.Since(start)

		var failed []int // indices into items
		var errs []error // their errors
		if err == nil {
			r.emit(telemetry.DispatchBatchStop, m, seq, attempt)
			if r.observer != nil {
				r.observer.Observe(len(sub), m.Duration)
			}
			ok := 0
			for k, v := range out {
				if msg, bad := failedMarker(v); bad {
					failed = append(failed, pending[k])
					errs = append(errs, &ItemError{ID: sub[k].ID, Message: msg})
					continue
				}
				values[pending[k]], hasValue[pending[k]] = v, true
				ok++
			}
			r.d.count(func(rep *Report) {
				rep.Succeeded += ok
				rep.FailedItems += len(failed)
				rep.PerWorker[ci.Worker]++
			})
			if len(failed) == 0 {
				break
			}
		} else {
			if r.ctx.Err() != nil { // cancelled: the consumer is stopping
				r.emit(telemetry.DispatchBatchException, m, seq, attempt)
				return done{seq: seq, skipped: true}
			}
			if o.Telemetry != nil {
				o.Telemetry.Emit(telemetry.DispatchBatchException, m, telemetry.Metadata{"dispatch": o.Name, "module": o.Module,
					"function": o.Function, "batch": seq, "attempt": attempt, "error": err.Error(), "pool": string(r.d.pool.Kind())})
			}
			failed = pending
			errs = make([]error, len(pending))
			for k := range errs {
				errs[k] = err
			}
		}
		if rt, ok := policy.(Retry); ok {
			retryable := Retryable
			if rt.If != nil {
				retryable = rt.If
			}
			if attempt <= rt.Attempts && retryable(errs[0]) {
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
						return done{seq: seq, skipped: true}
					}
				}
				r.d.count(func(rep *Report) { rep.Retries++ })
				r.emit(telemetry.DispatchBatchRetry, telemetry.Measurements{Items: len(failed), BatchSize: len(failed)}, seq, attempt+1)
				pending = failed
				continue
			}
			policy = rt.Then
		}
		whole := err != nil
		switch p := policy.(type) {
		case Skip:
			skippedItems += len(failed)
			r.d.count(func(rep *Report) {
				if whole {
					rep.SkippedBatches++
				}
				rep.SkippedItems += len(failed)
			})
		case Route:
			for k, i := range failed {
				routed = append(routed, Result{Item: items[i], Err: errs[k], Bucket: p(items[i], errs[k])})
			}
			r.d.count(func(rep *Report) { rep.Routed += len(failed) })
		default: // Halt
			ids := make([]string, len(failed))
			for k, i := range failed {
				ids[k] = items[i].ID
			}
			return done{seq: seq, err: &BatchError{Batch: seq, ItemIDs: ids, Attempts: attempt, Err: errs[0]}}
		}
		break
	}
	d := done{seq: seq, routed: routed, skipped: skippedItems == len(items)}
	for i, it := range items {
		if hasValue[i] {
			d.items = append(d.items, it)
			d.values = append(d.values, values[i])
		}
	}
	return d
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

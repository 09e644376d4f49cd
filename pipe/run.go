package pipe

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"iter"
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"github.com/slither-go/slither/dispatch"
	"github.com/slither-go/slither/pools"
	"github.com/slither-go/slither/store"
	"github.com/slither-go/slither/telemetry"
)

// Env is what a run needs from its surroundings; engine.Engine provides
// it (RunPipe, StreamPipe).
type Env struct {
	// Pool returns the pool a Python stage with Python.Pool == name
	// submits to, usually a pools.Router over the thread pool and that
	// process pool.
	Pool func(name string) (pools.Pool, error)
	// Views, with SessionViews, registers views for the run's session while
	// the run lasts.
	Views        *store.Registry
	SessionViews []store.View
	// Telemetry receives pipe.run.* and pipe.stage.* events.
	Telemetry *telemetry.Bus
}

// Output is one item leaving the pipeline, and the output it went to.
// Items sent to an error bucket by a Route policy carry the error's text
// in Meta["error"].
type Output struct {
	Name string
	Item Item
}

// Result is everything a Run produced.
type Result struct {
	Outputs map[string][]Item
	Report  Report
}

// Report says what a run did.
type Report struct {
	Pipe     string
	Session  string
	Duration time.Duration
	Stages   []StageReport
}

// StageReport counts one stage's work.
type StageReport struct {
	Name    string
	Kind    string // "map", "flatmap", "batch", "python", "router"
	In, Out int
	Skipped int
	Errors  int // items that failed (whatever the policy then did)
	Retries int
	// Busy is the time the stage spent working (Go stages) or from its
	// first item to its last result (Python stages).
	Busy time.Duration
	// Ran counts a Python stage's batches by where they ran ("thread",
	// "process"); Routes counts a router's items by output.
	Ran    map[string]int
	Routes map[string]int
}

// Run runs the pipeline over items and collects every output.
func (p *Pipe) Run(ctx context.Context, env Env, items iter.Seq[Item]) (*Result, error) {
	s := p.Stream(ctx, env, items)
	res := &Result{Outputs: map[string][]Item{}}
	var err error
	for o, e := range s.Outputs() {
		if e != nil {
			err = e
			break
		}
		res.Outputs[o.Name] = append(res.Outputs[o.Name], o.Item)
	}
	res.Report = s.Report()
	return res, err
}

// Stream is one lazy run of a pipeline; see [Pipe.Stream].
type Stream struct {
	p     *Pipe
	ctx   context.Context
	env   Env
	items iter.Seq[Item]

	mu     sync.Mutex
	report Report
	used   bool
	stats  []*stageStats
}

// Stream prepares a run; nothing happens until Outputs is iterated.
func (p *Pipe) Stream(ctx context.Context, env Env, items iter.Seq[Item]) *Stream {
	return &Stream{p: p, ctx: ctx, env: env, items: items}
}

// Report returns the run's report; final once Outputs' loop has ended.
func (s *Stream) Report() Report {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.report
	r.Stages = nil
	for _, st := range s.stats {
		r.Stages = append(r.Stages, st.snapshot())
	}
	return r
}

type stageStats struct {
	name, kind                    string
	in, out, skipped, errs, retry atomic.Int64
	busy                          atomic.Int64
	mu                            sync.Mutex
	ran, routes                   map[string]int
}

func (st *stageStats) snapshot() StageReport {
	st.mu.Lock()
	defer st.mu.Unlock()
	return StageReport{Name: st.name, Kind: st.kind, In: int(st.in.Load()), Out: int(st.out.Load()),
		Skipped: int(st.skipped.Load()), Errors: int(st.errs.Load()), Retries: int(st.retry.Load()),
		Busy: time.Duration(st.busy.Load()), Ran: maps.Clone(st.ran), Routes: maps.Clone(st.routes)}
}

func (st *stageStats) count(m *map[string]int, k string, n int) {
	st.mu.Lock()
	if *m == nil {
		*m = map[string]int{}
	}
	(*m)[k] += n
	st.mu.Unlock()
}

// envelope carries an item between stages; out, once set, is the output
// it goes to, past the remaining stages.
type envelope struct {
	it  Item
	out string
}

const chanBuffer = 16

// Outputs runs the pipeline and yields each item as it leaves it. An
// error ends the sequence (yielded once); breaking out of the loop cancels
// the run. Either way every goroutine of the run has exited, the run's
// session views are removed and its session is closed on every pool it
// used when the loop ends. A Stream runs once.
func (s *Stream) Outputs() iter.Seq2[Output, error] {
	return func(yield func(Output, error) bool) {
		s.mu.Lock()
		used := s.used
		s.used = true
		s.mu.Unlock()
		if used {
			yield(Output{}, errors.New("pipe: a Stream runs once; call Stream again"))
			return
		}
		if s.items == nil {
			yield(Output{}, errors.New("pipe: no input (items is nil)"))
			return
		}
		err := s.run(yield)
		if err != nil {
			yield(Output{}, err)
		}
	}
}

func newSession() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return "run-" + hex.EncodeToString(b[:])
}

func (s *Stream) run(yield func(Output, error) bool) (err error) {
	p := s.p
	session := newSession()
	start := time.Now()
	s.mu.Lock()
	s.report = Report{Pipe: p.name, Session: session}
	for _, st := range p.stages {
		s.stats = append(s.stats, &stageStats{name: st.name, kind: kindName(st.kind)})
	}
	s.mu.Unlock()
	tel := s.env.Telemetry
	md := telemetry.Metadata{"pipe": p.name, "session": session}
	tel.Emit(telemetry.PipeRunStart, telemetry.Measurements{}, md)
	defer func() {
		s.mu.Lock()
		s.report.Duration = time.Since(start)
		s.mu.Unlock()
		ev, m := telemetry.PipeRunStop, telemetry.Metadata{"pipe": p.name, "session": session}
		if err != nil {
			ev, m["error"] = telemetry.PipeRunException, err.Error()
		}
		tel.Emit(ev, telemetry.Measurements{Duration: time.Since(start)}, m)
	}()

	// Resolve pools first: an unknown pool fails the run before it starts.
	poolsUsed := map[pools.Pool]bool{}
	stagePools := make([]pools.Pool, len(p.stages))
	for i, st := range p.stages {
		if st.kind != kindPython {
			continue
		}
		if s.env.Pool == nil {
			return fmt.Errorf("pipe %s: stage %q is a Python stage and the run has no pools (Env.Pool is nil)", p.name, st.name)
		}
		pool, err := s.env.Pool(st.py.Pool)
		if err != nil {
			return fmt.Errorf("pipe %s: stage %q: %w", p.name, st.name, err)
		}
		stagePools[i] = pool
		poolsUsed[pool] = true
	}
	defer func() {
		for pool := range poolsUsed {
			pool.CloseSession(session)
		}
	}()
	if s.env.Views != nil && len(s.env.SessionViews) > 0 {
		remove, err := s.env.Views.RegisterSession(session, nil, s.env.SessionViews...)
		if err != nil {
			return fmt.Errorf("pipe %s: %w", p.name, err)
		}
		defer remove()
	}

	ctx, cancel := context.WithCancelCause(s.ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	var failOnce sync.Once
	var failure error
	fail := func(err error) {
		failOnce.Do(func() { failure = err })
		cancel(err)
	}

	in := make(chan envelope, chanBuffer)
	// The input is read lazily on a goroutine of its own, outside the wait
	// below: an input that blocks (a channel nobody closes) must not stall
	// a cancelled run; that goroutine ends when the input next yields.
	go func() {
		defer close(in)
		for it := range s.items {
			select {
			case in <- envelope{it: it}:
			case <-ctx.Done():
				return
			}
		}
	}()
	cur := in
	for i, st := range p.stages {
		out := make(chan envelope, chanBuffer)
		r := &stageRun{s: s, st: st, stats: s.stats[i], pool: stagePools[i], policy: p.policy(st.name),
			session: session, in: cur, out: out, fail: fail}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer close(out)
			r.run(ctx)
		}()
		cur = out
	}
	declared := map[string]bool{}
	for _, o := range p.outputs {
		declared[o] = true
	}
	stopped := false
	for e := range cur {
		if stopped {
			continue // drain: let every stage finish
		}
		name := e.out
		if name == "" {
			name = DefaultOutput
			if e.it.Route != "" && declared[e.it.Route] {
				name = e.it.Route
			}
		}
		if !yield(Output{Name: name, Item: e.it}, nil) {
			stopped = true
			cancel(errStopped)
		}
	}
	wg.Wait()
	if stopped {
		return nil
	}
	if failure != nil {
		return failure
	}
	if err := s.ctx.Err(); err != nil {
		return fmt.Errorf("pipe %s: run cancelled: %w", p.name, context.Cause(s.ctx))
	}
	return nil
}

var errStopped = errors.New("pipe: the consumer stopped reading outputs")

func kindName(k stageKind) string {
	return [...]string{"map", "flatmap", "batch", "python", "router"}[k]
}

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
}

func (r *stageRun) emit(ctx context.Context, e envelope) bool {
	select {
	case r.out <- e:
		return true
	case <-ctx.Done():
		return false
	}
}

func (r *stageRun) event(ev telemetry.Event, m telemetry.Measurements, extra ...any) {
	tel := r.s.env.Telemetry
	if tel == nil {
		return
	}
	md := telemetry.Metadata{"pipe": r.s.p.name, "stage": r.st.name, "kind": kindName(r.st.kind), "session": r.session}
	for i := 0; i+1 < len(extra); i += 2 {
		md[extra[i].(string)] = extra[i+1]
	}
	tel.Emit(ev, m, md)
}

func (r *stageRun) run(ctx context.Context) {
	r.event(telemetry.PipeStageStart, telemetry.Measurements{})
	defer func() {
		r.event(telemetry.PipeStageStop, telemetry.Measurements{Items: int(r.stats.out.Load()), Duration: time.Duration(r.stats.busy.Load())},
			"in", r.stats.in.Load())
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
	if r.st.kind == kindRouter {
		out := Unmatched
		for _, rt := range r.st.routes {
			if rt.When(it) {
				out = rt.Output
				break
			}
		}
		it.Route = out
		r.stats.count(&r.stats.routes, out, 1)
		r.stats.out.Add(1)
		return r.emit(ctx, envelope{it: it})
	}
	start := time.Now()
	outs, err := r.attempt(ctx, []Item{it}, func() ([]Item, error) {
		if r.st.kind == kindMap {
			o, err := r.st.mapFn(ctx, it)
			return []Item{o}, err
		}
		return r.st.flatFn(ctx, it)
	})
	r.stats.busy.Add(int64(time.Since(start)))
	return r.deliver(ctx, []Item{it}, outs, err)
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
		outs, err := r.attempt(ctx, items, func() ([]Item, error) { return r.st.batchFn(ctx, items) })
		r.stats.busy.Add(int64(time.Since(start)))
		return r.deliver(ctx, items, outs, err)
	}
	for e := range recv(ctx, r.in) {
		if e.out != "" {
			if !r.emit(ctx, e) {
				return
			}
			continue
		}
		r.stats.in.Add(1)
		buf = append(buf, e.it)
		if len(buf) >= r.st.batchN && !flush() {
			return
		}
	}
	flush()
}

// attempt runs fn, retrying as a Retry policy says.
func (r *stageRun) attempt(ctx context.Context, items []Item, fn func() ([]Item, error)) ([]Item, error) {
	outs, err := safe(fn)
	rt, ok := r.policy.(dispatch.Retry)
	if !ok {
		return outs, err
	}
	backoff := rt.Backoff
	retryable := dispatch.Retryable
	if rt.If != nil {
		retryable = rt.If
	}
	for n := 0; err != nil && isFailure(err) && n < rt.Attempts && retryable(err); n++ {
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
		outs, err = safe(fn)
	}
	return outs, err
}

func safe(fn func() ([]Item, error)) (outs []Item, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panicked: %v", p)
		}
	}()
	return fn()
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
	r.event(telemetry.PipeStageException, telemetry.Measurements{Items: len(items)}, "error", err.Error())
	policy := r.policy
	if rt, ok := policy.(dispatch.Retry); ok {
		policy = rt.Then
	}
	switch pol := policy.(type) {
	case dispatch.Skip:
		r.stats.skipped.Add(int64(len(items)))
		return true
	case dispatch.Route:
		for _, it := range items {
			if !r.emit(ctx, envelope{it: withError(it, err), out: pol(it, err)}) {
				return false
			}
		}
		return true
	default:
		ids := make([]string, len(items))
		for i, it := range items {
			ids[i] = it.ID
		}
		r.fail(fmt.Errorf("pipe %s: stage %q failed on items %v: %w", r.s.p.name, r.st.name, ids, err))
		return false
	}
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
	input := func(yield func(Item) bool) {
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
	opts := dispatch.Options{Module: py.Module, Function: py.Function, Session: r.session, Unpinned: !py.Affinity,
		Route: py.Route, Strategy: py.Strategy, MaxInFlight: py.MaxInFlight, Timeout: py.Timeout,
		OnError: r.policy, Telemetry: r.s.env.Telemetry, Name: r.s.p.name + "/" + r.st.name}
	start := time.Now()
	d := dispatch.Stream(ctx, pool, input, opts)
	for res, err := range d.Results() {
		if err != nil {
			if ctx.Err() == nil {
				var be *dispatch.BatchError
				if errors.As(err, &be) {
					r.stats.errs.Add(int64(len(be.ItemIDs)))
				}
				r.fail(fmt.Errorf("pipe %s: stage %q: %w", r.s.p.name, r.st.name, err))
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
	r.stats.busy.Add(int64(time.Since(start)))
}

// countingPool records where each batch of a Python stage ran.
type countingPool struct {
	pools.Pool
	stats *stageStats
}

func (c *countingPool) Submit(ctx context.Context, b pools.Batch) ([]any, error) {
	if rt, ok := c.Pool.(*pools.Router); ok {
		d, err := rt.Decide(ctx, b)
		if err != nil {
			return nil, err
		}
		c.stats.count(&c.stats.ran, d.Route.String(), 1)
		return d.Pool.Submit(ctx, b)
	}
	c.stats.count(&c.stats.ran, string(c.Pool.Kind()), 1)
	return c.Pool.Submit(ctx, b)
}

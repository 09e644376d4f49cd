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
	"github.com/slither-go/slither/internal/safecall"
	"github.com/slither-go/slither/pools"
	"github.com/slither-go/slither/store"
	"github.com/slither-go/slither/telemetry"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
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
	// TracerProvider makes the run's spans ("slither.pipe.run", a
	// "slither.pipe.stage" per stage, and the Python stages' dispatch and
	// batch spans under theirs); nil means otel.GetTracerProvider(), a
	// no-op unless the program installed one.
	TracerProvider trace.TracerProvider
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
	// Bisections counts the runs (Go batch stages) or submissions (Python
	// stages) of halves of failed batches under a Bisect policy.
	Bisections int
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
	tracer trace.Tracer // set when the run starts
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
	bisections                    atomic.Int64
	busy                          atomic.Int64
	mu                            sync.Mutex
	ran, routes                   map[string]int
}

func (st *stageStats) snapshot() StageReport {
	st.mu.Lock()
	defer st.mu.Unlock()
	return StageReport{Name: st.name, Kind: st.kind, In: int(st.in.Load()), Out: int(st.out.Load()),
		Skipped: int(st.skipped.Load()), Errors: int(st.errs.Load()), Retries: int(st.retry.Load()), Bisections: int(st.bisections.Load()),
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
// the run. However the loop ends, every goroutine of the run has exited,
// the run's session views are removed and its session is closed on every
// pool it used when it does.
//
// That includes the goroutine reading the input: it stops at the input's
// next yield once the run is cancelled or abandoned, so an input that
// waits for its next item (a channel nobody closes) holds the loop's end
// until it yields or ends. Make such an input watch the run's context, as
// dispatch.ChanContext does, and cancel that context to stop early. A
// Stream runs once.
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
	s.tracer = telemetry.Tracer(s.env.TracerProvider)
	runCtx, span := s.tracer.Start(s.ctx, "slither.pipe.run")
	if span.IsRecording() {
		span.SetAttributes(attribute.String("slither.pipe", p.name), attribute.String("slither.session", session))
	}
	tel := s.env.Telemetry
	if tel != nil {
		// "stages" reads the run's counts live, while it runs.
		tel.Emit(telemetry.PipeRunStart, telemetry.Measurements{}, telemetry.Metadata{"pipe": p.name, "session": session,
			"stages": func() []StageReport { return s.Report().Stages }})
	}
	defer func() {
		s.mu.Lock()
		s.report.Duration = time.Since(start)
		s.mu.Unlock()
		dispatch.RecordError(span, err, true)
		span.End()
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
		pool, err := safecall.Values("pipe: Env.Pool", func() (pools.Pool, error) { return s.env.Pool(st.py.Pool) })
		if err == nil && pool == nil {
			err = fmt.Errorf("Env.Pool(%q) returned no pool and no error", st.py.Pool)
		}
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

	ctx, cancel := context.WithCancelCause(runCtx)
	defer cancel(nil)
	var failOnce sync.Once
	var failure error
	fail := func(err error) {
		failOnce.Do(func() { failure = err })
		cancel(err)
	}

	// Every goroutine of the run, the input's reader and each stage, is
	// started on wg and waited for before run returns, however it returns
	// (the input ended, an error, a break, a panic in the consumer's loop):
	// a stage closes its output only once everything that sends to it (its
	// Python stage's input reader included) has ended.
	var wg sync.WaitGroup
	in := make(chan envelope, chanBuffer)
	wg.Go(func() {
		defer close(in)
		err := safecall.Call(fmt.Sprintf("pipe %s: the input iterator", p.name), func() error {
			for it := range s.items {
				if ctx.Err() != nil { // a select could still pick the send
					return nil
				}
				select {
				case in <- envelope{it: it}:
				case <-ctx.Done():
					return nil
				}
			}
			return nil
		})
		if err != nil {
			fail(err)
		}
	})
	cur := in
	for i, st := range p.stages {
		out := make(chan envelope, chanBuffer)
		r := &stageRun{s: s, st: st, stats: s.stats[i], pool: stagePools[i], policy: p.policy(st.name),
			session: session, in: cur, out: out, fail: fail}
		wg.Go(func() {
			defer close(out)
			r.run(ctx)
		})
		cur = out
	}
	defer func() {
		cancel(errStopped)
		for range cur { // let every stage finish
		}
		wg.Wait()
	}()
	declared := map[string]bool{}
	for _, o := range p.outputs {
		declared[o] = true
	}
	for e := range cur {
		name := e.out
		if name == "" {
			name = DefaultOutput
			if e.it.Route != "" && declared[e.it.Route] {
				name = e.it.Route
			}
		}
		if !yield(Output{Name: name, Item: e.it}, nil) {
			return nil
		}
	}
	wg.Wait()
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

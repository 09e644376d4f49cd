// Package pipe builds and runs pipelines of Go stages, Python stages and
// routers over a stream of items.
//
// A pipeline is declared with a [Builder] and checked as a whole by Build:
// an invalid definition (no stages, a duplicate stage, a route or error
// bucket naming an undeclared output, a policy for an unknown stage, a
// Python stage with no function) fails there, never at run time.
//
// A run streams: every stage runs on its own goroutines, connected by
// small buffers, so stage N works on batch k+1 while stage N+1 works on
// batch k, and memory stays bounded however long the input. A router does
// not end the pipeline: it tags each item with the output it belongs to,
// later stages still run on it, and the item lands in that output at the
// end. Items no router sent elsewhere — never routed, or matched by no
// route — land in one output, [DefaultOutput] ("default").
//
// A panic in a user function — a Map, FlatMap or Batch function, a
// router's predicate, a policy's function, the input — is an error naming
// that function (dispatch.ErrPanic); the stage's error policy applies to
// the items it failed, as to any other error.
//
// A run is traced with OpenTelemetry (Env.TracerProvider, or the global
// provider: a no-op unless the program installed one): a
// "slither.pipe.run" span, a "slither.pipe.stage" span per stage under it
// whose context the stage's functions receive, and under a Python stage's
// span the "slither.dispatch" and "slither.batch" spans of its batches
// (see package dispatch). A stage that halts the run fails its span. In a
// Go stage, items a policy skipped or routed are recorded on the stage's
// span as exceptions, without failing it. A Python stage's policy is
// applied by dispatch, and its failures are on its "slither.batch" spans,
// not on the stage's: a batch attempt that failed has an exception event
// and status Error, and one whose items the Python function failed on
// their own (slither.failed) counts them in slither.batch.failed_items.
package pipe

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/slither-go/slither/dispatch"
	"github.com/slither-go/slither/pools"
)

// Item is what flows through a pipeline.
type Item = dispatch.Item

// DefaultOutput is the output of items no router sent elsewhere: items of
// a pipeline without a router, and items a router's routes did not match.
// Every pipeline has it.
const DefaultOutput = "default"

// Unmatched is the output a router sends items no predicate matched.
//
// Deprecated: it is [DefaultOutput]; there is one output for both.
const Unmatched = DefaultOutput

// ErrSkip, returned by a Go handler, drops the item (counted as skipped).
var ErrSkip = errors.New("pipe: skip item")

// ToOutput, returned by a Go handler with the item, sends the item straight
// to the named output, past the remaining stages.
func ToOutput(name string) error { return &toOutput{name} }

type toOutput struct{ name string }

func (t *toOutput) Error() string { return "pipe: to output " + t.name }

// ErrInvalid is matched by every error Build returns.
var ErrInvalid = errors.New("pipe: invalid definition")

type stageKind int

const (
	kindMap stageKind = iota
	kindFlatMap
	kindBatch
	kindPython
	kindRouter
)

type stage struct {
	name    string
	kind    stageKind
	mapFn   func(context.Context, Item) (Item, error)
	flatFn  func(context.Context, Item) ([]Item, error)
	batchFn func(context.Context, []Item) ([]Item, error)
	batchN  int
	py      Python
	routes  []Route
}

// Python configures a Python stage: every dispatch option, plus where the
// batches go.
type Python struct {
	Module, Function string
	// Route picks the pool: pools.Thread, pools.Process or pools.Auto.
	Route pools.Route
	// Pool names the process pool (engine.Config.Process); "" is the
	// default one.
	Pool string
	// Strategy, MaxInFlight and Timeout as in dispatch; nil/0 use its
	// defaults (adaptive batches, the pool's capacity, no timeout).
	Strategy    dispatch.Strategy
	MaxInFlight int
	Timeout     time.Duration
	// Affinity runs all of the run's batches of this stage on one worker
	// (the run's session), so slither.session() and refs carry over.
	Affinity bool
}

// Route is one branch of a router: items for which When is true go to
// Output.
type Route struct {
	Output string
	When   func(Item) bool
}

// When is a Route.
func When(output string, pred func(Item) bool) Route { return Route{Output: output, When: pred} }

// Builder declares a pipeline; its methods chain. Errors are collected and
// reported by Build.
type Builder struct {
	name     string
	stages   []*stage
	outputs  []string
	policies map[string]dispatch.Policy
	errs     []error
}

// New starts a pipeline definition.
func New(name string) *Builder {
	return &Builder{name: name, policies: map[string]dispatch.Policy{}}
}

func (b *Builder) add(s *stage) *Builder {
	b.stages = append(b.stages, s)
	return b
}

// Map adds a Go stage that turns each item into one item (or skips it with
// ErrSkip, or sends it to an output with ToOutput).
func (b *Builder) Map(name string, fn func(ctx context.Context, it Item) (Item, error)) *Builder {
	if fn == nil {
		b.errs = append(b.errs, fmt.Errorf("stage %q: nil function", name))
	}
	return b.add(&stage{name: name, kind: kindMap, mapFn: fn})
}

// FlatMap adds a Go stage that turns each item into any number of items
// (cardinality many; none drops it).
func (b *Builder) FlatMap(name string, fn func(ctx context.Context, it Item) ([]Item, error)) *Builder {
	if fn == nil {
		b.errs = append(b.errs, fmt.Errorf("stage %q: nil function", name))
	}
	return b.add(&stage{name: name, kind: kindFlatMap, flatFn: fn})
}

// Batch adds a Go stage that handles up to size items at a time.
func (b *Builder) Batch(name string, size int, fn func(ctx context.Context, items []Item) ([]Item, error)) *Builder {
	if fn == nil || size < 1 {
		b.errs = append(b.errs, fmt.Errorf("stage %q: a batch stage needs a function and a size >= 1 (size %d)", name, size))
	}
	return b.add(&stage{name: name, kind: kindBatch, batchFn: fn, batchN: size})
}

// Python adds a Python stage: each item's Payload goes to
// Module.Function in batches and comes back replaced by the result.
func (b *Builder) Python(name string, py Python) *Builder {
	if py.Module == "" || py.Function == "" {
		b.errs = append(b.errs, fmt.Errorf("stage %q: a Python stage needs a Module and a Function (got %q, %q)", name, py.Module, py.Function))
	}
	if py.MaxInFlight < 0 || py.Timeout < 0 {
		b.errs = append(b.errs, fmt.Errorf("stage %q: negative MaxInFlight or Timeout", name))
	}
	return b.add(&stage{name: name, kind: kindPython, py: py})
}

// Router adds a stage that tags each item with the output of the first
// route whose When is true, or DefaultOutput ("default"). A predicate that
// panics fails its item (the stage's policy applies).
func (b *Builder) Router(name string, routes ...Route) *Builder {
	for _, r := range routes {
		if r.When == nil || r.Output == "" {
			b.errs = append(b.errs, fmt.Errorf("stage %q: a route needs an output and a predicate", name))
		}
	}
	return b.add(&stage{name: name, kind: kindRouter, routes: routes})
}

// Output declares named outputs. A pipeline with a router must declare
// every output it routes to (DefaultOutput is declared for it).
func (b *Builder) Output(names ...string) *Builder {
	b.outputs = append(b.outputs, names...)
	return b
}

// OnError sets the error policy of a stage ("*" for every stage without
// its own). The default is dispatch.Halt{}. A Route policy's buckets
// become outputs of their own. dispatch.Bisect isolates the failing items
// of Batch and Python stages' batches (a Map, FlatMap or router stage
// fails one item at a time already).
func (b *Builder) OnError(stage string, p dispatch.Policy) *Builder {
	if _, dup := b.policies[stage]; dup {
		b.errs = append(b.errs, fmt.Errorf("OnError(%q) given twice", stage))
	}
	b.policies[stage] = p
	return b
}

// Pipe is a checked pipeline, safe to run many times, concurrently.
type Pipe struct {
	name     string
	stages   []*stage
	outputs  []string
	policies map[string]dispatch.Policy
}

// Name is the pipeline's name.
func (p *Pipe) Name() string { return p.name }

// Stages lists the stage names in order.
func (p *Pipe) Stages() []string {
	var names []string
	for _, s := range p.stages {
		names = append(names, s.name)
	}
	return names
}

// Outputs lists the declared outputs.
func (p *Pipe) Outputs() []string { return slices.Clone(p.outputs) }

// Build checks the definition and returns the pipeline, or an error
// (matching ErrInvalid) listing every problem found.
func (b *Builder) Build() (*Pipe, error) {
	errs := slices.Clone(b.errs)
	if b.name == "" {
		errs = append(errs, errors.New("the pipeline has no name"))
	}
	if len(b.stages) == 0 {
		errs = append(errs, errors.New("no stages"))
	}
	names := map[string]bool{}
	for _, s := range b.stages {
		if s.name == "" || s.name == "*" {
			errs = append(errs, fmt.Errorf("a stage needs a name other than %q", s.name))
		}
		if names[s.name] {
			errs = append(errs, fmt.Errorf("stage %q is declared twice", s.name))
		}
		names[s.name] = true
	}
	outputs := slices.Clone(b.outputs)
	declared := map[string]bool{}
	for _, o := range outputs {
		if o == "" {
			errs = append(errs, errors.New("an output needs a name"))
		}
		if declared[o] {
			errs = append(errs, fmt.Errorf("output %q is declared twice", o))
		}
		declared[o] = true
	}
	if !declared[DefaultOutput] {
		outputs = append(outputs, DefaultOutput)
		declared[DefaultOutput] = true
	}
	for _, s := range b.stages {
		for _, r := range s.routes {
			if r.Output != "" && !declared[r.Output] {
				errs = append(errs, fmt.Errorf("stage %q routes to output %q, which is not declared (outputs: %v)", s.name, r.Output, outputs))
			}
		}
	}
	for st, p := range b.policies {
		if st != "*" && !names[st] {
			errs = append(errs, fmt.Errorf("OnError names stage %q, which does not exist (stages: %v)", st, slices.Sorted(mapsKeys(names))))
		}
		if err := dispatch.CheckPolicy(p); err != nil {
			errs = append(errs, fmt.Errorf("OnError(%q): %w", st, err))
		}
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("%w: pipeline %q: %w", ErrInvalid, b.name, errors.Join(errs...))
	}
	return &Pipe{name: b.name, stages: b.stages, outputs: outputs, policies: b.policies}, nil
}

func mapsKeys(m map[string]bool) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

func (p *Pipe) policy(stage string) dispatch.Policy {
	if pol, ok := p.policies[stage]; ok {
		return pol
	}
	if pol, ok := p.policies["*"]; ok {
		return pol
	}
	return dispatch.Halt{}
}

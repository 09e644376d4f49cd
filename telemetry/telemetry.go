// Package telemetry carries events from every other Slither package to
// handlers attached by name, and keeps a metrics snapshot fed by those
// events. It imports nothing of Slither's, so any package may emit.
//
// Handlers run synchronously on the emitting goroutine, so they should be
// quick; a handler that panics is detached and the panic logged once — it
// never reaches the emitter, and the other handlers keep running. A nil
// *Bus is valid and drops every event, so emitters need no checks.
//
// It also holds what the other packages share for OpenTelemetry tracing:
// the tracer they make spans with ([Tracer]) and how they record an error
// on a span ([RecordError]).
//
// Of Slither's packages it imports only the leaf internal/safecall.
package telemetry

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/slither-go/slither/internal/safecall"
)

// Event names an event. Names are dot-separated, e.g. "dispatch.batch.stop".
type Event string

// The events Slither emits.
const (
	DispatchBatchStart     Event = "dispatch.batch.start"     // a batch was submitted to a pool
	DispatchBatchStop      Event = "dispatch.batch.stop"      // it returned results
	DispatchBatchException Event = "dispatch.batch.exception" // it failed (metadata: error, action)
	DispatchBatchRetry     Event = "dispatch.batch.retry"     // it is about to be retried
	DispatchBatchQueued    Event = "dispatch.batch.queued"    // a batch was formed and waits for a slot
	DispatchBatchDropped   Event = "dispatch.batch.dropped"   // a queued batch never started: its run ended first

	// A dispatch run began reading its input / ended (metadata: dispatch,
	// module, function, pool; Measurements.Extra["max_in_flight"]).
	DispatchRunStart Event = "dispatch.run.start"
	DispatchRunStop  Event = "dispatch.run.stop"

	PipeRunStart       Event = "pipe.run.start"
	PipeRunStop        Event = "pipe.run.stop"
	PipeRunException   Event = "pipe.run.exception"
	PipeStageStart     Event = "pipe.stage.start"
	PipeStageStop      Event = "pipe.stage.stop"
	PipeStageException Event = "pipe.stage.exception"

	StoreWrite       Event = "store.write"
	StoreReloadStart Event = "store.reload.start"
	StoreReloadStop  Event = "store.reload.stop"
	BridgeViewStart  Event = "bridge.view.start"
	BridgeViewStop   Event = "bridge.view.stop"

	PoolWorkerStart   Event = "pool.worker.start"   // a worker is ready (metadata: pool, worker, pid)
	PoolWorkerExit    Event = "pool.worker.exit"    // a worker ended (metadata: reason)
	PoolWorkerRestart Event = "pool.worker.restart" // a replacement is being started

	RouterDecision    Event = "router.decision"     // metadata: route, reason
	RuntimeGILChanged Event = "runtime.gil_changed" // metadata: module, enabled
)

// Measurements are an event's numbers. Zero fields were not measured.
type Measurements struct {
	Duration  time.Duration
	Items     int
	BatchSize int
	// Extra holds any other numbers, by name.
	Extra map[string]float64
}

// Metadata describes an event: pool, module, function, batch id, error...
type Metadata map[string]any

// Handler receives events. It runs on the emitting goroutine.
type Handler func(ev Event, m Measurements, md Metadata)

type entry struct {
	name     string
	label    string   // what safecall names it by; built once, not per event
	patterns []string // exact names, or prefixes ending in ".*"; none means all
	h        Handler
	failed   atomic.Bool // it panicked: skipped from then on, reported once
}

func (e *entry) wants(ev Event) bool {
	if len(e.patterns) == 0 {
		return true
	}
	for _, p := range e.patterns {
		if prefix, ok := strings.CutSuffix(p, "*"); ok {
			if strings.HasPrefix(string(ev), prefix) {
				return true
			}
		} else if p == string(ev) {
			return true
		}
	}
	return false
}

// Bus dispatches events to handlers. Its methods are safe for concurrent
// use; Emit takes no lock (handlers are read from an immutable snapshot).
type Bus struct {
	log      *slog.Logger
	mu       sync.Mutex // serializes Attach/Detach
	handlers atomic.Pointer[[]*entry]
}

// New returns a bus that logs detached panicking handlers to log (nil
// means slog.Default()).
func New(log *slog.Logger) *Bus {
	if log == nil {
		log = slog.Default()
	}
	b := &Bus{log: log}
	b.handlers.Store(&[]*entry{})
	return b
}

// Attach adds handler h under name for the events matching patterns (exact
// names, or prefixes such as "dispatch.*"; none means every event). A name
// already attached is an error.
func (b *Bus) Attach(name string, h Handler, patterns ...Event) error {
	if name == "" || h == nil {
		return fmt.Errorf("telemetry: Attach needs a name and a handler (name %q)", name)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	cur := *b.handlers.Load()
	for _, e := range cur {
		if e.name == name {
			return fmt.Errorf("telemetry: a handler named %q is already attached", name)
		}
	}
	ps := make([]string, len(patterns))
	for i, p := range patterns {
		ps[i] = string(p)
	}
	next := append(slices.Clip(cur), &entry{name: name, label: "telemetry handler " + strconv.Quote(name), patterns: ps, h: h})
	b.handlers.Store(&next)
	return nil
}

// Detach removes the handler attached under name and reports whether there
// was one.
func (b *Bus) Detach(name string) bool {
	return b.detach(func(e *entry) bool { return e.name == name })
}

func (b *Bus) detach(match func(*entry) bool) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	cur := *b.handlers.Load()
	i := slices.IndexFunc(cur, match)
	if i < 0 {
		return false
	}
	next := slices.Delete(slices.Clone(cur), i, i+1)
	b.handlers.Store(&next)
	return true
}

// Handlers lists the attached handlers' names in attach order.
func (b *Bus) Handlers() []string {
	if b == nil {
		return nil
	}
	var names []string
	for _, e := range *b.handlers.Load() {
		names = append(names, e.name)
	}
	return names
}

// Emit sends an event to every handler that wants it, in attach order. A
// handler that panics is detached and logged, once even when it panicked on
// several goroutines at a time; the others still run.
func (b *Bus) Emit(ev Event, m Measurements, md Metadata) {
	if b == nil {
		return
	}
	for _, e := range *b.handlers.Load() {
		if e.wants(ev) && !e.failed.Load() {
			b.call(e, ev, m, md)
		}
	}
}

func (b *Bus) call(e *entry, ev Event, m Measurements, md Metadata) {
	err := safecall.Call(e.label, func() error {
		e.h(ev, m, md)
		return nil
	})
	var pe *safecall.PanicError
	if !errors.As(err, &pe) || !e.failed.CompareAndSwap(false, true) {
		return
	}
	// This entry, not whatever is attached under its name by now.
	b.detach(func(x *entry) bool { return x == e })
	b.log.Error("telemetry: handler panicked and was detached", "handler", e.name, "event", string(ev),
		"panic", fmt.Sprint(pe.Value), "stack", string(pe.Stack))
}

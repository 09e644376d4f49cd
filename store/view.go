package store

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/slither-go/slither/internal/safecall"
	"github.com/slither-go/slither/telemetry"
)

// View is a named function Python calls with slither.view(name, **args).
type View struct {
	Name string
	// Timeout, when positive, bounds a call: past it the caller gets an
	// error wrapping ErrViewTimeout (a view that ignores its context keeps
	// running in the background until it returns).
	Timeout time.Duration
	// Fn answers a call. It runs on the caller's goroutine in the embedded
	// pool (a Python thread waits on it), on a goroutine of its own for a
	// process worker. A panic in Fn fails that call with an error matching
	// safecall.ErrPanic ("view NAME: handler panicked: ...").
	Fn func(ctx context.Context, call ViewCall) (any, error)
}

// ViewCall is one call of a view.
type ViewCall struct {
	// Store is the store whose Definition declared the view; nil for a
	// session view registered without one.
	Store *Store
	// Args are the keyword arguments Python passed.
	Args map[string]any
	// Session is the calling batch's session, or "".
	Session string
}

// String returns Args[name] as a string, or an error naming the argument.
func (c ViewCall) String(name string) (string, error) {
	v, ok := c.Args[name]
	s, isStr := v.(string)
	if !ok || !isStr {
		return "", fmt.Errorf("argument %q: want a str, got %T", name, v)
	}
	return s, nil
}

var (
	// ErrNoView is matched by calls of a view that is not registered, or
	// not in the caller's scope.
	ErrNoView = errors.New("store: no such view")
	// ErrViewTimeout is matched by calls that ran past their view's timeout.
	ErrViewTimeout = errors.New("store: view timed out")
)

type view struct {
	View
	store *Store
}

// Registry resolves view names to views: session views (registered for one
// session, e.g. one pipeline run) first, then global ones (declared by the
// stores added to it). Safe for concurrent use.
type Registry struct {
	tel *telemetry.Bus

	mu    sync.Mutex // serializes registrations
	state atomic.Pointer[registryState]
}

// registryState is immutable once published: lookups take no lock, which
// matters when many Python threads call views at once.
type registryState struct {
	global   map[string]view
	sessions map[string]map[string]view
}

// edit publishes a modified copy of the state. r.mu held.
func (r *Registry) edit(f func(st *registryState) error) error {
	old := r.state.Load()
	st := &registryState{global: maps.Clone(old.global), sessions: map[string]map[string]view{}}
	for k, m := range old.sessions {
		st.sessions[k] = maps.Clone(m)
	}
	if err := f(st); err != nil {
		return err
	}
	r.state.Store(st)
	return nil
}

// NewRegistry returns an empty registry that emits bridge.view.* events to
// tel (nil for none).
func NewRegistry(tel *telemetry.Bus) *Registry {
	r := &Registry{tel: tel}
	r.state.Store(&registryState{global: map[string]view{}, sessions: map[string]map[string]view{}})
	return r
}

// AddStore registers s's views globally; a name already registered is an
// error and nothing is registered.
func (r *Registry) AddStore(s *Store) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.edit(func(st *registryState) error {
		for _, v := range s.def.Views {
			if err := checkView(v); err != nil {
				return fmt.Errorf("store %s: %w", s.def.Name, err)
			}
			if _, dup := st.global[v.Name]; dup {
				return fmt.Errorf("store %s: a view named %q is already registered", s.def.Name, v.Name)
			}
			st.global[v.Name] = view{v, s}
		}
		return nil
	})
}

func checkView(v View) error {
	if v.Name == "" || v.Fn == nil {
		return fmt.Errorf("a view needs a name and a function (name %q)", v.Name)
	}
	return nil
}

// RegisterSession registers views visible only to batches of session (with
// s, which may be nil, as their store) and returns a func that removes
// them. A session view hides a global view of the same name.
func (r *Registry) RegisterSession(session string, s *Store, views ...View) (remove func(), err error) {
	if session == "" {
		return nil, errors.New("store: RegisterSession needs a session id")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	err = r.edit(func(st *registryState) error {
		m := st.sessions[session]
		if m == nil {
			m = map[string]view{}
			st.sessions[session] = m
		}
		for _, v := range views {
			if err := checkView(v); err != nil {
				return err
			}
			if _, dup := m[v.Name]; dup {
				return fmt.Errorf("store: session %s already has a view named %q", session, v.Name)
			}
			m[v.Name] = view{v, s}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	names := make([]string, len(views))
	for i, v := range views {
		names[i] = v.Name
	}
	return func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		_ = r.edit(func(st *registryState) error {
			for _, n := range names {
				delete(st.sessions[session], n)
			}
			if len(st.sessions[session]) == 0 {
				delete(st.sessions, session)
			}
			return nil
		})
	}, nil
}

func (r *Registry) lookup(name, session string) (view, error) {
	st := r.state.Load()
	if session != "" {
		if v, ok := st.sessions[session][name]; ok {
			return v, nil
		}
	}
	if v, ok := st.global[name]; ok {
		return v, nil
	}
	in := "no session"
	if session != "" {
		in = fmt.Sprintf("session %s: %v", session, slices.Sorted(maps.Keys(st.sessions[session])))
	}
	for s, m := range st.sessions {
		if _, ok := m[name]; ok && s != session {
			return view{}, fmt.Errorf("%w: %q is a view of another session, out of scope here (global views: %v; %s)",
				ErrNoView, name, slices.Sorted(maps.Keys(st.global)), in)
		}
	}
	return view{}, fmt.Errorf("%w: %q (global views: %v; %s)", ErrNoView, name, slices.Sorted(maps.Keys(st.global)), in)
}

// Call runs view name for session with args.
func (r *Registry) Call(ctx context.Context, name string, args map[string]any, session string) (any, error) {
	v, err := r.lookup(name, session)
	if err != nil {
		return nil, err
	}
	if r.tel == nil { // the hot path: no events, no clock
		res, err := r.run(ctx, v, ViewCall{Store: v.store, Args: args, Session: session})
		if err != nil {
			return nil, fmt.Errorf("view %s: %w", name, err)
		}
		return res, nil
	}
	md := telemetry.Metadata{"view": name, "session": session}
	if v.store != nil {
		md["store"] = v.store.def.Name
	}
	r.tel.Emit(telemetry.BridgeViewStart, telemetry.Measurements{}, md)
	start := time.Now()
	res, err := r.run(ctx, v, ViewCall{Store: v.store, Args: args, Session: session})
	stop := telemetry.Metadata{"view": name, "session": session, "ok": err == nil}
	if err != nil {
		stop["error"] = err.Error()
	}
	r.tel.Emit(telemetry.BridgeViewStop, telemetry.Measurements{Duration: time.Since(start)}, stop)
	if err != nil {
		return nil, fmt.Errorf("view %s: %w", name, err)
	}
	return res, nil
}

func (r *Registry) run(ctx context.Context, v view, c ViewCall) (any, error) {
	// A panicking handler is a failed call (an error matching
	// safecall.ErrPanic), never a crash of the process.
	call := func(ctx context.Context) (any, error) {
		return safecall.Values("handler", func() (any, error) { return v.Fn(ctx, c) })
	}
	if v.Timeout <= 0 {
		return call(ctx)
	}
	ctx, cancel := context.WithTimeout(ctx, v.Timeout)
	defer cancel()
	type result struct {
		v   any
		err error
	}
	done := make(chan result, 1)
	go func() {
		v, err := call(ctx)
		done <- result{v, err}
	}()
	select {
	case r := <-done:
		return r.v, r.err
	case <-ctx.Done():
		return nil, fmt.Errorf("%w after %v", ErrViewTimeout, v.Timeout)
	}
}

// HostCall serves a slither.host_call from either pool: "slither.view"
// calls (what slither.view sends: [name, kwargs]) go to the view, found for
// session (the calling batch's); other names are an error. Wire it as the
// pools' Host function, e.g.
//
//	Host: func(ctx context.Context, c pools.HostCall) (any, error) {
//		return reg.HostCall(ctx, c.Name, c.Args, c.Session)
//	}
func (r *Registry) HostCall(ctx context.Context, name string, args []any, session string) (any, error) {
	if name != "slither.view" {
		return nil, fmt.Errorf("no host function %q (this host serves slither.view)", name)
	}
	if len(args) != 2 {
		return nil, fmt.Errorf("slither.view: malformed call (%d arguments)", len(args))
	}
	vname, ok := args[0].(string)
	if !ok {
		return nil, fmt.Errorf("slither.view(name, **args): the view's name must be a str, got %s", typeName(args[0]))
	}
	kw, ok := args[1].(map[string]any)
	if !ok {
		return nil, fmt.Errorf("slither.view(%q, **args): the arguments must be a dict, got %s", vname, typeName(args[1]))
	}
	return r.Call(ctx, vname, kw, session)
}

// typeName names the Python type of a value as it arrived (both pools
// decode alike, so the text is the same in both).
func typeName(v any) string {
	switch v.(type) {
	case nil:
		return "None"
	case bool:
		return "bool"
	case int64, int:
		return "int"
	case float64:
		return "float"
	case []byte:
		return "bytes"
	case []any:
		return "list"
	case map[string]any:
		return "dict"
	}
	return fmt.Sprintf("%T", v)
}

package pools

import "context"

// HostFunc answers slither.host_call(name, *args) made by Python code in
// the middle of a batch, in either pool. It runs on a goroutine of the
// pool's choosing; ctx is the calling batch's context. A returned error
// reaches Python as slither.HostError with its text.
type HostFunc func(ctx context.Context, call HostCall) (any, error)

// HostCall is one slither.host_call(name, *args) from Python.
type HostCall struct {
	Name    string
	Args    []any
	Worker  int    // the calling worker's index
	Pid     int    // its process id
	Session string // the calling batch's session, or ""
	Pool    Kind
}

// Ref is a handle on a Python object kept in a session's state on one
// worker (slither.ref in Python). It reaches Go as a small map; pass that
// map back as an item and Python finds the object with slither.deref.
type Ref struct {
	ID      string
	Session string
	Worker  int
	Pid     int
}

// AsRef reports whether v (a value returned by Python) is a ref.
func AsRef(v any) (Ref, bool) {
	m, ok := v.(map[string]any)
	if !ok {
		return Ref{}, false
	}
	id, ok := m["__slither_ref__"].(string)
	if !ok {
		return Ref{}, false
	}
	r := Ref{ID: id}
	r.Session, _ = m["session"].(string)
	if w, ok := m["worker"].(int64); ok {
		r.Worker = int(w)
	}
	if p, ok := m["pid"].(int64); ok {
		r.Pid = int(p)
	}
	return r, true
}

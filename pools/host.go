package pools

import (
	"context"
	"fmt"
	"iter"

	"github.com/slither-go/slither/internal/safecall"
)

// HostFunc answers slither.host_call(name, *args) made by Python code in
// the middle of a batch, in either pool. It runs on a goroutine of the
// pool's choosing; ctx is the calling batch's context. A returned error
// reaches Python as slither.HostError with its text; so does a panic, as
// an error naming the host call (see [HostFunc.Call]).
type HostFunc func(ctx context.Context, call HostCall) (any, error)

// Call runs h for one host call: the one way pools call a host function,
// so that both pools fail alike. A panic in h becomes an error matching
// safecall.ErrPanic that names the call (`host function for "NAME"
// panicked: ...`); a nil h is an error too.
func (h HostFunc) Call(ctx context.Context, call HostCall) (any, error) {
	if h == nil {
		return nil, fmt.Errorf("no host function: the pool's Options.Host is nil (called %q)", call.Name)
	}
	return safecall.Values(fmt.Sprintf("host function for %q", call.Name), func() (any, error) { return h(ctx, call) })
}

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

// HostChain is the chain of host calls a context comes from: one link per
// host call, naming the worker whose running batch made it. A pool puts a
// link on the context it gives a host function ([HostChain.With]) and reads
// the chain when a batch is submitted, to refuse one that only workers of
// the chain could run: they wait for it, so it would wait forever
// ([ErrReentrant]). One chain serves every pool, so a chain through both
// pools (a thread batch's host call submits to a process session whose
// batch's host call submits back) is seen whole. The zero value is the
// empty chain.
type HostChain struct{ l *hostLink }

type hostLink struct {
	worker any
	parent *hostLink
}

type hostChainKey struct{}

// HostChainFrom returns the chain of host calls ctx comes from.
func HostChainFrom(ctx context.Context) HostChain {
	l, _ := ctx.Value(hostChainKey{}).(*hostLink)
	return HostChain{l}
}

// With returns ctx for a host call made by the batch running on worker, a
// pool's own comparable value for it (a pointer): ctx's chain plus that
// link.
func (HostChain) With(ctx context.Context, worker any) context.Context {
	return context.WithValue(ctx, hostChainKey{}, &hostLink{worker: worker, parent: HostChainFrom(ctx).l})
}

// Empty reports whether the chain has no link.
func (c HostChain) Empty() bool { return c.l == nil }

// Count returns how many links name worker: with several threads per
// worker, how many of its threads wait on the chain.
func (c HostChain) Count(worker any) int {
	n := 0
	for l := c.l; l != nil; l = l.parent {
		if l.worker == worker {
			n++
		}
	}
	return n
}

// Workers yields the worker of each link, innermost first.
func (c HostChain) Workers() iter.Seq[any] {
	return func(yield func(any) bool) {
		for l := c.l; l != nil; l = l.parent {
			if !yield(l.worker) {
				return
			}
		}
	}
}

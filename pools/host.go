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

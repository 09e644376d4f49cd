//go:build cgo

package cpython

// CallRaw exposes callRaw to the fuzz tests.
func (t *Thread) CallRaw(module, name string, in []byte) (any, error) {
	return t.callRaw(module, name, in)
}

// StateCounts, ThreadStates and WaitDeleted expose the diagnostics of the
// per-OS-thread states.
var (
	StateCounts  = stateCounts
	ThreadStates = threadStates
	WaitDeleted  = waitDeleted
)

//go:build cgo

package bench

import (
	"github.com/slither-go/slither/pools"
	"github.com/slither-go/slither/pools/thread"
)

// embedded says whether this binary has the embedded thread pool.
const embedded = true

// newThreadPool starts an embedded pool in Direct mode (the default), or
// in Dedicated mode: batches handed to worker threads of its own; alloc,
// when not nil, allocates its large bytes results (thread.Options.Alloc).
func newThreadPool(workers int, host pools.HostFunc, dedicated bool, alloc func(int) []byte) (pools.Pool, error) {
	o := thread.Options{Workers: workers, Host: host, Alloc: alloc}
	if dedicated {
		o.Mode = thread.Dedicated
	}
	return thread.New(o)
}

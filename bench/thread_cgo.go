//go:build cgo

package bench

import (
	"github.com/slither-go/slither/pools"
	"github.com/slither-go/slither/pools/thread"
)

// embedded says whether this binary has the embedded thread pool.
const embedded = true

// newThreadPool starts an embedded pool in Direct mode (the default), or
// in Dedicated mode: batches handed to worker threads of its own.
func newThreadPool(workers int, host pools.HostFunc, dedicated bool) (pools.Pool, error) {
	o := thread.Options{Workers: workers, Host: host}
	if dedicated {
		o.Mode = thread.Dedicated
	}
	return thread.New(o)
}

//go:build cgo

package bench

import (
	"github.com/slither-go/slither/pools"
	"github.com/slither-go/slither/pools/thread"
)

func newThreadPool(workers int, host pools.HostFunc) (pools.Pool, error) {
	return thread.New(thread.Options{Workers: workers, Host: host})
}

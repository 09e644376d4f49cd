//go:build !cgo

package bench

import (
	"errors"

	"github.com/slither-go/slither/pools"
)

// embedded says whether this binary has the embedded thread pool.
const embedded = false

func newThreadPool(int, pools.HostFunc, bool, func(int) []byte) (pools.Pool, error) {
	return nil, errors.New("no embedded pool: built with CGO_ENABLED=0")
}

//go:build !cgo

package bench

import (
	"errors"

	"github.com/slither-go/slither/pools"
)

func newThreadPool(int, pools.HostFunc) (pools.Pool, error) {
	return nil, errors.New("no embedded pool: built with CGO_ENABLED=0")
}

//go:build cgo

package engine

import (
	"github.com/slither-go/slither/pools"
	"github.com/slither-go/slither/pools/thread"
	"github.com/slither-go/slither/telemetry"
)

func startThread(workers int, paths []string, host pools.HostFunc, tel *telemetry.Bus) (pools.Pool, error) {
	return thread.New(thread.Options{Workers: workers, Paths: paths, Host: host, Telemetry: tel})
}

//go:build cgo

package engine

import (
	"github.com/slither-go/slither/cpython"
	"github.com/slither-go/slither/pools"
	"github.com/slither-go/slither/pools/thread"
	"github.com/slither-go/slither/telemetry"
)

func startThread(workers, maxSessions int, venv string, paths []string, host pools.HostFunc, tel *telemetry.Bus) (pools.Pool, error) {
	return thread.New(thread.Options{Workers: workers, MaxSessions: maxSessions, Paths: paths, Host: host, Telemetry: tel,
		Python: cpython.Config{Venv: venv}})
}

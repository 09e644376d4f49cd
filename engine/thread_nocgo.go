//go:build !cgo

package engine

import (
	"errors"

	"github.com/slither-go/slither/internal/pybuild"
	"github.com/slither-go/slither/monitor"
	"github.com/slither-go/slither/pools"
	"github.com/slither-go/slither/telemetry"
)

func startThread(ThreadConfig, int, string, []string, pools.HostFunc, *telemetry.Bus) (pools.Pool, error) {
	return nil, errors.New("built with CGO_ENABLED=0: the embedded interpreter is not in this binary; for it, " + pybuild.Fix)
}

// gilState: a build without cgo embeds no interpreter.
func gilState(pools.Pool) monitor.GILState { return monitor.GILState{} }

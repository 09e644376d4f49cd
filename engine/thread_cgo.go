//go:build cgo

package engine

import (
	"github.com/slither-go/slither/cpython"
	"github.com/slither-go/slither/monitor"
	"github.com/slither-go/slither/pools"
	"github.com/slither-go/slither/pools/thread"
	"github.com/slither-go/slither/telemetry"
)

func startThread(tc ThreadConfig, workers int, venv string, paths []string, host pools.HostFunc, tel *telemetry.Bus) (pools.Pool, error) {
	mode := thread.Direct
	if tc.Mode == ThreadDedicated {
		mode = thread.Dedicated
	}
	return thread.New(thread.Options{Workers: workers, MaxSessions: tc.MaxSessions, Paths: paths, Host: host, Telemetry: tel,
		Python: cpython.Config{Venv: venv}, Mode: mode, Alloc: tc.Alloc})
}

// gilState is the embedded interpreter's GIL as the monitor shows it
// (Embedded false without a thread pool).
func gilState(p pools.Pool) monitor.GILState {
	tp, ok := p.(*thread.Pool)
	if !ok {
		return monitor.GILState{}
	}
	g := monitor.GILState{Embedded: true, FreeThreadedBuild: tp.FreeThreadedBuild(), Enabled: tp.GILEnabled(),
		EnabledBy: tp.GILEnabledBy()}
	for _, c := range tp.GILChanges() {
		g.Changes = append(g.Changes, monitor.GILChange{Enabled: c.Enabled, Module: c.Module, During: c.During, At: c.At})
	}
	return g
}

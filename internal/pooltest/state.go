package pooltest

import "github.com/slither-go/slither/pools"

// ByState groups a pool's workers by their state, for tests that look at
// the busy ones and the idle ones.
func ByState(st pools.Stats) map[pools.WorkerState][]pools.WorkerStats {
	m := map[pools.WorkerState][]pools.WorkerStats{}
	for _, w := range st.Workers {
		m[w.State] = append(m[w.State], w)
	}
	return m
}

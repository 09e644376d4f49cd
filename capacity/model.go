// Package capacity detects what Slither has to run on — cores (affinity
// and cgroup quota), memory, Python interpreters, whether their GIL is
// really off, which modules turn it back on — and turns that into pool
// sizes, routes and batch sizes.
//
// # The capacity model
//
// The embedded thread pool runs CPU-bound Python at min(workers, cores)
// at once while the GIL is off, and one at a time while it is on. A process
// pool runs min(workers x threads, cores) at once when its interpreter's
// GIL is off, and min(workers, cores) when it is on (threads of one worker
// then take turns). [ThreadCPU] and [ProcessCPU] compute these; dispatch
// sizes MaxInFlight from the pool's capacity (the batches it can hold at
// once), which keeps every worker fed.
//
// # Batch sizing
//
// A batch of n items costs about a + b·n: a per-call overhead a (the
// hand-off to a worker, the protocol, the function's own set-up) and a
// per-item time b. The overhead's share a/(a + b·n) falls as n grows; the
// smallest batch that keeps it under a target share T (5% by default) is
//
//	n = a·(1 − T) / (T·b)
//
// [BatchFor] computes it from known a and b. [BatchSizer] measures them from
// batch service times and moves the size only when the data rule out the
// current one; its doc describes the fit, the exploration and the caps.
package capacity

import "math"

// ThreadCPU is how many CPU-bound batches the embedded pool runs at once.
func ThreadCPU(workers, cores int, gilEnabled bool) int {
	if workers <= 0 || cores <= 0 {
		return 0
	}
	if gilEnabled {
		return 1
	}
	return min(workers, cores)
}

// ProcessCPU is how many CPU-bound batches a process pool runs at once.
func ProcessCPU(workers, threadsPerWorker, cores int, gilEnabled bool) int {
	if workers <= 0 || cores <= 0 {
		return 0
	}
	threads := max(threadsPerWorker, 1)
	if gilEnabled {
		threads = 1
	}
	return min(workers*threads, cores)
}

// DefaultTarget is the overhead share batch sizing aims under.
const DefaultTarget = 0.05

// BatchFor is the smallest batch whose per-call overhead stays under the
// share target (0 means DefaultTarget) of the batch's time, given the
// per-call overhead and the per-item time (any common unit), at least 1.
func BatchFor(overhead, perItem, target float64) int {
	if target <= 0 || target >= 1 {
		target = DefaultTarget
	}
	if overhead <= 0 {
		return 1
	}
	if perItem <= 0 {
		return math.MaxInt32
	}
	n := overhead * (1 - target) / (target * perItem)
	if n > math.MaxInt32 {
		return math.MaxInt32
	}
	return max(1, int(math.Ceil(n)))
}

package bench

import (
	"bytes"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"
)

// Floor is the memory-copy floor of a payload row on this machine: what
// moving the row's payload once in and once out costs with no binding, no
// pool and no Python, on the run's number of goroutines at once. It is
// measured at bench time, in Go, right before the executors run.
type Floor struct {
	Workload string `json:"workload"`
	// Bytes is the payload of one item, each way.
	Bytes   int `json:"bytes"`
	Workers int `json:"workers"`
	// Warm: each item copies the payload into a buffer its goroutine
	// keeps (in), and from there into another kept buffer (out): two
	// copies of memory already touched, the floor a binding doing one copy
	// each way can reach. WarmPerItem is one goroutine's time for both.
	WarmItemsPerSec float64       `json:"warm_items_per_sec"`
	WarmPerItem     time.Duration `json:"warm_ns_per_item"`
	// Fresh: each way is a new Go allocation plus the copy (bytes.Clone),
	// as handing every result to its caller in memory of its own costs:
	// page faults on fresh memory, zeroing and GC included. On machines
	// where a page fault is expensive (some VMs) this is far below warm.
	FreshItemsPerSec float64       `json:"fresh_items_per_sec"`
	FreshPerItem     time.Duration `json:"fresh_ns_per_item"`
}

// measureFloors measures the floor of every payload row among wls.
func measureFloors(wls []workload, o Options) []Floor {
	d := time.Second
	if o.Quick {
		d = 150 * time.Millisecond
	}
	var out []Floor
	for _, w := range wls {
		if w.payload == 0 {
			continue
		}
		f := Floor{Workload: w.name, Bytes: w.payload, Workers: o.Workers}
		f.WarmItemsPerSec, f.WarmPerItem = copyRate(o.Workers, w.payload, d, false)
		f.FreshItemsPerSec, f.FreshPerItem = copyRate(o.Workers, w.payload, d, true)
		out = append(out, f)
	}
	return out
}

// copyRate runs workers goroutines for about d, each moving n bytes in and
// out per item (into kept buffers, or into fresh allocations), and returns
// the items per second of all of them together and one goroutine's time
// per item.
func copyRate(workers, n int, d time.Duration, fresh bool) (float64, time.Duration) {
	src := bytes.Repeat([]byte{'x'}, n) // one source for all, as the payload row's items are
	type bufs struct{ in, out []byte }
	local := make([]bufs, workers)
	for i := range local { // touched before the clock starts: warm
		local[i] = bufs{in: bytes.Clone(src), out: bytes.Clone(src)}
	}
	debug.FreeOSMemory() // as before each cell: earlier garbage is not this cost
	var items atomic.Int64
	var wg sync.WaitGroup
	begin := make(chan struct{})
	start := time.Now()
	deadline := start.Add(d)
	for i := range workers {
		wg.Add(1)
		go func() { // wg.Wait below waits for it (it ends at the deadline)
			defer wg.Done()
			b := &local[i]
			<-begin
			k := int64(0)
			for time.Now().Before(deadline) {
				if fresh {
					in := bytes.Clone(src)
					b.out = bytes.Clone(in) // kept: the result the caller owns
				} else {
					copy(b.in, src)
					copy(b.out, b.in)
				}
				k++
			}
			items.Add(k)
		}()
	}
	close(begin)
	wg.Wait()
	elapsed := time.Since(start)
	k := items.Load()
	if k == 0 {
		return 0, 0
	}
	return float64(k) / elapsed.Seconds(), elapsed * time.Duration(workers) / time.Duration(k)
}

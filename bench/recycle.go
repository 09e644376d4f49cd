package bench

import (
	"bytes"
	"sync"
)

// recycler hands the embedded pool warm buffers for its large bytes
// results (thread.Options.Alloc) and takes them back once the bench has
// checked them: what a service that reuses its buffers gets from the pool.
type recycler struct {
	mu   sync.Mutex
	free [][]byte
	seen int // results checked
}

// alloc returns a buffer of n bytes, a recycled one when it fits. Safe for
// concurrent use.
func (r *recycler) alloc(n int) []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := len(r.free) - 1; i >= 0; i-- {
		if b := r.free[i]; cap(b) >= n {
			r.free = append(r.free[:i], r.free[i+1:]...)
			return b[:n]
		}
	}
	return make([]byte, n)
}

// settle checks each bytes result against the payload the row sends (the
// row's only input) and gives the buffer back: drive keeps the payload in
// its place when equal, the result itself (never recycled) when not. The
// check runs inside the timed loop (the other executors' run after it),
// so every fullCheckEvery-th result is compared in full and the others by
// length and their first and last 4 KiB: a full compare costs about as
// much as one of the copies being measured.
func (r *recycler) settle(out []any) []any {
	kept := make([]any, len(out))
	for i, v := range out {
		b, ok := v.([]byte)
		if !ok || !r.same(b) {
			kept[i] = v
			continue
		}
		kept[i] = payload1MiB
		r.mu.Lock()
		r.free = append(r.free, b)
		r.mu.Unlock()
	}
	return kept
}

// fullCheckEvery: see settle.
const fullCheckEvery = 8

func (r *recycler) same(b []byte) bool {
	r.mu.Lock()
	r.seen++
	full := r.seen%fullCheckEvery == 0
	r.mu.Unlock()
	if full || len(b) != len(payload1MiB) || len(b) < 8<<10 {
		return bytes.Equal(b, payload1MiB)
	}
	const edge = 4 << 10
	return bytes.Equal(b[:edge], payload1MiB[:edge]) && bytes.Equal(b[len(b)-edge:], payload1MiB[len(b)-edge:])
}

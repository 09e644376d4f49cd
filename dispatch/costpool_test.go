package dispatch_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/slither-go/slither/pools"
)

// costPool is a pools.Pool for tests and benchmarks of batching
// strategies. Each item's payload is its cost (a time.Duration); a batch
// costs a fixed per-call overhead plus its items' costs, on one of a fixed
// number of workers. It reports each batch's service time in CallInfo, as
// the real pools do.
//
// With virtual set, no time passes: the service time reported is the
// batch's cost, exactly, so a test's outcome does not depend on the
// machine's timing, and each batch goes to the worker whose virtual clock
// is earliest, which gives the makespan the batches would have had (list
// scheduling in the order they started). Otherwise a batch sleeps for its
// cost on its worker, and the service time is measured.
type costPool struct {
	overhead time.Duration
	virtual  bool
	capacity int      // what Capacity reports: may exceed the workers, like a Router's
	free     chan int // idle workers, by index

	mu    sync.Mutex
	sizes []int           // batch sizes, in the order they started
	clock []time.Duration // each worker's virtual time, when virtual
}

func newCostPool(workers, capacity int, overhead time.Duration, virtual bool) *costPool {
	p := &costPool{overhead: overhead, virtual: virtual, capacity: capacity, free: make(chan int, workers),
		clock: make([]time.Duration, workers)}
	for i := range workers {
		p.free <- i
	}
	return p
}

func (p *costPool) Submit(ctx context.Context, b pools.Batch) ([]any, error) {
	cost := p.overhead
	for _, it := range b.Items {
		d, ok := it.(time.Duration)
		if !ok {
			return nil, fmt.Errorf("costPool: item %v is a %T, not a time.Duration", it, it)
		}
		cost += d
	}
	var w int
	select {
	case w = <-p.free:
	case <-ctx.Done():
		return nil, context.Cause(ctx)
	}
	defer func() { p.free <- w }()
	p.mu.Lock()
	p.sizes = append(p.sizes, len(b.Items))
	if p.virtual {
		p.clock[slices.Index(p.clock, slices.Min(p.clock))] += cost
	}
	p.mu.Unlock()
	service := cost
	if !p.virtual {
		start := time.Now()
		t := time.NewTimer(cost) // the work itself, not synchronization
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, context.Cause(ctx)
		}
		service = time.Since(start)
	}
	if ci := pools.CallInfoFrom(ctx); ci != nil {
		ci.Worker, ci.Service = w, service
	}
	return b.Items, nil
}

// batchSizes returns the sizes of the batches run so far and forgets them.
func (p *costPool) batchSizes() []int {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.sizes
	p.sizes = nil
	return s
}

// makespan returns the virtual time the batches run so far took from
// first to last and the share of it the workers spent idle, and starts the
// clocks afresh.
func (p *costPool) makespan() (time.Duration, float64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	m := slices.Max(p.clock)
	var busy time.Duration
	for _, c := range p.clock {
		busy += c
	}
	clear(p.clock)
	if m == 0 {
		return 0, 0
	}
	return m, 1 - float64(busy)/float64(m)/float64(len(p.clock))
}

func (p *costPool) Capacity() int                   { return p.capacity }
func (p *costPool) Stats() pools.Stats              { return pools.Stats{Kind: p.Kind()} }
func (p *costPool) Kind() pools.Kind                { return pools.Kind("cost") }
func (p *costPool) CloseSession(string)             {}
func (p *costPool) Close(ctx context.Context) error { return nil }

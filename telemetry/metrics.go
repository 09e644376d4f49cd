package telemetry

import (
	"maps"
	"sync"
	"sync/atomic"
)

// Metrics is a live snapshot source fed by events (attach it to a bus with
// [Metrics.Attach]) and by pool probes. Safe for concurrent use; the zero
// value is not usable: call [NewMetrics].
type Metrics struct {
	inFlight  atomic.Int64 // batches submitted and not yet ended
	queued    atomic.Int64 // items in formed batches waiting for a slot
	retries   atomic.Int64
	failures  atomic.Int64
	completed atomic.Int64

	mu     sync.Mutex
	routes map[string]int64
	probes map[string]PoolProbe
}

// PoolProbe reports a pool's busy workers and its capacity now.
type PoolProbe func() (busy, capacity int)

// Snapshot is the state of things at one moment.
type Snapshot struct {
	InFlightBatches  int64
	QueuedItems      int64
	Retries          int64
	FailedBatches    int64
	CompletedBatches int64
	// Routes counts router decisions by route ("thread", "process", ...).
	Routes map[string]int64
	// Pools holds each probed pool's state, by name.
	Pools map[string]PoolSnapshot
}

// PoolSnapshot is one pool's load.
type PoolSnapshot struct {
	Busy, Capacity int
	// Saturation is Busy/Capacity (0 for a pool of no capacity).
	Saturation float64
}

// NewMetrics returns empty metrics.
func NewMetrics() *Metrics {
	return &Metrics{routes: map[string]int64{}, probes: map[string]PoolProbe{}}
}

// Attach feeds m from b's events, under the handler name "metrics" (or
// name, if given).
func (m *Metrics) Attach(b *Bus, name ...string) error {
	n := "metrics"
	if len(name) > 0 {
		n = name[0]
	}
	return b.Attach(n, m.handle)
}

// Probe registers (or, with a nil probe, removes) a pool to report on.
func (m *Metrics) Probe(pool string, p PoolProbe) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if p == nil {
		delete(m.probes, pool)
		return
	}
	m.probes[pool] = p
}

func (m *Metrics) handle(ev Event, ms Measurements, md Metadata) {
	switch ev {
	case DispatchBatchQueued:
		m.queued.Add(int64(ms.Items))
	case DispatchBatchStart:
		m.queued.Add(-int64(ms.Items))
		m.inFlight.Add(1)
	case DispatchBatchStop:
		m.inFlight.Add(-1)
		m.completed.Add(1)
	case DispatchBatchException:
		m.inFlight.Add(-1)
		m.failures.Add(1)
	case DispatchBatchRetry:
		// The retried items wait again: their next start takes them off.
		m.retries.Add(1)
		m.queued.Add(int64(ms.Items))
	case RouterDecision:
		route, _ := md["route"].(string)
		m.mu.Lock()
		m.routes[route]++
		m.mu.Unlock()
	}
}

// Snapshot reads the metrics and samples every probed pool.
func (m *Metrics) Snapshot() Snapshot {
	s := Snapshot{
		InFlightBatches:  m.inFlight.Load(),
		QueuedItems:      m.queued.Load(),
		Retries:          m.retries.Load(),
		FailedBatches:    m.failures.Load(),
		CompletedBatches: m.completed.Load(),
		Pools:            map[string]PoolSnapshot{},
	}
	m.mu.Lock()
	s.Routes = maps.Clone(m.routes)
	probes := maps.Clone(m.probes)
	m.mu.Unlock()
	for name, p := range probes {
		busy, capacity := p()
		ps := PoolSnapshot{Busy: busy, Capacity: capacity}
		if capacity > 0 {
			ps.Saturation = float64(busy) / float64(capacity)
		}
		s.Pools[name] = ps
	}
	return s
}

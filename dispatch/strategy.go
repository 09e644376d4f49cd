package dispatch

import (
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/slither-go/slither/capacity"
)

// Batcher forms batches from items in arrival order. One batcher serves
// one run, from one goroutine.
type Batcher interface {
	// Add takes the next item and returns the batches it completes, if any.
	Add(it Item) [][]Item
	// Flush returns every batch still being formed: the input has ended, or
	// a partial batch waited too long (Options.Linger).
	Flush() [][]Item
}

// Strategy makes a fresh [Batcher] for each run; it returns an error for
// invalid settings. Implement it to plug in your own batching.
type Strategy interface {
	NewBatcher() (Batcher, error)
}

// StrategyFunc adapts a function to [Strategy].
type StrategyFunc func() (Batcher, error)

// NewBatcher calls f.
func (f StrategyFunc) NewBatcher() (Batcher, error) { return f() }

// FixedBatch cuts a batch every size items.
func FixedBatch(size int) Strategy {
	return StrategyFunc(func() (Batcher, error) {
		if size < 1 {
			return nil, fmt.Errorf("dispatch: FixedBatch size is %d; it must be >= 1", size)
		}
		return &fixed{size: size}, nil
	})
}

type fixed struct {
	size int
	cur  []Item
}

func (f *fixed) Add(it Item) [][]Item {
	f.cur = append(f.cur, it)
	if len(f.cur) < f.size {
		return nil
	}
	b := f.cur
	f.cur = make([]Item, 0, f.size)
	return [][]Item{b}
}

func (f *fixed) Flush() [][]Item {
	if len(f.cur) == 0 {
		return nil
	}
	b := f.cur
	f.cur = nil
	return [][]Item{b}
}

// WeightedBatch cuts a batch before its total weight would pass maxWeight.
// An item heavier than maxWeight on its own forms a batch of its own: it is
// never dropped. A negative weight counts as 0, and NaN as heavier than
// maxWeight.
func WeightedBatch(maxWeight float64, weight func(Item) float64) Strategy {
	return StrategyFunc(func() (Batcher, error) {
		if !(maxWeight > 0) || math.IsInf(maxWeight, 0) {
			return nil, fmt.Errorf("dispatch: WeightedBatch maxWeight is %v; it must be a positive number", maxWeight)
		}
		if weight == nil {
			return nil, fmt.Errorf("dispatch: WeightedBatch needs a weight function")
		}
		return &weighted{max: maxWeight, weight: weight}, nil
	})
}

type weighted struct {
	max    float64
	weight func(Item) float64
	cur    []Item
	sum    float64
}

func (w *weighted) Add(it Item) [][]Item {
	wt := weightOf(w.weight, it)
	var out [][]Item
	if len(w.cur) > 0 && w.sum+wt > w.max {
		out = append(out, w.cur)
		w.cur, w.sum = nil, 0
	}
	w.cur = append(w.cur, it)
	w.sum += wt
	if w.sum >= w.max { // full, or one overweight item alone
		out = append(out, w.cur)
		w.cur, w.sum = nil, 0
	}
	return out
}

// weightOf is weight(it) made safe to add up: a negative weight counts as
// 0 and NaN as +Inf (heavier than any limit: a batch of its own).
func weightOf(weight func(Item) float64, it Item) float64 {
	wt := weight(it)
	switch {
	case math.IsNaN(wt):
		return math.Inf(1)
	case wt < 0:
		return 0
	}
	return wt
}

func (w *weighted) Flush() [][]Item {
	if len(w.cur) == 0 {
		return nil
	}
	b := w.cur
	w.cur, w.sum = nil, 0
	return [][]Item{b}
}

// KeyPartition batches items of one key together, in arrival order, up to
// maxSize per batch. A key's batch is cut when it fills or the input ends;
// to bound memory, when more than 16 x maxSize items wait in all, the key
// that has waited longest is cut short.
func KeyPartition(key func(Item) string, maxSize int) Strategy {
	return StrategyFunc(func() (Batcher, error) {
		if maxSize < 1 {
			return nil, fmt.Errorf("dispatch: KeyPartition maxSize is %d; it must be >= 1", maxSize)
		}
		if key == nil {
			return nil, fmt.Errorf("dispatch: KeyPartition needs a key function")
		}
		return &partition{key: key, max: maxSize, waitMax: satMul(16, maxSize), open: map[string][]Item{}}, nil
	})
}

// satMul is a·b for a, b >= 0, or math.MaxInt where that overflows.
func satMul(a, b int) int {
	if b != 0 && a > math.MaxInt/b {
		return math.MaxInt
	}
	return a * b
}

type partition struct {
	key     func(Item) string
	max     int
	waitMax int // 16·max: more items waiting than this cut the oldest key
	open    map[string][]Item
	order   []string // keys with open batches, oldest first
	pending int
}

func (p *partition) Add(it Item) [][]Item {
	k := p.key(it)
	if _, ok := p.open[k]; !ok {
		p.order = append(p.order, k)
	}
	p.open[k] = append(p.open[k], it)
	p.pending++
	var out [][]Item
	if len(p.open[k]) >= p.max {
		out = append(out, p.take(k))
	}
	for p.pending > p.waitMax && len(p.order) > 0 {
		out = append(out, p.take(p.order[0]))
	}
	return out
}

func (p *partition) take(k string) []Item {
	b := p.open[k]
	delete(p.open, k)
	if i := slices.Index(p.order, k); i >= 0 {
		p.order = slices.Delete(p.order, i, i+1)
	}
	p.pending -= len(b)
	return b
}

func (p *partition) Flush() [][]Item {
	var out [][]Item
	for len(p.order) > 0 {
		out = append(out, p.take(p.order[0]))
	}
	return out
}

// Observer is implemented by batchers that learn from how long batches
// take: dispatch calls Observe after each successful batch, from the
// batch's goroutine (so concurrently), with the batch's service time — the
// time a worker spent on it, without the time it waited for one (its wall
// time when the pool does not say, see pools.CallInfo).
type Observer interface {
	Observe(items int, d time.Duration)
}

// WorkerAware is implemented by batchers that size batches against how
// many run at once: dispatch calls SetWorkers once per run, before the
// first Add, with the run's MaxInFlight.
type WorkerAware interface {
	SetWorkers(n int)
}

// AdaptiveOptions configure [Adaptive].
type AdaptiveOptions struct {
	// Sizer proposes sizes and learns from batch times; nil means a
	// capacity.NewBatchSizer with its defaults (16 to start, 1..4096,
	// overhead under 5%, batches under 100 ms).
	Sizer *capacity.BatchSizer
	// MaxWeight, when positive, also cuts a batch before its total Weight
	// would pass it (an overweight item still gets a batch of its own;
	// weights count as in [WeightedBatch]).
	MaxWeight float64
	Weight    func(Item) float64
}

// workerShare bounds Adaptive's batches against the run's workers: a batch
// holds at most 1/(workerShare·workers) of the items read before it.
const workerShare = 4

// Adaptive sizes batches from measured service times so that the per-call
// overhead stays under 5% of a batch's time; see capacity.BatchSizer for
// how it fits the times, resists noise and skew, explores and caps a
// batch's time. It is the default strategy. The sizer may be shared by
// runs of the same function.
//
// On top of the sizer's size and any weight limit, a batch holds at most
// 1/(4·workers) of the items read before it (at least one, and at least the
// sizer's Min), where workers is the run's MaxInFlight. The input's length
// is unknown, so this is what keeps every worker busy to the end: were the
// input to end now, the last batch would add at most about a quarter of a
// worker's share to the run. So each run starts with single items and
// grows by a factor of about 1 + 1/(4·workers) a batch: a few dozen extra
// calls, whose spread of sizes also lets the sizer tell the overhead from
// the per-item time early.
func Adaptive(o AdaptiveOptions) Strategy {
	return StrategyFunc(func() (Batcher, error) {
		if !(o.MaxWeight >= 0) || math.IsInf(o.MaxWeight, 0) || (o.MaxWeight > 0 && o.Weight == nil) {
			return nil, fmt.Errorf("dispatch: Adaptive with MaxWeight %v needs MaxWeight finite and >= 0 and, when positive, a Weight function", o.MaxWeight)
		}
		s := o.Sizer
		if s == nil {
			var err error
			if s, err = capacity.NewBatchSizer(capacity.SizerOptions{}); err != nil {
				return nil, err
			}
		}
		return &adaptive{o: o, s: s}, nil
	})
}

type adaptive struct {
	o       AdaptiveOptions
	s       *capacity.BatchSizer
	workers int // 0 until SetWorkers: no cap by workers
	seen    int // items added this run
	cur     []Item
	limit   int
	w       float64
}

// SetWorkers sets the number of batches that run at once.
func (a *adaptive) SetWorkers(n int) { a.workers = n }

func (a *adaptive) Add(it Item) [][]Item {
	var out [][]Item
	var wt float64
	if a.o.MaxWeight > 0 {
		wt = weightOf(a.o.Weight, it)
		if len(a.cur) > 0 && a.w+wt > a.o.MaxWeight {
			out = append(out, a.cut())
		}
	}
	if len(a.cur) == 0 {
		a.limit = a.s.Size()
		if a.workers > 0 {
			minSize, _ := a.s.Bounds()
			a.limit = max(min(a.limit, a.seen/satMul(workerShare, a.workers)), minSize, 1)
		}
	}
	a.seen++
	a.cur = append(a.cur, it)
	a.w += wt
	if len(a.cur) >= a.limit || (a.o.MaxWeight > 0 && a.w >= a.o.MaxWeight) {
		out = append(out, a.cut())
	}
	return out
}

func (a *adaptive) cut() []Item {
	b := a.cur
	a.cur, a.w = nil, 0
	return b
}

func (a *adaptive) Flush() [][]Item {
	if len(a.cur) == 0 {
		return nil
	}
	return [][]Item{a.cut()}
}

// Observe feeds the sizer.
func (a *adaptive) Observe(items int, d time.Duration) { a.s.Observe(items, d) }

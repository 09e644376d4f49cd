package capacity

import (
	"fmt"
	"math"
	"sync"
	"time"
)

// MaxBatch is the largest Max a [BatchSizer] takes.
const MaxBatch = 1 << 30

// DefaultMaxBatchTime is the service time a batch is sized to stay under
// when [SizerOptions].MaxBatchTime is 0.
const DefaultMaxBatchTime = 100 * time.Millisecond

// SizerOptions configure a [BatchSizer]. The zero value starts at 16 items
// and keeps sizes within [1, 4096] under a 5% overhead target, with batches
// sized to take at most 100 ms.
type SizerOptions struct {
	Initial, Min, Max int
	// Target is the overhead share to stay under; 0 means DefaultTarget.
	Target float64
	// MaxBatchTime caps the expected service time of one batch, so that no
	// worker is left holding a long batch while the others idle at the end
	// of a run; 0 means DefaultMaxBatchTime. Min wins over it.
	MaxBatchTime time.Duration
}

const (
	// window is how many observations the fit keeps.
	window = 32
	// confidence is how many standard errors wide each side of an
	// estimate's interval is. Every batch tests the target against the
	// interval again, so it is wider than the usual 2: with 2, noise alone
	// moved the size every few dozen batches.
	confidence = 3
)

// BatchSizer adapts a batch size to the service times of the batches it is
// told of ([BatchSizer.Observe]). Safe for concurrent use.
//
// The model is that a batch of n items takes a + b·n: a per-call overhead
// a and a mean per-item time b; the size that keeps the overhead under the
// target share is [BatchFor](a, b). Item costs in real workloads are
// skewed (a few items cost a hundred times the median), so one batch's
// time says little, and the sizer moves only when the data say so:
//
//   - Fit: a and b come from least squares over the last 32 batches. The
//     fit is of means on purpose: throughput depends on the mean item
//     cost, and a median-based fit is biased under skew (the median of a
//     sum of skewed costs grows faster than linearly in n). The residuals
//     give a and b standard errors, and each an interval of ±3 of them.
//     No fit is made from fewer than 6 batches or from sizes that differ
//     by less than 20%.
//   - Decide: every size in [BatchFor(a_lo, b_hi), BatchFor(a_hi, b_lo)]
//     is one the data cannot rule out. While the target lies inside, it
//     stays; only once the interval excludes it does it move, toward
//     BatchFor(a, b), by at most a factor of 1.5 per batch, until it gets
//     there or the fit stops pointing that way. Noise widens the
//     interval, so noisy data hold the size where it is instead of sending
//     it on a random walk; an overhead that cannot be told from zero never
//     drives the size to 1, and a per-item time that cannot be told from
//     zero never doubles it without end.
//   - Explore: the sizes handed out cycle through the target, half of it
//     and twice it, so the fit always has different sizes to separate a
//     from b — at size 1 too (1, 1 and 2). Over a cycle this costs no
//     overhead: the large batch saves what the small one spends.
//   - Cap: a batch's expected service time — its size times the mean time
//     per item observed, overhead included — stays under MaxBatchTime, so
//     that the last batches of a run are short. The cap applies at once,
//     without the step limit.
//
// Sizes always stay within [Min, Max]. The sizer knows nothing of a run's
// workers or input; dispatch's Adaptive strategy adds those caps.
type BatchSizer struct {
	min, max int
	target   float64
	maxTime  float64 // seconds

	mu    sync.Mutex
	size  int
	obs   [window]obs
	n     int // observations stored, at most window
	next  int
	turn  int
	a, b  float64 // last fit, in seconds and seconds per item
	fitOK bool
	// moving is +1 or −1 while the target moves up or down toward the fit's
	// best size, 0 while it holds.
	moving int
}

type obs struct{ n, d float64 }

// NewBatchSizer returns a sizer, or an error for inconsistent options.
func NewBatchSizer(o SizerOptions) (*BatchSizer, error) {
	if o.Min == 0 {
		o.Min = 1
	}
	if o.Max == 0 {
		o.Max = 4096
	}
	if o.Initial == 0 {
		o.Initial = min(max(16, o.Min), o.Max)
	}
	if o.Target == 0 {
		o.Target = DefaultTarget
	}
	if o.MaxBatchTime == 0 {
		o.MaxBatchTime = DefaultMaxBatchTime
	}
	if o.Min < 1 || o.Max < o.Min || o.Max > MaxBatch || o.Initial < o.Min || o.Initial > o.Max || !(o.Target > 0 && o.Target < 1) {
		return nil, fmt.Errorf("capacity: SizerOptions need 1 <= Min <= Initial <= Max <= %d and 0 < Target < 1 (got Min %d, Initial %d, Max %d, Target %v)",
			MaxBatch, o.Min, o.Initial, o.Max, o.Target)
	}
	if o.MaxBatchTime < 0 {
		return nil, fmt.Errorf("capacity: SizerOptions.MaxBatchTime is %v; it must be >= 0 (0 means %v)", o.MaxBatchTime, DefaultMaxBatchTime)
	}
	return &BatchSizer{min: o.Min, max: o.Max, target: o.Target, maxTime: o.MaxBatchTime.Seconds(), size: o.Initial}, nil
}

// Size is the size of the next batch: the target, half of it or twice it
// in turn (see [BatchSizer]), within the time cap and [Min, Max].
func (s *BatchSizer) Size() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.turn++
	n := s.size
	switch s.turn % 3 {
	case 1:
		n = max(n/2, 1)
	case 2:
		if c := s.timeCap(); n <= c/2 {
			n *= 2
		} else {
			n = c
		}
	}
	return min(max(n, s.min), s.max)
}

// Target is the size the sizer aims at now.
func (s *BatchSizer) Target() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.size
}

// Bounds returns the sizer's Min and Max.
func (s *BatchSizer) Bounds() (minSize, maxSize int) { return s.min, s.max }

// Estimate returns the last fit's per-call overhead and per-item time; ok
// is true while that fit tells both apart from zero.
func (s *BatchSizer) Estimate() (overhead, perItem time.Duration, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return time.Duration(s.a * 1e9), time.Duration(s.b * 1e9), s.fitOK
}

// Observe records that a batch of n items took d of service time (the
// worker's time on it, without queue wait), refits and moves the target
// size. Observations with n or d not positive are ignored.
func (s *BatchSizer) Observe(n int, d time.Duration) {
	if n <= 0 || d <= 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.obs[s.next] = obs{float64(n), d.Seconds()}
	s.next = (s.next + 1) % window
	s.n = min(s.n+1, window)

	want := s.size
	best, lo, hi, ok := s.fit()
	switch {
	case !ok:
		s.moving = 0
	case s.size < lo:
		s.moving = 1
	case s.size > hi:
		s.moving = -1
	}
	switch {
	case s.moving > 0 && s.size < best:
		want = min(best, s.size+max(s.size/2, 1))
	case s.moving < 0 && s.size > best:
		want = max(best, s.size-s.size/3)
	default:
		s.moving = 0
	}
	s.size = min(max(min(want, s.timeCap()), s.min), s.max)
}

// timeCap is the largest size whose expected service time, at the mean
// time per item observed, stays under MaxBatchTime.
func (s *BatchSizer) timeCap() int {
	var sn, sd float64
	for _, o := range s.obs[:s.n] {
		sn += o.n
		sd += o.d
	}
	if sn == 0 || sd == 0 {
		return math.MaxInt32
	}
	c := s.maxTime / (sd / sn)
	if c >= math.MaxInt32 {
		return math.MaxInt32
	}
	return max(int(c), 1)
}

// fit runs a least-squares fit of d = a + b·n over the stored
// observations and returns the size it points at (BatchFor(a, b)) and the
// interval of sizes the data cannot rule out; ok is false when there are
// too few observations, their sizes are too alike, or the overhead is not
// positive even at the top of its interval.
func (s *BatchSizer) fit() (best, lo, hi int, ok bool) {
	o := s.obs[:s.n]
	if len(o) < 6 {
		return 0, 0, 0, false
	}
	k := float64(len(o))
	nMin, nMax := o[0].n, o[0].n
	var mn, md float64
	for _, x := range o {
		nMin, nMax = min(nMin, x.n), max(nMax, x.n)
		mn += x.n
		md += x.d
	}
	if nMax < 1.2*nMin {
		return 0, 0, 0, false
	}
	mn /= k
	md /= k
	var sxx, sxd float64
	for _, x := range o {
		sxx += (x.n - mn) * (x.n - mn)
		sxd += (x.n - mn) * (x.d - md)
	}
	b := sxd / sxx
	a := md - b*mn
	var ss float64
	for _, x := range o {
		r := x.d - a - b*x.n
		ss += r * r
	}
	sigma := math.Sqrt(ss / (k - 2))
	seA := sigma * math.Sqrt(1/k+mn*mn/sxx)
	seB := sigma / math.Sqrt(sxx)
	aLo, aHi := a-confidence*seA, a+confidence*seA
	bLo, bHi := b-confidence*seB, b+confidence*seB
	s.a, s.b, s.fitOK = a, b, aLo > 0 && bLo > 0
	if !(aHi > 0) {
		// Even the largest overhead the data allow is not positive: the
		// model does not fit (costs grow faster than the batch), so the
		// data say nothing about the size.
		return 0, 0, 0, false
	}
	return BatchFor(a, b, s.target), BatchFor(aLo, bHi, s.target), BatchFor(aHi, bLo, s.target), true
}

package capacity

import (
	"fmt"
	"sync"
	"time"
)

// SizerOptions configure a [BatchSizer]. The zero value starts at 16 items
// and keeps sizes within [1, 4096] under a 5% overhead target.
type SizerOptions struct {
	Initial, Min, Max int
	// Target is the overhead share to stay under; 0 means DefaultTarget.
	Target float64
}

// BatchSizer adapts a batch size to measured batch times (see the package
// doc). Safe for concurrent use.
type BatchSizer struct {
	min, max int
	target   float64

	mu    sync.Mutex
	size  int
	obs   [32]obs
	n     int // observations stored, at most len(obs)
	next  int
	turn  int
	a, b  float64 // last fit, in seconds and seconds per item
	fitOK bool
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
	if o.Min < 1 || o.Max < o.Min || o.Initial < o.Min || o.Initial > o.Max || o.Target <= 0 || o.Target >= 1 {
		return nil, fmt.Errorf("capacity: SizerOptions need 1 <= Min <= Initial <= Max and 0 < Target < 1 (got Min %d, Initial %d, Max %d, Target %v)",
			o.Min, o.Initial, o.Max, o.Target)
	}
	return &BatchSizer{min: o.Min, max: o.Max, target: o.Target, size: o.Initial}, nil
}

// Size is the size of the next batch: the target, varied by ±25% in turn.
func (s *BatchSizer) Size() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.turn++
	n := s.size
	switch s.turn % 3 {
	case 1:
		n = n * 3 / 4
	case 2:
		n = n * 5 / 4
	}
	return min(max(n, s.min), s.max)
}

// Target is the size the sizer aims at now.
func (s *BatchSizer) Target() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.size
}

// Estimate returns the fitted per-call overhead and per-item time; ok is
// false until the sizer has seen batches of different sizes.
func (s *BatchSizer) Estimate() (overhead, perItem time.Duration, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return time.Duration(s.a * 1e9), time.Duration(s.b * 1e9), s.fitOK
}

// Observe records that a batch of n items took d, refits and moves the
// target size.
func (s *BatchSizer) Observe(n int, d time.Duration) {
	if n <= 0 || d <= 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.obs[s.next] = obs{float64(n), d.Seconds()}
	s.next = (s.next + 1) % len(s.obs)
	s.n = min(s.n+1, len(s.obs))
	if !s.fit() {
		return
	}
	want := BatchFor(s.a, s.b, s.target)
	want = min(max(want, s.size/2), s.size*2)
	s.size = min(max(want, s.min), s.max)
}

// fit runs least squares of d = a + b·n over the stored observations.
func (s *BatchSizer) fit() bool {
	if s.n < 3 {
		return false
	}
	var sn, sd, snn, snd float64
	for _, o := range s.obs[:s.n] {
		sn += o.n
		sd += o.d
		snn += o.n * o.n
		snd += o.n * o.d
	}
	k := float64(s.n)
	den := k*snn - sn*sn
	if den <= 1e-9*k*snn { // all the same size: a and b cannot be told apart
		return false
	}
	b := (k*snd - sn*sd) / den
	a := (sd - b*sn) / k
	if b <= 0 { // time does not grow with size: the overhead dominates
		b = 1e-12
	}
	s.a, s.b, s.fitOK = max(a, 0), b, true
	return true
}

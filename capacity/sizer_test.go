package capacity_test

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/slither-go/slither/capacity"
)

func TestBatchSizerConvergesOnExactTimes(t *testing.T) {
	s, err := capacity.NewBatchSizer(capacity.SizerOptions{})
	require.NoError(t, err)
	const a, b = 2 * time.Millisecond, 50 * time.Microsecond // n* = 760
	for range 40 {
		n := s.Size()
		s.Observe(n, a+time.Duration(n)*b)
	}
	assert.InDelta(t, 760, s.Target(), 1)
	oa, ob, ok := s.Estimate()
	require.True(t, ok)
	assert.InDelta(t, float64(a), float64(oa), float64(10*time.Microsecond))
	assert.InDelta(t, float64(b), float64(ob), float64(100*time.Nanosecond))

	// Cheap items, big overhead: it grows to Max and stays.
	s, err = capacity.NewBatchSizer(capacity.SizerOptions{Max: 1000})
	require.NoError(t, err)
	for range 30 {
		n := s.Size()
		s.Observe(n, time.Millisecond+time.Duration(n)*time.Nanosecond)
	}
	assert.Equal(t, 1000, s.Target())

	_, err = capacity.NewBatchSizer(capacity.SizerOptions{Min: 10, Max: 5})
	assert.ErrorContains(t, err, "1 <= Min <= Initial <= Max")
	_, err = capacity.NewBatchSizer(capacity.SizerOptions{MaxBatchTime: -time.Second})
	assert.ErrorContains(t, err, "MaxBatchTime is -1s")
}

// skewed is a fixed corpus of item costs (in seconds) from a heavy-tailed
// distribution, with the per-call overhead that goes with it.
type skewed struct {
	name     string
	overhead float64
	cost     func(r *rand.Rand) float64
}

var skewedCorpora = []skewed{
	// Source files of 0-756 KB at 1 us per KB, most of them small.
	{"file sizes", 50e-6, func(r *rand.Rand) float64 { x := r.Float64(); return 756e-6 * x * x * x * x }},
	// Log-normal: the mean is three times the median.
	{"log-normal", 100e-6, func(r *rand.Rand) float64 { return 300e-6 * math.Exp(1.5*r.NormFloat64()) }},
	// Pareto with alpha 1.3: the variance is infinite.
	{"pareto", 45e-6, func(r *rand.Rand) float64 { return 5e-6 / math.Pow(1-r.Float64(), 1/1.3) }},
}

// TestBatchSizerIsSteadyOnSkewedCosts is defect 14 (b): fed the same
// skewed corpus with a little timing noise, the old fit's intercept went
// negative and the size collapsed to 1 for good, or its slope went
// non-positive and the size doubled without end; identical input gave
// anywhere from 300 to 4,800 batches. Now the size holds where the data
// cannot place it, and every run forms about the same batches.
func TestBatchSizerIsSteadyOnSkewedCosts(t *testing.T) {
	for _, c := range skewedCorpora {
		t.Run(c.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(1, 7))
			items := make([]float64, 5000)
			for i := range items {
				items[i] = c.cost(r)
			}
			var counts []int
			for run := range uint64(8) {
				s, err := capacity.NewBatchSizer(capacity.SizerOptions{})
				require.NoError(t, err)
				noise := rand.New(rand.NewPCG(run, 1))
				batches := 0
				for i := 0; i < len(items); batches++ {
					n := min(s.Size(), len(items)-i)
					d := c.overhead
					for _, x := range items[i : i+n] {
						d += x
					}
					d *= 0.9 + 0.2*noise.Float64() // timing noise, ±10%
					i += n
					s.Observe(n, time.Duration(d*1e9))
					require.Greater(t, s.Target(), 1, "run %d, batch %d: collapsed to 1", run, batches)
					require.LessOrEqual(t, s.Target(), 128, "run %d, batch %d: ran away", run, batches)
				}
				counts = append(counts, batches)
			}
			t.Logf("batches per run: %v", counts)
			lo, hi := counts[0], counts[0]
			for _, n := range counts {
				lo, hi = min(lo, n), max(hi, n)
			}
			assert.LessOrEqual(t, float64(hi), 1.25*float64(lo), "identical input, batches per run %v", counts)
		})
	}
}

// TestBatchSizerLeavesSizeOne: at size 1 the old sizer handed out only
// 1-item batches, so its fit never ran again and the size stayed 1 even
// when batching would have paid a hundredfold.
func TestBatchSizerLeavesSizeOne(t *testing.T) {
	s, err := capacity.NewBatchSizer(capacity.SizerOptions{Initial: 1})
	require.NoError(t, err)
	const a, b = time.Millisecond, 10 * time.Microsecond // n* = 1900
	for range 60 {
		n := s.Size()
		s.Observe(n, a+time.Duration(n)*b)
	}
	assert.InDelta(t, 1900, s.Target(), 1)
}

// TestBatchSizerCapsBatchTime: items of 5 ms behind a 20 ms overhead want
// batches of 76 (400 ms each); the time cap keeps them near 100 ms, so
// that a run's last batches do not leave the other workers idle for long.
func TestBatchSizerCapsBatchTime(t *testing.T) {
	s, err := capacity.NewBatchSizer(capacity.SizerOptions{})
	require.NoError(t, err)
	const a, b = 20 * time.Millisecond, 5 * time.Millisecond
	for range 60 {
		n := s.Size()
		s.Observe(n, a+time.Duration(n)*b)
	}
	n := s.Target()
	assert.LessOrEqual(t, a+time.Duration(n)*b, capacity.DefaultMaxBatchTime+b, "target %d", n)
	assert.Greater(t, n, 4, "the cap bounds time; it does not give up on batching")

	// Min wins over the cap.
	s, err = capacity.NewBatchSizer(capacity.SizerOptions{Min: 50, MaxBatchTime: time.Millisecond})
	require.NoError(t, err)
	for range 10 {
		n := s.Size()
		require.GreaterOrEqual(t, n, 50)
		s.Observe(n, a+time.Duration(n)*b)
	}
	assert.Equal(t, 50, s.Target())
}

// TestBatchSizerIgnoresNonsense: observations of no items or no time are
// dropped, and sizes stay within bounds whatever the times say.
func TestBatchSizerIgnoresNonsense(t *testing.T) {
	s, err := capacity.NewBatchSizer(capacity.SizerOptions{Min: 2, Max: 64})
	require.NoError(t, err)
	s.Observe(0, time.Second)
	s.Observe(5, 0)
	s.Observe(-1, -time.Second)
	assert.Equal(t, 16, s.Target())
	r := rand.New(rand.NewPCG(3, 3))
	for range 200 {
		n := s.Size()
		require.GreaterOrEqual(t, n, 2)
		require.LessOrEqual(t, n, 64)
		s.Observe(n, time.Duration(r.Int64N(int64(time.Hour))))
	}
	lo, hi := s.Bounds()
	assert.Equal(t, [2]int{2, 64}, [2]int{lo, hi})
}

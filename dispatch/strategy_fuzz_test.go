package dispatch_test

import (
	"math"
	"strconv"
	"testing"
	"time"

	"github.com/slither-go/slither/capacity"
	"github.com/slither-go/slither/dispatch"
)

// fuzzWeight maps a byte to a weight, including the ones a buggy weight
// function returns.
func fuzzWeight(c byte) float64 {
	switch c % 16 {
	case 0:
		return math.NaN()
	case 1:
		return math.Inf(1)
	case 2:
		return math.Inf(-1)
	case 3:
		return -float64(c)
	case 4:
		return 0
	}
	return float64(c) / 8
}

// effWeight is how the weighted strategies count a weight (see
// WeightedBatch).
func effWeight(w float64) float64 {
	switch {
	case math.IsNaN(w):
		return math.Inf(1)
	case w < 0:
		return 0
	}
	return w
}

// FuzzStrategies feeds arbitrary items, parameters and batch times to the
// built-in strategies: a strategy either refuses its parameters with an
// error or forms batches in which every item comes out exactly once,
// within the strategy's bounds, and Flush leaves nothing behind.
func FuzzStrategies(f *testing.F) {
	f.Add(uint8(0), int64(3), 10.0, int64(2), int64(0), int64(0), []byte("abcdefghij"))
	f.Add(uint8(1), int64(1), 10.0, int64(2), int64(0), int64(0), []byte{0, 1, 2, 3, 4, 5, 200, 7})
	f.Add(uint8(2), int64(2), 0.0, int64(0), int64(0), int64(0), []byte("aabacadaeaf"))
	f.Add(uint8(3), int64(16), 0.0, int64(2), int64(0), int64(0), []byte("0123456789abcdefghijklmnopqrstuvwxyz"))
	f.Add(uint8(3), int64(1), 5.0, int64(1), int64(1), int64(1), []byte{9, 0, 1, 255, 128, 17, 33})
	f.Add(uint8(3), int64(0), 0.0, int64(4), int64(2), int64(8), []byte("the quick brown fox"))
	f.Add(uint8(0), int64(0), -1.0, int64(-1), int64(-1), int64(-1), []byte{})
	f.Add(uint8(2), int64(math.MaxInt64), math.Inf(1), int64(math.MaxInt64), int64(0), int64(0), []byte("zz"))
	f.Fuzz(func(t *testing.T, kind uint8, size int64, maxWeight float64, workers, minSize, maxSize int64, data []byte) {
		weight := func(it dispatch.Item) float64 { return fuzzWeight(it.Payload.(byte)) }
		key := func(it dispatch.Item) string { return string('a' + rune(it.Payload.(byte)%7)) }
		var s dispatch.Strategy
		var sizer *capacity.BatchSizer
		switch kind % 4 {
		case 0:
			s = dispatch.FixedBatch(int(size))
		case 1:
			s = dispatch.WeightedBatch(maxWeight, weight)
		case 2:
			s = dispatch.KeyPartition(key, int(size))
		case 3:
			var err error
			sizer, err = capacity.NewBatchSizer(capacity.SizerOptions{Initial: int(size), Min: int(minSize), Max: int(maxSize)})
			if err != nil {
				return
			}
			o := dispatch.AdaptiveOptions{Sizer: sizer}
			if kind&4 != 0 {
				o.MaxWeight, o.Weight = maxWeight, weight
			}
			s = dispatch.Adaptive(o)
		}
		b, err := s.NewBatcher()
		if err != nil {
			if b != nil {
				t.Fatalf("NewBatcher returned a batcher and the error %v", err)
			}
			return
		}
		if b == nil {
			t.Fatal("NewBatcher returned neither a batcher nor an error")
		}
		if w, ok := b.(dispatch.WorkerAware); ok && workers > 0 {
			w.SetWorkers(int(workers))
		} else {
			workers = 0
		}

		var got []dispatch.Item // every item out, in batch order
		count := map[string]int{}
		check := func(batches [][]dispatch.Item, flushed bool) {
			for _, bt := range batches {
				if len(bt) == 0 {
					t.Fatal("an empty batch")
				}
				first, _ := strconv.Atoi(bt[0].ID) // items read before this batch's first
				switch kind % 4 {
				case 0:
					if len(bt) > int(size) || (!flushed && len(bt) != int(size)) {
						t.Fatalf("FixedBatch(%d) formed a batch of %d (flushed %v)", size, len(bt), flushed)
					}
				case 1, 3:
					if kind%4 == 1 || (kind&4 != 0 && maxWeight > 0) {
						var sum float64
						for _, it := range bt {
							sum += effWeight(weight(it))
						}
						if len(bt) > 1 && sum > maxWeight {
							t.Fatalf("a batch of %d items weighs %v > %v", len(bt), sum, maxWeight)
						}
					}
					if kind%4 == 3 {
						lo, hi := sizer.Bounds()
						limit := hi
						if workers > 0 {
							limit = min(limit, max(first/(4*int(min(workers, 1<<40))), lo, 1))
						}
						if len(bt) > limit {
							t.Fatalf("Adaptive formed a batch of %d, over %d (bounds %d..%d, %d workers, %d items before)", len(bt), limit, lo, hi, workers, first)
						}
					}
				case 2:
					if len(bt) > int(size) {
						t.Fatalf("KeyPartition(%d) formed a batch of %d", size, len(bt))
					}
					for _, it := range bt {
						if key(it) != key(bt[0]) {
							t.Fatalf("a batch mixes keys %q and %q", key(bt[0]), key(it))
						}
					}
				}
				for _, it := range bt {
					count[it.ID]++
				}
				got = append(got, bt...)
				if o, ok := b.(dispatch.Observer); ok {
					// A batch time from the data: any value, 0 and negative too.
					d := time.Duration(int64(len(bt)) * int64(bt[0].Payload.(byte)) * int64(time.Microsecond))
					if bt[0].Payload.(byte)%5 == 0 {
						d = -d
					}
					o.Observe(len(bt), d)
				}
			}
		}
		for i, c := range data {
			check(b.Add(dispatch.Item{ID: strconv.Itoa(i), Payload: c}), false)
			if c == 0xff { // a linger timeout mid-stream
				check(b.Flush(), true)
			}
		}
		check(b.Flush(), true)
		if rest := b.Flush(); len(rest) != 0 {
			t.Fatalf("a second Flush returned %d batches", len(rest))
		}
		if len(got) != len(data) {
			t.Fatalf("%d items in, %d out", len(data), len(got))
		}
		for i := range data {
			if n := count[strconv.Itoa(i)]; n != 1 {
				t.Fatalf("item %d came out %d times", i, n)
			}
		}
		if kind%4 == 2 { // in input order within each key
			last := map[string]int{}
			for _, it := range got {
				i, _ := strconv.Atoi(it.ID)
				if j, ok := last[key(it)]; ok && i < j {
					t.Fatalf("key %q: item %d after item %d", key(it), i, j)
				}
				last[key(it)] = i
			}
			return
		}
		for i, it := range got { // in input order
			if it.ID != strconv.Itoa(i) {
				t.Fatalf("item %s came out in place %d", it.ID, i)
			}
		}
	})
}

//go:build cgo

package store_test

import (
	"context"
	"sync"
	"testing"

	"github.com/slither-go/slither/pools"
	"github.com/slither-go/slither/store"
)

// runPair submits the same batch to two workers at once, n times.
func runPair(b *testing.B, p pools.Pool, bt pools.Batch) {
	b.Helper()
	for range b.N {
		var wg sync.WaitGroup
		errs := make([]error, 2)
		for i := range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, errs[i] = p.Submit(context.Background(), bt)
			}()
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				b.Fatal(err)
			}
		}
	}
}

// BenchmarkSharedData is the seed's shared-data benchmark, in one run: two
// Python workers read keys (and increment a counter) through a Go store
// view, from the embedded pool and from a process pool, against the same
// work on a Python dict shared by two threads of the embedded interpreter,
// with a lock and without one. rmw reports the increments lost.
func BenchmarkSharedData(b *testing.B) {
	const n, keys = 2000, 1000
	s := kvStore(b)
	reg := store.NewRegistry(nil)
	if err := reg.AddStore(s); err != nil {
		b.Fatal(err)
	}
	ps := bothPools(b, reg, 2)
	reads := []struct{ name, pool, fn string }{
		{"view/thread", "thread", "read_view"},
		{"view/process", "process", "read_view"},
		{"dict+lock/thread", "thread", "read_dict_locked"},
		{"dict/thread", "thread", "read_dict"},
	}
	for _, c := range reads {
		b.Run("reads/"+c.name, func(b *testing.B) {
			runPair(b, ps[c.pool], pools.Batch{Module: "storetest", Function: c.fn, Items: []any{[]any{n, keys}}})
			total := float64(b.N) * 2 * n
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/total, "ns/read")
			b.ReportMetric(total/b.Elapsed().Seconds(), "reads/s")
		})
	}
	rmw := []struct{ name, pool, fn string }{
		{"view/thread", "thread", "incr_view"},
		{"view/process", "process", "incr_view"},
		{"dict+lock/thread", "thread", "incr_dict_locked"},
		{"dict/thread", "thread", "incr_dict"},
	}
	for _, c := range rmw {
		b.Run("rmw/"+c.name, func(b *testing.B) {
			ctx := context.Background()
			if err := s.Delete(ctx, "counters", "c"); err != nil {
				b.Fatal(err)
			}
			if _, err := ps["thread"].Submit(ctx, pools.Batch{Module: "storetest", Function: "counter", Items: []any{0}}); err != nil {
				b.Fatal(err)
			}
			runPair(b, ps[c.pool], pools.Batch{Module: "storetest", Function: c.fn, Items: []any{n}})
			want := int64(b.N) * 2 * n
			var got int64
			if c.fn == "incr_view" {
				v, _, _ := s.Get("counters", "c")
				got, _ = v.(int64)
			} else {
				out, err := ps["thread"].Submit(ctx, pools.Batch{Module: "storetest", Function: "counter", Items: []any{0}})
				if err != nil {
					b.Fatal(err)
				}
				got = out[0].(int64)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(want), "ns/update")
			b.ReportMetric(float64(want-got), "lost-updates")
			b.ReportMetric(100*float64(want-got)/float64(want), "lost-%")
		})
	}
}

// BenchmarkViewLatency is one Python worker reading keys through a view,
// one call after another: the round trip of slither.view in each pool.
func BenchmarkViewLatency(b *testing.B) {
	const n = 2000
	s := kvStore(b)
	reg := store.NewRegistry(nil)
	if err := reg.AddStore(s); err != nil {
		b.Fatal(err)
	}
	ps := bothPools(b, reg, 1)
	for _, name := range []string{"thread", "process"} {
		b.Run(name, func(b *testing.B) {
			bt := pools.Batch{Module: "storetest", Function: "read_view", Items: []any{[]any{n, 1000}}}
			for b.Loop() {
				if _, err := ps[name].Submit(context.Background(), bt); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/read")
		})
	}
}

//go:build cgo

package cpython_test

import (
	"bytes"
	"fmt"
	"slices"
	"testing"
	"time"
)

// BenchmarkCallBatch is the binding's own cost: one call of a Python
// function that returns its batch, on a thread that keeps its thread state,
// with no hand-off between goroutines.
func BenchmarkCallBatch(b *testing.B) {
	for _, size := range []int{0, 1, 64} {
		b.Run(fmt.Sprintf("batch=%d", size), func(b *testing.B) {
			th, err := rt(b).NewThread()
			if err != nil {
				b.Fatal(err)
			}
			defer th.Close()
			items := make([]any, size)
			for i := range items {
				items[i] = int64(i)
			}
			if _, err := th.CallBatch("cpytest", "echo", items); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for b.Loop() {
				if _, err := th.CallBatch("cpytest", "echo", items); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func ints(n int) []any {
	items := make([]any, n)
	for i := range items {
		items[i] = int64(i)
	}
	return items
}

// BenchmarkCallerBatch is a direct call's whole cost: lock the goroutine
// to its OS thread, attach that thread's state, call, detach, unlock — one
// cgo crossing. "parallel" runs it from GOMAXPROCS goroutines at once, one
// Caller each, and reports the cost per item.
func BenchmarkCallerBatch(b *testing.B) {
	for _, size := range []int{0, 1, 64} {
		b.Run(fmt.Sprintf("batch=%d", size), func(b *testing.B) {
			c := rt(b).NewCaller()
			defer c.Close()
			items := ints(size)
			if _, err := c.CallBatch("cpytest", "echo", items); err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
				if _, err := c.CallBatch("cpytest", "echo", items); err != nil {
					b.Fatal(err)
				}
			}
			if size > 0 {
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*size), "ns/item")
			}
		})
	}
	for _, size := range []int{1, 64} {
		b.Run(fmt.Sprintf("parallel/batch=%d", size), func(b *testing.B) {
			r := rt(b)
			items := ints(size)
			b.RunParallel(func(pb *testing.PB) {
				c := r.NewCaller()
				defer c.Close()
				for pb.Next() {
					if _, err := c.CallBatch("cpytest", "echo", items); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*size), "ns/item")
		})
	}
}

// BenchmarkEcho1MB: one 1 MiB bytes value to Python and back (cpytest.echo),
// through a Thread and a Caller, with the result allocated by make or by a
// SetAlloc function that recycles the buffers the benchmark gives back (as
// a caller done with its results would). Compare with BenchmarkMemcpy1MB,
// the floor: one warm copy each way.
func BenchmarkEcho1MB(b *testing.B) {
	in := bytes.Repeat([]byte{0x5a}, 1<<20)
	items := []any{in}
	for _, kind := range []string{"Thread", "Caller"} {
		for _, alloc := range []string{"make", "recycle"} {
			b.Run(kind+"/"+alloc, func(b *testing.B) {
				var c interface {
					CallBatch(module, name string, items []any) ([]any, error)
					SetAlloc(func(n int) []byte)
				}
				if kind == "Thread" {
					th, err := rt(b).NewThread()
					if err != nil {
						b.Fatal(err)
					}
					defer th.Close()
					c = th
				} else {
					cl := rt(b).NewCaller()
					defer cl.Close()
					c = cl
				}
				var free [][]byte
				if alloc == "recycle" {
					c.SetAlloc(func(n int) []byte {
						if k := len(free); k > 0 && cap(free[k-1]) >= n {
							buf := free[k-1]
							free = free[:k-1]
							return buf[:n]
						}
						return make([]byte, n)
					})
				}
				if _, err := c.CallBatch("cpytest", "echo", items); err != nil { // imports, warms up
					b.Fatal(err)
				}
				b.SetBytes(2 << 20)
				b.ReportAllocs()
				for b.Loop() {
					out, err := c.CallBatch("cpytest", "echo", items)
					if err != nil {
						b.Fatal(err)
					}
					if alloc == "recycle" {
						free = append(free, out[0].([]byte))
					}
				}
			})
		}
	}
}

// BenchmarkMemcpy1MB is the floor of BenchmarkEcho1MB: 1 MiB copied into
// warm memory and back (two copies).
func BenchmarkMemcpy1MB(b *testing.B) {
	src := bytes.Repeat([]byte{0x5a}, 1<<20)
	mid, dst := make([]byte, 1<<20), make([]byte, 1<<20)
	b.SetBytes(2 << 20)
	b.ReportAllocs()
	for b.Loop() {
		copy(mid, src)
		copy(dst, mid)
	}
}

// BenchmarkCallerLatency reports the p50 and p99 of one direct call of
// batch 1 (each call timed on its own, clock reads included).
func BenchmarkCallerLatency(b *testing.B) {
	c := rt(b).NewCaller()
	defer c.Close()
	items := ints(1)
	if _, err := c.CallBatch("cpytest", "echo", items); err != nil {
		b.Fatal(err)
	}
	var d []time.Duration
	for b.Loop() {
		start := time.Now()
		if _, err := c.CallBatch("cpytest", "echo", items); err != nil {
			b.Fatal(err)
		}
		d = append(d, time.Since(start))
	}
	slices.Sort(d)
	b.ReportMetric(float64(d[len(d)/2].Nanoseconds()), "p50-ns")
	b.ReportMetric(float64(d[len(d)*99/100].Nanoseconds()), "p99-ns")
}

package main

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/slither-go/slither/dispatch"
	"github.com/slither-go/slither/engine"
	"github.com/slither-go/slither/internal/storetest"
	"github.com/slither-go/slither/natsdev"
	"github.com/slither-go/slither/pools"
)

// BenchmarkRemoteScale runs sleep-bound work (so a 2-core machine is not
// what limits it) through a remote pool served by 1, 2 and 4 `slither
// node` processes, each with one Python worker of 4 threads: throughput
// should grow with the nodes.
//
//	go test -run '^$' -bench RemoteScale -benchtime 3x ./cmd/slither/
func BenchmarkRemoteScale(b *testing.B) {
	const (
		itemMS = 5   // each item sleeps this long
		size   = 8   // items per batch: 40 ms a batch
		items  = 960 // per benchmark iteration
	)
	for _, nodes := range []int{1, 2, 4} {
		b.Run(fmt.Sprintf("nodes=%d", nodes), func(b *testing.B) {
			ctx := e2eCtx(b, 10*time.Minute)
			c := newCluster(b, natsdev.Options{})
			cfg := nodeConfig(b, "{workers: 1, threads_per_worker: 4}", "")
			c.startNodes(ctx, nodes, cfg)
			eng := c.coordinator(ctx, engine.RemoteConfig{WaitNodes: nodes}, nil)
			payload := func(yield func(dispatch.Item) bool) {
				for i := range items {
					if !yield(dispatch.Item{ID: fmt.Sprint(i), Payload: itemMS}) {
						return
					}
				}
			}
			o := engine.DispatchOptions{Pool: "work", Options: dispatch.Options{Module: "remote_e2e", Function: "sleep_ms",
				Strategy: dispatch.FixedBatch(size), Ordering: dispatch.AsCompleted}}
			start := time.Now()
			for b.Loop() {
				out, err := eng.Dispatch(ctx, payload, o)
				if err != nil {
					b.Fatal(err)
				}
				if len(out.Results) != items {
					b.Fatalf("%d results", len(out.Results))
				}
			}
			b.ReportMetric(float64(items*b.N)/time.Since(start).Seconds(), "items/s")
		})
	}
}

// BenchmarkRemoteOverhead compares one caller's round trip of a no-op batch
// through a remote pool (one node, one Python worker) with the same through
// a local process pool of one worker, at batch 1 and 64: the per-item
// price of going through NATS JetStream.
//
//	go test -run '^$' -bench RemoteOverhead ./cmd/slither/
func BenchmarkRemoteOverhead(b *testing.B) {
	ctx := e2eCtx(b, 10*time.Minute)
	c := newCluster(b, natsdev.Options{})
	c.startNode(ctx, nodeConfig(b, "{workers: 1}", ""))
	eng := c.coordinator(ctx, engine.RemoteConfig{WaitNodes: 1}, func(cfg *engine.Config) {
		cfg.Stores = append(cfg.Stores, storetest.Prices())
	})
	for _, size := range []int{1, 64} {
		items := make([]any, size)
		for i := range items {
			items[i] = i
		}
		for _, name := range []string{"local", "work"} {
			p, err := eng.Pool(name)
			if err != nil {
				b.Fatal(err)
			}
			kind := "process"
			if name == "work" {
				kind = "remote"
			}
			b.Run(fmt.Sprintf("batch=%d/pool=%s", size, kind), func(b *testing.B) {
				bt := pools.Batch{Module: "remote_e2e", Function: "noop", Items: items, Route: pools.Process}
				for b.Loop() {
					if _, err := p.Submit(context.Background(), bt); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*size), "ns/item")
			})
		}
	}
	// A store view read from Python on the node goes back to this
	// process over NATS request/reply: a batch of 64 items reading one
	// view each, against the same batch that reads none (noop), gives the
	// price of one view.
	skus := make([]any, 64)
	for i := range skus {
		skus[i] = "A1"
	}
	for _, name := range []string{"local", "work"} {
		p, err := eng.Pool(name)
		if err != nil {
			b.Fatal(err)
		}
		kind := map[string]string{"local": "process", "work": "remote"}[name]
		for _, fn := range []string{"noop", "price"} {
			b.Run(fmt.Sprintf("views=%s/pool=%s", map[string]string{"noop": "0", "price": "64"}[fn], kind), func(b *testing.B) {
				bt := pools.Batch{Module: "remote_e2e", Function: fn, Items: skus, Route: pools.Process}
				for b.Loop() {
					if _, err := p.Submit(context.Background(), bt); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(skus)), "ns/item")
			})
		}
	}
}

//go:build cgo

package main

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"github.com/slither-go/slither/pools"
	"github.com/slither-go/slither/pools/thread"
)

type demoOptions struct {
	workers int
	limit   int
	chunk   int
}

func newDemo() *cobra.Command {
	o := demoOptions{}
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Count primes in pure Python on the embedded free-threaded pool, 1 worker vs many",
		Long: `demo counts the primes below --limit with a pure-Python function
(slither._demo.count_primes), fanned out from Go in batches over the embedded
thread pool: first with one worker, then with --workers. It checks every count
against Go's own sieve and prints the per-worker split and the speed-up, which
comes only from Python threads running at once with the GIL off.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDemo(cmd.Context(), cmd.OutOrStdout(), o)
		},
	}
	f := cmd.Flags()
	f.IntVar(&o.workers, "workers", runtime.NumCPU(), "workers in the parallel run")
	f.IntVar(&o.limit, "limit", 1_500_000, "count the primes below this number")
	f.IntVar(&o.chunk, "chunk", 5_000, "numbers per item (each batch holds 4 items)")
	return cmd
}

func runDemo(ctx context.Context, w io.Writer, o demoOptions) error {
	if o.workers < 1 || o.limit < 2 || o.chunk < 1 {
		return fmt.Errorf("demo: --workers (%d), --chunk (%d) must be >= 1 and --limit (%d) >= 2", o.workers, o.chunk, o.limit)
	}
	var ranges [][2]int
	for lo := 0; lo < o.limit; lo += o.chunk {
		ranges = append(ranges, [2]int{lo, min(lo+o.chunk, o.limit)})
	}
	want := sieveCounts(ranges, o.limit)

	var base time.Duration
	for i, n := range []int{1, o.workers} {
		if i == 1 && n == 1 {
			break
		}
		p, err := thread.New(thread.Options{Workers: n})
		if err != nil {
			return err
		}
		if i == 0 {
			rt := p.Runtime()
			fmt.Fprintf(w, "Python %s (free-threaded build: %v, GIL enabled now: %v), %d CPUs\n",
				strings.Fields(rt.Version())[0], rt.FreeThreadedBuild(), rt.GILEnabled(), runtime.NumCPU())
			fmt.Fprintf(w, "counting primes below %d in %d items of %d numbers, 4 items per batch\n\n", o.limit, len(ranges), o.chunk)
		}
		elapsed, total, err := demoRun(ctx, p, ranges, want)
		st := p.Stats()
		if cerr := p.Close(context.Background()); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
		if i == 0 {
			base = elapsed
		}
		fmt.Fprintf(w, "%d worker(s): %d primes in %v (%.2fx)\n", n, total, elapsed.Round(time.Millisecond), float64(base)/float64(elapsed))
		for _, ws := range st.Workers {
			fmt.Fprintf(w, "  worker %d: %3d batches, %4d items, busy %v\n", ws.ID, ws.Calls, ws.Items, ws.Busy.Round(time.Millisecond))
		}
	}
	fmt.Fprintln(w, "\nevery count matches Go's sieve")
	return nil
}

// demoRun fans the ranges out in batches of 4, with as many batches in
// flight as the pool has workers, and checks each count.
func demoRun(ctx context.Context, p *thread.Pool, ranges [][2]int, want []int) (time.Duration, int, error) {
	const perBatch = 4
	start := time.Now()
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(p.Capacity())
	got := make([]int, len(ranges))
	for lo := 0; lo < len(ranges); lo += perBatch {
		hi := min(lo+perBatch, len(ranges))
		g.Go(func() error {
			items := make([]any, 0, hi-lo)
			for _, r := range ranges[lo:hi] {
				items = append(items, []any{r[0], r[1]})
			}
			out, err := p.Submit(ctx, pools.Batch{Module: "slither._demo", Function: "count_primes", Items: items})
			if err != nil {
				return err
			}
			for k, v := range out {
				n, ok := v.(int64)
				if !ok {
					return fmt.Errorf("demo: count_primes returned %T for item %d", v, lo+k)
				}
				got[lo+k] = int(n)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return 0, 0, err
	}
	elapsed := time.Since(start)
	total := 0
	for i, n := range got {
		if n != want[i] {
			return 0, 0, fmt.Errorf("demo: Python counted %d primes in [%d, %d), Go's sieve %d", n, ranges[i][0], ranges[i][1], want[i])
		}
		total += n
	}
	return elapsed, total, nil
}

// sieveCounts is the reference: primes per range by the sieve of Eratosthenes.
func sieveCounts(ranges [][2]int, limit int) []int {
	composite := make([]bool, limit)
	for i := 2; i*i < limit; i++ {
		if !composite[i] {
			for j := i * i; j < limit; j += i {
				composite[j] = true
			}
		}
	}
	out := make([]int, len(ranges))
	for i, r := range ranges {
		for k := max(r[0], 2); k < r[1]; k++ {
			if !composite[k] {
				out[i]++
			}
		}
	}
	return out
}

package main

import (
	"encoding/json"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/slither-go/slither/bench"
	"github.com/slither-go/slither/capacity"
)

func newBench() *cobra.Command {
	o := bench.Options{}
	var asJSON bool
	var plotPath, from string
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Run the thread-vs-process benchmark matrix on this machine",
		Long: `bench runs the same workloads (no-op at batch 1 and 64, a pure-Python CPU loop,
hashlib/zlib on 1 MiB, I/O waits, a shared counter, 1 MiB payloads, a stateful model, and a
segfault) through the embedded thread pool (and with one worker, for the CPU row), process
pools on the free-threaded and on a GIL interpreter, the engine's router on Route Auto (over
the embedded pool and the GIL process pool, seeded with this run's costs), Python's
ThreadPoolExecutor and ProcessPoolExecutor, and serial Python, and reports items/s,
per-batch p50/p99 (and the no-op round trip with one caller alone), peak RSS and
correctness, with a recommendation per workload.

Payload rows also get a copy floor, measured in Go when the run starts: a warm copy of the
payload each way per item with as many goroutines as workers (and a fresh allocation plus
copy, which shows what page faults cost on this machine), and every cell's distance to it
("(12.0x)" = 12 times below the floor). Every executor of a payload row copies each way:
Python's ThreadPoolExecutor and the serial loop copy the bytes in and out around the call
as the embedded pool's boundary does.

The ratios section lists what issue #18 tracks, each with its target (met or MISSED):
thread pool vs ThreadPoolExecutor at batch 1 and 64, the one-caller round trip, ns per item
at batch 64, the thread pool vs the copy floor, Auto vs the faster of its pools for the CPU
and hashlib rows (and where Auto sent the batches), the process pools vs
ProcessPoolExecutor, and the CPU-bound thread pool with all workers vs one.

A full run saves its measurements (capacity.Measured: the fastest executor per workload,
no-op call overhead, and each function's cost per item on each pool, which seed Auto's
cost model) where slither doctor and the engine read them; --quick and --only runs do not.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !asJSON {
				o.Progress = cmd.ErrOrStderr()
			}
			var rep *bench.Report
			if from != "" { // render a saved run
				b, err := os.ReadFile(from)
				if err != nil {
					return err
				}
				rep = &bench.Report{}
				if err := json.Unmarshal(b, rep); err != nil {
					return fmt.Errorf("bench: %s: %w", from, err)
				}
			} else {
				var err error
				if rep, err = bench.Run(cmd.Context(), o); err != nil {
					return err
				}
			}
			if !rep.Quick && len(o.Only) == 0 { // a full run (or a saved one) teaches the capacity model
				path, err := capacity.MeasuredPath()
				if err == nil {
					err = rep.Measured().Save(path)
				}
				if err != nil {
					return err
				}
			}
			if plotPath != "" {
				if err := rep.Plot(plotPath); err != nil {
					return fmt.Errorf("bench: plot: %w", err)
				}
			}
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(rep)
			}
			return rep.WriteTable(cmd.OutOrStdout())
		},
	}
	f := cmd.Flags()
	f.BoolVar(&o.Quick, "quick", false, "small inputs: the whole matrix in under a minute")
	f.IntVar(&o.Workers, "workers", 0, "workers per executor (default: usable cores, at least 2)")
	f.StringVar(&o.FreeThreaded, "python", "", "the free-threaded interpreter (default: found like slither doctor)")
	f.StringVar(&o.GIL, "gil-python", "/usr/bin/python3", "the GIL interpreter for the process-gil column")
	f.StringSliceVar(&o.Only, "only", nil, "run only these workloads")
	f.BoolVar(&asJSON, "json", false, "print the report as JSON")
	f.StringVar(&plotPath, "plot", "", "draw items/s to this .png or .svg")
	f.StringVar(&from, "from", "", "render a report saved with --json instead of running")
	return cmd
}

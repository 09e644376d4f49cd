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
segfault) through the embedded thread pool, process pools on the free-threaded and on a GIL
interpreter, Python's ThreadPoolExecutor and ProcessPoolExecutor, and serial Python, and
reports items/s, per-batch p50/p99, peak RSS and correctness, with ratios and a
recommendation per workload.`,
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

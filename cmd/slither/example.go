package main

import (
	"errors"
	"fmt"
	"slices"

	"github.com/spf13/cobra"

	"github.com/slither-go/slither/examples"
	"github.com/slither-go/slither/examples/batch_stats"
	"github.com/slither-go/slither/examples/data_etl"
	"github.com/slither-go/slither/examples/image_pipeline"
	"github.com/slither-go/slither/examples/ml_scoring"
	"github.com/slither-go/slither/examples/text_analysis"
)

// allExamples lists the examples in the order --all runs them.
var allExamples = []examples.Example{
	text_analysis.Example,
	batch_stats.Example,
	data_etl.Example,
	ml_scoring.Example,
	image_pipeline.Example,
}

func newExample() *cobra.Command {
	var all, noBaseline bool
	var scale int
	cmd := &cobra.Command{
		Use:   "example [NAME]",
		Short: "Run the end-to-end examples, each beside a naive free-threaded baseline",
		Long: `example with no name lists the examples. With a name (or --all) it runs it the Slither
way, checks its figures against a serial reference, prints where each Python stage ran and
why, then runs the naive pure-Python threaded version with shared mutable state and reports
what that observed (--no-baseline skips it).`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			out := cmd.OutOrStdout()
			var run []examples.Example
			switch {
			case all:
				run = allExamples
			case len(args) == 1:
				i := slices.IndexFunc(allExamples, func(e examples.Example) bool { return e.Name == args[0] })
				if i < 0 {
					return fmt.Errorf("example: no example %q (run `slither example` for the list)", args[0])
				}
				run = allExamples[i : i+1]
			default:
				for _, e := range allExamples {
					fmt.Fprintf(out, "  %-15s %s\n", e.Name, e.Summary)
				}
				return nil
			}
			failed := 0
			for _, e := range run {
				res, err := examples.Run(cmd.Context(), e, examples.Options{Baseline: !noBaseline, Scale: scale, Out: out})
				if errors.Is(err, examples.ErrMissingDeps) {
					return err // one clear line saying what to install
				}
				if err != nil {
					return err
				}
				if !res.OK() {
					failed++
				}
			}
			if failed > 0 {
				return fmt.Errorf("example: %d example(s) failed their checks", failed)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.BoolVar(&all, "all", false, "run every example")
	f.BoolVar(&noBaseline, "no-baseline", false, "skip the naive threaded baselines")
	f.IntVar(&scale, "scale", 1, "multiply the input sizes (races show more at larger scales)")
	return cmd
}

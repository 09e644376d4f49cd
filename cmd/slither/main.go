// Command slither is the Slither for Go command line: `slither demo` (the
// embedded free-threaded pool at work) and `slither doctor` (interpreters,
// GIL state, capacity and recommendations); bench and example as their
// issues land.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/slither-go/slither/bench"
)

func main() {
	bench.CrashChild() // the bench's thread-pool crash runs in a child of this binary
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := newRoot().ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "slither:", err)
		stop()
		os.Exit(exitCode(err))
	}
}

func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:           "slither",
		Short:         "Go owns concurrency and state; Python does the compute",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newDemo(), newDoctor(), newBench(), newExample(), newPython())
	return root
}

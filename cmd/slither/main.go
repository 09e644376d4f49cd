// Command slither is the Slither for Go command line: a demo of the embedded
// free-threaded pool now; doctor, bench and example as their issues land.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := newRoot().ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "slither:", err)
		os.Exit(1)
	}
}

func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:           "slither",
		Short:         "Go owns concurrency and state; Python does the compute",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newDemo())
	return root
}

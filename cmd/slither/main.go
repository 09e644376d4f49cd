// Command slither is the Slither for Go command line: `slither python`
// (install the free-threaded CPython, print the cgo environment), `slither
// init` (a new module from the quickstart template), `slither demo` (the
// embedded free-threaded pool at work), `slither doctor` (interpreters, GIL
// state, capacity and recommendations), `slither bench` (the thread-vs-
// process matrix), `slither example` (the five end-to-end examples, and
// --serve to keep one running for watching) and `slither top` (a running
// engine's pools, workers, routes, GIL and errors, live in the terminal)
// and `slither node` (serve this machine's pools to remote engines over NATS
// JetStream).
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
	// The first signal stops the command; a second one then ends the
	// process at once, whatever the command is still waiting for.
	context.AfterFunc(ctx, stop)
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
	root.AddCommand(newDemo(), newDoctor(), newBench(), newExample(), newTop(), withBundle(newPython()), newInit(), newNode())
	return root
}

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"slices"
	"time"

	"github.com/spf13/cobra"

	"github.com/slither-go/slither/engine"
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
	var serve, token string
	cmd := &cobra.Command{
		Use:   "example [NAME]",
		Short: "Run the end-to-end examples, each beside a naive free-threaded baseline",
		Long: `example with no name lists the examples. With a name (or --all) it runs it the Slither
way, checks its figures against a serial reference, prints where each Python stage ran and
why, then runs the naive pure-Python threaded version with shared mutable state and reports
what that observed (--no-baseline skips it).

With --serve ADDR it runs one example on an engine that serves its monitor on ADDR (metrics,
the /debug/slither page, and the state ` + "`slither top`" + ` draws), again and again under load until
Ctrl-C, and prints the page's URL and the ` + "`slither top`" + ` command to watch it. ":9090" listens on
127.0.0.1 only; another host needs --token (default $SLITHER_HTTP_TOKEN). The first round
prints and checks as usual; later rounds reuse the engine, print one line each, and skip the
baseline.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			out := cmd.OutOrStdout()
			if serve != "" {
				if all || len(args) != 1 {
					return errors.New("example: --serve runs one example: name it")
				}
			}
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
			if serve != "" {
				return serveExample(cmd.Context(), out, run[0], serve, token, tokenSource(cmd, token), scale)
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
	f.StringVar(&serve, "serve", "", "serve the engine's monitor on this address and keep the example running until Ctrl-C")
	f.StringVar(&token, "token", os.Getenv("SLITHER_HTTP_TOKEN"), "the monitor's token with --serve (default $SLITHER_HTTP_TOKEN)")
	return cmd
}

// tokenFrom is where --serve's token came from: the hints printed name
// that place and never the token, since stdout may well end up in a log.
type tokenFrom int

const (
	noToken   tokenFrom = iota
	tokenFlag           // --token
	tokenEnv            // $SLITHER_HTTP_TOKEN, the flag's default
)

// tokenSource says where cmd's --token, token, came from.
func tokenSource(cmd *cobra.Command, token string) tokenFrom {
	switch {
	case token == "":
		return noToken
	case cmd.Flags().Changed("token"):
		return tokenFlag
	default:
		return tokenEnv
	}
}

// watchHints is what `slither example NAME --serve` prints once the
// monitor listens on bound: the page, the `slither top` command and the
// metrics URL, each saying how to give the token when there is one.
func watchHints(name, bound string, from tokenFrom) string {
	page := url.URL{Scheme: "http", Host: bound, Path: "/debug/slither"}
	if host, port, err := net.SplitHostPort(bound); err == nil && net.ParseIP(host).IsUnspecified() {
		// Listening on every interface: this machine's name reaches it.
		if hn, err := os.Hostname(); err == nil {
			page.Host = net.JoinHostPort(hn, port)
		}
	}
	pageURL, top, metrics := page.String(), "slither top --addr "+page.Host, "http://"+page.Host+"/metrics"
	var token string // what TOKEN stands for
	switch from {
	case tokenFlag:
		top += " --token TOKEN"
		token = "the token you gave --token"
	case tokenEnv:
		top += ` --token "$SLITHER_HTTP_TOKEN"`
		token = "the token in $SLITHER_HTTP_TOKEN"
	}
	if token != "" {
		pageURL += "?token=TOKEN"
		metrics += " (header Authorization: Bearer TOKEN)"
		token = "  (TOKEN: " + token + ")\n"
	}
	return fmt.Sprintf("serving %s's monitor until Ctrl-C:\n  page:    %s\n  top:     %s\n  metrics: %s\n%s\n",
		name, pageURL, top, metrics, token)
}

// serveExample runs `slither example NAME --serve ADDR`: it says where to
// watch, then one line per round, until ctx ends (Ctrl-C).
func serveExample(ctx context.Context, out io.Writer, ex examples.Example, addr, token string, from tokenFrom, scale int) error {
	// Rounds can take milliseconds: later ones are summed up in a line
	// every few seconds.
	const every = 5 * time.Second
	var first, rounds, short int // the rounds since the last line: first, how many, how many short of a check
	last := time.Now()
	err := examples.Serve(ctx, ex, examples.ServeOptions{
		HTTP:    engine.HTTPConfig{Addr: addr, Token: token},
		Scale:   scale,
		Out:     out,
		Serving: func(eng *engine.Engine) { fmt.Fprint(out, watchHints(ex.Name, eng.HTTPAddr(), from)) },
		Round: func(n int, res *examples.Result, err error) {
			switch {
			case n == 1 && err == nil:
				fmt.Fprintf(out, "round 1 done; running %s again and again on the same engine until Ctrl-C\n"+
					"(later rounds reuse its workers and stores, so checks that assume a fresh engine may not hold there)\n", ex.Name)
				first, last = 2, time.Now()
				return
			case err != nil:
				fmt.Fprintf(out, "%s round %d: %v\n", time.Now().Format(time.TimeOnly), n, err)
			case !res.OK():
				short++
			}
			rounds++
			if took := time.Since(last); took >= every || err != nil {
				fmt.Fprintf(out, "%s rounds %d-%d: %d in %v, %d with a check that did not hold\n",
					time.Now().Format(time.TimeOnly), first, n, rounds, took.Round(time.Millisecond), short)
				first, rounds, short, last = n+1, 0, 0, time.Now()
			}
		},
	})
	return err
}

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/slither-go/slither/capacity"
	"github.com/slither-go/slither/engine"
	"github.com/slither-go/slither/pools"
	"github.com/slither-go/slither/pools/process"
	"github.com/slither-go/slither/pools/remote"
)

type doctorOptions struct {
	json    bool
	check   []string
	paths   []string
	pythons []string
	require string
	measure bool
	venvs   []string
	nats    string // --nats: list the nodes on this server instead
	config  string // --config: an engine config whose nats section connects
}

// errRequire makes the command exit with status 3: the machine cannot meet
// the profile --require asked for.
type errRequire struct{ msg string }

func (e errRequire) Error() string { return e.msg }

func newDoctor() *cobra.Command {
	o := doctorOptions{}
	cmd := &cobra.Command{
		Use:   "doctor",
		Short: "Report interpreters, GIL state, cores, memory, capacities and recommended pool and batch sizes",
		Long: `doctor probes every Python it finds (SLITHER_PYTHON, the cached free-threaded build,
python3.14t/python3.13t/python3 in PATH, /usr/bin/python3) and the interpreter embedded in
this binary, reads the CPU affinity, cgroup quota and memory limits, times a no-op call
through each kind of pool, and recommends pool sizes and batch sizes.

--check imports each module in a fresh subprocess of each interpreter and says whether it
imports, whether it turns the GIL back on (and which module CPython named), and whether two
threads still scale afterwards.

--nats URL lists the slither nodes that advertise themselves on that NATS server instead:
id, host, pid, the pools each serves (running/capacity, kind, GIL), whether it drains and
when it last sent a heartbeat. Credentials come from --config's nats section and from the
SLITHER_NATS_* variables (as for the engine); --config alone (with a nats url) lists them too.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.nats != "" || o.config != "" {
				return runDoctorNodes(cmd.Context(), cmd.OutOrStdout(), o, os.Environ())
			}
			return runDoctor(cmd.Context(), cmd.OutOrStdout(), o)
		},
	}
	f := cmd.Flags()
	f.BoolVar(&o.json, "json", false, "print the report as JSON")
	f.StringSliceVar(&o.check, "check", nil, "modules to classify, comma-separated (e.g. numpy,PIL,sklearn)")
	f.StringSliceVar(&o.paths, "path", nil, "extra directories on sys.path for --check")
	f.StringSliceVar(&o.pythons, "python", nil, "more interpreters to probe")
	f.StringVar(&o.require, "require", "", "exit with status 3 unless this profile is met: free-threaded (a free-threaded interpreter with the GIL off), embedded (the embedded pool with the GIL off) or process (a working interpreter)")
	f.BoolVar(&o.measure, "measure", true, "time no-op calls through each kind of pool")
	f.StringSliceVar(&o.venvs, "venv", nil, "virtualenvs to check against the embedded interpreter and probe (default: SLITHER_VENV when set)")
	f.StringVar(&o.nats, "nats", "", "list the slither nodes on this NATS server (nats://host:4222) instead of probing this machine")
	f.StringVar(&o.config, "config", "", "engine config (YAML) whose nats section --nats connects with")
	return cmd
}

func runDoctor(ctx context.Context, w io.Writer, o doctorOptions) error {
	switch o.require {
	case "", "free-threaded", "embedded", "process":
	default:
		return fmt.Errorf("doctor: --require %q: want free-threaded, embedded or process", o.require)
	}
	r := capacity.NewReport()
	calls := 0
	if o.measure {
		calls = 300
	}
	r.Embedded = embedded(ctx, calls)
	paths := capacity.Candidates()
	venvs := o.venvs
	if v := os.Getenv("SLITHER_VENV"); len(venvs) == 0 && v != "" {
		venvs = []string{v}
	}
	for _, dir := range venvs {
		u := capacity.CheckVenv(dir, r.Embedded)
		r.Venvs = append(r.Venvs, u)
		if u.Error == "" { // its interpreter is probed like the others
			o.pythons = append(o.pythons, filepath.Join(u.Dir, "bin", "python"))
		}
	}
	for _, p := range o.pythons {
		if !slices.Contains(paths, p) {
			paths = append(paths, p)
		}
	}
	r.ProcessOverhead = map[string]time.Duration{}
	for _, p := range paths {
		in := capacity.Probe(ctx, p)
		r.Interpreters = append(r.Interpreters, in)
		if in.Error == "" && o.measure {
			if d, err := processOverhead(ctx, p, calls); err == nil {
				r.ProcessOverhead[p] = d
			} else {
				r.Warnings = append(r.Warnings, err.Error())
			}
		}
	}
	for _, m := range o.check {
		for _, in := range r.Interpreters {
			if in.Error == "" {
				r.Checks = append(r.Checks, capacity.CheckModule(ctx, in.Path, strings.TrimSpace(m), o.paths...))
			}
		}
	}
	if path, err := capacity.MeasuredPath(); err == nil {
		if m, ok, err := capacity.LoadMeasured(path); err == nil && ok {
			r.Measured = &m
		}
	}
	measureWarnings := r.Warnings
	r.Plan()
	r.Warnings = append(r.Warnings, measureWarnings...)

	if o.json {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		if err := enc.Encode(r); err != nil {
			return err
		}
	} else if err := r.WriteText(w); err != nil {
		return err
	}
	return requireProfile(r, o.require)
}

func requireProfile(r *capacity.Report, profile string) error {
	ok := false
	switch profile {
	case "":
		return nil
	case "embedded":
		ok = r.Embedded.Available && r.Embedded.FreeThreaded && !r.Embedded.GILEnabled
	case "free-threaded":
		ok = r.Embedded.Available && r.Embedded.FreeThreaded && !r.Embedded.GILEnabled
		for _, in := range r.Interpreters {
			ok = ok || (in.Error == "" && in.FreeThreaded && !in.GILEnabled)
		}
	case "process":
		for _, in := range r.Interpreters {
			ok = ok || in.Error == ""
		}
	}
	if ok {
		return nil
	}
	return errRequire{fmt.Sprintf("doctor: this machine does not meet --require %s (see the warnings above)", profile)}
}

// processOverhead times calls no-op calls through a one-worker process pool.
func processOverhead(ctx context.Context, python string, calls int) (time.Duration, error) {
	p, err := process.New(ctx, process.Options{Workers: 1, Python: python, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return 0, fmt.Errorf("doctor: a process pool on %s does not start: %w", python, err)
	}
	defer p.Close(context.Background())
	b := pools.Batch{Module: "slither._demo", Function: "noop", Items: []any{0}}
	if _, err := p.Submit(ctx, b); err != nil {
		return 0, fmt.Errorf("doctor: a process pool on %s fails calls: %w", python, err)
	}
	start := time.Now()
	for range calls {
		if _, err := p.Submit(ctx, b); err != nil {
			return 0, err
		}
	}
	return time.Since(start) / time.Duration(calls), nil
}

// exitCode maps an error from the command to the process exit status.
func exitCode(err error) int {
	var req errRequire
	if errors.As(err, &req) {
		return 3
	}
	return 1
}

// doctorNATSTimeout bounds connecting to NATS and reading the nodes bucket.
const doctorNATSTimeout = 15 * time.Second

// nodesReport is doctor --nats --json's output.
type nodesReport struct {
	URL      string          `json:"url"`
	Nodes    []remote.Advert `json:"nodes"`
	Warnings []string        `json:"warnings"`
}

// runDoctorNodes lists the nodes advertised on NATS: the connection is
// --config's nats section with the SLITHER_NATS_* variables applied, and
// --nats for its url.
func runDoctorNodes(ctx context.Context, w io.Writer, o doctorOptions, environ []string) error {
	var cfg engine.Config
	if o.config != "" {
		var err error
		if cfg, err = engine.LoadConfig(o.config); err != nil {
			return fmt.Errorf("doctor: %w", err)
		}
	} else {
		// Only the nats variables: without a config the others (a
		// SLITHER_POOL_* for a service's pools) are not doctor's to judge.
		var natsEnv []string
		for _, kv := range environ {
			if strings.HasPrefix(kv, "SLITHER_NATS_") {
				natsEnv = append(natsEnv, kv)
			}
		}
		if err := cfg.ApplyEnv(natsEnv); err != nil {
			return fmt.Errorf("doctor: %w", err)
		}
	}
	co := cfg.NATS
	if o.nats != "" {
		co.URL = o.nats
	}
	if co.URL == "" {
		return fmt.Errorf("doctor: --config %s has no nats.url; pass --nats URL", o.config)
	}
	if co.Name == "" {
		co.Name = "slither-doctor"
	}
	ctx, cancel := context.WithTimeout(ctx, doctorNATSTimeout)
	defer cancel()
	nc, err := remote.Connect(ctx, co)
	if err != nil {
		return fmt.Errorf("doctor: NATS unreachable: %w", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("doctor: JetStream: %w", err)
	}
	r := nodesReport{URL: nc.ConnectedUrlRedacted(), Nodes: []remote.Advert{}, Warnings: []string{}}
	nodes, err := remote.ReadNodes(ctx, js)
	r.Nodes = append(r.Nodes, nodes...)
	if err != nil {
		if len(nodes) == 0 && !errors.Is(err, remote.ErrMalformed) {
			return fmt.Errorf("doctor: reading the nodes on %s: %w", r.URL, err)
		}
		// Some adverts were unreadable: the others are still worth
		// showing. One warning per error joined.
		r.Warnings = append(r.Warnings, strings.Split(err.Error(), "\n")...)
	}
	if o.json {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	}
	return r.writeText(w, time.Now())
}

// writeText prints one line per node; now dates the heartbeats.
func (r nodesReport) writeText(w io.Writer, now time.Time) error {
	var b strings.Builder
	if len(r.Nodes) == 0 {
		fmt.Fprintf(&b, "no nodes on %s\n", r.URL)
	} else {
		fmt.Fprintf(&b, "%d node(s) on %s\n", len(r.Nodes), r.URL)
		tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NODE\tHOST\tPID\tSTATE\tHEARTBEAT\tPOOLS (running/capacity, kind, GIL)")
		for _, n := range r.Nodes {
			state := "serving"
			if n.Draining {
				state = "draining"
			}
			var ps []string
			for _, name := range slices.Sorted(maps.Keys(n.Pools)) {
				p := n.Pools[name]
				gil := "GIL off"
				if p.GILEnabled {
					gil = "GIL on"
				}
				ps = append(ps, fmt.Sprintf("%s %d/%d (%s, %s)", name, p.Running, p.Capacity, p.Kind, gil))
			}
			if len(ps) == 0 {
				ps = []string{"none"}
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s ago\t%s\n", n.Node, n.Host, n.Pid, state,
				now.Sub(n.Updated).Round(100*time.Millisecond), strings.Join(ps, ", "))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	for _, warn := range r.Warnings {
		fmt.Fprintf(&b, "warning: %s\n", warn)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

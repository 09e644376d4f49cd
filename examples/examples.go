// Package examples runs Slither's five end-to-end examples (behind
// `slither example`): each runs the safe Slither way, checks its figures
// against a serial reference, prints where each Python stage ran and why,
// and, unless told not to, runs beside it a naive pure-Python threaded
// version on the free-threaded interpreter that shares mutable state the
// way the seed's baselines do, and reports what that observed.
//
// Each example lives in its own package under examples/ with its Python
// beside it; this package holds what they share.
package examples

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/slither-go/slither/engine"
	"github.com/slither-go/slither/store"
	"github.com/slither-go/slither/telemetry"
)

// Example is one runnable example.
type Example struct {
	Name, Summary string
	// Python holds the example's Python modules (and its baseline script,
	// baseline.py), written to a directory on the pools' path.
	Python fs.FS
	// Modules must import on Debian's /usr/bin/python3 (numpy, sklearn,
	// PIL); Packages are the Debian packages that provide them.
	Modules, Packages []string
	// Stores are started with the engine.
	Stores func() []store.Definition
	// Run runs the example the Slither way.
	Run func(ctx context.Context, env *Env) error
}

// Options configure a run.
type Options struct {
	// Baseline also runs the naive threaded version.
	Baseline bool
	// Scale multiplies the input sizes (1 = the seed's README sizes).
	Scale int
	Out   io.Writer
}

// Env is what an example runs with.
type Env struct {
	Engine *engine.Engine
	Out    io.Writer
	Dir    string // where the example's Python files are
	Scale  int
	// FreeThreaded and System are the interpreters: the 3.13t build and
	// Debian's python3.
	FreeThreaded, System string

	mu        sync.Mutex
	verdicts  []Verdict
	decisions map[string]string
}

// Verdict is one checked claim.
type Verdict struct {
	Check string
	OK    bool
	// Detail gives the figures behind it.
	Detail string
}

// Printf writes to the example's output.
func (e *Env) Printf(format string, args ...any) { fmt.Fprintf(e.Out, format, args...) }

// Check records a verdict (and prints it at the end).
func (e *Env) Check(check string, ok bool, detail string, args ...any) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.verdicts = append(e.verdicts, Verdict{Check: check, OK: ok, Detail: fmt.Sprintf(detail, args...)})
}

// Verdicts returns the verdicts so far.
func (e *Env) Verdicts() []Verdict {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.verdicts)
}

// ErrMissingDeps is matched when an example's Python modules are missing
// and could not be installed.
var ErrMissingDeps = errors.New("examples: missing Python modules")

// Result is what Run reports.
type Result struct {
	Name     string
	Verdicts []Verdict
	// Baseline is the naive version's report, as printed.
	Baseline map[string]any
}

// OK reports whether every verdict held.
func (r *Result) OK() bool {
	for _, v := range r.Verdicts {
		if !v.OK {
			return false
		}
	}
	return len(r.Verdicts) > 0
}

// DefaultCloseTimeout is how long closing an example's engine waits for
// its running batches before giving up on them (see
// ServeOptions.CloseTimeout).
const DefaultCloseTimeout = 10 * time.Second

// Run runs one example. Its engine is closed before Run returns; when its
// batches have not finished DefaultCloseTimeout after that (ctx ended while
// Python was blocked in a call), Run gives up on them and says so in its
// error.
func Run(ctx context.Context, ex Example, o Options) (_ *Result, err error) {
	if o.Scale < 1 {
		o.Scale = 1
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	env, closeEnv, err := start(ctx, ex, o.Scale, o.Out, engine.HTTPConfig{}, engine.ThreadDirect)
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, closeEnv(DefaultCloseTimeout)) }()
	res, err := round(ctx, ex, env)
	if err != nil {
		return nil, err
	}
	if o.Baseline {
		b, err := baseline(ctx, env.FreeThreaded, env.Dir, o.Scale)
		if err != nil {
			env.Printf("\nnaive threaded baseline: could not run: %v\n", err)
		} else {
			res.Baseline = b
			env.Printf("\nnaive threaded baseline (pure Python on %s, shared mutable state, GIL off):\n", env.FreeThreaded)
			for _, line := range strings.Split(strings.TrimSpace(fmt.Sprint(b["report"])), "\n") {
				env.Printf("  %s\n", line)
			}
		}
	}
	env.Printf("\n")
	return res, nil
}

// ServeOptions configure Serve.
type ServeOptions struct {
	// HTTP is where the engine serves its monitor: Addr is required (see
	// engine.HTTPConfig for binding and the token).
	HTTP  engine.HTTPConfig
	Scale int
	// Out gets the first round's report, as Run prints it.
	Out io.Writer
	// Serving is called once the example's engine is up and its monitor
	// listens (on eng.HTTPAddr()), before the first round.
	Serving func(eng *engine.Engine)
	// Round is called after every round with its number (from 1), its
	// verdicts and its error.
	Round func(n int, res *Result, err error)
	// CloseTimeout bounds how long Serve, once ctx has ended, waits for
	// the batches still running to finish before it gives up on them and
	// returns; 0 means DefaultCloseTimeout.
	CloseTimeout time.Duration
}

// Serve keeps one example running under load for people to watch: it
// starts the example's engine with its monitor on o.HTTP, then runs the
// example on that engine round after round until ctx ends. Then it closes
// the engine and returns nil, or, when batches still run o.CloseTimeout
// later (Python blocked in a call does not see the cancellation), an
// error saying it gave up on them. The first round prints and checks as
// Run does (without the baseline); an error there ends Serve. Later
// rounds run quietly on the same engine, so their counts add up on the
// dashboard and in `slither top`; they reuse its workers and stores, whose
// state some checks assume fresh, so their verdicts are reported (to
// Round) but not required, and an error in one is reported and the next
// round starts after a pause.
func Serve(ctx context.Context, ex Example, o ServeOptions) (err error) {
	if o.HTTP.Addr == "" {
		return errors.New("examples: Serve needs an HTTP address to serve the monitor on")
	}
	if o.Scale < 1 {
		o.Scale = 1
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	if o.CloseTimeout <= 0 {
		o.CloseTimeout = DefaultCloseTimeout
	}
	// Dedicated: a Ctrl-C must get Serve back even while Python is blocked
	// in C, which in Direct mode holds the submitting goroutine (here, this
	// one) until the call returns.
	env, closeEnv, err := start(ctx, ex, o.Scale, o.Out, o.HTTP, engine.ThreadDedicated)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, closeEnv(o.CloseTimeout)) }()
	if o.Serving != nil {
		o.Serving(env.Engine)
	}
	for n := 1; ; n++ {
		if n == 2 {
			env.Out = io.Discard
		}
		res, err := round(ctx, ex, env)
		if ctx.Err() != nil {
			return nil
		}
		if o.Round != nil {
			o.Round(n, res, err)
		}
		if err != nil && n == 1 {
			return err
		}
		if err != nil {
			// A failing round must not spin: the engine may be restarting
			// a pool.
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(time.Second):
			}
		}
	}
}

// start gets an example ready to run: its Python modules checked, its
// Python written to a temporary directory and its engine started (with
// its monitor served on http when http.Addr is set). closeEnv undoes it,
// giving up on batches still running after timeout: a Ctrl-C must not
// wait for ever on Python blocked in a call. threadMode is the embedded
// pool's engine.ThreadConfig.Mode.
func start(ctx context.Context, ex Example, scale int, out io.Writer, http engine.HTTPConfig, threadMode string) (env *Env, closeEnv func(timeout time.Duration) error, err error) {
	ft, system := engine.DefaultPython(), "/usr/bin/python3"
	if err := ensureModules(system, ex.Modules, ex.Packages); err != nil {
		return nil, nil, err
	}
	dir, err := os.MkdirTemp("", "slither-example-"+ex.Name+"-")
	if err != nil {
		return nil, nil, err
	}
	defer func() {
		if err != nil {
			_ = os.RemoveAll(dir)
		}
	}()
	if err := os.CopyFS(dir, ex.Python); err != nil {
		return nil, nil, fmt.Errorf("examples: writing %s's Python: %w", ex.Name, err)
	}
	cfg := engine.Config{
		Paths:  []string{dir},
		Logger: slog.New(slog.DiscardHandler),
		Process: map[string]engine.ProcessConfig{
			"default": {Python: ft, Workers: 2},
			"system":  {Python: system, Workers: 2},
		},
		HTTP:   http,
		Thread: engine.ThreadConfig{Mode: threadMode},
	}
	if ex.Stores != nil {
		cfg.Stores = ex.Stores()
	}
	env = &Env{Out: out, Dir: dir, Scale: scale, FreeThreaded: ft, System: system, decisions: map[string]string{}}
	cfg.Telemetry = telemetry.New(cfg.Logger)
	_ = cfg.Telemetry.Attach("example.routes", func(_ telemetry.Event, _ telemetry.Measurements, md telemetry.Metadata) {
		env.mu.Lock()
		defer env.mu.Unlock()
		env.decisions[fmt.Sprintf("%v.%v", md["module"], md["function"])] = fmt.Sprintf("%v: %v", md["route"], md["reason"])
	}, telemetry.RouterDecision)
	eng, err := engine.Start(ctx, cfg)
	if err != nil {
		return nil, nil, err
	}
	env.Engine = eng
	return env, func(timeout time.Duration) error {
		// ctx has likely ended by now: the timeout runs from here.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
		defer cancel()
		err := eng.Close(cctx)
		_ = os.RemoveAll(dir)
		if err != nil {
			return fmt.Errorf("examples: closing %s's engine: %w", ex.Name, err)
		}
		return nil
	}, nil
}

// round runs the example once on env and prints where each Python stage
// ran and why, and its verdicts.
func round(ctx context.Context, ex Example, env *Env) (*Result, error) {
	env.mu.Lock()
	env.verdicts = nil
	clear(env.decisions)
	env.mu.Unlock()
	env.Printf("== %s: %s\n", ex.Name, ex.Summary)
	began := time.Now()
	if err := ex.Run(ctx, env); err != nil {
		return nil, fmt.Errorf("examples: %s: %w", ex.Name, err)
	}
	env.Printf("\nwhere each Python stage ran, and why:\n")
	env.mu.Lock()
	keys := make([]string, 0, len(env.decisions))
	for k := range env.decisions {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		env.Printf("  %s -> %s\n", k, env.decisions[k])
	}
	env.mu.Unlock()
	res := &Result{Name: ex.Name, Verdicts: env.Verdicts()}
	env.Printf("\nverdict (against a serial reference), %v:\n", time.Since(began).Round(time.Millisecond))
	for _, v := range res.Verdicts {
		mark := "ok  "
		if !v.OK {
			mark = "FAIL"
		}
		env.Printf("  %s %s: %s\n", mark, v.Check, v.Detail)
	}
	return res, nil
}

// baseline runs the example's baseline.py on the free-threaded build; it
// prints one JSON object with a "report" text.
func baseline(ctx context.Context, python, dir string, scale int) (map[string]any, error) {
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, python, filepath.Join(dir, "baseline.py"), fmt.Sprint(scale))
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "PYTHON_GIL=0")
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%v: %s", err, strings.TrimSpace(stderr.String()))
	}
	var out map[string]any
	if err := json.Unmarshal(stdout.Bytes(), &out); err != nil {
		return nil, fmt.Errorf("unreadable baseline output: %v", err)
	}
	return out, nil
}

// ensureModules checks that python imports modules, installing packages
// with apt-get when running as root; otherwise it says what to run.
func ensureModules(python string, modules, packages []string) error {
	if len(modules) == 0 {
		return nil
	}
	missing := func() []string {
		var m []string
		for _, mod := range modules {
			if exec.Command(python, "-c", "import "+mod).Run() != nil {
				m = append(m, mod)
			}
		}
		return m
	}
	if m := missing(); len(m) == 0 {
		return nil
	} else if os.Geteuid() == 0 {
		// A fresh machine may have no package lists yet.
		_ = exec.Command("apt-get", "update", "-qq").Run()
		cmd := exec.Command("apt-get", append([]string{"install", "-y", "-qq"}, packages...)...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("%w: %v for %s; installing %v failed: %v: %s", ErrMissingDeps, m, python, packages, err, lastLine(string(out)))
		}
		if m := missing(); len(m) > 0 {
			return fmt.Errorf("%w: %v still not importable by %s after installing %v", ErrMissingDeps, m, python, packages)
		}
		return nil
	} else {
		return fmt.Errorf("%w: %s cannot import %v; run: sudo apt-get install %s", ErrMissingDeps, python, m, strings.Join(packages, " "))
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

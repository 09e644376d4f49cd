package pools

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/slither-go/slither/capacity"
	"github.com/slither-go/slither/python"
)

// FreeThreadedPool is implemented by pools whose Python is a free-threaded
// build (process.Pool): the router reads marks there, in a worker, rather
// than in a subprocess of its own.
type FreeThreadedPool interface {
	FreeThreaded() bool
}

// markTimeout bounds one read of a thread-safety mark (the import of the
// function's module in a worker or a subprocess); a module that takes
// longer to import is reported as a failed read.
const markTimeout = time.Minute

// markRead is one read of a function's mark, shared by the decisions that
// wait for it; once done, safe and err are its verdict for good.
type markRead struct {
	done  chan struct{}
	safe  bool
	err   error
	retry bool // no verdict (see threadSafe): read again
}

// errReenables is a read's verdict that importing a module turns the GIL
// back on; the module is then never imported into this process to check.
type errReenables struct{ module, by, where string }

func (e *errReenables) Error() string {
	return fmt.Sprintf("importing %s in %s turned the GIL on (module %s): it is not imported into this process", e.module, e.where, e.by)
}

// threadSafe reports whether module.function may run on the thread pool,
// and how that is known. A mark is read once per function; decisions
// arriving meanwhile wait for that read (or their own ctx).
func (r *Router) threadSafe(ctx context.Context, module, function string) (bool, string, error) {
	k := [2]string{module, function}
	for {
		r.mu.Lock()
		if r.declared[k] {
			r.mu.Unlock()
			return true, "declared in Go", nil
		}
		m := r.marks[k]
		leader := m == nil
		if leader {
			m = &markRead{done: make(chan struct{})}
			if r.marks == nil {
				r.marks = map[[2]string]*markRead{}
			}
			r.marks[k] = m
		}
		r.mu.Unlock()
		if leader {
			m.safe, m.err = r.readMark(ctx, module, function)
			if m.err != nil && (ctx.Err() != nil || errors.Is(m.err, ErrClosed) || errors.Is(m.err, ErrPoolFailed)) {
				// The caller gave up, or the pool could not run the read:
				// that says nothing of the module.
				m.retry = true
				r.mu.Lock()
				delete(r.marks, k)
				r.mu.Unlock()
			} else if m.err != nil {
				r.logger().Warn("slither router: "+module+"."+function+" runs in processes", "module", module,
					"function", function, "reason", m.err.Error())
			}
			close(m.done)
			return m.safe, "@slither.thread_safe", m.err
		}
		select {
		case <-m.done:
			if m.retry {
				continue
			}
			return m.safe, "@slither.thread_safe", m.err
		case <-ctx.Done():
			return false, "", context.Cause(ctx)
		}
	}
}

func (r *Router) logger() *slog.Logger {
	if r.Logger != nil {
		return r.Logger
	}
	return slog.Default()
}

// readMark imports module where that cannot touch this process: in a
// worker of a free-threaded process pool, else in a subprocess.
func (r *Router) readMark(ctx context.Context, module, function string) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, markTimeout)
	defer cancel()
	if ft, ok := r.Process.(FreeThreadedPool); ok && ft.FreeThreaded() {
		out, err := r.Process.Submit(ctx, Batch{Module: "slither._gil", Function: "inspect", Items: []any{[]any{module, function}}})
		if err != nil {
			return false, err
		}
		var res inspected
		if m, ok := out[0].(map[string]any); ok {
			res.ThreadSafe, _ = m["thread_safe"].(bool)
			res.GILAfter, _ = m["gil_after"].(bool)
			res.Error, _ = m["error"].(string)
			res.EnabledBy = anyStrings(m["enabled_by"])
			res.Path = anyStrings(m["path"])
		}
		return res.verdict(module, "a free-threaded worker process", "engine.Config.Paths (or process.Options.Paths)")
	}
	return r.readMarkInSubprocess(ctx, module, function)
}

func anyStrings(v any) []string {
	vs, _ := v.([]any)
	var out []string
	for _, x := range vs {
		if s, ok := x.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

// inspected is what slither._gil.inspect reports of one import.
type inspected struct {
	ThreadSafe bool     `json:"thread_safe"`
	GILBefore  bool     `json:"gil_before"` // subprocess reads only
	GILAfter   bool     `json:"gil_after"`
	EnabledBy  []string `json:"enabled_by"`
	Error      string   `json:"error"`
	Path       []string `json:"path"` // sys.path, on an error
}

// missingModule finds the module a ModuleNotFoundError names.
var missingModule = regexp.MustCompile(`^ModuleNotFoundError: No module named '([^']+)'`)

// verdict turns what an import did into the mark's verdict. A failed
// import is the user's to fix, so its error says where the module was
// looked for and what to set: paths names the setting for that place.
func (res inspected) verdict(module, where, paths string) (bool, error) {
	if res.Error != "" {
		searched := fmt.Sprintf("sys.path %q", res.Path)
		if len(res.Path) == 0 {
			searched = "an unreported sys.path"
		}
		fix := "make `import " + module + "` work there (it raises the error above)"
		if m := missingModule.FindStringSubmatch(res.Error); m != nil {
			top, _, _ := strings.Cut(module, ".")
			switch {
			case m[1] == top:
				fix = "add the directory that holds " + top + " (" + top + ".py or " + top + "/) to " + paths
			case strings.HasPrefix(module, m[1]+".") || m[1] == module:
				fix = "check the module name: " + m[1] + " does not exist in the package that was found"
			default:
				fix = module + " imports " + m[1] + ": install it into that Python's environment, or add its directory to " + paths
			}
		}
		return false, fmt.Errorf("importing %s in %s failed: %s (searched %s); fix: %s", module, where, res.Error, searched, fix)
	}
	if res.GILAfter {
		by := module
		if len(res.EnabledBy) > 0 {
			by = res.EnabledBy[0]
		}
		return false, &errReenables{module: module, by: by, where: where}
	}
	return res.ThreadSafe, nil
}

// markScript imports one module in a fresh interpreter and prints what
// slither._gil.inspect saw, alone on the real stdout: whatever the module
// prints goes to stderr.
const markScript = `import json, os, sys
out = os.fdopen(os.dup(1), "w")
os.dup2(2, 1)
sys.path[:0] = json.loads(sys.argv[1])
from slither import _gil
before = _gil.enabled()
res = _gil.inspect([[sys.argv[2], sys.argv[3]]])[0]
res["gil_before"] = before
out.write(json.dumps(res))
out.close()
`

// readMarkInSubprocess reads the mark in a short-lived subprocess of a
// free-threaded Python, isolated (-I: no PYTHON* variables, no user site,
// no script directory on sys.path) like the embedded interpreter.
func (r *Router) readMarkInSubprocess(ctx context.Context, module, function string) (bool, error) {
	exe := r.Python
	if exe == "" {
		if d, ok := r.Thread.(interface {
			Describe(context.Context, int) (capacity.Embedded, error)
		}); ok {
			if e, err := d.Describe(ctx, 0); err == nil {
				exe = e.Executable
			}
		}
	}
	if exe == "" {
		return false, errors.New("no free-threaded Python to read it in without importing the module here (set Router.Python)")
	}
	pkg, err := python.Dir()
	if err != nil {
		return false, err
	}
	paths := []string{pkg}
	for _, p := range r.Paths {
		abs, err := filepath.Abs(p)
		if err != nil {
			return false, err
		}
		paths = append(paths, abs)
	}
	arg, err := json.Marshal(paths)
	if err != nil {
		return false, err
	}
	where := "a free-threaded subprocess (" + exe + ")"
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, exe, "-I", "-c", markScript, string(arg), module, function)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = time.Second // a grandchild holding the pipes must not hold us
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return false, fmt.Errorf("importing %s in %s: %w", module, where, context.Cause(ctx))
		}
		return false, fmt.Errorf("importing %s in %s: %v: %s", module, where, err, lastLines(stderr.String(), 5))
	}
	var res inspected
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
		return false, fmt.Errorf("importing %s in %s: unreadable answer %q: %v", module, where, stdout.String(), err)
	}
	if res.GILBefore {
		return false, fmt.Errorf("%s has the GIL on before any import (not a free-threaded build?): it cannot tell whether %s turns it on", exe, module)
	}
	return res.verdict(module, where, "engine.Config.Paths (or Router.Paths)")
}

// lastLines keeps the end of a subprocess's stderr (a traceback's last
// lines say what went wrong).
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

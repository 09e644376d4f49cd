package capacity

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// Interpreter describes one Python installation, as probed in a subprocess.
type Interpreter struct {
	Path       string `json:"path"`       // as found
	Executable string `json:"executable"` // sys.executable
	Version    string `json:"version"`
	// FreeThreaded is the build: configured with --disable-gil.
	FreeThreaded bool `json:"free_threaded"`
	// GILEnabled is sys._is_gil_enabled() in a fresh interpreter (always
	// true for a GIL build).
	GILEnabled bool `json:"gil_enabled"`
	// PythonGIL and XGIL are the overrides in force: the PYTHON_GIL
	// variable and -X gil, "" when unset.
	PythonGIL string `json:"python_gil,omitempty"`
	XGIL      string `json:"x_gil,omitempty"`
	// Error says why probing failed; the other fields are then empty.
	Error string `json:"error,omitempty"`
}

const probeScript = `import json, os, sys, sysconfig
print(json.dumps({
    "executable": sys.executable,
    "version": sys.version.split()[0],
    "free_threaded": bool(sysconfig.get_config_var("Py_GIL_DISABLED")),
    "gil_enabled": bool(sys._is_gil_enabled()) if hasattr(sys, "_is_gil_enabled") else True,
    "python_gil": os.environ.get("PYTHON_GIL", ""),
    "x_gil": str(sys._xoptions.get("gil", "")),
}))`

// Probe runs python in a subprocess and reports what it is.
func Probe(ctx context.Context, python string) Interpreter {
	in := Interpreter{Path: python}
	if err := runScript(ctx, 30*time.Second, python, probeScript, nil, &in); err != nil {
		in.Error = err.Error()
	}
	in.Path = python
	return in
}

// runScript runs a Python script in a subprocess (with extra sys.path
// entries) and decodes the JSON it prints into v.
func runScript(ctx context.Context, timeout time.Duration, python, script string, paths []string, v any, args ...string) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, python, append([]string{"-c", script}, args...)...)
	cmd.Stderr = &stderr
	if len(paths) > 0 {
		cmd.Env = append(os.Environ(), "PYTHONPATH="+strings.Join(paths, string(os.PathListSeparator)))
	}
	out, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("%v: %s", err, strings.TrimSpace(stderr.String()))
	}
	if err := json.Unmarshal(out, v); err != nil {
		return fmt.Errorf("unreadable output %q: %v", out, err)
	}
	return nil
}

// Candidates lists the interpreters worth probing, without duplicates (by
// resolved path): SLITHER_PYTHON, the default free-threaded build in the
// cache, then python3.14t, python3.13t and python3 in PATH, and Debian's
// /usr/bin/python3.
func Candidates() []string {
	var list []string
	if p := os.Getenv("SLITHER_PYTHON"); p != "" {
		list = append(list, p)
	}
	if home, err := os.UserHomeDir(); err == nil {
		for _, v := range []string{"3.14", "3.13"} {
			list = append(list, filepath.Join(home, ".cache", "slither", "cpython-"+v+"t", "bin", "python"+v+"t"))
		}
	}
	for _, name := range []string{"python3.14t", "python3.13t", "python3"} {
		if p, err := exec.LookPath(name); err == nil {
			list = append(list, p)
		}
	}
	list = append(list, "/usr/bin/python3")
	seen := map[string]bool{}
	var out []string
	for _, p := range list {
		real, err := filepath.EvalSymlinks(p)
		if err != nil {
			continue // not there
		}
		if st, err := os.Stat(real); err != nil || st.IsDir() || seen[real] {
			continue
		}
		seen[real] = true
		out = append(out, p)
	}
	return out
}

// ModuleCheck classifies one module on one interpreter.
type ModuleCheck struct {
	Module      string `json:"module"`
	Interpreter string `json:"interpreter"`
	Importable  bool   `json:"importable"`
	Error       string `json:"error,omitempty"`
	// GILBefore and GILAfter are the GIL state before and after the import.
	GILBefore bool `json:"gil_before"`
	GILAfter  bool `json:"gil_after"`
	// EnabledBy names the module CPython said it re-enabled the GIL for.
	EnabledBy string `json:"enabled_by,omitempty"`
	// Speedup is how much faster two threads ran a pure-Python loop than
	// one, after the import (0 when not measured: fewer than 2 CPUs).
	Speedup float64 `json:"speedup"`
	// Scales is Speedup >= 1.5.
	Scales bool `json:"scales"`
}

// Verdict sums the check up in a few words.
func (c ModuleCheck) Verdict() string {
	switch {
	case !c.Importable:
		return "not importable"
	case !c.GILBefore && c.GILAfter:
		return "re-enables the GIL"
	case c.GILAfter:
		return "importable (GIL build)"
	case c.Scales:
		return "keeps the GIL off, scales"
	case c.Speedup == 0:
		return "keeps the GIL off"
	default:
		return "keeps the GIL off, does not scale"
	}
}

const checkScript = `import importlib, json, re, sys, threading, time, warnings
mod = sys.argv[1]
on = lambda: bool(sys._is_gil_enabled()) if hasattr(sys, "_is_gil_enabled") else True
res = {"module": mod, "gil_before": on(), "importable": False}
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    try:
        importlib.import_module(mod)
        res["importable"] = True
    except BaseException as e:
        res["error"] = f"{type(e).__name__}: {e}"
res["gil_after"] = on()
for w in caught:
    m = re.search(r"has been enabled to load module '([^']+)'", str(w.message))
    if m:
        res["enabled_by"] = m.group(1)
        break
def spin(n):
    x = 0
    for i in range(n):
        x += i ^ (x & 7)
def timed(threads, n):
    ts = [threading.Thread(target=spin, args=(n,)) for _ in range(threads)]
    t = time.perf_counter()
    for th in ts: th.start()
    for th in ts: th.join()
    return time.perf_counter() - t
res["speedup"] = 0.0
if res["importable"] and (len(__import__("os").sched_getaffinity(0)) >= 2):
    n = 100000
    while timed(1, n) < 0.1:
        n *= 2
    ones, twos = [], []
    for _ in range(5):  # interleaved; the least disturbed run of each counts
        ones.append(timed(1, n))
        twos.append(timed(2, n))
    res["speedup"] = round(2 * min(ones) / min(twos), 2)
print(json.dumps(res))`

// CheckModule imports module in a fresh subprocess of python (with extra
// sys.path entries from paths), reports whether the import re-enabled the
// GIL and which module CPython named, and times a short threaded smoke run
// to tell whether threads still scale.
func CheckModule(ctx context.Context, python, module string, paths ...string) ModuleCheck {
	c := ModuleCheck{Module: module, Interpreter: python}
	if err := runScript(ctx, 2*time.Minute, python, checkScript, paths, &c, module); err != nil {
		c.Error = err.Error()
		return c
	}
	c.Interpreter = python
	c.Scales = c.Speedup >= 1.5
	return c
}

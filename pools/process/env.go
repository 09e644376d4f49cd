package process

import (
	"fmt"
	"os"
	"strings"
)

// inheritedEnv reports whether a variable of this process reaches the
// workers by default: what a Python program needs to find its tools, home,
// locale, time zone, temporary directory and shared libraries, and
// Slither's own settings. Credentials and the like stay behind unless
// Options.Env names them or Options.InheritEnv is set.
func inheritedEnv(key string) bool {
	switch key {
	case "PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR",
		// A Python built with --enable-shared outside the loader's default
		// paths finds its libpython only through it.
		"LD_LIBRARY_PATH":
		return true
	}
	return strings.HasPrefix(key, "LC_") || strings.HasPrefix(key, "SLITHER_")
}

// workerSettings are the variables the pool sets for every worker; the
// same names from elsewhere are dropped.
var workerSettings = map[string]bool{
	"SLITHER_WORKER_FDS": true, "SLITHER_WORKER_ID": true, "SLITHER_WORKER_THREADS": true,
	"SLITHER_WORKER_PRELOAD": true, "SLITHER_WORKER_MAX_FRAME": true,
	"PYTHONUNBUFFERED": true, "PYTHONSAFEPATH": true,
}

// workerEnv builds the workers' environment: this process's variables that
// inheritedEnv admits (all of them with inherit), then extra (KEY=VALUE,
// overriding), with PYTHONPATH led by paths and the worker's settings last.
func workerEnv(inherit bool, extra []string, paths []string, threads int, preload []string, maxFrame int) []string {
	var base []string
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); inherit || inheritedEnv(k) {
			base = append(base, kv)
		}
	}
	vars := map[string]string{}
	var order []string
	for _, kv := range append(base, extra...) {
		k, v, _ := strings.Cut(kv, "=")
		if _, seen := vars[k]; !seen {
			order = append(order, k)
		}
		vars[k] = v
	}
	pythonPath := strings.Join(paths, string(os.PathListSeparator))
	env := make([]string, 0, len(order)+8)
	for _, k := range order {
		v := vars[k]
		switch {
		case k == "PYTHONPATH":
			if v != "" {
				pythonPath += string(os.PathListSeparator) + v
			}
		case !workerSettings[k]:
			env = append(env, k+"="+v)
		}
	}
	return append(env,
		"PYTHONPATH="+pythonPath,
		"PYTHONUNBUFFERED=1", // worker output reaches the log as it is written
		// -m would put the working directory first on sys.path, where a
		// stray json.py would shadow the standard library's (Python >= 3.11
		// honours this; -I would also drop PYTHONPATH, which the pool needs).
		"PYTHONSAFEPATH=1",
		"SLITHER_WORKER_FDS=3,4,5",
		fmt.Sprintf("SLITHER_WORKER_THREADS=%d", threads),
		"SLITHER_WORKER_PRELOAD="+strings.Join(preload, ","),
		fmt.Sprintf("SLITHER_WORKER_MAX_FRAME=%d", maxFrame),
	)
}

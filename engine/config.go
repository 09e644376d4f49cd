package engine

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/slither-go/slither/store"
	"github.com/slither-go/slither/telemetry"
)

// Config says what the engine starts. The zero value is a working default
// (see the package doc). Fields tagged yaml can come from a file
// (LoadConfig) and from the environment (ApplyEnv); stores, telemetry and
// the logger are Go-only.
type Config struct {
	// Thread configures the embedded thread pool.
	Thread ThreadConfig `yaml:"thread"`
	// Process names the process pools; empty means one, "default".
	Process map[string]ProcessConfig `yaml:"process"`
	// Paths are added to every pool's Python path.
	Paths []string `yaml:"paths"`
	// ThreadSafe declares Python functions safe for the thread pool from Go
	// (as @slither.thread_safe does in Python).
	ThreadSafe []Function `yaml:"thread_safe"`

	Stores    []store.Definition `yaml:"-"`
	Telemetry *telemetry.Bus     `yaml:"-"`
	Logger    *slog.Logger       `yaml:"-"`
}

// Function names a Python function.
type Function struct {
	Module   string `yaml:"module"`
	Function string `yaml:"function"`
}

// ThreadConfig configures the embedded pool.
type ThreadConfig struct {
	// Workers; 0 means one per usable core.
	Workers int `yaml:"workers"`
	// Disabled runs without the embedded pool (everything in processes).
	Disabled bool `yaml:"disabled"`
	// Required makes Start fail when the embedded pool cannot start (a
	// build without cgo, no free-threaded libpython), instead of going on
	// with process pools only.
	Required bool     `yaml:"required"`
	Paths    []string `yaml:"paths"`
}

// ProcessConfig configures one process pool (see process.Options).
type ProcessConfig struct {
	Python           string        `yaml:"python"`
	Workers          int           `yaml:"workers"`
	ThreadsPerWorker int           `yaml:"threads_per_worker"`
	Paths            []string      `yaml:"paths"`
	Env              []string      `yaml:"env"`
	Preload          []string      `yaml:"preload"`
	CallTimeout      time.Duration `yaml:"call_timeout"`
	MaxCalls         int           `yaml:"max_calls"`
	MaxRSSMB         int           `yaml:"max_rss_mb"`
	MaxAge           time.Duration `yaml:"max_age"`
}

func (c Config) validate() error {
	var errs []error
	if c.Thread.Workers < 0 {
		errs = append(errs, fmt.Errorf("thread.workers is %d", c.Thread.Workers))
	}
	if c.Thread.Disabled && c.Thread.Required {
		errs = append(errs, errors.New("thread.disabled and thread.required are both set"))
	}
	for name, p := range c.Process {
		if name == "" {
			errs = append(errs, errors.New("a process pool has an empty name"))
		}
		if p.Workers < 0 || p.ThreadsPerWorker < 0 || p.MaxCalls < 0 || p.MaxRSSMB < 0 || p.CallTimeout < 0 || p.MaxAge < 0 {
			errs = append(errs, fmt.Errorf("process pool %q has a negative setting", name))
		}
	}
	for _, f := range c.ThreadSafe {
		if f.Module == "" || f.Function == "" {
			errs = append(errs, fmt.Errorf("thread_safe entry %+v needs a module and a function", f))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("engine: invalid config: %w", errors.Join(errs...))
	}
	return nil
}

// LoadConfig reads a YAML file into a Config, then applies the environment
// (ApplyEnv). Unknown keys are an error, so a typo does not pass silently.
func LoadConfig(path string) (Config, error) {
	var c Config
	f, err := os.Open(path)
	if err != nil {
		return c, fmt.Errorf("engine: config: %w", err)
	}
	defer f.Close()
	dec := yaml.NewDecoder(f)
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		return c, fmt.Errorf("engine: config %s: %w", path, err)
	}
	if err := c.ApplyEnv(os.Environ()); err != nil {
		return c, err
	}
	return c, c.validate()
}

// ApplyEnv overrides settings from variables, so a service can size its
// pools without recompiling:
//
//	SLITHER_THREAD_WORKERS=8         SLITHER_THREAD_DISABLED=1
//	SLITHER_POOL_<NAME>_WORKERS=4    SLITHER_POOL_<NAME>_PYTHON=/usr/bin/python3
//	SLITHER_POOL_<NAME>_THREADS=2    SLITHER_POOL_<NAME>_CALL_TIMEOUT=30s
//
// <NAME> is the pool's name in upper case ("DEFAULT" for the default one).
func (c *Config) ApplyEnv(environ []string) error {
	var errs []error
	atoi := func(k, v string) int {
		n, err := strconv.Atoi(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s=%q: not a number", k, v))
		}
		return n
	}
	for _, kv := range environ {
		k, v, _ := strings.Cut(kv, "=")
		switch {
		case k == "SLITHER_THREAD_WORKERS":
			c.Thread.Workers = atoi(k, v)
		case k == "SLITHER_THREAD_DISABLED":
			c.Thread.Disabled = v == "1" || strings.EqualFold(v, "true")
		case strings.HasPrefix(k, "SLITHER_POOL_"):
			rest := strings.TrimPrefix(k, "SLITHER_POOL_")
			var name, field string
			for _, f := range []string{"_WORKERS", "_PYTHON", "_THREADS", "_CALL_TIMEOUT"} {
				if n, ok := strings.CutSuffix(rest, f); ok {
					name, field = strings.ToLower(n), f
					break
				}
			}
			if name == "" {
				errs = append(errs, fmt.Errorf("%s: unknown setting (want _WORKERS, _PYTHON, _THREADS or _CALL_TIMEOUT)", k))
				continue
			}
			if c.Process == nil {
				c.Process = map[string]ProcessConfig{}
			}
			p := c.Process[name]
			switch field {
			case "_WORKERS":
				p.Workers = atoi(k, v)
			case "_THREADS":
				p.ThreadsPerWorker = atoi(k, v)
			case "_PYTHON":
				p.Python = v
			case "_CALL_TIMEOUT":
				d, err := time.ParseDuration(v)
				if err != nil {
					errs = append(errs, fmt.Errorf("%s=%q: %w", k, v, err))
				}
				p.CallTimeout = d
			}
			c.Process[name] = p
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("engine: environment: %w", errors.Join(errs...))
	}
	return nil
}

// DefaultPython is the interpreter process pools run when none is
// configured: SLITHER_PYTHON, else the free-threaded build in the default
// cache (make python), else python3.
func DefaultPython() string {
	if p := os.Getenv("SLITHER_PYTHON"); p != "" {
		return p
	}
	if home, err := os.UserHomeDir(); err == nil {
		p := filepath.Join(home, ".cache", "slither", "cpython-3.13t", "bin", "python3.13t")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return "python3"
}

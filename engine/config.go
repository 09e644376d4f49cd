package engine

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel/trace"
	"go.yaml.in/yaml/v3"

	"github.com/slither-go/slither/internal/pybuild"
	"github.com/slither-go/slither/internal/pyvenv"
	"github.com/slither-go/slither/monitor"
	"github.com/slither-go/slither/pools"
	"github.com/slither-go/slither/pools/process"
	"github.com/slither-go/slither/pools/remote"
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
	// Venv is a virtual environment made from the free-threaded build
	// (python3.13t -m venv DIR; env SLITHER_VENV): the embedded interpreter
	// runs in it (sys.prefix is DIR, its site-packages and .pth files are
	// on sys.path) and a process pool whose Python is empty runs
	// DIR/bin/python. A venv made from another Python than the embedded one
	// fails Start (pyvenv.ErrMismatch), as does a venv other than the one
	// the process's interpreter already runs (it starts once per process).
	Venv string `yaml:"venv"`
	// ThreadSafe declares Python functions safe for the thread pool from Go
	// (as @slither.thread_safe does in Python).
	ThreadSafe []Function `yaml:"thread_safe"`
	// Routes fixes where Auto sends a function, by "module.function":
	// "thread", "process" or "auto" (the default: the faster safe pool, as
	// measured). It wins over the measured costs, not over safety: "thread"
	// is followed only while the function may run on threads (declared
	// thread-safe, GIL off); see pools.Router.Prefer. A batch's own Route
	// wins over it.
	Routes map[string]string `yaml:"routes"`
	// HTTP serves the engine's monitor (Prometheus metrics, the dashboard
	// page, its JSON state) on an address of its own; off by default.
	// Engine.Handler serves the same for a program that mounts it on its
	// own server instead.
	HTTP HTTPConfig `yaml:"http"`
	// NATS is the connection remote pools use (env SLITHER_NATS_URL,
	// SLITHER_NATS_<SETTING>, SLITHER_NATS_TLS_<SETTING>). Its URL is
	// required when Remote names a pool; the engine connects only then.
	NATS remote.ConnOptions `yaml:"nats"`
	// Remote names the remote pools: batches published over NATS
	// JetStream and run by `slither node` processes that serve a pool of
	// that name. A name must differ from every process pool's (the
	// implied "default" one included); Engine.Pool(name) returns it.
	Remote map[string]RemoteConfig `yaml:"remote"`

	// Host, when set, answers the Python host calls and views
	// (slither.host_call, slither.view) of every pool the engine starts,
	// instead of the engine's own view registry: a node sets it to
	// forward them to the engine that coordinates the batch.
	Host pools.HostFunc `yaml:"-"`

	Stores    []store.Definition `yaml:"-"`
	Telemetry *telemetry.Bus     `yaml:"-"`
	Logger    *slog.Logger       `yaml:"-"`
	// TracerProvider makes the OpenTelemetry spans of dispatches and
	// pipeline runs (when their own options name none); nil means
	// otel.GetTracerProvider(), a no-op unless the program installed one.
	TracerProvider trace.TracerProvider `yaml:"-"`
}

// HTTPConfig is where the engine serves its monitor (env SLITHER_HTTP_ADDR,
// SLITHER_HTTP_TOKEN).
type HTTPConfig struct {
	// Addr is the address to listen on, e.g. "127.0.0.1:9090"; empty
	// means no server. A host-less address (":9090") binds 127.0.0.1
	// only; ":0" picks a free port (see Engine.HTTPAddr).
	Addr string `yaml:"addr"`
	// Token, when set, is required of every request (Authorization:
	// Bearer TOKEN, or ?token=TOKEN in a browser). Without one only
	// loopback clients are served, and an Addr whose host is not a
	// loopback address is a configuration error.
	Token string `yaml:"token"`
}

// listenAddr is the address to bind: a host-less Addr gets 127.0.0.1.
func (h HTTPConfig) listenAddr() (string, error) {
	host, port, err := net.SplitHostPort(h.Addr)
	if err != nil {
		return "", fmt.Errorf("http.addr %q: %w (want HOST:PORT or :PORT)", h.Addr, err)
	}
	if host == "" {
		host = "127.0.0.1"
	}
	if h.Token == "" && !monitor.Loopback(host) {
		return "", fmt.Errorf("http.addr %q listens beyond this machine and http.token is empty: set a token, or listen on 127.0.0.1", h.Addr)
	}
	return net.JoinHostPort(host, port), nil
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
	// MaxSessions bounds the sessions open on the embedded pool at once
	// (thread.Options.MaxSessions; 0 means its default).
	MaxSessions int `yaml:"max_sessions"`
	// Mode is "direct" (the default when empty: the goroutine that submits
	// runs the batch on its own OS thread) or "dedicated" (worker threads
	// of the pool's own, for thread-affine libraries); see
	// thread.Options.Mode.
	Mode string `yaml:"mode"`
	// Alloc allocates the Go memory of large bytes results
	// (thread.Options.Alloc), for programs that recycle their buffers; Go
	// only. Nil means make.
	Alloc func(n int) []byte `yaml:"-"`
}

// Thread pool modes of [ThreadConfig.Mode].
const (
	ThreadDirect    = "direct"
	ThreadDedicated = "dedicated"
)

// ProcessConfig configures one process pool; each field maps to the
// process.Options field of the same name (zero means that field's
// default).
type ProcessConfig struct {
	// Python is the interpreter the workers run, or a virtualenv directory
	// (one holding pyvenv.cfg: its bin/python runs, e.g. a GIL venv made
	// with python3 -m venv for a GIL process pool). Empty: Config.Venv's
	// interpreter when set, else [DefaultPython].
	Python           string   `yaml:"python"`
	Workers          int      `yaml:"workers"`
	ThreadsPerWorker int      `yaml:"threads_per_worker"`
	Paths            []string `yaml:"paths"`
	// Env adds KEY=VALUE variables to the workers' small default
	// environment; InheritEnv starts from all of this process's instead.
	Env         []string      `yaml:"env"`
	InheritEnv  bool          `yaml:"inherit_env"`
	Dir         string        `yaml:"dir"`
	Preload     []string      `yaml:"preload"`
	CallTimeout time.Duration `yaml:"call_timeout"`
	MaxCalls    int           `yaml:"max_calls"`
	MaxRSSMB    int           `yaml:"max_rss_mb"`
	MaxAge      time.Duration `yaml:"max_age"`
	// StartTimeout bounds a worker's start; StopGrace is how long Close
	// waits for a worker at each step before the next signal.
	StartTimeout time.Duration `yaml:"start_timeout"`
	StopGrace    time.Duration `yaml:"stop_grace"`
	// More than MaxRestarts crashes within RestartWindow open the pool's
	// breaker for RestartBackoff (doubling while starts keep failing).
	MaxRestarts    int           `yaml:"max_restarts"`
	RestartWindow  time.Duration `yaml:"restart_window"`
	RestartBackoff time.Duration `yaml:"restart_backoff"`
	// MaxFrame bounds one message between the pool and a worker, in bytes.
	MaxFrame int `yaml:"max_frame"`
}

// options maps the configuration onto process.Options (the fields it does
// not set are the engine's: Host, Telemetry, Logger).
func (pc ProcessConfig) options(shared []string) process.Options {
	return process.Options{
		Python: pc.Python, Workers: pc.Workers, ThreadsPerWorker: pc.ThreadsPerWorker,
		Paths: append(slices.Clone(shared), pc.Paths...), Env: pc.Env, InheritEnv: pc.InheritEnv, Dir: pc.Dir,
		Preload: pc.Preload, CallTimeout: pc.CallTimeout, MaxCalls: pc.MaxCalls, MaxRSSMB: pc.MaxRSSMB, MaxAge: pc.MaxAge,
		StartTimeout: pc.StartTimeout, StopGrace: pc.StopGrace,
		MaxRestarts: pc.MaxRestarts, RestartWindow: pc.RestartWindow, RestartBackoff: pc.RestartBackoff,
		MaxFrame: pc.MaxFrame,
	}
}

// validateNamed checks the names and settings of one kind of named pools:
// not empty, not alike but for case (their variables, prefix+NAME_*,
// could not tell them apart), no negative setting.
func validateNamed[T any](kind, prefix string, m map[string]T) []error {
	var errs []error
	upper := map[string]string{}
	for _, name := range slices.Sorted(maps.Keys(m)) {
		if name == "" {
			errs = append(errs, fmt.Errorf("a %s has an empty name", kind))
		}
		if other, dup := upper[strings.ToUpper(name)]; dup {
			errs = append(errs, fmt.Errorf("%ss %q and %q differ only in case (%s%s_* could not tell them apart)",
				kind, other, name, prefix, strings.ToUpper(name)))
		}
		upper[strings.ToUpper(name)] = name
		for _, f := range envFields(reflect.ValueOf(m[name])) {
			if f.negative() {
				errs = append(errs, fmt.Errorf("%s %q: %s is negative", kind, name, f.key))
			}
		}
	}
	return errs
}

func (c Config) validate() error {
	var errs []error
	if c.Thread.Workers < 0 {
		errs = append(errs, fmt.Errorf("thread.workers is %d", c.Thread.Workers))
	}
	if c.Thread.Disabled && c.Thread.Required {
		errs = append(errs, errors.New("thread.disabled and thread.required are both set"))
	}
	switch c.Thread.Mode {
	case "", ThreadDirect, ThreadDedicated:
	default:
		errs = append(errs, fmt.Errorf("thread.mode is %q; want %q or %q", c.Thread.Mode, ThreadDirect, ThreadDedicated))
	}
	errs = append(errs, validateNamed("process pool", poolEnvPrefix, c.Process)...)
	errs = append(errs, c.validateRemote()...)
	if c.HTTP.Addr != "" {
		if _, err := c.HTTP.listenAddr(); err != nil {
			errs = append(errs, err)
		}
	}
	for _, f := range c.ThreadSafe {
		if f.Module == "" || f.Function == "" {
			errs = append(errs, fmt.Errorf("thread_safe entry %+v needs a module and a function", f))
		}
	}
	for _, name := range slices.Sorted(maps.Keys(c.Routes)) {
		if _, _, err := c.route(name); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("engine: invalid config: %w", errors.Join(errs...))
	}
	return nil
}

// route reads one entry of Routes: its function and route.
func (c Config) route(name string) (Function, pools.Route, error) {
	i := strings.LastIndexByte(name, '.')
	if i <= 0 || i == len(name)-1 {
		return Function{}, pools.Auto, fmt.Errorf("routes: %q is not module.function", name)
	}
	r, err := pools.ParseRoute(c.Routes[name])
	if err != nil {
		return Function{}, pools.Auto, fmt.Errorf("routes: %s: %q is not a route (auto, thread or process)", name, c.Routes[name])
	}
	return Function{Module: name[:i], Function: name[i+1:]}, r, nil
}

// MaxConfigSize bounds a configuration file: a config is a few lines, and a
// larger input is a mistake (or an attack on the parser).
const MaxConfigSize = 1 << 20

// LoadConfig reads a YAML file with [ParseConfig], then applies the
// environment ([Config.ApplyEnv]) and validates the result.
func LoadConfig(path string) (Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return Config{}, fmt.Errorf("engine: config: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxConfigSize+1))
	if err != nil {
		return Config{}, fmt.Errorf("engine: config %s: %w", path, err)
	}
	c, err := ParseConfig(b)
	if err != nil {
		return c, fmt.Errorf("engine: config %s: %w", path, err)
	}
	if err := c.ApplyEnv(os.Environ()); err != nil {
		return c, err
	}
	return c, c.validate()
}

// ParseConfig reads one YAML document into a validated Config (the
// environment is not applied). Unknown keys, a second document and input
// over MaxConfigSize are errors, so a typo does not pass silently.
func ParseConfig(data []byte) (Config, error) {
	var c Config
	if len(data) > MaxConfigSize {
		return c, fmt.Errorf("engine: config is over %d bytes", MaxConfigSize)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
		return Config{}, fmt.Errorf("engine: config: %w", err)
	}
	var more yaml.Node
	if err := dec.Decode(&more); !errors.Is(err, io.EOF) {
		return Config{}, errors.New("engine: config: more than one YAML document")
	}
	return c, c.validate()
}

// ApplyEnv overrides settings from variables, so a service can size its
// pools without recompiling:
//
//	SLITHER_THREAD_WORKERS=8         SLITHER_THREAD_DISABLED=1
//	SLITHER_POOL_<NAME>_WORKERS=4    SLITHER_POOL_<NAME>_PYTHON=/usr/bin/python3
//	SLITHER_POOL_<NAME>_THREADS=2    SLITHER_POOL_<NAME>_CALL_TIMEOUT=30s
//	SLITHER_VENV=/srv/app/.venv
//	SLITHER_HTTP_ADDR=:9090          SLITHER_HTTP_TOKEN=secret
//	SLITHER_NATS_URL=nats://nats:4222 SLITHER_NATS_CREDS_FILE=/etc/slither/app.creds
//	SLITHER_NATS_TLS_CA_FILE=/etc/ssl/nats-ca.pem
//	SLITHER_REMOTE_<NAME>_MAX_IN_FLIGHT=64 SLITHER_REMOTE_<NAME>_ACK_WAIT=1m
//
// <NAME> is the name, in upper case, of a process pool the config already
// has ("DEFAULT" for the default one when it names none), or of a remote
// pool it has; a setting is any scalar key of [ThreadConfig],
// [ProcessConfig] or [RemoteConfig] in upper case
// (SLITHER_POOL_DEFAULT_MAX_RESTARTS, SLITHER_THREAD_REQUIRED, ...;
// THREADS is short for THREADS_PER_WORKER). Lists are set in the file only.
// SLITHER_HTTP_<KEY> sets a key of [HTTPConfig], SLITHER_NATS_<KEY> one of
// the nats section ([remote.ConnOptions]) and SLITHER_NATS_TLS_<KEY> one of
// its tls. A SLITHER_THREAD_*, SLITHER_POOL_*, SLITHER_REMOTE_*,
// SLITHER_HTTP_* or SLITHER_NATS_* variable that names no pool or no
// setting is an error naming it and what is valid, never a new pool. The
// scalar keys of Config itself are SLITHER_<KEY> (SLITHER_VENV); other
// SLITHER_* variables (SLITHER_PYTHON) are left to their own readers.
func (c *Config) ApplyEnv(environ []string) error {
	var errs []error
	top := envFields(reflect.ValueOf(c).Elem())
	// Longest prefix first: SLITHER_NATS_TLS_ before SLITHER_NATS_.
	sections := []struct {
		prefix string
		v      reflect.Value
	}{
		{"SLITHER_THREAD_", reflect.ValueOf(&c.Thread).Elem()},
		{"SLITHER_HTTP_", reflect.ValueOf(&c.HTTP).Elem()},
		{"SLITHER_NATS_TLS_", reflect.ValueOf(&c.NATS.TLS).Elem()},
		{"SLITHER_NATS_", reflect.ValueOf(&c.NATS).Elem()},
	}
	for _, kv := range environ {
		k, v, _ := strings.Cut(kv, "=")
		switch {
		case strings.HasPrefix(k, "SLITHER_") && top[strings.TrimPrefix(k, "SLITHER_")].v.IsValid():
			errs = append(errs, top[strings.TrimPrefix(k, "SLITHER_")].set(k, v))
			continue
		case strings.HasPrefix(k, poolEnvPrefix):
			var implied []string
			if len(c.Process) == 0 {
				implied = []string{DefaultPool}
			}
			errs = append(errs, applyNamedEnv(k, v, poolEnvPrefix, "process pool", &c.Process, implied))
			continue
		case strings.HasPrefix(k, remoteEnvPrefix):
			errs = append(errs, applyNamedEnv(k, v, remoteEnvPrefix, "remote pool", &c.Remote, nil))
			continue
		}
		for _, sec := range sections {
			if !strings.HasPrefix(k, sec.prefix) {
				continue
			}
			fields := envFields(sec.v)
			if f, ok := fields[strings.TrimPrefix(k, sec.prefix)]; ok {
				errs = append(errs, f.set(k, v))
			} else {
				errs = append(errs, fmt.Errorf("%s: unknown setting (%s<SETTING>, settings: %s)", k, sec.prefix, settingNames(fields)))
			}
			break
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("engine: environment: %w", err)
	}
	return nil
}

// The variable prefixes of named pools: prefix + NAME + "_" + SETTING.
const (
	poolEnvPrefix   = "SLITHER_POOL_"
	remoteEnvPrefix = "SLITHER_REMOTE_"
)

// applyNamedEnv sets one setting of a named pool in *m from the variable
// k=v (prefix + NAME + "_" + SETTING). The pool must be in *m, or be one of
// implied (a pool the engine starts though the config names none); a
// variable never adds a pool of a new name.
func applyNamedEnv[T any](k, v, prefix, kind string, m *map[string]T, implied []string) error {
	names := slices.Sorted(maps.Keys(*m))
	if len(names) == 0 {
		names = implied
	}
	rest := strings.TrimPrefix(k, prefix)
	var zero T
	settings := settingNames(envFields(reflect.ValueOf(&zero).Elem()))
	var match string
	for _, n := range names { // the longest name wins: "a" and "a_b" both prefix A_B_WORKERS
		if strings.HasPrefix(rest, strings.ToUpper(n)+"_") && len(n) > len(match) {
			match = n
		}
	}
	if match == "" {
		upper := make([]string, len(names))
		for i, n := range names {
			upper[i] = strings.ToUpper(n)
		}
		list := strings.Join(upper, ", ")
		if list == "" {
			list = "none"
		}
		return fmt.Errorf("%s: names no configured %s (%s<NAME>_<SETTING>, names: %s; settings: %s)",
			k, kind, prefix, list, settings)
	}
	if *m == nil {
		*m = map[string]T{}
	}
	p := (*m)[match]
	fields := envFields(reflect.ValueOf(&p).Elem())
	f, ok := fields[strings.TrimPrefix(rest, strings.ToUpper(match)+"_")]
	if !ok {
		return fmt.Errorf("%s: unknown setting for %s %q (settings: %s)", k, kind, match, settings)
	}
	if err := f.set(k, v); err != nil {
		return err
	}
	(*m)[match] = p
	return nil
}

// envField is one scalar setting of a config struct, addressed by its YAML
// key in upper case.
type envField struct {
	key string // the YAML key
	v   reflect.Value
}

var durationType = reflect.TypeFor[time.Duration]()

// envAliases are extra variable names for settings, kept from older
// releases.
var envAliases = map[string]string{"threads_per_worker": "THREADS"}

// envFields lists the scalar fields of the struct v (settable when v is
// addressable) by variable suffix: the YAML key in upper case.
func envFields(v reflect.Value) map[string]envField {
	out := map[string]envField{}
	for i := range v.NumField() {
		key, _, _ := strings.Cut(v.Type().Field(i).Tag.Get("yaml"), ",")
		fv := v.Field(i)
		switch fv.Kind() {
		case reflect.String, reflect.Bool, reflect.Int, reflect.Int64:
		default:
			continue // lists and maps: in the file only
		}
		if key == "" || key == "-" {
			continue
		}
		out[strings.ToUpper(key)] = envField{key, fv}
		if a, ok := envAliases[key]; ok {
			out[a] = envField{key, fv}
		}
	}
	return out
}

func settingNames(fields map[string]envField) string {
	return strings.Join(slices.Sorted(maps.Keys(fields)), ", ")
}

func (f envField) negative() bool {
	return (f.v.Kind() == reflect.Int || f.v.Kind() == reflect.Int64) && f.v.Int() < 0
}

// set parses v into the field; the error names the variable.
func (f envField) set(k, v string) error {
	switch {
	case f.v.Type() == durationType:
		d, err := time.ParseDuration(v)
		if err != nil {
			return fmt.Errorf("%s=%q: not a duration (e.g. 30s, 1m30s)", k, v)
		}
		f.v.SetInt(int64(d))
	case f.v.Kind() == reflect.Int || f.v.Kind() == reflect.Int64:
		n, err := strconv.ParseInt(v, 10, f.v.Type().Bits())
		if err != nil {
			return fmt.Errorf("%s=%q: not a number", k, v)
		}
		f.v.SetInt(n)
	case f.v.Kind() == reflect.Bool:
		b, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("%s=%q: not a boolean (1, true, 0 or false)", k, v)
		}
		f.v.SetBool(b)
	default:
		f.v.SetString(v)
	}
	return nil
}

// processPython is the interpreter a process pool runs: pc.Python (a
// venv directory stands for its bin/python), else the venv's, else
// [DefaultPython].
func (c Config) processPython(pc ProcessConfig) string {
	venv := c.Venv
	switch {
	case pc.Python != "" && pyvenv.Is(pc.Python):
		venv = pc.Python
	case pc.Python != "":
		return pc.Python
	case venv == "":
		return DefaultPython()
	}
	// Absolute: the workers may start in another directory (Dir).
	if abs, err := filepath.Abs(venv); err == nil {
		venv = abs
	}
	return filepath.Join(venv, "bin", "python")
}

// DefaultPython is the interpreter process pools run when none is
// configured: SLITHER_PYTHON, else the interpreter of the runtime bundle
// whose libpython this process loaded (slither python bundle), else the free-threaded build
// in the default cache (slither python install), else python3.
func DefaultPython() string {
	if p := os.Getenv("SLITHER_PYTHON"); p != "" {
		return p
	}
	// A deployed program runs its bundle's Python, never a build cache's.
	if p, ok := pybuild.BundledPython(); ok {
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

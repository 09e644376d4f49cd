//go:build cgo

package cpython

/*
#cgo pkg-config: python3-embed
#cgo LDFLAGS: -ldl
#include <stdlib.h>
#include "shim.h"
*/
import "C"

import (
	_ "embed"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/slither-go/slither/internal/pyvenv"
)

// startup is run once right after initialization (see startup.py): it makes
// multiprocessing spawn rather than fork the Go process.
//
//go:embed startup.py
var startup string

// GILMode chooses whether a free-threaded interpreter runs with its GIL.
type GILMode int

const (
	// GILDefault follows PYTHON_GIL from the environment when it is "0" or
	// "1" (the isolated configuration would otherwise ignore it), and else
	// the build's default: off for a free-threaded build.
	GILDefault GILMode = iota
	// GILOff forces the GIL off (PYTHON_GIL=0): an extension that does not
	// declare free-threading support can no longer turn it back on.
	GILOff
	// GILOn forces the GIL on, as a GIL build would run.
	GILOn
)

// Config says where the Python installation lives. The zero value derives
// everything from the libpython the program was linked against.
type Config struct {
	// Home is the installation prefix (sys.prefix). Default: the directory
	// above the one holding the loaded libpython.
	Home string
	// Executable is the interpreter binary that sys.executable names, so that
	// multiprocessing and subprocess start a real Python, never the Go
	// program. Default: Home/bin/python3.X[t].
	Executable string
	// Venv is a virtual environment made from this same interpreter
	// (python3.13t -m venv DIR): sys.prefix becomes DIR, sys.base_prefix
	// stays Home, its site-packages (with their .pth files) are on sys.path
	// and the base installation's are not (unless the venv includes system
	// site packages), and Executable defaults to DIR/bin/python. A venv made
	// from another Python is an error wrapping [pyvenv.ErrMismatch].
	Venv string
	// Paths are extra sys.path entries, appended after the standard library.
	Paths []string
	// GIL applies to free-threaded builds only.
	GIL GILMode
}

// Runtime is the process's one embedded interpreter. It is initialized once
// by [Init] and never finalized: a Go program cannot safely tear down and
// re-create CPython. All methods are safe for concurrent use.
type Runtime struct {
	home, executable string
	venv             string // "" without one
	version          string
	freeThreaded     bool
	main             *C.PyThreadState // Python's main thread state, used only by serve
	reqs             chan func()
	imports          *uint64 // the C audit hook's import counter (C memory)

	mu    sync.Mutex
	paths map[string]bool
}

var (
	initMu  sync.Mutex
	theRT   *Runtime
	initErr error
)

// Init starts the embedded interpreter on first use and returns it. Later
// calls return the same Runtime and add cfg.Paths to sys.path; a later call
// naming a different Home, Executable or Venv fails (for Venv, wrapping
// [pyvenv.ErrMismatch]): the interpreter is initialized once per process.
// If the first initialization failed, every later call returns that
// error: CPython cannot be initialized twice in one process.
//
// Init dedicates one OS thread, locked for the life of the process, to be
// Python's main thread; it also serves the runtime-wide queries below.
func Init(cfg Config) (*Runtime, error) {
	initMu.Lock()
	defer initMu.Unlock()
	if initErr != nil {
		return nil, initErr
	}
	if theRT == nil {
		rt, err := start(cfg)
		if err != nil {
			// Only a failed initialization of CPython itself is for good;
			// a bad Config found before it (a wrong venv or home) can be
			// fixed and tried again.
			var early *notStartedError
			if errors.As(err, &early) {
				return nil, early.err
			}
			initErr = err
			return nil, err
		}
		theRT = rt
	} else {
		if cfg.Home != "" && filepath.Clean(cfg.Home) != theRT.home {
			return nil, fmt.Errorf("cpython: already initialized with home %s, not %s", theRT.home, cfg.Home)
		}
		if cfg.Venv != "" {
			if abs, err := filepath.Abs(cfg.Venv); err != nil || filepath.Clean(abs) != theRT.venv {
				was := theRT.venv
				if was == "" {
					was = "no venv"
				}
				return nil, fmt.Errorf("cpython: %w: the interpreter (once per process) already runs with %s, not venv %s",
					pyvenv.ErrMismatch, was, cfg.Venv)
			}
		}
		if cfg.Executable != "" && cfg.Executable != theRT.executable {
			return nil, fmt.Errorf("cpython: already initialized with executable %s, not %s", theRT.executable, cfg.Executable)
		}
	}
	if err := theRT.AddPaths(cfg.Paths...); err != nil {
		return nil, err
	}
	return theRT, nil
}

// notStartedError is an error of start found before CPython was touched.
type notStartedError struct{ err error }

func (e *notStartedError) Error() string { return e.err.Error() }
func (e *notStartedError) Unwrap() error { return e.err }

func notStarted(err error) error { return &notStartedError{err} }

func start(cfg Config) (*Runtime, error) {
	rt := &Runtime{
		freeThreaded: C.slither_free_threaded_build() == 1,
		reqs:         make(chan func()),
		paths:        map[string]bool{},
		imports:      (*uint64)(unsafe.Pointer(C.slither_import_counter())),
	}
	home := cfg.Home
	if home == "" {
		lib := C.slither_libpython_path()
		if lib == nil {
			return nil, notStarted(errors.New("cpython: cannot locate the loaded libpython; set Config.Home"))
		}
		real, err := filepath.EvalSymlinks(C.GoString(lib))
		if err != nil {
			return nil, notStarted(fmt.Errorf("cpython: locating libpython: %w", err))
		}
		home = filepath.Dir(filepath.Dir(real))
	}
	rt.home = filepath.Clean(home)
	stdlibName := C.GoString(C.slither_stdlib_dirname())
	stdlib := filepath.Join(rt.home, "lib", stdlibName)
	if _, err := os.Stat(filepath.Join(stdlib, "os.py")); err != nil {
		return nil, notStarted(fmt.Errorf("cpython: no Python %s standard library under home %s (looked for %s): %w",
			C.GoString(C.slither_header_version()), rt.home, stdlib, err))
	}
	base := filepath.Join(rt.home, "bin", strings.TrimPrefix(stdlibName, "lib"))
	rt.executable = cfg.Executable
	if rt.executable == "" {
		rt.executable = base
	}
	search := []string{stdlib, filepath.Join(stdlib, "lib-dynload"), filepath.Join(stdlib, "site-packages")}
	if cfg.Venv != "" {
		v, err := openVenv(cfg.Venv, base, stdlibName)
		if err != nil {
			return nil, notStarted(err)
		}
		rt.venv = v.Dir
		if cfg.Executable == "" {
			// CPython's own venv mechanism: with the executable inside the
			// venv, start-up finds pyvenv.cfg beside it and makes the venv
			// sys.prefix; site then adds its site-packages and runs their
			// .pth files (and the base's only when the venv includes them).
			rt.executable = v.Python()
		}
		search = search[:2]
	}
	if _, err := os.Stat(rt.executable); err != nil {
		return nil, notStarted(fmt.Errorf("cpython: interpreter executable %s: %w", rt.executable, err))
	}
	gil := -1
	switch cfg.GIL {
	case GILOff:
		gil = 0
	case GILOn:
		gil = 1
	case GILDefault:
		switch os.Getenv("PYTHON_GIL") {
		case "0":
			gil = 0
		case "1":
			gil = 1
		}
	}

	done := make(chan error)
	go rt.serve(search, gil, done)
	if err := <-done; err != nil {
		return nil, err
	}
	rt.onMain(func() {
		v := C.slither_version(rt.main)
		rt.version = C.GoString(v)
		C.free(unsafe.Pointer(v))
	})
	if err := rt.exec("_slither_startup", startup); err != nil {
		return nil, fmt.Errorf("cpython: running the start-up module: %w", err)
	}
	if rt.venv != "" {
		// Start-up makes a venv sys.prefix only when sys.executable lies in
		// it (an explicit Config.Executable elsewhere defeats that): say so
		// rather than run without the venv's packages.
		check := "import sys\nvenv = " + strconv.Quote(rt.venv) + "\nif sys.prefix != venv:\n" +
			"    raise RuntimeError('sys.prefix is %s, not the venv %s (is Config.Executable outside the venv?)' % (sys.prefix, venv))\n"
		if err := rt.exec("_slither_venv", check); err != nil {
			return nil, fmt.Errorf("cpython: %w: %w", pyvenv.ErrMismatch, err)
		}
	}
	return rt, nil
}

// serve initializes Python on a goroutine locked to its OS thread for the
// life of the process (it becomes Python's main thread), then runs the
// runtime-wide operations sent to it. It never returns.
func (rt *Runtime) serve(search []string, gil int, done chan<- error) {
	runtime.LockOSThread()
	chome := C.CString(rt.home)
	cexe := C.CString(rt.executable)
	cpaths := make([]*C.char, len(search))
	for i, p := range search {
		cpaths[i] = C.CString(p)
	}
	var cerr *C.char
	ts := C.slither_initialize(chome, cexe, &cpaths[0], C.int(len(cpaths)), C.int(gil), &cerr)
	C.free(unsafe.Pointer(chome))
	C.free(unsafe.Pointer(cexe))
	for _, p := range cpaths {
		C.free(unsafe.Pointer(p))
	}
	if ts == nil {
		msg := C.GoString(cerr)
		C.free(unsafe.Pointer(cerr))
		done <- fmt.Errorf("cpython: initializing Python at %s: %s", rt.home, msg)
		// Keep the thread: a failed initialization may have left state tied to it.
		select {}
	}
	rt.main = ts
	done <- nil
	for f := range rt.reqs {
		f()
	}
}

// openVenv reads the venv at dir and checks that it was made from base,
// the interpreter of this libpython, and has its site-packages.
func openVenv(dir, base, stdlibName string) (*pyvenv.Venv, error) {
	v, err := pyvenv.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("cpython: %w", err)
	}
	if err := v.Check(base, C.GoString(C.slither_header_version())); err != nil {
		return nil, fmt.Errorf("cpython: %w", err)
	}
	if st, err := os.Stat(v.SitePackages(stdlibName)); err != nil || !st.IsDir() {
		return nil, fmt.Errorf("cpython: %w: venv %s has no %s (made from a build other than %s?)",
			pyvenv.ErrMismatch, v.Dir, v.SitePackages(stdlibName), base)
	}
	return v, nil
}

// onMain runs f on Python's main thread and waits for it.
func (rt *Runtime) onMain(f func()) {
	done := make(chan struct{})
	rt.reqs <- func() { f(); close(done) }
	<-done
}

// Home is the installation prefix in use.
func (rt *Runtime) Home() string { return rt.home }

// Venv is the virtual environment in use (sys.prefix), "" without one.
func (rt *Runtime) Venv() string { return rt.venv }

// Executable is the interpreter binary sys.executable names.
func (rt *Runtime) Executable() string { return rt.executable }

// Version is sys.version of the embedded interpreter.
func (rt *Runtime) Version() string { return rt.version }

// FreeThreadedBuild reports whether the interpreter was built with
// --disable-gil (Py_GIL_DISABLED). It says nothing of whether the GIL is off
// right now: see [Runtime.GILEnabled].
func (rt *Runtime) FreeThreadedBuild() bool { return rt.freeThreaded }

// GILEnabled reports sys._is_gil_enabled() now. On a free-threaded build it
// turns true when an extension module that does not declare free-threading
// support is imported (unless the GIL was forced off). It costs a hop to the
// main thread: call it after imports, not per item.
func (rt *Runtime) GILEnabled() bool {
	var on C.int
	rt.onMain(func() { on = C.slither_gil_enabled(rt.main) })
	return on != 0
}

// Imports counts the imports the interpreter has performed since it
// started: the "import" audit events, raised for each module the import
// system loads and for each extension module loaded. It only grows, so two
// readings tell whether anything was imported in between — the moment to
// re-check [Runtime.GILEnabled]. Reading it is one atomic load: no call
// into Python, cheap enough for every batch.
func (rt *Runtime) Imports() uint64 { return atomic.LoadUint64(rt.imports) }

// AddPaths appends directories to sys.path, skipping those already added.
func (rt *Runtime) AddPaths(paths ...string) error {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	var add []string
	for _, p := range paths {
		abs, err := filepath.Abs(p)
		if err != nil {
			return fmt.Errorf("cpython: sys.path entry %q: %w", p, err)
		}
		if !rt.paths[abs] {
			add = append(add, strconv.Quote(abs))
		}
	}
	if len(add) == 0 {
		return nil
	}
	src := "import sys\nfor _p in [" + strings.Join(add, ", ") + "]:\n    if _p not in sys.path:\n        sys.path.append(_p)\ndel _p\n"
	if err := rt.Exec(src); err != nil {
		return fmt.Errorf("cpython: extending sys.path: %w", err)
	}
	for _, p := range paths {
		abs, _ := filepath.Abs(p)
		rt.paths[abs] = true
	}
	return nil
}

// Exec runs Python source in __main__ on the main thread. A raised
// exception is returned as an [*Exception]. It is meant for set-up, not for
// work: use a [Thread] for that.
func (rt *Runtime) Exec(source string) error { return rt.exec("__main__", source) }

// exec runs source in module's namespace on the main thread.
func (rt *Runtime) exec(module, source string) error {
	cmod, csrc := C.CString(module), C.CString(source)
	defer C.free(unsafe.Pointer(cmod))
	defer C.free(unsafe.Pointer(csrc))
	var err error
	rt.onMain(func() {
		var out C.slither_buf
		defer C.slither_buf_free(&out)
		if C.slither_exec(rt.main, cmod, csrc, &out) != 0 {
			err = decodeError(&out)
		}
	})
	return err
}

// decodeError turns a non-OK record in out into a Go error.
func decodeError(out *C.slither_buf) error {
	b := unsafe.Slice((*byte)(unsafe.Pointer(out.data)), int(out.len))
	if len(b) == 0 {
		return errCorrupt
	}
	return errorRecord(b[0], &decoder{b: b[1:]})
}

// shim.h: the C side of Slither's CPython binding. Every function here is
// called from Go through cgo; each one crosses into C once and does a whole
// unit of work (a whole batch is converted in one crossing).
#ifndef SLITHER_SHIM_H
#define SLITHER_SHIM_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stddef.h>

#if PY_VERSION_HEX < 0x030D0000
// The text names the exact commands (internal/pybuild's InstallCommand and
// EnvCommand); unquoted so that the shell line shows as it is typed.
#error slither/cpython needs the headers of a free-threaded CPython >= 3.13 (3.13t). From any Go module run `CGO_ENABLED=0 go run github.com/slither-go/slither/cmd/slither@latest python install`, then `eval "$(CGO_ENABLED=0 go run github.com/slither-go/slither/cmd/slither@latest python env)"` and build again
#endif

// A growable byte buffer owned by C (malloc). Go reads it and calls slither_buf_free.
typedef struct {
    char *data;
    size_t len;
    size_t cap;
} slither_buf;

void slither_buf_free(slither_buf *b);
// Replaces b's contents with n bytes from p; -1 when out of memory.
int slither_buf_set(slither_buf *b, const char *p, size_t n);

// How deeply values may nest either way; the same as Go's MaxDepth.
#define SLITHER_MAX_DEPTH 1000

// Implemented in Go (hostcall.go): runs the host function of the thread
// state ts on its [name, args] (in, Go format); writes the Go-format result
// to out and returns 0, or writes an error text and returns 1.
extern int slitherHostCall(uintptr_t ts, char *in, size_t inlen, slither_buf *out);

// Result status, first byte of every output buffer.
enum {
    SLITHER_OK = 0,          // followed by one encoded value
    SLITHER_PYERR = 1,       // followed by 3 strings: type, message, traceback
    SLITHER_CONVERT_ERR = 2, // followed by 2 strings: path, reason (Python -> Go)
    SLITHER_HOST_ERR = 3,    // followed by 1 string: reason
};

// Call modes.
enum {
    SLITHER_CALL_BATCH = 0, // fn(list) -> list (or tuple)
    SLITHER_CALL_ARGS = 1,  // fn(*args) -> any
};

// Absolute path of the loaded libpython, or NULL.
const char *slither_libpython_path(void);

// Compile-time facts of the headers we were built against.
int slither_free_threaded_build(void);
const char *slither_header_version(void);
const char *slither_stdlib_dirname(void); // "python3.13t" or "python3.13"

// Initializes the interpreter on the calling thread, which becomes Python's
// main thread. paths: stdlib and extra search paths. enable_gil: -1 default,
// 0 off, 1 on (free-threaded builds only). On failure returns NULL and sets
// *err to a malloc'd message. On success the main thread state is returned
// detached.
PyThreadState *slither_initialize(const char *home, const char *executable,
                                  const char **paths, int npaths, int enable_gil,
                                  char **err);

// Runtime facts that need an attached thread state: ts is attached for the
// call and detached again.
int slither_gil_enabled(PyThreadState *ts);
char *slither_version(PyThreadState *ts); // malloc'd sys.version

// Creates a thread state for the calling OS thread (detached on return).
PyThreadState *slither_thread_new(void);
// Destroys ts, which belongs to the calling OS thread and is detached.
void slither_thread_delete(PyThreadState *ts);
unsigned long slither_thread_id(PyThreadState *ts);

// Imports module and returns a new reference to module.name, which must be
// callable. On failure returns NULL and fills out with an error record.
PyObject *slither_lookup(PyThreadState *ts, const char *module, const char *name,
                         slither_buf *out);
// Drops a reference obtained from slither_lookup.
void slither_decref(PyThreadState *ts, PyObject *obj);

// Decodes in (one encoded list), calls fn and encodes the result or the error
// into out. mode is SLITHER_CALL_BATCH or SLITHER_CALL_ARGS. Attaches ts for
// the call and detaches it before returning. Returns the status byte.
int slither_call(PyThreadState *ts, PyObject *fn, const char *in, size_t inlen,
                 int mode, int max_depth, slither_buf *out);

// Raises exc_name (a builtin exception class name looked up in module
// "slither") asynchronously in the thread whose id is tid. Needs ts (the
// main thread state) to attach. Returns the number of threads affected.
int slither_interrupt(PyThreadState *ts, unsigned long tid);
// Clears any pending asynchronous exception of the calling thread state.
void slither_clear_interrupt(PyThreadState *ts);

// Runs Python source in module's namespace (created, and added to
// sys.modules, if missing) with ts attached; on failure fills out with the
// error and returns -1.
int slither_exec(PyThreadState *ts, const char *module, const char *source, slither_buf *out);

// The number of "import" audit events so far (see audit_hook in shim.c):
// it grows by at least one whenever a module is loaded. Read it atomically.
uint64_t *slither_import_counter(void);

// The trace context of the batch running on this OS thread, shown to Python
// by _slither_host.trace() (slither.context().trace_id/span_id). It is
// thread-local and written by Go straight into the slot, so setting it per
// batch costs no cgo call and no Python call.
typedef struct {
    uint64_t valid; // 0: no trace
    uint8_t trace_id[16];
    uint8_t span_id[8];
} slither_trace;

// The calling OS thread's slot; valid for the thread's life.
slither_trace *slither_trace_slot(void);

#endif

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

// Implemented in Go (hostcall.go): runs the Go host function whose
// runtime/cgo handle is host on its [name, args] (in, Go format); writes the
// Go-format result to out and returns 0, or writes an error text and
// returns 1.
extern int slitherHostCall(uintptr_t host, char *in, size_t inlen, slither_buf *out);

// Result status, first byte of every output buffer.
enum {
    SLITHER_OK = 0,          // followed by one encoded value
    SLITHER_PYERR = 1,       // followed by 3 strings: type, message, traceback
    SLITHER_CONVERT_ERR = 2, // followed by 2 strings: path, reason (Python -> Go)
    SLITHER_HOST_ERR = 3,    // followed by 1 string: reason
    SLITHER_WRONG_THREAD = 4, // no record: a Thread's state used from another OS thread
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

// Runs Python source in module's namespace (created, and added to
// sys.modules, if missing) with ts attached; on failure fills out with the
// error and returns -1.
int slither_exec(PyThreadState *ts, const char *module, const char *source, slither_buf *out);

// The number of "import" audit events so far (see audit_hook in shim.c):
// it grows by at least one whenever a module is loaded. Read it atomically.
uint64_t *slither_import_counter(void);

// Large bytes values cross by reference, each copied once: from this size.
#define SLITHER_REF_MIN (32 << 10)

// A Thread or Caller keeps the bytes objects it made for its last large
// arguments (at most SLITHER_SPARES, each at most SLITHER_SPARE_MAX bytes)
// and refills one of the same size in place when only it still holds it:
// warm memory instead of a fresh allocation per call, which on a machine
// with costly page faults is most of a large payload's cost.
#define SLITHER_SPARES 4
#define SLITHER_SPARE_MAX (4 << 20)

// A Go []byte of a call's arguments, named by index by an 'r' value: Go
// memory the Go encoder pinned for the call (Go -> Python).
typedef struct {
    uintptr_t p;
    uint64_t n;
} slither_ref;

// A Python bytes of a call's result, named by index by an 'r' value: Go
// copies n bytes from p, then the reference obj is dropped
// (slither_release_kept) (Python -> Go).
typedef struct {
    const char *p;
    uint64_t n;
    PyObject *obj;
} slither_kept;

typedef struct {
    slither_kept *refs; // malloc'd
    uint64_t n, cap;
} slither_keep;

// The trace ids of a batch, shown to Python by _slither_host.trace()
// (slither.context().trace_id/span_id) while the batch runs.
typedef struct {
    uint64_t valid; // 0: no trace
    uint8_t trace_id[16];
    uint8_t span_id[8];
} slither_trace;

// The context of one Thread or Caller, C memory owned by it (Go writes its
// fields between calls, never during one). A call makes it the current
// context of its OS thread (saving the previous one, restored when the call
// returns, so nested calls work), which is where Python reads it lazily:
// nothing per batch costs a Python call.
typedef struct {
    slither_trace trace;
    // bound: 1 for a Caller, whose worker and session are authoritative for
    // slither.context() (_slither_host.context()); 0 for a Thread, whose
    // context is what the pool bound in Python (threading.local).
    int32_t bound;
    int32_t worker;     // < 0: none
    char *session;      // malloc'd, session_len bytes, or NULL: none
    uint64_t session_len;
    uintptr_t host;     // runtime/cgo handle of the Go host function; 0: none
    // The running call, for interrupts (atomics; Caller only).
    uint64_t ident;     // Python thread id of the running call; 0: none
    int64_t tid;        // OS thread id of the running call; 0: none
    uint32_t cancel;    // set by an interrupt: a call that starts stops at once
    uint32_t sent;      // an async exception was sent: the call clears it at its end
    // 1 from the first write of a call's outcome into out/keep until Go has
    // read it (Go clears it): a call of this context made meanwhile, from
    // Python code the writing runs or Go's SetAlloc function, is refused.
    uint32_t busy;
    slither_buf out;    // the calls' result buffer, reused (C memory: no cgo pointer check)
    slither_keep keep;  // the large bytes of the last result, until Go copied them
    PyObject *spares[SLITHER_SPARES]; // bytes of earlier large arguments, to refill (see SLITHER_SPARES)
} slither_ctx;

slither_ctx *slither_ctx_new(int32_t bound);
void slither_ctx_free(slither_ctx *c);
// Replaces c's session id with n bytes from s (n == 0: none); -1 when out of memory.
int slither_ctx_set_session(slither_ctx *c, const char *s, size_t n);
// Drops c's spare bytes objects, with ts attached (NULL: this OS thread's
// own state); before slither_ctx_free.
void slither_ctx_drop_spares(PyThreadState *ts, slither_ctx *c);

// ---- Thread states: one per OS thread, kept in C thread-local storage ----
//
// The first call on an OS thread (of a Thread or a Caller) makes a thread
// state for it, reused by every later call on that thread and deleted by a
// pthread key destructor when the thread exits (or by the last Thread's
// close when no call runs there). A thread never holds two of ours, so an
// interrupt aimed at its Python thread id hits exactly one state.

// A Thread takes this OS thread's state (making it if needed) and counts
// itself as its user. Returns NULL if it cannot be made; *ident and *tid
// get the Python thread id and the OS thread id.
PyThreadState *slither_thread_new(uint64_t *ident, int64_t *tid);
// A Thread lets go of ts, which must be this OS thread's state (else -1):
// deleted now when no other Thread uses it and no call runs on the thread.
int slither_thread_delete(PyThreadState *ts);
// 0 when ts is this OS thread's state, else -1.
int slither_thread_check(PyThreadState *ts);

// Imports module and returns a new reference to module.name, which must be
// callable. ts is the Thread's state (checked against this OS thread's:
// NULL and SLITHER_WRONG_THREAD in *status if not), or NULL for this OS
// thread's state (a Caller). On failure returns NULL and fills out with an
// error record.
PyObject *slither_lookup(PyThreadState *ts, const char *module, const char *name,
                         slither_buf *out, int *status);
// Drops a reference obtained from slither_lookup, on ts or (NULL) this OS
// thread's state.
void slither_decref(PyThreadState *ts, PyObject *obj);

// Decodes in (one encoded list), calls fn and encodes the result or the error
// into ctx->out, with refs (nrefs entries) the large []byte the encoder
// passed by reference, and large bytes results kept in ctx->keep. mode is SLITHER_CALL_BATCH or SLITHER_CALL_ARGS. ctx becomes the
// thread's current context for the call. slither_call runs on ts, a
// Thread's state, which must be this OS thread's (else
// SLITHER_WRONG_THREAD); slither_direct_call on this OS thread's state,
// made on first use (a Caller: one crossing for state and call), and does
// the interrupt handshake on ctx. Both attach for the call and detach
// before returning. Returns the status byte.
int slither_call(PyThreadState *ts, slither_ctx *ctx, PyObject *fn, const char *in, size_t inlen,
                 const slither_ref *refs, size_t nrefs, int mode, int max_depth);
int slither_direct_call(slither_ctx *ctx, PyObject *fn, const char *in, size_t inlen,
                        const slither_ref *refs, size_t nrefs, int mode, int max_depth);
// Drops the references ctx->keep holds (Go has copied the bytes), with this
// OS thread's state attached. No-op when it holds none.
void slither_release_kept(slither_ctx *ctx);

// Raises _slither_host.Cancelled asynchronously in the Python thread ident,
// from the calling OS thread's own state (no hop to the main thread).
// Returns the number of thread states hit.
int slither_interrupt(uint64_t ident);
// Clears any pending asynchronous exception of ts (this OS thread's state).
void slither_clear_interrupt(PyThreadState *ts);
// The end of a Caller's outermost call, on its OS thread: clears the
// asynchronous exception an interrupt sent (if any) and ctx's flags.
void slither_direct_clear(slither_ctx *ctx);

// Diagnostics (tests): thread states made and deleted by this file, the
// interpreter's thread states now (attaches this thread's state), and a
// wait until at least n were deleted (-1 after timeout_ms).
void slither_state_counts(uint64_t *created, uint64_t *deleted);
int slither_count_thread_states(void);
int slither_wait_deleted(uint64_t n, int timeout_ms);

#endif

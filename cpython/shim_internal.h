// shim_internal.h: what shim.c (runtime, host calls), codec.c (buffers, value
// format, error records) and calls.c
// (thread states, calls, interrupts) share; not called from Go.
#ifndef SLITHER_SHIM_INTERNAL_H
#define SLITHER_SHIM_INTERNAL_H

#include "shim.h"

// codec.c's buffer writers, decoder and encoder, shared with the host
// calls in shim.c; named with a prefix in the symbol table.
#define buf_put slither__buf_put
#define buf_byte slither__buf_byte
#define buf_u64 slither__buf_u64
#define buf_str slither__buf_str
#define buf_cstr slither__buf_cstr
#define path_prepend slither__path_prepend
#define nomem slither__nomem
#define decode slither__decode
#define encode slither__encode

int buf_put(slither_buf *b, const void *p, size_t n);
int buf_byte(slither_buf *b, char c);
int buf_u64(slither_buf *b, uint64_t v);
int buf_str(slither_buf *b, const char *s, size_t n);
int buf_cstr(slither_buf *b, const char *s);

typedef struct {
    const char *p;
    const char *end;
    int max_depth;
    const slither_ref *refs; // what 'r' may name (NULL: none)
    size_t nrefs;
    PyObject **spares; // SLITHER_SPARES bytes objects to refill for 'r' (NULL: none)
} reader;

// Decodes one value (NULL with a Python error set on failure).
PyObject *decode(reader *r, int depth);

typedef struct {
    slither_buf *out;
    int max_depth;
    slither_keep *keep; // large bytes go here by reference (NULL: copied into out)
    // On a conversion failure: reason and the path, built while unwinding.
    char reason[512];
    char path[1024];
    int failed; // 1 conversion error, 2 Python error raised
} writer;

// Encodes o at depth into w->out: 0, or -1 with w->failed set.
int encode(writer *w, PyObject *o, int depth);
// Prepends part to the path of a conversion failure.
void path_prepend(writer *w, const char *part);
// Raises MemoryError (unless an error is set) and fails w.
int nomem(writer *w);

// _slither_host.Cancelled, created at initialization.
extern PyObject *slither_cancelled_exc;

// codec.c: decodes in as the call's argument list (NULL with an error set
// if it is not one); encodes a result (consumed) or the raised exception
// into out.
PyObject *slither_decode_args(const char *in, size_t inlen, const slither_ref *refs, size_t nrefs, PyObject **spares,
                              int max_depth);
// On failure it drops what it kept in keep (which may be NULL).
int slither_encode_result(PyObject *result, int mode, int max_depth, slither_buf *out, slither_keep *keep);
// Drops keep's references (the thread state is attached).
void slither_drop_kept(slither_keep *keep);
void slither_encode_pyerr(slither_buf *out);
// Replaces out's contents with an SLITHER_HOST_ERR record saying msg.
void slither_put_host_err(slither_buf *out, const char *msg);
// Replaces out's contents with the SLITHER_PYERR record of a bare
// _slither_host.Cancelled, without running Python.
void slither_put_cancelled(slither_buf *out);

// calls.c: the runtime/cgo handle of the Go host function serving the call
// running on this OS thread, or 0 with *why saying why there is none (no
// call of ours runs here, none was set, or the thread is exiting).
uintptr_t slither_current_host(const char **why);
// calls.c: _slither_host.trace() and _slither_host.context().
PyObject *slither_host_trace(PyObject *self, PyObject *unused);
PyObject *slither_host_context(PyObject *self, PyObject *unused);

#endif

// calls.c: thread states kept per OS thread, calls, interrupts, and the
// per-call context Python reads (see shim.h).
#define _GNU_SOURCE
#include "shim_internal.h"
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

// What this file keeps per OS thread. Static TLS stays valid while the
// thread's pthread key destructors run.
typedef struct {
    PyThreadState *ts; // this OS thread's state, made on first use; detached between calls
    uint64_t ident;    // ts->thread_id, the id interrupts aim at
    int64_t tid;       // gettid(), asked once per thread
    int users;         // open Threads on ts
    int depth;         // calls running on this thread, nested ones included
    int exiting;       // the destructor runs: nothing may enter Go any more
    slither_ctx *ctx;  // the context of the innermost call running here, or NULL
} thread_slot;

static __thread thread_slot tls;
static pthread_key_t state_key;
static pthread_once_t state_key_once = PTHREAD_ONCE_INIT;

static pthread_mutex_t count_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t count_cv = PTHREAD_COND_INITIALIZER;
static uint64_t states_created, states_deleted;

static void count(uint64_t *n) {
    pthread_mutex_lock(&count_mu);
    (*n)++;
    pthread_cond_broadcast(&count_cv);
    pthread_mutex_unlock(&count_mu);
}

// delete_state deletes ts, this thread's detached state, as CPython's own
// threads end theirs: its thread-locals are cleared (their finalizers run
// here, with ts attached), then it goes.
static void delete_state(PyThreadState *ts) {
    PyEval_RestoreThread(ts);
    PyThreadState_Clear(ts);
    PyThreadState_DeleteCurrent();
    count(&states_deleted);
}

// state_dtor runs when the OS thread exits (a goroutine ended while locked
// to it), after Go has let go of the thread: only C and Python from here,
// so host calls are refused (slither_current_host) rather than entering Go.
static void state_dtor(void *p) {
    tls.exiting = 1;
    tls.ctx = NULL;
    tls.ts = NULL;
    delete_state(p);
}

static void make_state_key(void) { pthread_key_create(&state_key, state_dtor); }

static int64_t thread_tid(void) {
    if (!tls.tid) tls.tid = (int64_t)syscall(SYS_gettid);
    return tls.tid;
}

// tls_state returns this OS thread's state, making it on first use (one
// TLS load after that). NULL when it cannot be made, or while exiting.
static PyThreadState *tls_state(void) {
    if (tls.ts) return tls.ts;
    if (tls.exiting) return NULL;
    pthread_once(&state_key_once, make_state_key);
    // PyThreadState_New also binds this OS thread's gilstate slot to the
    // new state, so extensions calling PyGILState_Ensure here find it.
    PyThreadState *ts = PyThreadState_New(PyInterpreterState_Main());
    if (!ts) return NULL;
    tls.ts = ts;
    tls.ident = ts->thread_id;
    thread_tid();
    pthread_setspecific(state_key, ts);
    count(&states_created);
    return ts;
}

static void no_state(slither_buf *out) {
    slither_put_host_err(out, tls.exiting ? "this OS thread is exiting" : "cannot create a Python thread state for this OS thread");
}

// ---------- contexts ----------

slither_ctx *slither_ctx_new(int32_t bound) {
    slither_ctx *c = calloc(1, sizeof *c);
    if (c) {
        c->bound = bound;
        c->worker = -1;
    }
    return c;
}

void slither_ctx_free(slither_ctx *c) {
    if (!c) return;
    free(c->session);
    slither_buf_free(&c->out);
    free(c->keep.refs); // empty: every call released what it kept
    free(c);
}

int slither_ctx_set_session(slither_ctx *c, const char *s, size_t n) {
    char *d = NULL;
    if (n) {
        d = malloc(n);
        if (!d) return -1;
        memcpy(d, s, n);
    }
    free(c->session);
    c->session = d;
    c->session_len = n;
    return 0;
}

uintptr_t slither_current_host(const char **why) {
    if (tls.exiting) {
        *why = "host calls are refused while this OS thread exits (a finalizer ran as its Python thread state was deleted)";
        return 0;
    }
    if (!tls.ctx || !tls.ctx->host) {
        *why = "no Go host function serves this Python thread (host calls work inside pool workers)";
        return 0;
    }
    return tls.ctx->host;
}

static PyObject *hex_str(const uint8_t *src, size_t n) {
    static const char digits[] = "0123456789abcdef";
    char s[64];
    for (size_t i = 0; i < n; i++) {
        s[2 * i] = digits[src[i] >> 4];
        s[2 * i + 1] = digits[src[i] & 15];
    }
    return PyUnicode_FromStringAndSize(s, (Py_ssize_t)(2 * n));
}

// _slither_host.trace(): the running call's trace ids, read only when
// Python asks (slither.context()), so an untraced batch pays nothing.
PyObject *slither_host_trace(PyObject *self, PyObject *unused) {
    slither_ctx *c = tls.ctx;
    if (!c || !c->trace.valid) Py_RETURN_NONE;
    PyObject *t = hex_str(c->trace.trace_id, sizeof c->trace.trace_id);
    PyObject *s = t ? hex_str(c->trace.span_id, sizeof c->trace.span_id) : NULL;
    PyObject *r = s ? PyTuple_Pack(2, t, s) : NULL;
    Py_XDECREF(t);
    Py_XDECREF(s);
    return r;
}

// _slither_host.context(): (worker_id, session_id, trace_id, span_id) of
// the direct call running on this thread, each None when unset; None when
// no direct call runs here (a Thread's context lives in Python).
PyObject *slither_host_context(PyObject *self, PyObject *unused) {
    slither_ctx *c = tls.ctx;
    if (!c || !c->bound) Py_RETURN_NONE;
    PyObject *v[4] = {NULL, NULL, NULL, NULL};
    v[0] = c->worker >= 0 ? PyLong_FromLong(c->worker) : Py_NewRef(Py_None);
    // surrogateescape: ids that are not valid UTF-8 stay distinct (and
    // encode back to their bytes), rather than all becoming U+FFFD.
    v[1] = c->session ? PyUnicode_DecodeUTF8(c->session, (Py_ssize_t)c->session_len, "surrogateescape")
                      : Py_NewRef(Py_None);
    if (c->trace.valid) {
        v[2] = hex_str(c->trace.trace_id, sizeof c->trace.trace_id);
        v[3] = hex_str(c->trace.span_id, sizeof c->trace.span_id);
    } else {
        v[2] = Py_NewRef(Py_None);
        v[3] = Py_NewRef(Py_None);
    }
    PyObject *r = (v[0] && v[1] && v[2] && v[3]) ? PyTuple_Pack(4, v[0], v[1], v[2], v[3]) : NULL;
    for (int i = 0; i < 4; i++) Py_XDECREF(v[i]);
    return r;
}

// ---------- thread states ----------

PyThreadState *slither_thread_new(uint64_t *ident, int64_t *tid) {
    PyThreadState *ts = tls_state();
    if (!ts) return NULL;
    tls.users++;
    *ident = tls.ident;
    *tid = tls.tid;
    return ts;
}

int slither_thread_check(PyThreadState *ts) { return ts && ts == tls.ts ? 0 : -1; }

int slither_thread_delete(PyThreadState *ts) {
    if (!ts || ts != tls.ts) return -1;
    if (--tls.users == 0 && tls.depth == 0) {
        // As a Thread's close always did: its thread-locals go with it. A
        // call running below (a host function that opened and closed a
        // Thread) keeps the state; so do later calls, which remake it.
        tls.ts = NULL;
        tls.ident = 0;
        pthread_setspecific(state_key, NULL);
        delete_state(ts);
    }
    return 0;
}

// ---------- calls ----------

PyObject *slither_lookup(PyThreadState *ts, const char *module, const char *name,
                         slither_buf *out, int *status) {
    if (ts && ts != tls.ts) {
        *status = SLITHER_WRONG_THREAD;
        return NULL;
    }
    if (!ts && !(ts = tls_state())) {
        no_state(out);
        *status = SLITHER_HOST_ERR;
        return NULL;
    }
    *status = SLITHER_OK;
    PyEval_RestoreThread(ts);
    slither_ctx *prev = tls.ctx;
    tls.ctx = NULL; // module code run by the import is no call's
    tls.depth++;
    PyObject *fn = NULL;
    PyObject *mod = PyImport_ImportModule(module);
    if (mod) {
        fn = PyObject_GetAttrString(mod, name);
        Py_DECREF(mod);
        if (fn && !PyCallable_Check(fn)) {
            PyErr_Format(PyExc_TypeError, "%s.%s is not callable (it is a '%.100s')", module, name, Py_TYPE(fn)->tp_name);
            Py_CLEAR(fn);
        }
    }
    if (!fn) {
        slither_encode_pyerr(out);
        *status = SLITHER_PYERR;
    }
    tls.depth--;
    tls.ctx = prev;
    PyEval_SaveThread();
    return fn;
}

void slither_ctx_drop_spares(PyThreadState *ts, slither_ctx *c) {
    int any = 0;
    for (int i = 0; i < SLITHER_SPARES; i++) any |= c->spares[i] != NULL;
    if (!any) return;
    if (!ts && !(ts = tls_state())) return; // leaks them rather than touch them unattached
    if (ts != tls.ts) return;
    PyEval_RestoreThread(ts);
    for (int i = 0; i < SLITHER_SPARES; i++) Py_CLEAR(c->spares[i]);
    PyEval_SaveThread();
}

void slither_decref(PyThreadState *ts, PyObject *obj) {
    if (!ts && !(ts = tls_state())) return; // leaks obj rather than touch it unattached
    if (ts != tls.ts) return;
    PyEval_RestoreThread(ts);
    Py_XDECREF(obj);
    PyEval_SaveThread();
}

// run decodes the arguments, calls fn and encodes the outcome into
// ctx->out (and ctx->keep); the thread state is attached. From the first
// write of the outcome ctx is busy (Go clears it once it has read the
// result): Python code run meanwhile (a __str__, a __repr__, a __del__)
// may make host calls, and a call of this same context from there would
// overwrite the record and drop what it kept (binding.checkIdle refuses it).
static int run(PyObject *fn, const char *in, size_t inlen, const slither_ref *refs, size_t nrefs,
               int mode, int max_depth, slither_ctx *ctx) {
    slither_buf *out = &ctx->out;
    PyObject *args = slither_decode_args(in, inlen, refs, nrefs, ctx->spares, max_depth);
    if (!args) {
        ctx->busy = 1;
        slither_encode_pyerr(out);
        return SLITHER_PYERR;
    }
    PyObject *result;
    if (mode == SLITHER_CALL_BATCH) {
        result = PyObject_CallOneArg(fn, args);
    } else {
        PyObject *tuple = PyList_AsTuple(args);
        result = tuple ? PyObject_Call(fn, tuple, NULL) : NULL;
        Py_XDECREF(tuple);
    }
    Py_DECREF(args);
    ctx->busy = 1;
    if (!result) {
        slither_encode_pyerr(out);
        return SLITHER_PYERR;
    }
    return slither_encode_result(result, mode, max_depth, out, &ctx->keep);
}

// resend_outer raises Cancelled again for outer, the call the one ending
// was nested in (through a host call on this thread), when outer is being
// interrupted: the nested call's Python may have spent the async
// exception meant for it. The state is attached.
static void resend_outer(slither_ctx *outer) {
    if (outer && __atomic_load_n(&outer->cancel, __ATOMIC_SEQ_CST)) {
        __atomic_store_n(&outer->sent, 1, __ATOMIC_SEQ_CST);
        PyThreadState_SetAsyncExc((unsigned long)tls.ident, slither_cancelled_exc);
    }
}

int slither_call(PyThreadState *ts, slither_ctx *ctx, PyObject *fn, const char *in, size_t inlen,
                 const slither_ref *refs, size_t nrefs, int mode, int max_depth) {
    // The wrong-thread check of a Thread: one TLS load, no syscall.
    if (!ts || ts != tls.ts) return SLITHER_WRONG_THREAD;
    PyEval_RestoreThread(ts);
    slither_ctx *prev = tls.ctx;
    tls.ctx = ctx;
    tls.depth++;
    int status = run(fn, in, inlen, refs, nrefs, mode, max_depth, ctx);
    if (prev != ctx) resend_outer(prev);
    tls.depth--;
    tls.ctx = prev;
    PyEval_SaveThread();
    return status;
}

int slither_direct_call(slither_ctx *ctx, PyObject *fn, const char *in, size_t inlen,
                        const slither_ref *refs, size_t nrefs, int mode, int max_depth) {
    slither_buf *out = &ctx->out;
    PyThreadState *ts = tls_state();
    if (!ts) {
        no_state(out);
        return SLITHER_HOST_ERR;
    }
    // The interrupt handshake (caller.go, Caller.Interrupt): publish where
    // this call runs, then look for an interrupt that came before; the
    // interrupter sets cancel, then reads ident. Either side sees the other.
    uint64_t prev_ident = __atomic_exchange_n(&ctx->ident, tls.ident, __ATOMIC_SEQ_CST);
    int64_t prev_tid = __atomic_exchange_n(&ctx->tid, tls.tid, __ATOMIC_SEQ_CST);
    PyEval_RestoreThread(ts);
    slither_ctx *prev = tls.ctx;
    tls.ctx = ctx;
    tls.depth++;
    int status;
    if (__atomic_load_n(&ctx->cancel, __ATOMIC_SEQ_CST)) {
        // Written without running Python (no traceback to format), which
        // could take an async exception still pending for an outer call.
        slither_put_cancelled(out);
        status = SLITHER_PYERR;
    } else {
        status = run(fn, in, inlen, refs, nrefs, mode, max_depth, ctx);
    }
    if (prev_ident && __atomic_load_n(&ctx->cancel, __ATOMIC_SEQ_CST)) {
        // Nested in an outer call of the same Caller, which is being
        // interrupted too: the async exception was spent in here, so raise
        // it again for the outer call's Python (end clears what is left).
        __atomic_store_n(&ctx->sent, 1, __ATOMIC_SEQ_CST);
        PyThreadState_SetAsyncExc((unsigned long)tls.ident, slither_cancelled_exc);
    } else if (prev != ctx) {
        resend_outer(prev);
    }
    tls.depth--;
    tls.ctx = prev;
    PyEval_SaveThread();
    __atomic_store_n(&ctx->tid, prev_tid, __ATOMIC_SEQ_CST);
    __atomic_store_n(&ctx->ident, prev_ident, __ATOMIC_SEQ_CST);
    return status;
}

void slither_release_kept(slither_ctx *ctx) {
    if (!ctx->keep.n) return;
    PyThreadState *ts = tls_state();
    if (!ts) return; // cannot happen on the thread that made the call
    PyEval_RestoreThread(ts);
    slither_drop_kept(&ctx->keep);
    PyEval_SaveThread();
}

// ---------- interrupts ----------

int slither_interrupt(uint64_t ident) {
    PyThreadState *ts = tls_state();
    if (!ts) return -1;
    PyEval_RestoreThread(ts);
    int n = PyThreadState_SetAsyncExc((unsigned long)ident, slither_cancelled_exc);
    PyEval_SaveThread();
    return n;
}

void slither_clear_interrupt(PyThreadState *ts) {
    if (!ts || ts != tls.ts) return;
    PyEval_RestoreThread(ts);
    PyThreadState_SetAsyncExc((unsigned long)tls.ident, NULL);
    PyEval_SaveThread();
}

void slither_direct_clear(slither_ctx *ctx) {
    int cleared = __atomic_load_n(&ctx->sent, __ATOMIC_SEQ_CST) && tls.ts;
    if (cleared) slither_clear_interrupt(tls.ts);
    __atomic_store_n(&ctx->sent, 0, __ATOMIC_SEQ_CST);
    __atomic_store_n(&ctx->cancel, 0, __ATOMIC_SEQ_CST);
    if (cleared && tls.ctx && tls.ctx != ctx) { // what was cleared may have been the outer call's too
        PyEval_RestoreThread(tls.ts);
        resend_outer(tls.ctx);
        PyEval_SaveThread();
    }
}

// ---------- diagnostics ----------

void slither_state_counts(uint64_t *created, uint64_t *deleted) {
    pthread_mutex_lock(&count_mu);
    *created = states_created;
    *deleted = states_deleted;
    pthread_mutex_unlock(&count_mu);
}

int slither_count_thread_states(void) {
    PyThreadState *ts = tls_state();
    if (!ts) return -1;
    PyEval_RestoreThread(ts);
    int n = 0;
    for (PyThreadState *t = PyInterpreterState_ThreadHead(PyInterpreterState_Main()); t; t = PyThreadState_Next(t)) n++;
    PyEval_SaveThread();
    return n;
}

int slither_wait_deleted(uint64_t n, int timeout_ms) {
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += timeout_ms / 1000;
    until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    int rc = 0;
    pthread_mutex_lock(&count_mu);
    while (states_deleted < n) {
        if (pthread_cond_timedwait(&count_cv, &count_mu, &until) == ETIMEDOUT) {
            rc = states_deleted < n ? -1 : 0;
            break;
        }
    }
    pthread_mutex_unlock(&count_mu);
    return rc;
}

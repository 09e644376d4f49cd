// shim.c: see shim.h. The wire format shared with codec.go (little endian):
//   'N' None | 'T' True | 'F' False | 'i' int64 | 'I' u64 len + decimal text (big int)
//   'd' float64 | 's' u64 len + UTF-8 | 'b' u64 len + bytes
//   'l' u64 count + values | 'm' u64 count + (u64 len + UTF-8 key, value) pairs
#define _GNU_SOURCE
#include "shim.h"
#include <dlfcn.h>
#include <string.h>
#include <stdlib.h>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "slither/cpython assumes a little-endian machine"
#endif

static PyObject *cancelled_exc; // _slither_host.Cancelled, created at init
// Imports seen by audit_hook; read by Go through slither_import_counter.
static uint64_t import_count;
static PyObject *host_error_exc; // _slither_host.HostError, created at init
static PyObject *view_error_exc; // _slither_host.ViewError(HostError), created at init
static PyObject *host_call(PyObject *self, PyObject *args); // below: they need the codec
static PyObject *host_view(PyObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames);
static PyObject *host_trace(PyObject *self, PyObject *unused);

static PyMethodDef host_methods[] = {
    {"call", host_call, METH_VARARGS,
     "call(name, args: list) -> result of the Go host function `name` (slither.host_call)."},
    {"view", (PyCFunction)(void (*)(void))host_view, METH_FASTCALL | METH_KEYWORDS,
     "view(name, **args) -> result of the store view `name` (slither.view)."},
    {"trace", host_trace, METH_NOARGS,
     "trace() -> (trace_id, span_id) as lowercase hex of the batch running on this thread, or None."},
    {NULL, NULL, 0, NULL},
};

// ---------- buffers ----------

void slither_buf_free(slither_buf *b) {
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

static int buf_reserve(slither_buf *b, size_t n) {
    if (b->len + n <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + n) cap *= 2;
    char *d = realloc(b->data, cap);
    if (!d) return -1;
    b->data = d;
    b->cap = cap;
    return 0;
}

static int buf_put(slither_buf *b, const void *p, size_t n) {
    if (buf_reserve(b, n) < 0) return -1;
    memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

static int buf_byte(slither_buf *b, char c) { return buf_put(b, &c, 1); }
static int buf_u64(slither_buf *b, uint64_t v) { return buf_put(b, &v, 8); }
static int buf_str(slither_buf *b, const char *s, size_t n) {
    if (buf_u64(b, n) < 0) return -1;
    return buf_put(b, s, n);
}
static int buf_cstr(slither_buf *b, const char *s) { return buf_str(b, s, s ? strlen(s) : 0); }

// ---------- runtime ----------

const char *slither_libpython_path(void) {
    Dl_info info;
    if (dladdr((void *)&Py_InitializeFromConfig, &info) && info.dli_fname) return info.dli_fname;
    return NULL;
}

int slither_free_threaded_build(void) {
#ifdef Py_GIL_DISABLED
    return 1;
#else
    return 0;
#endif
}

const char *slither_header_version(void) { return PY_VERSION; }

#define SLITHER_STR2(x) #x
#define SLITHER_STR(x) SLITHER_STR2(x)
const char *slither_stdlib_dirname(void) {
#ifdef Py_GIL_DISABLED
    return "python" SLITHER_STR(PY_MAJOR_VERSION) "." SLITHER_STR(PY_MINOR_VERSION) "t";
#else
    return "python" SLITHER_STR(PY_MAJOR_VERSION) "." SLITHER_STR(PY_MINOR_VERSION);
#endif
}

static PyModuleDef host_module = {
    PyModuleDef_HEAD_INIT, "_slither_host",
    "Host side of Slither: objects the embedding Go process provides.", -1, host_methods,
};

static PyObject *host_init(void) {
    PyObject *m = PyModule_Create(&host_module);
    if (!m) return NULL;
#ifdef Py_GIL_DISABLED
    PyUnstable_Module_SetGIL(m, Py_MOD_GIL_NOT_USED);
#endif
    // BaseException, like asyncio.CancelledError: `except Exception` does not swallow it.
    // Created once: a re-import must not change the class interrupts raise.
    if (!cancelled_exc) cancelled_exc = PyErr_NewExceptionWithDoc(
        "_slither_host.Cancelled",
        "Raised inside a Python function whose Go caller cancelled the call.",
        PyExc_BaseException, NULL);
    if (!cancelled_exc || PyModule_AddObjectRef(m, "Cancelled", cancelled_exc) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    if (!host_error_exc) host_error_exc = PyErr_NewExceptionWithDoc(
        "_slither_host.HostError",
        "A host call failed on the Go side; the message is the Go error's text.",
        PyExc_Exception, NULL);
    if (!host_error_exc || PyModule_AddObjectRef(m, "HostError", host_error_exc) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    if (!view_error_exc) view_error_exc = PyErr_NewExceptionWithDoc(
        "_slither_host.ViewError",
        "A store view failed, was unknown or out of scope, or timed out; the message is the Go error's text.",
        host_error_exc, NULL);
    if (!view_error_exc || PyModule_AddObjectRef(m, "ViewError", view_error_exc) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}

static char *status_message(const char *what, PyStatus st) {
    const char *msg = st.err_msg ? st.err_msg : "unknown error";
    const char *fn = st.func ? st.func : "";
    size_t n = strlen(what) + strlen(msg) + strlen(fn) + 16;
    char *s = malloc(n);
    if (s) snprintf(s, n, "%s: %s%s%s", what, fn, *fn ? ": " : "", msg);
    return s;
}

// audit_hook counts "import" events: the import system raises one for
// each module it finds and loads, and the extension loader one for each
// extension module (the only kind that can turn the GIL back on). It only
// counts, so it costs a string compare per audited operation.
static int audit_hook(const char *event, PyObject *args, void *data) {
    (void)args;
    (void)data;
    if (event[0] == 'i' && strcmp(event, "import") == 0)
        __atomic_fetch_add(&import_count, 1, __ATOMIC_SEQ_CST);
    return 0;
}

uint64_t *slither_import_counter(void) { return &import_count; }

static __thread slither_trace trace_slot;

slither_trace *slither_trace_slot(void) { return &trace_slot; }

static void hex_into(char *dst, const uint8_t *src, size_t n) {
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        dst[2 * i] = digits[src[i] >> 4];
        dst[2 * i + 1] = digits[src[i] & 15];
    }
}

// _slither_host.trace(): this thread's slot, read only when Python asks
// (slither.context()), so an untraced batch pays nothing.
static PyObject *host_trace(PyObject *self, PyObject *unused) {
    if (!trace_slot.valid) Py_RETURN_NONE;
    char t[32], s[16];
    hex_into(t, trace_slot.trace_id, sizeof trace_slot.trace_id);
    hex_into(s, trace_slot.span_id, sizeof trace_slot.span_id);
    return Py_BuildValue("(s#s#)", t, (Py_ssize_t)sizeof t, s, (Py_ssize_t)sizeof s);
}

PyThreadState *slither_initialize(const char *home, const char *executable,
                                  const char **paths, int npaths, int enable_gil,
                                  char **err) {
    PyStatus st;
    PyConfig config;
    *err = NULL;
    if (PyImport_AppendInittab("_slither_host", host_init) < 0) {
        *err = strdup("PyImport_AppendInittab failed");
        return NULL;
    }
    // Before initialization, so that no import is missed.
    if (PySys_AddAuditHook(audit_hook, NULL) < 0) {
        *err = strdup("PySys_AddAuditHook failed");
        return NULL;
    }
    // Isolated: ignores PYTHON* variables and the user site; Go owns signals.
    PyConfig_InitIsolatedConfig(&config);
    config.install_signal_handlers = 0;
    config.faulthandler = 0;
    config.parse_argv = 0;
    // Unbuffered stdio (python -u): the interpreter is never finalized, so
    // nothing would ever flush a buffer, and with stdout a pipe print()
    // output would be lost or arrive late.
    config.buffered_stdio = 0;
    // No limit on int <-> decimal text conversion (the default is 4,300
    // digits): ints of any size cross between Go and Python, and CPython
    // converts large ones in sub-quadratic time since 3.12. The process
    // workers lift the limit the same way.
    config.int_max_str_digits = 0;
#ifdef Py_GIL_DISABLED
    if (enable_gil >= 0) config.enable_gil = enable_gil;
#else
    (void)enable_gil;
#endif
    st = PyConfig_SetBytesString(&config, &config.home, home);
    if (PyStatus_Exception(st)) goto fail;
    st = PyConfig_SetBytesString(&config, &config.executable, executable);
    if (PyStatus_Exception(st)) goto fail;
    st = PyConfig_SetBytesString(&config, &config.program_name, executable);
    if (PyStatus_Exception(st)) goto fail;
    config.module_search_paths_set = 1;
    for (int i = 0; i < npaths; i++) {
        wchar_t *w = Py_DecodeLocale(paths[i], NULL);
        if (!w) {
            *err = strdup("cannot decode a module search path");
            PyConfig_Clear(&config);
            return NULL;
        }
        st = PyWideStringList_Append(&config.module_search_paths, w);
        PyMem_RawFree(w);
        if (PyStatus_Exception(st)) goto fail;
    }
    st = Py_InitializeFromConfig(&config);
    if (PyStatus_Exception(st)) goto fail;
    PyConfig_Clear(&config);
    // Import the host module now: interrupts need its Cancelled class even
    // if no Python code ever imports it.
    PyObject *host = PyImport_ImportModule("_slither_host");
    if (!host) {
        PyErr_Clear();
        *err = strdup("importing the built-in _slither_host module failed");
        return NULL;
    }
    Py_DECREF(host);
    return PyEval_SaveThread();
fail:
    *err = status_message("Py_InitializeFromConfig", st);
    PyConfig_Clear(&config);
    return NULL;
}

int slither_gil_enabled(PyThreadState *ts) {
    PyEval_RestoreThread(ts);
    int on = 1;
    PyObject *fn = PySys_GetObject("_is_gil_enabled"); // borrowed
    if (fn) {
        PyObject *r = PyObject_CallNoArgs(fn);
        if (r) {
            on = PyObject_IsTrue(r);
            Py_DECREF(r);
        } else {
            PyErr_Clear();
        }
    }
    PyEval_SaveThread();
    return on;
}

char *slither_version(PyThreadState *ts) {
    PyEval_RestoreThread(ts);
    char *v = strdup(Py_GetVersion());
    PyEval_SaveThread();
    return v;
}

PyThreadState *slither_thread_new(void) {
    // PyThreadState_New also binds this OS thread's gilstate slot to the new
    // state, so extensions calling PyGILState_Ensure here find it.
    PyThreadState *ts = PyThreadState_New(PyInterpreterState_Main());
    return ts;
}

void slither_thread_delete(PyThreadState *ts) {
    PyEval_RestoreThread(ts);
    PyThreadState_Clear(ts);
    PyThreadState_DeleteCurrent();
}

unsigned long slither_thread_id(PyThreadState *ts) { return ts->thread_id; }

// ---------- errors ----------

// utf8_of returns the UTF-8 bytes of str s (a lone surrogate escaped, so
// no text is lost), or NULL; it never leaves an error set.
static PyObject *utf8_of(PyObject *s) {
    if (!s) return NULL;
    PyObject *b = PyUnicode_AsEncodedString(s, "utf-8", "backslashreplace");
    if (!b) PyErr_Clear();
    return b;
}

// put_text appends the bytes object b as a string, or fallback when b is NULL.
static void put_text(slither_buf *out, PyObject *b, const char *fallback) {
    if (b) buf_str(out, PyBytes_AS_STRING(b), (size_t)PyBytes_GET_SIZE(b));
    else buf_cstr(out, fallback);
}

// format_traceback returns traceback.format_exception(exc) joined, or NULL;
// it never leaves an error set.
static PyObject *format_traceback(PyObject *exc) {
    PyObject *tb = NULL, *lines = NULL, *sep = NULL;
    PyObject *mod = PyImport_ImportModule("traceback");
    if (mod) lines = PyObject_CallMethod(mod, "format_exception", "O", exc);
    if (lines) sep = PyUnicode_FromString("");
    if (sep) tb = PyUnicode_Join(sep, lines);
    if (!tb) PyErr_Clear();
    Py_XDECREF(sep);
    Py_XDECREF(lines);
    Py_XDECREF(mod);
    return tb;
}

// Encodes the raised Python exception as an SLITHER_PYERR record and
// clears it. It takes the exception first, so that no Python code runs
// with an error set, and each step that fails (a __str__ that raises, a
// traceback that cannot be formatted) falls back on its own without
// losing the exception's type or the other parts.
static void encode_pyerr(slither_buf *out) {
    PyObject *exc = PyErr_GetRaisedException(); // the indicator is clear from here on
    out->len = 0;
    buf_byte(out, SLITHER_PYERR);
    if (!exc) {
        buf_cstr(out, "SystemError");
        buf_cstr(out, "error return without exception set");
        buf_cstr(out, "");
        return;
    }
    PyObject *tname = PyType_GetFullyQualifiedName(Py_TYPE(exc));
    if (!tname) PyErr_Clear(); // e.g. a class without __module__
    PyObject *tname8 = utf8_of(tname);
    PyObject *msg = PyObject_Str(exc);
    if (!msg) PyErr_Clear();
    PyObject *msg8 = utf8_of(msg);
    PyObject *tb = format_traceback(exc);
    PyObject *tb8 = utf8_of(tb);
    put_text(out, tname8, Py_TYPE(exc)->tp_name);
    put_text(out, msg8, "<exception str() failed>");
    put_text(out, tb8, "");
    Py_XDECREF(tname);
    Py_XDECREF(tname8);
    Py_XDECREF(msg);
    Py_XDECREF(msg8);
    Py_XDECREF(tb);
    Py_XDECREF(tb8);
    Py_DECREF(exc);
    if (PyErr_Occurred()) PyErr_Clear(); // a failing __del__ of a part must not leak out
}

// ---------- Go -> Python ----------

typedef struct {
    const char *p;
    const char *end;
    int max_depth;
} reader;

static int rd_u64(reader *r, uint64_t *v) {
    if (r->end - r->p < 8) return -1;
    memcpy(v, r->p, 8);
    r->p += 8;
    return 0;
}

static PyObject *corrupt(void) {
    PyErr_SetString(PyExc_SystemError, "slither: corrupt value buffer from Go");
    return NULL;
}

static PyObject *decode(reader *r, int depth) {
    if (r->p >= r->end) return corrupt();
    if (depth > r->max_depth) return corrupt(); // Go enforces the limit first
    char tag = *r->p++;
    uint64_t n;
    switch (tag) {
    case 'N': Py_RETURN_NONE;
    case 'T': Py_RETURN_TRUE;
    case 'F': Py_RETURN_FALSE;
    case 'i': {
        int64_t v;
        if (r->end - r->p < 8) return corrupt();
        memcpy(&v, r->p, 8);
        r->p += 8;
        return PyLong_FromLongLong(v);
    }
    case 'd': {
        double v;
        if (r->end - r->p < 8) return corrupt();
        memcpy(&v, r->p, 8);
        r->p += 8;
        return PyFloat_FromDouble(v);
    }
    case 'I': case 's': case 'b': {
        if (rd_u64(r, &n) < 0 || (uint64_t)(r->end - r->p) < n) return corrupt();
        const char *s = r->p;
        r->p += n;
        if (tag == 'b') return PyBytes_FromStringAndSize(s, (Py_ssize_t)n);
        if (tag == 's') return PyUnicode_DecodeUTF8(s, (Py_ssize_t)n, "strict");
        char *z = malloc(n + 1);
        if (!z) return PyErr_NoMemory();
        memcpy(z, s, n);
        z[n] = 0;
        char *end = NULL;
        PyObject *v = PyLong_FromString(z, &end, 10);
        int whole = end == z + n; // a NUL inside must not cut the number short
        free(z);
        if (v && !whole) {
            Py_DECREF(v);
            return corrupt();
        }
        return v;
    }
    case 'l': {
        if (rd_u64(r, &n) < 0 || n > (uint64_t)(r->end - r->p)) return corrupt();
        PyObject *list = PyList_New((Py_ssize_t)n);
        if (!list) return NULL;
        for (uint64_t i = 0; i < n; i++) {
            PyObject *v = decode(r, depth + 1);
            if (!v) { Py_DECREF(list); return NULL; }
            PyList_SET_ITEM(list, (Py_ssize_t)i, v);
        }
        return list;
    }
    case 'm': {
        if (rd_u64(r, &n) < 0 || n > (uint64_t)(r->end - r->p)) return corrupt();
        PyObject *d = PyDict_New();
        if (!d) return NULL;
        for (uint64_t i = 0; i < n; i++) {
            uint64_t kl;
            if (rd_u64(r, &kl) < 0 || (uint64_t)(r->end - r->p) < kl) { Py_DECREF(d); return corrupt(); }
            PyObject *k = PyUnicode_DecodeUTF8(r->p, (Py_ssize_t)kl, "strict");
            r->p += kl;
            if (!k) { Py_DECREF(d); return NULL; }
            PyObject *v = decode(r, depth + 1);
            if (!v) { Py_DECREF(k); Py_DECREF(d); return NULL; }
            int rc = PyDict_SetItem(d, k, v);
            Py_DECREF(k);
            Py_DECREF(v);
            if (rc < 0) { Py_DECREF(d); return NULL; }
        }
        return d;
    }
    }
    return corrupt();
}

// ---------- Python -> Go ----------

typedef struct {
    slither_buf *out;
    int max_depth;
    // On a conversion failure: reason and the path, built while unwinding.
    char reason[512];
    char path[1024];
    int failed; // 1 conversion error, 2 Python error raised
} writer;

static void path_prepend(writer *w, const char *part) {
    size_t pl = strlen(part), cl = strlen(w->path);
    if (pl + cl + 1 > sizeof(w->path)) return;
    memmove(w->path + pl, w->path, cl + 1);
    memcpy(w->path, part, pl);
}

static int fail_convert(writer *w, const char *fmt, const char *arg) {
    snprintf(w->reason, sizeof(w->reason), fmt, arg);
    w->failed = 1;
    return -1;
}

static int nomem(writer *w) {
    if (!PyErr_Occurred()) PyErr_NoMemory();
    w->failed = 2;
    return -1;
}

static int encode(writer *w, PyObject *o, int depth);

static int encode_item_at(writer *w, PyObject *item, Py_ssize_t i, int depth) {
    int rc = encode(w, item, depth + 1);
    if (rc < 0 && w->failed == 1) {
        char part[32];
        snprintf(part, sizeof(part), "[%zd]", i);
        path_prepend(w, part);
    }
    return rc;
}

static int encode(writer *w, PyObject *o, int depth) {
    slither_buf *b = w->out;
    if (depth > w->max_depth) {
        char lim[32];
        snprintf(lim, sizeof(lim), "%d", w->max_depth);
        return fail_convert(w, "nesting deeper than %s levels", lim);
    }
    if (o == Py_None) return buf_byte(b, 'N') < 0 ? nomem(w) : 0;
    if (PyBool_Check(o)) return buf_byte(b, o == Py_True ? 'T' : 'F') < 0 ? nomem(w) : 0;
    if (PyLong_Check(o)) {
        int overflow = 0;
        long long v = PyLong_AsLongLongAndOverflow(o, &overflow);
        if (v == -1 && PyErr_Occurred()) { w->failed = 2; return -1; }
        if (!overflow) {
            int64_t x = v;
            if (buf_byte(b, 'i') < 0 || buf_put(b, &x, 8) < 0) return nomem(w);
            return 0;
        }
        PyObject *s = PyNumber_ToBase(o, 10);
        if (!s) { w->failed = 2; return -1; }
        Py_ssize_t n;
        const char *t = PyUnicode_AsUTF8AndSize(s, &n);
        if (!t) { Py_DECREF(s); w->failed = 2; return -1; }
        int rc = (buf_byte(b, 'I') < 0 || buf_str(b, t, (size_t)n) < 0) ? nomem(w) : 0;
        Py_DECREF(s);
        return rc;
    }
    if (PyFloat_Check(o)) {
        double v = PyFloat_AS_DOUBLE(o);
        if (buf_byte(b, 'd') < 0 || buf_put(b, &v, 8) < 0) return nomem(w);
        return 0;
    }
    if (PyUnicode_Check(o)) {
        Py_ssize_t n;
        const char *t = PyUnicode_AsUTF8AndSize(o, &n);
        if (!t) {
            PyErr_Clear();
            return fail_convert(w, "str is not valid UTF-8 (it holds a lone surrogate)%s", "");
        }
        if (buf_byte(b, 's') < 0 || buf_str(b, t, (size_t)n) < 0) return nomem(w);
        return 0;
    }
    if (PyBytes_Check(o)) {
        if (buf_byte(b, 'b') < 0 || buf_str(b, PyBytes_AS_STRING(o), (size_t)PyBytes_GET_SIZE(o)) < 0)
            return nomem(w);
        return 0;
    }
    if (PyByteArray_Check(o)) {
        int rc = 0;
        Py_BEGIN_CRITICAL_SECTION(o);
        if (buf_byte(b, 'b') < 0 || buf_str(b, PyByteArray_AS_STRING(o), (size_t)PyByteArray_GET_SIZE(o)) < 0)
            rc = nomem(w);
        Py_END_CRITICAL_SECTION();
        return rc;
    }
    if (PyTuple_Check(o)) {
        Py_ssize_t n = PyTuple_GET_SIZE(o);
        if (buf_byte(b, 'l') < 0 || buf_u64(b, (uint64_t)n) < 0) return nomem(w);
        for (Py_ssize_t i = 0; i < n; i++)
            if (encode_item_at(w, PyTuple_GET_ITEM(o, i), i, depth) < 0) return -1;
        return 0;
    }
    if (PyList_Check(o)) {
        // Another thread may resize the list meanwhile: take strong references
        // one by one and fail clearly if it shrank.
        Py_ssize_t n = PyList_GET_SIZE(o);
        if (buf_byte(b, 'l') < 0 || buf_u64(b, (uint64_t)n) < 0) return nomem(w);
        for (Py_ssize_t i = 0; i < n; i++) {
            PyObject *item = PyList_GetItemRef(o, i);
            if (!item) {
                PyErr_Clear();
                return fail_convert(w, "list changed size while it was converted%s", "");
            }
            int rc = encode_item_at(w, item, i, depth);
            Py_DECREF(item);
            if (rc < 0) return -1;
        }
        return 0;
    }
    if (PyDict_Check(o)) {
        // Snapshot the items under the dict's critical section, then convert
        // without holding it (conversion may recurse into other containers).
        Py_ssize_t n = 0, pos = 0, cap;
        PyObject **kv = NULL;
        int bad = 0;
        Py_BEGIN_CRITICAL_SECTION(o);
        cap = PyDict_GET_SIZE(o);
        kv = PyMem_Malloc(sizeof(PyObject *) * 2 * (size_t)(cap ? cap : 1));
        if (kv) {
            PyObject *k, *v;
            while (n < cap && PyDict_Next(o, &pos, &k, &v)) {
                kv[2 * n] = Py_NewRef(k);
                kv[2 * n + 1] = Py_NewRef(v);
                n++;
            }
        } else {
            bad = 1;
        }
        Py_END_CRITICAL_SECTION();
        if (bad) return nomem(w);
        int rc = 0;
        if (buf_byte(b, 'm') < 0 || buf_u64(b, (uint64_t)n) < 0) rc = nomem(w);
        for (Py_ssize_t i = 0; rc == 0 && i < n; i++) {
            PyObject *k = kv[2 * i], *v = kv[2 * i + 1];
            if (!PyUnicode_Check(k)) {
                PyObject *r = PyObject_Repr(k);
                const char *rs = r ? PyUnicode_AsUTF8(r) : NULL;
                if (!rs) { PyErr_Clear(); rs = "?"; }
                char msg[256];
                snprintf(msg, sizeof(msg), "dict key %.120s of type %.60s is not a str", rs, Py_TYPE(k)->tp_name);
                Py_XDECREF(r);
                rc = fail_convert(w, "%s", msg);
                break;
            }
            Py_ssize_t kl;
            const char *ks = PyUnicode_AsUTF8AndSize(k, &kl);
            if (!ks) {
                PyErr_Clear();
                rc = fail_convert(w, "dict key is not valid UTF-8 (it holds a lone surrogate)%s", "");
                break;
            }
            if (buf_str(b, ks, (size_t)kl) < 0) { rc = nomem(w); break; }
            rc = encode(w, v, depth + 1);
            if (rc < 0 && w->failed == 1) {
                char part[96];
                snprintf(part, sizeof(part), "[%.80s]", ks);
                path_prepend(w, part);
            }
        }
        for (Py_ssize_t i = 0; i < 2 * n; i++) Py_DECREF(kv[i]);
        PyMem_Free(kv);
        return rc;
    }
    char tn[128];
    snprintf(tn, sizeof(tn), "%.100s", Py_TYPE(o)->tp_name);
    return fail_convert(w, "Python type '%s' has no Go mapping (supported: None, bool, int, float, str, bytes, bytearray, list, tuple, dict with str keys)", tn);
}

// Encodes result (a new reference, consumed) as an OK record, or an error record.
static int encode_result(PyObject *result, int mode, int max_depth, slither_buf *out) {
    writer w = {.out = out, .max_depth = max_depth};
    out->len = 0;
    if (mode == SLITHER_CALL_BATCH && !PyList_Check(result) && !PyTuple_Check(result)) {
        char msg[200];
        snprintf(msg, sizeof(msg), "a batch function must return a list or tuple, not '%.100s'", Py_TYPE(result)->tp_name);
        Py_DECREF(result);
        buf_byte(out, SLITHER_CONVERT_ERR);
        buf_cstr(out, "");
        buf_cstr(out, msg);
        return SLITHER_CONVERT_ERR;
    }
    int rc = buf_byte(out, SLITHER_OK) < 0 ? nomem(&w) : encode(&w, result, 0);
    Py_DECREF(result);
    if (rc == 0) return SLITHER_OK;
    if (w.failed == 2) {
        encode_pyerr(out);
        return SLITHER_PYERR;
    }
    out->len = 0;
    buf_byte(out, SLITHER_CONVERT_ERR);
    buf_cstr(out, w.path);
    buf_cstr(out, w.reason);
    return SLITHER_CONVERT_ERR;
}

// ---------- calls ----------

PyObject *slither_lookup(PyThreadState *ts, const char *module, const char *name, slither_buf *out) {
    PyEval_RestoreThread(ts);
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
    if (!fn) encode_pyerr(out);
    PyEval_SaveThread();
    return fn;
}

void slither_decref(PyThreadState *ts, PyObject *obj) {
    PyEval_RestoreThread(ts);
    Py_XDECREF(obj);
    PyEval_SaveThread();
}

int slither_call(PyThreadState *ts, PyObject *fn, const char *in, size_t inlen,
                 int mode, int max_depth, slither_buf *out) {
    int status;
    PyEval_RestoreThread(ts);
    reader r = {.p = in, .end = in + inlen, .max_depth = max_depth};
    PyObject *args = decode(&r, 0);
    if (args && !PyList_Check(args)) {
        Py_DECREF(args);
        args = corrupt();
    }
    if (!args) {
        encode_pyerr(out);
        PyEval_SaveThread();
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
    if (!result) {
        encode_pyerr(out);
        status = SLITHER_PYERR;
    } else {
        status = encode_result(result, mode, max_depth, out);
    }
    PyEval_SaveThread();
    return status;
}

int slither_interrupt(PyThreadState *ts, unsigned long tid) {
    PyEval_RestoreThread(ts);
    int n = PyThreadState_SetAsyncExc(tid, cancelled_exc);
    PyEval_SaveThread();
    return n;
}

void slither_clear_interrupt(PyThreadState *ts) {
    PyEval_RestoreThread(ts);
    PyThreadState_SetAsyncExc(ts->thread_id, NULL);
    PyEval_SaveThread();
}

int slither_exec(PyThreadState *ts, const char *module, const char *source, slither_buf *out) {
    PyEval_RestoreThread(ts);
    int rc = 0;
    PyObject *mod = PyImport_AddModuleRef(module);
    PyObject *globals = mod ? PyModule_GetDict(mod) : NULL;
    PyObject *r = globals ? PyRun_String(source, Py_file_input, globals, globals) : NULL;
    if (!r) {
        encode_pyerr(out);
        rc = -1;
    }
    Py_XDECREF(r);
    Py_XDECREF(mod);
    PyEval_SaveThread();
    return rc;
}

// ---------- host calls: Python -> Go, on the calling thread ----------

int slither_buf_set(slither_buf *b, const char *p, size_t n) {
    b->len = 0;
    return buf_put(b, p, n);
}

// host_send detaches the thread state (so that a stop-the-world can
// proceed while Go runs), calls the Go host function of this thread state
// on in (the Go-format list [name, payload], freed here), and decodes its
// answer; a Go error becomes exc with the Go error's text.
static PyObject *host_send(slither_buf *in, PyObject *exc) {
    slither_buf out = {0};
    PyThreadState *ts = PyThreadState_Get();
    PyThreadState *saved = PyEval_SaveThread();
    int status = slitherHostCall((uintptr_t)ts, in->data, in->len, &out);
    PyEval_RestoreThread(saved);
    slither_buf_free(in);
    PyObject *result = NULL;
    if (status == 0) {
        reader r = {.p = out.data, .end = out.data + out.len, .max_depth = SLITHER_MAX_DEPTH};
        result = decode(&r, 0);
    } else {
        PyObject *msg = PyUnicode_DecodeUTF8(out.data ? out.data : "", (Py_ssize_t)out.len, "replace");
        if (msg) {
            PyErr_SetObject(exc, msg);
            Py_DECREF(msg);
        }
    }
    slither_buf_free(&out);
    return result;
}

// host_fail turns a failed encoding into a Python error.
static PyObject *host_fail(writer *w, slither_buf *in, const char *what) {
    slither_buf_free(in);
    if (w->failed == 2) return NULL;
    PyErr_Format(PyExc_TypeError, "%s: argument%s%s cannot go to Go: %s",
                 what, w->path[0] ? " " : "s", w->path, w->reason);
    return NULL;
}

// _slither_host.call(name, args): slither.host_call in the embedded pool.
static PyObject *host_call(PyObject *self, PyObject *args) {
    PyObject *name, *list;
    if (!PyArg_ParseTuple(args, "UO!:call", &name, &PyList_Type, &list)) return NULL;
    slither_buf in = {0};
    writer w = {.out = &in, .max_depth = SLITHER_MAX_DEPTH};
    // The list [name, args], written directly rather than built.
    int rc = (buf_byte(&in, 'l') < 0 || buf_u64(&in, 2) < 0) ? nomem(&w) : encode(&w, name, 1);
    if (rc == 0) rc = encode(&w, list, 1);
    if (rc < 0) return host_fail(&w, &in, "slither.host_call");
    return host_send(&in, host_error_exc);
}

// _slither_host.view(name, **kwargs): slither.view in the embedded pool —
// the host call ["slither.view", [name, kwargs]], encoded straight from
// the call's arguments (vectorcall: no tuple or dict is built).
static PyObject *host_view(PyObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames) {
    if (nargs != 1 || !PyUnicode_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "slither.view(name, **args): pass the view's name (a str) by position and its arguments by keyword");
        return NULL;
    }
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    slither_buf in = {0};
    writer w = {.out = &in, .max_depth = SLITHER_MAX_DEPTH};
    static const char view_name[] = "slither.view";
    int rc = (buf_byte(&in, 'l') < 0 || buf_u64(&in, 2) < 0 || buf_byte(&in, 's') < 0 ||
              buf_str(&in, view_name, sizeof(view_name) - 1) < 0 ||
              buf_byte(&in, 'l') < 0 || buf_u64(&in, 2) < 0) ? nomem(&w) : encode(&w, args[0], 2);
    if (rc == 0 && (buf_byte(&in, 'm') < 0 || buf_u64(&in, (uint64_t)nkw) < 0)) rc = nomem(&w);
    for (Py_ssize_t i = 0; rc == 0 && i < nkw; i++) {
        Py_ssize_t kl;
        const char *ks = PyUnicode_AsUTF8AndSize(PyTuple_GET_ITEM(kwnames, i), &kl);
        if (!ks) { w.failed = 2; rc = -1; break; }
        if (buf_str(&in, ks, (size_t)kl) < 0) { rc = nomem(&w); break; }
        rc = encode(&w, args[nargs + i], 3);
        if (rc < 0 && w.failed == 1) {
            char part[96];
            snprintf(part, sizeof(part), "%.80s", ks);
            path_prepend(&w, part);
        }
    }
    if (rc < 0) return host_fail(&w, &in, "slither.view");
    return host_send(&in, view_error_exc);
}

// codec.c: buffers, error records and the value format shared with codec.go
// (little endian), both ways:
//   'N' None | 'T' True | 'F' False | 'i' int64 | 'I' u64 len + decimal text (big int)
//   'd' float64 | 's' u64 len + UTF-8 | 'b' u64 len + bytes
//   'l' u64 count + values | 'm' u64 count + (u64 len + UTF-8 key, value) pairs
//   'r' u64 index: a large bytes value by reference (SLITHER_REF_MIN bytes or more),
//       entry index of the table that comes with the buffer, never in it: a call's
//       refs (Go memory, pinned by the Go encoder for the call) Go -> Python, a
//       context's kept objects Python -> Go. Without a table (host calls, raw
//       input) the tag is refused, so input bytes cannot name memory.
#include "shim_internal.h"
#include <stdlib.h>
#include <string.h>

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

int buf_put(slither_buf *b, const void *p, size_t n) {
    if (buf_reserve(b, n) < 0) return -1;
    memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

int buf_byte(slither_buf *b, char c) { return buf_put(b, &c, 1); }
int buf_u64(slither_buf *b, uint64_t v) { return buf_put(b, &v, 8); }
int buf_str(slither_buf *b, const char *s, size_t n) {
    if (buf_u64(b, n) < 0) return -1;
    return buf_put(b, s, n);
}
int buf_cstr(slither_buf *b, const char *s) { return buf_str(b, s, s ? strlen(s) : 0); }

int slither_buf_set(slither_buf *b, const char *p, size_t n) {
    b->len = 0;
    return buf_put(b, p, n);
}

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

// ref_bytes makes the bytes of a Go []byte passed by reference: a spare of
// the same size that only r->spares still holds is refilled in place
// (nothing else can see it change: no reference, no buffer export, its
// cached hash reset), else a new one is made and kept as a spare.
static PyObject *ref_bytes(reader *r, const char *p, Py_ssize_t n) {
    PyObject **sp = r->spares;
    if (!sp || n > SLITHER_SPARE_MAX) return PyBytes_FromStringAndSize(p, n);
    int slot = -1, held = -1;
    for (int i = 0; i < SLITHER_SPARES; i++) {
        PyObject *o = sp[i];
        if (!o) {
            if (slot < 0) slot = i;
            continue;
        }
        if (Py_REFCNT(o) != 1) { // in this call's arguments already, or kept by Python
            if (held < 0) held = i;
            continue;
        }
        if (Py_SIZE(o) == n) {
            memcpy(PyBytes_AS_STRING(o), p, (size_t)n);
            _Py_COMP_DIAG_PUSH
            _Py_COMP_DIAG_IGNORE_DEPR_DECLS
            ((PyBytesObject *)o)->ob_shash = -1;
            _Py_COMP_DIAG_POP
            return Py_NewRef(o);
        }
    }
    PyObject *o = PyBytes_FromStringAndSize(p, n);
    if (o) {
        // An empty place, else one whose object is held elsewhere (no spare
        // now: dropping our reference frees nothing in use), else the first.
        if (slot < 0) slot = held >= 0 ? held : 0;
        Py_XSETREF(sp[slot], Py_NewRef(o));
    }
    return o;
}

PyObject *decode(reader *r, int depth) {
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
    case 'r': {
        if (rd_u64(r, &n) < 0 || n >= r->nrefs) return corrupt();
        const slither_ref *ref = &r->refs[n];
        if (ref->n > (uint64_t)PY_SSIZE_T_MAX) return corrupt();
        return ref_bytes(r, (const char *)ref->p, (Py_ssize_t)ref->n); // the one copy
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


void path_prepend(writer *w, const char *part) {
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

int nomem(writer *w) {
    if (!PyErr_Occurred()) PyErr_NoMemory();
    w->failed = 2;
    return -1;
}

static int encode_item_at(writer *w, PyObject *item, Py_ssize_t i, int depth) {
    int rc = encode(w, item, depth + 1);
    if (rc < 0 && w->failed == 1) {
        char part[32];
        snprintf(part, sizeof(part), "[%zd]", i);
        path_prepend(w, part);
    }
    return rc;
}

int encode(writer *w, PyObject *o, int depth) {
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
    if (PyBytes_Check(o) && w->keep && PyBytes_GET_SIZE(o) >= SLITHER_REF_MIN) {
        // Immutable: Go copies it straight from the object, kept alive
        // until Go has (slither_release_kept).
        slither_keep *k = w->keep;
        if (k->n == k->cap) {
            uint64_t cap = k->cap ? 2 * k->cap : 8;
            slither_kept *d = realloc(k->refs, cap * sizeof *d);
            if (!d) return nomem(w);
            k->refs = d;
            k->cap = cap;
        }
        if (buf_byte(b, 'r') < 0 || buf_u64(b, k->n) < 0) return nomem(w);
        k->refs[k->n++] = (slither_kept){
            .p = PyBytes_AS_STRING(o), .n = (uint64_t)PyBytes_GET_SIZE(o), .obj = Py_NewRef(o)};
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
static int encode_result(PyObject *result, int mode, int max_depth, slither_buf *out, slither_keep *keep) {
    writer w = {.out = out, .max_depth = max_depth, .keep = keep};
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

// ---------- for calls.c ----------

PyObject *slither_decode_args(const char *in, size_t inlen, const slither_ref *refs, size_t nrefs, PyObject **spares,
                              int max_depth) {
    reader r = {.p = in, .end = in + inlen, .max_depth = max_depth, .refs = refs, .nrefs = nrefs, .spares = spares};
    PyObject *args = decode(&r, 0);
    if (args && !PyList_Check(args)) {
        Py_DECREF(args);
        args = corrupt();
    }
    return args;
}

int slither_encode_result(PyObject *result, int mode, int max_depth, slither_buf *out, slither_keep *keep) {
    int status = encode_result(result, mode, max_depth, out, keep);
    if (status != SLITHER_OK) slither_drop_kept(keep); // Go reads nothing of a failed result
    return status;
}

void slither_drop_kept(slither_keep *keep) {
    if (!keep) return;
    for (uint64_t i = 0; i < keep->n; i++) Py_DECREF(keep->refs[i].obj);
    keep->n = 0;
}

void slither_encode_pyerr(slither_buf *out) { encode_pyerr(out); }

void slither_put_cancelled(slither_buf *out) {
    out->len = 0;
    buf_byte(out, SLITHER_PYERR);
    buf_cstr(out, "_slither_host.Cancelled");
    buf_cstr(out, "");
    buf_cstr(out, "");
}

void slither_put_host_err(slither_buf *out, const char *msg) {
    out->len = 0;
    buf_byte(out, SLITHER_HOST_ERR);
    buf_cstr(out, msg);
}

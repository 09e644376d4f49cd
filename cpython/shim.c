// shim.c: see shim.h. The runtime (initialization, the _slither_host module,
// the import audit hook, exec) and host calls (Python -> Go on the calling
// thread); the value format is codec.c's.
#define _GNU_SOURCE
#include "shim_internal.h"
#include <dlfcn.h>
#include <string.h>
#include <stdlib.h>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "slither/cpython assumes a little-endian machine"
#endif

PyObject *slither_cancelled_exc; // _slither_host.Cancelled, created at init (calls.c raises it)
// Imports seen by audit_hook; read by Go through slither_import_counter.
static uint64_t import_count;
static PyObject *host_error_exc; // _slither_host.HostError, created at init
static PyObject *view_error_exc; // _slither_host.ViewError(HostError), created at init
static PyObject *host_call(PyObject *self, PyObject *args); // below: they need the codec
static PyObject *host_view(PyObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames);

static PyMethodDef host_methods[] = {
    {"call", host_call, METH_VARARGS,
     "call(name, args: list) -> result of the Go host function `name` (slither.host_call)."},
    {"view", (PyCFunction)(void (*)(void))host_view, METH_FASTCALL | METH_KEYWORDS,
     "view(name, **args) -> result of the store view `name` (slither.view)."},
    {"trace", slither_host_trace, METH_NOARGS,
     "trace() -> (trace_id, span_id) as lowercase hex of the batch running on this thread, or None."},
    {"context", slither_host_context, METH_NOARGS,
     "context() -> (worker_id, session_id, trace_id, span_id) of the direct call (cpython.Caller) running on this thread, or None."},
    {NULL, NULL, 0, NULL},
};

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
    if (!slither_cancelled_exc) slither_cancelled_exc = PyErr_NewExceptionWithDoc(
        "_slither_host.Cancelled",
        "Raised inside a Python function whose Go caller cancelled the call.",
        PyExc_BaseException, NULL);
    if (!slither_cancelled_exc || PyModule_AddObjectRef(m, "Cancelled", slither_cancelled_exc) < 0) {
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

int slither_exec(PyThreadState *ts, const char *module, const char *source, slither_buf *out) {
    PyEval_RestoreThread(ts);
    int rc = 0;
    PyObject *mod = PyImport_AddModuleRef(module);
    PyObject *globals = mod ? PyModule_GetDict(mod) : NULL;
    PyObject *r = globals ? PyRun_String(source, Py_file_input, globals, globals) : NULL;
    if (!r) {
        slither_encode_pyerr(out);
        rc = -1;
    }
    Py_XDECREF(r);
    Py_XDECREF(mod);
    PyEval_SaveThread();
    return rc;
}

// ---------- host calls: Python -> Go, on the calling thread ----------

// host_send detaches the thread state (so that a stop-the-world can
// proceed while Go runs), calls the Go host function of the call running
// on this thread on in (the Go-format list [name, payload], freed here),
// and decodes its answer; a Go error becomes exc with the Go error's text.
// With no Go host function to serve it (none set, no call of ours running
// on this thread, or the thread exiting) it raises exc without entering Go:
// while a thread exits, Go has already let go of it.
static PyObject *host_send(slither_buf *in, PyObject *exc) {
    const char *why = NULL;
    uintptr_t host = slither_current_host(&why);
    if (!host) {
        slither_buf_free(in);
        PyErr_SetString(exc, why);
        return NULL;
    }
    slither_buf out = {0};
    PyThreadState *saved = PyEval_SaveThread();
    int status = slitherHostCall(host, in->data, in->len, &out);
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

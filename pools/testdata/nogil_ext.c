/* A minimal single-phase extension that declares nothing about the GIL:
 * importing it into a free-threaded CPython turns the GIL back on. */
#include <Python.h>

static PyObject *hello(PyObject *self, PyObject *args) { return PyLong_FromLong(42); }

static PyMethodDef methods[] = {
    {"hello", hello, METH_NOARGS, "Returns 42."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_nogil_ext", NULL, -1, methods};

PyMODINIT_FUNC PyInit__nogil_ext(void) { return PyModule_Create(&module); }

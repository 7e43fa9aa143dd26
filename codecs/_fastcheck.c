/*
 * The value model's fast path: is a value plain and inside the model, as it stands?
 *
 * plain(value, max_depth, max_length, bytes_ok, tuples_ok) returns True when the value is
 * made only of None, bool, str, int in [-2**63, 2**63-1], finite float, bytes (when
 * bytes_ok), and dicts (str keys) / lists / tuples (when tuples_ok) of those, within the depth and length limits, with no
 * dict shaped like a reserved map ({"$type", "$value"} or {"$bytes"}). Then the codec
 * needs no conversion and no further check. Anything else returns False, and the Python
 * walker (codecs/_values.py) converts it or raises the precise error: this function never
 * decides that a value is bad, it only proves that a value is good.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>

static PyObject *key_type, *key_bytes;

static int plain(PyObject *v, int depth, int max_depth, Py_ssize_t max_length, int bytes_ok, int tuples_ok);

static int plain_dict(PyObject *d, int depth, int max_depth, Py_ssize_t max_length, int bytes_ok, int tuples_ok) {
    Py_ssize_t n = PyDict_GET_SIZE(d), pos = 0;
    PyObject *k, *v;
    if (depth > max_depth || n > max_length) return 0;
    if (n <= 2) {
        int has_type = PyDict_Contains(d, key_type), has_bytes = PyDict_Contains(d, key_bytes);
        if (has_type < 0 || has_bytes < 0) { PyErr_Clear(); return 0; }
        if (has_type || has_bytes) return 0;  /* maybe reserved: let Python look */
    }
    while (PyDict_Next(d, &pos, &k, &v)) {
        if (!PyUnicode_CheckExact(k)) return 0;
        if (!plain(v, depth, max_depth, max_length, bytes_ok, tuples_ok)) return 0;
    }
    return 1;
}

static int plain_seq(PyObject *s, int depth, int max_depth, Py_ssize_t max_length, int bytes_ok, int tuples_ok) {
    Py_ssize_t n = PySequence_Fast_GET_SIZE(s), i;
    PyObject **items = PySequence_Fast_ITEMS(s);
    if (depth > max_depth || n > max_length) return 0;
    for (i = 0; i < n; i++) {
        if (!plain(items[i], depth, max_depth, max_length, bytes_ok, tuples_ok)) return 0;
    }
    return 1;
}

/* depth: the nesting depth of the container holding v. */
static int plain(PyObject *v, int depth, int max_depth, Py_ssize_t max_length, int bytes_ok, int tuples_ok) {
    if (v == Py_None || v == Py_True || v == Py_False || PyUnicode_CheckExact(v)) return 1;
    if (PyFloat_CheckExact(v)) return isfinite(PyFloat_AS_DOUBLE(v));
    if (PyLong_CheckExact(v)) {
        int overflow = 0;
        PyLong_AsLongLongAndOverflow(v, &overflow);
        if (PyErr_Occurred()) { PyErr_Clear(); return 0; }
        return overflow == 0;
    }
    if (PyDict_CheckExact(v)) return plain_dict(v, depth + 1, max_depth, max_length, bytes_ok, tuples_ok);
    if (PyList_CheckExact(v) || (tuples_ok && PyTuple_CheckExact(v)))
        return plain_seq(v, depth + 1, max_depth, max_length, bytes_ok, tuples_ok);
    if (PyBytes_CheckExact(v)) return bytes_ok;
    return 0;
}

static PyObject *py_plain(PyObject *self, PyObject *args) {
    PyObject *v;
    int max_depth, bytes_ok, tuples_ok;
    Py_ssize_t max_length;
    if (!PyArg_ParseTuple(args, "Oinpp", &v, &max_depth, &max_length, &bytes_ok, &tuples_ok))
        return NULL;
    if (Py_EnterRecursiveCall(" in motadata_actors value check")) { PyErr_Clear(); Py_RETURN_FALSE; }
    int ok = plain(v, 0, max_depth, max_length, bytes_ok, tuples_ok);
    Py_LeaveRecursiveCall();
    if (ok) Py_RETURN_TRUE;
    Py_RETURN_FALSE;
}

static PyMethodDef methods[] = {
    {"plain", py_plain, METH_VARARGS,
     "plain(value, max_depth, max_length, bytes_ok, tuples_ok) -> bool: plain and in the model."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_fastcheck", NULL, -1, methods};

PyMODINIT_FUNC PyInit__fastcheck(void) {
    key_type = PyUnicode_InternFromString("$type");
    key_bytes = PyUnicode_InternFromString("$bytes");
    if (key_type == NULL || key_bytes == NULL) return NULL;
    return PyModule_Create(&module);
}

/*
 * The value model's fast path, and the fast half of strict decoding (codecs/_strict.py).
 *
 * walk() goes over a value once and finds out two things:
 *
 * - Is it plain and inside the model as it stands: made only of None, bool, str, int in
 *   [-2**63, 2**63-1], finite float, bytes (when bytes_ok), and dicts (str keys) / lists /
 *   tuples (when tuples_ok) of those, within the depth and length limits, with no dict
 *   shaped like a reserved map ({"$type", "$value"}, {"$bytes"} or {"$array"})? Then the
 *   codec needs no conversion and no further check. Otherwise the Python walker
 *   (codecs/_values.py) converts it or raises the precise error: the walk never decides
 *   that a value is bad, it only proves that a value is good. plain() asks only this, and stops at the first
 *   thing that is not plain.
 * - When it tallies (the strict checks, on a decoded value): how many entries its dicts
 *   hold, and whether an int outside the model or a float of magnitude >= 2**63 is anywhere
 *   in it; it then walks to the end, whatever it meets.
 *
 * The strict checks (json_check, msgpack_check, cbor_check) take a body's bytes and the
 * value a library decoded from them, and return a verdict: 0 when the body keeps the rules
 * and the walk proved the value plain within the limits (the common case: the codec then
 * skips the walker), else a problem code and/or VERDICT_NOT_PLAIN. A decoded dict keeps one
 * entry per distinct key, so a key repeats exactly when the bytes declare more map entries
 * than the value holds. On a problem, _strict.py asks its exact pure-Python twin for the
 * precise error. The scans read only
 * inside the buffer, whatever it holds, in time linear in its size.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>
#if defined(__SSE2__) && (defined(__GNUC__) || defined(__clang__)) && !defined(FASTCHECK_NO_SSE2)
#include <emmintrin.h>
#define FASTCHECK_SSE2 1
#endif

#define VERDICT_REPEATED_KEY 1 /* more map entries declared than decoded: a key repeats */
#define VERDICT_INT_RANGE 2    /* an int outside [-2**63, 2**63-1] */
#define VERDICT_BIG_FLOAT 3    /* JSON: a float of magnitude >= 2**63, maybe an integer literal */
#define VERDICT_TRAILING 4     /* CBOR: the first item does not end where the body does */
#define VERDICT_NOT_PLAIN 16   /* a flag: the walker has work left (the value is not plain) */

/* How deep walk() recurses before it asks the interpreter's recursion guard: the default
 * max_depth (32) stays below, so the common case pays nothing. */
#define FREE_DEPTH 64

static PyObject *key_type, *key_bytes, *key_array;

typedef struct {
    int max_depth;
    Py_ssize_t max_length;
    int bytes_ok, tuples_ok;
    int tally;          /* walk everything, counting (else stop at the first non-plain) */
    int plain;          /* so far, everything is plain */
    Py_ssize_t members; /* entries of every dict (when tallying) */
    int int_range;      /* an int outside the model */
    int big_float;      /* a float of magnitude >= 2**63 (when tallying) */
} Walk;

/* Note a value that is not plain; whether to go on (1) or stop (0). */
static int not_plain(Walk *w) {
    w->plain = 0;
    return w->tally;
}

static int walk(PyObject *v, int depth, Walk *w);

/* A key of the reserved maps, "$type", "$bytes" or "$array" (k is a str). */
static int reserved_key(PyObject *k) {
    return PyUnicode_GET_LENGTH(k) >= 5 && PyUnicode_READ_CHAR(k, 0) == '$'
           && (PyUnicode_Compare(k, key_type) == 0 || PyUnicode_Compare(k, key_bytes) == 0
               || PyUnicode_Compare(k, key_array) == 0);
}

static int walk_dict(PyObject *d, int depth, Walk *w) {
    Py_ssize_t n = PyDict_GET_SIZE(d), pos = 0;
    PyObject *k, *v;
    int r;
    w->members += n;
    if (w->plain && (depth > w->max_depth || n > w->max_length) && !not_plain(w)) return 0;
    while (PyDict_Next(d, &pos, &k, &v)) {
        if (w->plain) {
            if (!PyUnicode_CheckExact(k)) {
                if (!not_plain(w)) return 0;
            } else if (n <= 2 && reserved_key(k) && !not_plain(w)) {
                return 0; /* maybe a reserved map: let Python look */
            }
        }
        r = walk(v, depth, w);
        if (r <= 0) return r;
    }
    return 1;
}

static int walk_seq(PyObject *s, int depth, Walk *w) {
    Py_ssize_t n = PySequence_Fast_GET_SIZE(s), i;
    PyObject **items = PySequence_Fast_ITEMS(s);
    int r;
    if (w->plain && (depth > w->max_depth || n > w->max_length) && !not_plain(w)) return 0;
    for (i = 0; i < n; i++) {
        r = walk(items[i], depth, w);
        if (r <= 0) return r;
    }
    return 1;
}

/* depth: the nesting depth of the container holding v. 1: go on; 0: stop (not plain);
 * -1: an error is set (RecursionError, tallying past the depth limit). */
static int walk(PyObject *v, int depth, Walk *w) {
    int dict, r;
    if (v == Py_None || v == Py_True || v == Py_False || PyUnicode_CheckExact(v)) return 1;
    if (PyFloat_CheckExact(v)) {
        double x = PyFloat_AS_DOUBLE(v);
        if (w->tally && fabs(x) >= 9223372036854775808.0) w->big_float = 1;
        return isfinite(x) ? 1 : not_plain(w);
    }
    if (PyLong_CheckExact(v)) {
        int overflow = 0;
        PyLong_AsLongLongAndOverflow(v, &overflow);
        if (overflow == 0) return 1;
        w->int_range = 1;
        return not_plain(w);
    }
    dict = PyDict_CheckExact(v);
    if (dict || PyList_CheckExact(v) || (w->tuples_ok && PyTuple_CheckExact(v))) {
        if (depth < w->max_depth && depth < FREE_DEPTH) /* the recursion is bounded here */
            return dict ? walk_dict(v, depth + 1, w) : walk_seq(v, depth + 1, w);
        if (Py_EnterRecursiveCall(" in motadata_actors value check")) return -1;
        r = dict ? walk_dict(v, depth + 1, w) : walk_seq(v, depth + 1, w);
        Py_LeaveRecursiveCall();
        return r;
    }
    if (PyBytes_CheckExact(v) && w->bytes_ok) return 1;
    return not_plain(w);
}

static int int_arg(PyObject *arg, int *out) {
    long v = PyLong_AsLong(arg);
    if (v == -1 && PyErr_Occurred()) return -1;
    *out = v > INT_MAX ? INT_MAX : (v < INT_MIN ? INT_MIN : (int)v);
    return 0;
}

/* plain(value, max_depth, max_length, bytes_ok, tuples_ok) -> bool */
static PyObject *py_plain(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    Walk w = {0, 0, 0, 0, 0, 1, 0, 0, 0};
    int r;
    if (nargs != 5) {
        PyErr_Format(PyExc_TypeError, "plain() takes 5 arguments (%zd given)", nargs);
        return NULL;
    }
    if (int_arg(args[1], &w.max_depth) < 0) return NULL;
    w.max_length = PyLong_AsSsize_t(args[2]);
    if (w.max_length == -1 && PyErr_Occurred()) return NULL;
    if ((w.bytes_ok = PyObject_IsTrue(args[3])) < 0) return NULL;
    if ((w.tuples_ok = PyObject_IsTrue(args[4])) < 0) return NULL;
    if (Py_EnterRecursiveCall(" in motadata_actors value check")) { PyErr_Clear(); Py_RETURN_FALSE; }
    r = walk(args[0], 0, &w);
    Py_LeaveRecursiveCall();
    if (r < 0) PyErr_Clear();
    if (r > 0 && w.plain) Py_RETURN_TRUE;
    Py_RETURN_FALSE;
}

/* The (data, value, max_depth, max_length) of a strict check: the bytes, and the value
 * walked with tallying, as the walker's back() checks it (bytes allowed, no tuples). */
static int strict_args(const char *name, PyObject *const *args, Py_ssize_t nargs, Walk *w,
                       Py_buffer *view, const unsigned char **s, Py_ssize_t *n) {
    if (nargs != 4) {
        PyErr_Format(PyExc_TypeError, "%s() takes 4 arguments (%zd given)", name, nargs);
        return -1;
    }
    w->bytes_ok = 1;
    w->tally = 1;
    w->plain = 1;
    if (int_arg(args[2], &w->max_depth) < 0) return -1;
    w->max_length = PyLong_AsSsize_t(args[3]);
    if (w->max_length == -1 && PyErr_Occurred()) return -1;
    if (walk(args[1], 0, w) < 0) return -1;
    if (PyBytes_CheckExact(args[0])) { /* the common case: no buffer to acquire */
        view->obj = NULL;
        *s = (const unsigned char *)PyBytes_AS_STRING(args[0]);
        *n = PyBytes_GET_SIZE(args[0]);
        return 0;
    }
    if (PyObject_GetBuffer(args[0], view, PyBUF_SIMPLE) < 0) return -1;
    *s = (const unsigned char *)view->buf;
    *n = view->len;
    return 0;
}

static void release_bytes(Py_buffer *view) {
    if (view->obj != NULL) PyBuffer_Release(view);
}

static PyObject *verdict(int v, const Walk *w) {
    return PyLong_FromLong(v | (w->plain ? 0 : VERDICT_NOT_PLAIN));
}

/* -- JSON ------------------------------------------------------------------------------- */

#if defined(FASTCHECK_SSE2)
/* Bit j set where p[j] == c, for the 64 bytes at p. */
static uint64_t mask64(const __m128i x[4], char c) {
    const __m128i v = _mm_set1_epi8(c);
    uint64_t m = 0;
    int k;
    for (k = 3; k >= 0; k--)
        m = (m << 16) | (uint64_t)(unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(x[k], v));
    return m;
}
#endif

#if defined(FASTCHECK_SSE2)
/* The ':' outside strings in the 64 bytes at p, from the state carried in (inside a string;
 * the first byte escaped), which it updates. Their quotes, backslashes and colons become
 * bit masks. Without a backslash, every quote opens or closes a string, so the prefix XOR
 * of the quote mask marks the bytes inside strings (an opening quote and what follows it,
 * up to its closing quote), and the colons outside are counted at once. With one, the set
 * bits are visited in order instead. */
static Py_ssize_t block64(const unsigned char *p, int *inside, int *skip) {
    __m128i x[4];
    uint64_t q, b, c, m, bit;
    Py_ssize_t count = 0;
    int k;
    for (k = 0; k < 4; k++) x[k] = _mm_loadu_si128((const __m128i *)(p + 16 * k));
    q = mask64(x, '"');
    b = mask64(x, '\\');
    c = mask64(x, ':');
    if (b == 0 && !*skip) {
        uint64_t in = q;
        in ^= in << 1;
        in ^= in << 2;
        in ^= in << 4;
        in ^= in << 8;
        in ^= in << 16;
        in ^= in << 32;
        if (*inside) in = ~in;
        *inside = (int)(in >> 63);
        c &= ~in;
#if defined(__POPCNT__)
        return __builtin_popcountll(c);
#else
        for (; c; c &= c - 1) count++; /* a few colons a block: cheaper than libgcc's popcount */
        return count;
#endif
    }
    m = (q | b | c) & ~(uint64_t)*skip;
    *skip = 0;
    while (m) {
        bit = m & (0 - m);
        m ^= bit;
        if (*inside) {
            if (bit & q) {
                *inside = 0;
            } else if (bit & b) { /* the escaped byte, here or in the next block */
                if (bit >> 63) *skip = 1;
                else m &= ~(bit << 1);
            }
        } else if (bit & q) {
            *inside = 1;
        } else if (bit & c) {
            count++;
        }
    }
    return count;
}
#endif

/* JSON text: the ':' outside strings, that is the object members it declares. With SSE2,
 * 64 bytes at a time, the last block padded with zero bytes (which match nothing); else
 * byte by byte, the same way. */
static Py_ssize_t json_members(const unsigned char *s, Py_ssize_t n) {
    Py_ssize_t i = 0, count = 0;
    int inside = 0, skip = 0; /* skip: the next byte is escaped */
#if defined(FASTCHECK_SSE2)
    unsigned char last[64];
    for (; n - i >= 64; i += 64) count += block64(s + i, &inside, &skip);
    if (i < n) {
        memset(last, 0, sizeof last);
        memcpy(last, s + i, (size_t)(n - i));
        count += block64(last, &inside, &skip);
    }
#else
    for (; i < n; i++) {
        unsigned char ch = s[i];
        if (skip) skip = 0;
        else if (inside) {
            if (ch == '"') inside = 0;
            else if (ch == '\\') skip = 1;
        } else if (ch == '"') {
            inside = 1;
        } else if (ch == ':') {
            count++;
        }
    }
#endif
    return count;
}

/* Every ':' in the text, strings included. */
static Py_ssize_t colons(const unsigned char *s, Py_ssize_t n) {
    Py_ssize_t i = 0, count = 0;
#if defined(FASTCHECK_SSE2)
    const __m128i colon = _mm_set1_epi8(':'), zero = _mm_setzero_si128();
    while (n - i >= 16) {
        __m128i sums, acc = zero; /* per byte lane, up to 255 matches (cmpeq gives -1) */
        int k;
        for (k = 0; k < 255 && n - i >= 16; k++, i += 16)
            acc = _mm_sub_epi8(acc, _mm_cmpeq_epi8(_mm_loadu_si128((const __m128i *)(s + i)), colon));
        sums = _mm_sad_epu8(acc, zero);
        count += _mm_cvtsi128_si32(sums) + _mm_extract_epi16(sums, 4);
    }
#endif
    for (; i < n; i++) count += s[i] == ':';
    return count;
}

/* json_check(data, value, max_depth, max_length): value is what orjson decoded from data.
 * Every ':' outside strings declares a member, so when the text holds no more ':' than the
 * value holds members, no key repeats; only when strings hold colons are they told apart,
 * by a scan. */
static PyObject *py_json_check(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    Walk w = {0, 0, 0, 0, 0, 0, 0, 0, 0};
    Py_buffer view;
    const unsigned char *s;
    Py_ssize_t n, declared;
    int v = 0;
    if (strict_args("json_check", args, nargs, &w, &view, &s, &n) < 0) return NULL;
    if (w.int_range) {
        v = VERDICT_INT_RANGE;
    } else {
        declared = colons(s, n);
        if (declared != w.members) declared = json_members(s, n);
        if (declared != w.members) v = VERDICT_REPEATED_KEY;
        else if (w.big_float) v = VERDICT_BIG_FLOAT;
    }
    release_bytes(&view);
    return verdict(v, &w);
}

/* -- MessagePack ------------------------------------------------------------------------ */

static int read_be(const unsigned char *s, Py_ssize_t n, Py_ssize_t *i, int size,
                   unsigned long long *out) {
    unsigned long long v = 0;
    int k;
    if (n - *i < size) return 0;
    for (k = 0; k < size; k++) v = (v << 8) | s[*i + k];
    *i += size;
    *out = v;
    return 1;
}

/* MessagePack: the map entries declared by the first object, or -1 when it is cut short or
 * holds the never-used byte 0xc1. Every item takes a byte, so owing more items than bytes
 * remain is cut short too: the loop runs at most n times. */
static Py_ssize_t msgpack_members(const unsigned char *s, Py_ssize_t n) {
    Py_ssize_t i = 0, count = 0;
    unsigned long long owed = 1, len, items;
    int map;
    while (owed > 0) {
        unsigned char c;
        if (i >= n) return -1;
        c = s[i++];
        owed--;
        len = 0;
        items = 0;
        map = 0;
        if (c <= 0x7f || c >= 0xe0 || c == 0xc0 || c == 0xc2 || c == 0xc3) {
            continue;
        } else if (c <= 0x8f) {
            items = c & 0x0f;
            map = 1;
        } else if (c <= 0x9f) {
            items = c & 0x0f;
        } else if (c <= 0xbf) {
            len = c & 0x1f;
        } else {
            switch (c) {
            case 0xc4: case 0xd9: if (!read_be(s, n, &i, 1, &len)) return -1; break;
            case 0xc5: case 0xda: if (!read_be(s, n, &i, 2, &len)) return -1; break;
            case 0xc6: case 0xdb: if (!read_be(s, n, &i, 4, &len)) return -1; break;
            case 0xc7: if (!read_be(s, n, &i, 1, &len)) return -1; len += 1; break;
            case 0xc8: if (!read_be(s, n, &i, 2, &len)) return -1; len += 1; break;
            case 0xc9: if (!read_be(s, n, &i, 4, &len)) return -1; len += 1; break;
            case 0xca: len = 4; break;
            case 0xcb: len = 8; break;
            case 0xcc: case 0xd0: len = 1; break;
            case 0xcd: case 0xd1: len = 2; break;
            case 0xce: case 0xd2: len = 4; break;
            case 0xcf: case 0xd3: len = 8; break;
            case 0xd4: len = 2; break;
            case 0xd5: len = 3; break;
            case 0xd6: len = 5; break;
            case 0xd7: len = 9; break;
            case 0xd8: len = 17; break;
            case 0xdc: if (!read_be(s, n, &i, 2, &items)) return -1; break;
            case 0xdd: if (!read_be(s, n, &i, 4, &items)) return -1; break;
            case 0xde: if (!read_be(s, n, &i, 2, &items)) return -1; map = 1; break;
            case 0xdf: if (!read_be(s, n, &i, 4, &items)) return -1; map = 1; break;
            default: return -1; /* 0xc1 */
            }
        }
        if (len > (unsigned long long)(n - i)) return -1;
        i += (Py_ssize_t)len;
        if (map) {
            count += (Py_ssize_t)items; /* items <= 2**32 */
            items *= 2;
        }
        if (owed > (unsigned long long)(n - i) || items > (unsigned long long)(n - i) - owed)
            return -1;
        owed += items;
    }
    return count;
}

/* msgpack_check(data, value, max_depth, max_length): value is what msgpack decoded. */
static PyObject *py_msgpack_check(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    Walk w = {0, 0, 0, 0, 0, 0, 0, 0, 0};
    Py_buffer view;
    const unsigned char *s;
    Py_ssize_t n;
    int v = 0;
    if (strict_args("msgpack_check", args, nargs, &w, &view, &s, &n) < 0) return NULL;
    if (w.int_range) v = VERDICT_INT_RANGE;
    else if (msgpack_members(s, n) != w.members) v = VERDICT_REPEATED_KEY;
    release_bytes(&view);
    return verdict(v, &w);
}

/* -- CBOR ------------------------------------------------------------------------------- */

#define CBOR_MAX_OPEN 256

/* CBOR: the offset just past the first data item; -1 when it is cut short or malformed,
 * -2 when more than CBOR_MAX_OPEN indefinite-length items are open at once (the caller
 * then asks the slower exact method). Definite items owed are a counter; each open
 * indefinite item saves the count of its frame until its break. */
static Py_ssize_t cbor_end(const unsigned char *s, Py_ssize_t n) {
    Py_ssize_t i = 0, open = 0;
    unsigned long long owed = 1, val, saved[CBOR_MAX_OPEN];
    for (;;) {
        unsigned char c;
        int major, info;
        if (owed == 0 && open == 0) return i;
        if (i >= n) return -1;
        c = s[i++];
        if (c == 0xff) { /* break: ends the innermost indefinite item, if nothing is owed */
            if (open == 0 || owed != 0) return -1;
            owed = saved[--open];
            continue;
        }
        if (owed > 0) owed--; /* else: one more item of an open indefinite item */
        major = c >> 5;
        info = c & 0x1f;
        if (info < 24) {
            val = (unsigned long long)info;
        } else if (info <= 27) {
            if (!read_be(s, n, &i, 1 << (info - 24), &val)) return -1;
        } else if (info == 31 && major >= 2 && major <= 5) {
            if (open == CBOR_MAX_OPEN) return -2;
            saved[open++] = owed;
            owed = 0;
            continue;
        } else {
            return -1;
        }
        switch (major) {
        case 2: case 3:
            if (val > (unsigned long long)(n - i)) return -1;
            i += (Py_ssize_t)val;
            break;
        case 4: case 5: case 6:
            if (major == 6) val = 1;
            if (val > (unsigned long long)(n - i)) return -1;
            if (major == 5) val *= 2;
            if (owed > (unsigned long long)(n - i) || val > (unsigned long long)(n - i) - owed)
                return -1;
            owed += val;
            break;
        default: /* 0, 1: the value is the argument; 7: simple values and floats */
            break;
        }
    }
}

/* cbor_check(data, value, max_depth, max_length): value is what cbor2 decoded (repeated
 * keys are cbor2's to refuse). */
static PyObject *py_cbor_check(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    Walk w = {0, 0, 0, 0, 0, 0, 0, 0, 0};
    Py_buffer view;
    const unsigned char *s;
    Py_ssize_t n;
    int v = 0;
    if (strict_args("cbor_check", args, nargs, &w, &view, &s, &n) < 0) return NULL;
    if (w.int_range) v = VERDICT_INT_RANGE;
    else if (cbor_end(s, n) != n) v = VERDICT_TRAILING;
    release_bytes(&view);
    return verdict(v, &w);
}

static PyObject *py_cbor_end(PyObject *self, PyObject *arg) {
    Py_buffer view;
    const unsigned char *s;
    Py_ssize_t n, end;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0) return NULL;
    s = (const unsigned char *)view.buf;
    n = view.len;
    end = cbor_end(s, n);
    PyBuffer_Release(&view);
    return PyLong_FromSsize_t(end);
}

#define FASTCALL(f) (PyCFunction)(void (*)(void))(f), METH_FASTCALL

static PyMethodDef methods[] = {
    {"plain", FASTCALL(py_plain),
     "plain(value, max_depth, max_length, bytes_ok, tuples_ok) -> bool: plain and in the model."},
    {"json_check", FASTCALL(py_json_check),
     "json_check(data, value, max_depth, max_length) -> int: a verdict (see the top)."},
    {"msgpack_check", FASTCALL(py_msgpack_check),
     "msgpack_check(data, value, max_depth, max_length) -> int: a verdict (see the top)."},
    {"cbor_check", FASTCALL(py_cbor_check),
     "cbor_check(data, value, max_depth, max_length) -> int: a verdict (see the top)."},
    {"cbor_end", py_cbor_end, METH_O,
     "cbor_end(data) -> int: where the first item ends; -1 malformed, -2 too deep to tell."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_fastcheck", NULL, -1, methods};

PyMODINIT_FUNC PyInit__fastcheck(void) {
    key_type = PyUnicode_InternFromString("$type");
    key_bytes = PyUnicode_InternFromString("$bytes");
    key_array = PyUnicode_InternFromString("$array");
    if (key_type == NULL || key_bytes == NULL || key_array == NULL) return NULL;
    return PyModule_Create(&module);
}

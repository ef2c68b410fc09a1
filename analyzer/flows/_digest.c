/*
 * sha256 and first bytes of many byte runs of the capture, in C.
 *
 * A report hashes every reassembled direction: at 10^6 packets that is ~150,000 directions and
 * ~300,000 payload pieces. The hashing itself takes 0.1 s (OpenSSL, SHA-NI), but through hashlib
 * each piece costs a memoryview slice and a method call, and each direction a hash object and a
 * hexdigest: 0.3-0.4 s more. Here one call hashes every run with the same libcrypto that hashlib
 * uses (looked up with dlopen/dlsym, so no OpenSSL headers or -lcrypto are needed to build), with
 * the GIL released. The module is optional: without it, or without libcrypto's SHA256_* symbols,
 * tcp_data.py does the same with hashlib (tests check both agree).
 *
 * A run is pieces [start, end) of the (offset, length) arrays: its bytes are
 * buf[offsets[i] : offsets[i] + lengths[i]] for i in start..end-1, in that order.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <dlfcn.h>
#include <stdint.h>
#include <string.h>

/* Room for OpenSSL's SHA256_CTX (112 bytes in every release); its layout is never touched. */
typedef struct { _Alignas(16) unsigned char opaque[256]; } sha_ctx;

static int (*sha_init)(sha_ctx *);
static int (*sha_update)(sha_ctx *, const void *, size_t);
static int (*sha_final)(unsigned char *, sha_ctx *);

static int load_libcrypto(void) {
    static int state = 0; /* 0: not tried, 1: loaded, -1: unavailable */
    static const char *names[] = {"libcrypto.so.3", "libcrypto.so.1.1", "libcrypto.so", "libcrypto.dylib", NULL};
    if (state) return state > 0;
    state = -1;
    for (int i = 0; names[i]; i++) {
        void *h = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
        if (!h) continue;
        sha_init = (int (*)(sha_ctx *))dlsym(h, "SHA256_Init");
        sha_update = (int (*)(sha_ctx *, const void *, size_t))dlsym(h, "SHA256_Update");
        sha_final = (int (*)(unsigned char *, sha_ctx *))dlsym(h, "SHA256_Final");
        if (sha_init && sha_update && sha_final) { state = 1; break; }
    }
    return state > 0;
}

typedef struct {
    Py_buffer buf, off, len, start, end;
    Py_ssize_t npieces, nruns;
} runs_args;

static void runs_release(runs_args *a) {
    PyBuffer_Release(&a->buf);
    PyBuffer_Release(&a->off);
    PyBuffer_Release(&a->len);
    PyBuffer_Release(&a->start);
    PyBuffer_Release(&a->end);
}

/* Parse (buf, offsets, lengths, starts, ends) and check every piece lies inside buf. */
static int runs_parse(PyObject *args, runs_args *a, Py_ssize_t *want) {
    memset(a, 0, sizeof(*a));
    int ok = want ? PyArg_ParseTuple(args, "y*y*y*y*y*n", &a->buf, &a->off, &a->len, &a->start, &a->end, want)
                  : PyArg_ParseTuple(args, "y*y*y*y*y*", &a->buf, &a->off, &a->len, &a->start, &a->end);
    if (!ok) return -1;
    if (a->off.len != a->len.len || a->start.len != a->end.len || a->off.len % 8 || a->start.len % 8) {
        PyErr_SetString(PyExc_ValueError, "offsets/lengths and starts/ends must be int64 arrays of equal size");
        runs_release(a);
        return -1;
    }
    a->npieces = a->off.len / 8;
    a->nruns = a->start.len / 8;
    const int64_t *o = a->off.buf, *n = a->len.buf, *s = a->start.buf, *e = a->end.buf;
    for (Py_ssize_t i = 0; i < a->npieces; i++) {
        if (o[i] < 0 || n[i] < 0 || o[i] > a->buf.len || n[i] > a->buf.len - o[i]) {
            PyErr_Format(PyExc_ValueError, "piece %zd (offset %lld, length %lld) is outside the buffer", i,
                         (long long)o[i], (long long)n[i]);
            runs_release(a);
            return -1;
        }
    }
    for (Py_ssize_t r = 0; r < a->nruns; r++) {
        if (s[r] < 0 || s[r] > e[r] || e[r] > a->npieces) {
            PyErr_Format(PyExc_ValueError, "run %zd [%lld, %lld) is outside the pieces", r, (long long)s[r],
                         (long long)e[r]);
            runs_release(a);
            return -1;
        }
    }
    return 0;
}

/* sha256_runs(buf, offsets, lengths, starts, ends) -> bytes: 32 digest bytes per run. */
static PyObject *sha256_runs(PyObject *self, PyObject *args) {
    if (!load_libcrypto()) {
        PyErr_SetString(PyExc_RuntimeError, "libcrypto's SHA256 functions are not available");
        return NULL;
    }
    runs_args a;
    if (runs_parse(args, &a, NULL)) return NULL;
    PyObject *out = PyBytes_FromStringAndSize(NULL, a.nruns * 32);
    if (!out) { runs_release(&a); return NULL; }
    unsigned char *md = (unsigned char *)PyBytes_AS_STRING(out);
    const unsigned char *buf = a.buf.buf;
    const int64_t *o = a.off.buf, *n = a.len.buf, *s = a.start.buf, *e = a.end.buf;
    int failed = 0;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t r = 0; r < a.nruns && !failed; r++) {
        sha_ctx ctx;
        failed = !sha_init(&ctx);
        for (int64_t i = s[r]; i < e[r] && !failed; i++) failed = !sha_update(&ctx, buf + o[i], (size_t)n[i]);
        failed = failed || !sha_final(md + 32 * r, &ctx);
    }
    Py_END_ALLOW_THREADS
    runs_release(&a);
    if (failed) {
        Py_DECREF(out);
        PyErr_SetString(PyExc_RuntimeError, "libcrypto SHA256 failed");
        return NULL;
    }
    return out;
}

/* heads(buf, offsets, lengths, starts, ends, want) -> list of bytes: each run's first `want` bytes. */
static PyObject *heads(PyObject *self, PyObject *args) {
    runs_args a;
    Py_ssize_t want;
    if (runs_parse(args, &a, &want)) return NULL;
    if (want < 0) { runs_release(&a); PyErr_SetString(PyExc_ValueError, "want must be >= 0"); return NULL; }
    PyObject *list = PyList_New(a.nruns);
    if (!list) { runs_release(&a); return NULL; }
    const unsigned char *buf = a.buf.buf;
    const int64_t *o = a.off.buf, *n = a.len.buf, *s = a.start.buf, *e = a.end.buf;
    for (Py_ssize_t r = 0; r < a.nruns; r++) {
        Py_ssize_t total = 0;
        for (int64_t i = s[r]; i < e[r] && total < want; i++) total += n[i] < want - total ? n[i] : want - total;
        PyObject *b = PyBytes_FromStringAndSize(NULL, total);
        if (!b) { Py_DECREF(list); runs_release(&a); return NULL; }
        char *dst = PyBytes_AS_STRING(b);
        Py_ssize_t have = 0;
        for (int64_t i = s[r]; i < e[r] && have < total; i++) {
            Py_ssize_t take = n[i] < total - have ? n[i] : total - have;
            memcpy(dst + have, buf + o[i], (size_t)take);
            have += take;
        }
        PyList_SET_ITEM(list, r, b);
    }
    runs_release(&a);
    return list;
}

static PyObject *available(PyObject *self, PyObject *noargs) { return PyBool_FromLong(load_libcrypto()); }

static PyMethodDef methods[] = {
    {"sha256_runs", sha256_runs, METH_VARARGS, "sha256 of every run of pieces (32 bytes each)."},
    {"heads", heads, METH_VARARGS, "The first `want` bytes of every run of pieces."},
    {"available", available, METH_NOARGS, "Whether libcrypto's SHA256 functions were found."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_digest", NULL, -1, methods};

PyMODINIT_FUNC PyInit__digest(void) { return PyModule_Create(&module); }

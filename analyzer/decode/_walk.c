/*
 * The record walks of the native decoder, in C.
 *
 * Finding where each pcap record (or pcapng block) starts is the only inherently sequential step
 * of decoding: each position depends on the previous record's length. In Python that loop costs
 * ~150 ns per record (0.15 s per million packets, a sixth of the whole decode); here it is a few
 * ns. Everything else stays numpy. The module is optional: when it cannot be built, container.py
 * runs the same walks in Python (both are tested to agree).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

static uint32_t rd32(const unsigned char *p, int swap) {
    uint32_t v;
    memcpy(&v, p, 4);
    if (swap) v = __builtin_bswap32(v);
    return v;
}

/* A growable int64 array returned to Python as a bytes object. */
typedef struct { int64_t *data; Py_ssize_t len, cap; } vec;

static int vec_push(vec *v, int64_t x) {
    if (v->len == v->cap) {
        Py_ssize_t cap = v->cap ? v->cap * 2 : 4096;
        int64_t *d = PyMem_Realloc(v->data, (size_t)cap * sizeof(int64_t));
        if (!d) return -1;
        v->data = d;
        v->cap = cap;
    }
    v->data[v->len++] = x;
    return 0;
}

static PyObject *vec_bytes(vec *v) {
    PyObject *b = PyBytes_FromStringAndSize((const char *)v->data, v->len * (Py_ssize_t)sizeof(int64_t));
    PyMem_Free(v->data);
    return b;
}

/*
 * walk_pcap_range(buf, swap, start, stop) -> (bytes of int64 record-header offsets, end)
 * Record headers from `start` (24 for the whole file), each the previous one's length further
 * on, until the next record would start at or after `stop` (or the file ends); `end` is where
 * it stopped. A walk that ends exactly on another walk's
 * start has found the same chain of records: the two join into the one-walk result.
 */
static PyObject *walk_pcap_range(PyObject *self, PyObject *args) {
    Py_buffer view;
    int swap;
    Py_ssize_t off, stop;
    if (!PyArg_ParseTuple(args, "y*pnn", &view, &swap, &off, &stop)) return NULL;
    const unsigned char *buf = view.buf;
    Py_ssize_t n = view.len;
    vec out = {0};
    int failed = 0;
    Py_BEGIN_ALLOW_THREADS
    while (off + 16 <= n && off < stop) {
        if (vec_push(&out, off)) { failed = 1; break; }
        off += 16 + (Py_ssize_t)rd32(buf + off + 8, swap);
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&view);
    if (failed) { PyMem_Free(out.data); return PyErr_NoMemory(); }
    PyObject *b = vec_bytes(&out);
    if (!b) return NULL;
    return Py_BuildValue("(Nn)", b, off);
}

/* A plausible classic pcap record header at p (and its record inside the file). */
static int plausible(const unsigned char *buf, Py_ssize_t n, Py_ssize_t p, int swap, uint32_t frac_max) {
    if (p + 16 > n) return 0;
    uint32_t frac = rd32(buf + p + 4, swap), cap = rd32(buf + p + 8, swap), wire = rd32(buf + p + 12, swap);
    return frac < frac_max && cap <= wire && wire <= 0x4000000 && p + 16 + (Py_ssize_t)cap <= n;
}

/*
 * pcap_sync(buf, swap, nano, start, limit) -> offset or -1
 * The first offset in [start, limit) where `hops` consecutive plausible record headers chain
 * (each the previous one's length further on): a guess at a record boundary, for a second
 * walk to start from. Only a guess: walk_pcap_range's end confirms it (or the caller walks on).
 */
static PyObject *pcap_sync(PyObject *self, PyObject *args) {
    Py_buffer view;
    int swap, nano;
    Py_ssize_t start, limit, found = -1;
    if (!PyArg_ParseTuple(args, "y*ppnn", &view, &swap, &nano, &start, &limit)) return NULL;
    const unsigned char *buf = view.buf;
    Py_ssize_t n = view.len;
    uint32_t frac_max = nano ? 1000000000u : 1000000u;
    const int hops = 32;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t c = start; c < limit && found < 0; c++) {
        Py_ssize_t p = c;
        int k = 0;
        for (; k < hops && plausible(buf, n, p, swap, frac_max); k++)
            p += 16 + (Py_ssize_t)rd32(buf + p + 8, swap);
        if (k == hops || (k > 0 && p == n)) found = c;
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&view);
    return PyLong_FromSsize_t(found);
}

/*
 * walk_pcapng_epb(buf, start, swap[, stop]) -> (bytes of int64 EPB offsets, stop offset)
 * Follows well-formed Enhanced Packet Blocks from `start` and stops at the first block that is
 * anything else (or malformed): the caller handles that block in Python and calls again. With
 * `stop`, it also stops at the first block at or after `stop` (see walk_pcap_range).
 */
static PyObject *walk_pcapng_epb(PyObject *self, PyObject *args) {
    Py_buffer view;
    Py_ssize_t off, stop = PY_SSIZE_T_MAX;
    int swap;
    if (!PyArg_ParseTuple(args, "y*np|n", &view, &off, &swap, &stop)) return NULL;
    const unsigned char *buf = view.buf;
    Py_ssize_t n = view.len;
    vec out = {0};
    int failed = 0;
    Py_BEGIN_ALLOW_THREADS
    while (off + 12 <= n && off < stop) {
        uint32_t type = rd32(buf + off, swap), len = rd32(buf + off + 4, swap);
        if (type != 6 || len < 32 || (len & 3) || off + (Py_ssize_t)len > n) break;
        if (vec_push(&out, off)) { failed = 1; break; }
        off += len;
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&view);
    if (failed) { PyMem_Free(out.data); return PyErr_NoMemory(); }
    PyObject *b = vec_bytes(&out);
    if (!b) return NULL;
    return Py_BuildValue("(Nn)", b, off);
}

/* A well-formed EPB at p: its length repeated at its end, inside the file. */
static int plausible_epb(const unsigned char *buf, Py_ssize_t n, Py_ssize_t p, int swap) {
    if (p + 12 > n) return 0;
    uint32_t type = rd32(buf + p, swap), len = rd32(buf + p + 4, swap);
    return type == 6 && len >= 32 && !(len & 3) && p + (Py_ssize_t)len <= n &&
           rd32(buf + p + len - 4, swap) == len;
}

/*
 * pcapng_sync(buf, swap, start, limit) -> offset or -1
 * pcap_sync for pcapng: the first 4-byte aligned offset in [start, limit) where 32 well-formed
 * EPBs chain (or chain to the end of the file). A guess, confirmed by the first walk ending on it.
 */
static PyObject *pcapng_sync(PyObject *self, PyObject *args) {
    Py_buffer view;
    int swap;
    Py_ssize_t start, limit, found = -1;
    if (!PyArg_ParseTuple(args, "y*pnn", &view, &swap, &start, &limit)) return NULL;
    const unsigned char *buf = view.buf;
    Py_ssize_t n = view.len;
    const int hops = 32;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t c = (start + 3) & ~(Py_ssize_t)3; c < limit && found < 0; c += 4) {
        Py_ssize_t p = c;
        int k = 0;
        for (; k < hops && plausible_epb(buf, n, p, swap); k++) p += (Py_ssize_t)rd32(buf + p + 4, swap);
        if (k == hops || (k > 0 && p == n)) found = c;
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&view);
    return PyLong_FromSsize_t(found);
}

static PyMethodDef methods[] = {
    {"walk_pcap_range", walk_pcap_range, METH_VARARGS, "Offsets of classic pcap record headers, from an offset to a limit."},
    {"pcap_sync", pcap_sync, METH_VARARGS, "A likely pcap record boundary at or after an offset."},
    {"walk_pcapng_epb", walk_pcapng_epb, METH_VARARGS, "Offsets of consecutive pcapng EPBs."},
    {"pcapng_sync", pcapng_sync, METH_VARARGS, "A likely pcapng EPB boundary at or after an offset."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_walk", NULL, -1, methods};

PyMODINIT_FUNC PyInit__walk(void) { return PyModule_Create(&module); }

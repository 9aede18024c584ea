/*
 * gimtool's compiled sumstats formatter, part of the gimtool._speedups module (registered in
 * _speedups.c as format_rows; used by gimtool.io.sumstats, which has a polars path when the
 * module is not built).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#define _USE_MATH_DEFINES
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "_speedups_buffers.h"

/*
 * Text of summary statistics: the rows of a TSV whose first columns are given as text (prefix)
 * and whose other columns are numbers, floats with SIG significant digits (shortest form, NaN as
 * NA, decimal or scientific notation by the rule of printf's %g) and integers. One pass, no
 * Python objects per value; the GIL is released.
 */
static const double POW10[23] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
                                 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

/* ax * 10^k: one rounding where 10^k is exact (|k| <= 22), a few more beyond (steps of 10^22
 * keep subnormal and huge values finite) */
static double scale10(double ax, int k) {
    for (; k > 22; k -= 22) ax *= 1e22;
    for (; k < -22; k += 22) ax /= 1e22;
    return k >= 0 ? ax * POW10[k] : ax / POW10[-k];
}

static char *put_uint(char *o, unsigned long long v) {
    char tmp[24];
    int n = 0;
    do { tmp[n++] = (char)('0' + v % 10); v /= 10; } while (v);
    while (n) *o++ = tmp[--n];
    return o;
}

static char *put_float(char *o, double x, int sig) {
    if (isnan(x)) { memcpy(o, "NA", 2); return o + 2; }
    if (isinf(x)) { if (x < 0) *o++ = '-'; memcpy(o, "inf", 3); return o + 3; }
    if (x == 0.0) { *o++ = '0'; return o; }
    if (x < 0) { *o++ = '-'; x = -x; }
    const long long lo = (long long)POW10[sig - 1], hi = (long long)POW10[sig];
    int e2;
    frexp(x, &e2); /* x = f 2^e2, f in [0.5, 1): the decimal exponent is within one of this */
    int e = (int)floor((e2 - 1) * 0.30102999566398120);
    long long mant = llround(scale10(x, sig - 1 - e));
    while (mant >= hi) { e += 1; mant = llround(scale10(x, sig - 1 - e)); }
    while (mant < lo) { e -= 1; mant = llround(scale10(x, sig - 1 - e)); }
    if (mant >= hi) { mant /= 10; e += 1; } /* 9.9999995 rounds up to 10 */
    char d[24];
    int nd = 0;
    for (long long v = mant; nd < sig; v /= 10) d[sig - 1 - nd++] = (char)('0' + v % 10);
    while (nd > 1 && d[nd - 1] == '0') nd--; /* shortest: no trailing zeros */
    if (e < -4 || e >= sig) { /* scientific, as %g */
        *o++ = d[0];
        if (nd > 1) { *o++ = '.'; memcpy(o, d + 1, nd - 1); o += nd - 1; }
        *o++ = 'e';
        *o++ = e < 0 ? '-' : '+';
        int ae = e < 0 ? -e : e;
        if (ae < 10) *o++ = '0';
        return put_uint(o, (unsigned long long)ae);
    }
    if (e >= 0) {
        for (int i = 0; i <= e; i++) *o++ = i < nd ? d[i] : '0';
        if (nd > e + 1) { *o++ = '.'; memcpy(o, d + e + 1, nd - e - 1); o += nd - e - 1; }
        return o;
    }
    *o++ = '0';
    *o++ = '.';
    for (int i = 0; i < -e - 1; i++) *o++ = '0';
    memcpy(o, d, nd);
    return o + nd;
}

/* format_rows(prefix bytes, offsets int64 (m+1), kinds str ('f' float64 / 'i' int64 per column),
 *             columns tuple of buffers of m items, sig) -> bytes: for each row i,
 *             prefix[offsets[i]:offsets[i+1]] then each column after a tab, then a newline */
PyObject *gimtool_format_rows(PyObject *self, PyObject *args) {
    PyObject *opre, *ooff, *ocols;
    const char *kinds;
    int sig;
    if (!PyArg_ParseTuple(args, "OOsO!i", &opre, &ooff, &kinds, &PyTuple_Type, &ocols, &sig)) return NULL;
    Py_ssize_t nc = (Py_ssize_t)strlen(kinds);
    if (PyTuple_GET_SIZE(ocols) != nc || nc > 64 || sig < 1 || sig > 17)
        return PyErr_Format(PyExc_ValueError, "format_rows: %zd kinds for %zd columns (at most 64), sig %d (1-17)",
                            nc, PyTuple_GET_SIZE(ocols), sig);
    for (Py_ssize_t c = 0; c < nc; c++)
        if (kinds[c] != 'f' && kinds[c] != 'i') return PyErr_Format(PyExc_ValueError, "format_rows: kind %c", kinds[c]);
    /* b[0] the prefix, b[1] the offsets, b[2 + c] column c */
    Py_buffer b[66];
    BufArg spec[66] = {{opre, 0, 1, "prefix"}, {ooff, 0, 8, "offsets"}};
    for (Py_ssize_t c = 0; c < nc; c++) spec[2 + c] = (BufArg){PyTuple_GET_ITEM(ocols, c), 0, 8, "column"};
    const int nb = (int)(2 + nc);
    if (get_buffers(spec, b, nb) < 0) return NULL;
    const Py_buffer *cols = b + 2;
    const int64_t *offs = b[1].buf;
    Py_ssize_t m = b[1].len / 8 - 1;
    int ok = m >= 0;
    for (Py_ssize_t c = 0; ok && c < nc; c++) ok = cols[c].len == m * 8;
    if (!ok) {
        PyErr_SetString(PyExc_ValueError, "format_rows: a column's length differs from the rows'");
        return done(b, nb, 1);
    }
    for (Py_ssize_t i = 0; ok && i < m; i++) ok = offs[i] >= 0 && offs[i] <= offs[i + 1] && offs[i + 1] <= b[0].len;
    if (!ok) {
        PyErr_SetString(PyExc_ValueError, "format_rows: bad offsets");
        return done(b, nb, 1);
    }
    /* bound: prefix + per value a tab and at most 32 characters + newline */
    Py_ssize_t cap = (m > 0 ? offs[m] - offs[0] : 0) + m * (nc * 33 + 1);
    PyObject *ret = PyBytes_FromStringAndSize(NULL, cap);
    if (ret) {
        char *o = PyBytes_AS_STRING(ret), *start = o;
        const char *p = b[0].buf;
        Py_BEGIN_ALLOW_THREADS
        for (Py_ssize_t i = 0; i < m; i++) {
            memcpy(o, p + offs[i], (size_t)(offs[i + 1] - offs[i]));
            o += offs[i + 1] - offs[i];
            for (Py_ssize_t c = 0; c < nc; c++) {
                *o++ = '\t';
                if (kinds[c] == 'f') {
                    o = put_float(o, ((const double *)cols[c].buf)[i], sig);
                } else {
                    int64_t v = ((const int64_t *)cols[c].buf)[i];
                    if (v < 0) { *o++ = '-'; o = put_uint(o, (unsigned long long)(-(v + 1)) + 1ULL); }
                    else o = put_uint(o, (unsigned long long)v);
                }
            }
            *o++ = '\n';
        }
        Py_END_ALLOW_THREADS
        if (_PyBytes_Resize(&ret, o - start) < 0) ret = NULL;
    }
    release_buffers(b, nb);
    return ret;
}

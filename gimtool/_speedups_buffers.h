/*
 * Buffer-protocol helpers shared by gimtool's C files (_speedups.c, _sumstats_format.c): arrays
 * arrive as objects supporting the buffer protocol (numpy arrays, bytes), so no numpy headers are
 * needed to build. Include after <Python.h> (with PY_SSIZE_T_CLEAN defined).
 */
#ifndef GIMTOOL_SPEEDUPS_BUFFERS_H
#define GIMTOOL_SPEEDUPS_BUFFERS_H

static inline int get_buffer(PyObject *obj, Py_buffer *view, int writable, Py_ssize_t itemsize, const char *what) {
    int flags = PyBUF_C_CONTIGUOUS | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, view, flags) < 0) return -1;
    if (view->itemsize != itemsize) {
        PyErr_Format(PyExc_TypeError, "%s: expected items of %zd bytes, got %zd", what, itemsize, view->itemsize);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

/* One argument's buffer: its object, whether it is written, its item size, its name in errors. */
typedef struct {
    PyObject *obj;
    int writable;
    Py_ssize_t itemsize;
    const char *what;
} BufArg;

static inline void release_buffers(Py_buffer *views, int n) {
    for (int i = 0; i < n; i++) PyBuffer_Release(&views[i]);
}

/* All of the buffers or none (an error is set). */
static inline int get_buffers(const BufArg *spec, Py_buffer *views, int n) {
    for (int i = 0; i < n; i++)
        if (get_buffer(spec[i].obj, &views[i], spec[i].writable, spec[i].itemsize, spec[i].what) < 0) {
            release_buffers(views, i);
            return -1;
        }
    return 0;
}

/* The end of a wrapper: release the buffers; None, or NULL when `fail` (its error is set). */
static inline PyObject *done(Py_buffer *views, int n, int fail) {
    release_buffers(views, n);
    if (fail) return NULL;
    Py_RETURN_NONE;
}

#endif

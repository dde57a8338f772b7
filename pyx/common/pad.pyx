"""Explicit padding of an NCHW array for the reflect / replicate / circular modes.

xpad[n, c, r, s] = x[n, c, map(r - pt, h), map(s - pl, w)], with map from boundary.pxd.
"""

from cython cimport floating
from cython.parallel cimport prange
from libc.string cimport memcpy

from boundary cimport coord_map
from openmp_helpers cimport CONVREG_HAVE_OPENMP, omp_get_max_threads

HAVE_OPENMP = bool(CONVREG_HAVE_OPENMP)


def omp_max_threads():
    """omp_get_max_threads() of the OpenMP runtime convreg's kernels run on (1 without
    OpenMP): what OMP_NUM_THREADS and threadpoolctl's limits lower."""
    return omp_get_max_threads()


cdef void _pad_plane(const floating* src, floating* dst, Py_ssize_t h, Py_ssize_t w,
                     Py_ssize_t hp, Py_ssize_t wp, Py_ssize_t pt, Py_ssize_t pl,
                     char mode) noexcept nogil:
    """dst[r, s] = src[map(r - pt), map(s - pl)] for one (hp, wp) plane."""
    cdef Py_ssize_t r, s, sr
    cdef const floating* row
    cdef floating* out
    for r in range(hp):
        sr = coord_map(r - pt, h, mode)
        row = src + sr * w
        out = dst + r * wp
        for s in range(pl):
            out[s] = row[coord_map(s - pl, w, mode)]
        memcpy(out + pl, row, w * sizeof(floating))
        for s in range(pl + w, wp):
            out[s] = row[coord_map(s - pl, w, mode)]


def pad(const floating[:, :, :, ::1] x,     # IN  (n, c, h, w)
        floating[:, :, :, ::1] out,         # OUT (n, c, h + pt + pb, w + pl + pr)
        Py_ssize_t pt, Py_ssize_t pl, char mode, int threads):
    """out := x padded by the boundary mode ('r' reflect, 'e' replicate, 'w' circular)."""
    cdef Py_ssize_t planes = x.shape[0] * x.shape[1]
    cdef Py_ssize_t h = x.shape[2], w = x.shape[3]
    cdef Py_ssize_t hp = out.shape[2], wp = out.shape[3]
    cdef Py_ssize_t p
    if planes == 0:
        return
    cdef const floating* src = &x[0, 0, 0, 0]
    cdef floating* dst = &out[0, 0, 0, 0]
    with nogil:
        for p in prange(planes, schedule='static', num_threads=threads):
            _pad_plane(src + p * h * w, dst + p * hp * wp, h, w, hp, wp, pt, pl, mode)

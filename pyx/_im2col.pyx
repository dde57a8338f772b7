"""im2col into a bounded column buffer, then BLAS GEMM straight into the NCHW result.

Legend (as in convreg._spec): n batch, c_in/c_out channels, h/w input, oh/ow output,
kh/kw kernel, sh/sw stride, dh/dw dilation, pt/pl padding top/left, g groups,
cig/cog channels per group, K = cig*kh*kw (reduction length), ohw = oh*ow. A *band* is a
contiguous range [p0, p1) of flattened output pixels of one image (p = i*ow + j).

For image n, group g and band [p0, p1), with bp = p1 - p0:

    col[(c*kh + u)*kw + v, t] = xpad[n, g*cig + c, i*sh + u*dh, j*sw + v*dw]   (i*ow + j = p0 + t)
    out[n, g*cog : (g+1)*cog, p0:p1] = W_g (cog, K) @ col (K, bp)  (+ bias)

The (cog, bp) result slice is row-major with leading dimension ohw, so the GEMM writes the
NCHW output in place (no transpose pass). BLAS is column-major: the row-major product
C = A @ B is computed as C^T = B^T @ A^T by swapping the operands.

A 1x1, stride-1, unpadded convolution needs no buffer: col is the input itself,
x[n, g*cig : (g+1)*cig] seen as (cig, ohw) with leading dimension ohw.

No kernel is compiled per SIMD variant: the work is memcpy-like copies and BLAS, which
picks its own kernels for the CPU at run time.
"""

from cython cimport floating
from cython.parallel cimport parallel, prange
from libc.string cimport memcpy, memset
from scipy.linalg.cython_blas cimport dgemm, sgemm

from _openmp_helpers cimport CONVREG_HAVE_OPENMP, omp_get_thread_num

HAVE_OPENMP = bool(CONVREG_HAVE_OPENMP)


cdef struct Geom:
    Py_ssize_t n, c_in, h, w, c_out, oh, ow, kh, kw, sh, sw, dh, dw, pt, pl
    Py_ssize_t groups, cig, cog, K, ohw, band, nbands
    bint direct     # 1x1, stride 1, unpadded: GEMM on the input, no buffer
    bint has_bias


cdef inline void _gemm(int m, int n, int k, const floating* a, int lda,
                       const floating* b, int ldb, floating beta,
                       floating* c, int ldc) noexcept nogil:
    """C (m, n; ldc) := A (m, k; lda) @ B (k, n; ldb) + beta * C, all row-major."""
    cdef char no = b'N'
    cdef floating one = 1
    # Column-major view: C^T (n, m) = B^T (n, k) @ A^T (k, m). BLAS never writes A or B.
    if floating is float:
        sgemm(&no, &no, &n, &m, &k, &one, <float*> b, &ldb, <float*> a, &lda,
              &beta, c, &ldc)
    else:
        dgemm(&no, &no, &n, &m, &k, &one, <double*> b, &ldb, <double*> a, &lda,
              &beta, c, &ldc)


cdef inline void _zero(floating* dst, Py_ssize_t count) noexcept nogil:
    if count > 0:
        memset(dst, 0, count * sizeof(floating))


cdef void _fill(const floating* xg,      # IN  (cig, h, w): the planes of one image and group
                floating* col,           # OUT (K, bp)
                const Geom* G, Py_ssize_t p0, Py_ssize_t p1,
                const Py_ssize_t* jlo,   # IN  (kw,) first j with an in-range column for tap v
                const Py_ssize_t* jhi,   # IN  (kw,) one past the last such j
                ) noexcept nogil:
    """col[(c*kh + u)*kw + v, t] := xpad[c, i*sh + u*dh, j*sw + v*dw], i*ow + j = p0 + t."""
    cdef Py_ssize_t bp = p1 - p0, ow = G.ow, sw = G.sw
    cdef Py_ssize_t i0 = p0 // ow, i1 = (p1 - 1) // ow     # first and last output row
    cdef Py_ssize_t c, u, v, i, j, ja, jb, a, e, r
    cdef const floating* plane
    cdef const floating* src
    cdef floating* row
    cdef floating* dst
    for c in range(G.cig):
        plane = xg + c * G.h * G.w
        for u in range(G.kh):
            for v in range(G.kw):
                row = col + ((c * G.kh + u) * G.kw + v) * bp
                for i in range(i0, i1 + 1):
                    ja = p0 - i * ow if i == i0 else 0      # this row's columns in the band
                    jb = p1 - i * ow if i == i1 else ow
                    dst = row + (i * ow + ja - p0)          # dst[j - ja] <- column j
                    r = i * G.sh + u * G.dh - G.pt
                    a = jlo[v] if jlo[v] > ja else ja
                    e = jhi[v] if jhi[v] < jb else jb
                    if r < 0 or r >= G.h or a >= e:
                        _zero(dst, jb - ja)
                        continue
                    _zero(dst, a - ja)
                    src = plane + r * G.w + (a * sw + v * G.dw - G.pl)   # x[r, j*sw + v*dw - pl]
                    if sw == 1:
                        memcpy(dst + (a - ja), src, (e - a) * sizeof(floating))
                    else:
                        for j in range(e - a):
                            dst[a - ja + j] = src[j * sw]
                    _zero(dst + (e - ja), jb - e)


cdef void _task(const floating* x, const floating* wt, const floating* b, floating* out,
                floating* col, const Geom* G, Py_ssize_t t,
                const Py_ssize_t* jlo, const Py_ssize_t* jhi) noexcept nogil:
    """One (image, band) task: every group's fill and GEMM for that band."""
    cdef Py_ssize_t ni = t // G.nbands
    cdef Py_ssize_t p0 = (t % G.nbands) * G.band
    cdef Py_ssize_t p1 = p0 + G.band if p0 + G.band < G.ohw else G.ohw
    cdef Py_ssize_t bp = p1 - p0, g, o, k
    cdef const floating* xg
    cdef const floating* src
    cdef floating* dst
    cdef floating beta = 1 if G.has_bias else 0
    cdef floating bo
    for g in range(G.groups):
        xg = x + (ni * G.c_in + g * G.cig) * G.h * G.w
        dst = out + (ni * G.c_out + g * G.cog) * G.ohw + p0      # (cog, bp; ldc = ohw)
        if G.has_bias:
            for o in range(G.cog):
                bo = b[g * G.cog + o]
                for k in range(bp):
                    dst[o * G.ohw + k] = bo
        if G.direct:
            src = xg + p0                                         # (cig, bp; ld = ohw)
            _gemm(<int> G.cog, <int> bp, <int> G.K, wt + g * G.cog * G.K, <int> G.K,
                  src, <int> G.ohw, beta, dst, <int> G.ohw)
        else:
            _fill(xg, col, G, p0, p1, jlo, jhi)                   # (K, bp; ld = bp)
            _gemm(<int> G.cog, <int> bp, <int> G.K, wt + g * G.cog * G.K, <int> G.K,
                  col, <int> bp, beta, dst, <int> G.ohw)


def conv2d(const floating[:, :, :, ::1] x,      # IN  (n, c_in, h, w)
           const floating[:, :, :, ::1] wt,     # IN  (c_out, cig, kh, kw)
           const floating[::1] b,               # IN  (c_out,) or None
           floating[:, :, :, ::1] out,          # OUT (n, c_out, oh, ow)
           floating[::1] work,                  # scratch, >= threads * K * band (unused if direct)
           Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t pt, Py_ssize_t pl,
           Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t groups,
           Py_ssize_t band, int threads):
    """out := conv2d(x, wt) + b, im2col band by band (bands of ``band`` output pixels).

    ``threads`` > 1 runs the (image, band) tasks on that many OpenMP threads, each with
    its own K * band slice of ``work``; the caller must then hold BLAS to one thread.
    """
    cdef Geom G
    G.n, G.c_in, G.h, G.w = x.shape[0], x.shape[1], x.shape[2], x.shape[3]
    G.c_out, G.kh, G.kw = wt.shape[0], wt.shape[2], wt.shape[3]
    G.oh, G.ow = out.shape[2], out.shape[3]
    G.sh, G.sw, G.dh, G.dw, G.pt, G.pl = sh, sw, dh, dw, pt, pl
    G.groups, G.cig, G.cog = groups, wt.shape[1], G.c_out // groups
    G.K = G.cig * G.kh * G.kw
    G.ohw = G.oh * G.ow
    G.direct = G.kh == 1 and G.kw == 1 and sh == 1 and sw == 1 and G.oh == G.h and \
        G.ow == G.w and pt == 0 and pl == 0
    G.has_bias = b is not None
    if band < 1 or band > G.ohw:
        band = G.ohw
    G.band = band
    G.nbands = (G.ohw + band - 1) // band
    if threads < 1:
        threads = 1
    if not G.direct and work.shape[0] < threads * G.K * band:
        raise ValueError(f"work holds {work.shape[0]} elements, need {threads * G.K * band}")

    # Per kernel column v: the output columns j whose input column j*sw + v*dw - pl is in
    # [0, w), i.e. jlo[v] <= j < jhi[v] (clipped to [0, ow]).
    cdef Py_ssize_t[64] small_lo, small_hi
    cdef Py_ssize_t v, lo, hi, s0
    import numpy as np
    big = None
    cdef Py_ssize_t[::1] big_mv
    cdef Py_ssize_t* jlo = small_lo
    cdef Py_ssize_t* jhi = small_hi
    if G.kw > 32:
        big = np.empty(2 * G.kw, dtype=np.intp)
        big_mv = big
        jlo = &big_mv[0]
        jhi = &big_mv[G.kw]
    for v in range(G.kw):
        s0 = v * dw - pl                      # input column of j = 0
        lo = 0 if s0 >= 0 else (-s0 + sw - 1) // sw
        hi = 0 if G.w - 1 - s0 < 0 else (G.w - 1 - s0) // sw + 1
        jlo[v] = lo if lo < G.ow else G.ow
        jhi[v] = hi if hi < G.ow else G.ow
        if jhi[v] < jlo[v]:
            jhi[v] = jlo[v]

    cdef const floating* xp = &x[0, 0, 0, 0]
    cdef const floating* wp = &wt[0, 0, 0, 0]
    cdef const floating* bptr = &b[0] if G.has_bias else NULL
    cdef floating* op = &out[0, 0, 0, 0]
    cdef floating* col = &work[0] if work.shape[0] > 0 else NULL
    cdef floating* mine
    cdef Py_ssize_t ntask = G.n * G.nbands, t
    cdef Py_ssize_t per = G.K * band
    if threads == 1 or ntask == 1:
        with nogil:
            for t in range(ntask):
                _task(xp, wp, bptr, op, col, &G, t, jlo, jhi)
    else:
        with nogil, parallel(num_threads=threads):
            mine = col + omp_get_thread_num() * per if col != NULL else NULL
            for t in prange(ntask, schedule='static'):
                _task(xp, wp, bptr, op, mine, &G, t, jlo, jhi)

"""im2col into a bounded column buffer, then BLAS GEMM straight into the NCHW result.

Legend (as in convreg._spec): n batch, c_in/c_out channels, h/w input, oh/ow output,
kh/kw kernel, sh/sw stride, dh/dw dilation, pt/pl padding top/left, g groups,
cig/cog channels per group, K = cig*kh*kw (reduction length), ohw = oh*ow. A *band* is a
contiguous range [p0, p1) of flattened output pixels of one image (p = i*ow + j).

For image n, group g and band [p0, p1) (one *task*), with bp = p1 - p0:

    col[(c*kh + u)*kw + v, t] = xpad[n, g*cig + c, i*sh + u*dh, j*sw + v*dw]   (i*ow + j = p0 + t)
    out[n, g*cog : (g+1)*cog, p0:p1] = W_g (cog, K) @ col (K, bp)  (+ bias)

The (cog, bp) result slice is row-major with leading dimension ohw, so the GEMM writes the
NCHW output in place (no transpose pass). BLAS is column-major: the row-major product
C = A @ B is computed as C^T = B^T @ A^T by swapping the operands.

A 1x1, stride-1, unpadded convolution needs no buffer: col is the input itself,
x[n, g*cig : (g+1)*cig] seen as (cig, ohw) with leading dimension ohw.

The family is built per SIMD variant (convreg._im2col_{baseline,avx2,avx512}). Every
product goes through gemm_product (gemm/gemm.pxd), the GEMM convreg._gemm_<variant> also
wraps: the avx512 and avx2 builds multiply with the register-tiled kernel of gemm/gemm.h
when a group has at least 8 output channels (avx512: 8 output channels x 32 float32 / 16
float64 pixels per tile; avx2: 6 x 16 / 8; the column buffer read in place, bias folded
into the accumulators); every other call goes to BLAS through scipy.linalg.cython_blas.

Mode 3 (avx512 build, float32; stride 1 with ow == w, e.g. 'same' padding, or strided on
stride-phase planes, see _flat_geometry) fuses im2col into the GEMM: no column buffer.
Output pixel q of tap t reads plane element q + off[t] (flat index), valid lanes given
by a per-panel mask; per K-chunk and 32-pixel panel the input is packed (masked loads,
0 for padding, so inf*0 = NaN as torch) into an aligned (kc, 32) panel multiplied by
every 8-row block of W (16-pixel tile for tails). Tasks are (image, group, row part,
pixel part) over OpenMP threads, so batch 1 splits over the threads without filling any
column twice. The C is in im2col/flat.h; the fill of the other modes
in im2col/fill.pxi.
"""

from cython cimport floating
from cython.parallel cimport parallel, prange
from libc.string cimport memcpy, memset

from openmp_helpers cimport CONVREG_HAVE_OPENMP, cr_omp_barrier, omp_get_thread_num

from gemm cimport CR_GEMM_MR, CR_GEMM_NR, CR_HAVE_GEMM, gemm_product

cdef extern from "stride2.h" nogil:
    void cr_copy_stride2_f32(const float* src, Py_ssize_t n, float* dst)
    void cr_copy_stride2_f64(const double* src, Py_ssize_t n, double* dst)

cdef extern from "rowcopy.h" nogil:
    void cr_copy_row_f32(float* dst, const float* src, Py_ssize_t n)
    void cr_copy_row_f64(double* dst, const double* src, Py_ssize_t n)

cdef extern from "flat.h" nogil:
    cdef bint CR_HAVE_FLAT          # the fused mode 3 (avx512 builds)
    cdef Py_ssize_t cr_flat_work(Py_ssize_t cig, Py_ssize_t T, Py_ssize_t ohw, int threads)
    # its parts: masks of a 32-pixel panel, pack a (kc, 32) panel, multiply it by every
    # 8-row block of W, one task, channels per K-chunk
    cdef void cr_flat_masks(Py_ssize_t q0, Py_ssize_t nr, Py_ssize_t hp, Py_ssize_t wp, Py_ssize_t kh, Py_ssize_t kw, const Py_ssize_t* ra, const Py_ssize_t* cb, unsigned* mk)
    cdef void cr_flat_pack_f32(const float* xc, Py_ssize_t hw, Py_ssize_t nc, int T, const Py_ssize_t* off, const unsigned* mk, float* Bp)
    cdef void cr_flat_rows_f32(Py_ssize_t kc, const float* W, Py_ssize_t ldw, const float* Bp, const float* bias, float* C, Py_ssize_t ldc, Py_ssize_t M, Py_ssize_t nr, int acc, const float* Xt, int np, Py_ssize_t dt)
    cdef void cr_flat_task_f32(const float* xg, Py_ssize_t hw, Py_ssize_t cig, int T, const Py_ssize_t* off, const unsigned* masks, Py_ssize_t q0, Py_ssize_t q1, Py_ssize_t cc, const float* W, Py_ssize_t ldw, Py_ssize_t M, const float* bias, float* C, Py_ssize_t ldc, float* Bp, float* Xt)
    cdef Py_ssize_t cr_flat_chunk(Py_ssize_t cig, Py_ssize_t T)
    # the whole call, and the stride-phase planes a strided one reads
    cdef void cr_flat_f32(const float* x, Py_ssize_t cs, Py_ssize_t hp, Py_ssize_t wp, const float* wt, const float* bias, float* out, float* work, Py_ssize_t n, Py_ssize_t c_in, Py_ssize_t c_out, Py_ssize_t oh, Py_ssize_t kh, Py_ssize_t kw, const Py_ssize_t* ra, const Py_ssize_t* cb, const Py_ssize_t* poff, Py_ssize_t groups, int threads, Py_ssize_t mparts, Py_ssize_t pparts)
    cdef void cr_flat_phases(const float* x, Py_ssize_t nc, Py_ssize_t h, Py_ssize_t w, Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t oh, Py_ssize_t ow, float* dst, int threads)

HAVE_OPENMP = bool(CONVREG_HAVE_OPENMP)
HAVE_KERNEL = bool(CR_HAVE_GEMM)    # this build has the GEMM kernel (gemm.h: avx512, avx2)
KERNEL_NR = CR_GEMM_NR              # bytes of pixels per kernel tile
HAVE_FLAT = bool(CR_HAVE_FLAT)      # this build has the fused mode 3 (avx512)


cdef struct Geom:
    Py_ssize_t n, c_in, h, w, c_out, oh, ow, kh, kw, sh, sw, dh, dw, pt, pl
    Py_ssize_t groups, cig, cog, K, ohw, band, nbands, ntask
    bint direct             # 1x1, stride 1, unpadded: GEMM on the input, no buffer
    bint has_bias
    bint own_kernel         # GEMMs through the own kernel (avx512, avx2 builds)
    Py_ssize_t* jlo         # (kw,) per kernel column v: output columns jlo[v] <= j < jhi[v]
    Py_ssize_t* jhi         #       read an input column inside [0, w)


include "fill.pxi"


cdef inline void _locate(const Geom* G, Py_ssize_t t, Py_ssize_t* ni, Py_ssize_t* g,
                         Py_ssize_t* p0, Py_ssize_t* p1) noexcept nogil:
    """Task t = (image ni, group g, band [p0, p1)), bands fastest."""
    cdef Py_ssize_t bi = t % G.nbands
    ni[0] = t // (G.groups * G.nbands)
    g[0] = (t // G.nbands) % G.groups
    p0[0] = bi * G.band
    p1[0] = p0[0] + G.band if p0[0] + G.band < G.ohw else G.ohw


cdef void _task(const floating* x, const floating* wt, const floating* b, floating* out,
                floating* col, const Geom* G, Py_ssize_t t) noexcept nogil:
    """One task on one thread: fill the band's columns, then one GEMM into out."""
    cdef Py_ssize_t ni, g, p0, p1, bp
    _locate(G, t, &ni, &g, &p0, &p1)
    bp = p1 - p0
    cdef const floating* xg = x + (ni * G.c_in + g * G.cig) * G.h * G.w
    cdef floating* dst = out + (ni * G.c_out + g * G.cog) * G.ohw + p0   # (cog, bp; ohw)
    cdef const floating* bg = b + g * G.cog if G.has_bias else NULL
    if G.direct:                                                     # x as (cig, bp; ohw)
        gemm_product(G.cog, bp, G.K, wt + g * G.cog * G.K, G.K, xg + p0, G.ohw, bg, dst,
                 G.ohw, G.own_kernel)
    else:
        _fill(xg, col, G, p0, p1, G.jlo, G.jhi, 0, G.cig)             # (K, bp; bp)
        gemm_product(G.cog, bp, G.K, wt + g * G.cog * G.K, G.K, col, bp, bg, dst, G.ohw,
                 G.own_kernel)


cdef void _run_serial(const floating* x, const floating* wt, const floating* b,
                      floating* out, floating* col, const Geom* G) noexcept nogil:
    cdef Py_ssize_t t
    for t in range(G.ntask):
        _task(x, wt, b, out, col, G, t)


cdef void _run_tasks(const floating* x, const floating* wt, const floating* b,
                     floating* out, floating* col, const Geom* G, int threads) noexcept nogil:
    """Tasks spread over OpenMP threads, each with its own K * band slice of col."""
    cdef Py_ssize_t t
    cdef floating* mine = NULL
    with parallel(num_threads=threads):
        if col != NULL:
            mine = col + omp_get_thread_num() * G.K * G.band
        for t in prange(G.ntask, schedule='dynamic'):     # bands may differ in size
            _task(x, wt, b, out, mine, G, t)


cdef void _run_shared(const floating* x, const floating* wt, const floating* b,
                      floating* out, floating* col, const Geom* G, int threads) noexcept nogil:
    """Tasks one after another, each split over OpenMP threads: the fill by input
    channels, then the GEMM by blocks of output channels (split_m) or of band columns."""
    cdef Py_ssize_t t, ni, g, p0, p1, bp, c, part, lo, hi, ldb
    # Row blocks of at least 24 (>= the kernel's 8) when splitting output channels.
    cdef bint split_m = G.cog >= 32 * threads and G.cog >= G.band
    cdef const floating* xg
    cdef const floating* src
    cdef floating* dst
    cdef const floating* wg
    # (initialised only because the parallel block copies them in as firstprivate)
    t = ni = g = p0 = p1 = bp = ldb = 0
    xg = src = wg = NULL
    dst = NULL
    with parallel(num_threads=threads):
        for t in range(G.ntask):          # every thread walks the tasks; work is shared
            ni = t // (G.groups * G.nbands)   # (assigned here, not through _locate's
            g = (t // G.nbands) % G.groups    #  pointers, so each thread has its own)
            p0 = (t % G.nbands) * G.band
            p1 = p0 + G.band if p0 + G.band < G.ohw else G.ohw
            bp = p1 - p0
            xg = x + (ni * G.c_in + g * G.cig) * G.h * G.w
            dst = out + (ni * G.c_out + g * G.cog) * G.ohw + p0
            wg = wt + g * G.cog * G.K
            if G.direct:
                src = xg + p0
                ldb = G.ohw
            else:
                for c in prange(G.cig, schedule='static'):
                    _fill(xg, col, G, p0, p1, G.jlo, G.jhi, c, c + 1)
                src = col
                ldb = bp
                # Cython ends a prange inside a parallel block without a barrier ("omp
                # for nowait"): every thread's rows of col must be filled before any
                # thread's GEMM reads them all.
                cr_omp_barrier()
            for part in prange(threads, schedule='static'):
                if split_m:     # rows [lo, hi) of the output block, multiples of 8
                    lo = ((G.cog * part // threads) // 8) * 8
                    hi = G.cog if part == threads - 1 else ((G.cog * (part + 1) // threads) // 8) * 8
                    if hi > lo:
                        gemm_product(hi - lo, bp, G.K, wg + lo * G.K, G.K, src, ldb,
                                 b + g * G.cog + lo if G.has_bias else NULL,
                                 dst + lo * G.ohw, G.ohw, G.own_kernel)
                else:           # columns [lo, hi) of the band, multiples of 32
                    lo = ((bp * part // threads) // 32) * 32
                    hi = bp if part == threads - 1 else ((bp * (part + 1) // threads) // 32) * 32
                    if hi > lo:
                        gemm_product(G.cog, hi - lo, G.K, wg, G.K, src + lo, ldb,
                                 b + g * G.cog if G.has_bias else NULL,
                                 dst + lo, G.ohw, G.own_kernel)
            if not G.direct:
                cr_omp_barrier()    # and no thread refills col while another reads it


cdef int _setup(Geom* G, Py_ssize_t n, Py_ssize_t c_in, Py_ssize_t h, Py_ssize_t w,
                Py_ssize_t c_out, Py_ssize_t cig, Py_ssize_t kh, Py_ssize_t kw,
                Py_ssize_t oh, Py_ssize_t ow, Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t pt,
                Py_ssize_t pl, Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t groups,
                Py_ssize_t band, bint has_bias, bint own_kernel) noexcept nogil:
    """Fill G (jlo/jhi must point at kw entries each); returns the band used."""
    cdef Py_ssize_t v, lo, hi, s0
    G.n, G.c_in, G.h, G.w = n, c_in, h, w
    G.c_out, G.cig, G.kh, G.kw, G.oh, G.ow = c_out, cig, kh, kw, oh, ow
    G.sh, G.sw, G.pt, G.pl, G.dh, G.dw = sh, sw, pt, pl, dh, dw
    G.groups, G.cog = groups, c_out // groups
    G.K = cig * kh * kw
    G.ohw = oh * ow
    G.direct = kh == 1 and kw == 1 and sh == 1 and sw == 1 and oh == h and ow == w \
        and pt == 0 and pl == 0
    G.has_bias = has_bias
    G.own_kernel = own_kernel
    if band < 1 or band > G.ohw:
        band = G.ohw
    G.band = band
    G.nbands = (G.ohw + band - 1) // band
    G.ntask = n * groups * G.nbands
    for v in range(kw):
        s0 = v * dw - pl                      # input column read by j = 0
        lo = 0 if s0 >= 0 else (-s0 + sw - 1) // sw
        hi = 0 if w - 1 - s0 < 0 else (w - 1 - s0) // sw + 1
        lo = lo if lo < ow else ow
        hi = hi if hi < ow else ow
        G.jlo[v] = lo
        G.jhi[v] = hi if hi > lo else lo
    return 0


# mode: 0 serial (BLAS may thread), 1 tasks over OpenMP threads, 2 shared tasks.
cdef _entry(const floating[:, :, :, ::1] x, const floating[:, :, :, ::1] wt,
            const floating[::1] b, floating[:, :, :, ::1] out, floating[::1] work,
            Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t pt, Py_ssize_t pl, Py_ssize_t dh,
            Py_ssize_t dw, Py_ssize_t groups, Py_ssize_t band, int threads, int mode,
            bint own_kernel, Py_ssize_t mparts=1, Py_ssize_t pparts=1):
    cdef Geom G
    cdef Py_ssize_t[64] small
    cdef Py_ssize_t[::1] big
    cdef Py_ssize_t kw = wt.shape[3]
    if kw <= 32:
        G.jlo, G.jhi = &small[0], &small[32]
    else:
        import numpy
        big = numpy.empty(2 * kw, dtype=numpy.intp)
        G.jlo, G.jhi = &big[0], &big[kw]
    _setup(&G, x.shape[0], x.shape[1], x.shape[2], x.shape[3], wt.shape[0], wt.shape[1],
           wt.shape[2], kw, out.shape[2], out.shape[3], sh, sw, pt, pl, dh, dw, groups,
           band, b is not None, own_kernel)
    if threads < 1 or mode == 0:
        threads = 1
    if mode == 3:       # fused flat kernel (plan checked: float32, avx512, _flat_geometry)
        if floating is double:
            raise ValueError("mode 3 needs float32")
        else:
            _flat(x, wt, b, out, work, &G, threads, mparts, pparts)
            return
    cdef Py_ssize_t need = 0 if G.direct else (threads if mode == 1 else 1) * G.K * G.band
    if work.shape[0] < need:
        raise ValueError(f"work holds {work.shape[0]} elements, the plan needs {need}")
    cdef const floating* bp = &b[0] if G.has_bias else NULL
    cdef floating* col = &work[0] if work.shape[0] > 0 else NULL
    with nogil:
        if threads == 1 or (mode == 1 and G.ntask == 1):
            _run_serial(&x[0, 0, 0, 0], &wt[0, 0, 0, 0], bp, &out[0, 0, 0, 0], col, &G)
        elif mode == 1:
            _run_tasks(&x[0, 0, 0, 0], &wt[0, 0, 0, 0], bp, &out[0, 0, 0, 0], col, &G, threads)
        else:
            _run_shared(&x[0, 0, 0, 0], &wt[0, 0, 0, 0], bp, &out[0, 0, 0, 0], col, &G, threads)


def conv2d_f32(const float[:, :, :, ::1] x,      # IN  (n, c_in, h, w)
               const float[:, :, :, ::1] wt,     # IN  (c_out, cig, kh, kw)
               const float[::1] b,               # IN  (c_out,) or None
               float[:, :, :, ::1] out,          # OUT (n, c_out, oh, ow)
               float[::1] work,                  # scratch, see conv2d
               Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t pt, Py_ssize_t pl,
               Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t groups,
               Py_ssize_t band, int threads, int mode, bint own_kernel=True,
               Py_ssize_t mparts=1, Py_ssize_t pparts=1):
    """float32 conv2d (see conv2d)."""
    _entry(x, wt, b, out, work, sh, sw, pt, pl, dh, dw, groups, band, threads, mode,
           own_kernel, mparts, pparts)


def conv2d_f64(const double[:, :, :, ::1] x, const double[:, :, :, ::1] wt,
               const double[::1] b, double[:, :, :, ::1] out, double[::1] work,
               Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t pt, Py_ssize_t pl,
               Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t groups,
               Py_ssize_t band, int threads, int mode, bint own_kernel=True):
    """float64 conv2d (see conv2d)."""
    _entry(x, wt, b, out, work, sh, sw, pt, pl, dh, dw, groups, band, threads, mode,
           own_kernel)


def conv2d(x, wt, b, out, work, Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t pt, Py_ssize_t pl,
           Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t groups, Py_ssize_t band,
           int threads=1, int mode=0, bint own_kernel=True, Py_ssize_t mparts=1,
           Py_ssize_t pparts=1):
    """out := conv2d(x, wt) + b, im2col band by band (bands of ``band`` output pixels).

    x (n, c_in, h, w), wt (c_out, c_in/groups, kh, kw), b (c_out,) or None, out
    (n, c_out, oh, ow): C-contiguous, one float dtype; x, wt, b are only read. Tasks are
    (image, group, band). ``mode`` 0 runs them in order on this thread (BLAS may thread
    each GEMM); 1 spreads them over ``threads`` OpenMP threads, each with its own
    K * band slice of ``work`` (length >= threads * K * band); 2 runs them in order, each
    split over ``threads`` OpenMP threads (work >= K * band). In modes 1 and 2 the
    caller holds BLAS to one thread. ``work`` may be empty for a 1x1, stride-1,
    unpadded call, which reads the input directly. ``own_kernel`` (avx512 build, at
    least 8 output channels per group) multiplies with the own kernel (avx512, avx2 builds), else BLAS.
    Mode 3 (avx512 build, float32, >= 8 output channels per group, flat_planes(...) >= 0:
    stride 1 with ow == w, or strided on stride-phase planes): fused im2col + GEMM, no
    column buffer; tasks (image, group, row part, pixel part) with ``mparts`` x
    ``pparts`` parts per (image, group); ``work`` >= flat_work(..., planes).
    """
    if mode == 3:
        conv2d_f32(x, wt, b, out, work, sh, sw, pt, pl, dh, dw, groups, band, threads, mode,
                   own_kernel, mparts, pparts)
        return
    f = conv2d_f32 if out.dtype.itemsize == 4 else conv2d_f64
    f(x, wt, b, out, work, sh, sw, pt, pl, dh, dw, groups, band, threads, mode, own_kernel)


def flat_work(Py_ssize_t cig, Py_ssize_t taps, Py_ssize_t ohw, int threads,
              Py_ssize_t planes=0):
    """Elements of float32 scratch mode 3 needs (0 when this build lacks it), with room
    for ``planes`` stride-phase planes of ohw elements (flat_planes)."""
    if not CR_HAVE_FLAT:
        return 0
    return _flat_need(cig, taps, ohw, threads, planes)


cdef Py_ssize_t _flat_need(Py_ssize_t cig, Py_ssize_t taps, Py_ssize_t ohw, int threads,
                           Py_ssize_t planes) noexcept nogil:
    """Scratch of mode 3: stride 1, cr_flat_work; strided, room for either split of
    _flat (one scratch per thread and image, or one shared) and the planes."""
    if planes == 0:
        return cr_flat_work(cig, taps, ohw, threads)
    return threads * _flat_own(cig, taps, ohw) + planes * ohw


cdef Py_ssize_t _flat_own(Py_ssize_t cig, Py_ssize_t taps, Py_ssize_t ohw) noexcept nogil:
    """A thread's own one-thread scratch when it handles whole images (_flat), padded."""
    return cr_flat_work(cig, taps, ohw, 1) + 16


def flat_planes(Py_ssize_t n, Py_ssize_t c_in, Py_ssize_t h, Py_ssize_t w, Py_ssize_t oh,
                Py_ssize_t ow, Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw,
                Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t pt, Py_ssize_t pl, int threads):
    """Whether mode 3 fits this geometry: -1 if not, else the stride-phase planes it
    holds at once on ``threads`` threads (0 for stride 1, which reads the input itself):
    those of ``_phase_images`` images."""
    cdef Py_ssize_t ra[32]
    cdef Py_ssize_t cb[32]
    cdef Py_ssize_t poff[32 * 32]
    cdef Py_ssize_t per = _flat_geometry(c_in, h, w, oh, ow, kh, kw, sh, sw, dh, dw, pt, pl,
                                         ra, cb, poff)
    return per * _phase_images(n, threads) if per > 0 else per


cdef Py_ssize_t _phase_images(Py_ssize_t n, int threads) noexcept nogil:
    """Images whose stride-phase planes a strided call holds at once: one per thread, so
    each image's planes are read back while the cache still holds them (all the batch's
    at once, 6 MiB for a batch of 8 64-channel 56^2 images, came back from the last-level
    cache: 0.93x the time with this on that layer) and the workspace is bounded by the
    threads, not the batch. With at least one image per thread each thread copies and
    multiplies its own (_flat); else the threads share each image."""
    return min(n, max(1, <Py_ssize_t>threads))


cdef Py_ssize_t _floor_div(Py_ssize_t a, Py_ssize_t b) noexcept nogil:
    return a // b if a >= 0 else -((-a + b - 1) // b)


cdef Py_ssize_t _flat_geometry(Py_ssize_t c_in, Py_ssize_t h, Py_ssize_t w,
                               Py_ssize_t oh, Py_ssize_t ow, Py_ssize_t kh, Py_ssize_t kw,
                               Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t dh, Py_ssize_t dw,
                               Py_ssize_t pt, Py_ssize_t pl, Py_ssize_t* ra, Py_ssize_t* cb,
                               Py_ssize_t* poff) noexcept:
    """The planes mode 3 reads, as cr_flat_f32 takes them (ra, cb, poff: kh, kw, kh*kw
    entries): -1 when the call does not fit, else the number of stride-phase planes of
    one image.

    Stride 1 needs ow == w and reads the input: ra[u] = u*dh - pt, cb[v] = v*dw - pl.
    A strided call reads (oh, ow) phase planes: input row sh*i + u*dh - pt is row
    i + ra[u] of phase rphase[u] (ra = floor((u*dh - pt) / sh)), columns alike; it fits
    when every phase is read by some tap (no plane is copied for nothing) and no tap
    reads an input row or column past the plane's last (ra[u] >= 1 needs
    sh*oh + rphase[u] >= h): every read is then the plane element or its zero padding."""
    cdef Py_ssize_t u, v, e, rseen = 0, cseen = 0
    cdef Py_ssize_t rphase[32]
    cdef Py_ssize_t cphase[32]
    if kh > 32 or kw > 32 or kh < 1 or kw < 1:
        return -1
    # cr_flat_masks compares rows, columns and shifts as 32-bit ints
    if (max(h, w, oh, ow, pt, pl) >= 2 ** 30 or (kh - 1) * dh >= 2 ** 30
            or (kw - 1) * dw >= 2 ** 30):
        return -1
    if sh == 1 and sw == 1:
        if ow != w:
            return -1
        for u in range(kh):
            ra[u] = u * dh - pt
        for v in range(kw):
            cb[v] = v * dw - pl
        for u in range(kh * kw):
            poff[u] = 0
        return 0
    if sh > 32 or sw > 32:
        return -1
    for u in range(kh):
        e = u * dh - pt
        ra[u] = _floor_div(e, sh)
        rphase[u] = e - ra[u] * sh
        rseen |= (<Py_ssize_t> 1) << rphase[u]
        if ra[u] >= 1 and sh * oh + rphase[u] < h:
            return -1
    for v in range(kw):
        e = v * dw - pl
        cb[v] = _floor_div(e, sw)
        cphase[v] = e - cb[v] * sw
        cseen |= (<Py_ssize_t> 1) << cphase[v]
        if cb[v] >= 1 and sw * ow + cphase[v] < w:
            return -1
    if rseen != ((<Py_ssize_t> 1) << sh) - 1 or cseen != ((<Py_ssize_t> 1) << sw) - 1:
        return -1
    for u in range(kh):
        for v in range(kw):
            poff[u * kw + v] = (rphase[u] * sw + cphase[v]) * oh * ow
    return c_in * sh * sw


cdef void _flat(const float[:, :, :, ::1] x, const float[:, :, :, ::1] wt,
                const float[::1] b, float[:, :, :, ::1] out, float[::1] work, const Geom* G,
                int threads, Py_ssize_t mparts, Py_ssize_t pparts) except *:
    """Mode 3: fused im2col + GEMM on the input (stride 1) or on its stride-phase
    planes, copied into the end of work a few images at a time (strided)."""
    cdef Py_ssize_t ra[32]
    cdef Py_ssize_t cb[32]
    cdef Py_ssize_t poff[32 * 32]
    if not CR_HAVE_FLAT:
        raise ValueError("mode 3 needs the avx512 build")
    cdef Py_ssize_t planes = _flat_geometry(G.c_in, G.h, G.w, G.oh, G.ow, G.kh, G.kw,
                                            G.sh, G.sw, G.dh, G.dw, G.pt, G.pl, ra, cb, poff)
    if not (planes >= 0 and G.cog >= CR_GEMM_MR and mparts >= 1 and pparts >= 1
            and G.cog >= 8 * mparts):
        raise ValueError("mode 3 does not fit this call")
    cdef Py_ssize_t T = G.kh * G.kw, fneed = cr_flat_work(G.cig, T, G.ohw, threads)
    cdef Py_ssize_t per = planes, need, i0, nn, chunk = _phase_images(G.n, threads)
    planes *= chunk
    need = _flat_need(G.cig, T, G.ohw, threads, planes)
    if work.shape[0] < need:
        raise ValueError(f"work holds {work.shape[0]} elements, the plan needs {need}")
    cdef const float* bp = &b[0] if G.has_bias else NULL
    cdef Py_ssize_t one = _flat_own(G.cig, T, G.ohw), tw = one + per * G.ohw
    cdef float* mine
    if planes > 0 and threads > 1 and G.n >= threads and mparts == 1 and pparts == 1:
        # A batch: each thread copies one image's phase planes into its own scratch and
        # multiplies them right away, one image after another; no barrier between the
        # copy and the GEMM, and the planes stay in the core that wrote them.
        with nogil, parallel(num_threads=threads):
            mine = &work[0] + omp_get_thread_num() * tw
            for i0 in prange(G.n, schedule='dynamic'):
                cr_flat_phases(&x[i0, 0, 0, 0], G.c_in, G.h, G.w, G.sh, G.sw, G.oh, G.ow,
                               mine + one, 1)
                cr_flat_f32(mine + one, G.sh * G.sw * G.ohw, G.oh, G.ow, &wt[0, 0, 0, 0],
                            bp, &out[i0, 0, 0, 0], mine, 1, G.c_in, G.c_out, G.oh,
                            G.kh, G.kw, ra, cb, poff, G.groups, 1, 1, 1)
        return
    with nogil:
        if planes == 0:
            cr_flat_f32(&x[0, 0, 0, 0], G.h * G.w, G.h, G.w, &wt[0, 0, 0, 0], bp,
                        &out[0, 0, 0, 0], &work[0], G.n, G.c_in, G.c_out, G.oh, G.kh,
                        G.kw, ra, cb, NULL, G.groups, threads, mparts, pparts)
        else:
            i0 = 0
            while i0 < G.n:
                nn = min(G.n - i0, chunk)
                cr_flat_phases(&x[i0, 0, 0, 0], nn * G.c_in, G.h, G.w, G.sh, G.sw, G.oh,
                               G.ow, &work[fneed], threads)
                cr_flat_f32(&work[fneed], G.sh * G.sw * G.ohw, G.oh, G.ow, &wt[0, 0, 0, 0],
                            bp, &out[i0, 0, 0, 0], &work[0], nn, G.c_in, G.c_out, G.oh,
                            G.kh, G.kw, ra, cb, poff, G.groups, threads, mparts, pparts)
                i0 += nn

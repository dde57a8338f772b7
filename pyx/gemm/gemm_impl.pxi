"""Matrix product with a per-row bias: the GEMM the im2col family multiplies with.

    C := bias[:, None] + W @ B        W (m, k), B (k, n), bias (m,) or None, C (m, n)

Legend: m output rows (output channels in im2col), n columns (output pixels), k reduction
length (cig*kh*kw), ld* leading dimension (elements between consecutive rows).

Built per SIMD variant (convreg._gemm_{baseline,avx2,avx512}). The avx512 and avx2 builds
multiply with the register-tiled kernel of gemm.h (avx512: 8 rows x 32 float32 / 16
float64 columns per tile; avx2: 6 rows x 16 / 8; K in chunks that stay in cache) when m
>= MR; smaller products and the baseline build call BLAS (scipy.linalg.cython_blas
sgemm/dgemm after writing the bias into C). The kernel computes every product with one-rounding FMAs, so NaN and inf propagate.
"""

from cython cimport floating
from cython.parallel cimport prange

from gemm cimport CR_GEMM_MR, CR_HAVE_GEMM, blas_gemm, gemm_product

HAVE_KERNEL = bool(CR_HAVE_GEMM)   # this build has the kernel (avx512, avx2)
MR = CR_GEMM_MR                    # the kernel runs for products of at least MR rows


cdef Py_ssize_t _ld(Py_ssize_t rows, Py_ssize_t cols, Py_ssize_t stride, Py_ssize_t cstride,
                    Py_ssize_t item, str name) except -1:
    """Leading dimension in elements of a (rows, cols) view with strides (stride, cstride)."""
    if cols > 1 and cstride != item:
        raise ValueError(f"{name}: the elements of a row must be contiguous")
    if rows <= 1:       # NumPy may give a single row any stride; BLAS wants ld >= cols
        return max(cols, 1)
    if stride % item or stride // item < cols:
        raise ValueError(f"{name}: rows must not overlap (row stride {stride} bytes for "
                         f"{cols} columns of {item} bytes)")
    return stride // item


def gemm(const floating[:, :] W,         # IN  (m, k)
         const floating[:, :] B,         # IN  (k, n)
         const floating[::1] bias,       # IN  (m,) or None
         floating[:, :] C,               # OUT (m, n), may be a sub-view (rows ldc apart)
         bint use_kernel=True):
    """C := bias[:, None] + W @ B (bias None: C := W @ B); float32 or float64, one dtype.

    Each operand needs contiguous rows (unit column stride) but may be a sub-view of a larger array (its row
    stride is the leading dimension), e.g. ``gemm(W, B, None, big[:, 10:20])``. C must not
    overlap W or B. ``use_kernel=False`` takes the BLAS path even where the own kernel
    is built (for testing). The GIL is released while multiplying.
    """
    import numpy
    cdef Py_ssize_t m = W.shape[0], k = W.shape[1], n = B.shape[1]
    cdef Py_ssize_t item = sizeof(floating), o, j
    if B.shape[0] != k or C.shape[0] != m or C.shape[1] != n:
        raise ValueError(f"shapes do not multiply: W {tuple(W.shape)[:2]} @ B "
                         f"{tuple(B.shape)[:2]} -> C {tuple(C.shape)[:2]}")
    if bias is not None and bias.shape[0] != m:
        raise ValueError(f"bias has {bias.shape[0]} elements, W has {m} rows")
    if m == 0 or n == 0:
        return
    if numpy.may_share_memory(C, W) or numpy.may_share_memory(C, B):
        raise ValueError("C must not overlap W or B")
    cdef Py_ssize_t ldw = _ld(m, k, W.strides[0], W.strides[1], item, "W")
    cdef Py_ssize_t ldb = _ld(k, n, B.strides[0], B.strides[1], item, "B")
    cdef Py_ssize_t ldc = _ld(m, n, C.strides[0], C.strides[1], item, "C")
    if max(m, n, k, ldw, ldb, ldc) >= 2 ** 31:
        raise ValueError("gemm: dimensions and leading dimensions must be < 2**31 (BLAS int)")
    cdef const floating* bp = &bias[0] if bias is not None else NULL
    cdef floating* cp = &C[0, 0]
    if k == 0:          # an empty sum: C is the bias (BLAS rejects lda = 0)
        with nogil:
            for o in range(m):
                for j in range(n):
                    cp[o * ldc + j] = bp[o] if bp != NULL else 0
        return
    with nogil:
        gemm_product(m, n, k, &W[0, 0], ldw, &B[0, 0], ldb, bp, cp, ldc, use_kernel)


cdef int _blas_layout(Py_ssize_t rows, Py_ssize_t cols, Py_ssize_t s0, Py_ssize_t s1,
                      Py_ssize_t item, Py_ssize_t* ld) except -1:
    """How BLAS reads a row-major (rows, cols) view with byte strides (s0, s1): 0 when its
    rows are contiguous (leading dimension = row stride), 1 when its columns are (the
    view is the transpose of a row-major array; leading dimension = column stride)."""
    if cols <= 1 or s1 == item:
        if rows > 1 and (s0 % item or s0 // item < cols):
            raise ValueError("matmul: rows must not overlap")
        ld[0] = max(cols, 1) if rows <= 1 else s0 // item
        return 0
    if rows <= 1 or s0 == item:
        if cols > 1 and (s1 % item or s1 // item < rows):
            raise ValueError("matmul: columns must not overlap")
        ld[0] = max(rows, 1) if cols <= 1 else s1 // item
        return 1
    raise ValueError("matmul: an operand needs contiguous rows or contiguous columns")


# Columns of C per thread below which the product is split by rows instead.
MATMUL_MIN_SPLIT = 64


def matmul_into(A, B, C, int threads=1, bint accumulate=False):
    """C := A @ B (``accumulate``: C += A @ B) for float32 / float64 arrays of one dtype:
    A (m, k) or (g, m, k), B (k, n) or (g, k, n), C (m, n) or (g, m, n) C-contiguous. A and
    B may be transposed views (contiguous rows or contiguous columns per matrix).

    The product is cut into blocks of columns (or of rows, for narrow products) over
    ``threads`` OpenMP threads, each block one BLAS call: hold the BLAS pool to one
    thread around this call (``backends/_blas.blas_threads(1)``), so BLAS never starts
    its own workers, which keep spinning for ~0.1 s after a call and stall the next
    OpenMP region on the same cores (measured: a 1.4 ms convolution took 7.4 ms right
    after a 2-thread BLAS weight gradient). The GIL is released while multiplying."""
    import numpy
    a3, b3, c3 = (numpy.asarray(v) for v in (A, B, C))
    if a3.ndim == 2 and b3.ndim == 2 and c3.ndim == 2:
        a3, b3, c3 = a3[None], b3[None], c3[None]
    if a3.ndim != 3 or b3.ndim != 3 or c3.ndim != 3:
        raise ValueError("matmul_into: A, B and C must all be 2-D or all 3-D")
    if not (a3.dtype == b3.dtype == c3.dtype) or a3.dtype not in (numpy.float32, numpy.float64):
        raise TypeError("matmul_into: A, B and C must share one float dtype")
    cdef Py_ssize_t g = a3.shape[0], m = a3.shape[1], k = a3.shape[2], n = b3.shape[2]
    if b3.shape[0] != g or b3.shape[1] != k or c3.shape[0] != g or c3.shape[1] != m \
            or c3.shape[2] != n:
        raise ValueError(f"matmul_into: shapes do not multiply: {a3.shape} @ {b3.shape} -> "
                         f"{c3.shape}")
    if not c3.flags.c_contiguous or not c3.flags.writeable:
        raise ValueError("matmul_into: C must be writeable and C-contiguous")
    if numpy.may_share_memory(c3, a3) or numpy.may_share_memory(c3, b3):
        raise ValueError("matmul_into: C must not overlap A or B")
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    if g == 0 or m == 0 or n == 0:
        return C
    if k == 0:
        if not accumulate:
            c3[...] = 0
        return C
    cdef Py_ssize_t item = a3.itemsize, lda, ldb
    cdef int ta = _blas_layout(m, k, a3.strides[1], a3.strides[2], item, &lda)
    cdef int tb = _blas_layout(k, n, b3.strides[1], b3.strides[2], item, &ldb)
    if g > 1 and (a3.strides[0] % item or b3.strides[0] % item):
        raise ValueError("matmul_into: misaligned batch stride")
    if max(m, n, k, lda, ldb) >= 2 ** 31:
        raise ValueError("matmul_into: dimensions must be < 2**31 (BLAS int)")
    if a3.dtype == numpy.float32:
        _matmul_run[float](a3, b3, c3, g, m, n, k, ta, tb, lda, ldb, threads, accumulate)
    else:
        _matmul_run[double](a3, b3, c3, g, m, n, k, ta, tb, lda, ldb, threads, accumulate)
    return C


cdef void _matmul_run(object a3, object b3, object c3, Py_ssize_t g, Py_ssize_t m,
                      Py_ssize_t n, Py_ssize_t k, int ta, int tb, Py_ssize_t lda,
                      Py_ssize_t ldb, int threads, bint accumulate,
                      floating dummy=0) except *:
    cdef floating* ap = <floating*> <size_t> a3.ctypes.data
    cdef floating* bp = <floating*> <size_t> b3.ctypes.data
    cdef floating* cp = <floating*> <size_t> c3.ctypes.data
    cdef Py_ssize_t item = a3.itemsize
    cdef Py_ssize_t sa = a3.strides[0] // item if g > 1 else 0
    cdef Py_ssize_t sb = b3.strides[0] // item if g > 1 else 0
    cdef Py_ssize_t sc = m * n
    # Blocks: split columns while each block keeps MATMUL_MIN_SPLIT of them, else rows.
    cdef Py_ssize_t want = max(1, threads) if g < threads else 1
    cdef bint by_cols = n >= want * MATMUL_MIN_SPLIT or m < want
    cdef Py_ssize_t span = n if by_cols else m
    cdef Py_ssize_t parts = max(1, min(want, span)), per = (span + parts - 1) // parts
    parts = (span + per - 1) // per
    cdef Py_ssize_t item_i, gi, p, lo, hi
    cdef floating beta = 1 if accumulate else 0
    cdef const floating* a
    cdef const floating* b
    cdef floating* c
    cdef int nt = <int> min(<Py_ssize_t> threads, g * parts)
    for item_i in prange(g * parts, nogil=True, num_threads=nt, schedule='static'):
        gi = item_i // parts
        p = item_i % parts
        lo = p * per
        hi = min(span, lo + per)
        if by_cols:
            a = ap + gi * sa
            b = bp + gi * sb + (lo * ldb if tb else lo)
            c = cp + gi * sc + lo
            blas_gemm(ta, tb, <int> m, <int> (hi - lo), <int> k, a, <int> lda, b,
                        <int> ldb, beta, c, <int> n)
        else:
            a = ap + gi * sa + (lo if ta else lo * lda)
            b = bp + gi * sb
            c = cp + gi * sc + lo * n
            blas_gemm(ta, tb, <int> (hi - lo), <int> n, <int> k, a, <int> lda, b,
                        <int> ldb, beta, c, <int> n)


def gemm_rows(A, B, C, int threads=1):
    """C := A @ B for C-contiguous A (m, k), B (k, n), C (m, n) of one float dtype, cut
    into blocks of whole kernel tiles of rows over ``threads`` OpenMP threads, each block
    one single-threaded ``gemm_product`` (the own kernel, else BLAS: hold the BLAS
    pool to one thread around the call). For products whose reduction is long and whose
    output is small (a pointwise layer's weight gradient: m, n channels, k pixels), where
    a single kernel call leaves the other cores idle. The GIL is released."""
    import numpy
    a, b, c = (numpy.asarray(v) for v in (A, B, C))
    if a.ndim != 2 or b.ndim != 2 or c.ndim != 2:
        raise ValueError("gemm_rows: A, B and C must be 2-D")
    if not (a.dtype == b.dtype == c.dtype) or a.dtype not in (numpy.float32, numpy.float64):
        raise TypeError("gemm_rows: A, B and C must share one float dtype")
    if not (a.flags.c_contiguous and b.flags.c_contiguous and c.flags.c_contiguous) \
            or not c.flags.writeable:
        raise ValueError("gemm_rows: A, B and C must be C-contiguous, C writeable")
    cdef Py_ssize_t m = a.shape[0], k = a.shape[1], n = b.shape[1]
    if b.shape[0] != k or c.shape[0] != m or c.shape[1] != n:
        raise ValueError(f"gemm_rows: shapes do not multiply: {a.shape} @ {b.shape} -> "
                         f"{c.shape}")
    if numpy.may_share_memory(c, a) or numpy.may_share_memory(c, b):
        raise ValueError("gemm_rows: C must not overlap A or B")
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    if m == 0 or n == 0:
        return C
    if k == 0:
        c[...] = 0
        return C
    if max(m, n, k) >= 2 ** 31:
        raise ValueError("gemm_rows: dimensions must be < 2**31 (BLAS int)")
    if a.dtype == numpy.float32:
        _gemm_rows_run[float](a, b, c, m, k, n, threads)
    else:
        _gemm_rows_run[double](a, b, c, m, k, n, threads)
    return C


cdef void _gemm_rows_run(object a, object b, object c, Py_ssize_t m, Py_ssize_t k,
                         Py_ssize_t n, int threads, floating dummy=0) except *:
    cdef floating* ap = <floating*> <size_t> a.ctypes.data
    cdef floating* bp = <floating*> <size_t> b.ctypes.data
    cdef floating* cp = <floating*> <size_t> c.ctypes.data
    # Blocks of whole kernel tiles, two per thread where there are enough rows.
    cdef Py_ssize_t tiles = (m + CR_GEMM_MR - 1) // CR_GEMM_MR
    cdef Py_ssize_t parts = max(1, min(tiles, 2 * <Py_ssize_t> threads))
    cdef Py_ssize_t per = (tiles + parts - 1) // parts * CR_GEMM_MR
    parts = (m + per - 1) // per
    cdef Py_ssize_t it, lo, hi
    cdef int nt = <int> min(<Py_ssize_t> threads, parts)
    for it in prange(parts, nogil=True, num_threads=nt, schedule='dynamic'):
        lo = it * per
        hi = min(m, lo + per)
        gemm_product(hi - lo, n, k, ap + lo * k, k, bp, n, NULL, cp + lo * n, n, True)

"""Matrix product with a per-row bias: the GEMM the im2col family multiplies with.

    C := bias[:, None] + W @ B        W (m, k), B (k, n), bias (m,) or None, C (m, n)

Legend: m output rows (output channels in im2col), n columns (output pixels), k reduction
length (cig*kh*kw), ld* leading dimension (elements between consecutive rows).

Built per SIMD variant (convreg._gemm_{baseline,avx2,avx512}). The avx512 build multiplies
with the register-tiled kernel of gemm.h (8 rows x 32 float32 / 16 float64 columns per
tile, K in chunks that stay in cache) when m >= 8; smaller products and the baseline and
avx2 builds call BLAS (scipy.linalg.cython_blas sgemm/dgemm after writing the bias into
C). The kernel computes every product with one-rounding FMAs, so NaN and inf propagate.
"""

from cython cimport floating

from gemm cimport CR_GEMM_MR, CR_HAVE_GEMM, gemm_product

HAVE_KERNEL = bool(CR_HAVE_GEMM)   # this build has the AVX-512 kernel
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
    overlap W or B. ``use_kernel=False`` takes the BLAS path even where the AVX-512 kernel
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

# The one GEMM of the compiled families: the register-tiled kernel (gemm.h,
# instantiated from gemm_tile.h) where the build has it and the product has at least
# CR_GEMM_MR rows, BLAS (scipy.linalg.cython_blas) otherwise.
#
#   C (m, n; ldc) := bias[:, None] (or 0 when bias is NULL) + A (m, k; lda) @ B (k, n; ldb)
#
# all row-major with leading dimensions (sub-views of larger arrays are fine). C must not
# overlap A or B.

from cython cimport floating
from scipy.linalg.cython_blas cimport dgemm, sgemm

cdef extern from "gemm.h" nogil:
    cdef bint CR_HAVE_GEMM          # this build has the kernel (avx512 and avx2 builds)
    cdef int CR_GEMM_MR             # rows per tile: the kernel needs m >= CR_GEMM_MR
    cdef int CR_GEMM_NR             # bytes of a row per tile (two vectors)
    cdef void cr_gemm_f32(Py_ssize_t M, Py_ssize_t N, Py_ssize_t K, const float* W, Py_ssize_t ldw, const float* B, Py_ssize_t ldb, const float* bias, float* C, Py_ssize_t ldc)
    cdef void cr_gemm_f64(Py_ssize_t M, Py_ssize_t N, Py_ssize_t K, const double* W, Py_ssize_t ldw, const double* B, Py_ssize_t ldb, const double* bias, double* C, Py_ssize_t ldc)
    cdef void cr_gemm_tile_f32(Py_ssize_t K, const float* W, Py_ssize_t ldw, const float* B, Py_ssize_t ldb, const float* bias, float* C, Py_ssize_t ldc, Py_ssize_t nr, int acc, int skip)
    cdef void cr_gemm_tile_f64(Py_ssize_t K, const double* W, Py_ssize_t ldw, const double* B, Py_ssize_t ldb, const double* bias, double* C, Py_ssize_t ldc, Py_ssize_t nr, int acc, int skip)
    cdef void cr_gemm_tile1_f32(Py_ssize_t K, const float* W, Py_ssize_t ldw, const float* B, Py_ssize_t ldb, const float* bias, float* C, Py_ssize_t ldc, Py_ssize_t nr, int acc, int skip)
    cdef void cr_gemm_tile1_f64(Py_ssize_t K, const double* W, Py_ssize_t ldw, const double* B, Py_ssize_t ldb, const double* bias, double* C, Py_ssize_t ldc, Py_ssize_t nr, int acc, int skip)


cdef inline void blas_gemm(bint ta, bint tb, int m, int n, int k, const floating* a,
                           int lda, const floating* b, int ldb, floating beta,
                           floating* c, int ldc) noexcept nogil:
    """C (m, n; ldc) := A (m, k) @ B (k, n) + beta * C, all row-major; ``ta`` / ``tb``: A
    / B stored transposed (their columns contiguous, leading dimension lda / ldb)."""
    cdef char na = b'T' if ta else b'N'
    cdef char nb = b'T' if tb else b'N'
    cdef floating one = 1
    # Column-major view: C^T (n, m) = B^T (n, k) @ A^T (k, m). BLAS never writes A or B.
    if floating is float:
        sgemm(&nb, &na, &n, &m, &k, &one, <float*> b, &ldb, <float*> a, &lda,
              &beta, c, &ldc)
    else:
        dgemm(&nb, &na, &n, &m, &k, &one, <double*> b, &ldb, <double*> a, &lda,
              &beta, c, &ldc)


cdef inline void gemm_product(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, const floating* a,
                              Py_ssize_t lda, const floating* b, Py_ssize_t ldb,
                              const floating* bias, floating* c, Py_ssize_t ldc,
                              bint use_kernel) noexcept nogil:
    """C (m, n; ldc) := bias (per row, or 0 when NULL) + A (m, k; lda) @ B (k, n; ldb).

    k >= 1; BLAS wants int sizes and lda >= k, ldb >= n, ldc >= n.
    """
    cdef Py_ssize_t o, j
    cdef floating bo
    if use_kernel and CR_HAVE_GEMM and m >= CR_GEMM_MR:
        if floating is float:
            cr_gemm_f32(m, n, k, a, lda, b, ldb, bias, c, ldc)
        else:
            cr_gemm_f64(m, n, k, a, lda, b, ldb, bias, c, ldc)
        return
    if bias != NULL:
        for o in range(m):
            bo = bias[o]
            for j in range(n):
                c[o * ldc + j] = bo
    blas_gemm(False, False, <int> m, <int> n, <int> k, a, <int> lda, b, <int> ldb,
              1 if bias != NULL else 0, c, <int> ldc)

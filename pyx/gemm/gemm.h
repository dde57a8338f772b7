/* The register-tiled GEMM of the avx512 and avx2 builds, float32 and float64 from one
 * template (gemm_tile.h), shared by convreg._gemm_<variant> and the im2col family.
 *
 *   cr_gemm_f32 / cr_gemm_f64:  C (M, N; ldc) := bias[:, None] (or 0) + W (M, K; ldw) @ B (K, N; ldb)
 *   cr_gemm_tile_f32 / _f64:    one MR x 2 vectors tile of it (CR_GEMM_NR bytes of a row)
 *   cr_gemm_tile1_f32 / _f64:   one MR x 1 vector tile
 *
 * AVX-512: MR = 8 (16 of the 32 zmm registers accumulate). AVX2: MR = 6 (12 of the 16
 * ymm registers, two for B, one broadcast). In the baseline build CR_HAVE_GEMM is 0 and
 * the entry points are stubs that are never called: the Cython side (gemm.pxd:
 * gemm_product) goes to BLAS. */
#ifndef CONVREG_GEMM_H
#define CONVREG_GEMM_H

#include <stddef.h>

/* K-chunk in float32 elements (1 KiB of a W row); float64 takes the same bytes. */
#ifndef CONVREG_KC
#define CONVREG_KC 256
#endif

#if defined(__AVX512F__) && defined(__FMA__)
#include <immintrin.h>
#define CR_HAVE_GEMM 1
#define CR_GEMM_MR 8
#define CR_GEMM_NR 128
#define CR_GEMM_L2 (1024 * 1024)      /* half of a 2 MiB L2 (Sapphire Rapids) */
#define CR_GEMM_PF_NEXT 0
#define CR_GEMM_DOT_COLS 0

#define CR_T float
#define CR_V __m512
#define CR_MASK __mmask16
#define CR_LANES 16
#define CR_MASK_N(n) ((__mmask16)((1u << (n)) - 1u))
#define CR_LOADU_Z _mm512_maskz_loadu_ps
#define CR_LOADU _mm512_loadu_ps
#define CR_STOREU_M _mm512_mask_storeu_ps
#define CR_STOREU _mm512_storeu_ps
#define CR_SET1 _mm512_set1_ps
#define CR_SETZERO _mm512_setzero_ps
#define CR_FMADD _mm512_fmadd_ps
#define CR_GEMM_KC CONVREG_KC
#define CR_GEMM_TILE cr_gemm_tile_f32
#define CR_GEMM_TILE_BODY cr_gemm_tile_body_f32
#define CR_GEMM_DOT cr_gemm_dot_f32
#define CR_GEMM_DOTS cr_gemm_dots_f32
#define CR_GEMM_TILE1 cr_gemm_tile1_f32
#define CR_GEMM_MASKS cr_gemm_masks_f32
#define CR_GEMM_KERNEL cr_gemm_f32
#include "gemm_tile.h"

#define CR_T double
#define CR_V __m512d
#define CR_MASK __mmask8
#define CR_LANES 8
#define CR_MASK_N(n) ((__mmask8)((1u << (n)) - 1u))
#define CR_LOADU_Z _mm512_maskz_loadu_pd
#define CR_LOADU _mm512_loadu_pd
#define CR_STOREU_M _mm512_mask_storeu_pd
#define CR_STOREU _mm512_storeu_pd
#define CR_SET1 _mm512_set1_pd
#define CR_SETZERO _mm512_setzero_pd
#define CR_FMADD _mm512_fmadd_pd
#define CR_GEMM_KC (CONVREG_KC / 2)
#define CR_GEMM_TILE cr_gemm_tile_f64
#define CR_GEMM_TILE_BODY cr_gemm_tile_body_f64
#define CR_GEMM_DOT cr_gemm_dot_f64
#define CR_GEMM_DOTS cr_gemm_dots_f64
#define CR_GEMM_TILE1 cr_gemm_tile1_f64
#define CR_GEMM_MASKS cr_gemm_masks_f64
#define CR_GEMM_KERNEL cr_gemm_f64
#include "gemm_tile.h"

#elif defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define CR_HAVE_GEMM 1
#define CR_GEMM_MR 6
#define CR_GEMM_NR 64
#define CR_GEMM_L2 (256 * 1024)       /* half of a 512 KiB L2 (Zen 3) */
#define CR_GEMM_PF_NEXT 1
#define CR_GEMM_DOT_COLS 2      /* last panels of <= 2 columns by dot products */

/* lanes i < n of a vector of 8 int32 / 4 int64 set (the sign bit is what maskload reads) */
static inline __m256i cr_mask8_avx2(int n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
static inline __m256i cr_mask4_avx2(int n) {
    return _mm256_cmpgt_epi64(_mm256_set1_epi64x(n), _mm256_setr_epi64x(0, 1, 2, 3));
}

#define CR_T float
#define CR_V __m256
#define CR_MASK __m256i
#define CR_LANES 8
#define CR_MASK_N(n) cr_mask8_avx2(n)
#define CR_LOADU_Z(m, p) _mm256_maskload_ps((p), (m))
#define CR_LOADU _mm256_loadu_ps
#define CR_STOREU_M(p, m, v) _mm256_maskstore_ps((p), (m), (v))
#define CR_STOREU _mm256_storeu_ps
#define CR_SET1 _mm256_set1_ps
#define CR_SETZERO _mm256_setzero_ps
#define CR_FMADD _mm256_fmadd_ps
#define CR_GEMM_KC CONVREG_KC
#define CR_GEMM_TILE cr_gemm_tile_f32
#define CR_GEMM_TILE_BODY cr_gemm_tile_body_f32
#define CR_GEMM_DOT cr_gemm_dot_f32
#define CR_GEMM_DOTS cr_gemm_dots_f32
#define CR_GEMM_TILE1 cr_gemm_tile1_f32
#define CR_GEMM_MASKS cr_gemm_masks_f32
#define CR_GEMM_KERNEL cr_gemm_f32
#include "gemm_tile.h"

#define CR_T double
#define CR_V __m256d
#define CR_MASK __m256i
#define CR_LANES 4
#define CR_MASK_N(n) cr_mask4_avx2(n)
#define CR_LOADU_Z(m, p) _mm256_maskload_pd((p), (m))
#define CR_LOADU _mm256_loadu_pd
#define CR_STOREU_M(p, m, v) _mm256_maskstore_pd((p), (m), (v))
#define CR_STOREU _mm256_storeu_pd
#define CR_SET1 _mm256_set1_pd
#define CR_SETZERO _mm256_setzero_pd
#define CR_FMADD _mm256_fmadd_pd
#define CR_GEMM_KC (CONVREG_KC / 2)
#define CR_GEMM_TILE cr_gemm_tile_f64
#define CR_GEMM_TILE_BODY cr_gemm_tile_body_f64
#define CR_GEMM_DOT cr_gemm_dot_f64
#define CR_GEMM_DOTS cr_gemm_dots_f64
#define CR_GEMM_TILE1 cr_gemm_tile1_f64
#define CR_GEMM_MASKS cr_gemm_masks_f64
#define CR_GEMM_KERNEL cr_gemm_f64
#include "gemm_tile.h"

#else
#define CR_HAVE_GEMM 0
#define CR_GEMM_MR 8
#define CR_GEMM_NR 128
static void cr_gemm_f32(ptrdiff_t M, ptrdiff_t N, ptrdiff_t K, const float *W, ptrdiff_t ldw,
                        const float *B, ptrdiff_t ldb, const float *bias, float *C,
                        ptrdiff_t ldc) {
    (void)M; (void)N; (void)K; (void)W; (void)ldw; (void)B; (void)ldb; (void)bias; (void)C;
    (void)ldc;
}
static void cr_gemm_f64(ptrdiff_t M, ptrdiff_t N, ptrdiff_t K, const double *W, ptrdiff_t ldw,
                        const double *B, ptrdiff_t ldb, const double *bias, double *C,
                        ptrdiff_t ldc) {
    (void)M; (void)N; (void)K; (void)W; (void)ldw; (void)B; (void)ldb; (void)bias; (void)C;
    (void)ldc;
}
#endif

#endif

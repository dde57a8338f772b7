/* The strided gather of im2col's column fill for stride 2: dst[j] := src[2*j], j < n
 * (fill.pxi: one output row's columns of one tap). Pure data movement, so every build
 * gives the same bits.
 *
 *   cr_copy_stride2_f32 / cr_copy_stride2_f64
 *
 * With AVX2 (the avx2 and avx512 builds): two loads and a shuffle and lane permute per 8
 * floats / 4 doubles, the loop for the tail; a step reads only elements before src[2*n - 2]
 * (the last one the row needs), never past it. The plain loop took a sixth of a stride-2
 * 3x3 layer's time on Zen 3 (64->128 56^2, perf). */
#ifndef CONVREG_IM2COL_STRIDE2_H
#define CONVREG_IM2COL_STRIDE2_H

#include <stddef.h>
#if defined(__AVX2__)
#include <immintrin.h>
#endif

static inline void cr_copy_stride2_f32(const float *src, ptrdiff_t n, float *dst) {
    ptrdiff_t j = 0;
#if defined(__AVX2__)
    for (; j + 9 <= n; j += 8) {            /* reads src[2j .. 2j + 15] <= src[2n - 3] */
        __m256 a = _mm256_loadu_ps(src + 2 * j), b = _mm256_loadu_ps(src + 2 * j + 8);
        __m256 e = _mm256_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0));   /* 0 2 8 10 | 4 6 12 14 */
        _mm256_storeu_ps(dst + j, _mm256_castpd_ps(_mm256_permute4x64_pd(
            _mm256_castps_pd(e), _MM_SHUFFLE(3, 1, 2, 0))));
    }
#endif
    for (; j < n; j++) dst[j] = src[2 * j];
}

static inline void cr_copy_stride2_f64(const double *src, ptrdiff_t n, double *dst) {
    ptrdiff_t j = 0;
#if defined(__AVX2__)
    for (; j + 5 <= n; j += 4) {            /* reads src[2j .. 2j + 7] <= src[2n - 3] */
        __m256d a = _mm256_loadu_pd(src + 2 * j), b = _mm256_loadu_pd(src + 2 * j + 4);
        __m256d e = _mm256_unpacklo_pd(a, b);                        /* 0 4 | 2 6 */
        _mm256_storeu_pd(dst + j, _mm256_permute4x64_pd(e, _MM_SHUFFLE(3, 1, 2, 0)));
    }
#endif
    for (; j < n; j++) dst[j] = src[2 * j];
}

#endif

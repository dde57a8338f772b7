/* Short contiguous copies of im2col's strided column fill (fill.pxi, _fill_phased): one
 * output row's columns of one tap, 7-56 elements on the strided layers of a ResNet, where
 * a libc memcpy call cost more than the copy. dst and src do not overlap.
 *
 *   cr_copy_row_f32 / cr_copy_row_f64
 *
 * With AVX2 (the avx2 and avx512 builds): whole vectors, the last one ending at n (it may
 * rewrite elements the one before wrote, with the same values), so nothing outside
 * [0, n) is read or written; shorter rows element by element. */
#ifndef CONVREG_IM2COL_ROWCOPY_H
#define CONVREG_IM2COL_ROWCOPY_H

#include <stddef.h>
#if defined(__AVX2__)
#include <immintrin.h>
#endif

static inline void cr_copy_row_f32(float *dst, const float *src, ptrdiff_t n) {
    ptrdiff_t j = 0;
#if defined(__AVX2__)
    if (n >= 8) {
        for (; j + 8 < n; j += 8) _mm256_storeu_ps(dst + j, _mm256_loadu_ps(src + j));
        _mm256_storeu_ps(dst + n - 8, _mm256_loadu_ps(src + n - 8));
        return;
    }
#endif
    for (; j < n; j++) dst[j] = src[j];
}

static inline void cr_copy_row_f64(double *dst, const double *src, ptrdiff_t n) {
    ptrdiff_t j = 0;
#if defined(__AVX2__)
    if (n >= 4) {
        for (; j + 4 < n; j += 4) _mm256_storeu_pd(dst + j, _mm256_loadu_pd(src + j));
        _mm256_storeu_pd(dst + n - 4, _mm256_loadu_pd(src + n - 4));
        return;
    }
#endif
    for (; j < n; j++) dst[j] = src[j];
}

#endif

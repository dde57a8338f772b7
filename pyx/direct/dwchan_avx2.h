/* The transposes of the depthwise channel-vector kernel (dwchan.h), per element type:
 *
 *   cr_dwc_pack_f32 / _f64    dst[q*VL + l] := src[l*cs + q]   (l < nc, q < n; lanes l >= nc
 *                             and, for the columns of the last block of VL, q >= n: 0)
 *   cr_dwc_unpack_f32 / _f64  dst[l*cs + j] := R[j*VL + l]     (l < nc, j < n); the
 *                             elements [n, room) of each dst row may be overwritten
 *                             (with junk: the caller writes them later)
 *
 * VL = CR_VBYTES / sizeof: with AVX2 (the avx2 build) blocks of 8 x 8 floats / 4 x 4
 * doubles go through registers (masked loads at a row's end; AVX2's masked store is
 * microcoded on AMD, so a row's last columns are a whole vector ending at n, a whole
 * vector into the room the caller allows, or element stores); a pack's last block writes
 * whole vectors, up to VL - 1 columns past n (the caller's slack or columns it zeroes
 * later). Other builds: element loops (the path is only chosen on avx2). */
#ifndef CONVREG_DIRECT_DWCHAN_AVX2_H
#define CONVREG_DIRECT_DWCHAN_AVX2_H

#include <stddef.h>
#if defined(__AVX2__) && !defined(__AVX512F__)
#include <immintrin.h>
#define CR_HAVE_DWCHAN 1

static inline __m256i cr_dwc_mask8(ptrdiff_t n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(n < 8 ? n : 8)),
                              _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
static inline __m256i cr_dwc_mask4(ptrdiff_t n) {
    return _mm256_cmpgt_epi64(_mm256_set1_epi64x(n < 4 ? n : 4), _mm256_setr_epi64x(0, 1, 2, 3));
}

/* r[k] := column k of the 8 x 8 block whose row l is r[l] (in place) */
static inline void cr_dwc_t8(__m256 r[8]) {
    __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
    __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
    __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
    __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
    __m256 s0 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(1, 0, 1, 0));
    __m256 s1 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(3, 2, 3, 2));
    __m256 s2 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(1, 0, 1, 0));
    __m256 s3 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(3, 2, 3, 2));
    __m256 s4 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(1, 0, 1, 0));
    __m256 s5 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(3, 2, 3, 2));
    __m256 s6 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(1, 0, 1, 0));
    __m256 s7 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(3, 2, 3, 2));
    r[0] = _mm256_permute2f128_ps(s0, s4, 0x20);
    r[1] = _mm256_permute2f128_ps(s1, s5, 0x20);
    r[2] = _mm256_permute2f128_ps(s2, s6, 0x20);
    r[3] = _mm256_permute2f128_ps(s3, s7, 0x20);
    r[4] = _mm256_permute2f128_ps(s0, s4, 0x31);
    r[5] = _mm256_permute2f128_ps(s1, s5, 0x31);
    r[6] = _mm256_permute2f128_ps(s2, s6, 0x31);
    r[7] = _mm256_permute2f128_ps(s3, s7, 0x31);
}

static inline void cr_dwc_t4(__m256d r[4]) {
    __m256d t0 = _mm256_unpacklo_pd(r[0], r[1]), t1 = _mm256_unpackhi_pd(r[0], r[1]);
    __m256d t2 = _mm256_unpacklo_pd(r[2], r[3]), t3 = _mm256_unpackhi_pd(r[2], r[3]);
    r[0] = _mm256_permute2f128_pd(t0, t2, 0x20);
    r[1] = _mm256_permute2f128_pd(t1, t3, 0x20);
    r[2] = _mm256_permute2f128_pd(t0, t2, 0x31);
    r[3] = _mm256_permute2f128_pd(t1, t3, 0x31);
}

static inline void cr_dwc_pack_f32(const float *src, ptrdiff_t cs, ptrdiff_t nc, ptrdiff_t n,
                                   float *dst) {
    for (ptrdiff_t q0 = 0; q0 < n; q0 += 8) {
        __m256i m = cr_dwc_mask8(n - q0);
        __m256 r[8];
        for (int l = 0; l < 8; l++)
            r[l] = l < nc ? _mm256_maskload_ps(src + l * cs + q0, m) : _mm256_setzero_ps();
        cr_dwc_t8(r);
        for (int k = 0; k < 8; k++) _mm256_storeu_ps(dst + (q0 + k) * 8, r[k]);
    }
}

static inline void cr_dwc_pack_f64(const double *src, ptrdiff_t cs, ptrdiff_t nc, ptrdiff_t n,
                                   double *dst) {
    for (ptrdiff_t q0 = 0; q0 < n; q0 += 4) {
        __m256i m = cr_dwc_mask4(n - q0);
        __m256d r[4];
        for (int l = 0; l < 4; l++)
            r[l] = l < nc ? _mm256_maskload_pd(src + l * cs + q0, m) : _mm256_setzero_pd();
        cr_dwc_t4(r);
        for (int k = 0; k < 4; k++) _mm256_storeu_pd(dst + (q0 + k) * 4, r[k]);
    }
}

static inline void cr_dwc_unpack_f32(const float *R, ptrdiff_t n, ptrdiff_t nc, float *dst,
                                     ptrdiff_t cs, ptrdiff_t room) {
    __m256 r[8];
    ptrdiff_t j0 = 0;
    for (; j0 + 8 <= n || (j0 < n && j0 + 8 <= room); j0 += 8) {
        for (int k = 0; k < 8; k++) r[k] = _mm256_loadu_ps(R + (j0 + k) * 8);
        cr_dwc_t8(r);
        for (int l = 0; l < 8; l++)
            if (l < nc) _mm256_storeu_ps(dst + l * cs + j0, r[l]);
    }
    if (j0 >= n) return;
    if (n >= 8) {           /* the last 8 columns again, ending at n */
        for (int k = 0; k < 8; k++) r[k] = _mm256_loadu_ps(R + (n - 8 + k) * 8);
        cr_dwc_t8(r);
        for (int l = 0; l < 8; l++)
            if (l < nc) _mm256_storeu_ps(dst + l * cs + n - 8, r[l]);
        return;
    }
    for (ptrdiff_t l = 0; l < nc; l++)
        for (ptrdiff_t j = j0; j < n; j++) dst[l * cs + j] = R[j * 8 + l];
}

static inline void cr_dwc_unpack_f64(const double *R, ptrdiff_t n, ptrdiff_t nc, double *dst,
                                     ptrdiff_t cs, ptrdiff_t room) {
    __m256d r[4];
    ptrdiff_t j0 = 0;
    for (; j0 + 4 <= n || (j0 < n && j0 + 4 <= room); j0 += 4) {
        for (int k = 0; k < 4; k++) r[k] = _mm256_loadu_pd(R + (j0 + k) * 4);
        cr_dwc_t4(r);
        for (int l = 0; l < 4; l++)
            if (l < nc) _mm256_storeu_pd(dst + l * cs + j0, r[l]);
    }
    if (j0 >= n) return;
    if (n >= 4) {
        for (int k = 0; k < 4; k++) r[k] = _mm256_loadu_pd(R + (n - 4 + k) * 4);
        cr_dwc_t4(r);
        for (int l = 0; l < 4; l++)
            if (l < nc) _mm256_storeu_pd(dst + l * cs + n - 4, r[l]);
        return;
    }
    for (ptrdiff_t l = 0; l < nc; l++)
        for (ptrdiff_t j = j0; j < n; j++) dst[l * cs + j] = R[j * 4 + l];
}

#else
#define CR_HAVE_DWCHAN 0
#define CR_DWC_LOOPS(T, SFX, VL)                                                           \
    static inline void cr_dwc_pack_##SFX(const T *src, ptrdiff_t cs, ptrdiff_t nc,         \
                                         ptrdiff_t n, T *dst) {                            \
        for (ptrdiff_t q = 0; q < n; q++)                                                  \
            for (ptrdiff_t l = 0; l < (VL); l++) dst[q * (VL) + l] = l < nc ? src[l * cs + q] : 0; \
    }                                                                                      \
    static inline void cr_dwc_unpack_##SFX(const T *R, ptrdiff_t n, ptrdiff_t nc, T *dst,  \
                                           ptrdiff_t cs, ptrdiff_t room) {                 \
        (void)room;                                                                        \
        for (ptrdiff_t l = 0; l < nc; l++)                                                 \
            for (ptrdiff_t j = 0; j < n; j++) dst[l * cs + j] = R[j * (VL) + l];           \
    }
CR_DWC_LOOPS(float, f32, (ptrdiff_t)(CR_VBYTES / sizeof(float)))
CR_DWC_LOOPS(double, f64, (ptrdiff_t)(CR_VBYTES / sizeof(double)))
#undef CR_DWC_LOOPS
#endif

#endif

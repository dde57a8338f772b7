/* Shared definitions of the cython-winograd kernels: vector width per instruction set,
 * the register blocking of the GEMM microkernel, and the 1-D Winograd transforms.
 *
 * The vector width follows the instruction set the including module is compiled for
 * (setup.py builds the family for baseline, AVX2+FMA and AVX-512). GCC vector
 * extensions throughout; a*b + c contracts to FMA where the target has it
 * (-ffp-contract=fast is GCC's default for GNU C), never -ffast-math.
 */
#ifndef CONVREG_WINOGRAD_SIMD_H
#define CONVREG_WINOGRAD_SIMD_H

#include <stddef.h>
#include <string.h>

/* input channels per block of the weight transform (winograd_transforms.h) */
#define CRW_WCB 8
/* 8 doubles as one value (one AVX-512 register, two or four narrower ones): the 8
 * output channels of a weight-transform panel. */
typedef double crw_v8d __attribute__((vector_size(64)));
typedef float crw_v8f __attribute__((vector_size(32)));
/* Store the 8 channels' results of one position, rounded once to the weights' type. */
static inline void crw_v8_store_f(float *dst, crw_v8d v) {
    crw_v8f f = __builtin_convertvector(v, crw_v8f);
    memcpy(dst, &f, sizeof f);
}
static inline void crw_v8_store_d(double *dst, crw_v8d v) { memcpy(dst, &v, sizeof v); }
/* g[k][r] = base[r*rs + k*ks] (k < 9, r < nr <= 8; 0 for r >= nr) in double: one
   kernel's 9 taps for 8 output channels of the weight transform. The loop form; the
   AVX-512 build gathers instead where the row offsets fit an int. */
static inline void crw_gather9_loop_f(const float *base, ptrdiff_t rs, ptrdiff_t ks, int nr,
                                      crw_v8d g[9]) {
    for (int k = 0; k < 9; k++)
        for (int r = 0; r < 8; r++) g[k][r] = r < nr ? base[r * rs + k * ks] : 0;
}
static inline void crw_gather9_loop_d(const double *base, ptrdiff_t rs, ptrdiff_t ks,
                                      int nr, crw_v8d g[9]) {
    for (int k = 0; k < 9; k++)
        for (int r = 0; r < 8; r++) g[k][r] = r < nr ? base[r * rs + k * ks] : 0;
}

#if defined(__AVX512F__)
#define CRW_VBYTES 64
#define CRW_KROWS 8         /* output channels per microkernel call */
#define CRW_ISA "avx512"
#elif defined(__AVX2__)
#define CRW_VBYTES 32
#define CRW_KROWS 4
#define CRW_ISA "avx2"
#else
#define CRW_VBYTES 16
#define CRW_KROWS 4
#define CRW_ISA "baseline"
#endif

/* Transformed weights are packed in panels of CRW_MR output channels (every variant, so
 * the packing does not depend on the instruction set); the microkernel takes CRW_KROWS
 * of them at a time, times CRW_NV vectors of tiles. */
#define CRW_MR 8
#define CRW_NV 3
/* most tiles past a block's last whole vector that the GEMM's tail kernel takes */
#define CRW_TAIL 4
/* The GEMM prefetches V's rows CRW_VPD input channels ahead where one position's V
 * (the rows a panel reads) is over CRW_VL1 bytes (winograd_gemm.h) */
#define CRW_VPD 8
#define CRW_VL1 (40 * 1024)

/* [*elo, *ehi): the e < ne whose input column col0 + dw*e lies inside a row of w columns
 * (the input transform's masks and copies). */
static inline void crw_row_span(ptrdiff_t col0, ptrdiff_t dw, ptrdiff_t w, ptrdiff_t ne,
                                ptrdiff_t *elo, ptrdiff_t *ehi) {
    ptrdiff_t lo = col0 >= 0 ? 0 : (-col0 + dw - 1) / dw;
    ptrdiff_t hi = col0 < w ? (w - 1 - col0) / dw + 1 : 0;
    if (lo > ne) lo = ne;
    if (hi > ne) hi = ne;
    if (hi < lo) hi = lo;
    *elo = lo;
    *ehi = hi;
}

typedef float crw_vf __attribute__((vector_size(CRW_VBYTES)));
typedef double crw_vd __attribute__((vector_size(CRW_VBYTES)));
#define CRW_VLF ((ptrdiff_t)(CRW_VBYTES / sizeof(float)))
#define CRW_VLD ((ptrdiff_t)(CRW_VBYTES / sizeof(double)))

/* 1-D transforms on vectors (T is the scalar type of the constants).
 *
 * F(2,3), alpha = 4:   B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1]
 *                      A^T = [1 1 1 0; 0 1 -1 -1]
 * F(4,3), alpha = 6 (interpolation points 0, 1, -1, 2, -2, inf):
 *   B^T = [4  0 -5  0 1 0;   A^T = [1 1  1 1  1 0;
 *          0 -4 -4  1 1 0;          0 1 -1 2 -2 0;
 *          0  4 -4 -1 1 0;          0 1  1 4  4 0;
 *          0 -2 -1  2 1 0;          0 1 -1 8 -8 1]
 *          0  2 -1 -2 1 0;
 *          0  4  0 -5 0 1]
 */
#define CRW_BT4(T, o, d)                                                                \
    do {                                                                                \
        o[0] = d[0] - d[2];                                                             \
        o[1] = d[1] + d[2];                                                             \
        o[2] = d[2] - d[1];                                                             \
        o[3] = d[1] - d[3];                                                             \
    } while (0)

#define CRW_BT6(T, o, d)                                                                \
    do {                                                                                \
        o[0] = (T)4 * d[0] - (T)5 * d[2] + d[4];                                        \
        o[1] = (d[3] + d[4]) - (T)4 * (d[1] + d[2]);                                    \
        o[2] = (T)4 * (d[1] - d[2]) + (d[4] - d[3]);                                    \
        o[3] = (T)2 * (d[3] - d[1]) + (d[4] - d[2]);                                    \
        o[4] = (T)2 * (d[1] - d[3]) + (d[4] - d[2]);                                    \
        o[5] = (T)4 * d[1] - (T)5 * d[3] + d[5];                                        \
    } while (0)

#define CRW_AT4(T, y, s)                                                                \
    do {                                                                                \
        y[0] = s[0] + s[1] + s[2];                                                      \
        y[1] = s[1] - s[2] - s[3];                                                      \
    } while (0)

#define CRW_AT6(T, y, s)                                                                \
    do {                                                                                \
        __typeof__(s[0]) p12 = s[1] + s[2], m12 = s[1] - s[2];                          \
        __typeof__(s[0]) p34 = s[3] + s[4], m34 = s[3] - s[4];                          \
        y[0] = s[0] + p12 + p34;                                                        \
        y[1] = m12 + (T)2 * m34;                                                        \
        y[2] = p12 + (T)4 * p34;                                                        \
        y[3] = m12 + (T)8 * m34 + s[5];                                                 \
    } while (0)

/* r[0]*a + r[1]*b + r[2]*d without the terms whose coefficient is 0, for the weight
 * transform's constant interpolation matrices: the tests fold away at compile time, and
 * half of F(2x2)'s multiply-adds with a zero (which the compiler must keep, as 0 * inf
 * is NaN) are not executed. */
#define CRW_G3(r, a, b, d)                                                                  \
    ((r)[0] != 0 ? ((r)[1] != 0 ? ((r)[2] != 0 ? (r)[0] * (a) + (r)[1] * (b) + (r)[2] * (d)   \
                                               : (r)[0] * (a) + (r)[1] * (b))               \
                                : ((r)[2] != 0 ? (r)[0] * (a) + (r)[2] * (d) : (r)[0] * (a))) \
                 : ((r)[1] != 0 ? ((r)[2] != 0 ? (r)[1] * (b) + (r)[2] * (d) : (r)[1] * (b)) \
                                : (r)[2] * (d)))

/* Hint the cache about `bytes` bytes from p, a line at a time (prefetches never fault). */
static inline void crw_prefetch(const void *p, ptrdiff_t bytes) {
    for (ptrdiff_t o = 0; o < bytes; o += 64) __builtin_prefetch((const char *)p + o);
}

/* Phase split and merge of short rows (m = 2 or 4 phases):
 *   crw_deint:  dst[f*ld + u] = src[u*m + f]        for u < nu, f < m
 *   crw_inter:  dst[q] = src[(q % m)*ls + q / m]    for q < nq
 * AVX-512: whole vectors through two rounds of two-source permutes, scalar tails;
 * AVX2: unpacks, shuffles and lane permutes, scalar tails; baseline: plain loops. */
#if defined(__AVX512F__)
#include <immintrin.h>
static inline __mmask16 crw_mask16(ptrdiff_t rem) {
    return rem >= 16 ? (__mmask16)0xFFFF : rem <= 0 ? (__mmask16)0 : (__mmask16)((1u << rem) - 1);
}
static inline __mmask8 crw_mask8(ptrdiff_t rem) {
    return rem >= 8 ? (__mmask8)0xFF : rem <= 0 ? (__mmask8)0 : (__mmask8)((1u << rem) - 1);
}

/* (crw_inter reads whole vectors of src: up to one vector past the last value used.) */
static inline void crw_inter_f(int m, const float *restrict src, ptrdiff_t ls, ptrdiff_t nq,
                               float *restrict dst) {
    ptrdiff_t q = 0;
    const __m512i lo32 = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22,
                                           7, 23);
    const __m512i hi32 = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14,
                                           30, 15, 31);
    if (m == 4) {
        const __m512i lo64 = _mm512_setr_epi64(0, 8, 1, 9, 2, 10, 3, 11);
        const __m512i hi64 = _mm512_setr_epi64(4, 12, 5, 13, 6, 14, 7, 15);
        for (; q < nq; q += 64) {
            const float *s = src + q / 4;
            __m512 a = _mm512_loadu_ps(s), b = _mm512_loadu_ps(s + ls);
            __m512 c = _mm512_loadu_ps(s + 2 * ls), d = _mm512_loadu_ps(s + 3 * ls);
            __m512d abl = _mm512_castps_pd(_mm512_permutex2var_ps(a, lo32, b));
            __m512d abh = _mm512_castps_pd(_mm512_permutex2var_ps(a, hi32, b));
            __m512d cdl = _mm512_castps_pd(_mm512_permutex2var_ps(c, lo32, d));
            __m512d cdh = _mm512_castps_pd(_mm512_permutex2var_ps(c, hi32, d));
            __m512 o[4];
            o[0] = _mm512_castpd_ps(_mm512_permutex2var_pd(abl, lo64, cdl));
            o[1] = _mm512_castpd_ps(_mm512_permutex2var_pd(abl, hi64, cdl));
            o[2] = _mm512_castpd_ps(_mm512_permutex2var_pd(abh, lo64, cdh));
            o[3] = _mm512_castpd_ps(_mm512_permutex2var_pd(abh, hi64, cdh));
            if (q + 64 <= nq) {
                for (int k = 0; k < 4; k++) _mm512_storeu_ps(dst + q + 16 * k, o[k]);
            } else {
                for (int k = 0; k < 4; k++)
                    _mm512_mask_storeu_ps(dst + q + 16 * k, crw_mask16(nq - q - 16 * k), o[k]);
            }
        }
        return;
    }
    if (m == 2) {
        for (; q < nq; q += 32) {
            __m512 a = _mm512_loadu_ps(src + q / 2), b = _mm512_loadu_ps(src + ls + q / 2);
            _mm512_mask_storeu_ps(dst + q, crw_mask16(nq - q),
                                  _mm512_permutex2var_ps(a, lo32, b));
            _mm512_mask_storeu_ps(dst + q + 16, crw_mask16(nq - q - 16),
                                  _mm512_permutex2var_ps(a, hi32, b));
        }
        return;
    }
    for (; q < nq; q++) dst[q] = src[(q % m) * ls + q / m];
}

static inline void crw_inter_d(int m, const double *restrict src, ptrdiff_t ls, ptrdiff_t nq,
                               double *restrict dst) {
    ptrdiff_t q = 0;
    const __m512i lo = _mm512_setr_epi64(0, 8, 1, 9, 2, 10, 3, 11);
    const __m512i hi = _mm512_setr_epi64(4, 12, 5, 13, 6, 14, 7, 15);
    if (m == 4) {
        const __m512i lo2 = _mm512_setr_epi64(0, 1, 8, 9, 2, 3, 10, 11);
        const __m512i hi2 = _mm512_setr_epi64(4, 5, 12, 13, 6, 7, 14, 15);
        for (; q < nq; q += 32) {
            const double *s = src + q / 4;
            __m512d a = _mm512_loadu_pd(s), b = _mm512_loadu_pd(s + ls);
            __m512d c = _mm512_loadu_pd(s + 2 * ls), d = _mm512_loadu_pd(s + 3 * ls);
            __m512d abl = _mm512_permutex2var_pd(a, lo, b), abh = _mm512_permutex2var_pd(a, hi, b);
            __m512d cdl = _mm512_permutex2var_pd(c, lo, d), cdh = _mm512_permutex2var_pd(c, hi, d);
            _mm512_mask_storeu_pd(dst + q, crw_mask8(nq - q), _mm512_permutex2var_pd(abl, lo2, cdl));
            _mm512_mask_storeu_pd(dst + q + 8, crw_mask8(nq - q - 8),
                                  _mm512_permutex2var_pd(abl, hi2, cdl));
            _mm512_mask_storeu_pd(dst + q + 16, crw_mask8(nq - q - 16),
                                  _mm512_permutex2var_pd(abh, lo2, cdh));
            _mm512_mask_storeu_pd(dst + q + 24, crw_mask8(nq - q - 24),
                                  _mm512_permutex2var_pd(abh, hi2, cdh));
        }
        return;
    }
    if (m == 2) {
        for (; q < nq; q += 16) {
            __m512d a = _mm512_loadu_pd(src + q / 2), b = _mm512_loadu_pd(src + ls + q / 2);
            _mm512_mask_storeu_pd(dst + q, crw_mask8(nq - q), _mm512_permutex2var_pd(a, lo, b));
            _mm512_mask_storeu_pd(dst + q + 8, crw_mask8(nq - q - 8),
                                  _mm512_permutex2var_pd(a, hi, b));
        }
        return;
    }
    for (; q < nq; q++) dst[q] = src[(q % m) * ls + q / m];
}

/* crw_deintb: as crw_deint, but src[e] for e outside [elo, ehi) reads as 0 and is never
 * touched (masked loads): the row is read in place even where the tiles hang over the
 * padding. */
static inline void crw_deintb_f(int m, const float *src, ptrdiff_t nu, ptrdiff_t elo,
                                ptrdiff_t ehi, float *restrict dst, ptrdiff_t ld) {
    ptrdiff_t u = 0;
#define CRW_LDF(e) _mm512_maskz_loadu_ps(crw_mask16(ehi - (e)) & ~crw_mask16(elo - (e)), \
                                         src + (e))
    if (m == 4) {
        const __m512i e64 = _mm512_setr_epi64(0, 2, 4, 6, 8, 10, 12, 14);
        const __m512i o64 = _mm512_setr_epi64(1, 3, 5, 7, 9, 11, 13, 15);
        const __m512i e32 = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24,
                                              26, 28, 30);
        const __m512i o32 = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25,
                                              27, 29, 31);
        for (; u + 16 <= nu; u += 16) {
            const ptrdiff_t e = 4 * u;
            __m512d v0 = _mm512_castps_pd(CRW_LDF(e));
            __m512d v1 = _mm512_castps_pd(CRW_LDF(e + 16));
            __m512d v2 = _mm512_castps_pd(CRW_LDF(e + 32));
            __m512d v3 = _mm512_castps_pd(CRW_LDF(e + 48));
            __m512 a = _mm512_castpd_ps(_mm512_permutex2var_pd(v0, e64, v1));
            __m512 b = _mm512_castpd_ps(_mm512_permutex2var_pd(v0, o64, v1));
            __m512 c = _mm512_castpd_ps(_mm512_permutex2var_pd(v2, e64, v3));
            __m512 d = _mm512_castpd_ps(_mm512_permutex2var_pd(v2, o64, v3));
            _mm512_storeu_ps(dst + u, _mm512_permutex2var_ps(a, e32, c));
            _mm512_storeu_ps(dst + ld + u, _mm512_permutex2var_ps(a, o32, c));
            _mm512_storeu_ps(dst + 2 * ld + u, _mm512_permutex2var_ps(b, e32, d));
            _mm512_storeu_ps(dst + 3 * ld + u, _mm512_permutex2var_ps(b, o32, d));
        }
    } else if (m == 2) {
        const __m512i e32 = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24,
                                              26, 28, 30);
        const __m512i o32 = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25,
                                              27, 29, 31);
        for (; u + 16 <= nu; u += 16) {
            __m512 v0 = CRW_LDF(2 * u), v1 = CRW_LDF(2 * u + 16);
            _mm512_storeu_ps(dst + u, _mm512_permutex2var_ps(v0, e32, v1));
            _mm512_storeu_ps(dst + ld + u, _mm512_permutex2var_ps(v0, o32, v1));
        }
    }
#undef CRW_LDF
    for (; u < nu; u++)
        for (int f = 0; f < m; f++) {
            const ptrdiff_t e = u * m + f;
            dst[f * ld + u] = e >= elo && e < ehi ? src[e] : 0.0f;
        }
}

static inline void crw_deintb_d(int m, const double *src, ptrdiff_t nu, ptrdiff_t elo,
                                ptrdiff_t ehi, double *restrict dst, ptrdiff_t ld) {
    ptrdiff_t u = 0;
#define CRW_LDD(e) _mm512_maskz_loadu_pd(crw_mask8(ehi - (e)) & ~crw_mask8(elo - (e)), src + (e))
    const __m512i ev = _mm512_setr_epi64(0, 2, 4, 6, 8, 10, 12, 14);
    const __m512i od = _mm512_setr_epi64(1, 3, 5, 7, 9, 11, 13, 15);
    if (m == 4) {
        const __m512i e2 = _mm512_setr_epi64(0, 1, 4, 5, 8, 9, 12, 13);
        const __m512i o2 = _mm512_setr_epi64(2, 3, 6, 7, 10, 11, 14, 15);
        for (; u + 8 <= nu; u += 8) {
            const ptrdiff_t e = 4 * u;
            __m512d v0 = CRW_LDD(e), v1 = CRW_LDD(e + 8);
            __m512d v2 = CRW_LDD(e + 16), v3 = CRW_LDD(e + 24);
            __m512d a = _mm512_permutex2var_pd(v0, e2, v1);
            __m512d b = _mm512_permutex2var_pd(v0, o2, v1);
            __m512d c = _mm512_permutex2var_pd(v2, e2, v3);
            __m512d d = _mm512_permutex2var_pd(v2, o2, v3);
            _mm512_storeu_pd(dst + u, _mm512_permutex2var_pd(a, ev, c));
            _mm512_storeu_pd(dst + ld + u, _mm512_permutex2var_pd(a, od, c));
            _mm512_storeu_pd(dst + 2 * ld + u, _mm512_permutex2var_pd(b, ev, d));
            _mm512_storeu_pd(dst + 3 * ld + u, _mm512_permutex2var_pd(b, od, d));
        }
    } else if (m == 2) {
        for (; u + 8 <= nu; u += 8) {
            __m512d v0 = CRW_LDD(2 * u), v1 = CRW_LDD(2 * u + 8);
            _mm512_storeu_pd(dst + u, _mm512_permutex2var_pd(v0, ev, v1));
            _mm512_storeu_pd(dst + ld + u, _mm512_permutex2var_pd(v0, od, v1));
        }
    }
#undef CRW_LDD
    for (; u < nu; u++)
        for (int f = 0; f < m; f++) {
            const ptrdiff_t e = u * m + f;
            dst[f * ld + u] = e >= elo && e < ehi ? src[e] : 0.0;
        }
}
#define CRW_HAVE_DEINTB 1
/* crw_row2: one input row of an F(2,3) chunk of tiles straight into registers,
 * d[k] lane u = src[e0 + 2u + k] (k < 4), 0 where that index lies outside [elo, ehi),
 * which is never read (masked loads). The transform then takes d from registers: read
 * back from the phase-split rows in memory, the loads spanned a vector and a scalar store
 * and stalled on store forwarding (a third of the input transform's time). */
/* Defines crw_row2_f (float32) and crw_row2_d (float64) below, from one body. */
#define CRW_ROW2_DEF(NAME, T, VT, V512, VL, MASK, LOADZ, PERM, EV, OD)                  \
    static inline void NAME(const T *src, ptrdiff_t e0, ptrdiff_t elo, ptrdiff_t ehi,       \
                            VT d[4]) {                                                      \
        const __m512i ev = EV, od = OD;                                                     \
        const V512 a = LOADZ(MASK(ehi - e0) & ~MASK(elo - e0), src + e0);                   \
        const V512 b = LOADZ(MASK(ehi - e0 - (VL)) & ~MASK(elo - e0 - (VL)),                \
                             src + e0 + (VL));                                              \
        const V512 c = LOADZ(MASK(ehi - e0 - 2) & ~MASK(elo - e0 - 2), src + e0 + 2);       \
        const V512 e = LOADZ(MASK(ehi - e0 - 2 - (VL)) & ~MASK(elo - e0 - 2 - (VL)),        \
                             src + e0 + 2 + (VL));                                          \
        d[0] = (VT)PERM(a, ev, b);                                                          \
        d[1] = (VT)PERM(a, od, b);                                                          \
        d[2] = (VT)PERM(c, ev, e);                                                          \
        d[3] = (VT)PERM(c, od, e);                                                          \
    }
CRW_ROW2_DEF(crw_row2_f, float, crw_vf, __m512, 16, crw_mask16, _mm512_maskz_loadu_ps,
             _mm512_permutex2var_ps,
             _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30),
             _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31))
CRW_ROW2_DEF(crw_row2_d, double, crw_vd, __m512d, 8, crw_mask8, _mm512_maskz_loadu_pd,
             _mm512_permutex2var_pd, _mm512_setr_epi64(0, 2, 4, 6, 8, 10, 12, 14),
             _mm512_setr_epi64(1, 3, 5, 7, 9, 11, 13, 15))
#undef CRW_ROW2_DEF
/* crw_gather9_loop_* by 9 gathers instead of 72 scalar loads. */
static inline __m256i crw_rows8(ptrdiff_t rs) {       /* r*rs, r < 8 */
    return _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
                              _mm256_set1_epi32((int)rs));
}
static inline void crw_gather9_f(const float *base, ptrdiff_t rs, ptrdiff_t ks, int nr,
                                 crw_v8d g[9]) {
    if (rs > 2147483647 / 7) {
        crw_gather9_loop_f(base, rs, ks, nr, g);
        return;
    }
    const __m256i idx = crw_rows8(rs);
    const __mmask8 mk = (__mmask8)((1u << nr) - 1u);
    for (int k = 0; k < 9; k++)
        g[k] = (crw_v8d)_mm512_cvtps_pd(_mm256_mmask_i32gather_ps(_mm256_setzero_ps(), mk,
                                                                  idx, base + k * ks, 4));
}
static inline void crw_gather9_d(const double *base, ptrdiff_t rs, ptrdiff_t ks, int nr,
                                 crw_v8d g[9]) {
    if (rs > 2147483647 / 7) {
        crw_gather9_loop_d(base, rs, ks, nr, g);
        return;
    }
    const __m256i idx = crw_rows8(rs);
    const __mmask8 mk = (__mmask8)((1u << nr) - 1u);
    for (int k = 0; k < 9; k++)
        g[k] = (crw_v8d)_mm512_mask_i32gather_pd(_mm512_setzero_pd(), mk, idx, base + k * ks,
                                                 8);
}
/* crw_deint is crw_deintb over the whole row: every lane mask is full. */
static inline void crw_deint_f(int m, const float *restrict src, ptrdiff_t nu,
                               float *restrict dst, ptrdiff_t ld) {
    crw_deintb_f(m, src, nu, 0, nu * m, dst, ld);
}
static inline void crw_deint_d(int m, const double *restrict src, ptrdiff_t nu,
                               double *restrict dst, ptrdiff_t ld) {
    crw_deintb_d(m, src, nu, 0, nu * m, dst, ld);
}
#else
#define CRW_HAVE_DEINTB 0
#define crw_gather9_f crw_gather9_loop_f
#define crw_gather9_d crw_gather9_loop_d
static inline void crw_deintb_f(int m, const float *src, ptrdiff_t nu, ptrdiff_t elo,
                                ptrdiff_t ehi, float *restrict dst, ptrdiff_t ld) {
    (void)m; (void)src; (void)nu; (void)elo; (void)ehi; (void)dst; (void)ld;  /* unused */
}
static inline void crw_deintb_d(int m, const double *src, ptrdiff_t nu, ptrdiff_t elo,
                                ptrdiff_t ehi, double *restrict dst, ptrdiff_t ld) {
    (void)m; (void)src; (void)nu; (void)elo; (void)ehi; (void)dst; (void)ld;  /* unused */
}
/* The plain loops, from u0 / q0 on (the AVX2 versions' tails, every row elsewhere); a
 * literal m divides by shifts. */
#define CRW_DEINT_LOOP(m, src, u0, nu, dst, ld)                                             \
    for (int f_ = 0; f_ < (m); f_++)                                                     \
        for (ptrdiff_t u_ = (u0); u_ < (nu); u_++) (dst)[f_ * (ld) + u_] = (src)[u_ * (m) + f_]
#define CRW_INTER_LOOP(m, src, ls, q0, nq, dst)                                             \
    for (ptrdiff_t q_ = (q0); q_ < (nq); q_++) (dst)[q_] = (src)[(q_ % (m)) * (ls) + q_ / (m)]
#if defined(__AVX2__)
#include <immintrin.h>
/* AVX2: 8 (float) / 4 (double) tiles per step through unpack, shuffle and 128-bit lane
 * permutes, the plain loop for the rest; only whole steps inside nu / nq are loaded.
 * (The plain loops with a runtime m cost a twelfth of an F(2x2) call on Zen 3.) */
static inline void crw_deint_f(int m, const float *restrict src, ptrdiff_t nu,
                               float *restrict dst, ptrdiff_t ld) {
    ptrdiff_t u = 0;
    if (m == 2) {
        for (; u + 8 <= nu; u += 8) {
            __m256 s0 = _mm256_loadu_ps(src + 2 * u), s1 = _mm256_loadu_ps(src + 2 * u + 8);
            /* [x0 x1 x4 x5 | x2 x3 x6 x7] -> lanes of 64 bits in order 0 2 1 3 */
            __m256 e = _mm256_shuffle_ps(s0, s1, _MM_SHUFFLE(2, 0, 2, 0));
            __m256 o = _mm256_shuffle_ps(s0, s1, _MM_SHUFFLE(3, 1, 3, 1));
            _mm256_storeu_ps(dst + u, _mm256_castpd_ps(_mm256_permute4x64_pd(
                _mm256_castps_pd(e), _MM_SHUFFLE(3, 1, 2, 0))));
            _mm256_storeu_ps(dst + ld + u, _mm256_castpd_ps(_mm256_permute4x64_pd(
                _mm256_castps_pd(o), _MM_SHUFFLE(3, 1, 2, 0))));
        }
        CRW_DEINT_LOOP(2, src, u, nu, dst, ld);
        return;
    }
    if (m == 4) {
        for (; u + 8 <= nu; u += 8) {
            const float *s = src + 4 * u;
            __m256 s0 = _mm256_loadu_ps(s), s1 = _mm256_loadu_ps(s + 8);
            __m256 s2 = _mm256_loadu_ps(s + 16), s3 = _mm256_loadu_ps(s + 24);
            __m256 t0 = _mm256_permute2f128_ps(s0, s2, 0x20);   /* tiles 0 | 4 */
            __m256 t1 = _mm256_permute2f128_ps(s0, s2, 0x31);   /* 1 | 5 */
            __m256 t2 = _mm256_permute2f128_ps(s1, s3, 0x20);   /* 2 | 6 */
            __m256 t3 = _mm256_permute2f128_ps(s1, s3, 0x31);   /* 3 | 7 */
            __m256 a = _mm256_unpacklo_ps(t0, t1), b = _mm256_unpackhi_ps(t0, t1);
            __m256 c = _mm256_unpacklo_ps(t2, t3), d = _mm256_unpackhi_ps(t2, t3);
            _mm256_storeu_ps(dst + u, _mm256_shuffle_ps(a, c, 0x44));
            _mm256_storeu_ps(dst + ld + u, _mm256_shuffle_ps(a, c, 0xEE));
            _mm256_storeu_ps(dst + 2 * ld + u, _mm256_shuffle_ps(b, d, 0x44));
            _mm256_storeu_ps(dst + 3 * ld + u, _mm256_shuffle_ps(b, d, 0xEE));
        }
        CRW_DEINT_LOOP(4, src, u, nu, dst, ld);
        return;
    }
    CRW_DEINT_LOOP(m, src, 0, nu, dst, ld);
}
static inline void crw_deint_d(int m, const double *restrict src, ptrdiff_t nu,
                               double *restrict dst, ptrdiff_t ld) {
    ptrdiff_t u = 0;
    if (m == 2) {
        for (; u + 4 <= nu; u += 4) {
            __m256d s0 = _mm256_loadu_pd(src + 2 * u), s1 = _mm256_loadu_pd(src + 2 * u + 4);
            __m256d e = _mm256_unpacklo_pd(s0, s1), o = _mm256_unpackhi_pd(s0, s1);
            _mm256_storeu_pd(dst + u, _mm256_permute4x64_pd(e, _MM_SHUFFLE(3, 1, 2, 0)));
            _mm256_storeu_pd(dst + ld + u, _mm256_permute4x64_pd(o, _MM_SHUFFLE(3, 1, 2, 0)));
        }
        CRW_DEINT_LOOP(2, src, u, nu, dst, ld);
        return;
    }
    if (m == 4) {
        for (; u + 4 <= nu; u += 4) {
            const double *s = src + 4 * u;
            __m256d s0 = _mm256_loadu_pd(s), s1 = _mm256_loadu_pd(s + 4);
            __m256d s2 = _mm256_loadu_pd(s + 8), s3 = _mm256_loadu_pd(s + 12);
            __m256d a = _mm256_unpacklo_pd(s0, s1), b = _mm256_unpackhi_pd(s0, s1);
            __m256d c = _mm256_unpacklo_pd(s2, s3), d = _mm256_unpackhi_pd(s2, s3);
            _mm256_storeu_pd(dst + u, _mm256_permute2f128_pd(a, c, 0x20));
            _mm256_storeu_pd(dst + ld + u, _mm256_permute2f128_pd(b, d, 0x20));
            _mm256_storeu_pd(dst + 2 * ld + u, _mm256_permute2f128_pd(a, c, 0x31));
            _mm256_storeu_pd(dst + 3 * ld + u, _mm256_permute2f128_pd(b, d, 0x31));
        }
        CRW_DEINT_LOOP(4, src, u, nu, dst, ld);
        return;
    }
    CRW_DEINT_LOOP(m, src, 0, nu, dst, ld);
}
static inline void crw_inter_f(int m, const float *restrict src, ptrdiff_t ls, ptrdiff_t nq,
                               float *restrict dst) {
    ptrdiff_t q = 0;
    if (m == 2) {
        for (; q + 16 <= nq; q += 16) {
            const float *s = src + q / 2;
            __m256 a = _mm256_loadu_ps(s), b = _mm256_loadu_ps(s + ls);
            __m256 lo = _mm256_unpacklo_ps(a, b), hi = _mm256_unpackhi_ps(a, b);
            _mm256_storeu_ps(dst + q, _mm256_permute2f128_ps(lo, hi, 0x20));
            _mm256_storeu_ps(dst + q + 8, _mm256_permute2f128_ps(lo, hi, 0x31));
        }
        CRW_INTER_LOOP(2, src, ls, q, nq, dst);
        return;
    }
    if (m == 4) {
        for (; q + 32 <= nq; q += 32) {
            const float *s = src + q / 4;
            __m256 a = _mm256_loadu_ps(s), b = _mm256_loadu_ps(s + ls);
            __m256 c = _mm256_loadu_ps(s + 2 * ls), d = _mm256_loadu_ps(s + 3 * ls);
            __m256 t0 = _mm256_unpacklo_ps(a, b), t1 = _mm256_unpackhi_ps(a, b);
            __m256 t2 = _mm256_unpacklo_ps(c, d), t3 = _mm256_unpackhi_ps(c, d);
            __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
            __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
            _mm256_storeu_ps(dst + q, _mm256_permute2f128_ps(u0, u1, 0x20));
            _mm256_storeu_ps(dst + q + 8, _mm256_permute2f128_ps(u2, u3, 0x20));
            _mm256_storeu_ps(dst + q + 16, _mm256_permute2f128_ps(u0, u1, 0x31));
            _mm256_storeu_ps(dst + q + 24, _mm256_permute2f128_ps(u2, u3, 0x31));
        }
        CRW_INTER_LOOP(4, src, ls, q, nq, dst);
        return;
    }
    CRW_INTER_LOOP(m, src, ls, 0, nq, dst);
}
static inline void crw_inter_d(int m, const double *restrict src, ptrdiff_t ls, ptrdiff_t nq,
                               double *restrict dst) {
    ptrdiff_t q = 0;
    if (m == 2) {
        for (; q + 8 <= nq; q += 8) {
            const double *s = src + q / 2;
            __m256d a = _mm256_loadu_pd(s), b = _mm256_loadu_pd(s + ls);
            __m256d lo = _mm256_unpacklo_pd(a, b), hi = _mm256_unpackhi_pd(a, b);
            _mm256_storeu_pd(dst + q, _mm256_permute2f128_pd(lo, hi, 0x20));
            _mm256_storeu_pd(dst + q + 4, _mm256_permute2f128_pd(lo, hi, 0x31));
        }
        CRW_INTER_LOOP(2, src, ls, q, nq, dst);
        return;
    }
    if (m == 4) {
        for (; q + 16 <= nq; q += 16) {
            const double *s = src + q / 4;
            __m256d a = _mm256_loadu_pd(s), b = _mm256_loadu_pd(s + ls);
            __m256d c = _mm256_loadu_pd(s + 2 * ls), d = _mm256_loadu_pd(s + 3 * ls);
            __m256d ab0 = _mm256_unpacklo_pd(a, b), ab1 = _mm256_unpackhi_pd(a, b);
            __m256d cd0 = _mm256_unpacklo_pd(c, d), cd1 = _mm256_unpackhi_pd(c, d);
            _mm256_storeu_pd(dst + q, _mm256_permute2f128_pd(ab0, cd0, 0x20));
            _mm256_storeu_pd(dst + q + 4, _mm256_permute2f128_pd(ab1, cd1, 0x20));
            _mm256_storeu_pd(dst + q + 8, _mm256_permute2f128_pd(ab0, cd0, 0x31));
            _mm256_storeu_pd(dst + q + 12, _mm256_permute2f128_pd(ab1, cd1, 0x31));
        }
        CRW_INTER_LOOP(4, src, ls, q, nq, dst);
        return;
    }
    CRW_INTER_LOOP(m, src, ls, 0, nq, dst);
}
#else
static inline void crw_deint_f(int m, const float *restrict src, ptrdiff_t nu,
                               float *restrict dst, ptrdiff_t ld) {
    CRW_DEINT_LOOP(m, src, 0, nu, dst, ld);
}
static inline void crw_deint_d(int m, const double *restrict src, ptrdiff_t nu,
                               double *restrict dst, ptrdiff_t ld) {
    CRW_DEINT_LOOP(m, src, 0, nu, dst, ld);
}
static inline void crw_inter_f(int m, const float *restrict src, ptrdiff_t ls, ptrdiff_t nq,
                               float *restrict dst) {
    CRW_INTER_LOOP(m, src, ls, 0, nq, dst);
}
static inline void crw_inter_d(int m, const double *restrict src, ptrdiff_t ls, ptrdiff_t nq,
                               double *restrict dst) {
    CRW_INTER_LOOP(m, src, ls, 0, nq, dst);
}
#endif
#undef CRW_DEINT_LOOP
#undef CRW_INTER_LOOP
#endif

#endif

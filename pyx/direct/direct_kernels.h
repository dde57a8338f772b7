/* Register-blocked microkernels of the cython-direct backend (GCC vector extensions).
 *
 * One call computes a block of OB output channels x CR_NV vectors of consecutive
 * "flat" output positions, keeping the OB*CR_NV accumulators in registers:
 *
 *   out[o*os + t] = bias[o] + sum_{c<cig} sum_{k<kk} w[o*wos + c*kk + k] * x[c*cs + toff[k] + t]
 *
 * for o < OB and t < CR_NV*CR_VL. The caller (Cython, _direct_impl.pxi) lays the input
 * out so that every tap k of every output position is that fixed offset toff[k] away
 * (a padded, phase-split row band), so the hot loop is contiguous unaligned vector
 * loads, one broadcast per weight and fused multiply-adds. Every product is computed
 * (no skipping of zero weights), so NaN and inf propagate.
 *
 * The vector width follows the instruction set the including module is compiled for
 * (setup.py builds the family for baseline, AVX2+FMA and AVX-512).
 */
#ifndef CONVREG_DIRECT_KERNELS_H
#define CONVREG_DIRECT_KERNELS_H

#include <stddef.h>
#include <string.h>

/* Rows here are short (tens of elements): keep copy and zeroing loops inline instead of
 * letting GCC turn them into libc memcpy/memset calls (applies to the module's code
 * after this include, i.e. the kernel loops of _direct_impl.pxi). */
#pragma GCC optimize("no-tree-loop-distribute-patterns")

#if defined(__AVX512F__)
#define CR_VBYTES 64
#define CR_NV 4
#define CR_OBMAX 6
#define CR_ISA "avx512"
#elif defined(__AVX2__)
#define CR_VBYTES 32
#define CR_NV 3
#define CR_OBMAX 4
#define CR_ISA "avx2"
#else
#define CR_VBYTES 16
#define CR_NV 3
#define CR_OBMAX 4
#define CR_ISA "baseline"
#endif

typedef float cr_vf __attribute__((vector_size(CR_VBYTES)));
typedef double cr_vd __attribute__((vector_size(CR_VBYTES)));

/* Elements per vector, per dtype. */
#define CR_VLF ((int)(CR_VBYTES / sizeof(float)))
#define CR_VLD ((int)(CR_VBYTES / sizeof(double)))

#define CR_ALWAYS_INLINE static inline __attribute__((always_inline))

/* The body, instantiated for a compile-time OB (and optionally a compile-time KK). */
#define CR_BODY(T, VT, VL, OB, KK)                                                       \
    VT acc[OB][CR_NV];                                                                   \
    _Pragma("GCC unroll 8")                                                              \
    for (int o = 0; o < OB; o++) {                                                       \
        VT bv = bias[o] - (VT){0};                                                       \
        _Pragma("GCC unroll 8")                                                          \
        for (int v = 0; v < CR_NV; v++) acc[o][v] = bv;                                  \
    }                                                                                    \
    for (ptrdiff_t c = 0; c < cig; c++) {                                                \
        const T *xc = x + c * cs;                                                        \
        const T *wc = w + c * (KK);                                                      \
        for (int k = 0; k < (KK); k++) {                                                 \
            const T *xp = xc + toff[k];                                                  \
            VT xv[CR_NV];                                                                \
            _Pragma("GCC unroll 8")                                                      \
            for (int v = 0; v < CR_NV; v++) memcpy(&xv[v], xp + v * (VL), sizeof(VT));   \
            _Pragma("GCC unroll 8")                                                      \
            for (int o = 0; o < OB; o++) {                                               \
                VT wv = wc[o * wos + k] - (VT){0};                                       \
                _Pragma("GCC unroll 8")                                                  \
                for (int v = 0; v < CR_NV; v++) acc[o][v] += wv * xv[v];                 \
            }                                                                            \
        }                                                                                \
    }                                                                                    \
    _Pragma("GCC unroll 8")                                                              \
    for (int o = 0; o < OB; o++) {                                                       \
        _Pragma("GCC unroll 8")                                                          \
        for (int v = 0; v < CR_NV; v++) memcpy(out + o * os + v * (VL), &acc[o][v], sizeof(VT)); \
    }


/* OB == 1: two accumulator sets (even / odd taps) so that 2*CR_NV independent FMA
 * chains hide the FMA latency; summed at the end. */
#define CR_BODY1(T, VT, VL, KK)                                                          \
    VT acc[2][CR_NV];                                                                    \
    _Pragma("GCC unroll 8")                                                              \
    for (int v = 0; v < CR_NV; v++) { acc[0][v] = bias[0] - (VT){0}; acc[1][v] = (VT){0}; } \
    for (ptrdiff_t c = 0; c < cig; c++) {                                                \
        const T *xc = x + c * cs;                                                        \
        const T *wc = w + c * (KK);                                                      \
        _Pragma("GCC unroll 32")                                                         \
        for (int k = 0; k < (KK); k++) {                                                 \
            const T *xp = xc + toff[k];                                                  \
            VT wv = wc[k] - (VT){0};                                                     \
            _Pragma("GCC unroll 8")                                                      \
            for (int v = 0; v < CR_NV; v++) {                                            \
                VT xv;                                                                   \
                memcpy(&xv, xp + v * (VL), sizeof(VT));                                  \
                acc[k & 1][v] += wv * xv;                                                \
            }                                                                            \
        }                                                                                \
    }                                                                                    \
    _Pragma("GCC unroll 8")                                                              \
    for (int v = 0; v < CR_NV; v++) {                                                    \
        VT r = acc[0][v] + acc[1][v];                                                    \
        memcpy(out + v * (VL), &r, sizeof(VT));                                          \
    }

#define CR_ARGS(T) const T *restrict x, ptrdiff_t cs, ptrdiff_t cig,                      \
                   const ptrdiff_t *restrict toff, int kk, const T *restrict w,           \
                   ptrdiff_t wos, const T *restrict bias, T *restrict out, ptrdiff_t os

/* Each (OB, KK) instance is its own function, so each gets its own register allocation. */
#define CR_NOINLINE static __attribute__((noinline))
#define CR_INST(T, VT, VL, SUF, NAME, BODY)                                               \
    CR_NOINLINE void cr_##NAME##_##SUF(CR_ARGS(T)) { (void)kk; BODY }

#if CR_OBMAX > 4
#define CR_INST_WIDE(T, VT, VL, SUF)                                                     \
    CR_INST(T, VT, VL, SUF, g5, CR_BODY(T, VT, VL, 5, kk))                               \
    CR_INST(T, VT, VL, SUF, g6, CR_BODY(T, VT, VL, 6, kk))
#define CR_CASES_WIDE(SUF)                                                               \
        case 5: cr_g5_##SUF(CR_PASS); return;                                            \
        case 6: cr_g6_##SUF(CR_PASS); return;
#else
#define CR_INST_WIDE(T, VT, VL, SUF)
#define CR_CASES_WIDE(SUF)
#endif

#define CR_PASS x, cs, cig, toff, kk, w, wos, bias, out, os

#define CR_DEFINE(T, VT, VL, SUF)                                                        \
    CR_INST(T, VT, VL, SUF, g1, CR_BODY1(T, VT, VL, kk))                                 \
    CR_INST(T, VT, VL, SUF, g2, CR_BODY(T, VT, VL, 2, kk))                               \
    CR_INST(T, VT, VL, SUF, g3, CR_BODY(T, VT, VL, 3, kk))                               \
    CR_INST(T, VT, VL, SUF, g4, CR_BODY(T, VT, VL, 4, kk))                               \
    CR_INST_WIDE(T, VT, VL, SUF)                                                         \
    /* Fixed 3x3 / 5x5 taps: the tap loop unrolls, offsets stay in registers. */          \
    CR_INST(T, VT, VL, SUF, f1k9, CR_BODY1(T, VT, VL, 9))                                \
    CR_INST(T, VT, VL, SUF, f2k9, CR_BODY(T, VT, VL, 2, 9))                              \
    CR_INST(T, VT, VL, SUF, f1k25, CR_BODY1(T, VT, VL, 25))                              \
    CR_INST(T, VT, VL, SUF, f2k25, CR_BODY(T, VT, VL, 2, 25))                            \
    /* out block := bias + taps, for ob output channels (1 <= ob <= CR_OBMAX). */         \
    static void cr_block_##SUF(int ob, CR_ARGS(T)) {                                     \
        if (kk == 9 && ob == 1) { cr_f1k9_##SUF(CR_PASS); return; }                      \
        if (kk == 9 && ob == 2) { cr_f2k9_##SUF(CR_PASS); return; }                      \
        if (kk == 25 && ob == 1) { cr_f1k25_##SUF(CR_PASS); return; }                    \
        if (kk == 25 && ob == 2) { cr_f2k25_##SUF(CR_PASS); return; }                    \
        switch (ob) {                                                                    \
        case 1: cr_g1_##SUF(CR_PASS); return;                                            \
        case 2: cr_g2_##SUF(CR_PASS); return;                                            \
        case 3: cr_g3_##SUF(CR_PASS); return;                                            \
        case 4: cr_g4_##SUF(CR_PASS); return;                                            \
        CR_CASES_WIDE(SUF)                                                               \
        }                                                                                \
    }

CR_DEFINE(float, cr_vf, CR_VLF, f)
CR_DEFINE(double, cr_vd, CR_VLD, d)


/* Short-row helpers of the band packing and the copy-out.
 *   cr_copy:   dst[0:n] := src[0:n]
 *   cr_deint2: de[0:ne] := src[0:2*ne:2], dod[0:no] := src[1:2*no:2]   (no <= ne <= no + 1)
 * With AVX-512, whole rows go through vectors with masked tails; otherwise plain loops
 * (which GCC vectorises). A libc memcpy call costs more than the copy at these sizes. */
#if defined(__AVX512F__)
#include <immintrin.h>
static inline void cr_copy_f(float *restrict dst, const float *restrict src, ptrdiff_t n) {
    ptrdiff_t i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(dst + i, _mm512_loadu_ps(src + i));
    if (i < n) {
        __mmask16 m = (__mmask16)((1u << (n - i)) - 1u);
        _mm512_mask_storeu_ps(dst + i, m, _mm512_maskz_loadu_ps(m, src + i));
    }
}
static inline void cr_copy_d(double *restrict dst, const double *restrict src, ptrdiff_t n) {
    ptrdiff_t i = 0;
    for (; i + 8 <= n; i += 8) _mm512_storeu_pd(dst + i, _mm512_loadu_pd(src + i));
    if (i < n) {
        __mmask8 m = (__mmask8)((1u << (n - i)) - 1u);
        _mm512_mask_storeu_pd(dst + i, m, _mm512_maskz_loadu_pd(m, src + i));
    }
}
/* cr_copy on nrows rows (source rows ss apart, destination rows ds apart), the
 * tail mask computed once. */
static inline void cr_copy_rows_f(float *restrict dst, ptrdiff_t ds, const float *restrict src,
                                  ptrdiff_t ss, ptrdiff_t nrows, ptrdiff_t n) {
    const ptrdiff_t nf = n & ~(ptrdiff_t)15;
    const __mmask16 m = (__mmask16)((1u << (n - nf)) - 1u);
    for (ptrdiff_t r = 0; r < nrows; r++) {
        const float *s = src + r * ss;
        float *d = dst + r * ds;
        for (ptrdiff_t i = 0; i < nf; i += 16) _mm512_storeu_ps(d + i, _mm512_loadu_ps(s + i));
        if (m) _mm512_mask_storeu_ps(d + nf, m, _mm512_maskz_loadu_ps(m, s + nf));
    }
}
static inline void cr_deint2_f(const float *restrict src, float *restrict de, ptrdiff_t ne,
                               float *restrict dod, ptrdiff_t no) {
    const __m512i ie = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i io = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    ptrdiff_t m = 0, n = ne + no;          /* n input elements */
    for (; m + 16 <= no; m += 16) {
        __m512 a = _mm512_loadu_ps(src + 2 * m), b = _mm512_loadu_ps(src + 2 * m + 16);
        _mm512_storeu_ps(de + m, _mm512_permutex2var_ps(a, ie, b));
        _mm512_storeu_ps(dod + m, _mm512_permutex2var_ps(a, io, b));
    }
    while (m < ne) {
        ptrdiff_t left = n - 2 * m;        /* input elements left, 1..32 */
        if (left > 32) left = 32;
        __mmask16 la = (__mmask16)(left >= 16 ? 0xFFFFu : ((1u << left) - 1u));
        __mmask16 lb = (__mmask16)(left <= 16 ? 0u : ((1u << (left - 16)) - 1u));
        __m512 a = _mm512_maskz_loadu_ps(la, src + 2 * m);
        __m512 b = _mm512_maskz_loadu_ps(lb, src + 2 * m + 16);
        ptrdiff_t ke = ne - m < 16 ? ne - m : 16, ko = no - m < 16 ? no - m : 16;
        _mm512_mask_storeu_ps(de + m, (__mmask16)((1u << ke) - 1u), _mm512_permutex2var_ps(a, ie, b));
        if (ko > 0)
            _mm512_mask_storeu_ps(dod + m, (__mmask16)((1u << ko) - 1u), _mm512_permutex2var_ps(a, io, b));
        m += 16;
    }
}
#else
static inline void cr_copy_f(float *restrict dst, const float *restrict src, ptrdiff_t n) {
    for (ptrdiff_t i = 0; i < n; i++) dst[i] = src[i];
}
static inline void cr_copy_d(double *restrict dst, const double *restrict src, ptrdiff_t n) {
    for (ptrdiff_t i = 0; i < n; i++) dst[i] = src[i];
}
static inline void cr_deint2_f(const float *restrict src, float *restrict de, ptrdiff_t ne,
                               float *restrict dod, ptrdiff_t no) {
    ptrdiff_t m = 0;
    for (; m < no; m++) { de[m] = src[2 * m]; dod[m] = src[2 * m + 1]; }
    for (; m < ne; m++) de[m] = src[2 * m];
}
#endif
#if !defined(__AVX512F__)
static inline void cr_copy_rows_f(float *restrict dst, ptrdiff_t ds, const float *restrict src,
                                  ptrdiff_t ss, ptrdiff_t nrows, ptrdiff_t n) {
    for (ptrdiff_t r = 0; r < nrows; r++) cr_copy_f(dst + r * ds, src + r * ss, n);
}
#endif
static inline void cr_copy_rows_d(double *restrict dst, ptrdiff_t ds, const double *restrict src,
                                  ptrdiff_t ss, ptrdiff_t nrows, ptrdiff_t n) {
    for (ptrdiff_t r = 0; r < nrows; r++) cr_copy_d(dst + r * ds, src + r * ss, n);
}
static inline void cr_deint2_d(const double *restrict src, double *restrict de, ptrdiff_t ne,
                               double *restrict dod, ptrdiff_t no) {
    ptrdiff_t m = 0;
    for (; m < no; m++) { de[m] = src[2 * m]; dod[m] = src[2 * m + 1]; }
    for (; m < ne; m++) de[m] = src[2 * m];
}

/* cr_deint2 on nrows rows: source rows ss apart, destination rows ds apart. */
static inline void cr_deint2_rows_f(const float *restrict src, ptrdiff_t ss, float *restrict de,
                                    float *restrict dod, ptrdiff_t ds, ptrdiff_t nrows,
                                    ptrdiff_t ne, ptrdiff_t no) {
#if defined(__AVX512F__)
    if (ne <= 16) {            /* one masked step per row; masks computed once */
        const __m512i ie = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
        const __m512i io = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
        const ptrdiff_t n = ne + no;
        const __mmask16 la = (__mmask16)(n >= 16 ? 0xFFFFu : ((1u << n) - 1u));
        const __mmask16 lb = (__mmask16)(n <= 16 ? 0u : ((1u << (n - 16)) - 1u));
        const __mmask16 me = (__mmask16)((1u << ne) - 1u), mo = (__mmask16)((1u << no) - 1u);
        for (ptrdiff_t r = 0; r < nrows; r++) {
            const float *sr = src + r * ss;
            __m512 a = _mm512_maskz_loadu_ps(la, sr), b = _mm512_maskz_loadu_ps(lb, sr + 16);
            _mm512_mask_storeu_ps(de + r * ds, me, _mm512_permutex2var_ps(a, ie, b));
            _mm512_mask_storeu_ps(dod + r * ds, mo, _mm512_permutex2var_ps(a, io, b));
        }
        return;
    }
#endif
    for (ptrdiff_t r = 0; r < nrows; r++)
        cr_deint2_f(src + r * ss, de + r * ds, ne, dod + r * ds, no);
}
static inline void cr_deint2_rows_d(const double *restrict src, ptrdiff_t ss, double *restrict de,
                                    double *restrict dod, ptrdiff_t ds, ptrdiff_t nrows,
                                    ptrdiff_t ne, ptrdiff_t no) {
    for (ptrdiff_t r = 0; r < nrows; r++)
        cr_deint2_d(src + r * ss, de + r * ds, ne, dod + r * ds, no);
}


/* ---- Depthwise rows: one channel, kh = kw = KH in {3, 5}, row step S = sh in {1, 2}, dh = 1.
 *
 *   out[i*ow + j] = bias + sum_{p<KH, q<KH} w[p*KH + q] * x[vtoff[p*KH + q] + i*wk + j]
 *
 * for i < nrows, j < ow, written straight into the output rows (partial vectors with
 * masked / partial stores, so there is no tile to copy out). Rows go in pairs: row i+1
 * reads at tap (p, q) what row i reads at tap (p + S, q), so the KH + S "virtual" tap
 * rows of vtoff (rows p >= KH being the pair's extra rows) are each loaded once and
 * feed both rows. */
#if defined(__AVX512F__)
static inline void cr_store_part_f(float *dst, cr_vf v, ptrdiff_t n) {
    _mm512_mask_storeu_ps(dst, (__mmask16)((1u << n) - 1u), (__m512)v);
}
static inline void cr_store_part_d(double *dst, cr_vd v, ptrdiff_t n) {
    _mm512_mask_storeu_pd(dst, (__mmask8)((1u << n) - 1u), (__m512d)v);
}
#else
static inline void cr_store_part_f(float *dst, cr_vf v, ptrdiff_t n) { memcpy(dst, &v, n * sizeof(float)); }
static inline void cr_store_part_d(double *dst, cr_vd v, ptrdiff_t n) { memcpy(dst, &v, n * sizeof(double)); }
#endif

#define CR_DW_BODY(T, VT, VL, SUF, KH, S)                                                  \
    for (ptrdiff_t i = 0; i < nrows; i += 2) {                                            \
        const int two = (i + 1 < nrows);                                                  \
        for (ptrdiff_t j0 = 0; j0 < ow; j0 += CR_NV * (VL)) {                             \
            VT a[CR_NV], b[CR_NV];                                                        \
            _Pragma("GCC unroll 8")                                                       \
            for (int v = 0; v < CR_NV; v++) { a[v] = bias - (VT){0}; b[v] = a[v]; }       \
            const T *xi = x + i * wk + j0;                                                \
            _Pragma("GCC unroll 1")                                                       \
            for (int p = 0; p < (KH) + (S); p++) {                                        \
                _Pragma("GCC unroll 8")                                                   \
                for (int q = 0; q < (KH); q++) {                                          \
                    const T *xp = xi + vtoff[p * (KH) + q];                               \
                    VT wa = (p < (KH)) ? w[(p < (KH) ? p : 0) * (KH) + q] - (VT){0} : (VT){0}; \
                    VT wb = (p >= (S)) ? w[(p >= (S) ? p - (S) : 0) * (KH) + q] - (VT){0} : (VT){0}; \
                    _Pragma("GCC unroll 8")                                               \
                    for (int v = 0; v < CR_NV; v++) {                                     \
                        VT xv;                                                            \
                        memcpy(&xv, xp + v * (VL), sizeof(VT));                           \
                        if (p < (KH)) a[v] += wa * xv;                                    \
                        if (p >= (S)) b[v] += wb * xv;                                    \
                    }                                                                     \
                }                                                                         \
            }                                                                             \
            T *oa = out + i * ow + j0;                                                    \
            ptrdiff_t n = ow - j0;                                                        \
            _Pragma("GCC unroll 8")                                                       \
            for (int v = 0; v < CR_NV; v++) {                                             \
                ptrdiff_t m = n - v * (VL);                                               \
                if (m >= (VL)) {                                                          \
                    memcpy(oa + v * (VL), &a[v], sizeof(VT));                             \
                    if (two) memcpy(oa + ow + v * (VL), &b[v], sizeof(VT));               \
                } else if (m > 0) {                                                       \
                    cr_store_part_##SUF(oa + v * (VL), a[v], m);                          \
                    if (two) cr_store_part_##SUF(oa + ow + v * (VL), b[v], m);            \
                }                                                                         \
            }                                                                             \
        }                                                                                 \
    }

#define CR_DEFINE_DW(T, VT, VL, SUF)                                                       \
    static void cr_dwrows_##SUF(int kh, int s, const T *restrict x,                        \
                                const ptrdiff_t *restrict vtoff, ptrdiff_t wk,             \
                                const T *restrict w, T bias, T *restrict out,              \
                                ptrdiff_t ow, ptrdiff_t nrows) {                           \
        if (kh == 3 && s == 1) { CR_DW_BODY(T, VT, VL, SUF, 3, 1) }                        \
        else if (kh == 3) { CR_DW_BODY(T, VT, VL, SUF, 3, 2) }                             \
        else if (s == 1) { CR_DW_BODY(T, VT, VL, SUF, 5, 1) }                              \
        else { CR_DW_BODY(T, VT, VL, SUF, 5, 2) }                                          \
    }

CR_DEFINE_DW(float, cr_vf, CR_VLF, f)
CR_DEFINE_DW(double, cr_vd, CR_VLD, d)

/* ---- Depthwise straight from the input (AVX-512, float32): one channel, kh = kw = KH in
 * {3, 5}, stride S = sh = sw = 2 (the body also handles S = 1, but for stride 1 it
 * measured no faster than the band path, so only S = 2 is instantiated), no dilation,
 * any zero padding (pt above, pl left).
 *
 *   out[i*ow + j] = bias + sum_{p<KH, q<KH} w[p*KH + q] * xpad[i*S + p - pt, j*S + q - pl]
 *
 * for rows i0 <= i < i0 + nrows. No band: each tap vector is a masked load of an input
 * row (lanes outside the input load as 0 and are still multiplied, so NaN / inf in the
 * weights propagate as through real padding; rows outside the input load with an
 * all-zero mask). With S = 2 the even / odd columns come out of two loads by one
 * two-source permute per tap. A step is R output rows x one vector of 16 columns; each
 * input row of the step is loaded once and feeds every row of the step that uses it.
 * With SPLIT, even and odd tap columns go to two accumulator sets (summed at the end:
 * twice the independent FMA chains; the order is fixed, so results do not depend on the
 * thread count). Weights: 3x3 in registers, 5x5 as broadcast memory operands (25 would
 * not fit beside the accumulators; inline asm, as GCC would hoist and spill the splats). */
#if defined(__AVX512F__)
#define CR_HAVE_DWD 1
CR_ALWAYS_INLINE __mmask16 cr_colmask(ptrdiff_t c0, ptrdiff_t w) {
    ptrdiff_t lo = c0 < 0 ? -c0 : 0, hi = w - c0;
    if (hi > 16) hi = 16;
    if (hi <= lo) return 0;
    unsigned m = (hi >= 16 ? 0xFFFFu : ((1u << hi) - 1u)) & ~((1u << lo) - 1u);
    return (__mmask16)m;
}
/* acc += broadcast(*wp) * x, the weight read as a broadcast memory operand. */
#define CR_FMA_MEM(acc, x, wbase, k)                                                      \
    __asm__("vfmadd231ps %c3(%2)%{1to16%}, %1, %0"                                         \
            : "+v"(acc) : "v"(x), "r"(wbase), "i"(4 * (k)), "m"(*(const float (*)[25])(wbase)))

/* One step (R rows x NV vectors of 16 columns at (i, j0)) into acc; ALLV: all its input
 * rows exist. */
#define CR_DWD_STEP(KH, S, R, NV, WREG, SPLIT, ALLV)                                             \
            _Pragma("GCC unroll 16")                                                      \
            for (int r = 0; r < (R); r++) {                                               \
                _Pragma("GCC unroll 4")                                                   \
                for (int v = 0; v < (NV); v++) { acc[r][v][0] = bv; acc[r][v][1] = nz; }  \
            }                                                                             \
            _Pragma("GCC unroll 32")                                                      \
            for (int uu = 0; uu < ((R) - 1) * (S) + (KH); uu++) {                         \
                const ptrdiff_t u = i * (S) - pt + uu;                                    \
                const int rv = (ALLV) || (u >= 0 && u < h);                              \
                const __mmask16 rm = (__mmask16)(rv ? 0xFFFFu : 0u);                      \
                const float *xr = x + (rv ? u : 0) * w + c0;                              \
                _Pragma("GCC unroll 8")                                                   \
                for (int q = 0; q < (KH); q += (S)) {                                     \
                    _Pragma("GCC unroll 4")                                               \
                    for (int v = 0; v < (NV); v++) {                                      \
                        __m512 tv[2];                                                     \
                        const float *xq = xr + q + 16 * (S) * v;                          \
                        if ((S) == 1) {                                                   \
                            tv[0] = _mm512_maskz_loadu_ps(ma[v][q] & rm, xq);             \
                            tv[1] = tv[0];                                                \
                        } else {                                                          \
                            __m512 A = _mm512_maskz_loadu_ps(ma[v][q] & rm, xq);          \
                            __m512 B = _mm512_maskz_loadu_ps(mb[v][q] & rm, xq + 16);     \
                            tv[0] = _mm512_shuffle_ps(A, B, 0x88);                        \
                            tv[1] = _mm512_shuffle_ps(A, B, 0xDD);                        \
                        }                                                                 \
                        _Pragma("GCC unroll 2")                                           \
                        for (int e = 0; e < (S); e++) {                                   \
                            const int qq = q + e;                                         \
                            if (qq < (KH)) {                                              \
                                _Pragma("GCC unroll 16")                                  \
                                for (int r = 0; r < (R); r++) {                           \
                                    const int p = uu - (S) * r;                           \
                                    if (p >= 0 && p < (KH)) {                             \
                                        if (WREG)                                         \
                                            acc[r][v][qq & (SPLIT)] = _mm512_fmadd_ps(wr[(WREG) ? p * (KH) + qq : 0], tv[e], acc[r][v][qq & (SPLIT)]); \
                                        else                                              \
                                            CR_FMA_MEM(acc[r][v][qq & (SPLIT)], tv[e], wt, p * (KH) + qq); \
                                    }                                                     \
                                }                                                         \
                            }                                                             \
                        }                                                                 \
                    }                                                                     \
                }                                                                         \
            }

#define CR_DWD_BODY(KH, S, R, NV, WREG, SPLIT)                                                   \
    const __m512 bv = _mm512_set1_ps(bias), nz = _mm512_set1_ps(-0.0f);                  \
    /* S = 2: in-lane shuffles of (A, B) give the even / odd columns with lane 4g + m */ \
    /* holding output column 2g + m (m < 2) or 8 + 2g + m - 2 (m >= 2); one permute per */ \
    /* output vector puts them back in order. */                                          \
    const __m512i unscr = _mm512_setr_epi32(0, 1, 4, 5, 8, 9, 12, 13, 2, 3, 6, 7, 10, 11, 14, 15); \
    (void)unscr;                                                                          \
    __m512 wr[(WREG) ? (KH) * (KH) : 1];                                                  \
    _Pragma("GCC unroll 32")                                                              \
    for (int k = 0; k < ((WREG) ? (KH) * (KH) : 1); k++) wr[k] = _mm512_set1_ps(wt[k]);   \
    for (ptrdiff_t i = i0; i < i0 + nrows; i += (R)) {                                    \
        const ptrdiff_t nr = i0 + nrows - i;                                              \
        for (ptrdiff_t j0 = 0; j0 < ow; j0 += 16 * (NV)) {                                \
            /* tap column q of vector v reads input columns c0 + 16*S*v + q + S*lane */   \
            const ptrdiff_t c0 = (S) * j0 - pl;                                           \
            __mmask16 ma[NV][KH], mb[NV][KH];                                             \
            _Pragma("GCC unroll 4")                                                       \
            for (int v = 0; v < (NV); v++) {                                              \
                _Pragma("GCC unroll 8")                                                   \
                for (int q = 0; q < (KH); q++) {                                          \
                    ma[v][q] = cr_colmask(c0 + 16 * (S) * v + q, w);                      \
                    mb[v][q] = (S) == 2 ? cr_colmask(c0 + 16 * (S) * v + q + 16, w) : 0;  \
                }                                                                         \
            }                                                                             \
            __m512 acc[R][NV][2];      /* even / odd tap columns: twice the chains */     \
            /* every input row of the step inside the input: row masks drop out */        \
            if (i * (S) - pt >= 0 && i * (S) - pt + ((R) - 1) * (S) + (KH) <= h) {        \
                CR_DWD_STEP(KH, S, R, NV, WREG, SPLIT, 1)                                        \
            } else {                                                                      \
                CR_DWD_STEP(KH, S, R, NV, WREG, SPLIT, 0)                                        \
            }                                                                             \
            _Pragma("GCC unroll 4")                                                       \
            for (int v = 0; v < (NV); v++) {                                              \
                const ptrdiff_t m = ow - j0 - 16 * v;                                     \
                if (m > 0) {                                                              \
                    const __mmask16 om = (__mmask16)(m >= 16 ? 0xFFFFu : ((1u << m) - 1u)); \
                    _Pragma("GCC unroll 16")                                              \
                    for (int r = 0; r < (R); r++)                                         \
                        if (r < nr) _mm512_mask_storeu_ps(out + (i + r) * ow + j0 + 16 * v, om, \
                            (S) == 1 ? ((SPLIT) ? _mm512_add_ps(acc[r][v][0], acc[r][v][1]) : acc[r][v][0]) : \
                            _mm512_permutexvar_ps(unscr, (SPLIT) ? _mm512_add_ps(acc[r][v][0], acc[r][v][1]) : acc[r][v][0])); \
                }                                                                         \
            }                                                                             \
        }                                                                                 \
    }

/* no-tree-sink: GCC would otherwise sink every FMA down to the store, keeping all the
 * step's tap vectors alive at once (spilled) and each row's sum in one long chain. */
#define CR_DWD_FN(NAME, KH, S, R, NV, WREG, SPLIT)                                                      \
    CR_NOINLINE __attribute__((optimize("no-tree-sink")))                                  \
    void NAME(const float *restrict x, ptrdiff_t h,                       \
            ptrdiff_t w, ptrdiff_t pt, ptrdiff_t pl, const float *restrict wt, float bias, \
            float *restrict out, ptrdiff_t ow, ptrdiff_t i0, ptrdiff_t nrows) {            \
        CR_DWD_BODY(KH, S, R, NV, WREG, SPLIT)                                                    \
    }
CR_DWD_FN(cr_dwd_3_2_f, 3, 2, 8, 1, 1, 1)
CR_DWD_FN(cr_dwd_5_2_f, 5, 2, 14, 1, 0, 1)
CR_DWD_FN(cr_dwd_5_2r7_f, 5, 2, 7, 1, 0, 1)

/* out rows [i0, i0 + nrows) of one channel plane (out points at its row 0); s == 2. */
static void cr_dwdirect_f(int kh, int s, const float *x, ptrdiff_t h, ptrdiff_t w,
                          ptrdiff_t pt, ptrdiff_t pl, const float *wt, float bias,
                          float *out, ptrdiff_t ow, ptrdiff_t i0, ptrdiff_t nrows) {
    (void)s;
    if (kh == 3) cr_dwd_3_2_f(x, h, w, pt, pl, wt, bias, out, ow, i0, nrows);
    else if (nrows % 14 == 0 || nrows % 14 > 7)       /* steps of 14 rows, little waste */
        cr_dwd_5_2_f(x, h, w, pt, pl, wt, bias, out, ow, i0, nrows);
    else cr_dwd_5_2r7_f(x, h, w, pt, pl, wt, bias, out, ow, i0, nrows);
}
#else
#define CR_HAVE_DWD 0
static void cr_dwdirect_f(int kh, int s, const float *x, ptrdiff_t h, ptrdiff_t w,
                          ptrdiff_t pt, ptrdiff_t pl, const float *wt, float bias,
                          float *out, ptrdiff_t ow, ptrdiff_t i0, ptrdiff_t nrows) {
    (void)kh; (void)s; (void)x; (void)h; (void)w; (void)pt; (void)pl; (void)wt;
    (void)bias; (void)out; (void)ow; (void)i0; (void)nrows;      /* never called */
}
#endif

static const char *cr_isa(void) { return CR_ISA; }

#endif

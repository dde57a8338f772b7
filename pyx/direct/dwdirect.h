/* The float32 AVX-512 depthwise kernel of the direct family that reads the input
 * directly (no band), included by direct_kernels.h inside its optimisation region.
 * float32 only; float64 takes the band path. */
#ifndef CONVREG_DIRECT_DWDIRECT_H
#define CONVREG_DIRECT_DWDIRECT_H

/* Depthwise straight from the input (AVX-512, float32): one channel, kh = kw = KH in
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
CR_DWD_FN(cr_dwd_3_2_f32, 3, 2, 8, 1, 1, 1)
CR_DWD_FN(cr_dwd_5_2_f32, 5, 2, 14, 1, 0, 1)
CR_DWD_FN(cr_dwd_5_2r7_f32, 5, 2, 7, 1, 0, 1)

/* out rows [i0, i0 + nrows) of one channel plane (out points at its row 0); s == 2. Only
 * calls, so it inlines into the Cython caller whatever that caller's optimisation flags. */
CR_ALWAYS_INLINE void cr_dwdirect_f32(int kh, int s, const float *x, ptrdiff_t h, ptrdiff_t w,
                                      ptrdiff_t pt, ptrdiff_t pl, const float *wt, float bias,
                                      float *out, ptrdiff_t ow, ptrdiff_t i0, ptrdiff_t nrows) {
    (void)s;
    if (kh == 3) cr_dwd_3_2_f32(x, h, w, pt, pl, wt, bias, out, ow, i0, nrows);
    else if (nrows % 14 == 0 || nrows % 14 > 7)       /* steps of 14 rows, little waste */
        cr_dwd_5_2_f32(x, h, w, pt, pl, wt, bias, out, ow, i0, nrows);
    else cr_dwd_5_2r7_f32(x, h, w, pt, pl, wt, bias, out, ow, i0, nrows);
}
#else
#define CR_HAVE_DWD 0
static void cr_dwdirect_f32(int kh, int s, const float *x, ptrdiff_t h, ptrdiff_t w,
                            ptrdiff_t pt, ptrdiff_t pl, const float *wt, float bias,
                            float *out, ptrdiff_t ow, ptrdiff_t i0, ptrdiff_t nrows) {
    (void)kh; (void)s; (void)x; (void)h; (void)w; (void)pt; (void)pl; (void)wt;
    (void)bias; (void)out; (void)ow; (void)i0; (void)nrows;      /* never called */
}
#endif

#endif

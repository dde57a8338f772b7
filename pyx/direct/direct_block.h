/* Template of the register-blocked microkernels of the direct family, included once per
 * element type by direct_kernels.h (no include guard, on purpose), after direct_rows.h.
 *
 * One block call computes OB output channels x CR_NV vectors of consecutive "flat" output
 * positions, keeping the OB*CR_NV accumulators in registers:
 *
 *   out[o*os + t] = bias[o] + sum_{c<cig} sum_{k<kk} w[o*wos + c*kk + k] * x[c*cs + toff[k] + t]
 *
 * for o < OB and t < CR_NV*CR_VL (legend and band layout: direct_impl.pxi); with dm
 * (AVX-512 builds), position t of vector v goes to out[o*os + doff[..] + t % CR_VL]
 * instead, the output rows themselves (CR_STORE_ACC).
 *
 * Before each #include: CR_T, CR_VT (GCC vector), CR_VL (lanes), CR_STORE_PART (from
 * direct_rows.h) and the function names, literally:
 *   CR_BLOCK        the dispatcher: 1 <= ob <= CR_OBMAX, any kk
 *   CR_BLOCK_G1 .. CR_BLOCK_G4 (CR_BLOCK_G5, CR_BLOCK_G6 when CR_OBMAX > 4): OB = 1 .. 6
 *   CR_BLOCK_1K9, CR_BLOCK_2K9, CR_BLOCK_1K25, CR_BLOCK_2K25: OB = 1, 2 with kk = 9, 25
 *   CR_DWROWS       depthwise rows (see below)
 * All are #undef'd at the end. */

#ifndef CR_DIRECT_BODIES
#define CR_DIRECT_BODIES
/* Vector v of a block's accumulators, a = acc[o][v], into its channel's rows at base.
 * Without dm: into the output tile, contiguous (base + v*CR_VL). With dm (AVX-512): straight
 * into the output, by up to two masked stores, the lanes of the vector's first band row
 * at base + doff[2v] (mask dm[2v]) and those of the next row at base + doff[2v + 1]
 * (mask dm[2v + 1]); lanes past a row's ow outputs or past the tile are never stored.
 * Masked-off lanes are not accessed (AVX-512 suppresses their faults), so doff may point
 * up to a vector before the rows it writes. */
#if defined(__AVX512F__)
#define CR_STORE_ACC(base, v, a)                                                         \
    do {                                                                                 \
        if (dm) {                                                                        \
            CR_V512 t_;                                                                  \
            memcpy(&t_, &(a), sizeof(t_));                                               \
            CR_STOREU_M((base) + doff[2 * (v)], (CR_MASK)dm[2 * (v)], t_);                \
            if (dm[2 * (v) + 1])                                                         \
                CR_STOREU_M((base) + doff[2 * (v) + 1], (CR_MASK)dm[2 * (v) + 1], t_);    \
        } else {                                                                         \
            memcpy((base) + (v) * (CR_VL), &(a), sizeof(CR_VT));                         \
        }                                                                                \
    } while (0)
#else
#define CR_STORE_ACC(base, v, a) memcpy((base) + (v) * (CR_VL), &(a), sizeof(CR_VT))
#endif
/* The body for a compile-time OB (and optionally a compile-time KK, so the tap loop
 * unrolls and the offsets stay in registers). A macro, not an inline function: the
 * accumulator array must have a constant size to live in registers. */
#define CR_BODY(OB, KK)                                                                  \
    CR_VT acc[OB][CR_NV];                                                                \
    _Pragma("GCC unroll 8")                                                              \
    for (int o = 0; o < OB; o++) {                                                       \
        CR_VT bv = bias[o] - (CR_VT){0};                                                 \
        _Pragma("GCC unroll 8")                                                          \
        for (int v = 0; v < CR_NV; v++) acc[o][v] = bv;                                  \
    }                                                                                    \
    for (ptrdiff_t c = 0; c < cig; c++) {                                                \
        const CR_T *xc = x + c * cs;                                                     \
        const CR_T *wc = w + c * (KK);                                                   \
        for (int k = 0; k < (KK); k++) {                                                 \
            const CR_T *xp = xc + toff[k];                                               \
            CR_VT xv[CR_NV];                                                             \
            _Pragma("GCC unroll 8")                                                      \
            for (int v = 0; v < CR_NV; v++) memcpy(&xv[v], xp + v * (CR_VL), sizeof(CR_VT)); \
            _Pragma("GCC unroll 8")                                                      \
            for (int o = 0; o < OB; o++) {                                               \
                CR_VT wv = wc[o * wos + k] - (CR_VT){0};                                 \
                _Pragma("GCC unroll 8")                                                  \
                for (int v = 0; v < CR_NV; v++) acc[o][v] += wv * xv[v];                 \
            }                                                                            \
        }                                                                                \
    }                                                                                    \
    _Pragma("GCC unroll 8")                                                              \
    for (int o = 0; o < OB; o++) {                                                       \
        _Pragma("GCC unroll 8")                                                          \
        for (int v = 0; v < CR_NV; v++) CR_STORE_ACC(out + o * os, v, acc[o][v]);        \
    }

/* OB == 1: two accumulator sets (even / odd taps) so that 2*CR_NV independent FMA
 * chains hide the FMA latency; summed at the end. */
#define CR_BODY1(KK)                                                                     \
    CR_VT acc[2][CR_NV];                                                                 \
    _Pragma("GCC unroll 8")                                                              \
    for (int v = 0; v < CR_NV; v++) { acc[0][v] = bias[0] - (CR_VT){0}; acc[1][v] = (CR_VT){0}; } \
    for (ptrdiff_t c = 0; c < cig; c++) {                                                \
        const CR_T *xc = x + c * cs;                                                     \
        const CR_T *wc = w + c * (KK);                                                   \
        _Pragma("GCC unroll 32")                                                         \
        for (int k = 0; k < (KK); k++) {                                                 \
            const CR_T *xp = xc + toff[k];                                               \
            CR_VT wv = wc[k] - (CR_VT){0};                                               \
            _Pragma("GCC unroll 8")                                                      \
            for (int v = 0; v < CR_NV; v++) {                                            \
                CR_VT xv;                                                                \
                memcpy(&xv, xp + v * (CR_VL), sizeof(CR_VT));                            \
                acc[k & 1][v] += wv * xv;                                                \
            }                                                                            \
        }                                                                                \
    }                                                                                    \
    _Pragma("GCC unroll 8")                                                              \
    for (int v = 0; v < CR_NV; v++) {                                                    \
        CR_VT r = acc[0][v] + acc[1][v];                                                 \
        CR_STORE_ACC(out, v, r);                                                         \
    }

/* Depthwise rows: one channel, kh = kw = KH in {3, 5}, row step S = sh in {1, 2}, dh = 1.
 *
 *   out[i*ow + j] = bias + sum_{p<KH, q<KH} w[p*KH + q] * x[vtoff[p*KH + q] + i*wk + j]
 *
 * for i < nrows, j < ow, written straight into the output rows (partial vectors with
 * masked / partial stores, so there is no tile to copy out). Rows go in pairs: row i+1
 * reads at tap (p, q) what row i reads at tap (p + S, q), so the KH + S "virtual" tap
 * rows of vtoff (rows p >= KH being the pair's extra rows) are each loaded once and
 * feed both rows. */
#define CR_DW_BODY(KH, S)                                                                 \
    for (ptrdiff_t i = 0; i < nrows; i += 2) {                                            \
        const int two = (i + 1 < nrows);                                                  \
        for (ptrdiff_t j0 = 0; j0 < ow; j0 += CR_NV * (CR_VL)) {                          \
            CR_VT a[CR_NV], b[CR_NV];                                                     \
            _Pragma("GCC unroll 8")                                                       \
            for (int v = 0; v < CR_NV; v++) { a[v] = bias - (CR_VT){0}; b[v] = a[v]; }    \
            const CR_T *xi = x + i * wk + j0;                                             \
            _Pragma("GCC unroll 1")                                                       \
            for (int p = 0; p < (KH) + (S); p++) {                                        \
                _Pragma("GCC unroll 8")                                                   \
                for (int q = 0; q < (KH); q++) {                                          \
                    const CR_T *xp = xi + vtoff[p * (KH) + q];                            \
                    CR_VT wa = (p < (KH)) ? w[(p < (KH) ? p : 0) * (KH) + q] - (CR_VT){0} : (CR_VT){0}; \
                    CR_VT wb = (p >= (S)) ? w[(p >= (S) ? p - (S) : 0) * (KH) + q] - (CR_VT){0} : (CR_VT){0}; \
                    _Pragma("GCC unroll 8")                                               \
                    for (int v = 0; v < CR_NV; v++) {                                     \
                        CR_VT xv;                                                         \
                        memcpy(&xv, xp + v * (CR_VL), sizeof(CR_VT));                     \
                        if (p < (KH)) a[v] += wa * xv;                                    \
                        if (p >= (S)) b[v] += wb * xv;                                    \
                    }                                                                     \
                }                                                                         \
            }                                                                             \
            CR_T *oa = out + i * ow + j0;                                                 \
            ptrdiff_t n = ow - j0;                                                        \
            _Pragma("GCC unroll 8")                                                       \
            for (int v = 0; v < CR_NV; v++) {                                             \
                ptrdiff_t m = n - v * (CR_VL);                                            \
                if (m >= (CR_VL)) {                                                       \
                    memcpy(oa + v * (CR_VL), &a[v], sizeof(CR_VT));                       \
                    if (two) memcpy(oa + ow + v * (CR_VL), &b[v], sizeof(CR_VT));         \
                } else if (m > 0) {                                                       \
                    CR_STORE_PART(oa + v * (CR_VL), a[v], m);                             \
                    if (two) CR_STORE_PART(oa + ow + v * (CR_VL), b[v], m);               \
                }                                                                         \
            }                                                                             \
        }                                                                                 \
    }

#define CR_BLOCK_ARGS const CR_T *restrict x, ptrdiff_t cs, ptrdiff_t cig,                  \
                      const ptrdiff_t *restrict toff, int kk, const CR_T *restrict w,       \
                      ptrdiff_t wos, const CR_T *restrict bias, CR_T *restrict out,         \
                      ptrdiff_t os, const ptrdiff_t *restrict doff, const unsigned *restrict dm
#define CR_PASS x, cs, cig, toff, kk, w, wos, bias, out, os, doff, dm
#endif /* CR_DIRECT_BODIES */

/* Each (OB, KK) instance is its own out-of-line function, so each gets its own register
 * allocation. */
CR_NOINLINE void CR_BLOCK_G1(CR_BLOCK_ARGS) { (void)kk; CR_BODY1(kk) }
CR_NOINLINE void CR_BLOCK_G2(CR_BLOCK_ARGS) { (void)kk; CR_BODY(2, kk) }
CR_NOINLINE void CR_BLOCK_G3(CR_BLOCK_ARGS) { (void)kk; CR_BODY(3, kk) }
CR_NOINLINE void CR_BLOCK_G4(CR_BLOCK_ARGS) { (void)kk; CR_BODY(4, kk) }
#if CR_OBMAX > 4
CR_NOINLINE void CR_BLOCK_G5(CR_BLOCK_ARGS) { (void)kk; CR_BODY(5, kk) }
CR_NOINLINE void CR_BLOCK_G6(CR_BLOCK_ARGS) { (void)kk; CR_BODY(6, kk) }
#endif
CR_NOINLINE void CR_BLOCK_1K9(CR_BLOCK_ARGS) { (void)kk; CR_BODY1(9) }
CR_NOINLINE void CR_BLOCK_2K9(CR_BLOCK_ARGS) { (void)kk; CR_BODY(2, 9) }
CR_NOINLINE void CR_BLOCK_1K25(CR_BLOCK_ARGS) { (void)kk; CR_BODY1(25) }
CR_NOINLINE void CR_BLOCK_2K25(CR_BLOCK_ARGS) { (void)kk; CR_BODY(2, 25) }

/* out block := bias + taps, for ob output channels (1 <= ob <= CR_OBMAX). Only calls, so
 * it inlines into the Cython caller whatever that caller's optimisation flags. */
CR_ALWAYS_INLINE void CR_BLOCK(int ob, CR_BLOCK_ARGS) {
    if (kk == 9 && ob == 1) { CR_BLOCK_1K9(CR_PASS); return; }
    if (kk == 9 && ob == 2) { CR_BLOCK_2K9(CR_PASS); return; }
    if (kk == 25 && ob == 1) { CR_BLOCK_1K25(CR_PASS); return; }
    if (kk == 25 && ob == 2) { CR_BLOCK_2K25(CR_PASS); return; }
    switch (ob) {
    case 1: CR_BLOCK_G1(CR_PASS); return;
    case 2: CR_BLOCK_G2(CR_PASS); return;
    case 3: CR_BLOCK_G3(CR_PASS); return;
    case 4: CR_BLOCK_G4(CR_PASS); return;
#if CR_OBMAX > 4
    case 5: CR_BLOCK_G5(CR_PASS); return;
    case 6: CR_BLOCK_G6(CR_PASS); return;
#endif
    }
}

CR_NOINLINE void CR_DWROWS(int kh, int s, const CR_T *restrict x,
                           const ptrdiff_t *restrict vtoff, ptrdiff_t wk,
                           const CR_T *restrict w, CR_T bias, CR_T *restrict out,
                           ptrdiff_t ow, ptrdiff_t nrows) {
    if (kh == 3 && s == 1) { CR_DW_BODY(3, 1) }
    else if (kh == 3) { CR_DW_BODY(3, 2) }
    else if (s == 1) { CR_DW_BODY(5, 1) }
    else { CR_DW_BODY(5, 2) }
}

#undef CR_T
#undef CR_VT
#undef CR_VL
#undef CR_STORE_PART
#undef CR_BLOCK
#undef CR_BLOCK_G1
#undef CR_BLOCK_G2
#undef CR_BLOCK_G3
#undef CR_BLOCK_G4
#undef CR_BLOCK_G5
#undef CR_BLOCK_G6
#undef CR_BLOCK_1K9
#undef CR_BLOCK_2K9
#undef CR_BLOCK_1K25
#undef CR_BLOCK_2K25
#undef CR_DWROWS
/* direct_rows.h leaves these to us: CR_STORE_ACC stores with them */
#undef CR_V512
#undef CR_MASK
#undef CR_STOREU_M

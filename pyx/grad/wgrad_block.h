/* Template of the weight-gradient kernel (legend in wgrad_kernels.h), included once per
 * element type (no include guard, on purpose).
 *
 * Before each #include: CR_T (element), CR_VT (GCC vector of CR_WG_VBYTES), CR_VL (lanes),
 * the names, literally (e.g. #define CR_WG_TASK cr_wgrad_task_f32):
 *   CR_WG_BLOCK   one register block: 1 <= ob <= CR_WG_OBMAX, 1 <= tb <= CR_WG_TBMAX
 *   CR_WG_TASK    one task: ob output channels, every tap, every row
 * and with AVX-512 the shim CR_MASK (lane mask type) and CR_LOADU_Z (zero-masked load).
 * All are #undef'd at the end. */

#ifndef CR_WG_BODIES
#define CR_WG_BODIES
/* The body for compile-time OB, TB: vacc[(o*ntaps + t)*CR_VL ..] (vector partial sums)
 * and, without AVX-512, sacc[o*ntaps + t] (the scalar row tails) += rows [r0, r1).
 * A macro, not an inline function: the accumulator array must have a constant size to
 * live in registers. */
#if defined(__AVX512F__)
#define CR_WG_TAIL(OB, TB)                                                               \
    {                                                                                    \
        const CR_MASK m = (CR_MASK)((1u << (ow - j)) - 1u);                              \
        CR_VT gv[OB];                                                                    \
        _Pragma("GCC unroll 8")                                                          \
        for (int o = 0; o < (OB); o++) gv[o] = (CR_VT)CR_LOADU_Z(m, g + o * gcs + j);   \
        _Pragma("GCC unroll 8")                                                          \
        for (int t = 0; t < (TB); t++) {                                                 \
            const CR_VT xv = (CR_VT)CR_LOADU_Z(m, xr + toff[t] + j);                     \
            _Pragma("GCC unroll 8")                                                      \
            for (int o = 0; o < (OB); o++) acc[o][t] += gv[o] * xv;                      \
        }                                                                                \
    }
#else
#define CR_WG_TAIL(OB, TB)                                                               \
    for (; j < ow; j++) {                                                                \
        for (int o = 0; o < (OB); o++)                                                   \
            for (int t = 0; t < (TB); t++)                                               \
                sacc[o * ntaps + t] += g[o * gcs + j] * xr[toff[t] + j];                 \
    }
#endif

#define CR_WG_BODY(OB, TB)                                                               \
    {                                                                                    \
        CR_VT acc[OB][TB];                                                               \
        _Pragma("GCC unroll 8")                                                          \
        for (int o = 0; o < (OB); o++) {                                                 \
            _Pragma("GCC unroll 8")                                                      \
            for (int t = 0; t < (TB); t++)                                               \
                memcpy(&acc[o][t], vacc + (o * ntaps + t) * CR_VL, sizeof(CR_VT));       \
        }                                                                                \
        ptrdiff_t b = r0 / oh, i = r0 - b * oh;                                          \
        for (ptrdiff_t r = r0; r < r1; r++) {                                            \
            const CR_T *g = go + b * gis + i * ow;                                       \
            const CR_T *xr = x + b * xn + i * xs;                                        \
            ptrdiff_t j = 0;                                                             \
            for (; j + CR_VL <= ow; j += CR_VL) {                                        \
                CR_VT gv[OB];                                                            \
                _Pragma("GCC unroll 8")                                                  \
                for (int o = 0; o < (OB); o++) memcpy(&gv[o], g + o * gcs + j, sizeof(CR_VT)); \
                _Pragma("GCC unroll 8")                                                  \
                for (int t = 0; t < (TB); t++) {                                         \
                    CR_VT xv;                                                            \
                    memcpy(&xv, xr + toff[t] + j, sizeof(CR_VT));                        \
                    _Pragma("GCC unroll 8")                                              \
                    for (int o = 0; o < (OB); o++) acc[o][t] += gv[o] * xv;              \
                }                                                                        \
            }                                                                            \
            if (j < ow) CR_WG_TAIL(OB, TB)                                               \
            if (++i == oh) { i = 0; b++; }                                               \
        }                                                                                \
        _Pragma("GCC unroll 8")                                                          \
        for (int o = 0; o < (OB); o++) {                                                 \
            _Pragma("GCC unroll 8")                                                      \
            for (int t = 0; t < (TB); t++)                                               \
                memcpy(vacc + (o * ntaps + t) * CR_VL, &acc[o][t], sizeof(CR_VT));       \
        }                                                                                \
    }
#define CR_WG_CASE(OB, TB) case (OB) * 8 + (TB): CR_WG_BODY(OB, TB) break;
#endif

/* One register block: ob output channels (go, vacc, sacc at the first) x tb taps (toff,
 * vacc, sacc at the first; ntaps: the accumulators' row length), rows [r0, r1) of the
 * n*oh rows. */
__attribute__((noinline))
static void CR_WG_BLOCK(int ob, int tb, const CR_T *restrict go, ptrdiff_t gcs,
                        ptrdiff_t gis, const CR_T *restrict x, ptrdiff_t xs, ptrdiff_t xn,
                        const ptrdiff_t *restrict toff, ptrdiff_t ntaps, ptrdiff_t r0,
                        ptrdiff_t r1, ptrdiff_t oh, ptrdiff_t ow, CR_T *restrict vacc,
                        CR_T *restrict sacc) {
    (void)sacc;
    switch (ob * 8 + tb) {
        CR_WG_CASE(1, 1) CR_WG_CASE(1, 2) CR_WG_CASE(1, 3)
        CR_WG_CASE(1, 4) CR_WG_CASE(1, 5) CR_WG_CASE(1, 6)
        CR_WG_CASE(2, 1) CR_WG_CASE(2, 2) CR_WG_CASE(2, 3)
        CR_WG_CASE(2, 4) CR_WG_CASE(2, 5) CR_WG_CASE(2, 6)
#if CR_WG_OBMAX > 2
        CR_WG_CASE(3, 1) CR_WG_CASE(3, 2) CR_WG_CASE(3, 3)
        CR_WG_CASE(3, 4) CR_WG_CASE(3, 5) CR_WG_CASE(3, 6)
        CR_WG_CASE(4, 1) CR_WG_CASE(4, 2) CR_WG_CASE(4, 3)
        CR_WG_CASE(4, 4) CR_WG_CASE(4, 5) CR_WG_CASE(4, 6)
#endif
        default: break;     /* never: the task passes 1 <= ob <= OBMAX, 1 <= tb <= TBMAX */
    }
}

/* gw[o*ntaps + t] for o < ob (go at that block's first channel, image 0, row 0; gw at its
 * first row), every tap, over all n*oh rows; work: ob*min(ntaps, CR_WG_TSUPER)*(CR_VL + 1)
 * elements. Taps go in super-blocks of at most CR_WG_TSUPER (the partial sums of a
 * super-block stay small however many taps there are), rows in chunks of about
 * CR_WG_CHUNK grad_output elements, then register blocks of CR_WG_TBMAX taps. */
__attribute__((noinline))
static void CR_WG_TASK(int ob, const CR_T *go, ptrdiff_t gcs, ptrdiff_t gis,
                       const CR_T *x, ptrdiff_t xs, ptrdiff_t xn, const ptrdiff_t *toff,
                       ptrdiff_t ntaps, ptrdiff_t n, ptrdiff_t oh, ptrdiff_t ow, CR_T *gw,
                       CR_T *work) {
    const ptrdiff_t rows = n * oh;
    ptrdiff_t chunk = CR_WG_CHUNK / ow;
    if (chunk < 1) chunk = 1;
    for (ptrdiff_t s0 = 0; s0 < ntaps; s0 += CR_WG_TSUPER) {
        const ptrdiff_t ns = ntaps - s0 < CR_WG_TSUPER ? ntaps - s0 : CR_WG_TSUPER;
        const ptrdiff_t nacc = (ptrdiff_t)ob * ns;
        CR_T *vacc = work, *sacc = work + nacc * CR_VL;
        for (ptrdiff_t k = 0; k < nacc * (CR_VL + 1); k++) work[k] = 0;
        for (ptrdiff_t r0 = 0; r0 < rows; r0 += chunk) {
            const ptrdiff_t r1 = r0 + chunk < rows ? r0 + chunk : rows;
            for (ptrdiff_t t0 = 0; t0 < ns; t0 += CR_WG_TBMAX) {
                const int tb = (int)(ns - t0 < CR_WG_TBMAX ? ns - t0 : CR_WG_TBMAX);
                CR_WG_BLOCK(ob, tb, go, gcs, gis, x, xs, xn, toff + s0 + t0, ns, r0, r1,
                            oh, ow, vacc + t0 * CR_VL, sacc + t0);
            }
        }
        /* the lanes, in order, then the scalar tail */
        for (int o = 0; o < ob; o++) {
            for (ptrdiff_t t = 0; t < ns; t++) {
                const ptrdiff_t k = o * ns + t;
                CR_T s = 0;
                for (int l = 0; l < CR_VL; l++) s += vacc[k * CR_VL + l];
                gw[o * ntaps + s0 + t] = s + sacc[k];
            }
        }
    }
}

#undef CR_T
#undef CR_VT
#undef CR_VL
#undef CR_WG_BLOCK
#undef CR_WG_TASK
#if defined(__AVX512F__)
#undef CR_MASK
#undef CR_LOADU_Z
#endif

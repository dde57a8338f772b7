/* Template of the register-tiled GEMM (AVX-512 and AVX2), included once per element type
 * and instruction set by gemm.h (no include guard, on purpose).
 *
 *   C (M, N; ldc) := bias[:, None] (or 0) + W (M, K; ldw) @ B (K, N; ldb), all row-major.
 *
 * Before each #include the instantiating file defines
 *   element type and intrinsics: CR_T, CR_V (vector), CR_MASK, CR_LANES (lanes per vector),
 *     CR_MASK_N(n) (the first n <= CR_LANES lanes), CR_LOADU_Z(mask, p) (masked load, 0
 *     in masked-off lanes), CR_LOADU(p), CR_STOREU_M(p, mask, v), CR_STOREU(p, v),
 *     CR_SET1(x), CR_SETZERO(), CR_FMADD(a, b, c) (a*b + c, one rounding),
 *     CR_GEMM_KC (K-chunk); shared by both types: CR_GEMM_MR (rows per tile), CR_GEMM_L2
 *     (bytes of L2 a slice of W may take), CR_GEMM_PF_NEXT (prefetch the next panel while
 *     packing one), CR_GEMM_DOT_COLS (a last panel of at most this many columns by dot
 *     products; 0: never);
 *   function names, literally (so grep finds each instance):
 *     CR_GEMM_TILE   a tile up to 2*CR_LANES wide (CR_GEMM_TILE_BODY: two vectors),
 *     CR_GEMM_TILE1  one up to CR_LANES wide,
 *     CR_GEMM_DOT, CR_GEMM_DOTS  columns by dot products along K,
 *     CR_GEMM_MASKS  the lane masks of a tile nr columns wide,
 *     CR_GEMM_KERNEL the whole product.
 * Everything but the shared ones is #undef'd at the end, ready for the next instantiation.
 *
 * Every product is computed (no skipping of zeros) and FMA rounds once, so NaN and inf
 * propagate as in a plain loop. */

/* The lanes of a tile's two column vectors that hold columns j < nr (0 < nr <= 2*CR_LANES). */
static inline void CR_GEMM_MASKS(ptrdiff_t nr, CR_MASK *m0, CR_MASK *m1) {
    *m0 = CR_MASK_N(nr >= CR_LANES ? CR_LANES : (int)nr);
    *m1 = CR_MASK_N(nr >= 2 * CR_LANES ? CR_LANES : nr > CR_LANES ? (int)(nr - CR_LANES) : 0);
}

/* Rows r >= skip of the tile: C[r, j] := (acc ? C[r, j] : bias[r] or 0)
 * + sum_k W[r, k] * B[k, j], r < MR, j < nr <= 2*CR_LANES. 2*MR accumulators; per k two
 * loads of B and MR broadcasts of W feed 2*MR FMAs. FULL (a literal: nr == 2*CR_LANES)
 * loads B unmasked: AVX2's masked loads cost the multiply-adds' issue slots that
 * AVX-512's do not. */
static inline __attribute__((always_inline)) void
CR_GEMM_TILE_BODY(const int FULL, ptrdiff_t K, const CR_T *W, ptrdiff_t ldw, const CR_T *B,
                  ptrdiff_t ldb, const CR_T *bias, CR_T *C, ptrdiff_t ldc, ptrdiff_t nr,
                  int acc, int skip) {
    CR_MASK m0, m1;
    CR_GEMM_MASKS(nr, &m0, &m1);
    CR_V c0[CR_GEMM_MR], c1[CR_GEMM_MR];
    #pragma GCC unroll 8
    for (int r = 0; r < CR_GEMM_MR; r++) {
        if (acc) {
            c0[r] = CR_LOADU_Z(m0, C + r * ldc);
            c1[r] = CR_LOADU_Z(m1, C + r * ldc + CR_LANES);
        } else {
            c0[r] = bias ? CR_SET1(bias[r]) : CR_SETZERO();
            c1[r] = c0[r];
        }
    }
    /* Unrolled: 2-8 % more GFLOP/s single-threaded on this tile (K 147-2304, 2-core
       AVX-512 Xeon), 2-5 % on the fused 3x3 layers. */
    #pragma GCC unroll 4
    for (ptrdiff_t k = 0; k < K; k++) {
        CR_V b0 = FULL ? CR_LOADU(B + k * ldb) : CR_LOADU_Z(m0, B + k * ldb);
        CR_V b1 = FULL ? CR_LOADU(B + k * ldb + CR_LANES)
                       : CR_LOADU_Z(m1, B + k * ldb + CR_LANES);
        #pragma GCC unroll 8
        for (int r = 0; r < CR_GEMM_MR; r++) {
            CR_V a = CR_SET1(W[r * ldw + k]);
            c0[r] = CR_FMADD(a, b0, c0[r]);
            c1[r] = CR_FMADD(a, b1, c1[r]);
        }
    }
    #pragma GCC unroll 8
    for (int r = 0; r < CR_GEMM_MR; r++) {
        if (r >= skip) {
            CR_STOREU_M(C + r * ldc, m0, c0[r]);
            CR_STOREU_M(C + r * ldc + CR_LANES, m1, c1[r]);
        }
    }
}

/* The tile of nr <= CR_LANES columns: one register per row (MR accumulators), the same
 * products in the same order as CR_GEMM_TILE_BODY. */
static inline void CR_GEMM_TILE1(ptrdiff_t K, const CR_T *W, ptrdiff_t ldw, const CR_T *B,
                                 ptrdiff_t ldb, const CR_T *bias, CR_T *C, ptrdiff_t ldc,
                                 ptrdiff_t nr, int acc, int skip) {
    CR_MASK m0, m1;
    CR_GEMM_MASKS(nr, &m0, &m1);
    (void)m1;
    CR_V c0[CR_GEMM_MR];
    #pragma GCC unroll 8
    for (int r = 0; r < CR_GEMM_MR; r++)
        c0[r] = acc ? CR_LOADU_Z(m0, C + r * ldc) : bias ? CR_SET1(bias[r]) : CR_SETZERO();
    #pragma GCC unroll 4
    for (ptrdiff_t k = 0; k < K; k++) {
        CR_V b0 = CR_LOADU_Z(m0, B + k * ldb);
        #pragma GCC unroll 8
        for (int r = 0; r < CR_GEMM_MR; r++)
            c0[r] = CR_FMADD(CR_SET1(W[r * ldw + k]), b0, c0[r]);
    }
    #pragma GCC unroll 8
    for (int r = 0; r < CR_GEMM_MR; r++)
        if (r >= skip) CR_STOREU_M(C + r * ldc, m0, c0[r]);
}

/* Rows r >= skip of any tile, 0 < nr <= 2*CR_LANES columns: a panel of at most one
 * vector by CR_GEMM_TILE1 (half the multiply-adds: 49 pixels are three 16-column tiles and
 * one of 1 column on AVX2), a full one with unmasked loads. */
static inline void CR_GEMM_TILE(ptrdiff_t K, const CR_T *W, ptrdiff_t ldw, const CR_T *B,
                                ptrdiff_t ldb, const CR_T *bias, CR_T *C, ptrdiff_t ldc,
                                ptrdiff_t nr, int acc, int skip) {
    if (nr == 2 * CR_LANES)
        CR_GEMM_TILE_BODY(1, K, W, ldw, B, ldb, bias, C, ldc, nr, acc, skip);
    else if (nr > CR_LANES)
        CR_GEMM_TILE_BODY(0, K, W, ldw, B, ldb, bias, C, ldc, nr, acc, skip);
    else
        CR_GEMM_TILE1(K, W, ldw, B, ldb, bias, C, ldc, nr, acc, skip);
}

/* Rows r >= skip of MR rows, one column: C[r*ldc] := (acc ? C[r*ldc] : bias[r] or 0) +
 * sum_k W[r*ldw + k] * col[k], k < kc, col contiguous; vectors run along k (MR partial sums
 * a lane each, added up at the end). A last panel of one or two columns (49 pixels: 48 +
 * 1) costs a one-vector tile a whole vector of multiply-adds per row and k; this costs an
 * eighth of it. The sum's order differs from the tiles' (its own rounding, within the
 * same bound). */
static inline void CR_GEMM_DOT(ptrdiff_t kc, const CR_T *W, ptrdiff_t ldw, const CR_T *col,
                               const CR_T *bias, CR_T *C, ptrdiff_t ldc, int acc, int skip) {
    CR_V a[CR_GEMM_MR];
    #pragma GCC unroll 8
    for (int r = 0; r < CR_GEMM_MR; r++) a[r] = CR_SETZERO();
    ptrdiff_t k = 0;
    for (; k + CR_LANES <= kc; k += CR_LANES) {
        CR_V v = CR_LOADU(col + k);
        #pragma GCC unroll 8
        for (int r = 0; r < CR_GEMM_MR; r++) a[r] = CR_FMADD(CR_LOADU(W + r * ldw + k), v, a[r]);
    }
    if (k < kc) {
        CR_MASK m = CR_MASK_N((int)(kc - k));
        CR_V v = CR_LOADU_Z(m, col + k);
        #pragma GCC unroll 8
        for (int r = 0; r < CR_GEMM_MR; r++)
            a[r] = CR_FMADD(CR_LOADU_Z(m, W + r * ldw + k), v, a[r]);
    }
    for (int r = skip; r < CR_GEMM_MR; r++) {
        CR_T t[CR_LANES], sum = acc ? C[r * ldc] : bias ? bias[r] : (CR_T)0;
        CR_STOREU(t, a[r]);
        CR_T part = 0;
        for (int l = 0; l < CR_LANES; l++) part += t[l];
        C[r * ldc] = sum + part;
    }
}

/* Columns [j, j + nr) of every row tile by CR_GEMM_DOT, each column gathered contiguous
 * into col (kc elements) first. */
static inline void CR_GEMM_DOTS(ptrdiff_t M, ptrdiff_t kc, const CR_T *W, ptrdiff_t ldw,
                                const CR_T *B, ptrdiff_t ldb, const CR_T *bias, CR_T *C,
                                ptrdiff_t ldc, ptrdiff_t nr, int acc, CR_T *col) {
    for (ptrdiff_t jj = 0; jj < nr; jj++) {
        for (ptrdiff_t k = 0; k < kc; k++) col[k] = B[k * ldb + jj];
        for (ptrdiff_t i0 = 0; i0 < M; i0 += CR_GEMM_MR) {
            ptrdiff_t i = i0 + CR_GEMM_MR <= M ? i0 : M - CR_GEMM_MR;
            CR_GEMM_DOT(kc, W + i * ldw, ldw, col, bias ? bias + i : 0, C + i * ldc + jj, ldc,
                        acc, (int)(i0 - i));
        }
    }
}

/* The whole product, M >= MR, K >= 1. K in chunks of CR_GEMM_KC: the (M, KC) slice of W
 * stays in L2, the (KC, 2*CR_LANES) panel of B in L1; chunks after the first add to C. A
 * last, partial row block is computed as the MR rows ending at M and stores only the rows
 * the previous block did not (skip), so no row is stored twice and none is padded.
 *
 * When at least 8 row tiles share a panel, it is first copied contiguous: read in place,
 * its rows ldb apart map onto few L1 sets whenever ldb*sizeof is a multiple of a few
 * cache lines (ldb = 128, 256, 3136 floats: pixels of a 1x1 layer, input channels of a
 * weight gradient's per-tap GEMM), and the panel falls out of L1 between tiles. */
static void CR_GEMM_KERNEL(ptrdiff_t M, ptrdiff_t N, ptrdiff_t K, const CR_T *W, ptrdiff_t ldw,
                           const CR_T *B, ptrdiff_t ldb, const CR_T *bias, CR_T *C,
                           ptrdiff_t ldc) {
    CR_T panel[CR_GEMM_KC * 2 * CR_LANES] __attribute__((aligned(64)));
    const int pack = M >= 8 * CR_GEMM_MR;
    const ptrdiff_t kc0 = K < CR_GEMM_KC ? K : CR_GEMM_KC;
    /* Columns [nt, N): a last panel of at most CR_GEMM_DOT_COLS columns, by dot products
       (CR_GEMM_DOTS, into panel) after the tiles of each K-chunk. */
    const ptrdiff_t rem = N % (2 * CR_LANES);
    const ptrdiff_t nt = rem <= CR_GEMM_DOT_COLS ? N - rem : N;
    /* Rows outer when the (M, KC) slice of W would not stay in L2 while the (KC, N) chunk
       of B does (few columns, many rows: a 512-channel 7^2 layer's 49 pixels against 512
       rows of 1 KiB): each W tile is then read once, from L1 for all the panels, and the
       chunk of B from L2, instead of the whole slice from the last-level cache per panel.
       The same products in the same order either way. */
    const int rows_outer = M * kc0 * (ptrdiff_t)sizeof(CR_T) > CR_GEMM_L2 &&
                           kc0 * N * (ptrdiff_t)sizeof(CR_T) <= CR_GEMM_L2;
    for (ptrdiff_t k0 = 0; k0 < K; k0 += CR_GEMM_KC) {
        ptrdiff_t kc = K - k0 < CR_GEMM_KC ? K - k0 : CR_GEMM_KC;
        if (rows_outer) {
            for (ptrdiff_t i0 = 0; i0 < M; i0 += CR_GEMM_MR) {
                ptrdiff_t i = i0 + CR_GEMM_MR <= M ? i0 : M - CR_GEMM_MR;
                /* the next row tile's W towards L2 while this one multiplies: its rows
                   come from the last-level cache, and the hardware prefetcher does not
                   follow MR streams ldw apart */
                if (i0 + CR_GEMM_MR < M)
                    for (int r = 0; r < CR_GEMM_MR; r++)
                        for (ptrdiff_t e = 0; e < kc; e += 64 / (ptrdiff_t)sizeof(CR_T))
                            __builtin_prefetch(W + (i + CR_GEMM_MR + r) * ldw + k0 + e, 0, 2);
                for (ptrdiff_t j = 0; j < nt; j += 2 * CR_LANES)
                    CR_GEMM_TILE(kc, W + i * ldw + k0, ldw, B + k0 * ldb + j, ldb,
                                 bias ? bias + i : 0, C + i * ldc + j, ldc,
                                 N - j < 2 * CR_LANES ? N - j : 2 * CR_LANES, k0 > 0,
                                 (int)(i0 - i));
            }
        } else {
            for (ptrdiff_t j = 0; j < nt; j += 2 * CR_LANES) {
                ptrdiff_t nr = N - j < 2 * CR_LANES ? N - j : 2 * CR_LANES;
                const CR_T *Bp = B + k0 * ldb + j;
                ptrdiff_t lb = ldb;
                if (pack) {
                    CR_MASK m0, m1;
                    CR_GEMM_MASKS(nr, &m0, &m1);
                    for (ptrdiff_t k = 0; k < kc; k++) {
#if CR_GEMM_PF_NEXT
                        /* the next panel's line of this row: 256 rows ldb apart are as
                           many streams, more than the hardware prefetcher follows */
                        __builtin_prefetch(Bp + k * ldb + 2 * CR_LANES, 0, 3);
#endif
                        CR_STOREU(panel + k * 2 * CR_LANES, CR_LOADU_Z(m0, Bp + k * ldb));
                        CR_STOREU(panel + k * 2 * CR_LANES + CR_LANES,
                                  CR_LOADU_Z(m1, Bp + k * ldb + CR_LANES));
                    }
                    Bp = panel;
                    lb = 2 * CR_LANES;
                }
                for (ptrdiff_t i0 = 0; i0 < M; i0 += CR_GEMM_MR) {
                    ptrdiff_t i = i0 + CR_GEMM_MR <= M ? i0 : M - CR_GEMM_MR;
                    CR_GEMM_TILE(kc, W + i * ldw + k0, ldw, Bp, lb, bias ? bias + i : 0,
                                 C + i * ldc + j, ldc, nr, k0 > 0, (int)(i0 - i));
                }
            }
        }
        if (nt < N)
            CR_GEMM_DOTS(M, kc, W + k0, ldw, B + k0 * ldb + nt, ldb, bias, C + nt, ldc, N - nt,
                         k0 > 0, panel);
    }
}

#undef CR_T
#undef CR_V
#undef CR_MASK
#undef CR_LANES
#undef CR_MASK_N
#undef CR_LOADU_Z
#undef CR_LOADU
#undef CR_STOREU_M
#undef CR_STOREU
#undef CR_SET1
#undef CR_SETZERO
#undef CR_FMADD
#undef CR_GEMM_KC
#undef CR_GEMM_TILE
#undef CR_GEMM_TILE_BODY
#undef CR_GEMM_DOT
#undef CR_GEMM_DOTS
#undef CR_GEMM_TILE1
#undef CR_GEMM_MASKS
#undef CR_GEMM_KERNEL

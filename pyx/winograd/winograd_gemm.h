/* The batched GEMM of the cython-winograd kernels: a template included once per dtype by
 * winograd_kernels.h, which #defines WT, WV, WVL and the function names CRW_KERNEL,
 * CRW_GEMM before each inclusion (no include guard on purpose).
 *
 * For each of the alpha^2 tile positions p, one GEMM over the input channels c:
 *
 *   M[p][o][t] = sum_{c < K} U[p][o/8][c][o%8] * V[p][c][t]
 *
 * U: transformed weights, panels of CRW_MR = 8 output channels with the 8 values of one
 * input channel adjacent (one broadcast each); V: transformed input, tiles contiguous
 * (vectors over tiles). The microkernel keeps CRW_KROWS x CRW_NV accumulator vectors in
 * registers (8 x 3 with AVX-512: 24 of the 32 zmm registers) and sums c in order
 * 0, 1, ..., K-1, so results do not depend on how the work is split over threads.
 */

/* The last np <= CRW_TAIL tiles of a block, when they are few past the last whole vector
 * (49 tiles = 3 vectors + 1 on 14^2 images): vectors over the 8 output channels of a
 * panel of U as stored, one V value per tile, instead of a vector of tiles of mostly empty
 * lanes. The same products summed in the same order (c = 0, 1, ...) by the same
 * multiply-adds as CRW_KERNEL, so a tile's result does not depend on the path.
 * A unit is one (tile position, panel) pair; G units at a time keep G x NP independent
 * sums in flight (one sum per unit was bound by the multiply-add latency: a chunk of 2
 * panels spent a sixth of its GEMM in this loop). For g < G, t < NP:
 * C[g][r*ldc + t] := sum_c A[g][c*8 + r] * B[g][c*ldb + t]. SB: every B[g] is B[0] (the
 * units of one position: its V values loaded once for all of them). */
static inline __attribute__((always_inline)) void
CRW_TAIL_KERNEL(const int G, const int NP, const int SB, ptrdiff_t K, const WT *const *A,
                const WT *const *B, ptrdiff_t ldb, WT *const *C, ptrdiff_t ldc)
{
    WV8 acc[8][CRW_TAIL];
#pragma GCC unroll 8
    for (int g = 0; g < G; g++)
#pragma GCC unroll 4
        for (int t = 0; t < NP; t++) acc[g][t] = (WV8){0};
    for (ptrdiff_t c = 0; c < K; c++) {
        WT b0[CRW_TAIL];
#pragma GCC unroll 4
        for (int t = 0; t < NP; t++) b0[t] = B[0][c * ldb + t];
#pragma GCC unroll 8
        for (int g = 0; g < G; g++) {
            WV8 a;
            memcpy(&a, A[g] + c * CRW_MR, sizeof a);
#pragma GCC unroll 4
            for (int t = 0; t < NP; t++) acc[g][t] += a * (SB ? b0[t] : B[g][c * ldb + t]);
        }
    }
    for (int g = 0; g < G; g++)
        for (int t = 0; t < NP; t++)
            for (int r = 0; r < CRW_MR; r++) C[g][r * ldc + t] = acc[g][t][r];
}

/* The tail units gathered so far (n of them, n <= G) computed: G at a time when there
 * are G (np <= 2: G = 8, else 4), else one at a time (the last ones of a call). */
static void CRW_TAIL_RUN(int n, int np, ptrdiff_t K, const WT *const *a, const WT *const *b,
                         ptrdiff_t ldv, WT *const *c, ptrdiff_t ldm)
{
/* one kernel per tile count np: G12 units for 1-2 tiles, G34 for 3-4 */
#define CRW_TAIL_BY_NP(G12, G34, SB, A, B, C)                                              \
    switch (np) {                                                                       \
    case 1: CRW_TAIL_KERNEL(G12, 1, SB, K, A, B, ldv, C, ldm); break;                   \
    case 2: CRW_TAIL_KERNEL(G12, 2, SB, K, A, B, ldv, C, ldm); break;                   \
    case 3: CRW_TAIL_KERNEL(G34, 3, SB, K, A, B, ldv, C, ldm); break;                   \
    default: CRW_TAIL_KERNEL(G34, 4, SB, K, A, B, ldv, C, ldm);                         \
    }
    if (n == (np <= 2 ? 8 : 4) && b[0] == b[n - 1]) {
        CRW_TAIL_BY_NP(8, 4, 1, a, b, c)
    } else if (n == (np <= 2 ? 8 : 4)) {
        CRW_TAIL_BY_NP(8, 4, 0, a, b, c)
    } else {
        for (int g = 0; g < n; g++) {
            CRW_TAIL_BY_NP(1, 1, 1, a + g, b + g, c + g)
        }
    }
#undef CRW_TAIL_BY_NP
}

/* C[r*ldc + t] := sum_c A[c*CRW_MR + r] * B[c*ldb + t], r < CRW_KROWS, t < NV*WVL + NT
 * (NV <= CRW_NV, a literal at every call, so each call site is its own kernel). The NT <= 3
 * tail tiles right after the vectors (only where a call covers a whole panel,
 * CRW_KROWS == CRW_MR) take one more sum each: the 8 rows as one vector times the tile's
 * V value, as CRW_TAIL_KERNEL does, inside this loop's multiply-adds instead of a pass of
 * its own (on a chunk of 2 panels that pass cost a tenth of the GEMM). */
static inline __attribute__((always_inline)) void
CRW_KERNEL(const int NV, const int NT, ptrdiff_t K, const WT *restrict A,
           const WT *restrict B, ptrdiff_t ldb, WT *restrict C, ptrdiff_t ldc, int pfv)
{
    WV8 acct[CRW_TAIL];
#pragma GCC unroll 4
    for (int t = 0; t < NT; t++) acct[t] = (WV8){0};
    WV acc[CRW_KROWS][CRW_NV];
#pragma GCC unroll 8
    for (int r = 0; r < CRW_KROWS; r++)
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++) acc[r][v] = (WV){0};
    for (ptrdiff_t c = 0; c < K; c++) {
        WV b[CRW_NV];
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++) memcpy(&b[v], B + v * WVL, sizeof(WV));
        /* the same row of the next panel of U towards L2 (a line per two rows): in a
           network U comes from the last-level cache, and a whole panel prefetched at once
           cost more than it saved */
        __builtin_prefetch(A + K * CRW_MR, 0, 2);
        /* pfv: this position's V does not fit L1 (CRW_GEMM), so each panel reads it
           from L2 again: its rows CRW_VPD input channels ahead */
        if (pfv) {
#pragma GCC unroll 4
            for (int v = 0; v < NV + (NT > 0); v++)
                __builtin_prefetch(B + CRW_VPD * ldb + v * WVL, 0, 3);
        }
#pragma GCC unroll 8
        for (int r = 0; r < CRW_KROWS; r++) {
            const WV a = A[r] - (WV){0};
#pragma GCC unroll 4
            for (int v = 0; v < NV; v++) acc[r][v] += a * b[v];
        }
        if (NT) {
            WV8 a8;
            memcpy(&a8, A, sizeof a8);
#pragma GCC unroll 4
            for (int t = 0; t < NT; t++) acct[t] += a8 * B[NV * WVL + t];
        }
        A += CRW_MR;
        B += ldb;
    }
#pragma GCC unroll 8
    for (int r = 0; r < CRW_KROWS; r++)
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++) memcpy(C + r * ldc + v * WVL, &acc[r][v], sizeof(WV));
    for (int t = 0; t < NT; t++)
        for (int r = 0; r < CRW_MR; r++) C[r * ldc + NV * WVL + t] = acct[t][r];
}

/* For p < npos: M[p*mps + o*ldm + t] := sum_c U[p*ups + (o/8)*K*8 + c*8 + o%8] *
 * V[p*vps + c*ldv + t], for o < 8*nob and t < nt; lanes of M past nt in its last vector
 * are left as they were when the tail kernel takes the last tiles, else computed from
 * V's (zero) lanes there. */
static void CRW_GEMM(int npos, ptrdiff_t K, const WT *restrict U, ptrdiff_t ups,
                     ptrdiff_t nob, const WT *restrict V, ptrdiff_t vps, ptrdiff_t ldv,
                     WT *restrict M, ptrdiff_t mps, ptrdiff_t ldm, ptrdiff_t nt)
{
    const ptrdiff_t nr = CRW_NV * WVL, rem = nt % WVL;
    const ptrdiff_t nv = rem && rem <= CRW_TAIL ? nt - rem : nt;     /* vector part */
    const int np = (int)(nt - nv), G = np <= 2 ? 8 : 4;
    /* tail tiles inside the last vector call of each panel (CRW_KERNEL's NT), else by
       units (CRW_TAIL_RUN): 4 tiles would need more registers than are left */
    const int fold = CRW_KROWS == CRW_MR && nv > 0 && np <= 3 ? np : 0;
    const int pfv = K * (nv + (fold ? WVL : 0)) * (ptrdiff_t)sizeof(WT) > CRW_VL1;
    const WT *ta[8], *tb[8];       /* tail units gathered, run G at a time: a position's */
    WT *tc[8];                     /* units right after its vectors, while U and V are hot */
    int tn = 0;
    for (int p = 0; p < npos; p++) {
        const WT *Up = U + p * ups;
        const WT *Vp = V + p * vps;
        WT *Mp = M + p * mps;
        for (ptrdiff_t ob = 0; ob < nob; ob++) {
            for (ptrdiff_t t0 = 0; t0 < nv; t0 += nr) {
                const int nvc = nv - t0 > 2 * WVL ? 3 : nv - t0 > WVL ? 2 : 1;
                const int nt_ = t0 + nvc * WVL >= nv ? fold : 0;
                for (int kr = 0; kr < CRW_MR; kr += CRW_KROWS) {
                    const WT *a = Up + ob * K * CRW_MR + kr;
                    const WT *b = Vp + t0;
                    WT *c = Mp + (ob * CRW_MR + kr) * ldm + t0;
/* one kernel per (vectors, tail tiles): both literals at every call */
#define CRW_KERNEL_BY_NT(NV)                                                               \
    switch (nt_) {                                                                      \
    case 0: CRW_KERNEL(NV, 0, K, a, b, ldv, c, ldm, pfv); break;                        \
    case 1: CRW_KERNEL(NV, 1, K, a, b, ldv, c, ldm, pfv); break;                        \
    case 2: CRW_KERNEL(NV, 2, K, a, b, ldv, c, ldm, pfv); break;                        \
    default: CRW_KERNEL(NV, 3, K, a, b, ldv, c, ldm, pfv);                              \
    }
                    if (nvc == 3) {
                        CRW_KERNEL_BY_NT(3)
                    } else if (nvc == 2) {
                        CRW_KERNEL_BY_NT(2)
                    } else {
                        CRW_KERNEL_BY_NT(1)
                    }
#undef CRW_KERNEL_BY_NT
                }
            }
        }
        for (ptrdiff_t ob = 0; np && !fold && ob < nob; ob++) {
            ta[tn] = Up + ob * K * CRW_MR;
            tb[tn] = Vp + nv;
            tc[tn] = Mp + ob * CRW_MR * ldm + nv;
            if (++tn == G) {
                CRW_TAIL_RUN(tn, np, K, ta, tb, ldv, tc, ldm);
                tn = 0;
            }
        }
    }
    if (tn)
        CRW_TAIL_RUN(tn, np, K, ta, tb, ldv, tc, ldm);
}

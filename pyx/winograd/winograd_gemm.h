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
 * panel of U as stored, one V value per tile, G panels at a time, instead of a vector of
 * tiles of mostly empty lanes. The same products summed in the same order (c = 0, 1, ...)
 * by the same multiply-adds as CRW_KERNEL, so a tile's result does not depend on the path.
 * C[(g*8 + r)*ldc + t] := sum_c A[g*K*8 + c*8 + r] * B[c*ldb + t], g < G, t < NP. */
static inline __attribute__((always_inline)) void
CRW_TAIL_KERNEL(const int G, const int NP, ptrdiff_t K, const WT *restrict A,
                const WT *restrict B, ptrdiff_t ldb, WT *restrict C, ptrdiff_t ldc)
{
    WV8 acc[8][CRW_TAIL];
#pragma GCC unroll 8
    for (int g = 0; g < G; g++)
#pragma GCC unroll 4
        for (int t = 0; t < NP; t++) acc[g][t] = (WV8){0};
    for (ptrdiff_t c = 0; c < K; c++) {
        WT b[CRW_TAIL];
#pragma GCC unroll 4
        for (int t = 0; t < NP; t++) b[t] = B[c * ldb + t];
#pragma GCC unroll 8
        for (int g = 0; g < G; g++) {
            WV8 a;
            memcpy(&a, A + g * K * CRW_MR + c * CRW_MR, sizeof a);
#pragma GCC unroll 4
            for (int t = 0; t < NP; t++) acc[g][t] += a * b[t];
        }
    }
    for (int g = 0; g < G; g++)
        for (int t = 0; t < NP; t++)
            for (int r = 0; r < CRW_MR; r++) C[(g * CRW_MR + r) * ldc + t] = acc[g][t][r];
}

/* Panels [0, nob) of the np tail tiles: 8 panels at a time for one or two tiles (enough
 * independent sums to hide the multiply-add latency), 4 for three or four. */
static void CRW_TAIL_PANELS(ptrdiff_t K, const WT *restrict U, ptrdiff_t nob,
                            const WT *restrict V, ptrdiff_t ldv, WT *restrict M,
                            ptrdiff_t ldm, int np)
{
    const int G = np <= 2 ? 8 : 4;
    for (ptrdiff_t ob = 0; ob < nob; ob += G) {
        const WT *a = U + ob * K * CRW_MR;
        WT *c = M + ob * CRW_MR * ldm;
        if (nob - ob >= G) {
            switch (np) {
            case 1: CRW_TAIL_KERNEL(8, 1, K, a, V, ldv, c, ldm); break;
            case 2: CRW_TAIL_KERNEL(8, 2, K, a, V, ldv, c, ldm); break;
            case 3: CRW_TAIL_KERNEL(4, 3, K, a, V, ldv, c, ldm); break;
            default: CRW_TAIL_KERNEL(4, 4, K, a, V, ldv, c, ldm);
            }
        } else {
            for (ptrdiff_t o = ob; o < nob; o++, a += K * CRW_MR, c += CRW_MR * ldm)
                switch (np) {
                case 1: CRW_TAIL_KERNEL(1, 1, K, a, V, ldv, c, ldm); break;
                case 2: CRW_TAIL_KERNEL(1, 2, K, a, V, ldv, c, ldm); break;
                case 3: CRW_TAIL_KERNEL(1, 3, K, a, V, ldv, c, ldm); break;
                default: CRW_TAIL_KERNEL(1, 4, K, a, V, ldv, c, ldm);
                }
        }
    }
}

/* C[r*ldc + t] := sum_c A[c*CRW_MR + r] * B[c*ldb + t], r < CRW_KROWS, t < NV*WVL
 * (NV <= CRW_NV, a literal at every call, so each call site is its own kernel). */
static inline __attribute__((always_inline)) void
CRW_KERNEL(const int NV, ptrdiff_t K, const WT *restrict A, const WT *restrict B,
           ptrdiff_t ldb, WT *restrict C, ptrdiff_t ldc)
{
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
#pragma GCC unroll 8
        for (int r = 0; r < CRW_KROWS; r++) {
            const WV a = A[r] - (WV){0};
#pragma GCC unroll 4
            for (int v = 0; v < NV; v++) acc[r][v] += a * b[v];
        }
        A += CRW_MR;
        B += ldb;
    }
#pragma GCC unroll 8
    for (int r = 0; r < CRW_KROWS; r++)
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++) memcpy(C + r * ldc + v * WVL, &acc[r][v], sizeof(WV));
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
    for (int p = 0; p < npos; p++) {
        const WT *Up = U + p * ups;
        const WT *Vp = V + p * vps;
        WT *Mp = M + p * mps;
        for (ptrdiff_t ob = 0; ob < nob; ob++) {
            for (ptrdiff_t t0 = 0; t0 < nv; t0 += nr) {
                for (int kr = 0; kr < CRW_MR; kr += CRW_KROWS) {
                    const WT *a = Up + ob * K * CRW_MR + kr;
                    WT *c = Mp + (ob * CRW_MR + kr) * ldm + t0;
                    if (nv - t0 > 2 * WVL)
                        CRW_KERNEL(3, K, a, Vp + t0, ldv, c, ldm);
                    else if (nv - t0 > WVL)
                        CRW_KERNEL(2, K, a, Vp + t0, ldv, c, ldm);
                    else
                        CRW_KERNEL(1, K, a, Vp + t0, ldv, c, ldm);
                }
            }
        }
        if (nv < nt)
            CRW_TAIL_PANELS(K, Up, nob, Vp + nv, ldv, Mp + nv, ldm, (int)(nt - nv));
    }
}

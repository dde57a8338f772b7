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
 * V[p*vps + c*ldv + t], for o < 8*nob and t < nt rounded up to WVL. */
static void CRW_GEMM(int npos, ptrdiff_t K, const WT *restrict U, ptrdiff_t ups,
                     ptrdiff_t nob, const WT *restrict V, ptrdiff_t vps, ptrdiff_t ldv,
                     WT *restrict M, ptrdiff_t mps, ptrdiff_t ldm, ptrdiff_t nt)
{
    const ptrdiff_t nr = CRW_NV * WVL;
    for (int p = 0; p < npos; p++) {
        const WT *Up = U + p * ups;
        const WT *Vp = V + p * vps;
        WT *Mp = M + p * mps;
        for (ptrdiff_t ob = 0; ob < nob; ob++) {
            for (ptrdiff_t t0 = 0; t0 < nt; t0 += nr) {
                for (int kr = 0; kr < CRW_MR; kr += CRW_KROWS) {
                    const WT *a = Up + ob * K * CRW_MR + kr;
                    WT *c = Mp + (ob * CRW_MR + kr) * ldm + t0;
                    if (nt - t0 > 2 * WVL)
                        CRW_KERNEL(3, K, a, Vp + t0, ldv, c, ldm);
                    else if (nt - t0 > WVL)
                        CRW_KERNEL(2, K, a, Vp + t0, ldv, c, ldm);
                    else
                        CRW_KERNEL(1, K, a, Vp + t0, ldv, c, ldm);
                }
            }
        }
    }
}

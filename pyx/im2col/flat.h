/* The fused ("FLAT", mode 3) im2col + GEMM of the im2col family: float32, avx512 builds.
 *
 * Stride 1 with ow == w (e.g. 'same' padding): output pixel q of tap t reads plane
 * element q + off[t], so per K-chunk and panel of 32 output pixels the input is packed
 * straight from x (masked loads: 0 for padding, so inf*0 = NaN as in torch) into an
 * aligned (kc, 32) panel multiplied by 12-row blocks of W (cr_flat_tile12_f32), the rows
 * left by the 8-row tiles of gemm.h (cr_gemm_tile_f32, cr_gemm_tile1_f32). No column
 * buffer. A strided call reads its input's stride-phase planes instead (cr_flat_phases),
 * where every tap is such a shifted read too.
 *
 *   cr_flat_f32    the whole call, tasks over OpenMP threads
 *   cr_flat_phases the stride-phase planes a strided call reads instead of the input
 *   cr_flat_work   float32 scratch it needs (masks + one packed panel per thread)
 *
 * Only float32 is implemented. Without AVX-512, CR_HAVE_FLAT is 0 and cr_flat_f32 and
 * cr_flat_work are never-called stubs. */
#ifndef CONVREG_IM2COL_FLAT_H
#define CONVREG_IM2COL_FLAT_H

#include <stddef.h>
#include "gemm.h"
#include "openmp_helpers.h"

#if defined(__AVX512F__)
#include <immintrin.h>
static inline __mmask16 cr_flat_mask16(ptrdiff_t rem) {    /* the first rem lanes */
    return rem >= 16 ? (__mmask16)0xFFFF : rem <= 0 ? (__mmask16)0 : (__mmask16)((1u << rem) - 1);
}
#endif

#if CR_HAVE_GEMM && defined(__AVX512F__)
#define CR_HAVE_FLAT 1

/* Fused im2col + GEMM for float32 on planes as wide as the output: output pixel q of
   tap (u, v) reads plane element q + off[t], t = u*kw + v (stride 1 with ow == w, any
   padding that keeps the width, any dilation: the input itself, off[t] = (u*dh - pt)*w
   + v*dw - pl; strided: the tap's stride-phase plane, see cr_flat_f32), where the lane
   mask says it lies inside the plane (else the packed value is 0, as in the column
   buffer). No column
   buffer: per K-chunk (cc channels x T taps) and panel of 32 output pixels, the
   (kc, 32) panel is packed contiguous (aligned) and multiplied by every 8-row block
   of W. */
#define CONVREG_FLAT_NR 32
#ifndef CONVREG_FLAT_PF
#define CONVREG_FLAT_PF 32         /* prefetch distance in pixels: the next panel */
#endif
static inline void cr_flat_pack_f32(const float* xc, ptrdiff_t hw, ptrdiff_t nc, int T,
                                    const ptrdiff_t* off, const unsigned* mk, float* Bp) {
    for (ptrdiff_t c = 0; c < nc; c++, xc += hw) {
        /* The next panel's newest input (its last tap's pixels): one prefetch per
           line, so the many channel planes need not each be a hardware stream. */
        const char* nx = (const char*)(xc + off[T - 1] + CONVREG_FLAT_PF);
        _mm_prefetch(nx, _MM_HINT_T0);
        _mm_prefetch(nx + 64, _MM_HINT_T0);
        _mm_prefetch(nx + 127, _MM_HINT_T0);
        for (int t = 0; t < T; t++, Bp += CONVREG_FLAT_NR) {
            const float* s = xc + off[t];
            __mmask16 m0 = (__mmask16)(mk[t] & 0xFFFFu), m1 = (__mmask16)(mk[t] >> 16);
            _mm512_store_ps(Bp, _mm512_maskz_loadu_ps(m0, s));
            _mm512_store_ps(Bp + 16, _mm512_maskz_loadu_ps(m1, s + 16));
        }
    }
}

/* Bit l (of 32) set when 0 <= c[l] + shift < n, c the lanes of (c0, c1). */
static inline unsigned cr_flat_inside(__m512i c0, __m512i c1, int shift, int n) {
    const __m512i s = _mm512_set1_epi32(shift), top = _mm512_set1_epi32(n);
    const __m512i a0 = _mm512_add_epi32(c0, s), a1 = _mm512_add_epi32(c1, s);
    const __m512i zero = _mm512_setzero_si512();
    unsigned lo = _mm512_cmpge_epi32_mask(a0, zero) & _mm512_cmplt_epi32_mask(a0, top);
    unsigned hi = _mm512_cmpge_epi32_mask(a1, zero) & _mm512_cmplt_epi32_mask(a1, top);
    return lo | hi << 16;
}

/* Lane masks of panel starting at pixel q0 (nr lanes) of an output as wide as its
   planes (wp): mk[u*kw + v] bit l set when pixel q0 + l, at output (i, j), reads plane
   row i + ra[u] and column j + cb[v] inside the (hp, wp) plane. */
static void cr_flat_masks(ptrdiff_t q0, ptrdiff_t nr, ptrdiff_t hp, ptrdiff_t wp,
                          ptrdiff_t kh, ptrdiff_t kw, const ptrdiff_t* ra,
                          const ptrdiff_t* cb, unsigned* mk) {
    /* Lane l's output row i[l] and column j[l], then one vector compare per kernel row
       and column (a lane loop per tap took 5 % of the 7x7 stem's time). Planes and
       shifts fit an int: the plans keep every dimension below 2**31. */
    int il[32], jl[32];
    ptrdiff_t i = q0 / wp, j = q0 - (q0 / wp) * wp;
    for (int l = 0; l < 32; l++) {
        il[l] = (int)i;
        jl[l] = (int)j;
        if (++j == wp) { j = 0; i++; }
    }
    const __m512i i0 = _mm512_loadu_si512(il), i1 = _mm512_loadu_si512(il + 16);
    const __m512i j0 = _mm512_loadu_si512(jl), j1 = _mm512_loadu_si512(jl + 16);
    const unsigned lanes = nr >= 32 ? 0xFFFFFFFFu : (1u << nr) - 1u;
    unsigned rm[32], cm[32];
    for (ptrdiff_t u = 0; u < kh; u++)
        rm[u] = lanes & cr_flat_inside(i0, i1, (int)ra[u], (int)hp);
    for (ptrdiff_t v = 0; v < kw; v++)
        cm[v] = cr_flat_inside(j0, j1, (int)cb[v], (int)wp);
    for (ptrdiff_t u = 0; u < kh; u++)
        for (ptrdiff_t v = 0; v < kw; v++)
            mk[u * kw + v] = rm[u] & cm[v];
}

#ifndef CONVREG_FLAT_W_L2
#define CONVREG_FLAT_W_L2 (1 << 20)
#endif
/* A 12-row tile: C[r, j] := (acc ? C[r, j] : bias[r] or 0)
   + sum_k W[r, k] * Bp[k, j], j < nr (nv = 2: nr <= 32; nv = 1: nr <= 16). Twelve rows
   (24 accumulators) instead of gemm.h's 8 read the packed panel, which streams from L2,
   once per 12 rows of W instead of once per 8. */
static inline __attribute__((always_inline)) void
cr_flat_tile12_f32(ptrdiff_t kc, const float* W, ptrdiff_t ldw, const float* Bp,
                   const float* bias, float* C, ptrdiff_t ldc, ptrdiff_t nr, int acc,
                   const int nv) {
    enum { R = 12 };
    const __mmask16 m0 = cr_flat_mask16(nr), m1 = cr_flat_mask16(nr - 16);
    __m512 c0[R], c1[R];
    const float* w[R];
    #pragma GCC unroll 12
    for (int r = 0; r < R; r++) {
        w[r] = W + r * ldw;
        if (acc) {
            c0[r] = _mm512_maskz_loadu_ps(m0, C + r * ldc);
            c1[r] = nv == 2 ? _mm512_maskz_loadu_ps(m1, C + r * ldc + 16) : c0[r];
        } else {
            c0[r] = bias ? _mm512_set1_ps(bias[r]) : _mm512_setzero_ps();
            c1[r] = c0[r];
        }
    }
    #pragma GCC unroll 2
    for (ptrdiff_t k = 0; k < kc; k++) {
        const __m512 b0 = _mm512_load_ps(Bp + k * CONVREG_FLAT_NR);
        const __m512 b1 = nv == 2 ? _mm512_load_ps(Bp + k * CONVREG_FLAT_NR + 16) : b0;
        #pragma GCC unroll 12
        for (int r = 0; r < R; r++) {
            const __m512 a = _mm512_set1_ps(w[r][k]);
            c0[r] = _mm512_fmadd_ps(a, b0, c0[r]);
            if (nv == 2) c1[r] = _mm512_fmadd_ps(a, b1, c1[r]);
        }
    }
    #pragma GCC unroll 12
    for (int r = 0; r < R; r++) {
        _mm512_mask_storeu_ps(C + r * ldc, m0, c0[r]);
        if (nv == 2) _mm512_mask_storeu_ps(C + r * ldc + 16, m1, c1[r]);
    }
}

/* Remainder pixels. A task's pixels past its last whole vector (q1 - q0 not a multiple
   of 16: 196 = 12*16 + 4 on 14^2 images, 49 = 3*16 + 1 on 7^2) would cost a vector tile
   each, mostly empty lanes (the 7^2 layers' last panel did 1 pixel of 16 or 17 of 32 at
   the price of a full one). Up to CONVREG_FLAT_DOT pixels are instead dot products along
   K: their columns packed transposed (Xt: CONVREG_FLAT_DOT rows of kcp = kc rounded up
   to 16, zero past kc), multiplied by the rows of W with vectors over k and reduced at
   the end. Same products, summed in another order. They run inside the last panel's row
   loop (cr_flat_rows_f32), on the rows of W its tiles just read: alone, a 512x4608 W
   came again from memory for one pixel. */
#ifndef CONVREG_FLAT_DOT
#define CONVREG_FLAT_DOT 8
#endif
static inline ptrdiff_t cr_flat_kcp(ptrdiff_t kc) { return (kc + 15) / 16 * 16; }

/* Xt[l*kcp + c*T + t] := lane lane0 + l of the panel whose masks are mk (tap t of
   channel c, 0 where masked off), l < np; the tail past kc set to 0. */
static void cr_flat_packt_f32(const float* xc, ptrdiff_t hw, ptrdiff_t nc, int T,
                              const ptrdiff_t* off, const unsigned* mk, int lane0, int np,
                              float* Xt) {
    const ptrdiff_t kc = nc * T, kcp = cr_flat_kcp(kc);
    for (int l = 0; l < np; l++) {
        float* d = Xt + l * kcp;
        ptrdiff_t k = 0;
        for (ptrdiff_t c = 0; c < nc; c++)
            for (int t = 0; t < T; t++, k++)
                d[k] = (mk[t] >> (lane0 + l)) & 1u ? xc[c * hw + off[t] + l] : 0.0f;
        for (; k < kcp; k++) d[k] = 0.0f;
    }
}

/* C[r*ldc + l] := (acc ? C[r*ldc + l] : bias[r] or 0) + sum_k W[r*ldw + k] * Xt[l*kcp + k]
   for r < R, l < NP (R x NP accumulators). */
static inline __attribute__((always_inline)) void
cr_flat_dot_f32(ptrdiff_t kc, const float* W, ptrdiff_t ldw, const float* Xt,
                const float* bias, float* C, ptrdiff_t ldc, int acc, const int R,
                const int NP) {
    const ptrdiff_t kcp = cr_flat_kcp(kc);
    __m512 s[4][4];
    #pragma GCC unroll 4
    for (int r = 0; r < R; r++)
        #pragma GCC unroll 4
        for (int l = 0; l < NP; l++) s[r][l] = _mm512_setzero_ps();
    for (ptrdiff_t k = 0; k < kcp; k += 16) {
        /* W's row may end inside this vector (kc no multiple of 16): lanes past kc are
           loaded as 0, and Xt is 0 there too */
        const __mmask16 m = cr_flat_mask16(kc - k);
        __m512 x[4];
        #pragma GCC unroll 4
        for (int l = 0; l < NP; l++) x[l] = _mm512_load_ps(Xt + l * kcp + k);
        #pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            const __m512 a = _mm512_maskz_loadu_ps(m, W + r * ldw + k);
            #pragma GCC unroll 4
            for (int l = 0; l < NP; l++) s[r][l] = _mm512_fmadd_ps(a, x[l], s[r][l]);
        }
    }
    #pragma GCC unroll 4
    for (int r = 0; r < R; r++)
        #pragma GCC unroll 4
        for (int l = 0; l < NP; l++) {
            const float base = acc ? C[r * ldc + l] : bias ? bias[r] : 0.0f;
            C[r * ldc + l] = base + _mm512_reduce_add_ps(s[r][l]);
        }
}

/* cr_flat_dot_f32 for n <= 4 pixels, each n its own kernel (NP a literal). */
static inline __attribute__((always_inline)) void
cr_flat_dot_n_f32(ptrdiff_t kc, const float* W, ptrdiff_t ldw, const float* Xt,
                  const float* bias, float* C, ptrdiff_t ldc, int acc, const int R, int n) {
    switch (n) {
    case 1: cr_flat_dot_f32(kc, W, ldw, Xt, bias, C, ldc, acc, R, 1); break;
    case 2: cr_flat_dot_f32(kc, W, ldw, Xt, bias, C, ldc, acc, R, 2); break;
    case 3: cr_flat_dot_f32(kc, W, ldw, Xt, bias, C, ldc, acc, R, 3); break;
    default: cr_flat_dot_f32(kc, W, ldw, Xt, bias, C, ldc, acc, R, 4);
    }
}

/* Rows [r0, r1) of the np <= CONVREG_FLAT_DOT remainder pixels (C: the first one):
   4 rows at a time, the last 1-3 one by one. */
static void cr_flat_dots_f32(ptrdiff_t kc, const float* W, ptrdiff_t ldw, const float* Xt,
                             const float* bias, float* C, ptrdiff_t ldc, ptrdiff_t r0,
                             ptrdiff_t r1, int np, int acc) {
    const ptrdiff_t kcp = cr_flat_kcp(kc);
    for (int l0 = 0; l0 < np; l0 += 4, C += 4) {
        const float* X = Xt + l0 * kcp;
        const int n = np - l0 < 4 ? np - l0 : 4;
        ptrdiff_t i = r0;
        for (; i + 4 <= r1; i += 4)
            cr_flat_dot_n_f32(kc, W + i * ldw, ldw, X, bias ? bias + i : 0, C + i * ldc, ldc,
                              acc, 4, n);
        for (; i < r1; i++)
            cr_flat_dot_n_f32(kc, W + i * ldw, ldw, X, bias ? bias + i : 0, C + i * ldc, ldc,
                              acc, 1, n);
    }
}

static inline void cr_flat_rows_f32(ptrdiff_t kc, const float* W, ptrdiff_t ldw, const float* Bp,
                                    const float* bias, float* C, ptrdiff_t ldc, ptrdiff_t M,
                                    ptrdiff_t nr, int acc, const float* Xt, int np,
                                    ptrdiff_t dt) {
    /* As many 12-row tiles as leave a multiple of 8 rows (M = 64: 4 x 12 + 2 x 8; a
       12-row tile ending at M would compute 8 rows twice), the rest by 8-row tiles,
       the last one ending at M when M is no multiple of 4. */
    ptrdiff_t n12 = M / 12, i0;
    if (M - 12 * n12 == 4 && n12 > 0) n12--;
    for (i0 = 0; i0 < 12 * n12; i0 += 12) {
        if (nr > 16)
            cr_flat_tile12_f32(kc, W + i0 * ldw, ldw, Bp, bias ? bias + i0 : 0, C + i0 * ldc,
                               ldc, nr, acc, 2);
        else
            cr_flat_tile12_f32(kc, W + i0 * ldw, ldw, Bp, bias ? bias + i0 : 0, C + i0 * ldc,
                               ldc, nr, acc, 1);
        if (np > 0) cr_flat_dots_f32(kc, W, ldw, Xt, bias, C + dt, ldc, i0, i0 + 12, np, acc);
    }
    for (; i0 < M; i0 += CR_GEMM_MR) {
        ptrdiff_t i = i0 + CR_GEMM_MR <= M ? i0 : M - CR_GEMM_MR;
        cr_gemm_tile_f32(kc, W + i * ldw, ldw, Bp, CONVREG_FLAT_NR, bias ? bias + i : 0,
                         C + i * ldc, ldc, nr, acc, (int)(i0 - i));
        if (np > 0)
            cr_flat_dots_f32(kc, W, ldw, Xt, bias, C + dt, ldc, i0,
                             i0 + CR_GEMM_MR < M ? i0 + CR_GEMM_MR : M, np, acc);
    }
}

/* One task: rows [0, M) of the group's output (C, ldc = oh*w; pixel 0) for pixels
   [q0, q1), q0 a multiple of 32; W (M, K = cig*T; ldw), masks of panel q0/32 first. */
/* K-chunk [c0, c0 + nc) of a task's panels [ja, jb) (of nj, from pixel q0), the
   remainder pixels [qd, qd + np) riding on panel nj - 1 (or alone when nj == 0). */
static void cr_flat_step_f32(const float* xg, ptrdiff_t hw, ptrdiff_t c0, ptrdiff_t nc,
                             int T, const ptrdiff_t* off, const unsigned* masks,
                             ptrdiff_t q0, ptrdiff_t ja, ptrdiff_t jb, ptrdiff_t nj,
                             ptrdiff_t qd, int np, const float* W, ptrdiff_t ldw,
                             ptrdiff_t M, const float* bias, float* C, ptrdiff_t ldc,
                             float* Bp, float* Xt) {
    const ptrdiff_t kc = nc * T, k0 = c0 * T;
    if (np > 0 && jb >= nj)         /* this step computes the remainder */
        cr_flat_packt_f32(xg + c0 * hw + qd, hw, nc, T, off,
                          masks + (qd / CONVREG_FLAT_NR) * T, (int)(qd % CONVREG_FLAT_NR),
                          np, Xt);
    if (nj == 0) {
        cr_flat_dots_f32(kc, W + k0, ldw, Xt, bias, C + qd, ldc, 0, M, np, k0 > 0);
        return;
    }
    for (ptrdiff_t jj = ja; jj < jb; jj++) {
        const ptrdiff_t j = q0 + jj * CONVREG_FLAT_NR;
        const ptrdiff_t nr = qd - j < CONVREG_FLAT_NR ? qd - j : CONVREG_FLAT_NR;
        cr_flat_pack_f32(xg + c0 * hw + j, hw, nc, T, off, masks + (j / CONVREG_FLAT_NR) * T,
                         Bp);
        cr_flat_rows_f32(kc, W + k0, ldw, Bp, bias, C + j, ldc, M, nr, k0 > 0, Xt,
                         jj == nj - 1 ? np : 0, qd - j);
    }
}

static void cr_flat_task_f32(const float* xg, ptrdiff_t hw, ptrdiff_t cig, int T,
                             const ptrdiff_t* off, const unsigned* masks, ptrdiff_t q0,
                             ptrdiff_t q1, ptrdiff_t cc, const float* W, ptrdiff_t ldw,
                             ptrdiff_t M, const float* bias, float* C, ptrdiff_t ldc,
                             float* Bp, float* Xt) {
    /* [q0, qd) by vector tiles, [qd, q1) (at most CONVREG_FLAT_DOT pixels past the last
       whole vector) by dot products, in the last panel's row loop (or alone when there
       is no panel) */
    const ptrdiff_t rem = (q1 - q0) % 16;
    const ptrdiff_t qd = rem <= CONVREG_FLAT_DOT ? q1 - rem : q1;
    const int np = (int)(q1 - qd);
    const ptrdiff_t nj = (qd - q0 + CONVREG_FLAT_NR - 1) / CONVREG_FLAT_NR;
    if (M * ldw * (ptrdiff_t)sizeof(float) <= CONVREG_FLAT_W_L2) {
        /* W stays in L2: panels outside, so each C tile is finished while in L1. */
        for (ptrdiff_t jj = 0; jj < (nj > 0 ? nj : 1); jj++)
            for (ptrdiff_t c0 = 0; c0 < cig; c0 += cc)
                cr_flat_step_f32(xg, hw, c0, cig - c0 < cc ? cig - c0 : cc, T, off, masks, q0,
                                 jj, jj + 1 < nj ? jj + 1 : nj, nj, qd, np, W, ldw, M, bias,
                                 C, ldc, Bp, Xt);
        return;
    }
    /* else K-chunks outside: each chunk of W is read once per panel from memory */
    for (ptrdiff_t c0 = 0; c0 < cig; c0 += cc)
        cr_flat_step_f32(xg, hw, c0, cig - c0 < cc ? cig - c0 : cc, T, off, masks, q0, 0, nj,
                         nj, qd, np, W, ldw, M, bias, C, ldc, Bp, Xt);
}

/* Scratch (in floats) of cr_flat_f32: lane masks of every panel, then per
   thread one aligned (kc, 32) packed panel. */
/* K-chunk of the fused mode: the packed panel (kc, 32) is read sequentially, so it
   may live in L2; long chunks cost fewer C reloads and tile start-ups (measured:
   2304 beats 256 by 4-12% on the ResNet 3x3 layers; Bp <= 288 KiB per thread). */
#ifndef CONVREG_FLAT_KC
#define CONVREG_FLAT_KC 2304
#endif
static ptrdiff_t cr_flat_chunk(ptrdiff_t cig, ptrdiff_t T) {
    ptrdiff_t nchunks = (cig * T + CONVREG_FLAT_KC - 1) / CONVREG_FLAT_KC;
    return (cig + nchunks - 1) / nchunks;          /* channels per K-chunk */
}
/* A thread's scratch: the packed panel, then the transposed remainder rows (Xt). */
static ptrdiff_t cr_flat_per(ptrdiff_t cig, ptrdiff_t T) {
    ptrdiff_t kc = cr_flat_chunk(cig, T) * T;
    return kc * CONVREG_FLAT_NR + CONVREG_FLAT_DOT * cr_flat_kcp(kc) + 16;
}
static ptrdiff_t cr_flat_work(ptrdiff_t cig, ptrdiff_t T, ptrdiff_t ohw, int threads) {
    ptrdiff_t npan = (ohw + CONVREG_FLAT_NR - 1) / CONVREG_FLAT_NR;
    return npan * T + 16 + threads * cr_flat_per(cig, T);
}

#else
#define CR_HAVE_FLAT 0
static ptrdiff_t cr_flat_work(ptrdiff_t cig, ptrdiff_t T, ptrdiff_t ohw, int threads) {
    (void)cig; (void)T; (void)ohw; (void)threads;
    return 0;
}
#endif

#if defined(__AVX512F__)
/* d0[j] = xr[2j], d1[j] = xr[2j + 1] for j < ow, 0 where that column is >= w: both
   column phases of one input row from whole-vector reads (the element loop took 10 % of
   a 64->128 stride-2 layer's time). Masked loads never read past the row. */
static inline void cr_flat_split2(const float* xr, ptrdiff_t w, ptrdiff_t ow, float* d0,
                                  float* d1) {
    const __m512i ev = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26,
                                         28, 30);
    const __m512i od = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27,
                                         29, 31);
    for (ptrdiff_t j = 0; j < ow; j += 16) {
        const ptrdiff_t e = 2 * j, rem = ow - j;
        const __mmask16 ma = cr_flat_mask16(w - e), mb = cr_flat_mask16(w - e - 16);
        const __m512 a = _mm512_maskz_loadu_ps(ma, xr + e);
        const __m512 b = _mm512_maskz_loadu_ps(mb, xr + e + 16);
        const __mmask16 mo = cr_flat_mask16(rem);
        _mm512_mask_storeu_ps(d0 + j, mo, _mm512_permutex2var_ps(a, ev, b));
        _mm512_mask_storeu_ps(d1 + j, mo, _mm512_permutex2var_ps(a, od, b));
    }
}
#endif

/* Stride-phase planes of a strided call: for every image and channel (c = ni*c_in + ci),
   plane r*sw + s of dst is (oh, ow) with dst[.., i, j] = x[ci, sh*i + r, sw*j + s], 0
   where that lies outside the (h, w) input; so a stride-(sh, sw) convolution reads each
   tap as a shifted plane, as a stride-1 one reads the input. Channels over threads. */
static void cr_flat_phases(const float* x, ptrdiff_t nc, ptrdiff_t h, ptrdiff_t w,
                           ptrdiff_t sh, ptrdiff_t sw, ptrdiff_t oh, ptrdiff_t ow, float* dst,
                           int threads) {
    ptrdiff_t hw = h * w, phw = oh * ow;
    #pragma omp parallel for num_threads(threads) schedule(static)
    for (ptrdiff_t c = 0; c < nc; c++) {
        const float* xc = x + c * hw;
        for (ptrdiff_t r = 0; r < sh; r++)
            for (ptrdiff_t i = 0; i < oh; i++) {
                const ptrdiff_t row = sh * i + r;
                float* d = dst + (c * sh + r) * sw * phw + i * ow;    /* plane (r, 0) */
#if defined(__AVX512F__)
                if (sw == 2 && row < h) {
                    cr_flat_split2(xc + row * w, w, ow, d, d + phw);
                    continue;
                }
#endif
                for (ptrdiff_t s = 0; s < sw; s++, d += phw) {
                    ptrdiff_t j = 0;
                    if (row < h) {
                        const float* xr = xc + row * w + s;
                        ptrdiff_t nj = s < w ? (w - 1 - s) / sw + 1 : 0;   /* columns inside */
                        if (nj > ow) nj = ow;
                        for (; j < nj; j++) d[j] = xr[j * sw];
                    }
                    for (; j < ow; j++) d[j] = 0.0f;
                }
            }
    }
}

/* The whole call (float32, kh, kw <= 32) on planes of (hp, wp) elements, each input
   channel cs elements apart (images c_in * cs apart) and the output as wide as a
   plane (ow == wp, oh rows): tap (u, v) reads plane poff[u*kw + v] (0 without poff)
   at row i + ra[u], column j + cb[v] for output (i, j). A stride-1 call passes the
   input itself (hp, wp = h, w; ra[u] = u*dh - pt; cb[v] = v*dw - pl); a strided one its
   stride-phase planes (cr_flat_phases). Tasks (image, group, row part, pixel part) over
   OpenMP threads, dynamically. Row parts split the group's output channels at
   multiples of 8 (each >= 8 rows), pixel parts split the panels. */
static void cr_flat_f32(const float* x, ptrdiff_t cs, ptrdiff_t hp, ptrdiff_t wp,
                        const float* wt, const float* bias, float* out, float* work,
                        ptrdiff_t n, ptrdiff_t c_in, ptrdiff_t c_out, ptrdiff_t oh,
                        ptrdiff_t kh, ptrdiff_t kw, const ptrdiff_t* ra, const ptrdiff_t* cb,
                        const ptrdiff_t* poff, ptrdiff_t groups, int threads,
                        ptrdiff_t mparts, ptrdiff_t pparts) {
#if CR_HAVE_FLAT
    int T = (int)(kh * kw);
    ptrdiff_t cig = c_in / groups, cog = c_out / groups, K = cig * T, ohw = oh * wp;
    ptrdiff_t npan = (ohw + CONVREG_FLAT_NR - 1) / CONVREG_FLAT_NR;
    ptrdiff_t cc = cr_flat_chunk(cig, T), per = cr_flat_per(cig, T);
    ptrdiff_t ntask = n * groups * mparts * pparts;
    ptrdiff_t off[32 * 32];
    unsigned* masks = (unsigned*)work;
    float* scratch = work + npan * T + 16;
    for (ptrdiff_t u = 0; u < kh; u++)
        for (ptrdiff_t v = 0; v < kw; v++)
            off[u * kw + v] = (poff ? poff[u * kw + v] : 0) + ra[u] * wp + cb[v];
    #pragma omp parallel num_threads(threads)
    {
        int tid = omp_get_thread_num();
        float* Bp = scratch + tid * per;
        Bp += (16 - (((size_t)Bp / sizeof(float)) & 15)) & 15;   /* 64-byte aligned */
        float* Xt = Bp + cc * T * CONVREG_FLAT_NR;       /* aligned: kc*32 floats on */
        #pragma omp for schedule(static)
        for (ptrdiff_t pi = 0; pi < npan; pi++) {
            ptrdiff_t q = pi * CONVREG_FLAT_NR;
            cr_flat_masks(q, ohw - q < CONVREG_FLAT_NR ? ohw - q : CONVREG_FLAT_NR,
                          hp, wp, kh, kw, ra, cb, masks + pi * T);
        }
        #pragma omp for schedule(dynamic)
        for (ptrdiff_t t = 0; t < ntask; t++) {
            ptrdiff_t pp = t % pparts, mp = (t / pparts) % mparts, ng = t / (pparts * mparts);
            ptrdiff_t ni = ng / groups, g = ng % groups;
            ptrdiff_t lo = (cog * mp / mparts) / 8 * 8;
            ptrdiff_t hi = mp == mparts - 1 ? cog : (cog * (mp + 1) / mparts) / 8 * 8;
            ptrdiff_t q0 = npan * pp / pparts * CONVREG_FLAT_NR;
            ptrdiff_t q1 = npan * (pp + 1) / pparts * CONVREG_FLAT_NR;
            if (q1 > ohw) q1 = ohw;
            if (hi - lo < CR_GEMM_MR || q1 <= q0) continue;
            cr_flat_task_f32(x + (ni * c_in + g * cig) * cs, cs, cig, T, off, masks, q0, q1,
                             cc, wt + (g * cog + lo) * K, K, hi - lo,
                             bias ? bias + g * cog + lo : 0,
                             out + (ni * c_out + g * cog + lo) * ohw, ohw, Bp, Xt);
        }
    }
#else
    (void)x; (void)cs; (void)hp; (void)wp; (void)wt; (void)bias; (void)out; (void)work;
    (void)n; (void)c_in; (void)c_out; (void)oh; (void)kh; (void)kw; (void)ra; (void)cb;
    (void)poff; (void)groups; (void)threads; (void)mparts; (void)pparts;
#endif
}

#endif

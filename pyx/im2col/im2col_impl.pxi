"""im2col into a bounded column buffer, then BLAS GEMM straight into the NCHW result.

Legend (as in convreg._spec): n batch, c_in/c_out channels, h/w input, oh/ow output,
kh/kw kernel, sh/sw stride, dh/dw dilation, pt/pl padding top/left, g groups,
cig/cog channels per group, K = cig*kh*kw (reduction length), ohw = oh*ow. A *band* is a
contiguous range [p0, p1) of flattened output pixels of one image (p = i*ow + j).

For image n, group g and band [p0, p1) (one *task*), with bp = p1 - p0:

    col[(c*kh + u)*kw + v, t] = xpad[n, g*cig + c, i*sh + u*dh, j*sw + v*dw]   (i*ow + j = p0 + t)
    out[n, g*cog : (g+1)*cog, p0:p1] = W_g (cog, K) @ col (K, bp)  (+ bias)

The (cog, bp) result slice is row-major with leading dimension ohw, so the GEMM writes the
NCHW output in place (no transpose pass). BLAS is column-major: the row-major product
C = A @ B is computed as C^T = B^T @ A^T by swapping the operands.

A 1x1, stride-1, unpadded convolution needs no buffer: col is the input itself,
x[n, g*cig : (g+1)*cig] seen as (cig, ohw) with leading dimension ohw.

The family is built per SIMD variant (convreg._im2col_{baseline,avx2,avx512}). The avx512
build multiplies with its own register-tiled kernel when a group has at least 8 output
channels (below: 8 output channels x 32 float32 / 16 float64 pixels per tile, the column
buffer read in place, bias folded into the accumulators); every other call goes to BLAS
through scipy.linalg.cython_blas.

Mode 3 (avx512 build, float32, stride 1, ow == w, e.g. 'same' padding) fuses im2col into
the GEMM: no column buffer. Output pixel q of tap t reads plane element q + off[t] (flat
index), valid lanes given by a per-panel mask; per K-chunk and 32-pixel panel the input
is packed (masked loads, 0 for padding, so inf*0 = NaN as torch) into an aligned (kc, 32)
panel multiplied by every 8-row block of W (16-pixel tile for tails). Tasks are (image,
group, row part, pixel part) over OpenMP threads, so batch 1 splits over the threads
without filling any column twice.
"""

from cython cimport floating
from cython.parallel cimport parallel, prange
from libc.string cimport memcpy, memset
from scipy.linalg.cython_blas cimport dgemm, sgemm

from openmp_helpers cimport CONVREG_HAVE_OPENMP, omp_get_thread_num

HAVE_OPENMP = bool(CONVREG_HAVE_OPENMP)


cdef extern from *:
    """
    #include <stddef.h>
    #ifdef _OPENMP
    #include <omp.h>
    #endif
    #if defined(__AVX512F__) && defined(__FMA__)
    #include <immintrin.h>
    #define CONVREG_IM2COL_MK 1
    #define CONVREG_MR 8
    #ifndef CONVREG_KC
    #define CONVREG_KC 256
    #endif

    /* C[r, j] := (acc ? C[r, j] : bias[r] or 0) + sum_k W[r, k] * B[k, j] for r < MR (8),
       j < nr <= 32, storing rows r >= skip only; W (MR, K; ldw), B (K, nr; ldb),
       C (MR, nr; ldc), all row-major. 16 accumulators; per k two loads of B and MR
       broadcasts of W feed 16 FMAs. */
    static inline void convreg_tile_f32(ptrdiff_t K, const float* W, ptrdiff_t ldw, const float* B,
                                          ptrdiff_t ldb, const float* bias, float* C, ptrdiff_t ldc,
                                          ptrdiff_t nr, int acc, int skip) {
        __mmask16 m0 = nr >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << nr) - 1u);
        __mmask16 m1 = nr >= 32 ? (__mmask16)0xFFFF :
                       nr > 16 ? (__mmask16)((1u << (nr - 16)) - 1u) : (__mmask16)0;
        __m512 c0[CONVREG_MR], c1[CONVREG_MR];
        #pragma GCC unroll 8
        for (int r = 0; r < CONVREG_MR; r++) {
            if (acc) {
                c0[r] = _mm512_maskz_loadu_ps(m0, C + r * ldc);
                c1[r] = _mm512_maskz_loadu_ps(m1, C + r * ldc + 16);
            } else {
                c0[r] = bias ? _mm512_set1_ps(bias[r]) : _mm512_setzero_ps();
                c1[r] = c0[r];
            }
        }
        for (ptrdiff_t k = 0; k < K; k++) {
            __m512 b0 = _mm512_maskz_loadu_ps(m0, B + k * ldb);
            __m512 b1 = _mm512_maskz_loadu_ps(m1, B + k * ldb + 16);
            #pragma GCC unroll 8
            for (int r = 0; r < CONVREG_MR; r++) {
                __m512 a = _mm512_set1_ps(W[r * ldw + k]);
                c0[r] = _mm512_fmadd_ps(a, b0, c0[r]);
                c1[r] = _mm512_fmadd_ps(a, b1, c1[r]);
            }
        }
        #pragma GCC unroll 8
        for (int r = 0; r < CONVREG_MR; r++) {
            if (r >= skip) {
                _mm512_mask_storeu_ps(C + r * ldc, m0, c0[r]);
                _mm512_mask_storeu_ps(C + r * ldc + 16, m1, c1[r]);
            }
        }
    }

    /* The same for double: MR x 16 tiles (two registers of 8 per row). */
    static inline void convreg_tile_f64(ptrdiff_t K, const double* W, ptrdiff_t ldw, const double* B,
                                           ptrdiff_t ldb, const double* bias, double* C, ptrdiff_t ldc,
                                           ptrdiff_t nr, int acc, int skip) {
        __mmask8 m0 = nr >= 8 ? (__mmask8)0xFF : (__mmask8)((1u << nr) - 1u);
        __mmask8 m1 = nr >= 16 ? (__mmask8)0xFF :
                      nr > 8 ? (__mmask8)((1u << (nr - 8)) - 1u) : (__mmask8)0;
        __m512d c0[CONVREG_MR], c1[CONVREG_MR];
        #pragma GCC unroll 8
        for (int r = 0; r < CONVREG_MR; r++) {
            if (acc) {
                c0[r] = _mm512_maskz_loadu_pd(m0, C + r * ldc);
                c1[r] = _mm512_maskz_loadu_pd(m1, C + r * ldc + 8);
            } else {
                c0[r] = bias ? _mm512_set1_pd(bias[r]) : _mm512_setzero_pd();
                c1[r] = c0[r];
            }
        }
        for (ptrdiff_t k = 0; k < K; k++) {
            __m512d b0 = _mm512_maskz_loadu_pd(m0, B + k * ldb);
            __m512d b1 = _mm512_maskz_loadu_pd(m1, B + k * ldb + 8);
            #pragma GCC unroll 8
            for (int r = 0; r < CONVREG_MR; r++) {
                __m512d a = _mm512_set1_pd(W[r * ldw + k]);
                c0[r] = _mm512_fmadd_pd(a, b0, c0[r]);
                c1[r] = _mm512_fmadd_pd(a, b1, c1[r]);
            }
        }
        #pragma GCC unroll 8
        for (int r = 0; r < CONVREG_MR; r++) {
            if (r >= skip) {
                _mm512_mask_storeu_pd(C + r * ldc, m0, c0[r]);
                _mm512_mask_storeu_pd(C + r * ldc + 8, m1, c1[r]);
            }
        }
    }

    static void convreg_dgemm_mk(ptrdiff_t M, ptrdiff_t N, ptrdiff_t K, const double* W, ptrdiff_t ldw,
                                 const double* B, ptrdiff_t ldb, const double* bias, double* C,
                                 ptrdiff_t ldc) {
        for (ptrdiff_t k0 = 0; k0 < K; k0 += CONVREG_KC / 2) {
            ptrdiff_t kc = K - k0 < CONVREG_KC / 2 ? K - k0 : CONVREG_KC / 2;
            for (ptrdiff_t j = 0; j < N; j += 16) {
                for (ptrdiff_t i0 = 0; i0 < M; i0 += CONVREG_MR) {
                    ptrdiff_t i = i0 + CONVREG_MR <= M ? i0 : M - CONVREG_MR;
                    convreg_tile_f64(kc, W + i * ldw + k0, ldw, B + k0 * ldb + j, ldb,
                                        bias ? bias + i : 0, C + i * ldc + j, ldc,
                                        N - j < 16 ? N - j : 16, k0 > 0, (int)(i0 - i));
                }
            }
        }
    }

    /* C (M, N; ldc) := bias + W (M, K; ldw) @ B (K, N; ldb), row-major, M >= MR. A last,
       partial row block is computed as the MR rows ending at M and stores only the rows
       the previous block did not (skip). */
    static void convreg_sgemm_mk(ptrdiff_t M, ptrdiff_t N, ptrdiff_t K, const float* W, ptrdiff_t ldw,
                                 const float* B, ptrdiff_t ldb, const float* bias, float* C,
                                 ptrdiff_t ldc) {
        /* K in chunks of KC: the (M, KC) slice of W stays in L2, the (KC, 32) panel of B
           in L1; chunks after the first add to C. */
        for (ptrdiff_t k0 = 0; k0 < K; k0 += CONVREG_KC) {
            ptrdiff_t kc = K - k0 < CONVREG_KC ? K - k0 : CONVREG_KC;
            for (ptrdiff_t j = 0; j < N; j += 32) {
                for (ptrdiff_t i0 = 0; i0 < M; i0 += CONVREG_MR) {
                    ptrdiff_t i = i0 + CONVREG_MR <= M ? i0 : M - CONVREG_MR;
                    convreg_tile_f32(kc, W + i * ldw + k0, ldw, B + k0 * ldb + j, ldb,
                                       bias ? bias + i : 0, C + i * ldc + j, ldc,
                                       N - j < 32 ? N - j : 32, k0 > 0, (int)(i0 - i));
                }
            }
        }
    }

    /* As convreg_tile_f32 for nr <= 16: one register of pixels per row (8 accumulators). */
    static inline void convreg_tile16_f32(ptrdiff_t K, const float* W, ptrdiff_t ldw, const float* B,
                                          ptrdiff_t ldb, const float* bias, float* C, ptrdiff_t ldc,
                                          ptrdiff_t nr, int acc, int skip) {
        __mmask16 m0 = nr >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << nr) - 1u);
        __m512 c0[CONVREG_MR];
        #pragma GCC unroll 8
        for (int r = 0; r < CONVREG_MR; r++)
            c0[r] = acc ? _mm512_maskz_loadu_ps(m0, C + r * ldc)
                        : bias ? _mm512_set1_ps(bias[r]) : _mm512_setzero_ps();
        for (ptrdiff_t k = 0; k < K; k++) {
            __m512 b0 = _mm512_maskz_loadu_ps(m0, B + k * ldb);
            #pragma GCC unroll 8
            for (int r = 0; r < CONVREG_MR; r++)
                c0[r] = _mm512_fmadd_ps(_mm512_set1_ps(W[r * ldw + k]), b0, c0[r]);
        }
        #pragma GCC unroll 8
        for (int r = 0; r < CONVREG_MR; r++)
            if (r >= skip) _mm512_mask_storeu_ps(C + r * ldc, m0, c0[r]);
    }

    /* Fused im2col + GEMM for float32, stride 1 with ow == w (any padding that keeps the
       width, any dilation): output pixel q of tap (u, v) reads plane element q + off[t],
       t = u*kw + v, off[t] = (u*dh - pt)*w + v*dw - pl, where the lane mask says it lies
       inside the image (else the packed value is 0, as in the column buffer). No column
       buffer: per K-chunk (cc channels x T taps) and panel of 32 output pixels, the
       (kc, 32) panel is packed contiguous (aligned) and multiplied by every 8-row block
       of W. */
    #define CONVREG_FLAT_NR 32
    #ifndef CONVREG_FLAT_PF
    #define CONVREG_FLAT_PF 32         /* prefetch distance in pixels: the next panel */
    #endif
    static inline void convreg_flat_pack_f32(const float* xc, ptrdiff_t hw, ptrdiff_t nc, int T,
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

    /* Lane masks of panel starting at pixel q0 (nr lanes): mk[t] bit l set when pixel
       q0 + l of tap t reads inside the image. */
    static void convreg_flat_masks(ptrdiff_t q0, ptrdiff_t nr, ptrdiff_t h, ptrdiff_t w,
                                   ptrdiff_t kh, ptrdiff_t kw, ptrdiff_t dh, ptrdiff_t dw,
                                   ptrdiff_t pt, ptrdiff_t pl, unsigned* mk) {
        unsigned rm[32], cm[32];
        ptrdiff_t i = q0 / w, j = q0 - (q0 / w) * w;
        for (ptrdiff_t u = 0; u < kh; u++) rm[u] = 0;
        for (ptrdiff_t v = 0; v < kw; v++) cm[v] = 0;
        for (ptrdiff_t l = 0; l < nr; l++) {
            for (ptrdiff_t u = 0; u < kh; u++) {
                ptrdiff_t r = i + u * dh - pt;
                if (r >= 0 && r < h) rm[u] |= 1u << l;
            }
            for (ptrdiff_t v = 0; v < kw; v++) {
                ptrdiff_t s = j + v * dw - pl;
                if (s >= 0 && s < w) cm[v] |= 1u << l;
            }
            if (++j == w) { j = 0; i++; }
        }
        for (ptrdiff_t u = 0; u < kh; u++)
            for (ptrdiff_t v = 0; v < kw; v++)
                mk[u * kw + v] = rm[u] & cm[v];
    }

    #ifndef CONVREG_FLAT_W_L2
    #define CONVREG_FLAT_W_L2 (1 << 20)
    #endif
    static inline void convreg_flat_rows(ptrdiff_t kc, const float* W, ptrdiff_t ldw, const float* Bp,
                                         const float* bias, float* C, ptrdiff_t ldc, ptrdiff_t M,
                                         ptrdiff_t nr, int acc) {
        for (ptrdiff_t i0 = 0; i0 < M; i0 += CONVREG_MR) {
            ptrdiff_t i = i0 + CONVREG_MR <= M ? i0 : M - CONVREG_MR;
            if (nr > 16)
                convreg_tile_f32(kc, W + i * ldw, ldw, Bp, CONVREG_FLAT_NR, bias ? bias + i : 0,
                                 C + i * ldc, ldc, nr, acc, (int)(i0 - i));
            else
                convreg_tile16_f32(kc, W + i * ldw, ldw, Bp, CONVREG_FLAT_NR, bias ? bias + i : 0,
                                   C + i * ldc, ldc, nr, acc, (int)(i0 - i));
        }
    }

    /* One task: rows [0, M) of the group's output (C, ldc = oh*w; pixel 0) for pixels
       [q0, q1), q0 a multiple of 32; W (M, K = cig*T; ldw), masks of panel q0/32 first. */
    static void convreg_flat_task_f32(const float* xg, ptrdiff_t hw, ptrdiff_t cig, int T,
                                      const ptrdiff_t* off, const unsigned* masks, ptrdiff_t q0,
                                      ptrdiff_t q1, ptrdiff_t cc, const float* W, ptrdiff_t ldw,
                                      ptrdiff_t M, const float* bias, float* C, ptrdiff_t ldc,
                                      float* Bp) {
        if (M * ldw * (ptrdiff_t)sizeof(float) <= CONVREG_FLAT_W_L2) {
            /* W stays in L2: panels outside, so each C tile is finished while in L1. */
            const unsigned* mk = masks + (q0 / CONVREG_FLAT_NR) * T;
            for (ptrdiff_t j = q0; j < q1; j += CONVREG_FLAT_NR, mk += T) {
                ptrdiff_t nr = q1 - j < CONVREG_FLAT_NR ? q1 - j : CONVREG_FLAT_NR;
                for (ptrdiff_t c0 = 0; c0 < cig; c0 += cc) {
                    ptrdiff_t nc = cig - c0 < cc ? cig - c0 : cc, kc = nc * T, k0 = c0 * T;
                    convreg_flat_pack_f32(xg + c0 * hw + j, hw, nc, T, off, mk, Bp);
                    convreg_flat_rows(kc, W + k0, ldw, Bp, bias, C + j, ldc, M, nr, k0 > 0);
                }
            }
            return;
        }
        for (ptrdiff_t c0 = 0; c0 < cig; c0 += cc) {
            ptrdiff_t nc = cig - c0 < cc ? cig - c0 : cc, kc = nc * T, k0 = c0 * T;
            const unsigned* mk = masks + (q0 / CONVREG_FLAT_NR) * T;
            for (ptrdiff_t j = q0; j < q1; j += CONVREG_FLAT_NR, mk += T) {
                ptrdiff_t nr = q1 - j < CONVREG_FLAT_NR ? q1 - j : CONVREG_FLAT_NR;
                convreg_flat_pack_f32(xg + c0 * hw + j, hw, nc, T, off, mk, Bp);
                convreg_flat_rows(kc, W + k0, ldw, Bp, bias, C + j, ldc, M, nr, k0 > 0);
            }
        }
    }

    /* Scratch (in floats) of convreg_flat_f32: lane masks of every panel, then per
       thread one aligned (kc, 32) packed panel. */
    /* K-chunk of the fused mode: the packed panel (kc, 32) is read sequentially, so it
       may live in L2; long chunks cost fewer C reloads and tile start-ups (measured:
       2304 beats 256 by 4-12% on the ResNet 3x3 layers; Bp <= 288 KiB per thread). */
    #ifndef CONVREG_FLAT_KC
    #define CONVREG_FLAT_KC 2304
    #endif
    static ptrdiff_t convreg_flat_chunk(ptrdiff_t cig, ptrdiff_t T) {
        ptrdiff_t nchunks = (cig * T + CONVREG_FLAT_KC - 1) / CONVREG_FLAT_KC;
        return (cig + nchunks - 1) / nchunks;          /* channels per K-chunk */
    }
    static ptrdiff_t convreg_flat_work(ptrdiff_t cig, ptrdiff_t T, ptrdiff_t ohw, int threads) {
        ptrdiff_t npan = (ohw + CONVREG_FLAT_NR - 1) / CONVREG_FLAT_NR;
        return npan * T + 16 + threads * (convreg_flat_chunk(cig, T) * T * CONVREG_FLAT_NR + 16);
    }

    /* The whole call (float32, stride 1, ow == w, kh, kw <= 32): tasks (image, group,
       row part, pixel part) over OpenMP threads, dynamically. Row parts split the group's
       output channels at multiples of 8 (each >= 8 rows), pixel parts split the panels. */
    static void convreg_flat_f32(const float* x, const float* wt, const float* bias, float* out,
                                 float* work, ptrdiff_t n, ptrdiff_t c_in, ptrdiff_t h, ptrdiff_t w,
                                 ptrdiff_t c_out, ptrdiff_t oh, ptrdiff_t kh, ptrdiff_t kw,
                                 ptrdiff_t dh, ptrdiff_t dw, ptrdiff_t pt, ptrdiff_t pl,
                                 ptrdiff_t groups, int threads, ptrdiff_t mparts, ptrdiff_t pparts) {
        int T = (int)(kh * kw);
        ptrdiff_t cig = c_in / groups, cog = c_out / groups, K = cig * T, hw = h * w, ohw = oh * w;
        ptrdiff_t npan = (ohw + CONVREG_FLAT_NR - 1) / CONVREG_FLAT_NR;
        ptrdiff_t cc = convreg_flat_chunk(cig, T), per = cc * T * CONVREG_FLAT_NR + 16;
        ptrdiff_t ntask = n * groups * mparts * pparts;
        ptrdiff_t off[32 * 32];
        unsigned* masks = (unsigned*)work;
        float* scratch = work + npan * T + 16;
        for (ptrdiff_t u = 0; u < kh; u++)
            for (ptrdiff_t v = 0; v < kw; v++)
                off[u * kw + v] = (u * dh - pt) * w + v * dw - pl;
        #pragma omp parallel num_threads(threads)
        {
            int tid = 0;
            #ifdef _OPENMP
            tid = omp_get_thread_num();
            #endif
            float* Bp = scratch + tid * per;
            Bp += (16 - (((size_t)Bp / sizeof(float)) & 15)) & 15;   /* 64-byte aligned */
            #pragma omp for schedule(static)
            for (ptrdiff_t pi = 0; pi < npan; pi++) {
                ptrdiff_t q = pi * CONVREG_FLAT_NR;
                convreg_flat_masks(q, ohw - q < CONVREG_FLAT_NR ? ohw - q : CONVREG_FLAT_NR,
                                   h, w, kh, kw, dh, dw, pt, pl, masks + pi * T);
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
                if (hi - lo < CONVREG_MR || q1 <= q0) continue;
                convreg_flat_task_f32(x + (ni * c_in + g * cig) * hw, hw, cig, T, off, masks, q0, q1,
                                      cc, wt + (g * cog + lo) * K, K, hi - lo,
                                      bias ? bias + g * cog + lo : 0,
                                      out + (ni * c_out + g * cog + lo) * ohw, ohw, Bp);
            }
        }
    }
    #else
    #define CONVREG_IM2COL_MK 0
    #define CONVREG_MR 8
    static void convreg_sgemm_mk(ptrdiff_t M, ptrdiff_t N, ptrdiff_t K, const float* W, ptrdiff_t ldw,
                                 const float* B, ptrdiff_t ldb, const float* bias, float* C,
                                 ptrdiff_t ldc) { (void)M; }
    static void convreg_dgemm_mk(ptrdiff_t M, ptrdiff_t N, ptrdiff_t K, const double* W, ptrdiff_t ldw,
                                 const double* B, ptrdiff_t ldb, const double* bias, double* C,
                                 ptrdiff_t ldc) { (void)M; }
    static ptrdiff_t convreg_flat_work(ptrdiff_t cig, ptrdiff_t T, ptrdiff_t ohw, int threads) {
        return 0; }
    static void convreg_flat_f32(const float* x, const float* wt, const float* bias, float* out,
                                 float* work, ptrdiff_t n, ptrdiff_t c_in, ptrdiff_t h, ptrdiff_t w,
                                 ptrdiff_t c_out, ptrdiff_t oh, ptrdiff_t kh, ptrdiff_t kw,
                                 ptrdiff_t dh, ptrdiff_t dw, ptrdiff_t pt, ptrdiff_t pl,
                                 ptrdiff_t groups, int threads, ptrdiff_t mparts, ptrdiff_t pparts) {
        (void)x; }
    #endif
    """
    bint CONVREG_IM2COL_MK
    int CONVREG_MR
    void convreg_sgemm_mk(Py_ssize_t M, Py_ssize_t N, Py_ssize_t K, const float* W, Py_ssize_t ldw, const float* B,
                          Py_ssize_t ldb, const float* bias, float* C, Py_ssize_t ldc) noexcept nogil
    void convreg_dgemm_mk(Py_ssize_t M, Py_ssize_t N, Py_ssize_t K, const double* W, Py_ssize_t ldw, const double* B,
                          Py_ssize_t ldb, const double* bias, double* C, Py_ssize_t ldc) noexcept nogil
    Py_ssize_t convreg_flat_work(Py_ssize_t cig, Py_ssize_t T, Py_ssize_t ohw, int threads) noexcept nogil
    void convreg_flat_f32(const float* x, const float* wt, const float* bias, float* out, float* work,
                          Py_ssize_t n, Py_ssize_t c_in, Py_ssize_t h, Py_ssize_t w, Py_ssize_t c_out,
                          Py_ssize_t oh, Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t dh, Py_ssize_t dw,
                          Py_ssize_t pt, Py_ssize_t pl, Py_ssize_t groups, int threads,
                          Py_ssize_t mparts, Py_ssize_t pparts) noexcept nogil

HAVE_KERNEL = bool(CONVREG_IM2COL_MK)   # this build has the AVX-512 float32 kernel


cdef struct Geom:
    Py_ssize_t n, c_in, h, w, c_out, oh, ow, kh, kw, sh, sw, dh, dw, pt, pl
    Py_ssize_t groups, cig, cog, K, ohw, band, nbands, ntask
    bint direct             # 1x1, stride 1, unpadded: GEMM on the input, no buffer
    bint has_bias
    bint own_kernel         # float32 GEMMs through the AVX-512 kernel when built
    Py_ssize_t* jlo         # (kw,) per kernel column v: output columns jlo[v] <= j < jhi[v]
    Py_ssize_t* jhi         #       read an input column inside [0, w)


cdef inline void _gemm(int m, int n, int k, const floating* a, int lda,
                       const floating* b, int ldb, floating beta,
                       floating* c, int ldc) noexcept nogil:
    """C (m, n; ldc) := A (m, k; lda) @ B (k, n; ldb) + beta * C, all row-major."""
    cdef char no = b'N'
    cdef floating one = 1
    # Column-major view: C^T (n, m) = B^T (n, k) @ A^T (k, m). BLAS never writes A or B.
    if floating is float:
        sgemm(&no, &no, &n, &m, &k, &one, <float*> b, &ldb, <float*> a, &lda,
              &beta, c, &ldc)
    else:
        dgemm(&no, &no, &n, &m, &k, &one, <double*> b, &ldb, <double*> a, &lda,
              &beta, c, &ldc)


cdef inline void _product(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, const floating* a,
                          Py_ssize_t lda, const floating* b, Py_ssize_t ldb,
                          const floating* bias, floating* c, Py_ssize_t ldc,
                          bint own_kernel) noexcept nogil:
    """C (m, n; ldc) := bias (per row, or 0 when NULL) + A (m, k; lda) @ B (k, n; ldb)."""
    cdef Py_ssize_t o, j
    cdef floating bo
    if own_kernel and CONVREG_IM2COL_MK and m >= CONVREG_MR:
        if floating is float:
            convreg_sgemm_mk(m, n, k, a, lda, b, ldb, bias, c, ldc)
        else:
            convreg_dgemm_mk(m, n, k, a, lda, b, ldb, bias, c, ldc)
        return
    if bias != NULL:
        for o in range(m):
            bo = bias[o]
            for j in range(n):
                c[o * ldc + j] = bo
    _gemm(<int> m, <int> n, <int> k, a, <int> lda, b, <int> ldb,
          1 if bias != NULL else 0, c, <int> ldc)


cdef inline void _zero(floating* dst, Py_ssize_t count) noexcept nogil:
    if count > 0:
        memset(dst, 0, count * sizeof(floating))


cdef void _fill_flat(const floating* xg, floating* col, const Geom* G, Py_ssize_t p0,
                     Py_ssize_t p1, const Py_ssize_t* jlo, const Py_ssize_t* jhi,
                     Py_ssize_t c0, Py_ssize_t c1) noexcept nogil:
    """_fill for stride 1 with ow == w (e.g. 'same' padding): output pixel p reads input
    element p + off of the plane, off = (u*dh - pt)*w + v*dw - pl, so each kernel tap is
    one copy of the band's valid span, then the padding columns inside it are zeroed."""
    cdef Py_ssize_t bp = p1 - p0, ow = G.ow
    cdef Py_ssize_t c, u, v, i, off, ilo, ihi, s0, s1, lo, hi, a, e
    cdef const floating* plane
    cdef floating* row
    for c in range(c0, c1):
        plane = xg + c * G.h * G.w
        for u in range(G.kh):
            ilo = G.pt - u * G.dh                 # output rows whose input row is in [0, h)
            ihi = ilo + G.h
            if ilo < 0:
                ilo = 0
            if ihi > G.oh:
                ihi = G.oh
            for v in range(G.kw):
                row = col + ((c * G.kh + u) * G.kw + v) * bp
                lo, hi = jlo[v], jhi[v]
                off = (u * G.dh - G.pt) * G.w + v * G.dw - G.pl
                # The valid span: from the first valid pixel of row ilo to one past the last
                # valid pixel of row ihi - 1, within the band. Every read lies in the plane.
                s0 = ilo * ow + lo if ilo * ow + lo > p0 else p0
                s1 = (ihi - 1) * ow + hi if (ihi - 1) * ow + hi < p1 else p1
                if ihi <= ilo or hi <= lo or s1 <= s0:
                    _zero(row, bp)
                    continue
                _zero(row, s0 - p0)
                memcpy(row + (s0 - p0), plane + (s0 + off), (s1 - s0) * sizeof(floating))
                _zero(row + (s1 - p0), p1 - s1)
                if lo > 0 or hi < ow:             # padding columns inside the span
                    for i in range(s0 // ow, (s1 - 1) // ow + 1):
                        a = i * ow if i * ow > s0 else s0
                        e = i * ow + lo if i * ow + lo < s1 else s1
                        if e > a:
                            _zero(row + (a - p0), e - a)
                        a = i * ow + hi if i * ow + hi > s0 else s0
                        e = i * ow + ow if i * ow + ow < s1 else s1
                        if e > a:
                            _zero(row + (a - p0), e - a)


cdef void _fill(const floating* xg,      # IN  (cig, h, w): the planes of one image and group
                floating* col,           # OUT (K, bp)
                const Geom* G, Py_ssize_t p0, Py_ssize_t p1,
                const Py_ssize_t* jlo,   # IN  (kw,) first j with an in-range column for tap v
                const Py_ssize_t* jhi,   # IN  (kw,) one past the last such j
                Py_ssize_t c0, Py_ssize_t c1) noexcept nogil:
    """col[(c*kh + u)*kw + v, t] := xpad[c, i*sh + u*dh, j*sw + v*dw], i*ow + j = p0 + t,
    for the channels c0 <= c < c1."""
    cdef Py_ssize_t bp = p1 - p0, ow = G.ow, sw = G.sw
    cdef Py_ssize_t i0 = p0 // ow, i1 = (p1 - 1) // ow     # first and last output row
    cdef Py_ssize_t c, u, v, i, j, ja, jb, a, e, r
    if G.sh == 1 and sw == 1 and ow == G.w:
        _fill_flat(xg, col, G, p0, p1, jlo, jhi, c0, c1)
        return
    cdef const floating* plane
    cdef const floating* src
    cdef floating* row
    cdef floating* dst
    for c in range(c0, c1):
        plane = xg + c * G.h * G.w
        for u in range(G.kh):
            for v in range(G.kw):
                row = col + ((c * G.kh + u) * G.kw + v) * bp
                for i in range(i0, i1 + 1):
                    ja = p0 - i * ow if i == i0 else 0      # this row's columns in the band
                    jb = p1 - i * ow if i == i1 else ow
                    dst = row + (i * ow + ja - p0)          # dst[j - ja] <- column j
                    r = i * G.sh + u * G.dh - G.pt
                    a = jlo[v] if jlo[v] > ja else ja
                    e = jhi[v] if jhi[v] < jb else jb
                    if r < 0 or r >= G.h or a >= e:
                        _zero(dst, jb - ja)
                        continue
                    _zero(dst, a - ja)
                    src = plane + r * G.w + (a * sw + v * G.dw - G.pl)   # x[r, j*sw + v*dw - pl]
                    if sw == 1:
                        memcpy(dst + (a - ja), src, (e - a) * sizeof(floating))
                    else:
                        for j in range(e - a):
                            dst[a - ja + j] = src[j * sw]
                    _zero(dst + (e - ja), jb - e)


cdef inline void _locate(const Geom* G, Py_ssize_t t, Py_ssize_t* ni, Py_ssize_t* g,
                         Py_ssize_t* p0, Py_ssize_t* p1) noexcept nogil:
    """Task t = (image ni, group g, band [p0, p1)), bands fastest."""
    cdef Py_ssize_t bi = t % G.nbands
    ni[0] = t // (G.groups * G.nbands)
    g[0] = (t // G.nbands) % G.groups
    p0[0] = bi * G.band
    p1[0] = p0[0] + G.band if p0[0] + G.band < G.ohw else G.ohw


cdef void _task(const floating* x, const floating* wt, const floating* b, floating* out,
                floating* col, const Geom* G, Py_ssize_t t) noexcept nogil:
    """One task on one thread: fill the band's columns, then one GEMM into out."""
    cdef Py_ssize_t ni, g, p0, p1, bp
    _locate(G, t, &ni, &g, &p0, &p1)
    bp = p1 - p0
    cdef const floating* xg = x + (ni * G.c_in + g * G.cig) * G.h * G.w
    cdef floating* dst = out + (ni * G.c_out + g * G.cog) * G.ohw + p0   # (cog, bp; ohw)
    cdef const floating* bg = b + g * G.cog if G.has_bias else NULL
    if G.direct:                                                     # x as (cig, bp; ohw)
        _product(G.cog, bp, G.K, wt + g * G.cog * G.K, G.K, xg + p0, G.ohw, bg, dst,
                 G.ohw, G.own_kernel)
    else:
        _fill(xg, col, G, p0, p1, G.jlo, G.jhi, 0, G.cig)             # (K, bp; bp)
        _product(G.cog, bp, G.K, wt + g * G.cog * G.K, G.K, col, bp, bg, dst, G.ohw,
                 G.own_kernel)


cdef void _run_serial(const floating* x, const floating* wt, const floating* b,
                      floating* out, floating* col, const Geom* G) noexcept nogil:
    cdef Py_ssize_t t
    for t in range(G.ntask):
        _task(x, wt, b, out, col, G, t)


cdef void _run_tasks(const floating* x, const floating* wt, const floating* b,
                     floating* out, floating* col, const Geom* G, int threads) noexcept nogil:
    """Tasks spread over OpenMP threads, each with its own K * band slice of col."""
    cdef Py_ssize_t t
    cdef floating* mine = NULL
    with parallel(num_threads=threads):
        if col != NULL:
            mine = col + omp_get_thread_num() * G.K * G.band
        for t in prange(G.ntask, schedule='dynamic'):     # bands may differ in size
            _task(x, wt, b, out, mine, G, t)


cdef void _run_shared(const floating* x, const floating* wt, const floating* b,
                      floating* out, floating* col, const Geom* G, int threads) noexcept nogil:
    """Tasks one after another, each split over OpenMP threads: the fill by input
    channels, then the GEMM by blocks of output channels (split_m) or of band columns."""
    cdef Py_ssize_t t, ni, g, p0, p1, bp, c, part, lo, hi, ldb
    # Row blocks of at least 24 (>= the kernel's 8) when splitting output channels.
    cdef bint split_m = G.cog >= 32 * threads and G.cog >= G.band
    cdef const floating* xg
    cdef const floating* src
    cdef floating* dst
    cdef const floating* wg
    # (initialised only because the parallel block copies them in as firstprivate)
    t = ni = g = p0 = p1 = bp = ldb = 0
    xg = src = wg = NULL
    dst = NULL
    with parallel(num_threads=threads):
        for t in range(G.ntask):          # every thread walks the tasks; work is shared
            ni = t // (G.groups * G.nbands)   # (assigned here, not through _locate's
            g = (t // G.nbands) % G.groups    #  pointers, so each thread has its own)
            p0 = (t % G.nbands) * G.band
            p1 = p0 + G.band if p0 + G.band < G.ohw else G.ohw
            bp = p1 - p0
            xg = x + (ni * G.c_in + g * G.cig) * G.h * G.w
            dst = out + (ni * G.c_out + g * G.cog) * G.ohw + p0
            wg = wt + g * G.cog * G.K
            if G.direct:
                src = xg + p0
                ldb = G.ohw
            else:
                for c in prange(G.cig, schedule='static'):
                    _fill(xg, col, G, p0, p1, G.jlo, G.jhi, c, c + 1)
                src = col
                ldb = bp
            for part in prange(threads, schedule='static'):
                if split_m:     # rows [lo, hi) of the output block, multiples of 8
                    lo = ((G.cog * part // threads) // 8) * 8
                    hi = G.cog if part == threads - 1 else ((G.cog * (part + 1) // threads) // 8) * 8
                    if hi > lo:
                        _product(hi - lo, bp, G.K, wg + lo * G.K, G.K, src, ldb,
                                 b + g * G.cog + lo if G.has_bias else NULL,
                                 dst + lo * G.ohw, G.ohw, G.own_kernel)
                else:           # columns [lo, hi) of the band, multiples of 32
                    lo = ((bp * part // threads) // 32) * 32
                    hi = bp if part == threads - 1 else ((bp * (part + 1) // threads) // 32) * 32
                    if hi > lo:
                        _product(G.cog, hi - lo, G.K, wg, G.K, src + lo, ldb,
                                 b + g * G.cog if G.has_bias else NULL,
                                 dst + lo, G.ohw, G.own_kernel)


cdef int _setup(Geom* G, Py_ssize_t n, Py_ssize_t c_in, Py_ssize_t h, Py_ssize_t w,
                Py_ssize_t c_out, Py_ssize_t cig, Py_ssize_t kh, Py_ssize_t kw,
                Py_ssize_t oh, Py_ssize_t ow, Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t pt,
                Py_ssize_t pl, Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t groups,
                Py_ssize_t band, bint has_bias, bint own_kernel) noexcept nogil:
    """Fill G (jlo/jhi must point at kw entries each); returns the band used."""
    cdef Py_ssize_t v, lo, hi, s0
    G.n, G.c_in, G.h, G.w = n, c_in, h, w
    G.c_out, G.cig, G.kh, G.kw, G.oh, G.ow = c_out, cig, kh, kw, oh, ow
    G.sh, G.sw, G.pt, G.pl, G.dh, G.dw = sh, sw, pt, pl, dh, dw
    G.groups, G.cog = groups, c_out // groups
    G.K = cig * kh * kw
    G.ohw = oh * ow
    G.direct = kh == 1 and kw == 1 and sh == 1 and sw == 1 and oh == h and ow == w \
        and pt == 0 and pl == 0
    G.has_bias = has_bias
    G.own_kernel = own_kernel
    if band < 1 or band > G.ohw:
        band = G.ohw
    G.band = band
    G.nbands = (G.ohw + band - 1) // band
    G.ntask = n * groups * G.nbands
    for v in range(kw):
        s0 = v * dw - pl                      # input column read by j = 0
        lo = 0 if s0 >= 0 else (-s0 + sw - 1) // sw
        hi = 0 if w - 1 - s0 < 0 else (w - 1 - s0) // sw + 1
        lo = lo if lo < ow else ow
        hi = hi if hi < ow else ow
        G.jlo[v] = lo
        G.jhi[v] = hi if hi > lo else lo
    return 0


# mode: 0 serial (BLAS may thread), 1 tasks over OpenMP threads, 2 shared tasks.
cdef _entry(const floating[:, :, :, ::1] x, const floating[:, :, :, ::1] wt,
            const floating[::1] b, floating[:, :, :, ::1] out, floating[::1] work,
            Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t pt, Py_ssize_t pl, Py_ssize_t dh,
            Py_ssize_t dw, Py_ssize_t groups, Py_ssize_t band, int threads, int mode,
            bint own_kernel, Py_ssize_t mparts=1, Py_ssize_t pparts=1):
    cdef Geom G
    cdef Py_ssize_t[64] small
    cdef Py_ssize_t[::1] big
    cdef Py_ssize_t kw = wt.shape[3]
    if kw <= 32:
        G.jlo, G.jhi = &small[0], &small[32]
    else:
        import numpy
        big = numpy.empty(2 * kw, dtype=numpy.intp)
        G.jlo, G.jhi = &big[0], &big[kw]
    _setup(&G, x.shape[0], x.shape[1], x.shape[2], x.shape[3], wt.shape[0], wt.shape[1],
           wt.shape[2], kw, out.shape[2], out.shape[3], sh, sw, pt, pl, dh, dw, groups,
           band, b is not None, own_kernel)
    if threads < 1 or mode == 0:
        threads = 1
    if mode == 3:       # fused flat kernel (plan checked: float32, avx512, stride 1, ow == w)
        if floating is double or not CONVREG_IM2COL_MK:
            raise ValueError("mode 3 needs the avx512 build and float32")
        if not (G.sh == 1 and G.sw == 1 and G.ow == G.w and G.kh <= 32 and G.kw <= 32
                and G.cog >= CONVREG_MR and mparts >= 1 and pparts >= 1
                and G.cog >= 8 * mparts):
            raise ValueError("mode 3 does not fit this call")
        fneed = convreg_flat_work(G.cig, G.kh * G.kw, G.ohw, threads)
        if work.shape[0] < fneed:
            raise ValueError(f"work holds {work.shape[0]} elements, the plan fneeds {fneed}")
        if floating is float:
            with nogil:
                convreg_flat_f32(&x[0, 0, 0, 0], &wt[0, 0, 0, 0], &b[0] if G.has_bias else NULL,
                                 &out[0, 0, 0, 0], &work[0], G.n, G.c_in, G.h, G.w, G.c_out,
                                 G.oh, G.kh, G.kw, G.dh, G.dw, G.pt, G.pl, G.groups, threads,
                                 mparts, pparts)
        return
    cdef Py_ssize_t need = 0 if G.direct else (threads if mode == 1 else 1) * G.K * G.band
    if work.shape[0] < need:
        raise ValueError(f"work holds {work.shape[0]} elements, the plan needs {need}")
    cdef const floating* bp = &b[0] if G.has_bias else NULL
    cdef floating* col = &work[0] if work.shape[0] > 0 else NULL
    with nogil:
        if threads == 1 or (mode == 1 and G.ntask == 1):
            _run_serial(&x[0, 0, 0, 0], &wt[0, 0, 0, 0], bp, &out[0, 0, 0, 0], col, &G)
        elif mode == 1:
            _run_tasks(&x[0, 0, 0, 0], &wt[0, 0, 0, 0], bp, &out[0, 0, 0, 0], col, &G, threads)
        else:
            _run_shared(&x[0, 0, 0, 0], &wt[0, 0, 0, 0], bp, &out[0, 0, 0, 0], col, &G, threads)


def conv2d_f32(const float[:, :, :, ::1] x,      # IN  (n, c_in, h, w)
               const float[:, :, :, ::1] wt,     # IN  (c_out, cig, kh, kw)
               const float[::1] b,               # IN  (c_out,) or None
               float[:, :, :, ::1] out,          # OUT (n, c_out, oh, ow)
               float[::1] work,                  # scratch, see conv2d
               Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t pt, Py_ssize_t pl,
               Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t groups,
               Py_ssize_t band, int threads, int mode, bint own_kernel=True,
               Py_ssize_t mparts=1, Py_ssize_t pparts=1):
    """float32 conv2d (see conv2d)."""
    _entry(x, wt, b, out, work, sh, sw, pt, pl, dh, dw, groups, band, threads, mode,
           own_kernel, mparts, pparts)


def conv2d_f64(const double[:, :, :, ::1] x, const double[:, :, :, ::1] wt,
               const double[::1] b, double[:, :, :, ::1] out, double[::1] work,
               Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t pt, Py_ssize_t pl,
               Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t groups,
               Py_ssize_t band, int threads, int mode, bint own_kernel=True):
    """float64 conv2d (see conv2d)."""
    _entry(x, wt, b, out, work, sh, sw, pt, pl, dh, dw, groups, band, threads, mode,
           own_kernel)


def conv2d(x, wt, b, out, work, Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t pt, Py_ssize_t pl,
           Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t groups, Py_ssize_t band,
           int threads=1, int mode=0, bint own_kernel=True, Py_ssize_t mparts=1,
           Py_ssize_t pparts=1):
    """out := conv2d(x, wt) + b, im2col band by band (bands of ``band`` output pixels).

    x (n, c_in, h, w), wt (c_out, c_in/groups, kh, kw), b (c_out,) or None, out
    (n, c_out, oh, ow): C-contiguous, one float dtype; x, wt, b are only read. Tasks are
    (image, group, band). ``mode`` 0 runs them in order on this thread (BLAS may thread
    each GEMM); 1 spreads them over ``threads`` OpenMP threads, each with its own
    K * band slice of ``work`` (length >= threads * K * band); 2 runs them in order, each
    split over ``threads`` OpenMP threads (work >= K * band). In modes 1 and 2 the
    caller holds BLAS to one thread. ``work`` may be empty for a 1x1, stride-1,
    unpadded call, which reads the input directly. ``own_kernel`` (avx512 build, at
    least 8 output channels per group) multiplies with the AVX-512 kernel, else BLAS.
    Mode 3 (avx512 build, float32, stride 1, ow == w, >= 8 output channels per group):
    fused im2col + GEMM, no column buffer; tasks (image, group, row part, pixel part)
    with ``mparts`` x ``pparts`` parts per (image, group); ``work`` >= flat_work(...).
    """
    if mode == 3:
        conv2d_f32(x, wt, b, out, work, sh, sw, pt, pl, dh, dw, groups, band, threads, mode,
                   own_kernel, mparts, pparts)
        return
    f = conv2d_f32 if out.dtype.itemsize == 4 else conv2d_f64
    f(x, wt, b, out, work, sh, sw, pt, pl, dh, dw, groups, band, threads, mode, own_kernel)


def flat_work(Py_ssize_t cig, Py_ssize_t taps, Py_ssize_t ohw, int threads):
    """Elements of float32 scratch mode 3 needs (0 when this build lacks it)."""
    return convreg_flat_work(cig, taps, ohw, threads)

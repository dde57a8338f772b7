/* The weight-gradient kernel of the gradutil family for layers with few taps per output
 * channel (few input channels per group): float32 and float64 from one template,
 * wgrad_block.h, included twice.
 *
 *   gw[o, t] = sum_{b < n} sum_{i < oh} sum_{j < ow} go[b, o, i, j] * x[b*xn + i*xs + toff[t] + j]
 *
 * where x is the zero-padded input, split into stride phases by the caller
 * (pyx/grad/gradutil_impl.pxi: phase_planes), so that tap t of output row i reads a
 * contiguous row at the fixed offset toff[t] (tap (c, p, q): phase plane of input
 * channel c, row offset (p*dh)//sh, column offset (q*dw)//sw). Vectorised along the
 * output row j: a block of OB output channels x TB taps is held in OB*TB vector
 * accumulators; per vector step OB grad_output loads and TB input loads feed OB*TB
 * fused multiply-adds. The lanes are summed once, at the end. The row tail (ow not a
 * multiple of the lanes) is a zero-masked load on AVX-512 and a scalar loop elsewhere:
 * every product is one the sum contains (no lane reads a value outside the true
 * receptive field, so NaN and inf propagate exactly as in the sum). The summation order
 * depends only on the shapes, never on the thread count.
 *
 *   cr_wgrad_task_f32 / _f64    gw rows of one block of at most CR_WG_OBMAX output
 *                               channels (one task of the OpenMP loop)
 *   cr_wgrad_block_f32 / _f64   one (OB x TB) register block over a range of rows
 *
 * The vector width follows the instruction set the including module is compiled for. */
#ifndef CONVREG_WGRAD_KERNELS_H
#define CONVREG_WGRAD_KERNELS_H

#include <stddef.h>
#include <string.h>

#if defined(__AVX512F__)
#include <immintrin.h>
#define CR_WG_VBYTES 64
#define CR_WG_OBMAX 4          /* 4 x 6 accumulators + 4 grad_output vectors: 28 of 32 zmm */
#elif defined(__AVX2__)
#define CR_WG_VBYTES 32
#define CR_WG_OBMAX 2          /* 2 x 6 + 2: 14 of 16 ymm */
#else
#define CR_WG_VBYTES 16
#define CR_WG_OBMAX 2
#endif
#define CR_WG_TBMAX 6          /* taps per register block */
/* Rows are walked in chunks of about this many grad_output elements per channel, so a
 * chunk of the block's grad_output rows stays in L1 while every tap block reads it. */
#define CR_WG_CHUNK 1024
/* Taps per pass over the rows (a multiple of CR_WG_TBMAX): bounds the partial sums. */
#define CR_WG_TSUPER 240

typedef float cr_wgv_f32 __attribute__((vector_size(CR_WG_VBYTES)));
typedef double cr_wgv_f64 __attribute__((vector_size(CR_WG_VBYTES)));

#pragma GCC push_options
#pragma GCC optimize("no-tree-loop-distribute-patterns")

/* ---- float32 */
#define CR_T float
#define CR_VT cr_wgv_f32
#define CR_VL ((int)(CR_WG_VBYTES / sizeof(float)))
#if defined(__AVX512F__)
#define CR_MASK __mmask16
#define CR_LOADU_Z _mm512_maskz_loadu_ps
#endif
#define CR_WG_BLOCK cr_wgrad_block_f32
#define CR_WG_TASK cr_wgrad_task_f32
#include "wgrad_block.h"

/* ---- float64 */
#define CR_T double
#define CR_VT cr_wgv_f64
#define CR_VL ((int)(CR_WG_VBYTES / sizeof(double)))
#if defined(__AVX512F__)
#define CR_MASK __mmask8
#define CR_LOADU_Z _mm512_maskz_loadu_pd
#endif
#define CR_WG_BLOCK cr_wgrad_block_f64
#define CR_WG_TASK cr_wgrad_task_f64
#include "wgrad_block.h"

#pragma GCC pop_options

#endif

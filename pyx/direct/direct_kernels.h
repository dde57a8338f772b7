/* The C kernels of the direct family (GCC vector extensions; AVX-512 intrinsics where
 * masks or lane permutes pay): float32 and float64 instantiated from one template each.
 *
 *   direct_rows.h   short-row helpers: cr_copy_rows_*, cr_zero_rows_*, cr_deint2_rows_*
 *   direct_block.h  microkernels: cr_block_* (dispatcher) over cr_block_g1_* .. g6_*,
 *                   cr_block_1k9_*, _2k9_*, _1k25_*, _2k25_*; depthwise rows cr_dwrows_*
 *   dwchan.h        cr_dwchan_*: depthwise on small planes, vectors over channels
 *                   (its transposes: dwchan_avx2.h, the path AVX2's only)
 *   dwdirect.h      cr_dwdirect_f32: depthwise stride 2 straight from the input (AVX-512)
 *
 * with * = f32 / f64. The caller (direct_impl.pxi) lays the input out so that every tap of
 * every output position is a fixed offset away (a padded, phase-split row band), so the
 * hot loops are contiguous unaligned vector loads, one broadcast per weight and fused
 * multiply-adds. Every product is computed (no skipping of zero weights), so NaN and inf
 * propagate.
 *
 * The vector width follows the instruction set the including module is compiled for
 * (setup.py builds the family for baseline, AVX2+FMA and AVX-512). */
#ifndef CONVREG_DIRECT_KERNELS_H
#define CONVREG_DIRECT_KERNELS_H

#include <stddef.h>
#include <string.h>

#if defined(__AVX512F__)
#include <immintrin.h>
#define CR_VBYTES 64
#define CR_NV 4
#define CR_OBMAX 6
#define CR_ISA "avx512"
#define CR_HAVE_DSTORE 1    /* blocks store straight into the output (CR_STORE_ACC) */
#elif defined(__AVX2__)
#define CR_VBYTES 32
#define CR_NV 3
#define CR_OBMAX 4
#define CR_ISA "avx2"
#define CR_HAVE_DSTORE 0
#else
#define CR_VBYTES 16
#define CR_NV 3
#define CR_OBMAX 4
#define CR_ISA "baseline"
#define CR_HAVE_DSTORE 0
#endif

typedef float cr_vf32 __attribute__((vector_size(CR_VBYTES)));
typedef double cr_vf64 __attribute__((vector_size(CR_VBYTES)));

#define CR_ALWAYS_INLINE static inline __attribute__((always_inline))
#define CR_NOINLINE static __attribute__((noinline))

/* The rows here are short (tens of elements): keep the copy and zeroing loops inline
 * instead of letting GCC turn them into libc memcpy/memset calls. Scoped to the kernels
 * (pop_options below), so the Cython code of the module keeps the command-line options;
 * the helpers it calls are out of line, or (dispatchers) contain no loops. */
#include "dwchan_avx2.h"

#pragma GCC push_options
#pragma GCC optimize("no-tree-loop-distribute-patterns")

/* ---- float32 */
#define CR_T float
#define CR_VT cr_vf32
#define CR_VL ((int)(CR_VBYTES / sizeof(float)))
#if defined(__AVX512F__)
#define CR_V512 __m512
#define CR_MASK __mmask16
#define CR_LOADU _mm512_loadu_ps
#define CR_STOREU _mm512_storeu_ps
#define CR_LOADU_Z _mm512_maskz_loadu_ps
#define CR_STOREU_M _mm512_mask_storeu_ps
#define CR_PERMUTE2 _mm512_permutex2var_ps
#define CR_IDX_EVEN _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30)
#define CR_IDX_ODD _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31)
#endif
#define CR_COPY cr_copy_f32
#define CR_COPY_ROWS cr_copy_rows_f32
#define CR_ZERO_ROWS cr_zero_rows_f32
#define CR_DEINT2 cr_deint2_f32
#define CR_DEINT2_ROWS cr_deint2_rows_f32
#define CR_STORE_PART cr_store_part_f32
#include "direct_rows.h"
#define CR_BLOCK cr_block_f32
#define CR_BLOCK_G1 cr_block_g1_f32
#define CR_BLOCK_G2 cr_block_g2_f32
#define CR_BLOCK_G3 cr_block_g3_f32
#define CR_BLOCK_G4 cr_block_g4_f32
#define CR_BLOCK_G5 cr_block_g5_f32
#define CR_BLOCK_G6 cr_block_g6_f32
#define CR_BLOCK_1K9 cr_block_1k9_f32
#define CR_BLOCK_2K9 cr_block_2k9_f32
#define CR_BLOCK_1K25 cr_block_1k25_f32
#define CR_BLOCK_2K25 cr_block_2k25_f32
#define CR_DWROWS cr_dwrows_f32
#define CR_DWCHAN cr_dwchan_f32
#define CR_DWC_PACK cr_dwc_pack_f32
#define CR_DWC_UNPACK cr_dwc_unpack_f32
#include "dwchan.h"
#include "direct_block.h"

/* ---- float64 */
#define CR_T double
#define CR_VT cr_vf64
#define CR_VL ((int)(CR_VBYTES / sizeof(double)))
#if defined(__AVX512F__)
#define CR_V512 __m512d
#define CR_MASK __mmask8
#define CR_LOADU _mm512_loadu_pd
#define CR_STOREU _mm512_storeu_pd
#define CR_LOADU_Z _mm512_maskz_loadu_pd
#define CR_STOREU_M _mm512_mask_storeu_pd
#define CR_PERMUTE2 _mm512_permutex2var_pd
#define CR_IDX_EVEN _mm512_setr_epi64(0, 2, 4, 6, 8, 10, 12, 14)
#define CR_IDX_ODD _mm512_setr_epi64(1, 3, 5, 7, 9, 11, 13, 15)
#endif
#define CR_COPY cr_copy_f64
#define CR_COPY_ROWS cr_copy_rows_f64
#define CR_ZERO_ROWS cr_zero_rows_f64
#define CR_DEINT2 cr_deint2_f64
#define CR_DEINT2_ROWS cr_deint2_rows_f64
#define CR_STORE_PART cr_store_part_f64
#include "direct_rows.h"
#define CR_BLOCK cr_block_f64
#define CR_BLOCK_G1 cr_block_g1_f64
#define CR_BLOCK_G2 cr_block_g2_f64
#define CR_BLOCK_G3 cr_block_g3_f64
#define CR_BLOCK_G4 cr_block_g4_f64
#define CR_BLOCK_G5 cr_block_g5_f64
#define CR_BLOCK_G6 cr_block_g6_f64
#define CR_BLOCK_1K9 cr_block_1k9_f64
#define CR_BLOCK_2K9 cr_block_2k9_f64
#define CR_BLOCK_1K25 cr_block_1k25_f64
#define CR_BLOCK_2K25 cr_block_2k25_f64
#define CR_DWROWS cr_dwrows_f64
#define CR_DWCHAN cr_dwchan_f64
#define CR_DWC_PACK cr_dwc_pack_f64
#define CR_DWC_UNPACK cr_dwc_unpack_f64
#include "dwchan.h"
#include "direct_block.h"

#include "dwdirect.h"

#pragma GCC pop_options

static const char *cr_isa(void) { return CR_ISA; }

#endif

/* Shared definitions of the cython-winograd kernels: vector width per instruction set,
 * the register blocking of the GEMM microkernel, and the 1-D Winograd transforms.
 *
 * The vector width follows the instruction set the including module is compiled for
 * (setup.py builds the family for baseline, AVX2+FMA and AVX-512). GCC vector
 * extensions throughout; a*b + c contracts to FMA where the target has it
 * (-ffp-contract=fast is GCC's default for GNU C), never -ffast-math.
 */
#ifndef CONVREG_WINOGRAD_SIMD_H
#define CONVREG_WINOGRAD_SIMD_H

#include <stddef.h>
#include <string.h>

#if defined(__AVX512F__)
#define CRW_VBYTES 64
#define CRW_KROWS 8         /* output channels per microkernel call */
#define CRW_ISA "avx512"
#elif defined(__AVX2__)
#define CRW_VBYTES 32
#define CRW_KROWS 4
#define CRW_ISA "avx2"
#else
#define CRW_VBYTES 16
#define CRW_KROWS 4
#define CRW_ISA "baseline"
#endif

/* Transformed weights are packed in panels of CRW_MR output channels (every variant, so
 * the packing does not depend on the instruction set); the microkernel takes CRW_KROWS
 * of them at a time, times CRW_NV vectors of tiles. */
#define CRW_MR 8
#define CRW_NV 3

typedef float crw_vf __attribute__((vector_size(CRW_VBYTES)));
typedef double crw_vd __attribute__((vector_size(CRW_VBYTES)));
#define CRW_VLF ((ptrdiff_t)(CRW_VBYTES / sizeof(float)))
#define CRW_VLD ((ptrdiff_t)(CRW_VBYTES / sizeof(double)))

/* 1-D transforms on vectors (T is the scalar type of the constants).
 *
 * F(2,3), alpha = 4:   B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1]
 *                      A^T = [1 1 1 0; 0 1 -1 -1]
 * F(4,3), alpha = 6 (interpolation points 0, 1, -1, 2, -2, inf):
 *   B^T = [4  0 -5  0 1 0;   A^T = [1 1  1 1  1 0;
 *          0 -4 -4  1 1 0;          0 1 -1 2 -2 0;
 *          0  4 -4 -1 1 0;          0 1  1 4  4 0;
 *          0 -2 -1  2 1 0;          0 1 -1 8 -8 1]
 *          0  2 -1 -2 1 0;
 *          0  4  0 -5 0 1]
 */
#define CRW_BT4(T, o, d)                                                                \
    do {                                                                                \
        o[0] = d[0] - d[2];                                                             \
        o[1] = d[1] + d[2];                                                             \
        o[2] = d[2] - d[1];                                                             \
        o[3] = d[1] - d[3];                                                             \
    } while (0)

#define CRW_BT6(T, o, d)                                                                \
    do {                                                                                \
        o[0] = (T)4 * d[0] - (T)5 * d[2] + d[4];                                        \
        o[1] = (d[3] + d[4]) - (T)4 * (d[1] + d[2]);                                    \
        o[2] = (T)4 * (d[1] - d[2]) + (d[4] - d[3]);                                    \
        o[3] = (T)2 * (d[3] - d[1]) + (d[4] - d[2]);                                    \
        o[4] = (T)2 * (d[1] - d[3]) + (d[4] - d[2]);                                    \
        o[5] = (T)4 * d[1] - (T)5 * d[3] + d[5];                                        \
    } while (0)

#define CRW_AT4(T, y, s)                                                                \
    do {                                                                                \
        y[0] = s[0] + s[1] + s[2];                                                      \
        y[1] = s[1] - s[2] - s[3];                                                      \
    } while (0)

#define CRW_AT6(T, y, s)                                                                \
    do {                                                                                \
        __typeof__(s[0]) p12 = s[1] + s[2], m12 = s[1] - s[2];                          \
        __typeof__(s[0]) p34 = s[3] + s[4], m34 = s[3] - s[4];                          \
        y[0] = s[0] + p12 + p34;                                                        \
        y[1] = m12 + (T)2 * m34;                                                        \
        y[2] = p12 + (T)4 * p34;                                                        \
        y[3] = m12 + (T)8 * m34 + s[5];                                                 \
    } while (0)

#endif

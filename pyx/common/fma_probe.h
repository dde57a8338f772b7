/* The machine's FMA peak, measured: independent chains of vector FMAs, as wide as the
 * CPU runs (AVX-512, else AVX2+FMA, else SSE2 multiply + add), on `threads` OpenMP
 * threads. The benchmark scripts quote kernel speeds as a fraction of it; a number
 * from the hardware's data sheet would ignore this VM's clock and core sharing.
 * Each function carries its own target attribute, so this file compiles in the plain
 * (baseline) module and the caller picks by convreg_has_avx512 / convreg_has_avx2_fma. */
#ifndef CONVREG_FMA_PROBE_H
#define CONVREG_FMA_PROBE_H

#include "cpu.h"

/* 12 accumulators: enough to cover FMA latency x throughput on current x86 cores. */
#define CR_PROBE_CHAINS 12

#if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__)
#include <immintrin.h>
#include <string.h>

/* One probe per instruction set, from one body: V the vector type, LANES its float32
 * lanes, SET1 / STEP (a = a*m + c) / ADD its operations; the lanes are summed through
 * memory at the end. */
#define CR_PROBE_FN(NAME, TARGET, V, LANES, SET1, STEP, ADD)                             \
    TARGET static float NAME(long iters)                                                 \
    {                                                                                    \
        V a[CR_PROBE_CHAINS];                                                            \
        const V m = SET1(0.999999f), c = SET1(1e-6f);                                    \
        for (int i = 0; i < CR_PROBE_CHAINS; i++) a[i] = SET1((float)i);                 \
        for (long it = 0; it < iters; it++) {                                            \
            _Pragma("GCC unroll 12")                                                     \
            for (int i = 0; i < CR_PROBE_CHAINS; i++) a[i] = STEP(a[i], m, c);           \
        }                                                                                \
        V s = a[0];                                                                      \
        for (int i = 1; i < CR_PROBE_CHAINS; i++) s = ADD(s, a[i]);                      \
        float lanes[LANES], total = 0;                                                   \
        memcpy(lanes, &s, sizeof(lanes));                                                \
        for (int i = 0; i < LANES; i++) total += lanes[i];                               \
        return total;                                                                    \
    }

#define CR_SSE2_STEP(a, m, c) _mm_add_ps(_mm_mul_ps((a), (m)), (c))

CR_PROBE_FN(cr_probe_avx512, __attribute__((target("avx512f,fma"))), __m512, 16,
            _mm512_set1_ps, _mm512_fmadd_ps, _mm512_add_ps)
CR_PROBE_FN(cr_probe_avx2, __attribute__((target("avx2,fma"))), __m256, 8,
            _mm256_set1_ps, _mm256_fmadd_ps, _mm256_add_ps)
CR_PROBE_FN(cr_probe_sse2, , __m128, 4, _mm_set1_ps, CR_SSE2_STEP, _mm_add_ps)

/* float32 lanes of the widest vector the probe uses on this CPU. */
static int cr_probe_lanes(void)
{
    return convreg_has_avx512() ? 16 : convreg_has_avx2_fma() ? 8 : 4;
}

/* Runs `iters` rounds of CR_PROBE_CHAINS vector FMAs (2 * lanes flops each); returns a
 * value the compiler cannot discard. */
static float cr_probe_run(int lanes, long iters)
{
    if (lanes == 16) return cr_probe_avx512(iters);
    if (lanes == 8) return cr_probe_avx2(iters);
    return cr_probe_sse2(iters);
}
#else
static int cr_probe_lanes(void) { return 1; }
static float cr_probe_run(int lanes, long iters)
{
    float a[CR_PROBE_CHAINS];
    (void)lanes;
    for (int i = 0; i < CR_PROBE_CHAINS; i++) a[i] = (float)i;
    for (long it = 0; it < iters; it++)
        for (int i = 0; i < CR_PROBE_CHAINS; i++) a[i] = a[i] * 0.999999f + 1e-6f;
    float s = 0;
    for (int i = 0; i < CR_PROBE_CHAINS; i++) s += a[i];
    return s;
}
#endif

#endif

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

__attribute__((target("avx512f,fma"))) static float
cr_probe_avx512(long iters)
{
    __m512 a[CR_PROBE_CHAINS];
    const __m512 m = _mm512_set1_ps(0.999999f), c = _mm512_set1_ps(1e-6f);
    for (int i = 0; i < CR_PROBE_CHAINS; i++) a[i] = _mm512_set1_ps((float)i);
    for (long it = 0; it < iters; it++) {
#pragma GCC unroll 12
        for (int i = 0; i < CR_PROBE_CHAINS; i++) a[i] = _mm512_fmadd_ps(a[i], m, c);
    }
    __m512 s = a[0];
    for (int i = 1; i < CR_PROBE_CHAINS; i++) s = _mm512_add_ps(s, a[i]);
    return _mm512_reduce_add_ps(s);
}

__attribute__((target("avx2,fma"))) static float
cr_probe_avx2(long iters)
{
    __m256 a[CR_PROBE_CHAINS];
    const __m256 m = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(1e-6f);
    for (int i = 0; i < CR_PROBE_CHAINS; i++) a[i] = _mm256_set1_ps((float)i);
    for (long it = 0; it < iters; it++) {
#pragma GCC unroll 12
        for (int i = 0; i < CR_PROBE_CHAINS; i++) a[i] = _mm256_fmadd_ps(a[i], m, c);
    }
    __m256 s = a[0];
    for (int i = 1; i < CR_PROBE_CHAINS; i++) s = _mm256_add_ps(s, a[i]);
    float out[8];
    _mm256_storeu_ps(out, s);
    return out[0] + out[1] + out[2] + out[3] + out[4] + out[5] + out[6] + out[7];
}

static float
cr_probe_sse2(long iters)
{
    __m128 a[CR_PROBE_CHAINS];
    const __m128 m = _mm_set1_ps(0.999999f), c = _mm_set1_ps(1e-6f);
    for (int i = 0; i < CR_PROBE_CHAINS; i++) a[i] = _mm_set1_ps((float)i);
    for (long it = 0; it < iters; it++) {
#pragma GCC unroll 12
        for (int i = 0; i < CR_PROBE_CHAINS; i++) a[i] = _mm_add_ps(_mm_mul_ps(a[i], m), c);
    }
    __m128 s = a[0];
    for (int i = 1; i < CR_PROBE_CHAINS; i++) s = _mm_add_ps(s, a[i]);
    float out[4];
    _mm_storeu_ps(out, s);
    return out[0] + out[1] + out[2] + out[3];
}

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

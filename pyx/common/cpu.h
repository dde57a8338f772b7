/* CPU features, asked of the compiler's runtime: __builtin_cpu_supports checks cpuid and
 * the OS's saved-state bits (XCR0), so a CPU with AVX-512 under an OS that does not save
 * the zmm registers reports no AVX-512. */
#ifndef CONVREG_CPU_H
#define CONVREG_CPU_H

#if (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__))
static int convreg_has_avx2_fma(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}
/* The set the avx512 variant is compiled for (setup.py: -mavx512f/bw/vl/dq, AVX2, FMA). */
static int convreg_has_avx512(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw")
        && __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq")
        && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}
#else
static int convreg_has_avx2_fma(void) { return 0; }
static int convreg_has_avx512(void) { return 0; }
#endif

#endif

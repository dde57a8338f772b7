"""CPU features, asked of the compiler's runtime (cpuid plus the OS's saved-state check)."""

cdef extern from *:
    """
    #if (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__))
    static int convreg_has_avx2_fma(void) {
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    }
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
    """
    int convreg_has_avx2_fma() noexcept nogil
    int convreg_has_avx512() noexcept nogil


def supported_variants():
    """The SIMD variants this CPU can run, best last: e.g. ['baseline', 'avx2', 'avx512']."""
    out = ["baseline"]
    if convreg_has_avx2_fma():
        out.append("avx2")
        if convreg_has_avx512():
            out.append("avx512")
    return out

"""CPU features, asked of the compiler's runtime (cpuid plus the OS's saved-state check)."""

cdef extern from "cpu.h":
    cdef int convreg_has_avx2_fma() noexcept nogil
    cdef int convreg_has_avx512() noexcept nogil


def supported_variants():
    """The SIMD variants this CPU can run, best last: e.g. ['baseline', 'avx2', 'avx512']."""
    out = ["baseline"]
    if convreg_has_avx2_fma():
        out.append("avx2")
        if convreg_has_avx512():
            out.append("avx512")
    return out

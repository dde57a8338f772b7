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


cdef extern from "fma_probe.h":
    cdef int cr_probe_lanes() noexcept nogil
    cdef float cr_probe_run(int lanes, long iters) noexcept nogil
    cdef int CR_PROBE_CHAINS


def fma_peak_gflops(int threads=1, double seconds=0.2):
    """float32 GFLOP/s of independent vector FMA chains on ``threads`` OpenMP threads, the
    widest vectors this CPU runs (16 lanes with AVX-512, 8 with AVX2+FMA, else 4 lanes of
    SSE2 multiply + add): the machine's measured peak, over about ``seconds``.

    Benchmarks quote kernel speeds as a fraction of it (``scripts/_bench_common.py``).
    Take it on a quiet machine: it measures what the cores deliver right now."""
    import time
    from cython.parallel import prange
    if threads < 1 or threads > 4096:
        raise ValueError(f"threads must be between 1 and 4096, got {threads}")
    if not (0 < seconds <= 60):
        raise ValueError(f"seconds must be in (0, 60], got {seconds}")
    cdef int lanes = cr_probe_lanes(), t
    cdef long iters = 1 << 16
    cdef double elapsed = 0.0
    cdef float sink = 0
    while True:
        start = time.perf_counter()
        for t in prange(threads, nogil=True, num_threads=threads, schedule='static', chunksize=1):
            sink += cr_probe_run(lanes, iters)
        elapsed = time.perf_counter() - start
        if elapsed >= seconds / 4 or iters > (1 << 40):
            break
        iters *= 2
    if sink != sink:       # never true: keeps the loops' results live
        raise RuntimeError("FMA probe produced NaN")
    return threads * <double>iters * CR_PROBE_CHAINS * 2 * lanes / elapsed / 1e9

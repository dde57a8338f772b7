# OpenMP through one helper that still compiles (serially) when the compiler has no OpenMP.
cdef extern from "openmp_helpers.h":
    cdef bint CONVREG_HAVE_OPENMP
    cdef int omp_get_max_threads() noexcept nogil
    cdef int omp_get_thread_num() noexcept nogil
    cdef int omp_get_num_threads() noexcept nogil
    cdef void cr_omp_barrier() noexcept nogil

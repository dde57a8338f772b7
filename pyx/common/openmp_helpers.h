/* OpenMP through one header that still compiles (serially) when the compiler has no
 * OpenMP: setup.py builds with -fopenmp only when a test program links with it, or not at
 * all under CONVREG_OPENMP=0. */
#ifndef CONVREG_OPENMP_HELPERS_H
#define CONVREG_OPENMP_HELPERS_H

#ifdef _OPENMP
#include <omp.h>
#define CONVREG_HAVE_OPENMP 1
#else
#define CONVREG_HAVE_OPENMP 0
static inline int omp_get_max_threads(void) { return 1; }
static inline int omp_get_thread_num(void) { return 0; }
static inline int omp_get_num_threads(void) { return 1; }
#endif

/* A barrier of the innermost enclosing parallel region (every thread of the team must
 * reach it equally often); nothing without OpenMP. */
static inline void cr_omp_barrier(void)
{
#ifdef _OPENMP
#pragma omp barrier
#endif
}

#endif

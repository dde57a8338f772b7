# The C weight-gradient kernel of the gradutil family (wgrad_kernels.h, template
# wgrad_block.h; legend there), one declaration per kernel.

cdef extern from "wgrad_kernels.h" nogil:
    cdef int CR_WG_VBYTES           # bytes per vector of this build
    cdef int CR_WG_OBMAX            # output channels per task, at most
    cdef int CR_WG_TSUPER           # taps per pass over the rows (bounds the work buffer)

    # gw[o*ntaps + t] := sum over rows and columns of go * x at offset toff[t], o < ob;
    # work: ob*min(ntaps, CR_WG_TSUPER)*(lanes + 1) elements
    cdef void cr_wgrad_task_f32(int ob, const float* go, Py_ssize_t gcs, Py_ssize_t gis, const float* x, Py_ssize_t xs, Py_ssize_t xn, const Py_ssize_t* toff, Py_ssize_t ntaps, Py_ssize_t n, Py_ssize_t oh, Py_ssize_t ow, float* gw, float* work)
    cdef void cr_wgrad_task_f64(int ob, const double* go, Py_ssize_t gcs, Py_ssize_t gis, const double* x, Py_ssize_t xs, Py_ssize_t xn, const Py_ssize_t* toff, Py_ssize_t ntaps, Py_ssize_t n, Py_ssize_t oh, Py_ssize_t ow, double* gw, double* work)
    # one register block (called by the task; declared so grep finds it)
    cdef void cr_wgrad_block_f32(int ob, int tb, const float* go, Py_ssize_t gcs, Py_ssize_t gis, const float* x, Py_ssize_t xs, Py_ssize_t xn, const Py_ssize_t* toff, Py_ssize_t ntaps, Py_ssize_t r0, Py_ssize_t r1, Py_ssize_t oh, Py_ssize_t ow, float* vacc, float* sacc)
    cdef void cr_wgrad_block_f64(int ob, int tb, const double* go, Py_ssize_t gcs, Py_ssize_t gis, const double* x, Py_ssize_t xs, Py_ssize_t xn, const Py_ssize_t* toff, Py_ssize_t ntaps, Py_ssize_t r0, Py_ssize_t r1, Py_ssize_t oh, Py_ssize_t ow, double* vacc, double* sacc)

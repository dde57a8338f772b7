# The C kernels of the direct family (direct_kernels.h; legend in direct_impl.pxi), one
# declaration per kernel. *_f32 / *_f64 come from one template each (direct_rows.h,
# direct_block.h); cr_dwdirect_f32 exists for float32 only.

cdef extern from "direct_kernels.h" nogil:
    cdef int CR_NV                  # vectors of flat positions per block call
    cdef int CR_OBMAX               # output channels per block call, at most
    cdef int CR_VBYTES              # bytes per vector of this build
    cdef int CR_HAVE_DWD            # cr_dwdirect_f32 is real (AVX-512), not a stub
    cdef int CR_HAVE_DSTORE         # blocks can store straight into the output (AVX-512)
    cdef int CR_HAVE_DWCHAN         # the depthwise channel-vector path is chosen (AVX2)
    cdef int CR_DWC_SLACK(Py_ssize_t sw)   # its window's slack (vectors)
    cdef int CR_DWC_RSLACK                 # its row's slack (vectors)
    cdef const char* cr_isa()

    # out block := bias + taps, ob output channels x CR_NV vectors (dispatches to the next 10)
    cdef void cr_block_f32(int ob, const float* x, Py_ssize_t cs, Py_ssize_t cig, const Py_ssize_t* toff, int kk, const float* w, Py_ssize_t wos, const float* bias, float* out, Py_ssize_t os, const Py_ssize_t* doff, const unsigned* dm)
    cdef void cr_block_f64(int ob, const double* x, Py_ssize_t cs, Py_ssize_t cig, const Py_ssize_t* toff, int kk, const double* w, Py_ssize_t wos, const double* bias, double* out, Py_ssize_t os, const Py_ssize_t* doff, const unsigned* dm)
    cdef void cr_block_g1_f32(const float* x, Py_ssize_t cs, Py_ssize_t cig, const Py_ssize_t* toff, int kk, const float* w, Py_ssize_t wos, const float* bias, float* out, Py_ssize_t os, const Py_ssize_t* doff, const unsigned* dm)
    cdef void cr_block_g2_f32(const float* x, Py_ssize_t cs, Py_ssize_t cig, const Py_ssize_t* toff, int kk, const float* w, Py_ssize_t wos, const float* bias, float* out, Py_ssize_t os, const Py_ssize_t* doff, const unsigned* dm)
    cdef void cr_block_g3_f32(const float* x, Py_ssize_t cs, Py_ssize_t cig, const Py_ssize_t* toff, int kk, const float* w, Py_ssize_t wos, const float* bias, float* out, Py_ssize_t os, const Py_ssize_t* doff, const unsigned* dm)
    cdef void cr_block_g4_f32(const float* x, Py_ssize_t cs, Py_ssize_t cig, const Py_ssize_t* toff, int kk, const float* w, Py_ssize_t wos, const float* bias, float* out, Py_ssize_t os, const Py_ssize_t* doff, const unsigned* dm)
    cdef void cr_block_1k9_f32(const float* x, Py_ssize_t cs, Py_ssize_t cig, const Py_ssize_t* toff, int kk, const float* w, Py_ssize_t wos, const float* bias, float* out, Py_ssize_t os, const Py_ssize_t* doff, const unsigned* dm)
    cdef void cr_block_2k9_f32(const float* x, Py_ssize_t cs, Py_ssize_t cig, const Py_ssize_t* toff, int kk, const float* w, Py_ssize_t wos, const float* bias, float* out, Py_ssize_t os, const Py_ssize_t* doff, const unsigned* dm)
    cdef void cr_block_1k25_f32(const float* x, Py_ssize_t cs, Py_ssize_t cig, const Py_ssize_t* toff, int kk, const float* w, Py_ssize_t wos, const float* bias, float* out, Py_ssize_t os, const Py_ssize_t* doff, const unsigned* dm)
    cdef void cr_block_2k25_f32(const float* x, Py_ssize_t cs, Py_ssize_t cig, const Py_ssize_t* toff, int kk, const float* w, Py_ssize_t wos, const float* bias, float* out, Py_ssize_t os, const Py_ssize_t* doff, const unsigned* dm)
    cdef void cr_block_g1_f64(const double* x, Py_ssize_t cs, Py_ssize_t cig, const Py_ssize_t* toff, int kk, const double* w, Py_ssize_t wos, const double* bias, double* out, Py_ssize_t os, const Py_ssize_t* doff, const unsigned* dm)
    cdef void cr_block_g2_f64(const double* x, Py_ssize_t cs, Py_ssize_t cig, const Py_ssize_t* toff, int kk, const double* w, Py_ssize_t wos, const double* bias, double* out, Py_ssize_t os, const Py_ssize_t* doff, const unsigned* dm)
    cdef void cr_block_g3_f64(const double* x, Py_ssize_t cs, Py_ssize_t cig, const Py_ssize_t* toff, int kk, const double* w, Py_ssize_t wos, const double* bias, double* out, Py_ssize_t os, const Py_ssize_t* doff, const unsigned* dm)
    cdef void cr_block_g4_f64(const double* x, Py_ssize_t cs, Py_ssize_t cig, const Py_ssize_t* toff, int kk, const double* w, Py_ssize_t wos, const double* bias, double* out, Py_ssize_t os, const Py_ssize_t* doff, const unsigned* dm)
    cdef void cr_block_1k9_f64(const double* x, Py_ssize_t cs, Py_ssize_t cig, const Py_ssize_t* toff, int kk, const double* w, Py_ssize_t wos, const double* bias, double* out, Py_ssize_t os, const Py_ssize_t* doff, const unsigned* dm)
    cdef void cr_block_2k9_f64(const double* x, Py_ssize_t cs, Py_ssize_t cig, const Py_ssize_t* toff, int kk, const double* w, Py_ssize_t wos, const double* bias, double* out, Py_ssize_t os, const Py_ssize_t* doff, const unsigned* dm)
    cdef void cr_block_1k25_f64(const double* x, Py_ssize_t cs, Py_ssize_t cig, const Py_ssize_t* toff, int kk, const double* w, Py_ssize_t wos, const double* bias, double* out, Py_ssize_t os, const Py_ssize_t* doff, const unsigned* dm)
    cdef void cr_block_2k25_f64(const double* x, Py_ssize_t cs, Py_ssize_t cig, const Py_ssize_t* toff, int kk, const double* w, Py_ssize_t wos, const double* bias, double* out, Py_ssize_t os, const Py_ssize_t* doff, const unsigned* dm)
    # avx512 builds only (CR_OBMAX = 6)
    cdef void cr_block_g5_f32(const float* x, Py_ssize_t cs, Py_ssize_t cig, const Py_ssize_t* toff, int kk, const float* w, Py_ssize_t wos, const float* bias, float* out, Py_ssize_t os, const Py_ssize_t* doff, const unsigned* dm)
    cdef void cr_block_g6_f32(const float* x, Py_ssize_t cs, Py_ssize_t cig, const Py_ssize_t* toff, int kk, const float* w, Py_ssize_t wos, const float* bias, float* out, Py_ssize_t os, const Py_ssize_t* doff, const unsigned* dm)
    cdef void cr_block_g5_f64(const double* x, Py_ssize_t cs, Py_ssize_t cig, const Py_ssize_t* toff, int kk, const double* w, Py_ssize_t wos, const double* bias, double* out, Py_ssize_t os, const Py_ssize_t* doff, const unsigned* dm)
    cdef void cr_block_g6_f64(const double* x, Py_ssize_t cs, Py_ssize_t cig, const Py_ssize_t* toff, int kk, const double* w, Py_ssize_t wos, const double* bias, double* out, Py_ssize_t os, const Py_ssize_t* doff, const unsigned* dm)

    # depthwise rows, paired, straight into the output
    cdef void cr_dwrows_f32(int kh, int s, const float* x, const Py_ssize_t* vtoff, Py_ssize_t wk, const float* w, float bias, float* out, Py_ssize_t ow, Py_ssize_t nrows)
    cdef void cr_dwrows_f64(int kh, int s, const double* x, const Py_ssize_t* vtoff, Py_ssize_t wk, const double* w, double bias, double* out, Py_ssize_t ow, Py_ssize_t nrows)
    # depthwise on small planes: CR_VBYTES of channels per call, vectors over channels
    cdef void cr_dwchan_f32(const float* x, Py_ssize_t h, Py_ssize_t w, Py_ssize_t nc, const float* wt, const float* bias, float* out, Py_ssize_t oh, Py_ssize_t ow, Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t pt, Py_ssize_t pl, float* P, float* R, float* Wt)
    cdef void cr_dwchan_f64(const double* x, Py_ssize_t h, Py_ssize_t w, Py_ssize_t nc, const double* wt, const double* bias, double* out, Py_ssize_t oh, Py_ssize_t ow, Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t pt, Py_ssize_t pl, double* P, double* R, double* Wt)
    # depthwise stride 2 from the input, no band (float32, AVX-512; a stub elsewhere)
    # its steps (avx512 builds only): 3x3 in steps of 8 rows, 5x5 in steps of 14 or 7
    ctypedef unsigned short __mmask16
    cdef __mmask16 cr_colmask(Py_ssize_t c0, Py_ssize_t w)     # lanes inside [0, w)
    cdef void cr_dwd_3_2_f32(const float* x, Py_ssize_t h, Py_ssize_t w, Py_ssize_t pt, Py_ssize_t pl, const float* wt, float bias, float* out, Py_ssize_t ow, Py_ssize_t i0, Py_ssize_t nrows)
    cdef void cr_dwd_5_2_f32(const float* x, Py_ssize_t h, Py_ssize_t w, Py_ssize_t pt, Py_ssize_t pl, const float* wt, float bias, float* out, Py_ssize_t ow, Py_ssize_t i0, Py_ssize_t nrows)
    cdef void cr_dwd_5_2r7_f32(const float* x, Py_ssize_t h, Py_ssize_t w, Py_ssize_t pt, Py_ssize_t pl, const float* wt, float bias, float* out, Py_ssize_t ow, Py_ssize_t i0, Py_ssize_t nrows)
    cdef void cr_dwdirect_f32(int kh, int s, const float* x, Py_ssize_t h, Py_ssize_t w, Py_ssize_t pt, Py_ssize_t pl, const float* wt, float bias, float* out, Py_ssize_t ow, Py_ssize_t i0, Py_ssize_t nrows)

    # short rows of the band packing and the tile copy-out
    cdef void cr_copy_rows_f32(float* dst, Py_ssize_t ds, const float* src, Py_ssize_t ss, Py_ssize_t nrows, Py_ssize_t n)
    cdef void cr_copy_rows_f64(double* dst, Py_ssize_t ds, const double* src, Py_ssize_t ss, Py_ssize_t nrows, Py_ssize_t n)
    cdef void cr_zero_rows_f32(float* dst, Py_ssize_t ds, Py_ssize_t nrows, Py_ssize_t n)
    cdef void cr_zero_rows_f64(double* dst, Py_ssize_t ds, Py_ssize_t nrows, Py_ssize_t n)
    cdef void cr_deint2_rows_f32(const float* src, Py_ssize_t ss, float* de, float* dod, Py_ssize_t ds, Py_ssize_t nrows, Py_ssize_t ne, Py_ssize_t no)
    cdef void cr_deint2_rows_f64(const double* src, Py_ssize_t ss, double* de, double* dod, Py_ssize_t ds, Py_ssize_t nrows, Py_ssize_t ne, Py_ssize_t no)
    # one row / one partial vector, used inside the kernels (cr_vf*: GCC vectors of CR_VBYTES)
    ctypedef struct cr_vf32:
        pass
    ctypedef struct cr_vf64:
        pass
    cdef void cr_store_part_f32(float* dst, cr_vf32 v, Py_ssize_t n)
    cdef void cr_store_part_f64(double* dst, cr_vf64 v, Py_ssize_t n)
    cdef void cr_copy_f32(float* dst, const float* src, Py_ssize_t n)
    cdef void cr_copy_f64(double* dst, const double* src, Py_ssize_t n)
    cdef void cr_deint2_f32(const float* src, float* de, Py_ssize_t ne, float* dod, Py_ssize_t no)
    cdef void cr_deint2_f64(const double* src, double* de, Py_ssize_t ne, double* dod, Py_ssize_t no)

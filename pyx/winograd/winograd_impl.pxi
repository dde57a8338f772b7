"""Winograd F(m x m, 3 x 3) convolution, stride 1: the kernels of ``cython-winograd``.

    out[n, o, i, j] = b[o] + sum_{c<cig} sum_{p,q<3}
                      w[o, c, p, q] * xpad[n, g*cig + c, i + p*dh, j + q*dw]

Tiles and dilation
------------------
With dilation (dh, dw) the output splits into dh*dw interleaved sub-grids
out[a::dh, b::dw] (a < dh, b < dw), each an undilated 3x3 convolution of the input
sub-grid xpad[a::dh, b::dw]. Every sub-grid is cut into m x m output tiles: a *tile row*
is a pair (a, ti), covering output rows a + dh*(ti*m + i), i < m; a *tile column* a pair
(b, tj), covering output columns b + dw*(tj*m + j). Tile (row, column) reads the
alpha x alpha (alpha = m + 2) input window at rows a - pt + dh*(ti*m + r) and columns
b - pl + dw*(tj*m + k), zero outside the input (so any four-sided zero padding, and
outputs beyond the padded input are simply cropped). Tiles are numbered over
(image, tile row, tile column), and consecutive tiles of one tile row and residue b form
a *segment*: the transforms run with vectors over the tiles of a segment.

Three stages per work item (group g, block of T consecutive tiles, part of the output
channels), as in NNPACK:

1. input transform  V[p][c][t] = (B^T d B)[p] of tile t, channel c   (p < alpha^2)
2. batched GEMM     M[p][o][t] = sum_c U[p][o][c] V[p][c][t]  for each position p,
                    U = G w G^T the transformed weights (``transform_weights``), packed in
                    panels of 8 output channels; register-tiled microkernel 8 (AVX-512) or
                    4 output channels x 3 vectors of tiles; up to CRW_TAIL tiles past
                    a block's last whole vector with vectors over the 8 output channels
                    of a panel (same multiply-adds, same order), inside the microkernel's
                    loop (AVX-512, up to 3 tiles) or a tail kernel over (position, panel)
                    units.
3. output transform out[tile t, channel o] = bias[o] + A^T M[.][o][t] A, cropped.

The weight transform (crw_wtrans, in double, rounded once) is a separate entry point,
``transform_weights``, so layers can cache U. Given the weights themselves, a call of one
tile block transforms them inside the convolution instead, each chunk of output-channel
panels by the thread whose GEMM reads it, just before (``raw_plan``); other calls
transform them whole first. Accuracy of the tile sizes: see the
docstring of convreg/backends/winograd.py (F(2x2) holds the elementwise bound, F(4x4)
does not and is only used when asked for).

Work items (group, tile block) go to the OpenMP threads; when they are too few for the
threads, the team shares each block instead: each thread transforms a range of its input
channels into one V, and after a barrier computes a range of its output channels; a team
of two with transformed weights (F(2x2)) splits the block by tile positions instead (each
thread all channels of its 8 positions, their GEMM, then after a barrier half the output
channels from the team's M: each core reads only the V and U it wrote or owns). The
buffers of a thread (V, M and two small scratch rows) are sized by the block, never by
the image or the padding. Every output element is computed by the same sequence of
operations whatever the thread count or block size (the GEMM sums channels in order,
and the transforms are lane-wise), so results are bit-identical across thread counts.
"""

import numpy as np

from cython cimport floating
from cython.parallel cimport parallel, prange
from libc.string cimport memcmp, memset

from openmp_helpers cimport (CONVREG_HAVE_OPENMP, cr_omp_barrier, omp_get_num_threads,
                              omp_get_thread_num)

cdef extern from "winograd_kernels.h" nogil:
    int CRW_VBYTES
    int CRW_MR
    int CRW_NV
    int CRW_TAIL
    int CRW_KROWS
    const char* crw_isa()
    void crw_prefetch(const void* p, Py_ssize_t nbytes)
    void crw_input_f(int m, const float* x, Py_ssize_t h, Py_ssize_t w, Py_ssize_t row0,
                     Py_ssize_t dh, Py_ssize_t col0, Py_ssize_t dw, Py_ssize_t nt,
                     float* P, float* V, Py_ssize_t vps, int half)
    void crw_input_d(int m, const double* x, Py_ssize_t h, Py_ssize_t w, Py_ssize_t row0,
                     Py_ssize_t dh, Py_ssize_t col0, Py_ssize_t dw, Py_ssize_t nt,
                     double* P, double* V, Py_ssize_t vps, int half)
    void crw_input2b_f(const float* x, const Py_ssize_t* seg, int nseg, Py_ssize_t h,
                       Py_ssize_t w, Py_ssize_t dh, Py_ssize_t nt, int fresh, float* P,
                       float* V, Py_ssize_t vps, int half)
    void crw_input2b_d(const double* x, const Py_ssize_t* seg, int nseg, Py_ssize_t h,
                       Py_ssize_t w, Py_ssize_t dh, Py_ssize_t nt, int fresh, double* P,
                       double* V, Py_ssize_t vps, int half)
    void crw_output_f(int m, const float* M, Py_ssize_t mps, Py_ssize_t nt, float bias,
                      float* Q, Py_ssize_t ldq)
    void crw_output_d(int m, const double* M, Py_ssize_t mps, Py_ssize_t nt, double bias,
                      double* Q, Py_ssize_t ldq)
    void crw_outstore_f(int m, const float* Q, Py_ssize_t ldq, Py_ssize_t nt, float* out,
                        Py_ssize_t oh, Py_ssize_t ow, Py_ssize_t row0, Py_ssize_t dh,
                        Py_ssize_t col0, Py_ssize_t dw)
    void crw_outstore_d(int m, const double* Q, Py_ssize_t ldq, Py_ssize_t nt, double* out,
                        Py_ssize_t oh, Py_ssize_t ow, Py_ssize_t row0, Py_ssize_t dh,
                        Py_ssize_t col0, Py_ssize_t dw)
    void crw_outstoreb_f(int m, const float* Q, Py_ssize_t ldq, const Py_ssize_t* seg,
                         int nseg, float* out, Py_ssize_t oh, Py_ssize_t ow, Py_ssize_t dh,
                         Py_ssize_t dw)
    void crw_outstoreb_d(int m, const double* Q, Py_ssize_t ldq, const Py_ssize_t* seg,
                         int nseg, double* out, Py_ssize_t oh, Py_ssize_t ow, Py_ssize_t dh,
                         Py_ssize_t dw)
    void crw_wtrans_f(int m, const float* w, Py_ssize_t cog, Py_ssize_t cig, int swap,
                      Py_ssize_t ob0, Py_ssize_t ob1, float* U, Py_ssize_t unp)
    void crw_wtrans_d(int m, const double* w, Py_ssize_t cog, Py_ssize_t cig, int swap,
                      Py_ssize_t ob0, Py_ssize_t ob1, double* U, Py_ssize_t unp)
    void crw_gemm_f(int npos, Py_ssize_t K, const float* U, Py_ssize_t ups, Py_ssize_t nob,
                    const float* V, Py_ssize_t vps, Py_ssize_t ldv, float* M,
                    Py_ssize_t mps, Py_ssize_t ldm, Py_ssize_t nt)
    void crw_gemm_d(int npos, Py_ssize_t K, const double* U, Py_ssize_t ups, Py_ssize_t nob,
                    const double* V, Py_ssize_t vps, Py_ssize_t ldv, double* M,
                    Py_ssize_t mps, Py_ssize_t ldm, Py_ssize_t nt)

# One line per C kernel that `grep -rn "def \|cdef " pyx/` finds (LAYOUT.md):
cdef inline void call_crw_input_f(int m, const float* x, Py_ssize_t h, Py_ssize_t w, Py_ssize_t row0, Py_ssize_t dh, Py_ssize_t col0, Py_ssize_t dw, Py_ssize_t nt, float* P, float* V, Py_ssize_t vps, int half) noexcept nogil:
    crw_input_f(m, x, h, w, row0, dh, col0, dw, nt, P, V, vps, half)
cdef inline void call_crw_input_d(int m, const double* x, Py_ssize_t h, Py_ssize_t w, Py_ssize_t row0, Py_ssize_t dh, Py_ssize_t col0, Py_ssize_t dw, Py_ssize_t nt, double* P, double* V, Py_ssize_t vps, int half) noexcept nogil:
    crw_input_d(m, x, h, w, row0, dh, col0, dw, nt, P, V, vps, half)
cdef inline void call_crw_input2b_f(const float* x, const Py_ssize_t* seg, int nseg, Py_ssize_t h, Py_ssize_t w, Py_ssize_t dh, Py_ssize_t nt, int fresh, float* P, float* V, Py_ssize_t vps, int half) noexcept nogil:
    crw_input2b_f(x, seg, nseg, h, w, dh, nt, fresh, P, V, vps, half)
cdef inline void call_crw_input2b_d(const double* x, const Py_ssize_t* seg, int nseg, Py_ssize_t h, Py_ssize_t w, Py_ssize_t dh, Py_ssize_t nt, int fresh, double* P, double* V, Py_ssize_t vps, int half) noexcept nogil:
    crw_input2b_d(x, seg, nseg, h, w, dh, nt, fresh, P, V, vps, half)
cdef inline void call_crw_output_f(int m, const float* M, Py_ssize_t mps, Py_ssize_t nt, float bias, float* Q, Py_ssize_t ldq) noexcept nogil:
    crw_output_f(m, M, mps, nt, bias, Q, ldq)
cdef inline void call_crw_output_d(int m, const double* M, Py_ssize_t mps, Py_ssize_t nt, double bias, double* Q, Py_ssize_t ldq) noexcept nogil:
    crw_output_d(m, M, mps, nt, bias, Q, ldq)
cdef inline void call_crw_outstore_f(int m, const float* Q, Py_ssize_t ldq, Py_ssize_t nt, float* out, Py_ssize_t oh, Py_ssize_t ow, Py_ssize_t row0, Py_ssize_t dh, Py_ssize_t col0, Py_ssize_t dw) noexcept nogil:
    crw_outstore_f(m, Q, ldq, nt, out, oh, ow, row0, dh, col0, dw)
cdef inline void call_crw_outstore_d(int m, const double* Q, Py_ssize_t ldq, Py_ssize_t nt, double* out, Py_ssize_t oh, Py_ssize_t ow, Py_ssize_t row0, Py_ssize_t dh, Py_ssize_t col0, Py_ssize_t dw) noexcept nogil:
    crw_outstore_d(m, Q, ldq, nt, out, oh, ow, row0, dh, col0, dw)
cdef inline void call_crw_outstoreb_f(int m, const float* Q, Py_ssize_t ldq, const Py_ssize_t* seg, int nseg, float* out, Py_ssize_t oh, Py_ssize_t ow, Py_ssize_t dh, Py_ssize_t dw) noexcept nogil:
    crw_outstoreb_f(m, Q, ldq, seg, nseg, out, oh, ow, dh, dw)
cdef inline void call_crw_outstoreb_d(int m, const double* Q, Py_ssize_t ldq, const Py_ssize_t* seg, int nseg, double* out, Py_ssize_t oh, Py_ssize_t ow, Py_ssize_t dh, Py_ssize_t dw) noexcept nogil:
    crw_outstoreb_d(m, Q, ldq, seg, nseg, out, oh, ow, dh, dw)
cdef inline void call_crw_wtrans_f(int m, const float* w, Py_ssize_t cog, Py_ssize_t cig, int swap, Py_ssize_t ob0, Py_ssize_t ob1, float* U, Py_ssize_t unp) noexcept nogil:
    crw_wtrans_f(m, w, cog, cig, swap, ob0, ob1, U, unp)
cdef inline void call_crw_wtrans_d(int m, const double* w, Py_ssize_t cog, Py_ssize_t cig, int swap, Py_ssize_t ob0, Py_ssize_t ob1, double* U, Py_ssize_t unp) noexcept nogil:
    crw_wtrans_d(m, w, cog, cig, swap, ob0, ob1, U, unp)
cdef inline void call_crw_gemm_f(int npos, Py_ssize_t K, const float* U, Py_ssize_t ups, Py_ssize_t nob, const float* V, Py_ssize_t vps, Py_ssize_t ldv, float* M, Py_ssize_t mps, Py_ssize_t ldm, Py_ssize_t nt) noexcept nogil:
    crw_gemm_f(npos, K, U, ups, nob, V, vps, ldv, M, mps, ldm, nt)
cdef inline void call_crw_gemm_d(int npos, Py_ssize_t K, const double* U, Py_ssize_t ups, Py_ssize_t nob, const double* V, Py_ssize_t vps, Py_ssize_t ldv, double* M, Py_ssize_t mps, Py_ssize_t ldm, Py_ssize_t nt) noexcept nogil:
    crw_gemm_d(npos, K, U, ups, nob, V, vps, ldv, M, mps, ldm, nt)


HAVE_OPENMP = bool(CONVREG_HAVE_OPENMP)
ISA = crw_isa().decode()
VECTOR_BYTES = CRW_VBYTES
MR = CRW_MR
TILES = (2, 4)

# Per-thread buffer budgets (bytes): the transformed input block V and the GEMM output
# chunk M. The block of tiles is cut so V stays near VCAP (it is re-read once per chunk of
# output channels: V + M should stay in the 1 MiB L2), the chunk of output channels so M
# stays near MCAP. (1 MiB for V measured ~10% slower than 256-512 KiB on 64ch 56².)
# crw_input2b (a block's input per channel across its segments) where a tile row has
# fewer than BLOCK_TC tiles and the block at most BLOCK_SEGS segments. Against the
# transform segment by segment (A/B, 2 threads): 64ch 56^2 0.98x, 128ch 28^2 0.96x,
# batch-8 256ch 14^2 0.965x, batch-8 512ch 7^2 0.96x the time; 112-tile rows (224^2)
# 1.05x, 56-tile rows 1.0x.
cdef enum:
    BLOCK_SEGS = 256
    BLOCK_TC = 32
cdef enum:
    VCAP = 512 * 1024
    MCAP = 512 * 1024
    UCAP = 256 * 1024


# Interpolation matrices G (alpha x 3) of F(2,3) and F(4,3): U = G g G^T.
_G = {
    2: np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.0, 0.0, 1.0]]),
    # (floats written as quotients of floats: cdivision makes 1 / 6 a C integer division)
    4: np.array([[6.0, 0.0, 0.0], [-4.0, -4.0, -4.0], [-4.0, 4.0, -4.0],
                 [1.0, 2.0, 4.0], [1.0, -2.0, 4.0], [0.0, 0.0, 24.0]]) / 24.0,
}


def transform_weights(w, int tile, Py_ssize_t groups=1, int threads=1, out=None,
                      bint swapped=False):
    """U = G w G^T of every (output, input) channel pair, packed for the GEMM.

    ``w`` (c_out, cig, 3, 3) -> array (groups, alpha^2, ceil(cog/8), cig, 8) of w's dtype
    (computed in float64, rounded once), U[g, p, ob, c, r] = (G w[g*cog + 8*ob + r, c] G^T)
    at position p = row*alpha + column; channels past cog in the last panel are zero.
    The layout is the same for every SIMD variant. Panels of 8 output channels are
    shared among up to ``threads`` OpenMP threads (one thread for small weights).
    ``out``: a C-contiguous array of exactly that shape and dtype to write U into (a
    reused buffer: a fresh multi-MiB array page-faults on first touch, which cost as
    much as the transform itself for 512-channel weights).
    ``swapped``: the kernels of the transposed convolution instead (per group, output
    channel o and input channel c take w[g*cog + c, o] rotated by 180 degrees): the
    Winograd weights of a stride-1 layer's input gradient, shape (groups, alpha^2,
    ceil(cig/8), cog, 8), without a flipped copy of w.
    """
    if tile not in _G:
        raise ValueError(f"tile must be one of {TILES}, got {tile}")
    w = np.asarray(w)
    if w.ndim != 4 or w.shape[2:] != (3, 3):
        raise ValueError(f"weights must be (c_out, cig, 3, 3), got {w.shape}")
    if w.dtype not in (np.float32, np.float64):
        raise TypeError(f"weights must be float32 or float64, got {w.dtype}")
    c_out, cig = w.shape[0], w.shape[1]
    if groups < 1 or c_out % groups:
        raise ValueError(f"c_out={c_out} is not a multiple of groups={groups}")
    cog = c_out // groups
    if swapped:
        cog, cig = cig, cog
    al = tile + 2
    nob = (cog + CRW_MR - 1) // CRW_MR
    shape = (groups, al * al, nob, cig, CRW_MR)
    if out is None:
        U = np.empty(shape, dtype=w.dtype)
    elif (not isinstance(out, np.ndarray) or out.shape != shape or out.dtype != w.dtype
            or not out.flags.c_contiguous or not out.flags.writeable):
        raise ValueError(f"out must be a writeable C-contiguous {w.dtype} array of shape "
                         f"{shape}, got {getattr(out, 'shape', type(out).__name__)}")
    else:
        U = out
    w = np.ascontiguousarray(w)
    _wtrans(w, U, tile, groups, _weight_threads(w.size, threads), swapped)
    return U


# Below this many weight elements the transform runs on the calling thread. The pool
# it wakes runs the convolution right after, so only tiny weights stay serial: on 2
# threads 32x32x3x3 took 7.5 us against 9.9 serial, 64x64x3x3 13.8 against 24.2
# (2-core AVX-512 Xeon, 2026-12-02; the limit was 1 << 16, which kept 64 channels serial).
WTRANS_PARALLEL_MIN = 1 << 13


def _weight_threads(Py_ssize_t size, int threads):
    return max(1, threads) if size >= WTRANS_PARALLEL_MIN else 1


def _wtrans(const floating[:, :, :, ::1] w, floating[:, :, :, :, ::1] U, int tile,
            Py_ssize_t groups, int threads, bint swap):
    # (cog, cig) of the transformed kernels: the layer's, or swapped for its transpose
    cdef Py_ssize_t item, g, ob, nob, cog = w.shape[0] // groups, cig = w.shape[1]
    if swap:
        cog, cig = cig, cog
    nob = (cog + CRW_MR - 1) // CRW_MR
    if w.shape[0] == 0 or w.shape[1] == 0:
        return
    for item in prange(groups * nob, nogil=True, num_threads=threads, schedule='static'):
        g = item // nob
        ob = item % nob
        if floating is float:
            call_crw_wtrans_f(tile, &w[0, 0, 0, 0] + g * cog * cig * 9, cog, cig, swap, ob,
                              ob + 1, &U[g, 0, ob, 0, 0], nob)
        else:
            call_crw_wtrans_d(tile, &w[0, 0, 0, 0] + g * cog * cig * 9, cog, cig, swap, ob,
                              ob + 1, &U[g, 0, ob, 0, 0], nob)


cdef struct Plan:
    int m                # output tile size
    int al               # input tile size m + 2
    int npos             # al * al
    Py_ssize_t TR        # tile rows per image (over the dh row residues)
    Py_ssize_t TC        # tile columns per image (over the dw column residues)
    Py_ssize_t tpi       # tiles per image TR * TC
    Py_ssize_t ttot      # tiles of the batch
    Py_ssize_t T         # tiles of the largest block (a multiple of the vector length)
    Py_ssize_t nvec      # vectors of tiles in the batch, ceil(ttot / vector length)
    Py_ssize_t vl        # vector length in elements
    Py_ssize_t Tp        # row length of V and M (T plus one vector of slack)
    Py_ssize_t nblocks
    Py_ssize_t nob       # panels of 8 output channels per group
    Py_ssize_t pob       # panels per part
    Py_ssize_t nparts    # output-channel parts of a block (threads sharing it, or 1)
    bint shared          # the threads share each block (rounds of transform, barrier, GEMM)
    Py_ssize_t ocb       # panels per GEMM chunk (M holds one chunk)
    bint fused           # the raw weights are transformed chunk by chunk, into the thread's
                         # buffer (un elements), just before the GEMM reads them
    Py_ssize_t items     # groups * nblocks * nparts
    Py_ssize_t vps       # elements between tile positions in V (``_odd_lines``)
    Py_ssize_t mps       # elements between tile positions in M
    Py_ssize_t vn, mn, pn, qn, un   # buffer elements (each a multiple of 16)
    Py_ssize_t per_thread


cdef Py_ssize_t _cdiv(Py_ssize_t a, Py_ssize_t b) noexcept nogil:
    return (a + b - 1) // b


cdef Py_ssize_t _up16(Py_ssize_t a) noexcept nogil:
    return (a + 15) // 16 * 16


cdef Py_ssize_t _odd_lines(Py_ssize_t elems, Py_ssize_t itemsize) noexcept nogil:
    """``elems`` rounded up to an odd number of 64-byte lines. The transforms touch all
    alpha^2 positions of a tile at once: at a stride of a multiple of 4 KiB those 16-36
    streams fall into one L1 set and evict each other (64ch 56^2 spent more time in the
    input transform than in the GEMM); an odd number of lines spreads them over the sets."""
    cdef Py_ssize_t line = 64 // itemsize
    cdef Py_ssize_t k = (elems + line - 1) // line
    return (k + 1 - k % 2) * line


cdef Py_ssize_t _tiles_1d(Py_ssize_t size, Py_ssize_t dil, int m) noexcept nogil:
    """Tiles along one axis of ``size`` outputs: over the residues a < dil."""
    cdef Py_ssize_t a, na, total = 0
    for a in range(min(dil, size)):
        na = _cdiv(size - a, dil)
        total += _cdiv(na, m)
    return total


cdef Py_ssize_t _block_start(Py_ssize_t b, Py_ssize_t nb, Py_ssize_t nvec,
                             Py_ssize_t vl, Py_ssize_t ttot) noexcept nogil:
    """First tile of block b when ttot tiles (nvec vectors of vl) are cut into nb blocks
    of whole vectors whose sizes differ by at most one vector."""
    return min(ttot, (b * nvec // nb) * vl)


cdef inline void _block_tiles(const Plan* pl, Py_ssize_t blk, Py_ssize_t* t0,
                              Py_ssize_t* t1) noexcept nogil:
    """Tiles [t0, t1) of block blk of the plan (``_block_start``)."""
    t0[0] = _block_start(blk, pl.nblocks, pl.nvec, pl.vl, pl.ttot)
    t1[0] = _block_start(blk + 1, pl.nblocks, pl.nvec, pl.vl, pl.ttot)


cdef double _block_cost(Py_ssize_t size, Py_ssize_t vl) noexcept nogil:
    """The cost of a block of ``size`` tiles, in tiles: its whole vectors, then the tiles
    past them (a vector, or an eighth of one per tile when the GEMM's tail kernel takes
    them: up to CRW_TAIL), plus one vector of per-block work."""
    cdef Py_ssize_t rem = size % vl
    cdef double tail = 0.0
    if rem > CRW_TAIL:
        tail = vl
    elif rem > 0:
        tail = rem * vl / 8.0
    return <double>((size - rem) + vl) + tail


cdef double _makespan(Py_ssize_t ttot, Py_ssize_t nb, Py_ssize_t vl, Py_ssize_t groups,
                      int threads) noexcept:
    """Finish time of nb balanced blocks per group (``_block_start``) taken in order by the
    first free thread; a block costs ``_block_cost``."""
    cdef Py_ssize_t nvec = _cdiv(ttot, vl), i, k, tid, size
    cdef double load[64]
    cdef double cost, mx = 0.0
    cdef int nt = min(threads, 64)
    if groups * nb > 2048:      # many blocks: balanced to within a block, no simulation
        return groups * (<double>nvec * vl + nb * vl) / nt + (_cdiv(nvec, nb) + 1) * vl
    for k in range(nt):
        load[k] = 0.0
    for i in range(groups * nb):
        size = (_block_start(i % nb + 1, nb, nvec, vl, ttot)
                - _block_start(i % nb, nb, nvec, vl, ttot))
        cost = _block_cost(size, vl)
        tid = 0
        for k in range(1, nt):
            if load[k] < load[tid]:
                tid = k
        load[tid] += cost
    for k in range(nt):
        mx = max(mx, load[k])
    return mx


cdef Plan _plan(Py_ssize_t n, Py_ssize_t groups, Py_ssize_t cig, Py_ssize_t cog,
                Py_ssize_t oh, Py_ssize_t ow, Py_ssize_t dh, Py_ssize_t dw, int m,
                Py_ssize_t itemsize, int threads, bint raw) noexcept:
    cdef Plan pl
    cdef Py_ssize_t vl = CRW_VBYTES // itemsize, nr = CRW_NV * vl, tmax, T, nb, nvec, mcap, k
    cdef double best, span
    pl.m = m
    pl.al = m + 2
    pl.npos = pl.al * pl.al
    pl.TR = _tiles_1d(oh, dh, m)
    pl.TC = _tiles_1d(ow, dw, m)
    pl.tpi = pl.TR * pl.TC
    pl.ttot = n * pl.tpi
    pl.nob = _cdiv(cog, CRW_MR)
    # Largest block whose V fits VCAP (at least one microkernel width of tiles). Blocks up
    # to twice that are allowed at a cost (a V that spills from L2), so a call of a few
    # tiles more than the budget is not cut into a full and a tiny block.
    tmax = max(nr, VCAP // (pl.npos * cig * itemsize) // vl * vl)
    # The number of blocks: balanced blocks of whole vectors (sizes within one vector of
    # each other, ``_block_start``), as few as finish soonest on the threads.
    nvec = _cdiv(pl.ttot, vl)
    best = -1.0
    nb = max(1, _cdiv(nvec * vl, 2 * tmax))
    while nb <= nvec:
        T = _cdiv(nvec, nb) * vl
        span = _makespan(pl.ttot, nb, vl, groups, threads)
        if T > tmax:
            span *= 1.0 + 0.5 * (T - tmax) / tmax
        if best < 0 or span < best * 0.9999:
            best, pl.nblocks, pl.T = span, nb, T
        if T <= tmax and (nb * groups >= 8 * threads
                          or (T <= nr and nb * groups >= 2 * threads)):
            break           # balanced enough: smaller blocks only add per-block overhead
        nb += 1
    # With fewer tile blocks than threads, the threads share each block instead: they
    # transform its input channels into one V, then each takes a part of the output
    # channels (``shared``). Separate items per part transformed the block's input once
    # per part (512ch 7^2: 0.91-0.94x the time shared). From one block per thread on,
    # blocks are items of their own (sharing them cost 32ch 40^2 1.39x, 128ch 20^2 1.07x
    # the time), unless fewer shared blocks than threads finish sooner. A shared block
    # may hold threads times VCAP (one V for the team); every thread reads the part of
    # it that another core wrote, and waits at the barriers: a cost relative to the GEMM
    # taken as 6 / (output-channel panels), fitted to these measurements (2 threads):
    # 49 tiles as one shared block of 3 vectors + 1 tail tile against blocks of 32 and
    # 17 tiles took 0.94x the time at 256ch 14^2, 0.89x at 512ch, 0.97x at 128ch, 1.02x
    # at 96ch, 1.03x at 64ch; 100 tiles shared 1.16x at 128ch 20^2.
    pl.nparts = 1
    pl.shared = threads > 1 and groups * pl.nblocks < threads and pl.nob > 1
    if threads > 1 and pl.nob > 1 and not pl.shared:
        nb = max(1, _cdiv(nvec * vl, tmax * threads))
        if groups * nb < threads:
            span = 0.0
            for k in range(nb):
                span += _block_cost(_block_start(k + 1, nb, nvec, vl, pl.ttot)
                                    - _block_start(k, nb, nvec, vl, pl.ttot), vl)
            span *= groups * (1.0 + 6.0 / pl.nob) / min(pl.nob, <Py_ssize_t>threads)
            if span < best:
                pl.shared, pl.nblocks, pl.T = True, nb, _cdiv(nvec, nb) * vl
    pl.nvec = nvec
    pl.vl = vl
    pl.Tp = pl.T + vl
    if pl.shared:
        pl.nparts = min(pl.nob, <Py_ssize_t>threads)
    pl.pob = _cdiv(pl.nob, pl.nparts)
    # Every chunk reads the block's V again: when V is at least twice M's budget
    # (batch-8 512ch 7^2: 2.6 MB, three chunks), M may grow to V's size (one chunk:
    # 0.955-0.96x the time there, batch-4 0.95x, batch-8 256ch 14^2 0.98x); a larger M
    # for a smaller V (128ch 28^2: 655 KB) made those layers 1.01-1.04x slower.
    mcap = pl.npos * cig * pl.Tp * itemsize
    if mcap < 2 * MCAP:
        mcap = MCAP
    pl.ocb = max(1, min(pl.pob, mcap // (pl.npos * CRW_MR * pl.Tp * itemsize)))
    # Raw weights (a functional call) and one tile block: every panel of U is read by one
    # work item only, so it is transformed there, a chunk at a time into a buffer the
    # GEMM reads from L2 at once. Transformed ahead into a whole U, the transform's
    # stores went out to L3 and the GEMM read them back (256ch 14^2: 4.2 MB each way,
    # ~0.15 ms of a ~0.75 ms call). Several tile blocks would each transform U again, and
    # every chunk reads the block's V again: only where V stays in L2 (512ch 14^2, a
    # 7.3 MB V read once per panel from L3, took 1.39x the time fused).
    pl.fused = raw and pl.nblocks == 1 and pl.npos * cig * pl.Tp * itemsize <= 3 * VCAP
    if pl.fused:
        pl.ocb = max(1, min(pl.ocb, UCAP // (pl.npos * cig * CRW_MR * itemsize)))
    pl.ocb = _cdiv(pl.pob, _cdiv(pl.pob, pl.ocb))      # equal chunks
    pl.items = groups * pl.nblocks * pl.nparts
    pl.vps = _odd_lines(cig * pl.Tp, itemsize)
    pl.mps = _odd_lines(pl.ocb * CRW_MR * pl.Tp, itemsize)
    pl.vn = _up16(pl.npos * pl.vps)
    pl.mn = _up16(pl.npos * pl.mps)
    pl.pn = _up16((pl.al + 1) * m * (pl.T + 2 * vl))
    if m == 2:      # crw_input2b's 16 planes
        pl.pn = max(pl.pn, _up16(16 * (pl.T + vl)))
    pl.qn = _up16(m * m * pl.Tp + vl)            # phases Tp apart, a vector of room
    pl.un = _up16(pl.npos * pl.ocb * cig * CRW_MR) if pl.fused else 0
    pl.per_thread = pl.vn + pl.mn + pl.pn + pl.qn + pl.un + 16
    return pl


cdef inline Py_ssize_t _segment(const Plan* pl, const Py_ssize_t* cend, Py_ssize_t t,
                                Py_ssize_t t1, Py_ssize_t* img, Py_ssize_t* tr,
                                Py_ssize_t* tc) noexcept nogil:
    """Tile t's image, tile row and tile column; returns the length of the segment that
    starts at t (its tile row's run of one column residue), cut at t1."""
    cdef Py_ssize_t rem
    img[0] = t // pl.tpi
    rem = t - img[0] * pl.tpi
    tr[0] = rem // pl.TC
    tc[0] = rem - tr[0] * pl.TC
    return min(cend[tc[0]] - tc[0], t1 - t)


cdef int _segments(const Plan* pl, const Py_ssize_t* cend, Py_ssize_t t0, Py_ssize_t t1,
                   const Py_ssize_t* trow, const Py_ssize_t* ccol, Py_ssize_t plane,
                   Py_ssize_t pt, Py_ssize_t pleft, Py_ssize_t* segs) noexcept nogil:
    """The segments of tiles [t0, t1) in order, for crw_input2b / crw_outstoreb: segs[4*s ..
    4*s + 3] = (image * plane, first row - pt, first column - pleft, tiles); their count,
    or 0 when there are more than BLOCK_SEGS (the caller then goes segment by segment)."""
    cdef Py_ssize_t t = t0, seg, img, tr, tc
    cdef int nseg = 0
    while t < t1:
        if nseg == BLOCK_SEGS:
            return 0
        seg = _segment(pl, cend, t, t1, &img, &tr, &tc)
        segs[4 * nseg] = img * plane
        segs[4 * nseg + 1] = trow[tr] - pt
        segs[4 * nseg + 2] = ccol[tc] - pleft
        segs[4 * nseg + 3] = seg
        nseg += 1
        t += seg
    return nseg


cdef void _input_block(const Plan* pl, Py_ssize_t g, Py_ssize_t t0, Py_ssize_t t1,
                       Py_ssize_t c_lo, Py_ssize_t c_hi,
                       const floating* x,         # IN  (n, c_in, h, w)
                       floating* V,               # OUT block's transformed input
                       floating* P,               # thread scratch of the transform
                       const Py_ssize_t* trow, const Py_ssize_t* ccol,
                       const Py_ssize_t* cend, Py_ssize_t groups, Py_ssize_t cig,
                       Py_ssize_t h, Py_ssize_t w, Py_ssize_t pt, Py_ssize_t pleft,
                       Py_ssize_t dh, Py_ssize_t dw, int half=-1) noexcept nogil:
    """Stage 1 for tiles [t0, t1) of group g, input channels [c_lo, c_hi) of the group;
    ``half`` 0 or 1 (F(2x2) only): the tile positions of transform rows 0-1 or 2-3 only
    (a team of two splitting a shared block by positions), -1 all."""
    cdef Py_ssize_t c_in = groups * cig, nt = t1 - t0, Tp = pl.Tp, vps = pl.vps
    cdef Py_ssize_t t, img, tr, tc, seg, c, pos, pimg, pr0, pr1
    cdef Py_ssize_t segs[4 * BLOCK_SEGS]
    cdef int nseg = 0
    # Channel by channel and within a channel segment by segment, in order (the vector
    # tail of one segment is overwritten by the next). Channel-outer: the segments of one
    # channel read consecutive input rows, which the hardware prefetcher follows;
    # segment-outer jumped a whole plane per channel and stalled on every row (64ch 56^2:
    # a third of the transform's time).
    # The block's input rows of one image (when it lies in one): those of the next
    # channel are prefetched while this channel's are transformed.
    pimg = t0 // pl.tpi
    pr0 = pr1 = 0
    if (t1 - 1) // pl.tpi == pimg:
        pr0 = max(0, trow[(t0 - pimg * pl.tpi) // pl.TC] - pt)
        pr1 = min(h, trow[(t1 - 1 - pimg * pl.tpi) // pl.TC] - pt + dh * (pl.al - 1) + 1)
    # F(2,3) without column dilation, on rows of few tiles: the whole block's tiles at once
    # per channel (crw_input2b), from the list of its segments
    if pl.m == 2 and dw == 1 and pl.TC < BLOCK_TC:
        nseg = _segments(pl, cend, t0, t1, trow, ccol, c_in * h * w, pt, pleft, segs)
    for c in range(c_lo, c_hi):
        if c + 1 < c_hi and pr1 > pr0:
            crw_prefetch(x + ((pimg * c_in + g * cig + c + 1) * h + pr0) * w,
                         (pr1 - pr0) * w * sizeof(floating))
        if nseg:
            if floating is float:
                call_crw_input2b_f(x + (g * cig + c) * h * w, segs, nseg, h, w, dh, nt,
                                   c == c_lo, P, V + c * Tp, vps, half)
            else:
                call_crw_input2b_d(x + (g * cig + c) * h * w, segs, nseg, h, w, dh, nt,
                                   c == c_lo, P, V + c * Tp, vps, half)
            continue
        t = t0
        while t < t1:
            seg = _segment(pl, cend, t, t1, &img, &tr, &tc)
            if floating is float:
                call_crw_input_f(pl.m, x + ((img * c_in + g * cig + c) * h) * w, h, w,
                            trow[tr] - pt, dh, ccol[tc] - pleft, dw, seg, P,
                            V + c * Tp + (t - t0), vps, half)
            else:
                call_crw_input_d(pl.m, x + ((img * c_in + g * cig + c) * h) * w, h, w,
                            trow[tr] - pt, dh, ccol[tc] - pleft, dw, seg, P,
                            V + c * Tp + (t - t0), vps, half)
            t += seg
    # The GEMM reads whole vectors of tiles: lanes past the block's last tile, which no
    # segment may have written (a reused buffer holds anything there), are set to zero.
    if nt % pl.vl:
        for pos in range(0 if half < 0 else 8 * half, pl.npos if half < 0 else 8 * half + 8):
            for c in range(c_lo, c_hi):
                memset(V + pos * vps + c * Tp + nt, 0, (pl.vl - nt % pl.vl) * sizeof(floating))


cdef void _gemm_block(const Plan* pl, Py_ssize_t g, Py_ssize_t t0, Py_ssize_t t1,
                      Py_ssize_t ob_lo, Py_ssize_t ob_hi,
                      const floating* U,          # IN  (groups, npos, nob, cig, 8), or
                                                  #     pl.fused: the weights (c_out, cig, 3, 3)
                      const floating* bias,       # IN  (c_out,)
                      floating* out,              # OUT (n, c_out, oh, ow)
                      const floating* V,          # IN  block's transformed input
                      floating* M, floating* Q,   # thread scratch
                      floating* Ub,               # thread scratch: a fused chunk's U
                      const Py_ssize_t* trow, const Py_ssize_t* ccol,
                      const Py_ssize_t* cend, Py_ssize_t groups, Py_ssize_t cig,
                      Py_ssize_t cog, Py_ssize_t oh, Py_ssize_t ow, Py_ssize_t dh,
                      Py_ssize_t dw) noexcept nogil:
    """Stages 2 and 3 for tiles [t0, t1) of group g, output-channel panels [ob_lo, ob_hi),
    per chunk of panels: (pl.fused: the chunk's weight transform into Ub,) GEMM into M,
    then output transform."""
    cdef Py_ssize_t c_out = groups * cog, nt = t1 - t0, Tp = pl.Tp
    cdef Py_ssize_t oc0, oc1, ups
    cdef const floating* Uc
    cdef Py_ssize_t segs[4 * BLOCK_SEGS]
    cdef int nseg = _segments(pl, cend, t0, t1, trow, ccol, c_out * oh * ow, 0, 0, segs)
    oc0 = ob_lo
    while oc0 < ob_hi:
        oc1 = min(ob_hi, oc0 + pl.ocb)
        if not pl.fused:        # the chunk's panels of the group's U
            ups = pl.nob * cig * CRW_MR
            Uc = U + (g * pl.npos * pl.nob + oc0) * cig * CRW_MR
        else:                   # transformed here, into the thread's Ub
            ups = (oc1 - oc0) * cig * CRW_MR
            Uc = Ub
            if floating is float:
                call_crw_wtrans_f(pl.m, U + g * cog * cig * 9, cog, cig, 0, oc0, oc1, Ub,
                                  oc1 - oc0)
            else:
                call_crw_wtrans_d(pl.m, U + g * cog * cig * 9, cog, cig, 0, oc0, oc1, Ub,
                                  oc1 - oc0)
        if floating is float:
            call_crw_gemm_f(<int>pl.npos, cig, Uc, ups, oc1 - oc0, V, pl.vps, Tp, M, pl.mps,
                            Tp, nt)
        else:
            call_crw_gemm_d(<int>pl.npos, cig, Uc, ups, oc1 - oc0, V, pl.vps, Tp, M, pl.mps,
                            Tp, nt)
        _output_chunk(pl, g, t0, t1, oc0, oc0, oc1, bias, out, M, Q, segs, nseg, trow, ccol,
                      cend, groups, cog, oh, ow, dh, dw)
        oc0 = oc1


cdef void _output_chunk(const Plan* pl, Py_ssize_t g, Py_ssize_t t0, Py_ssize_t t1,
                        Py_ssize_t oc0, Py_ssize_t pa, Py_ssize_t pb,
                        const floating* bias, floating* out,
                        const floating* M,         # IN  a chunk's GEMM output, panel oc0 first
                        floating* Q, const Py_ssize_t* segs, int nseg,
                        const Py_ssize_t* trow, const Py_ssize_t* ccol,
                        const Py_ssize_t* cend, Py_ssize_t groups, Py_ssize_t cog,
                        Py_ssize_t oh, Py_ssize_t ow, Py_ssize_t dh,
                        Py_ssize_t dw) noexcept nogil:
    """Stage 3 for tiles [t0, t1) of group g, output-channel panels [pa, pb) of the chunk
    whose GEMM output M holds from panel oc0 on."""
    cdef Py_ssize_t c_out = groups * cog, nt = t1 - t0, Tp = pl.Tp
    cdef Py_ssize_t t, img, tr, tc, seg, o
    cdef Py_ssize_t mlo = oc0 * CRW_MR, olo = pa * CRW_MR, ohi = min(cog, pb * CRW_MR)
    for o in range(olo, ohi):
        # the block's tiles at once into Q (phases Tp apart), then segment by segment
        # into the output rows
        if floating is float:
            call_crw_output_f(pl.m, M + (o - mlo) * Tp, pl.mps, nt, bias[g * cog + o], Q, Tp)
        else:
            call_crw_output_d(pl.m, M + (o - mlo) * Tp, pl.mps, nt, bias[g * cog + o], Q, Tp)
        if nseg:
            if floating is float:
                call_crw_outstoreb_f(pl.m, Q, Tp, segs, nseg,
                                     out + (g * cog + o) * oh * ow, oh, ow, dh, dw)
            else:
                call_crw_outstoreb_d(pl.m, Q, Tp, segs, nseg,
                                     out + (g * cog + o) * oh * ow, oh, ow, dh, dw)
            continue
        t = t0
        while t < t1:
            seg = _segment(pl, cend, t, t1, &img, &tr, &tc)
            if floating is float:
                call_crw_outstore_f(pl.m, Q + (t - t0), Tp, seg,
                                    out + ((img * c_out + g * cog + o) * oh) * ow, oh,
                                    ow, trow[tr], dh, ccol[tc], dw)
            else:
                call_crw_outstore_d(pl.m, Q + (t - t0), Tp, seg,
                                    out + ((img * c_out + g * cog + o) * oh) * ow, oh,
                                    ow, trow[tr], dh, ccol[tc], dw)
            t += seg


cdef void _gemm_split(const Plan* pl, Py_ssize_t g, Py_ssize_t t0, Py_ssize_t t1,
                      int half, int tid, int team,
                      const floating* U,          # IN  (groups, npos, nob, cig, 8)
                      const floating* bias, floating* out,
                      const floating* V,          # IN  the team's V, this thread's positions
                      floating* M,                # the team's M (one chunk of all panels)
                      floating* Q,                # thread scratch
                      const Py_ssize_t* trow, const Py_ssize_t* ccol,
                      const Py_ssize_t* cend, Py_ssize_t groups, Py_ssize_t cig,
                      Py_ssize_t cog, Py_ssize_t oh, Py_ssize_t ow, Py_ssize_t dh,
                      Py_ssize_t dw) noexcept nogil:
    """A shared F(2x2) block with transformed weights (never pl.fused) split by tile
    positions between a team of two: per chunk of output-channel panels, this thread's 8
    positions (transform rows 2*half, 2*half + 1) through the GEMM into the team's M, a
    barrier, then its half of the chunk's panels through the output transform, a
    barrier. Its V and U are its own: split by output channels, both cores read the V
    both wrote, and the GEMM ran ~20 % slower per multiply-add."""
    cdef Py_ssize_t nt = t1 - t0, Tp = pl.Tp, p0 = 8 * half, oc0, oc1
    cdef Py_ssize_t ups = pl.nob * cig * CRW_MR
    cdef const floating* Uc
    cdef Py_ssize_t segs[4 * BLOCK_SEGS]
    cdef int nseg = _segments(pl, cend, t0, t1, trow, ccol, groups * cog * oh * ow, 0, 0, segs)
    oc0 = 0
    while oc0 < pl.nob:
        oc1 = min(pl.nob, oc0 + pl.ocb)
        Uc = U + (g * pl.npos * pl.nob + oc0) * cig * CRW_MR
        if floating is float:
            call_crw_gemm_f(8, cig, Uc + p0 * ups, ups, oc1 - oc0, V + p0 * pl.vps, pl.vps,
                            Tp, M + p0 * pl.mps, pl.mps, Tp, nt)
        else:
            call_crw_gemm_d(8, cig, Uc + p0 * ups, ups, oc1 - oc0, V + p0 * pl.vps, pl.vps,
                            Tp, M + p0 * pl.mps, pl.mps, Tp, nt)
        cr_omp_barrier()
        _output_chunk(pl, g, t0, t1, oc0, oc0 + (oc1 - oc0) * tid // team,
                      oc0 + (oc1 - oc0) * (tid + 1) // team, bias, out, M, Q, segs, nseg,
                      trow, ccol, cend, groups, cog, oh, ow, dh, dw)
        cr_omp_barrier()
        oc0 = oc1


cdef void _item(Py_ssize_t item, const Plan* pl, const floating* x, const floating* U,
                const floating* bias, floating* out, floating* buf, const Py_ssize_t* trow,
                const Py_ssize_t* ccol, const Py_ssize_t* cend, Py_ssize_t groups,
                Py_ssize_t cig, Py_ssize_t cog, Py_ssize_t h, Py_ssize_t w, Py_ssize_t oh,
                Py_ssize_t ow, Py_ssize_t pt, Py_ssize_t pleft, Py_ssize_t dh,
                Py_ssize_t dw) noexcept nogil:
    """One work item of a plan whose threads do not share blocks: every stage of tile
    block (item % nblocks) of group (item // nblocks), in the thread's own buffer."""
    cdef Py_ssize_t g = item // pl.nblocks, t0, t1
    _block_tiles(pl, item % pl.nblocks, &t0, &t1)
    _input_block(pl, g, t0, t1, 0, cig, x, buf, buf + pl.vn + pl.mn, trow, ccol, cend,
                 groups, cig, h, w, pt, pleft, dh, dw)
    _gemm_block(pl, g, t0, t1, 0, pl.nob, U, bias, out, buf, buf + pl.vn,
                buf + pl.vn + pl.mn + pl.pn, buf + pl.vn + pl.mn + pl.pn + pl.qn, trow, ccol,
                cend, groups, cig, cog, oh, ow, dh, dw)


def same_bytes(const unsigned char[::1] a, const unsigned char[::1] b, int threads=1):
    """True when ``a`` and ``b`` hold the same bytes. A layer checks its weights against the
    copy its cached transform was made from on every call: in a network both come from
    the last-level cache, and numpy's elementwise compare (a bool array, then ``all``) took
    ~10 % of a 128-channel Winograd layer's time. Chunks of 64 KiB are compared by memcmp
    on up to ``threads`` OpenMP threads (one below 256 KiB)."""
    cdef Py_ssize_t n = a.shape[0], nchunk, i, lo, hi
    cdef Py_ssize_t chunk = 64 * 1024
    cdef int differ = 0
    if b.shape[0] != n:
        return False
    if n == 0:
        return True
    nchunk = (n + chunk - 1) // chunk
    if threads < 1 or n < 4 * chunk:
        threads = 1
    with nogil:
        for i in prange(nchunk, num_threads=threads, schedule='static'):
            lo = i * chunk
            hi = min(n, lo + chunk)
            differ += memcmp(&a[lo], &b[lo], <size_t>(hi - lo)) != 0
    return differ == 0


_TABLES = {}
_TABLES_MAX = 256


def _tile_tables(Py_ssize_t size, Py_ssize_t dil, int m):
    """(start, run_end) per tile along one axis: the output index of the tile's first
    element, and the index one past the last tile of the same residue. Remembered per
    (size, dil, m) (read-only arrays): made per call, the lists and arrays cost more
    than the rest of a call's Python side."""
    key = (size, dil, m)
    got = _TABLES.get(key)
    if got is None:
        if len(_TABLES) >= _TABLES_MAX:
            _TABLES.clear()
        got = _TABLES[key] = _make_tile_tables(size, dil, m)
    return got


def _make_tile_tables(Py_ssize_t size, Py_ssize_t dil, int m):
    starts, ends = [], []
    for a in range(min(dil, size)):
        na = (size - a + dil - 1) // dil
        k = (na + m - 1) // m
        first = len(starts)
        for t in range(k):
            starts.append(a + dil * m * t)
        ends.extend([first + k] * k)
    tables = (np.array(starts, dtype=np.intp), np.array(ends, dtype=np.intp))
    for a in tables:
        a.flags.writeable = False
    return tables


def workspace_elems(Py_ssize_t n, Py_ssize_t groups, Py_ssize_t cig, Py_ssize_t cog,
                    Py_ssize_t oh, Py_ssize_t ow, Py_ssize_t dh, Py_ssize_t dw, int tile,
                    Py_ssize_t itemsize, int threads, bint raw=False):
    """Elements (of the dtype) of the workspace a call with these sizes needs: one
    bounded buffer per thread that has work (independent of the input size and padding).
    ``raw``: the call passes untransformed weights (``raw_plan``)."""
    cdef Plan pl = _plan(n, groups, cig, cog, oh, ow, dh, dw, tile, itemsize, max(threads, 1),
                         raw)
    return pl.per_thread * min(<Py_ssize_t>max(threads, 1), pl.items)


def plan_info(Py_ssize_t n, Py_ssize_t groups, Py_ssize_t cig, Py_ssize_t cog,
              Py_ssize_t oh, Py_ssize_t ow, Py_ssize_t dh, Py_ssize_t dw, int tile,
              Py_ssize_t itemsize, int threads, bint raw=False):
    """The blocking a call with these sizes would use (for tests and tuning)."""
    return _plan(n, groups, cig, cog, oh, ow, dh, dw, tile, itemsize, max(threads, 1), raw)


def raw_plan(Py_ssize_t n, Py_ssize_t groups, Py_ssize_t cig, Py_ssize_t cog,
             Py_ssize_t oh, Py_ssize_t ow, Py_ssize_t dh, Py_ssize_t dw, int tile,
             Py_ssize_t itemsize, int threads):
    """(fuses, elements) of a call with untransformed weights, from one plan: ``fuses``
    when ``winograd_conv2d`` transforms them inside the convolution, each chunk of panels
    just before its GEMM (one tile block: every panel is read once), else they are
    transformed whole first; ``elements`` the workspace that call needs either way (as
    ``workspace_elems(..., raw=True)``)."""
    cdef Plan pl = _plan(n, groups, cig, cog, oh, ow, dh, dw, tile, itemsize, max(threads, 1),
                         True)
    return bool(pl.fused), pl.per_thread * min(<Py_ssize_t>max(threads, 1), pl.items)


def _run(const floating[:, :, :, ::1] x, const floating[::1] U,
         const floating[::1] bias, floating[:, :, :, ::1] out, Py_ssize_t pt,
         Py_ssize_t pleft, Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t groups, int tile,
         int threads, floating[::1] workspace, bint raw, floating[::1] Ut=None):
    """The convolution of ``winograd_conv2d`` once its arguments are arrays of the right
    kinds (the backend calls it directly with a validated spec's arrays). U: the
    transformed weights, flat; raw: the weights (c_out, cig, 3, 3) flat instead, for a
    plan that transforms them chunk by chunk (``raw_plan``), or, with ``Ut`` (room for
    the whole transform, flat), for any plan: the team transforms them into Ut first, in
    the same parallel region, then convolves (a functional call saves the transform's
    own region and Python call: 64ch 56^2 / 128ch 28^2 ~2 % of the call). The sizes the
    kernels rely on are checked here, whoever calls."""
    cdef Py_ssize_t n = x.shape[0], c_in = x.shape[1], h = x.shape[2], w = x.shape[3]
    cdef Py_ssize_t c_out = out.shape[1], oh = out.shape[2], ow = out.shape[3]
    if tile not in TILES or groups < 1 or dh < 1 or dw < 1 or threads < 1:
        raise ValueError(f"tile {tile}, groups {groups}, dilation ({dh}, {dw}) or threads "
                         f"{threads} out of range")
    if c_in % groups or c_out % groups or out.shape[0] != n or bias.shape[0] != c_out \
            or c_in == 0 or h == 0 or w == 0:
        raise ValueError("inconsistent or empty channels / groups / batch / image")
    cdef Py_ssize_t cig = c_in // groups, cog = c_out // groups
    cdef Plan plan = _plan(n, groups, cig, cog, oh, ow, dh, dw, tile, sizeof(floating),
                           threads, raw)
    if U.shape[0] != (c_out * cig * 9 if raw else groups * plan.npos * plan.nob * cig * CRW_MR):
        raise ValueError(f"weights of {U.shape[0]} elements do not fit these sizes "
                         f"(raw={bool(raw)})")
    cdef bint wfirst = raw and not plan.fused and Ut is not None
    cdef Py_ssize_t nu = groups * plan.npos * plan.nob * cig * CRW_MR
    if wfirst and Ut.shape[0] != nu:
        raise ValueError(f"Ut has {Ut.shape[0]} elements, the transform needs {nu}")
    if plan.fused != raw and not wfirst:
        raise ValueError(f"fuse={bool(raw)} does not match these sizes' plan "
                         f"(raw_plan gives {bool(plan.fused)})")
    if plan.ttot == 0 or c_out == 0:
        return
    trow_a, _ = _tile_tables(oh, dh, tile)
    ccol_a, cend_a = _tile_tables(ow, dw, tile)
    cdef const Py_ssize_t[::1] trow = trow_a
    cdef const Py_ssize_t[::1] ccol = ccol_a
    cdef const Py_ssize_t[::1] cend = cend_a
    assert trow.shape[0] == plan.TR and ccol.shape[0] == plan.TC
    cdef int nt = <int>min(<Py_ssize_t>threads, plan.items)
    if workspace.shape[0] < plan.per_thread * nt:
        raise ValueError(f"workspace has {workspace.shape[0]} elements, this call "
                         f"needs {plan.per_thread * nt}")
    cdef floating* ws = &workspace[0]
    cdef const floating* xp = &x[0, 0, 0, 0]
    cdef const floating* up = &U[0]
    cdef const floating* wp = &U[0]
    cdef floating* utp = NULL
    cdef Py_ssize_t wi, wg, wob
    if wfirst:
        utp = &Ut[0]
        up = utp
    cdef const floating* bp = &bias[0]
    cdef floating* op = &out[0, 0, 0, 0]
    cdef const Py_ssize_t* trp = &trow[0]
    cdef const Py_ssize_t* ccp = &ccol[0]
    cdef const Py_ssize_t* cep = &cend[0]
    cdef floating* buf
    cdef floating* sV = ws + ((16 - (<size_t>ws // sizeof(floating)) % 16) % 16)
    cdef Py_ssize_t item, off, g, t0, t1, r, rounds = groups * plan.nblocks
    cdef int tid, team
    with nogil, parallel(num_threads=nt):
        tid = omp_get_thread_num()
        buf = ws + tid * plan.per_thread
        off = (<size_t>buf // sizeof(floating)) % 16        # 64-byte alignment
        buf = buf + ((16 - off) % 16)
        if wfirst:
            # the whole transform, panels shared out as transform_weights does, then a
            # barrier: every work item reads all of it
            for wi in prange(groups * plan.nob, schedule='static'):
                wg = wi // plan.nob
                wob = wi % plan.nob
                if floating is float:
                    call_crw_wtrans_f(tile, wp + wg * cog * cig * 9, cog, cig, 0, wob,
                                      wob + 1, utp + (wg * plan.npos * plan.nob + wob) * cig
                                      * CRW_MR, plan.nob)
                else:
                    call_crw_wtrans_d(tile, wp + wg * cog * cig * 9, cog, cig, 0, wob,
                                      wob + 1, utp + (wg * plan.npos * plan.nob + wob) * cig
                                      * CRW_MR, plan.nob)
            cr_omp_barrier()
        if plan.shared:
            # Every thread runs every round (the barriers need the whole team): its input
            # channels of the block into thread 0's V, then its output-channel panels.
            team = omp_get_num_threads()
            for r in range(rounds):
                g = r // plan.nblocks
                _block_tiles(&plan, r % plan.nblocks, &t0, &t1)
                if plan.m == 2 and team == 2 and not raw:
                    # split by tile positions: each thread all input channels of its 8
                    # positions, then their GEMM (no barrier between: it reads only what
                    # it wrote) into the team's M (thread 0's). Not for raw weights: the
                    # team transforms them by panels (fused, or whole first), and by
                    # positions each thread would gather every weight, which cost more
                    # than the split saves (functional 256ch 14^2 1.04x, 512ch 14^2 1.06x)
                    _input_block(&plan, g, t0, t1, 0, cig, xp, sV, buf + plan.vn + plan.mn,
                                 trp, ccp, cep, groups, cig, h, w, pt, pleft, dh, dw, tid)
                    _gemm_split(&plan, g, t0, t1, tid, tid, team, up, bp, op, sV,
                                sV + plan.vn, buf + plan.vn + plan.mn + plan.pn, trp, ccp,
                                cep, groups, cig, cog, oh, ow, dh, dw)
                    continue
                _input_block(&plan, g, t0, t1, cig * tid // team, cig * (tid + 1) // team,
                             xp, sV, buf + plan.vn + plan.mn, trp, ccp, cep, groups, cig,
                             h, w, pt, pleft, dh, dw)
                cr_omp_barrier()
                _gemm_block(&plan, g, t0, t1, plan.nob * tid // team,
                            plan.nob * (tid + 1) // team, up, bp, op, sV, buf + plan.vn,
                            buf + plan.vn + plan.mn + plan.pn,
                            buf + plan.vn + plan.mn + plan.pn + plan.qn, trp, ccp, cep,
                            groups, cig, cog, oh, ow, dh, dw)
                cr_omp_barrier()
        else:
            for item in prange(plan.items, schedule='dynamic'):
                _item(item, &plan, xp, up, bp, op, buf, trp, ccp, cep, groups, cig, cog, h, w,
                      oh, ow, pt, pleft, dh, dw)


def winograd_conv2d(x, wt, b, out, Py_ssize_t pt, Py_ssize_t pl, Py_ssize_t dh,
                    Py_ssize_t dw, Py_ssize_t groups, int tile, int threads,
                    workspace=None, fuse=None):
    """out := b + x (*) w, 3x3 kernel, stride 1, dilation (dh, dw), zero padding pt / pl
    above / left (below / right implied by out's size), by Winograd F(tile x tile, 3x3).

    x (n, c_in, h, w); wt either the weights (c_out, c_in/groups, 3, 3) (transformed
    inside the convolution where ``raw_plan`` says so, else whole first) or their
    ``transform_weights(w, tile, groups)``; b (c_out,); out (n, c_out, oh, ow), written.
    All C-contiguous, one dtype (float32 / float64). ``workspace``: None (allocated per
    call) or a 1-D array of the dtype with at least ``workspace_elems(...)`` elements.
    ``threads``: OpenMP threads (at most one per work item is started).
    ``fuse``: for untransformed weights, ``raw_plan(...)[0]`` when the caller has it
    (None: worked out here).
    """
    if tile not in _G:
        raise ValueError(f"tile must be one of {TILES}, got {tile}")
    for name, a in (("x", x), ("weights", wt), ("bias", b), ("out", out)):
        if not isinstance(a, np.ndarray) or not a.flags.c_contiguous:
            raise TypeError(f"{name} must be a C-contiguous ndarray")
    if x.dtype not in (np.float32, np.float64) or any(
            a.dtype != x.dtype for a in (wt, b, out)):
        raise TypeError("x, weights, bias and out must share one float dtype")
    if x.ndim != 4 or out.ndim != 4 or b.ndim != 1:
        raise ValueError("x and out must be 4-D, bias 1-D")
    n, c_in = x.shape[0], x.shape[1]
    c_out = out.shape[1]
    if groups < 1 or c_in % groups or c_out % groups or out.shape[0] != n \
            or b.shape[0] != c_out:
        raise ValueError("inconsistent channels / groups / batch")
    if dh < 1 or dw < 1:
        raise ValueError("dilation must be >= 1")
    cig, cog = c_in // groups, c_out // groups
    al = tile + 2
    threads = max(int(threads), 1)
    raw = False
    if wt.ndim == 4:
        if wt.shape != (c_out, cig, 3, 3):
            raise ValueError(f"weights must be {(c_out, cig, 3, 3)}, got {wt.shape}")
        raw = (raw_plan(n, groups, cig, cog, out.shape[2], out.shape[3], dh, dw, tile,
                        x.itemsize, threads)[0] if fuse is None else bool(fuse))
        if not raw:
            wt = transform_weights(wt, tile, groups)
    expect = (groups, al * al, (cog + CRW_MR - 1) // CRW_MR, cig, CRW_MR)
    if not raw and wt.shape != expect:
        raise ValueError(f"transformed weights for tile {tile} must be {expect}, "
                         f"got {wt.shape}")
    if n == 0 or c_out == 0 or out.shape[2] == 0 or out.shape[3] == 0:
        return out
    if c_in == 0 or x.shape[2] == 0 or x.shape[3] == 0:
        out[...] = b[None, :, None, None]
        return out
    if workspace is None:
        workspace = np.empty(workspace_elems(n, groups, cig, cog, out.shape[2], out.shape[3],
                                             dh, dw, tile, x.itemsize, threads, raw), x.dtype)
    else:
        if not isinstance(workspace, np.ndarray) or workspace.dtype != x.dtype \
                or workspace.ndim != 1 or not workspace.flags.c_contiguous \
                or not workspace.flags.writeable:
            raise TypeError("workspace must be a writable 1-D C-contiguous array of the dtype")
    _run(x, wt.reshape(-1), b, out, pt, pl, dh, dw, groups, tile, threads, workspace, raw)
    return out

"""Direct 2-D convolution (no im2col buffer): the kernels of the ``cython-direct`` backend.

    out[n, o, i, j] = b[o] + sum_{c<cig} sum_{p<kh} sum_{q<kw}
                      w[o, c, p, q] * xpad[n, g*cig + c, i*sh + p*dh, j*sw + q*dw]

Legend: n batch, c_in/c_out channels, h, w input size, oh, ow output size, kh, kw kernel,
sh, sw stride, dh, dw dilation, pt, pl padding top/left (bottom/right follow from oh, ow),
g group, cig/cog channels per group, kk = kh*kw taps.

How the work is laid out
------------------------
The output is cut into work items (image, group, tile of ``th`` output rows, chunk of
output channels) that OpenMP threads take independently, so one image already uses every
thread. For its tile a thread copies the input rows the tile reads into a small
thread-local *band*, zero-padded and split into stride phases:

    band[c, fr, fc, r, k] = xpad[g*cig + c, (i0 + r)*sh + fr, k*sw + fc]
                            (c < cig, fr < sh, fc < sw, r < rr = th + (kh-1)*dh // sh,
                             k < wk = ow + (kw-1)*dw // sw)

Each input element is copied once (no padded copy of the whole input, no kh*kw-fold
im2col). Output (i, j) of the tile sits at the flat position t = i*wk + j, and tap (p, q)
reads the band at t + toff[p, q] with

    toff[p, q] = ((p*dh % sh)*sw + q*dw % sw)*rr*wk + (p*dh // sh)*wk + q*dw // sw,

a constant: so every tap is a contiguous run of t for any stride and dilation, with no
strided gathers and no boundary tests in the hot loop. The C microkernel
(``direct_kernels.h``, declared in ``direct.pxd``) computes blocks of ``ob`` output channels x ``CR_NV`` vectors of t
in registers; positions j >= ow of the flat run are computed and thrown away when the
tile is copied out.

Paths
-----
* general (every call): the flat band above, blocks of up to ``CR_OBMAX`` output
  channels x ``CR_NV`` vectors; ob = 1 blocks split their taps over two accumulator sets.
  Dense layers and the 7x7/2 stem (c_in = 3: the band holds 3 channels x 4 stride
  phases) run here.
* depthwise 3x3 / 5x5 with one or two outputs per input channel, any stride: block
  microkernels with the tap loop unrolled at compile time (narrow rows, multiplier 2).
* depthwise rows (one output per input channel, 3x3 / 5x5, stride 1 or 2, no row
  dilation, rows of >= ~4/5 of a vector block): whole output rows in pairs that share
  their input loads, stored straight into the output (masked tails), no tile copy.
* depthwise stride 2, float32 with AVX-512 (3x3 / 5x5, one output per input channel,
  no dilation, rows of >= ~4/5 of a 16-lane vector): no band at all. Each input row
  is read straight from x with masked loads (zero padding = masked-off lanes, still
  multiplied), split into even / odd columns by in-lane shuffles, and feeds every
  output row of a step of 8 (3x3) or 14 / 7 (5x5) rows; see cr_dwdirect_f32. Packing the
  stride-2 band was about half the time of these layers.

Zero padding lives in the band: columns outside the input are zeroed once per call
(they are the same for every tile) and rows outside it per tile. Other padding modes
are written out by the front end before the call.
"""

from cython cimport floating
from cython.parallel cimport parallel, prange
from libc.stdlib cimport calloc, free, malloc

from openmp_helpers cimport CONVREG_HAVE_OPENMP

from direct cimport (CR_DWC_RSLACK, CR_DWC_SLACK, CR_HAVE_DSTORE, CR_HAVE_DWCHAN, CR_HAVE_DWD, CR_NV, CR_OBMAX, CR_VBYTES, cr_block_f32, cr_block_f64,
                    cr_copy_rows_f32, cr_dwchan_f32, cr_dwchan_f64, cr_copy_rows_f64, cr_deint2_rows_f32,
                    cr_deint2_rows_f64, cr_dwdirect_f32, cr_dwrows_f32, cr_dwrows_f64,
                    cr_isa, cr_zero_rows_f32, cr_zero_rows_f64)

HAVE_OPENMP = bool(CONVREG_HAVE_OPENMP)
ISA = cr_isa().decode()
OBMAX = CR_OBMAX
VECTOR_BYTES = CR_VBYTES
NV = CR_NV

# Bounds on the thread-local buffers (bytes): the band should stay in L2. An item's
# output channels share one packed band, so a larger output tile packs less often: at
# 512 KiB (was 256) the 7x7/2 stem packs each band twice instead of four times, 0.96-0.97x
# the time at batch 1 and 8 (2-core AVX-512 Xeon, 2 MiB L2, in-process A/B); 1 MiB
# measured the same.
cdef enum:
    BAND_CAP = 384 * 1024
    OTILE_CAP = 512 * 1024
    DWCHAN_CAP = 512 * 1024


cdef struct Plan:
    Py_ssize_t th        # output rows per tile
    Py_ssize_t tiles     # tiles per image
    Py_ssize_t rr        # band rows per phase plane
    Py_ssize_t wk        # band row length (per column phase)
    Py_ssize_t ps        # phase plane size rr*wk
    Py_ssize_t cs        # band channel stride (sh*sw*ps, padded)
    Py_ssize_t bl        # flat positions per microkernel call
    Py_ssize_t otl       # otile row stride (blocks*bl)
    Py_ssize_t chunk     # output channels per work item
    Py_ssize_t occ       # chunks per group
    Py_ssize_t items     # work items
    Py_ssize_t bufn      # band elements (with slack)
    int rowmode          # single-channel 3x3/5x5 fast path: rows straight into out
    int dwdirect         # float32 AVX-512 depthwise 3x3/5x5 stride 2: no band at all
    int dstore           # blocks store straight into the output rows (no otile copy)
    int dwchan           # depthwise on small planes: vectors over channels (dwchan.h)
    Py_ssize_t dwc_pn    # its window elements per thread (hp * wp * lanes)


cdef Py_ssize_t _cdiv(Py_ssize_t a, Py_ssize_t b) noexcept nogil:
    return (a + b - 1) // b


cdef Plan _plan(Py_ssize_t n, Py_ssize_t groups, Py_ssize_t cig, Py_ssize_t cog,
                Py_ssize_t oh, Py_ssize_t ow, Py_ssize_t kh, Py_ssize_t kw,
                Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t dh, Py_ssize_t dw,
                Py_ssize_t itemsize, int threads) noexcept:
    """Tile sizes: little wasted vector work, band within BAND_CAP, enough items."""
    cdef Plan pl
    cdef Py_ssize_t er = ((kh - 1) * dh) // sh, kk = kh * kw
    cdef Py_ssize_t th, best_th = 1, nblk, par, th_max, want, tiles
    cdef double cost, best = 1e300, pack, waste
    cdef Py_ssize_t vl
    pl.wk = ow + ((kw - 1) * dw) // sw
    pl.bl = (CR_VBYTES // itemsize) * CR_NV
    # Enough independent items for the threads: cap the tile height when the
    # (image, group, channel block) pairs alone are too few.
    want = 4 * threads if threads > 1 else 1
    par = n * groups * _cdiv(cog, CR_OBMAX)
    th_max = oh
    if par < want:
        th_max = max(1, _cdiv(oh, _cdiv(want, par)))
    for th in range(1, th_max + 1):
        if th > 1 and cig * sh * sw * (th + er) * pl.wk * itemsize > BAND_CAP:
            break
        # vector work over all tiles (the last one may be short) and packing work
        tiles = oh // th
        nblk = tiles * _cdiv(th * pl.wk, pl.bl)
        if oh % th:
            tiles += 1
            nblk += _cdiv((oh % th) * pl.wk, pl.bl)
        waste = <double>(nblk * pl.bl) / <double>(oh * ow)
        pack = <double>(tiles * sh * sw * (th + er) * pl.wk) / \
            <double>(oh * ow * min(cog, 16) * kk)
        cost = waste * (1.0 + pack)
        if cost < best * 0.999:
            best, best_th = cost, th
    # Equal tiles (the same rows per item) balance the threads better.
    pl.tiles = _cdiv(oh, best_th)
    pl.th = _cdiv(oh, pl.tiles)
    pl.rr = pl.th + er
    pl.ps = pl.rr * pl.wk
    pl.cs = sh * sw * pl.ps + 16
    nblk = _cdiv(pl.th * pl.wk, pl.bl)
    pl.otl = nblk * pl.bl
    # Output-channel chunks: all of the group unless more items are needed.
    pl.chunk = cog
    if n * groups * pl.tiles < want:
        pl.chunk = _cdiv(cog, _cdiv(want, n * groups * pl.tiles))
    pl.chunk = min(pl.chunk, max(1, OTILE_CAP // (pl.otl * itemsize)))
    pl.chunk = max(1, min(pl.chunk, cog))
    # Chunks of (nearly) equal size, so items cost the same.
    pl.occ = _cdiv(cog, pl.chunk)
    pl.chunk = _cdiv(cog, pl.occ)
    pl.occ = _cdiv(cog, pl.chunk)
    pl.items = n * groups * pl.tiles * pl.occ
    # Slack past the last channel: the last (partly junk) block of a tile reads up to
    # one block plus one band row beyond the phase planes.
    pl.bufn = cig * pl.cs + 2 * pl.bl + 2 * pl.wk + 64
    # Depthwise 3x3 / 5x5 (stride 1 or 2, no row dilation), one output channel per
    # input channel: whole output rows, in pairs sharing their input loads, written
    # straight into the output when rows are not much narrower than a block.
    pl.rowmode = (cig == 1 and cog == 1 and kh == kw and (kh == 3 or kh == 5)
                  and dh == 1 and (sh == 1 or sh == 2)
                  and _cdiv(ow, pl.bl) * pl.bl * 4 <= ow * 5)
    # float32 with AVX-512, stride 2, no dilation: straight from the input, no band.
    pl.dwdirect = (CR_HAVE_DWD and itemsize == 4 and cig == 1 and cog == 1 and kh == kw
                   and (kh == 3 or kh == 5) and dh == 1 and dw == 1 and sh == 2 and sw == 2
                   and _cdiv(ow, 16) * 16 * 4 <= ow * 5)
    # AVX-512: blocks write their vectors into the output rows by masked stores, each
    # vector spanning at most two band rows (wk >= lanes), instead of into the output
    # tile that a second pass copied out (44 % of an MNIST 5x5 1->32 layer's time, 15 %
    # of the 7x7/2 stem's, most of it the extra pass over the output).
    pl.dstore = CR_HAVE_DSTORE and pl.wk >= CR_VBYTES // itemsize
    # Depthwise (one output per input channel), at least a vector of channels, on planes
    # whose padded window, a vector of channels deep, stays within DWCHAN_CAP: a vector of
    # channels per call (dwchan.h; AVX2 builds). Against the paths above, float32 batch 8
    # (2 threads, Zen 3, alternating processes): 3x3 7^2 960ch 0.3-0.45x the time, 14^2
    # 576ch 0.55-0.6x, 14^2/2 0.5x, 28^2 192ch 0.6-0.65x; batch 1: 7^2 0.45x, 14^2 0.6x,
    # 28^2 0.55-0.75x, 56^2 128ch 0.4-0.65x, 56^2/2 0.7x, 5x5 28^2/2 0.7-1.0x, 112^2 32ch
    # 0.95-1.05x (a 416 KiB window).
    vl = CR_VBYTES // itemsize
    pl.dwc_pn = ((oh - 1) * sh + (kh - 1) * dh + 1) * ((ow - 1) * sw + (kw - 1) * dw + 1) * vl
    pl.dwchan = (CR_HAVE_DWCHAN and cig == 1 and cog == 1 and groups >= vl
                 and pl.dwc_pn * itemsize <= DWCHAN_CAP)
    if pl.dwchan:
        pl.rowmode = pl.dwdirect = pl.dstore = 0
        pl.items = n * _cdiv(groups, vl)
    return pl


cdef inline void _copy_rows(floating* dst, Py_ssize_t ds, const floating* src, Py_ssize_t ss,
                           Py_ssize_t nrows, Py_ssize_t n) noexcept nogil:
    """dst[r*ds + 0:n] := src[r*ss + 0:n] for r < nrows (short rows: no libc memcpy)."""
    if floating is float:
        cr_copy_rows_f32(dst, ds, src, ss, nrows, n)
    else:
        cr_copy_rows_f64(dst, ds, src, ss, nrows, n)


cdef inline void _zero_rows(floating* dst, Py_ssize_t ds, Py_ssize_t nrows,
                            Py_ssize_t n) noexcept nogil:
    """dst[r*ds + 0:n] := 0 for r < nrows (short rows: no libc memset)."""
    if nrows <= 0 or n <= 0:
        return
    if floating is float:
        cr_zero_rows_f32(dst, ds, nrows, n)
    else:
        cr_zero_rows_f64(dst, ds, nrows, n)


cdef void _pack_band(const floating* xg,       # IN  (cig, h, w) input planes of one group
                     floating* band,           # OUT (cig, sh, sw, rr, wk), channel stride cs
                     Py_ssize_t cig, Py_ssize_t h, Py_ssize_t w, Py_ssize_t r0,
                     Py_ssize_t pl, Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t rr,
                     Py_ssize_t wk, Py_ssize_t ps, Py_ssize_t cs) noexcept nogil:
    """band[c, fr, fc, r, k] := x[c, r0 + r*sh + fr, k*sw + fc - pl], zero outside x.

    Only columns [klo, khi) of each band row can hold input; the columns outside are
    zero in every tile, so they are left as the zero-initialised buffer has them.
    """
    cdef Py_ssize_t c, fr, fc, r, row, k, klo, khi, num, a, base, ne, no, rlo, rhi
    cdef floating* dst
    cdef floating* de
    cdef floating* dod
    cdef const floating* src
    if sw == 2:
        # Each input row once, split into its even and odd columns. Input column s goes
        # to phase (s + pl) % 2, index (s + pl) // 2.
        a = pl % 2
        base = pl // 2
        ne = min((w + 1) // 2, max(0, wk - base))           # even columns s = 2m
        no = min(w // 2, max(0, wk - base - a))             # odd columns s = 2m + 1
        for c in range(cig):
            for fr in range(sh):
                # band rows r < rr of row phase fr hold input rows r0 + r*sh + fr;
                # those inside [0, h) are r in [rlo, rhi)
                num = -r0 - fr
                rlo = min(rr, _cdiv(num, sh) if num > 0 else 0)
                num = h - 1 - r0 - fr
                rhi = max(rlo, min(rr, num // sh + 1 if num >= 0 else 0))
                dst = band + c * cs + fr * sw * ps
                de = dst + a * ps + base
                dod = dst + (1 - a) * ps + base + a
                # rows outside the input are zero; rows [rlo, rhi) are copied
                _zero_rows(de, wk, rlo, ne)
                _zero_rows(de + rhi * wk, wk, rr - rhi, ne)
                _zero_rows(dod, wk, rlo, no)
                _zero_rows(dod + rhi * wk, wk, rr - rhi, no)
                if rhi > rlo:
                    src = xg + (c * h + r0 + rlo * sh + fr) * w
                    if floating is float:
                        cr_deint2_rows_f32(src, sh * w, de + rlo * wk, dod + rlo * wk, wk,
                                           rhi - rlo, ne, no)
                    else:
                        cr_deint2_rows_f64(src, sh * w, de + rlo * wk, dod + rlo * wk, wk,
                                           rhi - rlo, ne, no)
        return
    for fc in range(sw):
        # valid k: 0 <= k*sw + fc - pl < w
        num = pl - fc
        klo = _cdiv(num, sw) if num > 0 else 0
        num = w - 1 + pl - fc
        khi = num // sw + 1 if num >= 0 else 0
        khi = min(khi, wk)
        if klo >= khi:
            continue
        for c in range(cig):
            for fr in range(sh):
                # band rows r < rr of row phase fr hold input rows r0 + r*sh + fr;
                # those inside [0, h) are r in [rlo, rhi)
                num = -r0 - fr
                rlo = min(rr, _cdiv(num, sh) if num > 0 else 0)
                num = h - 1 - r0 - fr
                rhi = max(rlo, min(rr, num // sh + 1 if num >= 0 else 0))
                dst = band + c * cs + (fr * sw + fc) * ps
                _zero_rows(dst + klo, wk, rlo, khi - klo)
                _zero_rows(dst + rhi * wk + klo, wk, rr - rhi, khi - klo)
                if rhi == rlo:
                    continue
                src = xg + (c * h + r0 + rlo * sh + fr) * w + fc - pl
                if sw == 1:
                    _copy_rows(dst + rlo * wk + klo, wk, src + klo, sh * w, rhi - rlo,
                               khi - klo)
                else:
                    for r in range(rhi - rlo):
                        for k in range(klo, khi):
                            dst[(rlo + r) * wk + k] = src[r * sh * w + k * sw]


cdef inline void _block(int ob, const floating* x, Py_ssize_t cs, Py_ssize_t cig,
                        const Py_ssize_t* toff, int kk, const floating* w, Py_ssize_t wos,
                        const floating* bias, floating* out, Py_ssize_t os,
                        const Py_ssize_t* doff, const unsigned* dm) noexcept nogil:
    if floating is float:
        cr_block_f32(ob, x, cs, cig, toff, kk, w, wos, bias, out, os, doff, dm)
    else:
        cr_block_f64(ob, x, cs, cig, toff, kk, w, wos, bias, out, os, doff, dm)


cdef inline unsigned _lanes(Py_ssize_t lo, Py_ssize_t hi, Py_ssize_t vl) noexcept nogil:
    """Bits [lo, hi) of a vl-lane mask (clipped to [0, vl))."""
    if lo < 0:
        lo = 0
    if hi > vl:
        hi = vl
    if lo >= hi:
        return 0
    return ((1u << hi) - 1u) & ~((1u << lo) - 1u)


cdef inline void _dstore_masks(const Plan* pl, Py_ssize_t tb, Py_ssize_t i0, Py_ssize_t tht,
                               Py_ssize_t ow, Py_ssize_t vl, Py_ssize_t* doff,
                               unsigned* dm) noexcept nogil:
    """Where block tb's vectors go in a channel's output plane (plan.dstore): lane l of
    vector v sits at band row ra, column ja + l (ja + l < wk), else at row ra + 1, column
    ja + l - wk; only columns < ow of rows < tht are stored."""
    cdef Py_ssize_t v, t0v, ra, ja
    for v in range(CR_NV):
        t0v = tb * pl.bl + v * vl
        ra = t0v // pl.wk
        ja = t0v - ra * pl.wk
        doff[2 * v] = (i0 + ra) * ow + ja
        doff[2 * v + 1] = (i0 + ra + 1) * ow + ja - pl.wk
        dm[2 * v] = _lanes(0, ow - ja, vl) if ra < tht else 0
        dm[2 * v + 1] = _lanes(pl.wk - ja, pl.wk - ja + ow, vl) if ra + 1 < tht else 0


cdef void _item(Py_ssize_t item, const Plan* pl,
                const floating* x,            # IN  (n, c_in, h, w)
                const floating* wt,           # IN  (c_out, cig, kh, kw)
                const floating* bias,         # IN  (c_out,)
                floating* out,                # OUT (n, c_out, oh, ow)
                floating* band, floating* otile, const Py_ssize_t* toff,
                const Py_ssize_t* vtoff, int kh, Py_ssize_t groups, Py_ssize_t cig,
                Py_ssize_t cog, Py_ssize_t h, Py_ssize_t w, Py_ssize_t oh,
                Py_ssize_t ow, int kk, Py_ssize_t sh,
                Py_ssize_t sw, Py_ssize_t pt, Py_ssize_t pleft) noexcept nogil:
    """One work item: rows [i0, i0+th) of output channels [o_lo, o_hi) of one image."""
    cdef Py_ssize_t chunk = item % pl.occ
    cdef Py_ssize_t rest = item // pl.occ
    cdef Py_ssize_t tile = rest % pl.tiles
    rest = rest // pl.tiles
    cdef Py_ssize_t gg = rest % groups
    cdef Py_ssize_t nn = rest // groups
    cdef Py_ssize_t c_in = groups * cig, c_out = groups * cog
    cdef Py_ssize_t i0 = tile * pl.th
    cdef Py_ssize_t tht = min(pl.th, oh - i0)
    cdef Py_ssize_t nblk = _cdiv(tht * pl.wk, pl.bl)
    cdef Py_ssize_t o_lo = gg * cog + chunk * pl.chunk
    cdef Py_ssize_t o_hi = min(gg * cog + cog, o_lo + pl.chunk)
    cdef Py_ssize_t o0, o, tb
    cdef int ob
    cdef Py_ssize_t wos = cig * kk
    if floating is float:
        if pl.dwdirect:
            cr_dwdirect_f32(kh, <int>sh, x + (nn * c_in + gg * cig) * h * w, h, w, pt, pleft,
                            wt + o_lo * kk, bias[o_lo], out + (nn * c_out + o_lo) * oh * ow,
                            ow, i0, tht)
            return
    _pack_band(x + (nn * c_in + gg * cig) * h * w, band, cig, h, w, i0 * sh - pt, pleft,
               sh, sw, pl.rr, pl.wk, pl.ps, pl.cs)
    # Block of flat positions outer, channel blocks inner: the band block stays in L1.
    if pl.rowmode:
        if floating is float:
            cr_dwrows_f32(kh, <int>sh, band, vtoff, pl.wk, wt + o_lo * kk, bias[o_lo],
                          out + ((nn * c_out + o_lo) * oh + i0) * ow, ow, tht)
        else:
            cr_dwrows_f64(kh, <int>sh, band, vtoff, pl.wk, wt + o_lo * kk, bias[o_lo],
                          out + ((nn * c_out + o_lo) * oh + i0) * ow, ow, tht)
        return
    # Channel blocks of (nearly) equal size: nb blocks of ob or ob + 1 channels.
    cdef Py_ssize_t nb = _cdiv(o_hi - o_lo, CR_OBMAX), ib, obase = (o_hi - o_lo) // nb
    cdef Py_ssize_t big = (o_hi - o_lo) % nb
    # Blocks write into channel o0's output plane (dstore: offsets and masks per block of
    # positions) or into the output tile at the block's positions, copied out below.
    cdef Py_ssize_t doff[8]                # 2 * CR_NV <= 8
    cdef unsigned dm[8]
    cdef Py_ssize_t vl = CR_VBYTES // sizeof(floating)
    cdef floating* dst = out + (nn * c_out + o_lo) * oh * ow if pl.dstore else otile
    cdef Py_ssize_t ds = oh * ow if pl.dstore else pl.otl
    for tb in range(nblk):
        o0 = o_lo
        if pl.dstore:
            _dstore_masks(pl, tb, i0, tht, ow, vl, doff, dm)
        for ib in range(nb):
            ob = <int>(obase + (1 if ib < big else 0))
            _block(ob, band + tb * pl.bl, pl.cs, cig, toff, kk, wt + o0 * wos, wos,
                   bias + o0, dst + (o0 - o_lo) * ds + (0 if pl.dstore else tb * pl.bl), ds,
                   doff if pl.dstore else NULL, dm if pl.dstore else NULL)
            o0 += ob
    if pl.dstore:
        return
    for o in range(o_lo, o_hi):
        _copy_rows(out + ((nn * c_out + o) * oh + i0) * ow, ow, otile + (o - o_lo) * pl.otl,
                   pl.wk, tht, ow)


cdef void _dwchan_item(Py_ssize_t item, const Plan* pl, const floating* x,
                       const floating* wt, const floating* bias, floating* out,
                       floating* buf, Py_ssize_t groups, Py_ssize_t h, Py_ssize_t w,
                       Py_ssize_t oh, Py_ssize_t ow, Py_ssize_t kh, Py_ssize_t kw,
                       Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t dh, Py_ssize_t dw,
                       Py_ssize_t pt, Py_ssize_t pleft) noexcept nogil:
    """Item (image, vector of channels) of the dwchan path; buf: the thread's window, row
    and weights (pl.dwc_pn + (ow + kh*kw) * lanes elements)."""
    cdef Py_ssize_t vl = CR_VBYTES // sizeof(floating), ncb = _cdiv(groups, vl)
    cdef Py_ssize_t nn = item // ncb, c0 = (item % ncb) * vl
    cdef Py_ssize_t nc = min(vl, groups - c0)
    cdef floating* R = buf + pl.dwc_pn + CR_DWC_SLACK(sw) * vl
    cdef floating* Wt = R + (ow + CR_DWC_RSLACK) * vl
    if floating is float:
        cr_dwchan_f32(x + (nn * groups + c0) * h * w, h, w, nc, wt + c0 * kh * kw, bias + c0,
                      out + (nn * groups + c0) * oh * ow, oh, ow, kh, kw, sh, sw, dh, dw,
                      pt, pleft, buf, R, Wt)
    else:
        cr_dwchan_f64(x + (nn * groups + c0) * h * w, h, w, nc, wt + c0 * kh * kw, bias + c0,
                      out + (nn * groups + c0) * oh * ow, oh, ow, kh, kw, sh, sw, dh, dw,
                      pt, pleft, buf, R, Wt)


cdef int _run_dwchan(const Plan* pl, const floating* x, const floating* wt,
                     const floating* bias, floating* out, Py_ssize_t groups, Py_ssize_t h,
                     Py_ssize_t w, Py_ssize_t oh, Py_ssize_t ow, Py_ssize_t kh, Py_ssize_t kw,
                     Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t dh, Py_ssize_t dw,
                     Py_ssize_t pt, Py_ssize_t pleft, int nt) noexcept nogil:
    """The items of a dwchan plan on nt threads, each with its own buffer (vector-aligned);
    1 if a buffer could not be allocated."""
    cdef Py_ssize_t vl = CR_VBYTES // sizeof(floating)
    # window and row with their slack (dwchan.h), weights, a vector to align
    cdef Py_ssize_t nbuf = pl.dwc_pn + (CR_DWC_SLACK(sw) + ow + CR_DWC_RSLACK + kh * kw + 1) * vl
    cdef Py_ssize_t item
    cdef floating* raw
    cdef floating* buf
    cdef int failed = 0
    cdef int* failp = &failed
    raw = buf = NULL        # (the parallel block copies them in: initialised)
    with parallel(num_threads=nt):
        raw = <floating*> malloc(nbuf * sizeof(floating))
        if raw == NULL:
            failp[0] = 1
            buf = NULL
        else:
            buf = raw + (vl - (<size_t>raw // sizeof(floating)) % vl) % vl
        for item in prange(pl.items, schedule='static'):
            if buf != NULL:
                _dwchan_item(item, pl, x, wt, bias, out, buf, groups, h, w, oh, ow, kh, kw,
                             sh, sw, dh, dw, pt, pleft)
        free(raw)
    return failed


def conv2d_direct(const floating[:, :, :, ::1] x,      # IN  (n, c_in, h, w)
                  const floating[:, :, :, ::1] wt,     # IN  (c_out, c_in/groups, kh, kw)
                  const floating[::1] bias,            # IN  (c_out,)
                  floating[:, :, :, ::1] out,          # OUT (n, c_out, oh, ow)
                  Py_ssize_t pt, Py_ssize_t pl, Py_ssize_t sh, Py_ssize_t sw,
                  Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t groups, int threads):
    """out := bias + x (*) wt, zero padding pt/pl above/left (below/right implied by out)."""
    cdef Py_ssize_t n = x.shape[0], c_in = x.shape[1], h = x.shape[2], w = x.shape[3]
    cdef Py_ssize_t c_out = wt.shape[0], cig = wt.shape[1], kh = wt.shape[2], kw = wt.shape[3]
    cdef Py_ssize_t oh = out.shape[2], ow = out.shape[3]
    cdef Py_ssize_t cog = c_out // groups
    cdef int kk = <int>(kh * kw)
    cdef Py_ssize_t p, q, item
    if n == 0 or c_out == 0:
        return
    if threads < 1:
        threads = 1
    cdef Plan plan = _plan(n, groups, cig, cog, oh, ow, kh, kw, sh, sw, dh, dw,
                           sizeof(floating), threads)
    cdef int bad
    if plan.dwchan:
        with nogil:
            bad = _run_dwchan(&plan, &x[0, 0, 0, 0], &wt[0, 0, 0, 0], &bias[0],
                              &out[0, 0, 0, 0], groups, h, w, oh, ow, kh, kw, sh, sw, dh, dw,
                              pt, pl, <int>min(<Py_ssize_t>threads, plan.items))
        if bad:
            raise MemoryError("cython-direct: could not allocate its thread-local buffers")
        return
    cdef Py_ssize_t* toff = <Py_ssize_t*> malloc(kk * sizeof(Py_ssize_t))
    if toff == NULL:
        raise MemoryError()
    for p in range(kh):
        for q in range(kw):
            toff[p * kw + q] = (((p * dh) % sh) * sw + (q * dw) % sw) * plan.ps \
                + ((p * dh) // sh) * plan.wk + (q * dw) // sw
    # Virtual taps of the paired-row fast path: rows p >= kh read row p - sh one band
    # row further down (= what the second row of a pair reads at tap p - sh).
    cdef Py_ssize_t* vtoff = <Py_ssize_t*> malloc((kh + sh) * kw * sizeof(Py_ssize_t))
    if vtoff == NULL:
        free(toff)
        raise MemoryError()
    for p in range(kh + sh):
        for q in range(kw):
            vtoff[p * kw + q] = 0
            if p < kh:
                vtoff[p * kw + q] = toff[p * kw + q]
            elif plan.rowmode:      # there kh >= sh, so 0 <= p - sh < kh
                vtoff[p * kw + q] = toff[(p - sh) * kw + q] + plan.wk
    cdef const floating* xp = &x[0, 0, 0, 0]
    cdef const floating* wp = &wt[0, 0, 0, 0]
    cdef const floating* bp = &bias[0]
    cdef floating* op = &out[0, 0, 0, 0]
    cdef floating* band
    cdef floating* otile
    cdef int failed = 0
    cdef int* failp = &failed
    cdef int nt = <int>min(<Py_ssize_t>threads, plan.items)
    # The output tile only for blocks that do not write the output rows themselves.
    cdef Py_ssize_t otn = 0 if plan.dstore or plan.rowmode or plan.dwdirect \
        else plan.chunk * plan.otl
    cdef bint ready
    if nt == 1:
        # On the calling thread: no OpenMP region to enter (its set-up costs about as
        # much as a tiny layer's arithmetic).
        with nogil:
            band = <floating*> calloc(plan.bufn, sizeof(floating))
            otile = <floating*> malloc(otn * sizeof(floating)) if otn else NULL
            if band == NULL or (otn and otile == NULL):
                failed = 1
            else:
                for item in range(plan.items):
                    _item(item, &plan, xp, wp, bp, op, band, otile, toff, vtoff, <int>kh,
                          groups, cig, cog, h, w, oh, ow, kk, sh, sw, pt, pl)
            free(band)
            free(otile)
        free(toff)
        free(vtoff)
        if failed:
            raise MemoryError("cython-direct: could not allocate its buffers")
        return
    with nogil, parallel(num_threads=nt):
        band = <floating*> calloc(plan.bufn, sizeof(floating))
        otile = <floating*> malloc(otn * sizeof(floating)) if otn else NULL
        ready = band != NULL and (otile != NULL or otn == 0)
        if not ready:
            failp[0] = 1
        if plan.items >= 16 * nt:
            # many small items (depthwise): static, no scheduling traffic
            for item in prange(plan.items, schedule='static'):
                if ready:
                    _item(item, &plan, xp, wp, bp, op, band, otile, toff, vtoff, <int>kh,
                          groups, cig, cog, h, w, oh, ow, kk, sh, sw, pt, pl)
        else:
            # few large items of possibly unequal cost: balance them dynamically
            for item in prange(plan.items, schedule='dynamic'):
                if ready:
                    _item(item, &plan, xp, wp, bp, op, band, otile, toff, vtoff, <int>kh,
                          groups, cig, cog, h, w, oh, ow, kk, sh, sw, pt, pl)
        free(band)
        free(otile)
    free(toff)
    free(vtoff)
    if failed:
        raise MemoryError("cython-direct: could not allocate its thread-local buffers")


def plan_info(Py_ssize_t n, Py_ssize_t groups, Py_ssize_t cig, Py_ssize_t cog,
              Py_ssize_t oh, Py_ssize_t ow, Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh,
              Py_ssize_t sw, Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t itemsize,
              int threads):
    """The tiling conv2d_direct would use (for tests and tuning)."""
    return _plan(n, groups, cig, cog, oh, ow, kh, kw, sh, sw, dh, dw, itemsize, threads)

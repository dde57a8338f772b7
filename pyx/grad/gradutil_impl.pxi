"""Helpers of the gradient operations (convreg.backends._gradops), built per SIMD variant
as convreg._gradutil_<variant>.

flip_swap: the weight of an input-gradient stride phase, in one pass:

    out[g*cig + c, o, i, j] = w[g*cog + o, c, p0 + (kh2-1-i)*ps, q0 + (kw2-1-j)*qs]

for out of shape (c_in, cog, kh2, kw2): the phase's taps (rows p0, p0+ps, ...; columns
q0, q0+qs, ...) flipped, input and output channels swapped within each group.

phase_nhwc: a stride phase of the zero-padded input, channels last (per-tap GEMMs).

phase_planes + weight_grad_rows: the weight gradient of layers with few input channels
per group, vectorised along output rows (the C kernel: wgrad_kernels.h); see below.
"""

from cython cimport floating
from cython.parallel cimport prange
from libc.stdlib cimport free, malloc

from openmp_helpers cimport CONVREG_HAVE_OPENMP

HAVE_OPENMP = bool(CONVREG_HAVE_OPENMP)


cdef void _flip_swap_rows(const floating* w, floating* out, Py_ssize_t nr, Py_ssize_t cog,
                          Py_ssize_t cig, Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t kh2,
                          Py_ssize_t kw2, Py_ssize_t p0, Py_ssize_t ps, Py_ssize_t q0,
                          Py_ssize_t qs) noexcept nogil:
    """Output rows r .. r+nr-1 (input channels c .. c+nr-1 of group g): w points at
    w[g*cog, c, 0, 0], out at out[r]. For each output channel o of the group the nr
    kernels w[o, c:c+nr] are one contiguous read (a row at a time would stride through
    w by cig*kh*kw elements per o: ~6 GB/s on 512-channel weights)."""
    cdef Py_ssize_t o, i, a, b, t, kk = kh * kw, kk2 = kh2 * kw2
    cdef const floating* src
    cdef floating* dst
    if kh2 == kh and kw2 == kw:
        # every tap: the flipped kernel is the kh*kw block reversed
        for o in range(cog):
            src = w + o * cig * kk + kk - 1
            dst = out + o * kk
            for i in range(nr):
                for t in range(kk):
                    dst[t] = src[-t]
                src += kk
                dst += cog * kk
        return
    for o in range(cog):
        for i in range(nr):
            src = w + (o * cig + i) * kk
            dst = out + i * cog * kk2 + o * kk2
            for a in range(kh2):
                for b in range(kw2):
                    dst[a * kw2 + b] = src[(p0 + (kh2 - 1 - a) * ps) * kw
                                           + q0 + (kw2 - 1 - b) * qs]


# Input channels flipped together by one work item of flip_swap.
cdef enum:
    FLIP_ROWS = 16


def flip_swap(const floating[:, :, :, ::1] w,     # IN  (c_out, cig, kh, kw)
              floating[:, :, :, ::1] out,         # OUT (c_in, cog, kh2, kw2)
              Py_ssize_t groups, Py_ssize_t p0, Py_ssize_t ps, Py_ssize_t q0,
              Py_ssize_t qs, int threads):
    """out := the phase weight (see the module docstring)."""
    cdef Py_ssize_t c_out = w.shape[0], cig = w.shape[1], kh = w.shape[2], kw = w.shape[3]
    cdef Py_ssize_t c_in = out.shape[0], cog = out.shape[1]
    cdef Py_ssize_t kh2 = out.shape[2], kw2 = out.shape[3]
    cdef Py_ssize_t item, g, c, nblk = (cig + FLIP_ROWS - 1) // FLIP_ROWS
    if c_in == 0 or cog == 0 or kh2 == 0 or kw2 == 0:
        return
    if c_in != groups * cig or c_out != groups * cog:
        raise ValueError("flip_swap: shapes do not match the groups")
    if p0 + (kh2 - 1) * ps >= kh or q0 + (kw2 - 1) * qs >= kw:
        raise ValueError("flip_swap: taps outside the kernel")
    cdef const floating* src = &w[0, 0, 0, 0]
    cdef floating* dst = &out[0, 0, 0, 0]
    with nogil:
        for item in prange(groups * nblk, schedule='static', num_threads=threads):
            g = item // nblk
            c = (item - g * nblk) * FLIP_ROWS
            _flip_swap_rows(src + (g * cog * cig + c) * kh * kw,
                            dst + (g * cig + c) * cog * kh2 * kw2, min(FLIP_ROWS, cig - c),
                            cog, cig, kh, kw, kh2, kw2, p0, ps, q0, qs)


cdef void _phase_row(const floating* x, floating* out, Py_ssize_t c_in, Py_ssize_t hw,
                     Py_ssize_t w, Py_ssize_t wq, Py_ssize_t c0, Py_ssize_t c1,
                     Py_ssize_t xc0, Py_ssize_t sw) noexcept nogil:
    """One (wq, c_in) row block: out[c, ch] = x[ch, c*sw + ...] for c in [c0, c1], else 0.
    x points at x[n, 0, row, 0]."""
    cdef Py_ssize_t c, ch
    for c in range(wq):
        if c < c0 or c > c1:
            for ch in range(c_in):
                out[c * c_in + ch] = 0
        else:
            for ch in range(c_in):
                out[c * c_in + ch] = x[ch * hw + xc0 + (c - c0) * sw]


def phase_nhwc(const floating[:, :, :, ::1] x,    # IN  (n, c_in, h, w)
               floating[:, ::1] out,             # OUT (>= n*hq*wq, c_in)
               Py_ssize_t hq, Py_ssize_t wq, Py_ssize_t a, Py_ssize_t b,
               Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t pt, Py_ssize_t pl, int threads):
    """Stride phase (a, b) of the zero-padded input, channels last:

        out[(i*hq + r)*wq + c, ch] = xpad[i, ch, r*sh + a, c*sw + b]

    (xpad: x with pt/pl zeros above/left and zeros beyond); rows past n*hq*wq untouched."""
    cdef Py_ssize_t n = x.shape[0], c_in = x.shape[1], h = x.shape[2], w = x.shape[3]
    cdef Py_ssize_t rows = n * hq, k, i, r, y, c, ch
    if rows == 0 or wq == 0 or c_in == 0:
        return
    if out.shape[0] < rows * wq or out.shape[1] != c_in:
        raise ValueError("phase_nhwc: output too small")
    # columns c with 0 <= c*sw + b - pl < w
    cdef Py_ssize_t c0 = 0, c1 = wq - 1
    while c0 < wq and c0 * sw + b - pl < 0:
        c0 += 1
    while c1 >= 0 and c1 * sw + b - pl >= w:
        c1 -= 1
    cdef const floating* src = &x[0, 0, 0, 0]
    cdef floating* dst = &out[0, 0]
    with nogil:
        for k in prange(rows, schedule='static', num_threads=threads):
            i = k // hq
            r = k - i * hq
            y = r * sh + a - pt
            if y < 0 or y >= h or c0 > c1:
                for c in range(wq * c_in):
                    dst[k * wq * c_in + c] = 0
            else:
                _phase_row(src + (i * c_in * h + y) * w, dst + k * wq * c_in, c_in, h * w,
                           w, wq, c0, c1, c0 * sw + b - pl, sw)


# ---------------------------------------------------------------- few-channel weight grad
# The weight gradient of layers with few taps per output channel (few input channels per
# group), vectorised along output rows (C kernel: wgrad_kernels.h; which calls use it:
# convreg/backends/_gradops.py, weight_grad_rows):
#
#   gw[o, t] = sum_{b, i, j} go[b, o, i, j] * xb[b*xn + g*xg + i*xs + toff[t] + j]
#
# for output channel o of group g, t < cig*kh*kw; xb is the input laid out by
# phase_planes (or the input itself for stride-1 unpadded calls).

from wgrad cimport (CR_WG_OBMAX, CR_WG_TSUPER, CR_WG_VBYTES, cr_wgrad_task_f32,
                    cr_wgrad_task_f64)

WG_OBMAX = CR_WG_OBMAX          # output channels per task
WG_VBYTES = CR_WG_VBYTES        # bytes per vector


cdef void _phase_plane(const floating* x, floating* out, Py_ssize_t h, Py_ssize_t w,
                       Py_ssize_t hq, Py_ssize_t wq, Py_ssize_t a, Py_ssize_t b,
                       Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t pt,
                       Py_ssize_t pl) noexcept nogil:
    """One (hq, wq) plane: out[r, s] = xpad[r*sh + a, s*sw + b] (x: one (h, w) plane)."""
    cdef Py_ssize_t r, s, y, c0, c1, num
    # columns s with 0 <= s*sw + b - pl < w
    c0 = 0 if pl - b <= 0 else (pl - b + sw - 1) // sw
    num = w - 1 + pl - b
    c1 = -1 if num < 0 else num // sw
    if c1 > wq - 1:
        c1 = wq - 1
    for r in range(hq):
        y = r * sh + a - pt
        if y < 0 or y >= h or c0 > c1:
            for s in range(wq):
                out[r * wq + s] = 0
            continue
        for s in range(c0):
            out[r * wq + s] = 0
        if sw == 1:
            for s in range(c0, c1 + 1):
                out[r * wq + s] = x[y * w + s + b - pl]
        else:
            for s in range(c0, c1 + 1):
                out[r * wq + s] = x[y * w + s * sw + b - pl]
        for s in range(c1 + 1, wq):
            out[r * wq + s] = 0


def phase_planes(const floating[:, :, :, ::1] x,     # IN  (n, c_in, h, w)
                 floating[:, :, :, :, ::1] out,      # OUT (n, c_in, nph, hq, wq)
                 const Py_ssize_t[:, ::1] phases,    # IN  (nph, 2): (a, b) of each plane
                 Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t pt, Py_ssize_t pl, int threads):
    """out[i, c, k, r, s] = xpad[i, c, r*sh + a_k, s*sw + b_k], xpad being x with pt rows
    and pl columns of zeros above / left of it and zeros beyond it."""
    cdef Py_ssize_t n = x.shape[0], c_in = x.shape[1], h = x.shape[2], w = x.shape[3]
    cdef Py_ssize_t nph = out.shape[2], hq = out.shape[3], wq = out.shape[4]
    cdef Py_ssize_t planes = n * c_in * nph, k, ic, ph
    if out.shape[0] != n or out.shape[1] != c_in or phases.shape[0] != nph \
            or phases.shape[1] != 2:
        raise ValueError("phase_planes: shapes do not match")
    if sh < 1 or sw < 1:
        raise ValueError("phase_planes: strides must be >= 1")
    if planes == 0 or hq == 0 or wq == 0:
        return
    cdef const floating* src = &x[0, 0, 0, 0] if h and w else NULL
    cdef floating* dst = &out[0, 0, 0, 0, 0]
    cdef const Py_ssize_t* ab = &phases[0, 0]
    with nogil:
        for k in prange(planes, schedule='static', num_threads=threads):
            ic = k // nph
            ph = k - ic * nph
            _phase_plane(src + ic * h * w if src != NULL else NULL, dst + k * hq * wq,
                         h, w, hq, wq, ab[2 * ph], ab[2 * ph + 1], sh, sw, pt, pl)


def weight_grad_rows(const floating[::1] xb,          # IN  input rows (see above)
                     Py_ssize_t xn, Py_ssize_t xg, Py_ssize_t xs,
                     const Py_ssize_t[::1] toff,      # IN  (cig*kh*kw,) offset of each tap
                     const floating[:, :, :, ::1] go, # IN  (n, c_out, oh, ow)
                     floating[:, ::1] gw,             # OUT (c_out, cig*kh*kw)
                     Py_ssize_t groups, int threads):
    """gw := the weight gradient (see above); OpenMP over blocks of WG_OBMAX output
    channels, each computed whole by one thread (results do not depend on threads)."""
    cdef Py_ssize_t n = go.shape[0], c_out = go.shape[1], oh = go.shape[2], ow = go.shape[3]
    cdef Py_ssize_t ntaps = toff.shape[0], cog, nb, tasks, k, g, o0, t, hi = 0
    cdef int cnt, failed = 0
    cdef Py_ssize_t vl = CR_WG_VBYTES // sizeof(floating)
    if groups < 1 or c_out % groups or gw.shape[0] != c_out or gw.shape[1] != ntaps:
        raise ValueError("weight_grad_rows: shapes do not match")
    if c_out == 0 or ntaps == 0:
        return
    if n == 0 or oh == 0 or ow == 0:
        gw[...] = 0
        return
    if xn < 0 or xg < 0 or xs < 0:
        raise ValueError("weight_grad_rows: negative stride")
    for t in range(ntaps):
        if toff[t] < 0:
            raise ValueError("weight_grad_rows: negative tap offset")
        hi = max(hi, toff[t])
    # the last element any tap of any row reads
    if (n - 1) * xn + (groups - 1) * xg + (oh - 1) * xs + ow - 1 + hi >= xb.shape[0]:
        raise ValueError("weight_grad_rows: the taps read past the input buffer")
    cog = c_out // groups
    nb = (cog + CR_WG_OBMAX - 1) // CR_WG_OBMAX
    tasks = groups * nb
    cdef const floating* xp = &xb[0]
    cdef const floating* gp = &go[0, 0, 0, 0]
    cdef floating* wp = &gw[0, 0]
    cdef const Py_ssize_t* tp = &toff[0]
    cdef floating* work
    with nogil:
        for k in prange(tasks, schedule='dynamic', num_threads=threads):
            g = k // nb
            o0 = g * cog + (k - g * nb) * CR_WG_OBMAX
            cnt = <int>min(<Py_ssize_t>CR_WG_OBMAX, (g + 1) * cog - o0)
            work = <floating*> malloc(cnt * min(ntaps, <Py_ssize_t>CR_WG_TSUPER) * (vl + 1)
                                     * sizeof(floating))
            if work == NULL:
                failed += 1
                continue
            if floating is float:
                cr_wgrad_task_f32(cnt, gp + o0 * oh * ow, oh * ow, c_out * oh * ow,
                                  xp + g * xg, xs, xn, tp, ntaps, n, oh, ow,
                                  wp + o0 * ntaps, work)
            else:
                cr_wgrad_task_f64(cnt, gp + o0 * oh * ow, oh * ow, c_out * oh * ow,
                                  xp + g * xg, xs, xn, tp, ntaps, n, oh, ow,
                                  wp + o0 * ntaps, work)
            free(work)
    if failed:
        raise MemoryError()

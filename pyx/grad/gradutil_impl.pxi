"""Helpers of the gradient operations (convreg.backends._gradops), built per SIMD variant
as convreg._gradutil_<variant>.

flip_swap: the weight of an input-gradient stride phase, in one pass:

    out[g*cig + c, o, i, j] = w[g*cog + o, c, p0 + (kh2-1-i)*ps, q0 + (kw2-1-j)*qs]

for out of shape (c_in, cog, kh2, kw2): the phase's taps (rows p0, p0+ps, ...; columns
q0, q0+qs, ...) flipped, input and output channels swapped within each group.
"""

from cython cimport floating
from cython.parallel cimport prange

from openmp_helpers cimport CONVREG_HAVE_OPENMP

HAVE_OPENMP = bool(CONVREG_HAVE_OPENMP)


cdef void _flip_swap_row(const floating* w, floating* out, Py_ssize_t cog, Py_ssize_t cig,
                         Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t kh2, Py_ssize_t kw2,
                         Py_ssize_t p0, Py_ssize_t ps, Py_ssize_t q0,
                         Py_ssize_t qs) noexcept nogil:
    """One output row (input channel c of group g): w points at w[g*cog, c, 0, 0]."""
    cdef Py_ssize_t o, i, j, t, kk = kh * kw
    cdef const floating* src
    cdef floating* dst
    if kh2 == kh and kw2 == kw:
        # every tap: the flipped kernel is the kh*kw block reversed
        for o in range(cog):
            src = w + o * cig * kk + kk - 1
            dst = out + o * kk
            for t in range(kk):
                dst[t] = src[-t]
        return
    for o in range(cog):
        src = w + o * cig * kh * kw
        dst = out + o * kh2 * kw2
        for i in range(kh2):
            for j in range(kw2):
                dst[i * kw2 + j] = src[(p0 + (kh2 - 1 - i) * ps) * kw
                                       + q0 + (kw2 - 1 - j) * qs]


def flip_swap(const floating[:, :, :, ::1] w,     # IN  (c_out, cig, kh, kw)
              floating[:, :, :, ::1] out,         # OUT (c_in, cog, kh2, kw2)
              Py_ssize_t groups, Py_ssize_t p0, Py_ssize_t ps, Py_ssize_t q0,
              Py_ssize_t qs, int threads):
    """out := the phase weight (see the module docstring)."""
    cdef Py_ssize_t c_out = w.shape[0], cig = w.shape[1], kh = w.shape[2], kw = w.shape[3]
    cdef Py_ssize_t c_in = out.shape[0], cog = out.shape[1]
    cdef Py_ssize_t kh2 = out.shape[2], kw2 = out.shape[3]
    cdef Py_ssize_t r, g, c
    if c_in == 0 or cog == 0 or kh2 == 0 or kw2 == 0:
        return
    if c_in != groups * cig or c_out != groups * cog:
        raise ValueError("flip_swap: shapes do not match the groups")
    if p0 + (kh2 - 1) * ps >= kh or q0 + (kw2 - 1) * qs >= kw:
        raise ValueError("flip_swap: taps outside the kernel")
    cdef const floating* src = &w[0, 0, 0, 0]
    cdef floating* dst = &out[0, 0, 0, 0]
    with nogil:
        for r in prange(c_in, schedule='static', num_threads=threads):
            g = r // cig
            c = r - g * cig
            _flip_swap_row(src + (g * cog * cig + c) * kh * kw, dst + r * cog * kh2 * kw2,
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


from libc.stdlib cimport calloc, free


cdef int _dw_weight_channel(const floating* x, const floating* go, floating* gw,
                            Py_ssize_t n, Py_ssize_t c_in, Py_ssize_t h, Py_ssize_t w,
                            Py_ssize_t c_out, Py_ssize_t oh, Py_ssize_t ow,
                            Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw,
                            Py_ssize_t pt, Py_ssize_t pl, Py_ssize_t dh, Py_ssize_t dw,
                            Py_ssize_t o, Py_ssize_t c) noexcept nogil:
    """gw[o, 0, :, :] for output channel o reading input channel c. Per tap, products are
    accumulated lane-wise over (image, row) into tmp[tap, j] (a vectorisable loop with
    no reassociation), then tmp is summed over j."""
    cdef floating* tmp = <floating*> calloc(kh * kw * ow, sizeof(floating))
    cdef Py_ssize_t b, i, p, q, j, y, j0, j1, xo
    cdef const floating* grow
    cdef const floating* xrow
    cdef floating* t
    cdef floating s
    if tmp == NULL:
        return -1
    for b in range(n):
        for i in range(oh):
            grow = go + ((b * c_out + o) * oh + i) * ow
            for p in range(kh):
                y = i * sh + p * dh - pt
                if y < 0 or y >= h:
                    continue
                xrow = x + ((b * c_in + c) * h + y) * w
                for q in range(kw):
                    xo = q * dw - pl
                    # columns j with 0 <= j*sw + xo < w
                    j0 = 0 if xo >= 0 else (-xo + sw - 1) // sw
                    if (ow - 1) * sw + xo < w:
                        j1 = ow - 1
                    elif w - 1 - xo < 0:
                        j1 = -1         # (C division would round -k/sw up to 0)
                    else:
                        j1 = (w - 1 - xo) // sw
                    t = tmp + (p * kw + q) * ow
                    if sw == 1:
                        for j in range(j0, j1 + 1):
                            t[j] += grow[j] * xrow[j + xo]
                    else:
                        for j in range(j0, j1 + 1):
                            t[j] += grow[j] * xrow[j * sw + xo]
    for p in range(kh * kw):
        s = 0
        for j in range(ow):
            s += tmp[p * ow + j]
        gw[o * kh * kw + p] = s
    free(tmp)
    return 0


def depthwise_weight_grad(const floating[:, :, :, ::1] x,     # IN  (n, c_in, h, w)
                          const floating[:, :, :, ::1] go,    # IN  (n, c_out, oh, ow)
                          floating[:, :, :, ::1] gw,          # OUT (c_out, 1, kh, kw)
                          Py_ssize_t groups, Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t pt,
                          Py_ssize_t pl, Py_ssize_t dh, Py_ssize_t dw, int threads):
    """Weight gradient of a convolution with one input channel per group (depthwise,
    any channel multiplier), zero padding pt/pl; OpenMP over output channels."""
    cdef Py_ssize_t n = x.shape[0], c_in = x.shape[1], h = x.shape[2], w = x.shape[3]
    cdef Py_ssize_t c_out = go.shape[1], oh = go.shape[2], ow = go.shape[3]
    cdef Py_ssize_t kh = gw.shape[2], kw = gw.shape[3]
    cdef Py_ssize_t o, cog
    cdef int failed = 0
    if gw.shape[0] != c_out or gw.shape[1] != 1 or c_in != groups or c_out % groups:
        raise ValueError("depthwise_weight_grad: shapes do not match")
    if c_out == 0:
        return
    if n == 0 or oh == 0 or ow == 0:
        gw[...] = 0
        return
    cog = c_out // groups
    cdef const floating* xp = &x[0, 0, 0, 0]
    cdef const floating* gp = &go[0, 0, 0, 0]
    cdef floating* wp = &gw[0, 0, 0, 0]
    with nogil:
        for o in prange(c_out, schedule='static', num_threads=threads):
            failed += _dw_weight_channel(xp, gp, wp, n, c_in, h, w, c_out, oh, ow, kh, kw,
                                         sh, sw, pt, pl, dh, dw, o, o // cog) != 0
    if failed:
        raise MemoryError()

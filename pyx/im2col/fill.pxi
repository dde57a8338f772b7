# The column fill of the im2col family (included by im2col_impl.pxi; legend there).
#
#   col[(c*kh + u)*kw + v, t] = xpad[c, i*sh + u*dh, j*sw + v*dw]    (i*ow + j = p0 + t)

cdef inline void _zero(floating* dst, Py_ssize_t count) noexcept nogil:
    if count > 0:
        memset(dst, 0, count * sizeof(floating))


cdef void _fill_flat(const floating* xg, floating* col, const Geom* G, Py_ssize_t p0,
                     Py_ssize_t p1, const Py_ssize_t* jlo, const Py_ssize_t* jhi,
                     Py_ssize_t c0, Py_ssize_t c1) noexcept nogil:
    """_fill for stride 1 with ow == w (e.g. 'same' padding): output pixel p reads input
    element p + off of the plane, off = (u*dh - pt)*w + v*dw - pl, so each kernel tap is
    one copy of the band's valid span, then the padding columns inside it are zeroed."""
    cdef Py_ssize_t bp = p1 - p0, ow = G.ow
    cdef Py_ssize_t c, u, v, i, off, ilo, ihi, s0, s1, lo, hi, a, e
    cdef const floating* plane
    cdef floating* row
    for c in range(c0, c1):
        plane = xg + c * G.h * G.w
        for u in range(G.kh):
            ilo = G.pt - u * G.dh                 # output rows whose input row is in [0, h)
            ihi = ilo + G.h
            if ilo < 0:
                ilo = 0
            if ihi > G.oh:
                ihi = G.oh
            for v in range(G.kw):
                row = col + ((c * G.kh + u) * G.kw + v) * bp
                lo, hi = jlo[v], jhi[v]
                off = (u * G.dh - G.pt) * G.w + v * G.dw - G.pl
                # The valid span: from the first valid pixel of row ilo to one past the last
                # valid pixel of row ihi - 1, within the band. Every read lies in the plane.
                s0 = ilo * ow + lo if ilo * ow + lo > p0 else p0
                s1 = (ihi - 1) * ow + hi if (ihi - 1) * ow + hi < p1 else p1
                if ihi <= ilo or hi <= lo or s1 <= s0:
                    _zero(row, bp)
                    continue
                _zero(row, s0 - p0)
                memcpy(row + (s0 - p0), plane + (s0 + off), (s1 - s0) * sizeof(floating))
                _zero(row + (s1 - p0), p1 - s1)
                if lo > 0 or hi < ow:             # padding columns inside the span
                    for i in range(s0 // ow, (s1 - 1) // ow + 1):
                        a = i * ow if i * ow > s0 else s0
                        e = i * ow + lo if i * ow + lo < s1 else s1
                        if e > a:
                            _zero(row + (a - p0), e - a)
                        a = i * ow + hi if i * ow + hi > s0 else s0
                        e = i * ow + ow if i * ow + ow < s1 else s1
                        if e > a:
                            _zero(row + (a - p0), e - a)


cdef enum:
    PHASE_MAX = 4096        # scratch elements of _fill_phased (its stack): one row's phases


cdef void _phases(const floating* src, Py_ssize_t w, Py_ssize_t sw, Py_ssize_t pl,
                  Py_ssize_t L, floating* ph) noexcept nogil:
    """ph[q*L + k] := xpad[k*sw + q] = src[k*sw + q - pl] (0 outside [0, w)), q < sw,
    k < L: the sw phases of one padded input row."""
    cdef Py_ssize_t q, k, k0, k1, a
    cdef floating* d
    for q in range(sw):
        d = ph + q * L
        a = pl - q                          # xpad column of src[0] is pl: k*sw >= a
        k0 = 0 if a <= 0 else (a + sw - 1) // sw
        k1 = (w - 1 + a) // sw + 1 if w - 1 + a >= 0 else 0
        if k0 > L:
            k0 = L
        if k1 > L:
            k1 = L
        if k1 < k0:
            k1 = k0
        for k in range(k0):
            d[k] = 0
        if sw == 2:
            if floating is float:
                cr_copy_stride2_f32(src + (k0 * 2 - a), k1 - k0, d + k0)
            else:
                cr_copy_stride2_f64(src + (k0 * 2 - a), k1 - k0, d + k0)
        else:
            for k in range(k0, k1):
                d[k] = src[k * sw - a]
        for k in range(k1, L):
            d[k] = 0


cdef bint _phased(const Geom* G) noexcept nogil:
    """Whether _fill takes _fill_phased: strided columns, and a row's phases fit its
    scratch."""
    return G.sw >= 2 and G.sw * (G.ow + (G.kw - 1) * G.dw // G.sw + 1) <= PHASE_MAX


cdef void _fill_phased(const floating* xg, floating* col, const Geom* G, Py_ssize_t p0,
                       Py_ssize_t p1, Py_ssize_t c0, Py_ssize_t c1) noexcept nogil:
    """_fill for column strides sw >= 2: each input row's sw phases (xpad[r, k*sw + q])
    are gathered once, padding zeros included, and then every tap v of every output row
    reading it is one contiguous copy, phase (v*dw) % sw from element (v*dw) // sw. Per
    tap and output row, the general loop worked out the padding, zeroed it and gathered
    its 7-28 columns separately (a fifth of a 3x3/2 128->256 14^2 layer's time, perf)."""
    cdef floating ph[PHASE_MAX]
    cdef Py_ssize_t bp = p1 - p0, ow = G.ow, sw = G.sw
    cdef Py_ssize_t L = ow + (G.kw - 1) * G.dw // sw + 1
    cdef Py_ssize_t i0 = p0 // ow, i1 = (p1 - 1) // ow
    cdef Py_ssize_t c, u, v, i, ja, jb, r, built, off
    cdef const floating* plane
    cdef const floating* src
    cdef floating* base
    for c in range(c0, c1):
        plane = xg + c * G.h * G.w
        built = -1                          # the input row ph holds (none)
        for i in range(i0, i1 + 1):
            ja = p0 - i * ow if i == i0 else 0      # this row's columns in the band
            jb = p1 - i * ow if i == i1 else ow
            for u in range(G.kh):
                r = i * G.sh + u * G.dh - G.pt
                base = col + (c * G.kh + u) * G.kw * bp + (i * ow + ja - p0)
                if r < 0 or r >= G.h:
                    for v in range(G.kw):
                        _zero(base + v * bp, jb - ja)
                    continue
                if r != built:
                    _phases(plane + r * G.w, G.w, sw, G.pl, L, ph)
                    built = r
                for v in range(G.kw):
                    off = v * G.dw
                    src = ph + (off % sw) * L + off // sw + ja
                    if floating is float:
                        cr_copy_row_f32(base + v * bp, src, jb - ja)
                    else:
                        cr_copy_row_f64(base + v * bp, src, jb - ja)


cdef void _fill(const floating* xg,      # IN  (cig, h, w): the planes of one image and group
                floating* col,           # OUT (K, bp)
                const Geom* G, Py_ssize_t p0, Py_ssize_t p1,
                const Py_ssize_t* jlo,   # IN  (kw,) first j with an in-range column for tap v
                const Py_ssize_t* jhi,   # IN  (kw,) one past the last such j
                Py_ssize_t c0, Py_ssize_t c1) noexcept nogil:
    """col[(c*kh + u)*kw + v, t] := xpad[c, i*sh + u*dh, j*sw + v*dw], i*ow + j = p0 + t,
    for the channels c0 <= c < c1."""
    cdef Py_ssize_t bp = p1 - p0, ow = G.ow, sw = G.sw
    cdef Py_ssize_t i0 = p0 // ow, i1 = (p1 - 1) // ow     # first and last output row
    cdef Py_ssize_t c, u, v, i, j, ja, jb, a, e, r
    if G.sh == 1 and sw == 1 and ow == G.w:
        _fill_flat(xg, col, G, p0, p1, jlo, jhi, c0, c1)
        return
    if _phased(G):
        _fill_phased(xg, col, G, p0, p1, c0, c1)
        return
    cdef const floating* plane
    cdef const floating* src
    cdef floating* row
    cdef floating* dst
    for c in range(c0, c1):
        plane = xg + c * G.h * G.w
        for u in range(G.kh):
            for v in range(G.kw):
                row = col + ((c * G.kh + u) * G.kw + v) * bp
                for i in range(i0, i1 + 1):
                    ja = p0 - i * ow if i == i0 else 0      # this row's columns in the band
                    jb = p1 - i * ow if i == i1 else ow
                    dst = row + (i * ow + ja - p0)          # dst[j - ja] <- column j
                    r = i * G.sh + u * G.dh - G.pt
                    a = jlo[v] if jlo[v] > ja else ja
                    e = jhi[v] if jhi[v] < jb else jb
                    if r < 0 or r >= G.h or a >= e:
                        _zero(dst, jb - ja)
                        continue
                    _zero(dst, a - ja)
                    src = plane + r * G.w + (a * sw + v * G.dw - G.pl)   # x[r, j*sw + v*dw - pl]
                    if sw == 1:
                        memcpy(dst + (a - ja), src, (e - a) * sizeof(floating))
                    elif sw == 2:
                        if floating is float:
                            cr_copy_stride2_f32(src, e - a, dst + (a - ja))
                        else:
                            cr_copy_stride2_f64(src, e - a, dst + (a - ja))
                    else:
                        for j in range(e - a):
                            dst[a - ja + j] = src[j * sw]
                    _zero(dst + (e - ja), jb - e)

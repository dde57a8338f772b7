"""Gradient operations built from a forward convolution kernel (shared by the Cython
backends). Every spec here is the *forward* call's spec with zero padding.

Input gradient by stride phases (``input_grad_by_phases``)
    gx[y] = sum over (i, p) with i*s + p*d - pad = y of go[i] * w[p]   (per axis)

    The input rows y with (y + pad) % s == r (phase r) receive only the taps p with
    p*d = r (mod s); those taps are evenly spaced (step s/gcd(s, d) in p, d/gcd(s, d) in
    the output row), so each phase is a stride-1 forward convolution of grad_output with
    the phase's sub-kernel, flipped and with in/out channels swapped per group, dilated
    by d/gcd(s, d), written into the interleaved rows of gx. Negative padding (p > d*(k-1))
    becomes a crop of grad_output. No zero-inserted upsampling: the phases together do
    exactly the work of the gradient, and memory is that of gx plus one phase.

Weight gradient as one GEMM per kernel tap (``weight_grad_taps``, channels-last
    ``weight_grad_taps_nhwc``): each tap reads a contiguous, shifted slice of a
    stride-phase buffer of the input, so there is no im2col copy.

Weight gradient as GEMMs over im2col bands (``weight_grad_gemm``)
    gw[g] (cog, cig*kh*kw) = sum over bands of go[band, g] (cog, P) @ col[band, g] (P, K)

    with col the im2col of the input over a band of images (or of output rows of one
    image), the band sized so the column copy stays under ``bound_bytes``; batched over
    groups, each GEMM cut over the threads by ``matmul`` (single-threaded BLAS blocks).

Weight gradient as one forward convolution with roles swapped (``weight_grad_swapped``)
    gw[o, c, p, q] = sum_{n,i,j} x[n, c, i*s + p*d - pad] go[n, o, i, j]: the input with
    channels as the batch and the images as the channels, convolved with grad_output as a
    (oh, ow) kernel at stride d and dilation s, groups kept.

Weight gradient by the compiled row-vectorised reduction (``weight_grad_rows``), for
    few input channels per group (depthwise and grouped included)
    gw[o, c, p, q] = sum_{n,i,j} go[n, o, i, j] * phase(c, p, q)[n, i + oa, j + ob]

    vectorised along the output row j, a block of output channels x taps in registers,
    each tap reading a contiguous row of the stride phase of the padded input it falls
    on (pyx/grad/wgrad_kernels.h). No im2col copy: its work is that of the sum.

Which form runs where: ``weight_grad`` here, the backends' methods and docs/grad.md.
"""

from __future__ import annotations

import math
import threading
from dataclasses import replace as _dc_replace

import numpy as np

from . import _alloc
from ._compact import compact
from ._simd import load_family

try:
    _gradutil = load_family("_gradutil")     # pyx/grad/gradutil_impl.pxi, per SIMD variant
except ImportError:      # the NumPy paths do the same, slower
    _gradutil = None
try:
    _gemm = load_family("_gemm")             # pyx/gemm/gemm_impl.pxi: matmul_into
except ImportError:
    _gemm = None


def matmul(a, b, threads=1):
    """``a @ b`` (2-D, or batched 3-D) cut into blocks over ``threads`` OpenMP threads, one
    single-threaded BLAS call per block (``matmul_into``). Callers hold the BLAS pool to
    one thread (``_blas.blas_threads(1)``): BLAS's own workers keep spinning for ~0.1 s
    after a call and stall the next OpenMP region on the same cores (a 1.4 ms convolution
    took 7.4 ms right after a 2-thread BLAS weight gradient)."""
    if _gemm is None:
        return np.matmul(a, b)
    shape = np.broadcast_shapes(a.shape[:-2], b.shape[:-2]) + (a.shape[-2], b.shape[-1])
    out = np.empty(shape, dtype=np.result_type(a, b))
    try:
        _gemm.matmul_into(a, b, out, threads)
    except ValueError:      # a layout BLAS cannot read in place: contiguous copies
        _gemm.matmul_into(np.ascontiguousarray(a), np.ascontiguousarray(b), out, threads)
    return out


def replace(spec, **changes):
    """``dataclasses.replace`` without the frozen dataclass's per-field __init__ (a few
    microseconds per call), for specs derived from a validated one."""
    trusted = getattr(type(spec), "_trusted", None)
    if trusted is None:
        return _dc_replace(spec, **changes)
    return trusted({**spec.__dict__, **changes})


def _axis_phases(size, o, k, s, d, pad):
    """Per phase: (first input index, count, taps (ascending), first go index read,
    the dilation of the phase's sub-kernel)."""
    phases = []
    for r in range(s):
        m0 = -((r - pad) // s)          # ceil((pad - r) / s)
        m_end = (size - 1 + pad - r) // s
        count = m_end - m0 + 1
        if count <= 0:
            continue
        y0 = r + s * m0 - pad
        taps = [p for p in range(k) if (p * d - r) % s == 0]
        if not taps:
            phases.append((y0, count, (), 0, 1))
            continue
        t = [(p * d - r) // s for p in taps]
        step = d // math.gcd(s, d)
        phases.append((y0, count, tuple(taps), m0 - t[-1], step))
    return phases


# Below this many elements of work a compiled helper runs on the calling thread: waking
# the OpenMP pool cost ~0.4 ms per call on the shared machine, far more than the work.
PARALLEL_MIN_WORK = 1 << 16


def _threads_for(work, threads):
    return threads if work >= PARALLEL_MIN_WORK else 1


_local = threading.local()
SCRATCH_KEEP_BYTES = 64 * 2**20


def _scratch(name, shape, dtype):
    """A per-thread scratch array, reused across calls (fresh multi-MiB allocations
    page-fault on first touch, which cost as much as the work for 512-channel weights;
    a fresh workspace is written at new addresses, each line fetched before it is
    overwritten); contents undefined. Only arrays a call uses internally and drops before
    returning come from here. Arrays over SCRATCH_KEEP_BYTES are allocated per call."""
    cache = getattr(_local, "arrays", None)
    if cache is None:
        cache = _local.arrays = {}
    count = math.prod(shape)
    dtype = np.dtype(dtype)
    buf = cache.get((name, dtype))
    if buf is None or buf.size < count:
        if count * dtype.itemsize > SCRATCH_KEEP_BYTES:
            return _alloc.empty(count, dtype).reshape(shape)
        buf = cache[(name, dtype)] = np.empty(count, dtype=dtype)
    return buf[:count].reshape(shape)


def _drop_scratch(name):
    """Forget the calling thread's scratch arrays called ``name`` (every dtype)."""
    cache = getattr(_local, "arrays", None) or {}
    for key in [key for key in cache if key[0] == name]:
        del cache[key]


def _step(taps):
    return taps[1] - taps[0] if len(taps) > 1 else 1


def _ascending(taps):
    return slice(taps[0], taps[-1] + 1, _step(taps))


def phase_weight(spec, w, ptaps, qtaps, threads=1):
    """(c_in, cog, kh', kw'): the sub-kernel of taps ``ptaps`` x ``qtaps`` flipped, in and
    out channels swapped per group.

    A plain strided copy would move 3x3 kernels a few floats at a time; instead the
    (contiguous) sub-kernel is reversed as one flat array (which flips the taps and
    reverses every channel order), then its kh'*kw'-float tap blocks, seen as single
    opaque items, are copied in channel-swapped order with the channel orders restored.
    With the compiled helper (``flip_swap`` in pyx/grad/gradutil_impl.pxi) it is one threaded pass."""
    g, cog, cig = spec.groups, spec.cog, spec.cig
    kh, kw = len(ptaps), len(qtaps)
    if _gradutil is not None:
        out = _scratch("phase_weight", (spec.c_in, cog, kh, kw), w.dtype)
        _gradutil.flip_swap(w, out, g, ptaps[0], _step(ptaps), qtaps[0], _step(qtaps),
                            _threads_for(w.size, threads))
        return out
    sub = w.reshape(g, cog, cig, spec.kh, spec.kw)[:, :, :, _ascending(ptaps),
                                                   _ascending(qtaps)]
    rev = np.ascontiguousarray(np.ascontiguousarray(sub).reshape(-1)[::-1])
    items = rev.view(np.dtype((np.void, kh * kw * w.itemsize))).reshape(g, cog, cig)
    out = np.ascontiguousarray(items[::-1, ::-1, ::-1].transpose(0, 2, 1))
    return out.view(w.dtype).reshape(spec.c_in, cog, kh, kw)


_PLANS = {}
_PLANS_MAX = 512


def _memo(kind, spec, make):
    """``make(spec)``, remembered per (kind, spec): the plans below depend on the spec
    only, and a layer called every step repeats its spec (bounded: cleared when full)."""
    key = (kind, spec)
    got = _PLANS.get(key)
    if got is None:
        got = make(spec)
        if len(_PLANS) >= _PLANS_MAX:
            _PLANS.clear()
        _PLANS[key] = got
    return got


def _phases_plan(spec):
    """(single, [(y0, x0, ptaps, qtaps, go crop or None, phase spec), ...]) of
    :func:`input_grad_by_phases`; ``single``: one phase covers the whole input."""
    rows = _axis_phases(spec.h, spec.oh, spec.kh, spec.sh, spec.dh, spec.pt)
    cols = _axis_phases(spec.w, spec.ow, spec.kw, spec.sw, spec.dw, spec.pl)
    single = len(rows) == 1 and len(cols) == 1 and rows[0][1] == spec.h and cols[0][1] == spec.w
    steps = []
    for (y0, my, ptaps, lo_h, ddh) in rows:
        for (x0, mx, qtaps, lo_w, ddw) in cols:
            if not ptaps or not qtaps:
                continue   # no tap lands on this phase: its gradient is zero
            kh, kw = len(ptaps), len(qtaps)
            # go rows read: lo .. lo + my - 1 + (kh-1)*dd; clip to the array, pad the rest.
            hi_h = lo_h + my - 1 + (kh - 1) * ddh
            hi_w = lo_w + mx - 1 + (kw - 1) * ddw
            r0, r1 = max(lo_h, 0), min(hi_h, spec.oh - 1)
            c0, c1 = max(lo_w, 0), min(hi_w, spec.ow - 1)
            if r0 > r1 or c0 > c1:
                continue   # every tap reads padding
            crop = None if (r0, r1, c0, c1) == (0, spec.oh - 1, 0, spec.ow - 1) else \
                (slice(r0, r1 + 1), slice(c0, c1 + 1))
            pspec = replace(
                spec, c_in=spec.c_out, c_out=spec.c_in, h=r1 - r0 + 1, w=c1 - c0 + 1,
                kh=kh, kw=kw, sh=1, sw=1, dh=ddh, dw=ddw,
                pt=r0 - lo_h, pb=hi_h - r1, pl=c0 - lo_w, pr=hi_w - c1,
                padding_mode="zeros", has_bias=False, unbatched=False, oh=my, ow=mx)
            steps.append((y0, x0, ptaps, qtaps, crop, pspec))
    return single, steps


def input_grad_by_phases(spec, go, w, conv, threads=1, conv_swapped=None):
    """The input gradient of ``spec`` (zero padding) for ``go``; ``conv(spec', x, w)``
    runs a forward convolution (zero padding, no bias) and returns its output.
    ``conv_swapped(spec', x)``, when given, runs a phase that uses the whole kernel (every
    phase of a stride-1 layer) with the flipped, channel-swapped ``w`` packed by the
    backend itself, so no flipped copy of the weights is made."""
    single, steps = _memo("phases", spec, _phases_plan)
    gx = None if single else np.zeros(spec.input_shape, dtype=spec.dtype)
    for y0, x0, ptaps, qtaps, crop, pspec in steps:
        part = go if crop is None else np.ascontiguousarray(go[:, :, crop[0], crop[1]])
        if conv_swapped is not None and (len(ptaps), len(qtaps)) == (spec.kh, spec.kw):
            out = conv_swapped(pspec, part)
        else:
            out = conv(pspec, part, phase_weight(spec, w, ptaps, qtaps, threads))
        if gx is None:
            return out
        gx[:, :, y0::spec.sh, x0::spec.sw] = out
    if gx is None:
        gx = np.zeros(spec.input_shape, dtype=spec.dtype)
    return gx


def _padded_input(spec, x):
    """(spec', xp): x with its zero padding written in, limited to the rows and columns
    the kernel reads (after gathering sparse axes, so the copy is bounded by the work)."""
    spec, x = compact(spec, x)
    need_h = (spec.oh - 1) * spec.sh + (spec.kh - 1) * spec.dh + 1
    need_w = (spec.ow - 1) * spec.sw + (spec.kw - 1) * spec.dw + 1
    top, left = spec.pt, spec.pl
    bottom = need_h - top - spec.h
    right = need_w - left - spec.w
    if top or left or bottom > 0 or right > 0:
        xp = np.zeros((spec.n, spec.c_in, need_h, need_w), dtype=x.dtype)
        rows = max(0, min(spec.h, need_h - top))
        cols = max(0, min(spec.w, need_w - left))
        xp[:, :, top:top + rows, left:left + cols] = x[:, :, :rows, :cols]
        x = xp
    return spec, x


def weight_grad_gemm(spec, x, go, bound_bytes=32 * 2**20, threads=1):
    """The weight gradient of ``spec`` (zero padding) as banded im2col GEMMs.

    The column buffer is laid out (group, K, pixels): each of its rows is a strided copy
    of input rows (a plain reshape, no copy, for an unpadded 1x1 stride-1 call on one
    image), and the GEMM reads it transposed: gw[g] += go[g] (cog, P) @ col[g].T."""
    spec, xp = _padded_input(spec, x)
    n, g, cig, cog = spec.n, spec.groups, spec.cig, spec.cog
    kh, kw, oh, ow = spec.kh, spec.kw, spec.oh, spec.ow
    k = cig * kh * kw
    sn, sc, sy, sx = xp.strides
    view = np.lib.stride_tricks.as_strided(
        xp, (n, g, cig, kh, kw, oh, ow),
        (sn, sc * cig, sc, sy * spec.dh, sx * spec.dw, sy * spec.sh, sx * spec.sw),
        writeable=False)
    go5 = go.reshape(n, g, cog, oh, ow)
    per_row = g * ow * k * xp.itemsize
    rows_band = max(1, min(oh, bound_bytes // max(per_row, 1)))
    images = max(1, bound_bytes // (per_row * oh)) if rows_band == oh else 1
    acc = None
    for n0 in range(0, n, images):
        n1 = min(n, n0 + images)
        for i0 in range(0, oh, rows_band):
            i1 = min(oh, i0 + rows_band)
            nb, p = n1 - n0, (i1 - i0) * ow
            if nb == 1:
                col = view[n0, :, :, :, :, i0:i1].reshape(g, k, p)
                gob = go5[n0, :, :, i0:i1].reshape(g, cog, p)
            else:
                col = view[n0:n1, :, :, :, :, i0:i1].transpose(1, 2, 3, 4, 0, 5, 6).reshape(
                    g, k, nb * p)
                gob = go5[n0:n1, :, :, i0:i1].transpose(1, 2, 0, 3, 4).reshape(
                    g, cog, nb * p)
            part = matmul(gob, col.transpose(0, 2, 1), threads)
            if acc is None:
                acc = part
            else:
                acc += part
    return acc.reshape(spec.c_out, cig, kh, kw)


def weight_grad_swapped(spec, x, go, conv):
    """The weight gradient of ``spec`` (zero padding) as one forward convolution
    ``conv(spec', x', w')`` with images and channels swapped (see the module doc)."""
    n, g, cig, cog = spec.n, spec.groups, spec.cig, spec.cog
    # Rows of x the kernel reaches; beyond them the input is cropped (the forward spec's
    # implicit bottom padding may be "negative").
    need_h = (spec.oh - 1) * spec.sh + (spec.kh - 1) * spec.dh + 1
    need_w = (spec.ow - 1) * spec.sw + (spec.kw - 1) * spec.dw + 1
    h = min(spec.h, need_h - spec.pt)
    w = min(spec.w, need_w - spec.pl)
    if h <= 0 or w <= 0:
        return np.zeros(spec.weight_shape, dtype=spec.dtype)   # every tap reads padding
    xs = x[:, :, :h, :w].reshape(n, g, cig, h, w).transpose(2, 1, 0, 3, 4).reshape(
        cig, g * n, h, w)
    ws = go.reshape(n, g, cog, spec.oh, spec.ow).transpose(1, 2, 0, 3, 4).reshape(
        g * cog, n, spec.oh, spec.ow)
    sspec = replace(
        spec, n=cig, c_in=g * n, h=h, w=w, c_out=g * cog, kh=spec.oh, kw=spec.ow,
        sh=spec.dh, sw=spec.dw, dh=spec.sh, dw=spec.sw, pt=spec.pt, pl=spec.pl,
        pb=need_h - spec.pt - h, pr=need_w - spec.pl - w, padding_mode="zeros",
        has_bias=False, unbatched=False, oh=spec.kh, ow=spec.kw)
    out = conv(sspec, np.ascontiguousarray(xs), np.ascontiguousarray(ws))
    return np.ascontiguousarray(out.transpose(1, 0, 2, 3))


def _phase_buffer(spec, x, a, b, hq, wq, tail):
    """Stride phase (a, b) of the zero-padded input, laid out (c_in, n*hq*wq + tail) with
    image b's (hq, wq) plane at b*hq*wq: row r, column c hold padded input element
    (r*sh + a, c*sw + b); zeros outside the input and in the tail."""
    n, c_in, h, w = x.shape
    plane = hq * wq
    buf = np.zeros((c_in, n * plane + tail), dtype=x.dtype)
    view = buf[:, :n * plane].reshape(c_in, n, hq, wq)
    sh, sw = spec.sh, spec.sw
    r0 = max(0, -((a - spec.pt) // sh))             # first r with r*sh + a - pt >= 0
    r1 = min(hq - 1, (h - 1 + spec.pt - a) // sh)
    c0 = max(0, -((b - spec.pl) // sw))
    c1 = min(wq - 1, (w - 1 + spec.pl - b) // sw)
    if r0 <= r1 and c0 <= c1:
        y0, x0 = r0 * sh + a - spec.pt, c0 * sw + b - spec.pl
        view[:, :, r0:r1 + 1, c0:c1 + 1] = x.transpose(1, 0, 2, 3)[
            :, :, y0:y0 + (r1 - r0) * sh + 1:sh, x0:x0 + (c1 - c0) * sw + 1:sw]
    return buf


def weight_grad_taps(spec, x, go, threads=1):
    """The weight gradient of ``spec`` (zero padding) with one GEMM per kernel tap and
    no im2col copy.

    Tap (p, q) reads stride phase ((p*dh) % sh, (q*dw) % sw) of the padded input at row
    offset (p*dh)//sh and column offset (q*dw)//sw. With every phase stored as
    (c_in, n*hq*wq) planes (hq = oh + largest row offset, likewise wq) and grad_output
    zero-extended to the same (hq, wq) planes, the tap's input is a *contiguous slice*
    of its phase buffer shifted by the offset, so

        gw[:, :, p, q] = go_ext (c_out, L) @ phase[:, off:off + L].T     (per group)

    with L = n*hq*wq; the zero rows/columns of go_ext make the values the slice reads
    across plane boundaries irrelevant. Memory: the phases the taps read (together at
    most the padded input) plus the extended grad_output."""
    n, g, cig, cog = spec.n, spec.groups, spec.cig, spec.cog
    taps = [(p, q, (p * spec.dh) % spec.sh, (q * spec.dw) % spec.sw,
             (p * spec.dh) // spec.sh, (q * spec.dw) // spec.sw)
            for p in range(spec.kh) for q in range(spec.kw)]
    hq = spec.oh + max(t[4] for t in taps)
    wq = spec.ow + max(t[5] for t in taps)
    plane = hq * wq
    length = n * plane
    tail = max(t[4] for t in taps) * wq + max(t[5] for t in taps)
    gext = np.zeros((spec.c_out, n, hq, wq), dtype=go.dtype)
    gext[:, :, :spec.oh, :spec.ow] = go.transpose(1, 0, 2, 3)
    gflat = gext.reshape(spec.c_out, length)
    out = np.empty((spec.c_out, cig, spec.kh, spec.kw), dtype=go.dtype)
    phases = {}
    for p, q, a, b, oa, ob in taps:
        buf = phases.get((a, b))
        if buf is None:
            buf = phases[(a, b)] = _phase_buffer(spec, x, a, b, hq, wq, tail)
        off = oa * wq + ob
        src = buf[:, off:off + length]
        if g == 1:
            out[:, :, p, q] = matmul(gflat, src.T, threads)
        elif cig == 1 and cog == 1:
            out[:, 0, p, q] = np.einsum("cl,cl->c", gflat, src)
        else:
            out[:, :, p, q] = matmul(gflat.reshape(g, cog, length),
                                     src.reshape(g, cig, length).transpose(0, 2, 1),
                                     threads).reshape(spec.c_out, cig)
    return out


def gemm_spec(spec, m, k, nn):
    """The spec of a 1x1 convolution that is the GEMM (m, k) @ (k, nn): weight (m, k, 1, 1),
    input (1, k, nn, 1) (a contiguous (k, nn) matrix), output (1, m, nn, 1)."""
    return replace(spec, n=1, c_in=k, h=nn, w=1, c_out=m, kh=1, kw=1, sh=1, sw=1, pt=0, pb=0,
                   pl=0, pr=0, dh=1, dw=1, groups=1, padding_mode="zeros", has_bias=False,
                   unbatched=False, oh=nn, ow=1)


def weight_grad_taps_nhwc(spec, x, go, conv, threads=1):
    """As :func:`weight_grad_taps` (groups == 1) with channels-last phase buffers, so that
    every tap's GEMM  gw[:, :, p, q] = go_ext (c_out, L) @ phase[off:off + L] (L, c_in)
    reads a contiguous block and runs as a 1x1 forward convolution ``conv(spec', x', w')``
    (cython-im2col's GEMM on the input: its own kernel and OpenMP threads, no BLAS pool)."""
    n, cin, cout = spec.n, spec.c_in, spec.c_out
    taps = [(p, q, (p * spec.dh) % spec.sh, (q * spec.dw) % spec.sw,
             (p * spec.dh) // spec.sh, (q * spec.dw) // spec.sw)
            for p in range(spec.kh) for q in range(spec.kw)]
    hq = spec.oh + max(t[4] for t in taps)
    wq = spec.ow + max(t[5] for t in taps)
    length = n * hq * wq
    tail = max(t[4] for t in taps) * wq + max(t[5] for t in taps)
    gext = np.zeros((cout, n, hq, wq), dtype=go.dtype)
    gext[:, :, :spec.oh, :spec.ow] = go.transpose(1, 0, 2, 3)
    w4 = gext.reshape(cout, length, 1, 1)
    gspec = gemm_spec(spec, cout, length, cin)
    out = np.empty((cout, cin, spec.kh, spec.kw), dtype=go.dtype)
    phases = {}
    for p, q, a, b, oa, ob in taps:
        buf = phases.get((a, b))
        if buf is None:
            buf = np.empty((length + tail, cin), dtype=x.dtype)
            _gradutil.phase_nhwc(x, buf, hq, wq, a, b, spec.sh, spec.sw, spec.pt, spec.pl,
                                 _threads_for(length * cin, threads))
            buf[length:] = 0
            phases[(a, b)] = buf
        off = oa * wq + ob
        res = conv(gspec, buf[off:off + length].reshape(1, length, cin, 1), w4)
        out[:, :, p, q] = res[0, :, :, 0]
    return out


def swapped_fits(spec) -> bool:
    """Calls whose weight gradient runs best as the swapped forward convolution through
    cython-im2col when the compiled helpers are not built: few input channels per group
    and a kernel of at least 16 taps (the swapped call's outputs, kh*kw, fill the GEMM
    kernel's 32-pixel tiles), e.g. the ResNet stem and MNIST's first layer."""
    return spec.groups == 1 and spec.cig <= 4 and spec.kh * spec.kw >= 16


# The row-vectorised reduction (weight_grad_rows) runs calls with at most max_cig input
# channels per group on outputs at least min_ow wide, for each (min_ow, max_cig) below.
# Measured against the GEMM forms it replaced (scripts/sweep_weight_grad.py, float32, 2
# threads, 2026-12-02; docs/grad.md): 0.11-0.62x their time for 1-8 input channels and
# 0.37-1.23x (mostly 0.5-0.9) for 16-64 (3x3 / 5x5, 7x7 to 56x56 images, stride 1 and 2,
# grouped, depthwise, 1x1); 0.61-1.00x for 3x3 128 28 (batch 1 and 8) and 0.49-0.88x for
# 1x1 256->64 56; but 0.97-1.9x for 3x3 256 14 and 2-5x for 3x3 512 7 (a 7-wide row
# fills 7 of 16 lanes; thousands of taps re-read grad_output per pass).
ROWS_TIERS = ((1, 32), (14, 64), (28, 256))


def rows_fits(spec) -> bool:
    """True when the weight gradient runs as the compiled row-vectorised reduction."""
    return _gradutil is not None and any(spec.ow >= min_ow and spec.cig <= max_cig
                                         for min_ow, max_cig in ROWS_TIERS)


# Dense multi-tap layers with at least this many input channels run the per-tap GEMMs on
# channels-last phase buffers through cython-im2col (``weight_grad_taps_nhwc``) where
# they fit, ahead of the row-vectorised reduction: same-run ratios to torch on
# 2026-12-02 (two runs, scripts/bench_grad-style timing), taps / rows: 3x3 64 56 1.13 /
# 1.14, 1.08 / 1.19; 3x3 128 28 1.15 / 1.19, 1.19 / 1.25; batch-8 3x3 128 28 1.30 /
# 1.35, 1.30 / 1.34.
TAPS_NHWC_MIN_CIG = 64


def taps_nhwc_preferred(spec) -> bool:
    return (_gradutil is not None and spec.groups == 1 and spec.kh * spec.kw > 1
            and spec.cig >= TAPS_NHWC_MIN_CIG and weight_grad_uses_taps(spec))


# The per-tap GEMMs win when each is wide (many input channels per group) and the
# (hq, wq) planes waste little on their zero border; im2col bands win otherwise (stem:
# 3 input channels, 49 thin GEMMs; 7x7 and 14x14 images: 65% / 30% of each plane is
# border; MNIST: one input channel). Measured with scripts/bench_grad.py on 2026-12-02.
TAPS_MIN_CIG = 32
TAPS_MAX_BORDER = 1.2


def weight_grad_uses_taps(spec) -> bool:
    if spec.cig == 1 and spec.cog == 1:
        return True            # depthwise (without the compiled helpers): one multiply-sum per tap
    oa = ((spec.kh - 1) * spec.dh) // spec.sh
    ob = ((spec.kw - 1) * spec.dw) // spec.sw
    border = (spec.oh + oa) * (spec.ow + ob) / (spec.oh * spec.ow)
    return spec.cig >= TAPS_MIN_CIG and border <= TAPS_MAX_BORDER


def weight_grad(spec, x, go, bound_bytes, threads=1):
    """The weight gradient by the first form that fits: the compiled row-vectorised
    reduction (few input channels per group), else whichever of the two GEMM forms
    suits the call."""
    if rows_fits(spec):
        return weight_grad_rows(spec, x, go, threads)
    if weight_grad_uses_taps(spec):
        return weight_grad_taps(spec, x, go, threads)
    return weight_grad_gemm(spec, x, go, bound_bytes, threads)


def _rows_plan(spec):
    """(in_place, phases (nph, 2) or None, hq, wq, toff) of :func:`weight_grad_rows` for
    a compact spec."""
    cig, kh, kw, sh, sw = spec.cig, spec.kh, spec.kw, spec.sh, spec.sw
    ra = [(p * spec.dh) % sh for p in range(kh)]
    rb = [(q * spec.dw) % sw for q in range(kw)]
    oa = [(p * spec.dh) // sh for p in range(kh)]
    ob = [(q * spec.dw) // sw for q in range(kw)]
    if sh == sw == 1 and not spec.padded and spec.h >= spec.oh + oa[-1] \
            and spec.w >= spec.ow + ob[-1]:
        # the input itself: tap (c, p, q) at c*h*w + p*dh*w + q*dw
        plane = spec.h * spec.w
        toff = np.add.outer(np.arange(cig) * plane,
                            np.add.outer(np.array(oa) * spec.w, ob)).ravel()
        toff = toff.astype(np.intp)
        toff.setflags(write=False)          # shared by every call of the spec
        return True, None, spec.h, spec.w, toff
    phases = sorted({(a, b) for a in ra for b in rb})
    index = {ab: k for k, ab in enumerate(phases)}
    hq, wq = spec.oh + max(oa), spec.ow + max(ob)
    nph, plane = len(phases), hq * wq
    toff = np.array([(c * nph + index[(ra[p], rb[q])]) * plane + oa[p] * wq + ob[q]
                     for c in range(cig) for p in range(kh) for q in range(kw)],
                    dtype=np.intp)
    phases = np.array(phases, dtype=np.intp).reshape(nph, 2)
    for a in (toff, phases):
        a.setflags(write=False)             # shared by every call of the spec
    return False, phases, hq, wq, toff


# Pointwise layers (1x1, stride 1, unpadded, one group) with at least this many input and
# output channels take ``weight_grad_pointwise``. Measured against the forms it replaced
# (float32, 2 threads, same-run ratio to torch.nn.grad.conv2d_weight, 2026-12-02): batch-8
# 256->64 56^2 0.71x (was 2.04x, the row reduction), 1024->256 14^2 0.39x (0.83x, GEMMs
# over bands), batch-4 128->512 28^2 1.35x (1.69x); 256->64 56^2 0.92x (0.88x).
POINTWISE_MIN_C = 32


def pointwise_fits(spec) -> bool:
    return (_gemm is not None and spec.groups == 1 and spec.kh == spec.kw == 1
            and spec.sh == spec.sw == 1 and not spec.padded
            and min(spec.c_in, spec.c_out) >= POINTWISE_MIN_C)


def weight_grad_pointwise(spec, x, go, threads=1):
    """The weight gradient of a pointwise layer, sum over images of
    grad_output[i] (c_out, hw) @ x[i]^T (hw, c_in): one GEMM per image whose long
    reduction (the pixels) ``_gemm.gemm_rows`` splits over blocks of output rows. The
    kernel wants both operands with contiguous rows, so one side is transposed: either
    x (rows = output channels, the result in place) or grad_output (rows = input
    channels, the (c_in, c_out) result transposed at the end), whichever copies less.
    Callers hold the BLAS pool to one thread (the kernel's BLAS fallback runs per block)."""
    n, cin, cout = spec.n, spec.c_in, spec.c_out
    hw = spec.h * spec.w
    xs, gs = x.reshape(n, cin, hw), go.reshape(n, cout, hw)
    by_input = n * cout * hw + cin * cout < n * cin * hw
    rows, cols = (xs, gs) if by_input else (gs, xs)
    acc = np.empty((rows.shape[1], cols.shape[1]), dtype=x.dtype)
    part = np.empty_like(acc) if n > 1 else None
    for i in range(n):
        _gemm.gemm_rows(rows[i], np.ascontiguousarray(cols[i].T), acc if i == 0 else part,
                        threads)
        if i:
            acc += part
    gw = np.ascontiguousarray(acc.T) if by_input else acc
    return gw.reshape(cout, cin, 1, 1)


def weight_grad_rows(spec, x, go, threads=1):
    """The weight gradient of ``spec`` (zero padding, any groups) by the compiled
    row-vectorised reduction (``weight_grad_rows`` in pyx/grad/gradutil_impl.pxi, kernel
    pyx/grad/wgrad_kernels.h): gw[o, c, p, q] = sum_{n,i,j} go[n, o, i, j] *
    phase[n, c, (a, b)][i + oa, j + ob] with (a, b) = ((p*dh) % sh, (q*dw) % sw) and
    (oa, ob) = ((p*dh) // sh, (q*dw) // sw): every tap reads a contiguous row of the
    stride phase of the padded input it falls on. The phases are materialised once,
    (n, c_in, phases, oh + max oa, ow + max ob), only those some tap reads, after
    sparse axes are gathered (so sized by the work); a stride-1 unpadded input is read
    in place."""
    spec, x = compact(spec, x)
    in_place, phases, hq, wq, toff = _memo("rows", spec, _rows_plan)
    gw = np.empty((spec.c_out, toff.size), dtype=go.dtype)
    threads = _threads_for(go.size * toff.size, threads)
    if in_place:
        plane = hq * wq
        _gradutil.weight_grad_rows(x.reshape(-1), spec.c_in * plane, spec.cig * plane, wq,
                                   toff, go, gw, spec.groups, threads)
        return gw.reshape(spec.weight_shape)
    nph = phases.shape[0]
    # scratch: a fresh multi-MiB buffer page-faults on every call (phase_planes writes
    # every element, zeros included)
    buf = _scratch("rows", (spec.n, spec.c_in, nph, hq, wq), x.dtype)
    _gradutil.phase_planes(x, buf, phases, spec.sh, spec.sw, spec.pt, spec.pl,
                           _threads_for(buf.size, threads))
    plane = hq * wq
    _gradutil.weight_grad_rows(buf.reshape(-1), spec.c_in * nph * plane,
                               spec.cig * nph * plane, wq, toff, go, gw, spec.groups, threads)
    return gw.reshape(spec.weight_shape)

"""Gathering sparse axes: calls whose stride, dilation or padding would make a kernel walk
far more rows (columns) than its taps read are rewritten to read a compact copy."""

from __future__ import annotations

from dataclasses import replace

import numpy as np


def _sparse(size, pad, k, s, d, o) -> bool:
    """True when the rows (or columns) the kernel would walk, about s*o + (k-1)*d of the
    padded input, far outnumber the o*k that the taps actually read: huge strides,
    dilations or paddings, where the band would be sized by them rather than the work."""
    return (s > 1 or d > 1) and s * o + (k - 1) * d > 2 * o * k + 16


def _taps(size, pad, k, s, d, o):
    """Input index read by tap p of output i, at position i*k + p (-1: padding)."""
    idx = (np.arange(o)[:, None] * s + np.arange(k)[None, :] * d - pad).ravel()
    return np.where((idx >= 0) & (idx < size), idx, -1)


def gathers(spec) -> bool:
    """Whether :func:`compact` rewrites this call (gathers a copy of its input)."""
    return (_sparse(spec.h, spec.pt, spec.kh, spec.sh, spec.dh, spec.oh)
            or _sparse(spec.w, spec.pl, spec.kw, spec.sw, spec.dw, spec.ow))


def compact(spec, x):
    """(spec', x'): the same call with each sparse axis gathered into o*k rows read at
    stride k, dilation 1, no padding (zero rows where taps fall on padding), so that
    memory and loops are sized by the output and kernel, never by stride or padding."""
    rows = _sparse(spec.h, spec.pt, spec.kh, spec.sh, spec.dh, spec.oh)
    cols = _sparse(spec.w, spec.pl, spec.kw, spec.sw, spec.dw, spec.ow)
    if not (rows or cols):
        return spec, x
    changes = {}
    if rows:
        idx = _taps(spec.h, spec.pt, spec.kh, spec.sh, spec.dh, spec.oh)
        x = np.where((idx >= 0)[:, None], x[:, :, np.maximum(idx, 0), :], 0).astype(x.dtype)
        changes.update(h=idx.size, pt=0, pb=0, sh=spec.kh, dh=1)
    if cols:
        idx = _taps(spec.w, spec.pl, spec.kw, spec.sw, spec.dw, spec.ow)
        x = np.where(idx >= 0, x[:, :, :, np.maximum(idx, 0)], 0).astype(x.dtype)
        changes.update(w=idx.size, pl=0, pr=0, sw=spec.kw, dw=1)
    return replace(spec, **changes), np.ascontiguousarray(x)

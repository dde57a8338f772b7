"""The adjoint of explicit padding: fold the gradient of a padded input back onto the
input, as autograd does through ``F.pad`` for reflect / replicate / circular padding.

Every padded coordinate reads one input coordinate (the same index map as the forward
padding); its gradient is added there. Per axis: the interior is a copy, each border
row/column is added onto its source, one vectorised slice at a time (the borders are at
most the padding wide).
"""

from __future__ import annotations

import numpy as np

from .._frontend.hyper import source_index


def _fold_axis(g, axis: int, before: int, after: int, size: int, mode: str):
    """Fold ``before``/``after`` border slices of ``g`` along ``axis`` onto the interior."""
    if before == 0 and after == 0:
        return g
    idx = [slice(None)] * g.ndim
    idx[axis] = slice(before, before + size)
    out = g[tuple(idx)].copy()
    for k in list(range(-before, 0)) + list(range(size, size + after)):
        src = [slice(None)] * g.ndim
        dst = [slice(None)] * g.ndim
        src[axis] = k + before
        dst[axis] = source_index(k, size, mode)
        out[tuple(dst)] += g[tuple(src)]
    return out


def fold_padding(grad_padded, spec):
    """The gradient w.r.t. the unpadded input of ``spec`` (its padding mode and pads),
    given the gradient w.r.t. its explicitly padded input."""
    g = _fold_axis(grad_padded, 3, spec.pl, spec.pr, spec.w, spec.padding_mode)
    g = _fold_axis(g, 2, spec.pt, spec.pb, spec.h, spec.padding_mode)
    return np.ascontiguousarray(g)

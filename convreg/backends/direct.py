"""The ``cython-direct`` backend: direct convolution in Cython, no im2col buffer.

The kernels live in ``pyx/direct/direct_impl.pxi`` (microkernels in ``pyx/direct/*.h``),
built once per SIMD variant as ``convreg._direct_<variant>``; the best variant this CPU
runs is loaded at construction (ImportError when none was built, which the registry
reports as "unavailable").
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from ._simd import load_family
from .base import Backend


class CythonDirectBackend(Backend):
    name = "cython-direct"
    description = ("Cython direct convolution: padded, stride-phase-split row bands and "
                   "register-blocked SIMD microkernels; OpenMP, GIL released")
    padding_modes = frozenset({"zeros"})

    def __init__(self, variant: str = None):
        self._mod = load_family("_direct", variant)

    @property
    def variant(self) -> str:
        """The SIMD variant of the loaded kernels: baseline, avx2 or avx512."""
        return self._mod.__name__.rsplit("_", 1)[-1]

    def conv2d(self, spec, x, w, b, ctx):
        out = np.empty(spec.output_shape, dtype=spec.dtype)
        if b is None:
            b = np.zeros(spec.c_out, dtype=spec.dtype)
        spec, x = compact(spec, x)
        # A stride along an axis with one output is never applied; 1 keeps the kernel's
        # stride-phase buffers (one phase per stride step) from growing with it.
        sh = 1 if spec.oh == 1 else spec.sh
        sw = 1 if spec.ow == 1 else spec.sw
        self._mod.conv2d_direct(x, w, b, out, spec.pt, spec.pl, sh, sw,
                                spec.dh, spec.dw, spec.groups, ctx.threads)
        return out

    def info(self) -> dict:
        out = super().info()
        out.update({"simd": self.variant, "vector_bytes": self._mod.VECTOR_BYTES,
                    "openmp": self._mod.HAVE_OPENMP})
        return out


def _sparse(size, pad, k, s, d, o) -> bool:
    """True when the rows (or columns) the kernel would walk, about s*o + (k-1)*d of the
    padded input, far outnumber the o*k that the taps actually read: huge strides,
    dilations or paddings, where the band would be sized by them rather than the work."""
    return (s > 1 or d > 1) and s * o + (k - 1) * d > 2 * o * k + 16


def _taps(size, pad, k, s, d, o):
    """Input index read by tap p of output i, at position i*k + p (-1: padding)."""
    idx = (np.arange(o)[:, None] * s + np.arange(k)[None, :] * d - pad).ravel()
    return np.where((idx >= 0) & (idx < size), idx, -1)


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

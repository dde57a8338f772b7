"""The ``cython-direct`` backend: direct convolution in Cython, no im2col buffer.

The kernels live in ``pyx/direct/direct_impl.pxi`` (microkernels in ``pyx/direct/*.h``),
built once per SIMD variant as ``convreg._direct_<variant>``; the best variant this CPU
runs is loaded at construction (ImportError when none was built, which the registry
reports as "unavailable").
"""

from __future__ import annotations


import numpy as np

from . import _gradops
from ._compact import compact
from ._blas import blas_threads
from ._simd import load_family
from .base import Backend


# Bound on the im2col bands of the weight gradient's GEMMs.
WEIGHT_BAND_BYTES = 16 * 2**20


# Calls under this many flops run on the calling thread (OpenMP's start-up, a few
# microseconds, is more than a second thread saves on them).
SMALL_FLOPS = 1_000_000


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
        # Waking a second thread costs more than it saves below SMALL_FLOPS.
        threads = 1 if spec.flops < SMALL_FLOPS else ctx.threads
        self._mod.conv2d_direct(x, w, b, out, spec.pt, spec.pl, sh, sw,
                                spec.dh, spec.dw, spec.groups, threads)
        return out

    # ------------------------------------------------------------- gradients
    def conv2d_input(self, spec, grad_output, w, ctx):
        """Stride phases, each a stride-1 direct convolution of grad_output with the
        flipped, channel-swapped sub-kernel (convreg.backends._gradops)."""
        return _gradops.input_grad_by_phases(
            spec, grad_output, w, lambda s, x, k: self.conv2d(s, x, k, None, ctx), ctx.threads)

    def conv2d_weight(self, spec, x, grad_output, ctx):
        """Few input channels per group or wide outputs (``_gradops.rows_fits``): the
        compiled row-vectorised reduction (``_gradops.weight_grad_rows``, no BLAS);
        otherwise GEMMs (as cython-im2col's). The alternative, one direct convolution
        with images and channels swapped and grad_output as a (oh, ow) kernel
        (``_gradops.weight_grad_swapped``, kept for comparison), measured 3-15x slower:
        its outputs are kh x kw, far too few for the direct kernel's vectorised rows."""
        if _gradops.rows_fits(spec):
            return _gradops.weight_grad_rows(spec, x, grad_output, ctx.threads)
        with blas_threads(1):           # threads cut the GEMMs (_gradops.matmul)
            return _gradops.weight_grad(spec, x, grad_output, WEIGHT_BAND_BYTES,
                                         ctx.threads)

    def info(self) -> dict:
        out = super().info()
        out.update({"simd": self.variant, "vector_bytes": self._mod.VECTOR_BYTES,
                    "openmp": self._mod.HAVE_OPENMP})
        return out

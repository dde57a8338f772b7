"""The ``cython-direct`` backend: direct convolution in Cython, no im2col buffer.

The kernels live in ``pyx/direct/direct_impl.pxi`` (microkernels in ``pyx/direct/*.h``),
built once per SIMD variant as ``convreg._direct_<variant>``; the best variant this CPU
runs is loaded at construction (ImportError when none was built, which the registry
reports as "unavailable").
"""

from __future__ import annotations


import numpy as np

from . import _alloc, _gradops
from ._compact import compact, gathers
from ._blas import blas_threads
from ._simd import load_family
from .base import Backend


# Bound on the im2col bands of the weight gradient's GEMMs.
WEIGHT_BAND_BYTES = 16 * 2**20


# Calls under this many flops run on the calling thread (OpenMP's start-up, a few
# microseconds, is more than a second thread saves on them).
SMALL_FLOPS = 1_000_000


def _kernel_args(spec):
    """(pt, pl, sh, sw, dh, dw, groups) of the kernel call for a spec with no sparse axis.
    A stride along an axis with one output is never applied; 1 keeps the kernel's
    stride-phase buffers (one phase per stride step) from growing with it."""
    return (spec.pt, spec.pl, 1 if spec.oh == 1 else spec.sh, 1 if spec.ow == 1 else spec.sw,
            spec.dh, spec.dw, spec.groups)


class CythonDirectBackend(Backend):
    name = "cython-direct"
    description = ("Cython direct convolution: padded, stride-phase-split row bands and "
                   "register-blocked SIMD microkernels; OpenMP, GIL released")
    padding_modes = frozenset({"zeros"})

    _PLANS_MAX = 512

    def __init__(self, variant: str = None):
        self._mod = load_family("_direct", variant)
        # id(spec) -> (spec, output shape, dtype, zero bias, kernel arguments, small):
        # what a call derives from its spec alone, for specs that repeat by identity (the
        # front end's, the gradient phases'); the entry holds its spec, so the id is not
        # reused while it is there.
        self._plans = {}

    @property
    def variant(self) -> str:
        """The SIMD variant of the loaded kernels: baseline, avx2 or avx512."""
        return self._mod.__name__.rsplit("_", 1)[-1]

    def conv2d(self, spec, x, w, b, ctx):
        plan = self._plans.get(id(spec))
        if plan is None or plan[0] is not spec:
            plan = self._plan(spec)
        _, shape, dtype, zeros, args, small = plan
        out = _alloc.empty(shape, dtype)
        if args is None:            # sparse axes: gathered per call
            cspec, x = compact(spec, x)
            args = _kernel_args(cspec)
        # Waking a second thread costs more than it saves below SMALL_FLOPS.
        self._mod.conv2d_direct(x, w, zeros if b is None else b, out, *args,
                                1 if small else ctx.threads)
        return out

    def _plan(self, spec):
        zeros = np.zeros(spec.c_out, dtype=spec.dtype)
        zeros.flags.writeable = False            # shared by the calls of this spec
        plan = (spec, spec.output_shape, np.dtype(spec.dtype), zeros,
                None if gathers(spec) else _kernel_args(spec), spec.flops < SMALL_FLOPS)
        if len(self._plans) >= self._PLANS_MAX:
            self._plans.clear()
        self._plans[id(spec)] = plan
        return plan

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

"""The ``cython-direct`` backend: direct convolution in Cython, no im2col buffer.

The kernels live in ``pyx/_direct_impl.pxi`` (microkernels in ``pyx/_direct_kernels.h``),
built once per SIMD variant as ``convreg._direct_<variant>``; the best variant this CPU
runs is loaded at construction (ImportError when none was built, which the registry
reports as "unavailable").
"""

from __future__ import annotations

import numpy as np

from .._backend import Backend
from .._simd import load_family
from .._threads import get_threads


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

    def conv2d(self, spec, x, w, b):
        out = np.empty(spec.output_shape, dtype=spec.dtype)
        if b is None:
            b = np.zeros(spec.c_out, dtype=spec.dtype)
        # A stride along an axis with one output is never applied; 1 keeps the kernel's
        # stride-phase buffers (one phase per stride step) from growing with it.
        sh = 1 if spec.oh == 1 else spec.sh
        sw = 1 if spec.ow == 1 else spec.sw
        self._mod.conv2d_direct(x, w, b, out, spec.pt, spec.pl, sh, sw,
                                spec.dh, spec.dw, spec.groups, get_threads())
        return out

    def info(self) -> dict:
        out = super().info()
        out.update({"simd": self.variant, "vector_bytes": self._mod.VECTOR_BYTES,
                    "openmp": self._mod.HAVE_OPENMP})
        return out

"""``cython``: the name users type. Chooses ``cython-direct`` or ``cython-im2col`` per call.

The rules come from ``scripts/sweep_chooser.py`` (table and discussion in
``docs/chooser.md``): direct convolution wins where a GEMM would be thin — depthwise and
grouped layers with few channels per group, and layers whose reduction
``C_in/groups * kH * kW`` is small — and im2col + BLAS wins on dense layers.
"""

from __future__ import annotations

from .._backend import YES, Backend
from .._errors import BackendError

# Reductions (cig*kh*kw) at or below this are too short for a GEMM to reach speed.
SMALL_REDUCTION = 64
# Grouped layers with at most this many input channels per group run direct.
SMALL_GROUP = 8


def choose(spec) -> tuple:
    """(concrete backend name, reason) for a validated spec."""
    if spec.cig == 1 and spec.groups > 1:
        return "cython-direct", "depthwise: one input channel per group, a GEMM would be 1 deep"
    if spec.groups > 1 and spec.cig <= SMALL_GROUP:
        return "cython-direct", (f"grouped with {spec.cig} input channels per group "
                                 f"(<= {SMALL_GROUP}): per-group GEMMs are too thin")
    if spec.reduction <= SMALL_REDUCTION:
        return "cython-direct", (f"reduction C_in/groups*kH*kW = {spec.reduction} "
                                 f"(<= {SMALL_REDUCTION}): too short for GEMM")
    return "cython-im2col", (f"dense: reduction {spec.reduction} x {spec.c_out // spec.groups} "
                             "output channels per group suits im2col + BLAS")


class CythonAutoBackend(Backend):
    name = "cython"
    description = "chooses cython-direct or cython-im2col per call by shape"
    padding_modes = frozenset({"zeros", "reflect", "replicate", "circular"})

    def __init__(self):
        from .._registry import get_backend

        try:
            self._backends = {n: get_backend(n) for n in ("cython-direct", "cython-im2col")}
        except BackendError as exc:  # the registry reports ImportError as "unavailable"
            raise ImportError(str(exc)) from None

    def choose(self, spec) -> tuple:
        return choose(spec)

    def conv2d(self, spec, x, w, b):
        from .._api import call_backend

        # call_backend realises the padding modes the chosen backend does not do itself.
        return call_backend(self._backends[choose(spec)[0]], spec, x, w, b)

    def info(self) -> dict:
        return {**super().info(), "chooses_between": sorted(self._backends),
                "rules": {"small_reduction": SMALL_REDUCTION, "small_group": SMALL_GROUP}}

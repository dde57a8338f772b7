"""``explain``: which concrete backend a call would run, and why."""

from __future__ import annotations

from typing import NamedTuple

from ._api import select
from ._registry import resolve
from ._spec import spec_for_shapes


class Explanation(NamedTuple):
    """``backend``: what the selection rules give; ``runs``: the concrete backend that
    would compute the call; ``source``: the rule that chose ``backend``; ``reason``."""

    backend: str
    runs: str
    source: str
    reason: str

    def __str__(self) -> str:
        runs = "" if self.runs == self.backend else f" -> {self.runs}"
        return f"{self.backend}{runs} (chosen by {self.source}): {self.reason}"


def explain(input_shape, weight_shape, *, bias=True, dtype="float32", stride=1, padding=0,
            dilation=1, groups=1, padding_mode="zeros", backend=None) -> Explanation:
    """Say which backend a ``conv2d`` call on arrays of these shapes would run, and why.

    >>> import convreg
    >>> str(convreg.explain((1, 8, 16, 16), (8, 8, 3, 3), backend="python"))
    'python (chosen by argument): first backend in the list that supports the call'
    """
    spec = spec_for_shapes(input_shape, weight_shape, bias=bias, dtype=dtype, stride=stride,
                           padding=padding, dilation=dilation, groups=groups,
                           padding_mode=padding_mode)
    names, source = resolve(backend)
    be, refusals = select(spec, names, source)
    label = getattr(be, "name", str(be))
    prefix = "".join(f"skipped {r}; " for r in refusals)
    if hasattr(be, "choose"):
        runs, why = be.choose(spec)
        return Explanation(label, runs, source, prefix + why)
    return Explanation(label, label, source,
                       prefix + "first backend in the list that supports the call")

"""Realise reflect / replicate / circular padding explicitly, as PyTorch's Conv2d does.

A backend that does not list a padding mode in ``padding_modes`` receives the padded
input and a spec with zero padding.
"""

from __future__ import annotations

import numpy as np

_MODE_CHAR = {"reflect": ord("r"), "replicate": ord("e"), "circular": ord("w")}
_NUMPY_MODE = {"reflect": "reflect", "replicate": "edge", "circular": "wrap"}


_padded: dict = {}      # id(spec) -> (spec, spec after explicit padding)
_PADDED_MAX = 512


def _after_padding(spec):
    """``spec.after_explicit_padding()``, the same object for the same spec (so the
    backend's memos by spec see a repeated call repeat)."""
    got = _padded.get(id(spec))
    if got is None or got[0] is not spec:
        got = (spec, spec.after_explicit_padding())
        if len(_padded) >= _PADDED_MAX:
            _padded.clear()
        _padded[id(spec)] = got
    return got[1]


def pad_explicitly(spec, x, threads: int = 1):
    """(spec', xpad): ``x`` padded by ``spec``'s mode and pads, and the zero-padding spec."""
    new = _after_padding(spec)
    try:
        from .. import _pad
    except ImportError:
        # Without the compiled helper NumPy's pad has the same three boundary rules.
        out = np.pad(x, ((0, 0), (0, 0), (spec.pt, spec.pb), (spec.pl, spec.pr)),
                     mode=_NUMPY_MODE[spec.padding_mode])
        return new, out
    out = np.empty((spec.n, spec.c_in, new.h, new.w), dtype=x.dtype)
    _pad.pad(x, out, spec.pt, spec.pl, _MODE_CHAR[spec.padding_mode], threads)
    return new, out

"""Large arrays the kernels write: allocated without NumPy's huge-page advice.

NumPy advises transparent huge pages (``madvise(MADV_HUGEPAGE)``) for every array of
4 MiB or more. Where the kernel defragments for advised regions on a fault (Linux's
default ``defrag = madvise``), a fresh output then costs a compaction per 2 MiB page when
memory is fragmented: a batch-8 7x7 stem (25.7 MB out) took 39 ms instead of 6.5 ms,
24 ms of it in the kernel, right after a torch pass had churned the heap (2-core Xeon,
2026-12-02). Without the advice the same call took 6.8 ms. Outputs are written once,
front to back, so huge pages buy them little. The advice is switched off around the
allocation only and restored (NumPy's switch is process-wide: a concurrent allocation on
another thread may miss the advice, which is harmless)."""

from __future__ import annotations

import math

import numpy as np

try:
    from numpy._core.multiarray import _set_madvise_hugepage
except ImportError:         # NumPy < 2
    try:
        from numpy.core.multiarray import _set_madvise_hugepage
    except ImportError:     # pragma: no cover - a NumPy without the switch
        _set_madvise_hugepage = None

HUGE_ADVICE_BYTES = 4 << 20     # NumPy's threshold for the advice


def empty(shape, dtype) -> np.ndarray:
    """``np.empty(shape, dtype)``, without the huge-page advice when that large."""
    dtype = np.dtype(dtype)
    count = shape if isinstance(shape, int) else math.prod(shape)
    if _set_madvise_hugepage is None or count * dtype.itemsize < HUGE_ADVICE_BYTES:
        return np.empty(shape, dtype)
    advised = _set_madvise_hugepage(False)
    try:
        return np.empty(shape, dtype)
    finally:
        if advised:
            _set_madvise_hugepage(True)

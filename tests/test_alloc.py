"""Large kernel outputs are allocated without NumPy's huge-page advice, and the advice
is restored afterwards (convreg/backends/_alloc.py)."""

import numpy as np
import pytest

from convreg.backends import _alloc

pytestmark = pytest.mark.skipif(_alloc._set_madvise_hugepage is None,
                                reason="this NumPy has no huge-page switch")


def _advice():
    """NumPy's current setting, read by setting it and putting it back."""
    current = _alloc._set_madvise_hugepage(True)
    _alloc._set_madvise_hugepage(current)
    return current


@pytest.mark.parametrize("shape", [5, (2, 3), 3 << 20, (8, 64, 112, 112)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_shape_and_dtype_as_numpy(shape, dtype):
    out = _alloc.empty(shape, dtype)
    expected = np.empty(shape, dtype)
    assert out.shape == expected.shape and out.dtype == expected.dtype
    assert out.flags.c_contiguous and out.flags.writeable


@pytest.mark.parametrize("setting", [True, False])
def test_advice_restored(setting):
    before = _alloc._set_madvise_hugepage(setting)
    try:
        _alloc.empty((8, 64, 112, 112), np.float32)      # 25.7 MB: above the threshold
        _alloc.empty(10, np.float32)
        assert _advice() is setting
    finally:
        _alloc._set_madvise_hugepage(before)


def test_advice_off_while_allocating(monkeypatch):
    seen = []
    real_empty = np.empty

    def spy(shape, dtype):
        seen.append((np.prod(shape) * np.dtype(dtype).itemsize, _advice()))
        return real_empty(shape, dtype)

    before = _alloc._set_madvise_hugepage(True)
    try:
        monkeypatch.setattr(_alloc.np, "empty", spy)
        _alloc.empty(_alloc.HUGE_ADVICE_BYTES // 4, np.float32)
        _alloc.empty(_alloc.HUGE_ADVICE_BYTES // 4 - 1, np.float32)
    finally:
        _alloc._set_madvise_hugepage(before)
    assert seen == [(_alloc.HUGE_ADVICE_BYTES, False), (_alloc.HUGE_ADVICE_BYTES - 4, True)]

"""A layer keeps Winograd's transformed weights, and never serves a stale transform: every
way of changing the weights (in-place writes, views, assignment, load_state_dict) is
seen, because the cache checks the weights themselves on every call."""

from __future__ import annotations

import numpy as np
import pytest

import convreg
from convreg.harness import reference_and_bound

pytestmark = pytest.mark.skipif("cython-winograd" not in convreg.available_backends(),
                                reason="cython-winograd is not built")


class Counting:
    """Wraps the compiled module to count weight transforms: transform_weights calls, and
    convolutions given the raw weights (``_run``'s ``raw``), which transform them inside."""

    def __init__(self, mod):
        self._mod, self.transforms = mod, 0

    def transform_weights(self, *a, **k):
        self.transforms += 1
        return self._mod.transform_weights(*a, **k)

    def _run(self, *a, **k):
        self.transforms += bool(a[12])
        return self._mod._run(*a, **k)

    def __getattr__(self, name):
        return getattr(self._mod, name)


@pytest.fixture
def counting(monkeypatch):
    be = convreg.get_backend("cython-winograd")
    wrapped = Counting(be._mod)
    monkeypatch.setattr(be, "_mod", wrapped)
    return wrapped


def _check(layer, x):
    ref, bound = reference_and_bound(x, layer.weight, layer.bias, padding=1)
    out = layer(x)
    assert np.all(np.abs(out - ref) <= bound)
    return out


def test_layer_reuses_its_transform_and_sees_every_change(counting):
    rng = np.random.default_rng(0)
    layer = convreg.Conv2d(32, 32, 3, padding=1, seed=0, backend="cython-winograd")
    x = rng.standard_normal((2, 32, 16, 16)).astype(np.float32)
    _check(layer, x)
    _check(layer, x)
    assert counting.transforms == 1                 # transformed once, reused

    layer.weight[3, 4, 1, 1] += 0.5                 # in place
    _check(layer, x)
    assert counting.transforms == 2
    np.asarray(layer.weight)[0] *= -1.0             # through a view
    _check(layer, x)
    layer.weight = rng.standard_normal(layer.weight.shape).astype(np.float32)   # assignment
    _check(layer, x)
    other = convreg.Conv2d(32, 32, 3, padding=1, seed=9)
    layer.load_state_dict(other.state_dict())       # load_state_dict
    _check(layer, x)
    assert counting.transforms == 5
    _check(layer, x)
    assert counting.transforms == 5


def test_functional_calls_transform_every_time(counting):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((8, 32, 16, 16)).astype(np.float32)
    w = rng.standard_normal((32, 32, 3, 3)).astype(np.float32)
    for _ in range(2):
        convreg.conv2d(x, w, padding=1, backend="cython-winograd")
    assert counting.transforms == 2


def test_nan_weights_compare_by_bits(counting):
    layer = convreg.Conv2d(16, 16, 3, padding=1, seed=1, backend="cython-winograd")
    x = np.ones((1, 16, 8, 8), np.float32)
    layer.weight[0, 0, 0, 0] = np.nan
    a = layer(x)
    b = layer(x)
    assert counting.transforms == 1 and np.array_equal(a, b, equal_nan=True)
    assert np.isnan(a[0, 0]).any()


def test_large_weights_see_a_change_in_any_chunk(counting):
    """Weights over 256 KiB are compared in 64 KiB chunks on two threads: a one-bit change
    in the first, a middle or the last byte is seen, and unchanged weights are reused."""
    layer = convreg.Conv2d(96, 96, 3, padding=1, seed=2, backend="cython-winograd")
    assert layer.weight.nbytes > 256 * 1024
    x = np.random.default_rng(3).standard_normal((1, 96, 6, 6)).astype(np.float32)
    with convreg.use_threads(2):
        _check(layer, x)
        bits = layer.weight.reshape(-1).view(np.uint8)
        seen = 1
        for at in (0, 64 * 1024 + 5, bits.size // 2, bits.size - 1):
            bits[at] ^= 1
            _check(layer, x)
            seen += 1
            assert counting.transforms == seen
            _check(layer, x)
            assert counting.transforms == seen


def test_same_bytes():
    mod = convreg.get_backend("cython-winograd")._mod
    a = np.random.default_rng(4).integers(0, 256, 700_001, dtype=np.uint8)
    for threads in (1, 2, 3):
        assert mod.same_bytes(a, a.copy(), threads)
        for at in (0, 65535, 65536, 300_000, a.size - 1):
            b = a.copy()
            b[at] ^= 0x80
            assert not mod.same_bytes(a, b, threads)
        assert not mod.same_bytes(a, a[:-1].copy(), threads)
    empty = np.empty(0, np.uint8)
    assert mod.same_bytes(empty, empty) and not mod.same_bytes(empty, a[:1].copy())

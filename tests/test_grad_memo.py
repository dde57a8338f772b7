"""The per-call caches of the gradient calls (front-end specs by shape, the backends'
plans by spec): validation still runs on every call, failures are never remembered, the
caches stay bounded, and a remembered plan gives the right values for new arrays."""

from __future__ import annotations

import numpy as np
import pytest

import convreg
from convreg import grad
from convreg._frontend import grad as frontend
from convreg._frontend.spec import _SPECS_MAX
from convreg.backends import _gradops


def test_grad_output_is_checked_on_every_call():
    x = np.ones((1, 2, 6, 6), np.float32)
    go = np.ones((1, 3, 4, 4), np.float32)
    grad.conv2d_weight(x, (3, 2, 3, 3), go)
    with pytest.raises(convreg.ConvSpecError, match="grad_output must have shape"):
        grad.conv2d_weight(x, (3, 2, 3, 3), go[:, :, :3])
    w = np.ones((3, 2, 3, 3), np.float32)
    grad.conv2d_input((1, 2, 6, 6), w, go)
    with pytest.raises(convreg.ConvSpecError, match="grad_output must have shape"):
        grad.conv2d_input((1, 2, 6, 6), w, go[:, :2])
    with pytest.raises(convreg.ConvTypeError):
        grad.conv2d_input((1, 2, 6, 6), w, go.astype(np.float64))


def test_a_failing_spec_is_never_remembered():
    x = np.ones((1, 1, 2, 2), np.float32)
    before = len(frontend._SPECS)
    for _ in range(2):
        with pytest.raises(convreg.ConvSpecError, match="output size"):
            grad.conv2d_weight(x, (1, 1, 3, 3), np.ones((1, 1, 1, 1), np.float32))
    assert len(frontend._SPECS) <= before


def test_caches_stay_bounded():
    for k in range(_SPECS_MAX + 5):
        frontend._forward_spec((1, 1, 3, 3 + k), (1, 1, 1, 1), "float32",
                               ((1, 1), (0, 0), (1, 1), 1, "zeros"), "test")
        assert len(frontend._SPECS) <= _SPECS_MAX
    for k in range(_gradops._PLANS_MAX + 5):
        spec = convreg.spec_for_shapes((1, 1, 3, 3 + k), (1, 1, 1, 1), dtype="float32")
        _gradops._memo("test", spec, lambda s: s.w)
        assert len(_gradops._PLANS) <= _gradops._PLANS_MAX


@pytest.mark.parametrize("backend", ["cython-direct", "cython-im2col"])
def test_remembered_plans_give_the_values_of_new_arrays(backend):
    rng = np.random.default_rng(4)
    kw = dict(stride=2, padding=1)
    for _ in range(3):
        x = rng.standard_normal((2, 3, 9, 8))
        w = rng.standard_normal((4, 3, 3, 3))
        go = rng.standard_normal((2, 4, 5, 4))
        np.testing.assert_allclose(grad.conv2d_weight(x, w.shape, go, backend=backend, **kw),
                                   grad.conv2d_weight(x, w.shape, go, backend="python", **kw),
                                   rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(grad.conv2d_input(x.shape, w, go, backend=backend, **kw),
                                   grad.conv2d_input(x.shape, w, go, backend="python", **kw),
                                   rtol=1e-12, atol=1e-12)

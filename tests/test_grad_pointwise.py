"""The weight gradient of pointwise layers (``_gradops.weight_grad_pointwise``: one GEMM
per image over its pixels, split over output rows by ``_gemm.gemm_rows``): values
against the float64 reference within the harness bound in both orientations (which
operand is transposed), batches, both dtypes, layouts and thread counts, and the rule
that sends calls to it."""

from __future__ import annotations

import numpy as np
import pytest

import convreg
from convreg import grad, harness
from convreg.backends import _gradops

pytestmark = pytest.mark.skipif(_gradops._gemm is None,
                                reason="the compiled GEMM module is not built")


def _case(n, cin, cout, h, w, dtype="float32", seed=0, layout="c"):
    return harness.Case("pointwise", (n, cin, h, w), (cout, cin, 1, 1), bias=False,
                        dtype=dtype, seed=seed, layout=layout, op="conv2d_weight")


def _assert_within(out, case):
    ref, bound = harness.reference(case)
    assert out.shape == ref.shape and out.dtype == np.dtype(case.dtype)
    err = np.abs(out.astype(np.float64) - ref)
    assert np.all(err <= bound), f"worst {np.max(err / np.maximum(bound, 1e-300)):.3g} x bound"


# (n, cin, cout, h, w): the first two transpose grad_output (more input channels, large
# images), the others the input (more output channels, or small images where the
# result's transpose would cost more); odd sizes leave partial kernel tiles.
SHAPES = [(1, 64, 32, 20, 21), (3, 40, 33, 9, 15), (1, 32, 96, 16, 16),
          (2, 200, 48, 3, 5), (1, 37, 45, 1, 1)]


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_kernel_within_bound(shape, dtype, threads):
    case = _case(*shape, dtype=dtype, seed=sum(shape))
    a = harness.case_arrays(case)
    spec = convreg.spec_for_shapes(case.input_shape, case.weight_shape, dtype=dtype)
    assert _gradops.pointwise_fits(spec)
    out = _gradops.weight_grad_pointwise(spec, np.ascontiguousarray(a["x"]),
                                         np.ascontiguousarray(a["go"]), threads)
    _assert_within(out, case)


def test_both_orientations_are_taken():
    """Which side is transposed follows the copy sizes (so both branches above run)."""
    def by_input(n, cin, cout, hw):
        return n * cout * hw + cin * cout < n * cin * hw
    assert by_input(1, 64, 32, 20 * 21) and by_input(3, 40, 33, 9 * 15)
    assert not by_input(1, 32, 96, 256) and not by_input(2, 200, 48, 15)


@pytest.mark.parametrize("layout", ["c", "fortran", "strided", "nhwc", "readonly"])
def test_public_call_any_layout(layout):
    case = _case(2, 48, 40, 11, 13, layout=layout, seed=3)
    a = harness.case_arrays(case)
    x, go = a["x"], a["go"]
    before = x.copy(), go.copy()
    out = grad.conv2d_weight(x, case.weight_shape, go, backend="cython")
    _assert_within(out, case)
    np.testing.assert_array_equal(x, before[0])
    np.testing.assert_array_equal(go, before[1])


@pytest.mark.parametrize("xs,ws,kw,fits", [
    ((1, 256, 14, 14), (64, 256, 1, 1), {}, True),
    ((1, 16, 14, 14), (64, 16, 1, 1), {}, False),              # 16 input channels
    ((1, 64, 14, 14), (16, 64, 1, 1), {}, False),              # 16 output channels
    ((1, 64, 14, 14), (64, 64, 1, 1), {"stride": 2}, False),   # strided
    ((1, 64, 14, 14), (64, 64, 1, 1), {"padding": 1}, False),  # padded
    ((1, 64, 14, 14), (64, 32, 1, 1), {"groups": 2}, False),   # grouped
    ((1, 64, 14, 14), (64, 64, 3, 3), {"padding": 1}, False),  # not pointwise
])
def test_rule(xs, ws, kw, fits):
    spec = convreg.spec_for_shapes(xs, ws, **kw)
    assert _gradops.pointwise_fits(spec) == fits
    e = convreg.explain(xs, ws, op="conv2d_weight", backend="cython", **kw)
    assert ("pointwise" in e.reason) == fits, e


def test_nan_stays_in_its_column():
    """A NaN in one input channel reaches only that channel's gradient column."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 40, 9, 9)).astype(np.float32)
    go = rng.standard_normal((2, 36, 9, 9)).astype(np.float32)
    x[1, 7, 4, 4] = np.nan
    out = grad.conv2d_weight(x, (36, 40, 1, 1), go, backend="cython")
    assert np.isnan(out[:, 7]).all()
    assert not np.isnan(np.delete(out, 7, axis=1)).any()

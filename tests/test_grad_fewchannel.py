"""The weight gradient of few-channel layers by the compiled row-vectorised reduction
(``_gradops.weight_grad_rows``; kernel pyx/grad/wgrad_kernels.h): values against the
float64 reference within the harness bound, strides, dilations, paddings beyond the
kernel, groups, layouts, read-only inputs, thread counts, NaN locality, and the rule
that sends calls to it."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import convreg
from convreg import grad, harness
from convreg._dispatch.registry import available_backends
from convreg.backends import _gradops

pytestmark = pytest.mark.skipif(_gradops._gradutil is None,
                                reason="the compiled gradient helpers are not built")

FAST = [b for b in ("cython-direct", "cython-im2col", "cython") if b in available_backends()]


def _case(xs, ws, stride=1, padding=0, dilation=1, groups=1, dtype="float32", seed=0,
          layout="c"):
    return harness.Case("fewchannel", xs, ws, bias=False, stride=stride, padding=padding,
                        dilation=dilation, groups=groups, dtype=dtype, seed=seed,
                        layout=layout, op="conv2d_weight")


def _kernel(case, threads=1):
    """The kernel itself on the case's arrays (C-contiguous), bypassing every rule."""
    a = harness.case_arrays(case)
    spec = convreg.spec_for_shapes(case.input_shape, case.weight_shape, dtype=case.dtype,
                                   **{k: v for k, v in case.kwargs().items()
                                      if k != "padding_mode"})
    return _gradops.weight_grad_rows(spec, np.ascontiguousarray(a["x"]),
                                     np.ascontiguousarray(a["go"]), threads)


def _assert_within(out, case):
    ref, bound = harness.reference(case)
    assert out.shape == ref.shape and out.dtype == np.dtype(case.dtype)
    err = np.abs(out.astype(np.float64) - ref)
    assert np.all(err <= bound), f"worst {np.max(err / np.maximum(bound, 1e-300)):.3g} x bound"


def _grid():
    """A seeded sample of the feature grid: strides 1-3, dilations 1-2, paddings 0-3
    (beyond the kernel included), cig 1-4, groups, kernels 1x1..7x7, batch 1 and 3."""
    rng = np.random.default_rng(11)
    full = list(itertools.product((1, 2, 3), (1, 2), (0, 1, 3), (1, 2, 4), (1, 2),
                                  (1, 3, 5, 7), (1, 3)))
    picks = rng.choice(len(full), size=40, replace=False)
    for k in sorted(picks):
        s, d, p, cig, g, k_, n = full[k]
        h = max(k_ * d + 2, 9)
        yield (n, cig * g, h, h + 3), (2 * g, cig, k_, k_), s, p, d, g


GRID = list(_grid())
IDS = [f"x{xs}-w{ws}-s{s}-p{p}-d{d}-g{g}" for xs, ws, s, p, d, g in GRID]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("xs,ws,s,p,d,g", GRID, ids=IDS)
def test_kernel_within_bound(xs, ws, s, p, d, g, dtype):
    case = _case(xs, ws, s, p, d, g, dtype=dtype, seed=sum(xs) + sum(ws))
    _assert_within(_kernel(case), case)


CORNERS = [
    # (input, weight, stride, padding, dilation, groups)
    ((2, 1, 12, 12), (3, 1, 5, 5), 1, 0, 1, 1),            # MNIST-like, read in place
    ((1, 3, 23, 21), (5, 3, 7, 7), 2, 3, 1, 1),            # stem-like
    ((1, 2, 6, 6), (3, 2, 1, 1), 3, 3, 1, 1),              # padding beyond a 1x1 kernel
    ((1, 2, 5, 5), (2, 2, 3, 3), 1, 3, 2, 1),              # padding beyond a dilated kernel
    ((2, 4, 9, 40), (4, 1, 3, 3), 1, 1, 1, 4),             # depthwise, rows over 2 vectors
    ((1, 4, 9, 9), (8, 1, 3, 3), 2, 1, 1, 4),              # channel multiplier 2
    ((1, 2, 30, 3), (9, 2, 2, 3), (1, 2), (2, 0), (2, 1), 1),  # asymmetric, 1-wide output
    ((1, 1, 4, 17), (6, 1, 1, 17), 1, 0, 1, 1),            # one output column, 17 taps/row
    ((1, 2, 3, 3), (5, 2, 3, 3), 1, 0, 1, 1),              # one output pixel
    ((1, 1, 8, 8), (2, 1, 8, 8), 1, 0, 1, 1),              # kernel = input
    ((1, 1, 6, 6), (2, 1, 3, 3), 1, 1, 1, 1),              # ow < every vector width
    ((1, 2, 18, 20), (3, 2, 16, 16), 1, 0, 1, 1),          # 512 taps: three tap passes
]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("xs,ws,s,p,d,g", CORNERS, ids=[str(i) for i in range(len(CORNERS))])
def test_kernel_corners(xs, ws, s, p, d, g, dtype):
    case = _case(xs, ws, s, p, d, g, dtype=dtype, seed=7)
    _assert_within(_kernel(case), case)


@pytest.mark.parametrize("backend", FAST)
@pytest.mark.parametrize("layout", ["c", "fortran", "strided", "nhwc"])
def test_public_api_layouts_and_backends(backend, layout):
    case = _case((2, 3, 15, 13), (4, 3, 5, 5), 2, 2, 1, 1, dtype="float32", seed=3,
                 layout=layout)
    a = harness.case_arrays(case)
    assert layout == "c" or not a["x"].flags.c_contiguous
    x_before, go_before = a["x"].copy(), a["go"].copy()
    out = harness.run_case(case, backend, a)
    _assert_within(out, case)
    np.testing.assert_array_equal(a["x"], x_before)      # inputs never modified
    np.testing.assert_array_equal(a["go"], go_before)


@pytest.mark.parametrize("backend", FAST)
def test_read_only_inputs(backend):
    case = _case((1, 2, 11, 11), (6, 1, 3, 3), 1, 1, 1, 2, dtype="float64", seed=5)
    a = harness.case_arrays(case)
    for k in ("x", "go"):
        a[k].setflags(write=False)
    _assert_within(harness.run_case(case, backend, a), case)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_threads_give_equal_results(dtype):
    # enough work for the threaded path; the summation order depends only on the shapes
    case = _case((4, 3, 40, 40), (16, 3, 5, 5), 1, 2, 1, 1, dtype=dtype, seed=9)
    one, two = _kernel(case, 1), _kernel(case, 2)
    np.testing.assert_array_equal(one, two)
    _assert_within(two, case)
    spec = convreg.spec_for_shapes(case.input_shape, case.weight_shape, dtype=dtype,
                                   padding=2)
    assert _gradops._threads_for(spec.oh * spec.ow * 16 * 4 * 75, 2) == 2


def test_nan_stays_in_its_taps():
    # 5x5 kernel over 5x10: one output row, 6 columns. x[0, 0, 0, 9] is read only by tap
    # (0, 4) at output column 5, so only that tap's gradient is NaN (no lane of the
    # vectorised rows may multiply it by a zero).
    x = np.zeros((1, 1, 5, 10), np.float32)
    x[0, 0, 0, 9] = np.nan
    go = np.ones((1, 2, 1, 6), np.float32)
    spec = convreg.spec_for_shapes(x.shape, (2, 1, 5, 5), dtype="float32")
    gw = _gradops.weight_grad_rows(spec, x, go, 1)
    nan = np.isnan(gw)
    assert nan[:, 0, 0, 4].all() and nan.sum() == 2
    assert np.isfinite(gw[~nan]).all()


def test_nan_beyond_the_strided_windows_is_not_read():
    # stride 2 over 8 columns with a 3-wide kernel: windows end at column 6; column 7 and
    # the rows past the last window are never read.
    x = np.ones((1, 1, 8, 8))
    x[0, 0, :, 7] = np.nan
    x[0, 0, 7, :] = np.inf
    gw = grad.conv2d_weight(x, (1, 1, 3, 3), np.ones((1, 1, 3, 3)), stride=2,
                            backend="cython-im2col")
    np.testing.assert_array_equal(gw, np.full((1, 1, 3, 3), 9.0))


def test_offsets_are_checked_before_the_kernel():
    go = np.ones((1, 1, 2, 2), np.float32)
    gw = np.empty((1, 1), np.float32)
    toff = np.array([0], np.intp)
    with pytest.raises(ValueError, match="past the input buffer"):
        _gradops._gradutil.weight_grad_rows(np.ones(4, np.float32), 4, 0, 2, toff + 1, go,
                                            gw, 1, 1)
    with pytest.raises(ValueError, match="negative"):
        _gradops._gradutil.weight_grad_rows(np.ones(9, np.float32), 9, 0, 3, toff - 1, go,
                                            gw, 1, 1)
    with pytest.raises(ValueError, match="shapes"):
        _gradops._gradutil.weight_grad_rows(np.ones(9, np.float32), 9, 0, 3, toff, go,
                                            np.empty((2, 1), np.float32), 1, 1)


@pytest.mark.parametrize("shape,fits", [
    (((1, 3, 224, 224), (64, 3, 7, 7), dict(stride=2, padding=3)), True),    # stem
    (((64, 1, 28, 28), (32, 1, 5, 5), {}), True),                            # MNIST
    (((1, 128, 56, 56), (128, 1, 3, 3), dict(padding=1, groups=128)), True),  # depthwise
    (((1, 64, 56, 56), (64, 64, 3, 3), dict(padding=1)), "taps"),
    (((1, 128, 28, 28), (128, 128, 3, 3), dict(padding=1)), "taps"),
    (((1, 32, 56, 56), (64, 32, 3, 3), dict(padding=1)), True),
    (((1, 256, 56, 56), (64, 256, 1, 1), {}), "pointwise"),
    (((8, 128, 7, 7), (64, 128, 3, 3), dict(padding=1)), False),
    (((1, 256, 14, 14), (256, 256, 3, 3), dict(padding=1)), False),
    (((1, 512, 7, 7), (512, 512, 3, 3), dict(padding=1)), False),
])
def test_rule_sends_few_channel_layers_to_the_kernel(shape, fits, monkeypatch):
    """True: every fast backend runs the row kernel. "taps" / "pointwise": rows_fits, but
    cython-im2col (and so cython) runs its per-tap GEMMs (dense 3x3, >= 64 channels) or
    its pointwise GEMMs (1x1, >= 32 channels each way) first, measured faster, and
    cython-direct the row kernel."""
    assert _gradops.pointwise_fits(convreg.spec_for_shapes(
        shape[0], shape[1], dtype="float32", **shape[2])) is (fits == "pointwise")
    xs, ws, kw = shape
    spec = convreg.spec_for_shapes(xs, ws, dtype="float32", **kw)
    assert _gradops.rows_fits(spec) is bool(fits)
    assert _gradops.taps_nhwc_preferred(spec) is (fits == "taps")
    if not fits:
        return
    calls = []
    real = _gradops.weight_grad_rows
    monkeypatch.setattr(_gradops, "weight_grad_rows",
                        lambda *a: calls.append(1) or real(*a))
    x = np.zeros(xs, np.float32)
    go = np.zeros(spec.output_shape, np.float32)
    for backend in FAST:
        grad.conv2d_weight(x, ws, go, backend=backend, **kw)
    want = len(FAST) if fits is True else sum(b == "cython-direct" for b in FAST)
    assert len(calls) == want

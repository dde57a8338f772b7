"""Property-based tests (hypothesis) of the gradient operations and conv_transpose2d:
random valid configs through every built-in backend against the float64 reference
within the harness bound; the adjoint identity <conv2d(x), z> = <x, conv_transpose2d(z)>;
random invalid calls raise convreg's ValueError/TypeError, never anything else."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import convreg
from convreg import ConvregError, grad, harness
from convreg._dispatch.registry import available_backends
from convreg._frontend.grad import prepare_transpose

SETTINGS = settings(max_examples=50, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])
BACKENDS = [b for b in ("cython-direct", "cython-im2col", "cython") if b in available_backends()]


@st.composite
def grad_cases(draw):
    op = draw(st.sampled_from(["conv2d_input", "conv2d_weight", "conv_transpose2d"]))
    g = draw(st.sampled_from([1, 1, 2, 3]))
    cig, cog = draw(st.sampled_from([1, 1, 2, 3])), draw(st.integers(1, 3))   # 1: depthwise
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    dh, dw = draw(st.integers(1, 3)), draw(st.integers(1, 2))
    ph, pw = draw(st.integers(0, 4)), draw(st.integers(0, 4))
    n, h, w = draw(st.integers(1, 2)), draw(st.integers(1, 9)), draw(st.integers(1, 9))
    mode = "zeros" if op == "conv_transpose2d" else draw(
        st.sampled_from(["zeros", "reflect", "replicate", "circular"]))
    dtype = draw(st.sampled_from(["float32", "float64"]))
    unbatched = draw(st.booleans())
    case = harness.Case("hyp", (cig * g, h, w) if unbatched else (n, cig * g, h, w),
                        (cog * g, cig, kh, kw), bias=draw(st.booleans()), stride=(sh, sw),
                        padding=(ph, pw), dilation=(dh, dw), groups=g, padding_mode=mode,
                        dtype=dtype, seed=draw(st.integers(0, 2**20)))
    try:
        convreg.spec_for_shapes(case.input_shape if not unbatched else (1,) + case.input_shape,
                                case.weight_shape, **case.kwargs())
    except ConvregError:
        assume(False)
    if op == "conv_transpose2d":
        case = next(harness._transpose_grid_of([case]))
        op_h = draw(st.integers(0, max(sh, dh) - 1))
        case = replace(case, output_padding=(op_h, case.output_padding[1]))
        try:
            prepare_transpose(np.empty(case.input_shape, dtype), np.empty(case.weight_shape,
                                                                           dtype),
                              **case.kwargs())
        except ConvregError:
            assume(False)
    return replace(case, op=op)


@SETTINGS
@given(case=grad_cases())
def test_backends_within_the_bound(case):
    expected = harness.reference(case)
    for name in BACKENDS:
        r = harness.check_case(name, case, expected)
        assert r.ok, f"{name} {case}: {r.error}"


@SETTINGS
@given(case=grad_cases())
def test_transpose_is_adjoint(case):
    assume(case.op != "conv2d_weight" and case.padding_mode == "zeros")
    if case.op == "conv2d_input":
        x, w, _ = case.arrays()
        x = np.asarray(x, np.float64)
        w = np.asarray(w, np.float64)
        y = convreg.conv2d(x, w, **case.kwargs())
        z = np.random.default_rng(case.seed).standard_normal(y.shape)
        gx = grad.conv2d_input(x.shape, w, z, **case.kwargs())
        assert np.isclose((y * z).sum(), (x * gx).sum(), rtol=1e-9, atol=1e-9)


ARGS = st.one_of(st.integers(-2, 4), st.tuples(st.integers(-1, 3), st.integers(-1, 3)),
                 st.just("same"), st.just(None), st.just(1.5))


@SETTINGS
@given(size=st.one_of(st.tuples(*[st.integers(-1, 5)] * 4), st.tuples(st.integers(0, 5)),
                      st.just("x"), st.just(None)),
       go_shape=st.tuples(*[st.integers(0, 4)] * 4), stride=ARGS, padding=ARGS,
       dilation=ARGS, output_padding=ARGS, groups=st.integers(-1, 3))
def test_invalid_calls_raise_convreg_errors(size, go_shape, stride, padding, dilation,
                                            output_padding, groups):
    w = np.ones((2, 1, 2, 2), np.float32)
    go = np.ones(go_shape, np.float32)
    for call in (
        lambda: grad.conv2d_input(size, w, go, stride, padding, dilation, groups),
        lambda: grad.conv2d_weight(np.ones((1, 2, 4, 4), np.float32), size, go, stride,
                                   padding, dilation, groups),
        lambda: convreg.conv_transpose2d(go, w, None, stride, padding, output_padding,
                                         groups, dilation),
    ):
        try:
            call()
        except ConvregError:
            pass
        except (ValueError, TypeError) as exc:   # anything else is a bug
            raise AssertionError(f"not a convreg error: {type(exc).__name__}: {exc}")

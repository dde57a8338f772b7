"""Every registered backend against the float64 reference: the harness grid, random
property-based configurations, and invalid configurations that must raise.

``CONVREG_TEST_BACKEND=name pytest`` restricts the value tests here to one backend.
"""

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import convreg
from convreg.harness import LAYOUTS, Case, check_case, random_cases, standard_cases


def _backends():
    only = os.environ.get("CONVREG_TEST_BACKEND")
    if only:
        return [only]
    return [n for n in convreg.available_backends() if n != "python"] or ["python"]


BACKENDS = _backends()
GRID = standard_cases() + random_cases(30, seed=7)


@pytest.mark.parametrize("case", GRID, ids=lambda c: c.label())
@pytest.mark.parametrize("backend", BACKENDS)
def test_harness_grid(backend, case):
    result = check_case(backend, case)
    assert result.ok, result.error


@st.composite
def valid_cases(draw, dtype=None):
    depthwise = draw(st.booleans())
    if depthwise:
        g = draw(st.integers(2, 6))
        cig, cog = 1, draw(st.sampled_from([1, 1, 2]))
    else:
        g = draw(st.sampled_from([1, 1, 2, 3]))
        cig, cog = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    kh, kw = draw(st.integers(1, 7)), draw(st.integers(1, 7))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    dh, dw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    h, w = draw(st.integers(1, 20)), draw(st.integers(1, 20))
    mode = draw(st.sampled_from(["zeros", "zeros", "reflect", "replicate", "circular"]))
    pad = draw(st.one_of(
        st.tuples(st.integers(0, 4), st.integers(0, 4)),
        st.sampled_from(["valid", "same"] if (sh, sw) == (1, 1) else ["valid"])))
    n = draw(st.sampled_from([1, 1, 2, 0]))
    unbatched = draw(st.booleans()) and n == 1
    case = Case("hyp", (cig * g, h, w) if unbatched else (n, cig * g, h, w),
                (cog * g, cig, kh, kw), bias=draw(st.booleans()), stride=(sh, sw),
                padding=pad, dilation=(dh, dw), groups=g, padding_mode=mode,
                dtype=dtype or draw(st.sampled_from(["float32", "float64"])),
                layout=draw(st.sampled_from(LAYOUTS)), seed=draw(st.integers(0, 2**31)))
    try:
        convreg.spec_for_shapes(case.input_shape, case.weight_shape, **case.kwargs())
    except convreg.ConvregError:
        from hypothesis import assume

        assume(False)
    return case


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(case=valid_cases())
def test_random_valid_configs_agree(backend, case):
    result = check_case(backend, case)
    assert result.ok, f"{case}: {result.error}"


INVALID = st.one_of(
    st.fixed_dictionaries({"stride": st.sampled_from([0, -1, (1, 0), 1.5, True, (1, 2, 3), "2"])}),
    st.fixed_dictionaries({"dilation": st.sampled_from([0, -2, (0, 1), 2.0, None])}),
    st.fixed_dictionaries({"padding": st.sampled_from([-1, (0, -1), "full", "SAME", 1.0,
                                                       (1, 2, 3)])}),
    st.fixed_dictionaries({"groups": st.sampled_from([0, -1, 2, 5, 1.0, "1"])}),
    st.fixed_dictionaries({"padding_mode": st.sampled_from(["zero", "wrap", "", None, 1])}),
    st.fixed_dictionaries({"padding": st.just(7), "padding_mode": st.just("reflect")}),
    st.fixed_dictionaries({"padding": st.just(9), "padding_mode": st.just("circular")}),
    st.fixed_dictionaries({"padding": st.just("same"), "stride": st.just(2)}),
)


@settings(max_examples=80, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(bad=INVALID)
def test_random_invalid_configs_raise(bad, mock):
    # Validation happens in the front end, before any backend is chosen or called.
    x = np.ones((1, 3, 5, 5), np.float32)
    w = np.ones((4, 3, 3, 3), np.float32)
    with pytest.raises((convreg.ConvSpecError, convreg.ConvTypeError)) as info:
        convreg.conv2d(x, w, backend="mock", **bad)
    assert mock.ncalls == 0 and not mock.asked
    assert isinstance(info.value, (ValueError, TypeError))
    assert str(info.value)


@settings(max_examples=40, deadline=None)
@given(x_shape=st.lists(st.integers(0, 4), min_size=1, max_size=5),
       w_shape=st.lists(st.integers(0, 4), min_size=1, max_size=5),
       backend=st.sampled_from(BACKENDS))
def test_random_shapes_never_crash(x_shape, w_shape, backend):
    """Any pair of shapes either computes (matching the reference) or raises a ConvregError."""
    x = np.ones(x_shape, np.float32)
    w = np.ones(w_shape, np.float32)
    try:
        out = convreg.conv2d(x, w, backend=backend)
    except convreg.ConvregError as exc:
        assert isinstance(exc, (ValueError, TypeError))
        return
    ref = convreg.conv2d(x, w, backend="python")
    assert out.shape == ref.shape
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)


EXTREME = [
    ("stride-2**40-one-output-row", (1, 2, 5, 6), (3, 2, 3, 2), dict(stride=(2**40, 1))),
    ("stride-10**6-both", (1, 1, 4, 4), (2, 1, 2, 2), dict(stride=10**6, padding=1)),
    ("stride-far-apart", (1, 2, 3000, 3), (2, 2, 3, 3), dict(stride=(1499, 1), padding=1)),
    ("dilation-huge", (1, 1, 2, 3001), (1, 1, 1, 3), dict(dilation=(10**9, 1500))),
    ("padding-huge", (1, 1, 3, 3), (1, 1, 3, 3), dict(padding=(300, 1))),
]


@pytest.mark.parametrize("label, xs, ws, kw", EXTREME, ids=[e[0] for e in EXTREME])
@pytest.mark.parametrize("backend", BACKENDS)
def test_extreme_strides_dilations_paddings(backend, label, xs, ws, kw):
    """Valid calls with enormous hyper-parameters compute without blowing up memory."""
    case = Case(label, xs, ws, **kw)
    result = check_case(backend, case)
    assert result.ok, result.error

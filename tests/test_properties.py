"""Property-based tests (hypothesis): random valid configs against an independent NumPy
reference, random invalid configs always raise convreg's ValueError/TypeError."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import convreg
from convreg import ConvregError
from convreg.harness import summation_bound

SETTINGS = settings(max_examples=50, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])
NP_MODE = {"zeros": "constant", "reflect": "reflect", "replicate": "edge", "circular": "wrap"}


def numpy_conv(x, w, b, stride, pads, dilation, groups, mode):
    """Independent reference: np.pad for the mode, strided windows, one einsum per group.

    x (n, c_in, h, w), w (c_out, c_in/g, kh, kw), pads (top, bottom, left, right); float64.
    """
    (sh, sw), (dh, dw), (pt, pb, pl, pr) = stride, dilation, pads
    xp = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)), mode=NP_MODE[mode])
    n, c_in, hp, wp = xp.shape
    c_out, cig, kh, kw = w.shape
    oh = (hp - dh * (kh - 1) - 1) // sh + 1
    ow = (wp - dw * (kw - 1) - 1) // sw + 1
    # win[n, c, p, q, i, j] = xp[n, c, i*sh + p*dh, j*sw + q*dw]
    win = np.empty((n, c_in, kh, kw, oh, ow))
    for p in range(kh):
        for q in range(kw):
            win[:, :, p, q] = xp[:, :, p * dh: p * dh + sh * (oh - 1) + 1: sh,
                                 q * dw: q * dw + sw * (ow - 1) + 1: sw]
    cog = c_out // groups
    out = np.empty((n, c_out, oh, ow))
    for g in range(groups):
        # (n, cog, oh, ow) = sum_{c,p,q} (cog, cig, kh, kw) * (n, cig, kh, kw, oh, ow)
        out[:, g * cog:(g + 1) * cog] = np.einsum(
            "ocpq,ncpqij->noij", w[g * cog:(g + 1) * cog], win[:, g * cig:(g + 1) * cig])
    if b is not None:
        out += b[None, :, None, None]
    return out


@st.composite
def valid_configs(draw):
    groups = draw(st.sampled_from([1, 1, 2, 3]))
    depthwise = draw(st.booleans()) and groups > 1
    cig = 1 if depthwise else draw(st.integers(1, 3))
    cog = draw(st.integers(1, 2))
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    dh, dw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    mode = draw(st.sampled_from(["zeros", "reflect", "replicate", "circular"]))
    kind = draw(st.sampled_from(["int", "pair", "same", "valid"]))
    if kind == "same":
        sh = sw = 1
        stride = draw(st.sampled_from([1, (1, 1)]))
        padding = "same"
        th, tw = dh * (kh - 1), dw * (kw - 1)
        pads = (th // 2, th - th // 2, tw // 2, tw - tw // 2)
    else:
        sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
        stride = (sh, sw) if sh != sw or draw(st.booleans()) else sh
        if kind == "valid":
            padding, pads = "valid", (0, 0, 0, 0)
        elif kind == "int":
            p = draw(st.integers(0, 3))
            padding, pads = p, (p, p, p, p)
        else:
            ph, pw = draw(st.integers(0, 3)), draw(st.integers(0, 3))
            padding, pads = (ph, pw), (ph, ph, pw, pw)
    # smallest input the call accepts: output >= 1, reflect pad < size, circular pad <= size
    lo = []
    for span, before, after in ((dh * (kh - 1) + 1, pads[0], pads[1]),
                                (dw * (kw - 1) + 1, pads[2], pads[3])):
        m = max(1, span - before - after)
        if mode == "reflect":
            m = max(m, before + 1, after + 1)
        if mode == "circular":
            m = max(m, before, after)
        lo.append(m)
    h = draw(st.integers(lo[0], lo[0] + 5))
    w = draw(st.integers(lo[1], lo[1] + 5))
    n = draw(st.sampled_from([0, 1, 1, 2]))
    batched = draw(st.booleans()) or n != 1
    dtype = draw(st.sampled_from(["float32", "float64"]))
    bias = draw(st.booleans())
    seed = draw(st.integers(0, 2**32 - 1))
    layout = draw(st.sampled_from(["c", "fortran", "strided", "reversed", "readonly"]))
    dilation = (dh, dw) if dh != dw else draw(st.sampled_from([dh, (dh, dw)]))
    return dict(x_shape=(n, cig * groups, h, w) if batched else (cig * groups, h, w),
                w_shape=(cog * groups, cig, kh, kw), bias=bias, stride=stride,
                padding=padding, pads=pads, dilation=dilation, dh_dw=(dh, dw),
                sh_sw=(sh, sw), groups=groups, mode=mode, dtype=dtype, seed=seed,
                layout=layout)


def with_layout(x, layout):
    """The same values as ``x`` in another memory layout."""
    if layout == "fortran":
        return np.asfortranarray(x)
    if layout == "strided":
        big = np.zeros(x.shape + (2,), x.dtype)
        big[..., 0] = x
        return big[..., 0]
    if layout == "reversed":
        return np.ascontiguousarray(x[..., ::-1, ::-1])[..., ::-1, ::-1]
    if layout == "readonly":
        x = x.copy()
        x.flags.writeable = False
    return x


@SETTINGS
@given(cfg=valid_configs())
def test_python_backend_matches_numpy_reference(cfg):
    rng = np.random.default_rng(cfg["seed"])
    dt = cfg["dtype"]
    x = rng.standard_normal(cfg["x_shape"]).astype(dt)
    w = rng.standard_normal(cfg["w_shape"]).astype(dt)
    b = rng.standard_normal(cfg["w_shape"][0]).astype(dt) if cfg["bias"] else None
    xl = with_layout(x, cfg["layout"])
    out = convreg.conv2d(xl, w, b, stride=cfg["stride"], padding=cfg["padding"],
                         dilation=cfg["dilation"], groups=cfg["groups"],
                         padding_mode=cfg["mode"], backend="python")

    x4 = x.astype(np.float64) if x.ndim == 4 else x.astype(np.float64)[None]
    args = (cfg["sh_sw"], cfg["pads"], cfg["dh_dw"], cfg["groups"], cfg["mode"])
    ref = numpy_conv(x4, w.astype(np.float64), None if b is None else b.astype(np.float64),
                     *args)
    mag = numpy_conv(np.abs(x4), np.abs(w.astype(np.float64)),
                     None if b is None else np.abs(b.astype(np.float64)), *args)
    if x.ndim == 3:
        ref, mag = ref[0], mag[0]
    bound = summation_bound(mag, w.shape[1] * w.shape[2] * w.shape[3], dt)
    assert out.dtype == np.dtype(dt)
    assert out.shape == ref.shape
    assert np.all(np.abs(out.astype(np.float64) - ref) <= bound)


# ---------------------------------------------------------------------------- invalid


def _base(draw):
    groups = draw(st.sampled_from([1, 2]))
    return dict(input=np.zeros((1, 2 * groups, 5, 5), np.float32),
                weight=np.zeros((2 * groups, 2, 3, 3), np.float32),
                bias=draw(st.sampled_from([None, np.zeros(2 * groups, np.float32)])),
                stride=1, padding=draw(st.sampled_from([0, 1, "same", "valid"])), dilation=1,
                groups=groups, padding_mode=draw(st.sampled_from(
                    ["zeros", "reflect", "replicate", "circular"])))


BAD_INTS = [0, -1, -(10**30), 1.0, 1.5, True, False, None, "1", (1, 2, 3), (), [1, 0],
            (1, None), np.float64(2.0), 2**64, float("nan")]


@st.composite
def invalid_calls(draw):
    kw = _base(draw)
    what = draw(st.sampled_from(["stride", "dilation", "groups", "padding", "padding_mode",
                                 "input_dtype", "weight_dtype", "input_ndim", "weight_ndim",
                                 "bias", "channels", "same_stride", "too_small",
                                 "mixed_dtype", "ragged"]))
    if what in ("stride", "dilation"):
        kw[what] = draw(st.sampled_from(BAD_INTS))
    elif what == "groups":
        kw["groups"] = draw(st.sampled_from([0, -2, 1.0, True, "2", None, 3, 4 * 9 + 1]))
    elif what == "padding":
        kw["padding"] = draw(st.sampled_from(
            [-1, (0, -1), "SAME", "full", "", 1.5, None, True, (1, 1, 1), [], 10**30]))
    elif what == "padding_mode":
        kw["padding_mode"] = draw(st.sampled_from(["zero", "Reflect", "", None, 0, b"zeros",
                                                   ("zeros",)]))
    elif what in ("input_dtype", "weight_dtype"):
        key = "input" if what == "input_dtype" else "weight"
        dt = draw(st.sampled_from([np.float16, np.int32, np.int64, np.uint8, bool,
                                   np.complex64, np.complex128, object, "U3", "S2",
                                   np.longdouble, "M8[s]"]))
        kw[key] = kw[key].astype(dt)
    elif what == "input_ndim":
        kw["input"] = np.zeros(draw(st.sampled_from([(), (5,), (5, 5), (1, 1, 4, 5, 5)])),
                               np.float32)
    elif what == "weight_ndim":
        kw["weight"] = np.zeros(draw(st.sampled_from([(3, 3), (2, 3, 3), (2, 2, 1, 3, 3)])),
                                np.float32)
    elif what == "bias":
        kw["bias"] = np.zeros(draw(st.sampled_from([(1,), (5,), (2, 2), ()])), np.float32)
        if kw["bias"].shape == (kw["weight"].shape[0],):
            kw["bias"] = np.zeros((7,), np.float32)
    elif what == "channels":
        kw["input"] = np.zeros((1, 2 * kw["groups"] + 1, 5, 5), np.float32)
    elif what == "same_stride":
        kw.update(padding="same", stride=draw(st.sampled_from([2, (1, 2), (3, 1)])))
    elif what == "too_small":
        kw.update(input=np.zeros((1, kw["input"].shape[1], 2, 2), np.float32), padding=0)
    elif what == "mixed_dtype":
        kw["weight"] = kw["weight"].astype(np.float64)
    elif what == "ragged":
        kw["input"] = [[[[0.0] * 5] * 4 + [[0.0] * 4]] * kw["input"].shape[1]]
    return what, kw


@SETTINGS
@given(call=invalid_calls())
def test_invalid_calls_raise_convreg_errors(call):
    what, kw = call
    try:
        convreg.conv2d(**kw, backend="python")
    except ConvregError as exc:
        assert isinstance(exc, (ValueError, TypeError))
        assert str(exc)
    except Exception as exc:  # pragma: no cover - this is the failure being tested for
        pytest.fail(f"{what}: {type(exc).__name__} (not a ConvregError): {exc}")
    else:
        pytest.fail(f"{what}: no error for {kw!r}")


@SETTINGS
@given(stride=st.one_of(st.integers(-3, 3), st.sampled_from(BAD_INTS)),
       padding=st.one_of(st.integers(-2, 3), st.sampled_from(["same", "valid", "x"]),
                         st.tuples(st.integers(-1, 2), st.integers(-1, 2))),
       dilation=st.one_of(st.integers(-1, 3), st.sampled_from(BAD_INTS)),
       groups=st.integers(-1, 5),
       mode=st.sampled_from(["zeros", "reflect", "replicate", "circular", "nope"]),
       h=st.integers(1, 6), w=st.integers(1, 6), k=st.integers(1, 5), c=st.integers(1, 4))
def test_any_call_computes_or_raises_a_convreg_error(stride, padding, dilation, groups, mode,
                                                      h, w, k, c):
    x = np.ones((1, c, h, w))
    wt = np.ones((2, max(1, c // max(groups, 1)), k, k))
    try:
        out = convreg.conv2d(x, wt, stride=stride, padding=padding, dilation=dilation,
                             groups=groups, padding_mode=mode, backend="python")
    except ConvregError as exc:
        assert isinstance(exc, (ValueError, TypeError))
    else:
        assert isinstance(out, np.ndarray) and out.ndim == 4 and out.shape[:2] == (1, 2)
        assert np.isfinite(out).all()

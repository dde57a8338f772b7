"""Parity with ``torch.nn.Conv2d`` (skipped without torch): the same numbers within the
harness bound where torch computes, an error wherever torch raises."""

from __future__ import annotations

import zlib

import numpy as np
import pytest

import convreg
from convreg import harness
from convreg import ConvregError
from convreg.harness import compare

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same':UserWarning")

MODES = ["zeros", "reflect", "replicate", "circular"]


def torch_conv(x, w, b, stride=1, padding=0, dilation=1, groups=1, padding_mode="zeros"):
    """torch.nn.Conv2d built from the call, weights loaded, run on x; numpy result."""
    x, w = torch.as_tensor(np.asarray(x)), torch.as_tensor(np.asarray(w))
    b = None if b is None else torch.as_tensor(np.asarray(b))
    m = torch.nn.Conv2d(x.shape[-3], w.shape[0], tuple(w.shape[2:]), stride=stride,
                        padding=padding, dilation=dilation, groups=groups,
                        bias=b is not None, padding_mode=padding_mode, dtype=w.dtype)
    with torch.no_grad():
        m.weight.data = w
        if b is not None:
            m.bias.data = b
        return m(x).numpy()


def reference_and_bound(x, w, b, dtype, **kw):
    return harness.reference_and_bound(x, w, b, dtype=dtype, **kw)


# (id, input shape, weight shape, kwargs)
GRID = [
    ("plain", (2, 3, 7, 6), (4, 3, 3, 3), {}),
    ("stride2", (1, 3, 9, 8), (2, 3, 3, 3), dict(stride=2, padding=1)),
    ("stride(1,3)", (1, 2, 7, 10), (3, 2, 2, 3), dict(stride=(1, 3), padding=(2, 1))),
    ("pad(0,2)", (1, 2, 6, 5), (2, 2, 3, 3), dict(padding=(0, 2))),
    ("same-odd", (1, 2, 6, 7), (3, 2, 3, 5), dict(padding="same")),
    ("same-even", (1, 2, 6, 7), (3, 2, 4, 2), dict(padding="same")),
    ("same-dilated", (1, 2, 8, 9), (2, 2, 2, 3), dict(padding="same", dilation=(3, 2))),
    ("valid", (1, 2, 6, 7), (3, 2, 4, 2), dict(padding="valid")),
    ("dilation", (1, 2, 9, 9), (2, 2, 3, 3), dict(dilation=(2, 3), padding=1)),
    ("groups", (2, 6, 6, 6), (4, 3, 3, 3), dict(groups=2, padding=1)),
    ("groups3", (1, 6, 7, 7), (9, 2, 2, 2), dict(groups=3, stride=2, padding=1)),
    ("depthwise", (2, 4, 8, 7), (4, 1, 3, 3), dict(groups=4, padding=1)),
    ("depthwise-x2-s2", (1, 3, 9, 9), (6, 1, 5, 5), dict(groups=3, stride=2, padding=2)),
    ("unbatched", (3, 6, 5), (2, 3, 3, 3), dict(padding=1)),
    ("batch0", (0, 2, 5, 5), (3, 2, 3, 3), dict(padding=1)),
    ("1x1", (2, 5, 4, 4), (3, 5, 1, 1), {}),
    ("reflect-max", (1, 1, 4, 3), (1, 1, 3, 3), dict(padding=(3, 2))),
    ("pad-equals-size", (1, 1, 3, 2), (1, 1, 3, 3), dict(padding=(3, 2))),
]


def _applies(mode, shape, kw):
    """Skip combinations the mode rejects (checked against torch in the error tests)."""
    h, w = shape[-2:]
    pad = kw.get("padding", 0)
    if isinstance(pad, str):
        return True
    ph, pw = (pad, pad) if isinstance(pad, int) else pad
    if mode == "reflect":
        return ph < h and pw < w
    if mode == "circular":
        return ph <= h and pw <= w
    return True


CASES = [pytest.param(name, xs, ws, kw, mode, id=f"{name}-{mode}")
         for name, xs, ws, kw in GRID for mode in MODES if _applies(mode, xs, kw)]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("name, xs, ws, kw, mode", CASES)
def test_matches_torch_module(name, xs, ws, kw, mode, bias, dtype):
    rng = np.random.default_rng(zlib.crc32(f"{name}-{mode}-{bias}-{dtype}".encode()))
    x = rng.standard_normal(xs).astype(dtype)
    w = rng.standard_normal(ws).astype(dtype)
    b = rng.standard_normal(ws[0]).astype(dtype) if bias else None
    kw = dict(kw, padding_mode=mode)
    expected = torch_conv(x, w, b, **kw)
    got = convreg.conv2d(x, w, b, backend="python", **kw)
    assert got.shape == expected.shape and got.dtype == expected.dtype
    ref, bound = reference_and_bound(x, w, b, dtype, **kw)
    for out, who in ((got, "convreg"), (expected, "torch")):
        ok, worst, msg = compare(out, ref, bound, dtype)
        assert ok, f"{who}: {msg}"


@pytest.mark.parametrize("mode", MODES)
def test_torch_backend_agrees(mode):
    """The torch plugin backend, through convreg's front end, on a padded grouped call."""
    assert "torch" in convreg.available_backends()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 4, 7, 6)).astype(np.float32)
    w = rng.standard_normal((6, 2, 4, 3)).astype(np.float32)
    b = rng.standard_normal(6).astype(np.float32)
    kw = dict(padding="same", groups=2, padding_mode=mode)
    got = convreg.conv2d(x, w, b, backend="torch", **kw)
    ref, bound = reference_and_bound(x, w, b, "float32", **kw)
    ok, _, msg = compare(got, ref, bound, "float32")
    assert ok, msg


def test_torch_backend_passes_the_harness():
    from convreg.harness import run_checks
    report = run_checks(["torch"])
    assert report.ok, report.table()


def test_torch_tensors_as_input():
    x = torch.arange(9, dtype=torch.float32).reshape(1, 1, 3, 3)
    w = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    out = convreg.conv2d(x, w, backend="python")
    assert isinstance(out, np.ndarray) and out.dtype == np.float32
    np.testing.assert_array_equal(out, [[[[27, 37], [57, 67]]]])
    # a tensor that requires grad, and a non-contiguous one
    w2 = w.clone().requires_grad_(True)
    np.testing.assert_array_equal(convreg.conv2d(x.transpose(2, 3).transpose(2, 3), w2,
                                                 backend="python"), out)


@pytest.mark.parametrize("dtype", ["bfloat16", "float16", "int32", "complex64", "bool"])
def test_unsupported_tensor_dtypes_are_conv_type_errors(dtype):
    t = torch.ones(1, 1, 2, 2, dtype=getattr(torch, dtype))
    w = np.ones((1, 1, 1, 1), np.float32)
    with pytest.raises(convreg.ConvTypeError, match=r"input"):
        convreg.conv2d(t, w, backend="python")
    with pytest.raises(convreg.ConvTypeError, match=r"weight"):
        convreg.conv2d(np.ones((1, 1, 2, 2), np.float32), t[:, :, :1, :1], backend="python")


def z(*shape, dtype=np.float32):
    return np.zeros(shape, dtype)


# (id, x, w, b, kwargs): torch raises for each; so must convreg (ValueError/TypeError).
# (Integer and complex arrays are computed by torch but refused by convreg by design:
# DESIGN 1 allows float32/float64 only; test_spec.py checks those messages.)
INVALID = [
    ("input-2d", z(4, 4), z(1, 1, 3, 3), None, {}),
    ("weight-3d", z(1, 1, 4, 4), z(1, 3, 3), None, {}),
    ("channels", z(1, 3, 5, 5), z(2, 2, 3, 3), None, {}),
    ("groups-cin", z(1, 3, 5, 5), z(2, 1, 3, 3), None, dict(groups=2)),
    ("groups-cout", z(1, 4, 5, 5), z(3, 2, 3, 3), None, dict(groups=2)),
    ("groups-0", z(1, 1, 5, 5), z(1, 1, 3, 3), None, dict(groups=0)),
    ("stride-0", z(1, 1, 5, 5), z(1, 1, 3, 3), None, dict(stride=0)),
    ("stride-neg", z(1, 1, 5, 5), z(1, 1, 3, 3), None, dict(stride=(1, -1))),
    ("dilation-0", z(1, 1, 5, 5), z(1, 1, 3, 3), None, dict(dilation=0)),
    ("padding-neg", z(1, 1, 5, 5), z(1, 1, 3, 3), None, dict(padding=-1)),
    ("padding-str", z(1, 1, 5, 5), z(1, 1, 3, 3), None, dict(padding="full")),
    ("padding-triple", z(1, 1, 5, 5), z(1, 1, 3, 3), None, dict(padding=(1, 1, 1))),
    ("padding-mode", z(1, 1, 5, 5), z(1, 1, 3, 3), None, dict(padding_mode="zero")),
    ("same-stride", z(1, 1, 5, 5), z(1, 1, 3, 3), None, dict(padding="same", stride=2)),
    ("reflect-eq", z(1, 1, 3, 5), z(1, 1, 3, 3), None, dict(padding=3, padding_mode="reflect")),
    ("reflect-same", z(1, 1, 2, 2), z(1, 1, 3, 3), None,
     dict(padding="same", dilation=2, padding_mode="reflect")),
    ("circular-gt", z(1, 1, 1, 1), z(1, 1, 3, 3), None,
     dict(padding=2, padding_mode="circular")),
    ("output-0", z(1, 1, 2, 2), z(1, 1, 3, 3), None, {}),
    ("output-0-stride", z(1, 1, 2, 5), z(1, 1, 3, 3), None, dict(stride=2)),
    ("output-0-dilation", z(1, 1, 5, 5), z(1, 1, 3, 3), None, dict(dilation=3)),
    ("empty-h", z(1, 1, 0, 5), z(1, 1, 1, 1), None, {}),
    ("kernel-0", z(1, 1, 5, 5), z(1, 1, 0, 3), None, {}),
    ("cout-0", z(1, 1, 5, 5), z(0, 1, 3, 3), None, {}),
    ("bias-len", z(1, 1, 5, 5), z(2, 1, 3, 3), z(3), {}),
    ("bias-2d", z(1, 1, 5, 5), z(1, 1, 3, 3), z(1, 1), {}),
    ("dtype-mix", z(1, 1, 5, 5), z(1, 1, 3, 3, dtype=np.float64), None, {}),
    ("bias-dtype", z(1, 1, 5, 5), z(1, 1, 3, 3), z(1, dtype=np.float64), {}),
    ("stride-float", z(1, 1, 5, 5), z(1, 1, 3, 3), None, dict(stride=1.5)),
]


def _torch_functional(x, w, b, stride=1, padding=0, dilation=1, groups=1,
                      padding_mode="zeros"):
    if padding_mode != "zeros":
        return torch_conv(x, w, b, stride, padding, dilation, groups, padding_mode)
    return torch.nn.functional.conv2d(
        torch.as_tensor(x), torch.as_tensor(w), None if b is None else torch.as_tensor(b),
        stride=stride, padding=padding, dilation=dilation, groups=groups)


@pytest.mark.parametrize("x, w, b, kw", [pytest.param(*e[1:], id=e[0]) for e in INVALID])
def test_invalid_where_torch_raises(x, w, b, kw):
    with pytest.raises(Exception):
        _torch_functional(x, w, b, **kw)
    with pytest.raises((ValueError, TypeError)) as info:
        convreg.conv2d(x, w, b, backend="python", **kw)
    assert isinstance(info.value, ConvregError)

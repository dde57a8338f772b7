"""The ``Conv2d`` layer: init, seed, repr, state dict, argument checks."""

from __future__ import annotations

import math
from collections import OrderedDict

import numpy as np
import pytest
from numpy.testing import assert_array_equal

import convreg
from convreg import Conv2d, ConvSpecError, ConvTypeError


@pytest.mark.parametrize("args, fan_in", [
    ((1, 1, 3), 9), ((16, 32, 3), 144), ((4, 6, (3, 5)), 60), ((8, 8, 3, 1, 1, 1, 4), 18),
    ((3, 6, 1), 3),
], ids=["1-1-3", "16-32-3", "4-6-3x5", "groups4", "1x1"])
def test_init_bounds(args, fan_in):
    layer = Conv2d(*args, seed=0)
    bound = 1 / math.sqrt(fan_in)
    assert layer.weight.shape[1] * layer.weight.shape[2] * layer.weight.shape[3] == fan_in
    assert np.abs(layer.weight).max() <= bound
    assert np.abs(layer.bias).max() <= bound
    assert layer.weight.dtype == np.float32 and layer.bias.dtype == np.float32


def test_init_fills_the_interval():
    layer = Conv2d(64, 64, 3, seed=1)             # 36864 weights, fan_in 576
    bound = 1 / math.sqrt(576)
    w = layer.weight
    assert w.min() < -0.99 * bound and w.max() > 0.99 * bound
    assert abs(w.mean()) < 0.02 * bound
    # uniform: the standard deviation is bound / sqrt(3)
    assert abs(w.std() - bound / math.sqrt(3)) < 0.02 * bound
    b = Conv2d(576, 4096, 1, seed=2).bias         # bias uses the same bound
    assert b.min() < -0.99 * bound and b.max() > 0.99 * bound and np.abs(b).max() <= bound


def test_seed_reproducible():
    a, b = Conv2d(3, 4, 3, seed=7), Conv2d(3, 4, 3, seed=7)
    assert_array_equal(a.weight, b.weight)
    assert_array_equal(a.bias, b.bias)
    c = Conv2d(3, 4, 3, seed=8)
    assert not np.array_equal(a.weight, c.weight)
    d, e = Conv2d(3, 4, 3), Conv2d(3, 4, 3)
    assert not np.array_equal(d.weight, e.weight)
    a.reset_parameters(7)
    assert_array_equal(a.weight, b.weight)


def test_seed_example_from_readme():
    layer = Conv2d(1, 1, 3)
    x = np.random.default_rng(0).standard_normal((1, 1, 4, 4)).astype(np.float32)
    assert x.shape == (1, 1, 4, 4)
    assert layer.weight.shape == (1, 1, 3, 3)
    assert layer(x).shape == (1, 1, 2, 2)


def test_forward_is_conv2d():
    layer = Conv2d(4, 6, (3, 2), stride=(2, 1), padding=1, dilation=(1, 2), groups=2,
                   padding_mode="replicate", seed=3, backend="python")
    x = np.random.default_rng(0).standard_normal((2, 4, 7, 8)).astype(np.float32)
    expected = convreg.conv2d(x, layer.weight, layer.bias, stride=(2, 1), padding=1,
                              dilation=(1, 2), groups=2, padding_mode="replicate",
                              backend="python")
    assert_array_equal(layer(x), expected)
    assert_array_equal(layer.forward(x), expected)
    assert layer(x[0]).shape == expected.shape[1:]


def test_hand_computed_forward():
    layer = Conv2d(1, 1, 2, bias=True, seed=0, backend="python")
    layer.load_state_dict({"weight": [[[[1, 2], [3, 4]]]], "bias": [1]})
    out = layer(np.arange(9, dtype=np.float32).reshape(1, 1, 3, 3))
    assert_array_equal(out, [[[[28, 38], [58, 68]]]])


def test_layer_backend_and_selection(mock):
    x = np.ones((1, 1, 3, 3), np.float32)
    assert (Conv2d(1, 1, 2, backend="mock")(x) == 7).all()
    with convreg.use_backend("mock"):
        assert (Conv2d(1, 1, 2)(x) == 7).all()
    assert mock.ncalls == 2


@pytest.mark.parametrize("kwargs, expected", [
    (dict(in_channels=1, out_channels=1, kernel_size=3),
     "Conv2d(1, 1, kernel_size=(3, 3), stride=(1, 1))"),
    (dict(in_channels=3, out_channels=8, kernel_size=3),
     "Conv2d(3, 8, kernel_size=(3, 3), stride=(1, 1))"),
    (dict(in_channels=4, out_channels=8, kernel_size=(3, 5), stride=(2, 1), padding=(1, 2),
          dilation=2, groups=2, bias=False, padding_mode="reflect"),
     "Conv2d(4, 8, kernel_size=(3, 5), stride=(2, 1), padding=(1, 2), dilation=(2, 2), "
     "groups=2, bias=False, padding_mode=reflect)"),
    (dict(in_channels=2, out_channels=2, kernel_size=2, padding="same"),
     "Conv2d(2, 2, kernel_size=(2, 2), stride=(1, 1), padding=same)"),
    (dict(in_channels=2, out_channels=2, kernel_size=2, padding="valid"),
     "Conv2d(2, 2, kernel_size=(2, 2), stride=(1, 1), padding=valid)"),
    (dict(in_channels=2, out_channels=2, kernel_size=1, padding=0, dilation=(1, 1)),
     "Conv2d(2, 2, kernel_size=(1, 1), stride=(1, 1))"),
    (dict(in_channels=3, out_channels=3, kernel_size=3, padding=1, groups=3,
          padding_mode="circular"),
     "Conv2d(3, 3, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1), groups=3, "
     "padding_mode=circular)"),
], ids=["1-1-3", "3-8-3", "everything", "same", "valid", "defaults-explicit", "depthwise"])
def test_repr_like_torch(kwargs, expected):
    assert repr(Conv2d(**kwargs)) == expected
    try:
        import torch
    except ImportError:
        return
    assert repr(torch.nn.Conv2d(**kwargs)) == expected


def test_repr_extras():
    assert repr(Conv2d(1, 2, 3, dtype="float64")) == \
        "Conv2d(1, 2, kernel_size=(3, 3), stride=(1, 1), dtype=float64)"
    assert repr(Conv2d(1, 2, 3, backend="python")) == \
        "Conv2d(1, 2, kernel_size=(3, 3), stride=(1, 1), backend='python')"


def test_state_dict_round_trip():
    a = Conv2d(3, 4, 3, padding=1, seed=1)
    b = Conv2d(3, 4, 3, padding=1, seed=2)
    sd = a.state_dict()
    assert isinstance(sd, OrderedDict) and list(sd) == ["weight", "bias"]
    b.load_state_dict(sd)
    assert_array_equal(b.weight, a.weight)
    assert_array_equal(b.bias, a.bias)
    x = np.random.default_rng(0).standard_normal((1, 3, 5, 5)).astype(np.float32)
    assert_array_equal(a(x), b(x))
    # loaded values are copies: later changes to the source do not leak in
    a.weight[...] = 0
    assert not (b.weight == 0).all()


def test_load_state_dict_casts_and_accepts_lists():
    layer = Conv2d(1, 2, 1, seed=0)
    layer.load_state_dict({"weight": np.ones((2, 1, 1, 1), np.float64), "bias": [1, 2]})
    assert layer.weight.dtype == np.float32 and layer.bias.dtype == np.float32
    assert_array_equal(layer.bias, [1, 2])


def test_load_state_dict_strict_keys():
    layer = Conv2d(1, 2, 3, seed=0)
    w = np.zeros((2, 1, 3, 3), np.float32)
    with pytest.raises(ConvSpecError, match=r"missing keys \['bias'\], unexpected keys \[\]"):
        layer.load_state_dict({"weight": w})
    with pytest.raises(ConvSpecError, match=r"unexpected keys \['running_mean'\]"):
        layer.load_state_dict({"weight": w, "bias": np.zeros(2), "running_mean": 1})
    before = layer.bias.copy()
    layer.load_state_dict({"weight": w}, strict=False)
    assert (layer.weight == 0).all()
    assert_array_equal(layer.bias, before)


@pytest.mark.parametrize("sd, exc, match", [
    ({"weight": np.zeros((2, 1, 3, 2)), "bias": np.zeros(2)}, ConvSpecError,
     r"state_dict\['weight'\] has shape \(2, 1, 3, 2\), but the layer's weight has shape "
     r"\(2, 1, 3, 3\)"),
    ({"weight": np.zeros((2, 1, 3, 3)), "bias": np.zeros(3)}, ConvSpecError,
     r"state_dict\['bias'\] has shape \(3,\)"),
    ({"weight": np.zeros((2, 1, 3, 3), complex), "bias": np.zeros(2)}, ConvTypeError,
     r"state_dict\['weight'\] must hold real numbers.*complex128"),
    ({"weight": np.full((2, 1, 3, 3), "x"), "bias": np.zeros(2)}, ConvTypeError,
     r"state_dict\['weight'\] must hold real numbers"),
], ids=["weight-shape", "bias-shape", "complex", "strings"])
def test_load_state_dict_errors_leave_layer_unchanged(sd, exc, match):
    layer = Conv2d(1, 2, 3, seed=0)
    w, b = layer.weight.copy(), layer.bias.copy()
    with pytest.raises(exc, match=match):
        layer.load_state_dict(sd)
    assert_array_equal(layer.weight, w)
    assert_array_equal(layer.bias, b)


def test_no_bias():
    layer = Conv2d(2, 3, 1, bias=False, seed=0)
    assert layer.bias is None
    assert list(layer.state_dict()) == ["weight"]
    x = np.ones((1, 2, 2, 2), np.float32)
    out = layer(x)
    assert_array_equal(out[0, :, 0, 0], layer.weight[:, :, 0, 0].sum(axis=1))
    with pytest.raises(ConvSpecError, match=r"unexpected keys \['bias'\]"):
        layer.load_state_dict({"weight": layer.weight, "bias": np.zeros(3)})


@pytest.mark.parametrize("dtype", ["float64", np.float64, np.dtype("float64")],
                         ids=["str", "type", "dtype"])
def test_float64_layer(dtype):
    layer = Conv2d(2, 3, 3, dtype=dtype, seed=0)
    assert layer.weight.dtype == np.float64 and layer.bias.dtype == np.float64
    out = layer(np.ones((1, 2, 4, 4)))
    assert out.dtype == np.float64
    with pytest.raises(ConvTypeError, match="share one dtype"):
        layer(np.ones((1, 2, 4, 4), np.float32))
    a, b = Conv2d(2, 3, 3, dtype=dtype, seed=5), Conv2d(2, 3, 3, seed=5)
    assert_array_equal(a.weight.astype(np.float32), b.weight)   # same draws, either dtype


LAYER_ERRORS = [
    ((0, 1, 3), {}, ConvSpecError, r"in_channels must be >= 1, but got in_channels=0"),
    ((-1, 1, 3), {}, ConvSpecError, r"in_channels=-1"),
    ((1.5, 1, 3), {}, ConvTypeError, r"in_channels must be an int, but got in_channels=1\.5"),
    (("3", 1, 3), {}, ConvTypeError, r"in_channels='3'"),
    ((True, 1, 3), {}, ConvTypeError, r"in_channels=True"),
    ((1, 0, 3), {}, ConvSpecError, r"out_channels must be >= 1, but got out_channels=0"),
    ((1, 1, 0), {}, ConvSpecError, r"kernel_size must be >= 1, but got kernel_size=0"),
    ((1, 1, (3, 0)), {}, ConvSpecError, r"kernel_size=\(3, 0\)"),
    ((1, 1, (3, 3, 3)), {}, ConvTypeError, r"kernel_size=\(3, 3, 3\)"),
    ((1, 1, 2.5), {}, ConvTypeError, r"kernel_size=2\.5"),
    ((1, 1, 3), dict(stride=0), ConvSpecError, r"stride=0"),
    ((1, 1, 3), dict(padding=-1), ConvSpecError, r"padding=-1"),
    ((1, 1, 3), dict(padding="full"), ConvSpecError, r"padding='full'"),
    ((1, 1, 3), dict(padding="same", stride=2), ConvSpecError, r"padding='same'.*stride"),
    ((1, 1, 3), dict(dilation=(1, 0)), ConvSpecError, r"dilation=\(1, 0\)"),
    ((3, 4, 3), dict(groups=2), ConvSpecError,
     r"in_channels must be divisible by groups, but got in_channels=3 and groups=2"),
    ((4, 3, 3), dict(groups=2), ConvSpecError, r"out_channels=3 and groups=2"),
    ((1, 1, 3), dict(groups=0), ConvSpecError, r"groups=0"),
    ((1, 1, 3), dict(padding_mode="zero"), ConvSpecError, r"padding_mode='zero'"),
    ((1, 1, 3), dict(bias="yes"), ConvTypeError, r"bias must be True or False, but got "
                                                 r"bias='yes'"),
    ((1, 1, 3), dict(bias=1), ConvTypeError, r"bias=1"),
    ((1, 1, 3), dict(dtype="float16"), ConvTypeError,
     r"dtype must be one of \['float32', 'float64'\], but got dtype='float16'"),
    ((1, 1, 3), dict(dtype=np.int32), ConvTypeError, r"dtype must be one of"),
    ((1, 1, 3), dict(dtype="bogus"), ConvTypeError, r"dtype='bogus'"),
]


def _ctor_id(args, kwargs):
    return "Conv2d" + repr(args).replace(" ", "") + "".join(
        f"-{k}={v!r}" for k, v in kwargs.items())


@pytest.mark.parametrize("args, kwargs, exc, match", LAYER_ERRORS,
                         ids=[_ctor_id(e[0], e[1]) for e in LAYER_ERRORS])
def test_invalid_constructor_args(args, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        Conv2d(*args, **kwargs)


def test_layer_reflect_too_small_input_is_a_call_error():
    layer = Conv2d(1, 1, 3, padding=3, padding_mode="reflect", seed=0)
    with pytest.raises(ConvSpecError, match="reflect"):
        layer(np.ones((1, 1, 3, 3), np.float32))


# ---------------------------------------------------------------------------- with torch

TORCH_CONFIGS = [
    dict(in_channels=3, out_channels=4, kernel_size=3),
    dict(in_channels=4, out_channels=6, kernel_size=(3, 2), stride=(2, 1), padding=(1, 2),
         dilation=(1, 2), groups=2, padding_mode="reflect"),
    dict(in_channels=3, out_channels=3, kernel_size=3, padding="same", groups=3, bias=False,
         padding_mode="circular"),
    dict(in_channels=2, out_channels=5, kernel_size=4, padding="same",
         padding_mode="replicate"),
]


@pytest.mark.parametrize("cfg", TORCH_CONFIGS, ids=["plain", "reflect-groups", "depthwise",
                                                    "same-even-replicate"])
def test_load_torch_state_dict_matches_torch(cfg):
    torch = pytest.importorskip("torch")
    from convreg.harness import compare, summation_bound

    torch.manual_seed(0)
    tl = torch.nn.Conv2d(**cfg)
    layer = Conv2d(**cfg, backend="python")
    layer.load_state_dict(tl.state_dict())
    assert_array_equal(layer.weight, tl.weight.detach().numpy())
    x = np.random.default_rng(0).standard_normal((2, cfg["in_channels"], 7, 6)).astype(
        np.float32)
    with torch.no_grad():
        expected = tl(torch.from_numpy(x)).numpy()
    got = layer(x)
    # within the harness bound, computed from the magnitudes
    w64 = np.abs(layer.weight.astype(np.float64))
    b64 = None if layer.bias is None else np.abs(layer.bias.astype(np.float64))
    mag_layer = Conv2d(**{**cfg, "bias": layer.bias is not None}, dtype="float64",
                       backend="python")
    mag_layer.load_state_dict({"weight": w64, **({} if b64 is None else {"bias": b64})})
    mag = mag_layer(np.abs(x.astype(np.float64)))
    terms = layer.weight.shape[1] * layer.weight.shape[2] * layer.weight.shape[3]
    ok, worst, msg = compare(got, expected.astype(np.float64),
                             summation_bound(mag, terms, "float32"), "float32")
    assert ok, msg
    assert got.shape == expected.shape


def test_torch_tensors_as_layer_input_and_state():
    torch = pytest.importorskip("torch")
    tl = torch.nn.Conv2d(2, 2, 1, dtype=torch.float64)
    layer = Conv2d(2, 2, 1, dtype="float64", backend="python")
    layer.load_state_dict(OrderedDict((k, v) for k, v in tl.state_dict().items()))
    x = torch.ones(1, 2, 2, 2, dtype=torch.float64)
    out = layer(x)
    assert isinstance(out, np.ndarray)
    np.testing.assert_allclose(out, tl(x).detach().numpy(), rtol=1e-12)


def test_call_dispatches_to_an_overridden_forward():
    class Doubled(Conv2d):
        def forward(self, input):
            return 2 * super().forward(input)

    layer = Doubled(1, 1, 1, bias=False, seed=0, backend="python")
    layer.load_state_dict({"weight": [[[[1.0]]]]})
    x = np.ones((1, 1, 2, 2), np.float32)
    assert_array_equal(layer(x), 2 * x)
    assert_array_equal(layer.forward(x), 2 * x)


@pytest.mark.parametrize("dtype, expected", [(None, np.float32), (">f4", np.float32),
                                             (">f8", np.float64)],
                         ids=["None-is-default", "big-endian-f4", "big-endian-f8"])
def test_layer_dtype_defaults_and_native_order(dtype, expected):
    layer = convreg.Conv2d(2, 3, 3, dtype=dtype, seed=0)
    assert layer.weight.dtype == np.dtype(expected) and layer.weight.dtype.isnative
    assert "dtype=" not in repr(layer) or expected is np.float64

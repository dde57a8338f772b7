"""ConvTranspose2d, and backward / zero_grad on both layers."""

from __future__ import annotations

import math

import numpy as np
import pytest

import convreg


# ------------------------------------------------------------------ ConvTranspose2d basics
def test_transpose_layer_shapes_and_init():
    layer = convreg.ConvTranspose2d(4, 6, 3, stride=2, groups=2, seed=0)
    assert layer.weight.shape == (4, 3, 3, 3) and layer.bias.shape == (6,)
    assert layer.weight.dtype == np.float32
    bound = 1 / math.sqrt(3 * 3 * 3)            # fan_in = weight.shape[1] * kh * kw
    assert np.abs(layer.weight).max() <= bound and np.abs(layer.bias).max() <= bound
    assert np.abs(layer.weight).max() > 0.8 * bound
    again = convreg.ConvTranspose2d(4, 6, 3, stride=2, groups=2, seed=0)
    np.testing.assert_array_equal(layer.weight, again.weight)
    assert convreg.ConvTranspose2d(4, 6, 3, bias=False).bias is None
    out = layer(np.zeros((1, 4, 5, 5), np.float32))
    assert out.shape == (1, 6, 11, 11)


def test_transpose_layer_errors():
    with pytest.raises(convreg.ConvSpecError, match="output_padding must be smaller"):
        convreg.ConvTranspose2d(2, 2, 3, stride=2, output_padding=2)
    with pytest.raises(convreg.ConvSpecError, match='Only "zeros" padding mode'):
        convreg.ConvTranspose2d(2, 2, 3, padding_mode="reflect")
    with pytest.raises(convreg.ConvTypeError, match="padding of ConvTranspose2d"):
        convreg.ConvTranspose2d(2, 2, 3, padding="same")
    layer = convreg.ConvTranspose2d(2, 2, 3, stride=2, padding=1)
    with pytest.raises(convreg.ConvSpecError, match="output_size=.* between 7 and 8"):
        layer(np.zeros((1, 2, 4, 4), np.float32), output_size=(9, 9))


@pytest.mark.parametrize("kwargs", [
    dict(),
    dict(stride=2, padding=1, output_padding=1),
    dict(stride=(2, 1), padding=(1, 0), dilation=2, groups=2, bias=False),
])
def test_transpose_layer_repr_matches_torch(kwargs):
    torch = pytest.importorskip("torch")
    ours = convreg.ConvTranspose2d(4, 6, 3, **kwargs)
    theirs = torch.nn.ConvTranspose2d(4, 6, 3, **kwargs)
    assert repr(ours) == repr(theirs)


def test_transpose_layer_matches_torch_from_state_dict():
    torch = pytest.importorskip("torch")
    t = torch.nn.ConvTranspose2d(4, 6, (3, 2), stride=(2, 3), padding=(1, 0),
                                 output_padding=(1, 2), groups=2, dilation=(1, 2))
    layer = convreg.ConvTranspose2d(4, 6, (3, 2), stride=(2, 3), padding=(1, 0),
                                    output_padding=(1, 2), groups=2, dilation=(1, 2))
    layer.load_state_dict(t.state_dict())
    x = np.random.default_rng(0).standard_normal((2, 4, 5, 4)).astype(np.float32)
    with torch.no_grad():
        ref = t(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(layer(x), ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(layer(x[0]), ref[0], rtol=1e-5, atol=1e-5)   # unbatched


@pytest.mark.parametrize("output_size", [(9, 9), (10, 10), (1, 3, 10, 9)])
def test_transpose_output_size_as_torch(output_size):
    torch = pytest.importorskip("torch")
    t = torch.nn.ConvTranspose2d(3, 2, 3, stride=2, padding=1)
    layer = convreg.ConvTranspose2d(3, 2, 3, stride=2, padding=1)
    layer.load_state_dict(t.state_dict())
    x = np.random.default_rng(1).standard_normal((1, 3, 5, 5)).astype(np.float32)
    with torch.no_grad():
        ref = t(torch.from_numpy(x), output_size=list(output_size)).numpy()
    out = layer(x, output_size=output_size)
    assert out.shape == ref.shape
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------ backward
def _torch_grads(t_layer, x, go):
    import torch
    xt = torch.tensor(x, requires_grad=True)
    out = t_layer(xt)
    out.backward(torch.from_numpy(go))
    return xt.grad.numpy(), t_layer.weight.grad.numpy(), t_layer.bias.grad.numpy()


def _assert_backward_matches(t, layer, x_shape, seed):
    """``layer`` (given torch layer ``t``'s state) returns the input gradient and
    accumulates the weight and bias gradients that torch's autograd gives."""
    layer.load_state_dict(t.state_dict())
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(x_shape)
    y = layer(x)
    go = rng.standard_normal(y.shape)
    gx = layer.backward(go)
    tgx, tgw, tgb = _torch_grads(t, x, go)
    np.testing.assert_allclose(gx, tgx, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(layer.weight_grad, tgw, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(layer.bias_grad, tgb, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("mode", ["zeros", "reflect", "circular"])
def test_conv2d_backward_matches_torch(mode):
    torch = pytest.importorskip("torch")
    t = torch.nn.Conv2d(4, 6, 3, stride=2, padding=1, groups=2, padding_mode=mode).double()
    layer = convreg.Conv2d(4, 6, 3, stride=2, padding=1, groups=2, padding_mode=mode,
                           dtype="float64")
    _assert_backward_matches(t, layer, (2, 4, 7, 8), seed=2)


@pytest.mark.parametrize("kwargs", [
    dict(stride=2, padding=1, output_padding=1),
    dict(stride=1, dilation=3, output_padding=2, groups=2),     # output_padding >= stride
    dict(stride=(3, 2), padding=(2, 0), dilation=(1, 2)),
])
def test_transpose_backward_matches_torch(kwargs):
    torch = pytest.importorskip("torch")
    t = torch.nn.ConvTranspose2d(4, 6, 3, **kwargs).double()
    layer = convreg.ConvTranspose2d(4, 6, 3, **kwargs, dtype="float64")
    _assert_backward_matches(t, layer, (2, 4, 5, 6), seed=3)


@pytest.mark.parametrize("make", [
    lambda: convreg.Conv2d(2, 3, 3, padding=1, seed=0),
    lambda: convreg.ConvTranspose2d(2, 3, 3, stride=2, seed=0),
])
def test_gradients_accumulate_and_reset(make):
    layer = make()
    assert layer.weight_grad is None and layer.bias_grad is None
    x = np.random.default_rng(4).standard_normal((1, 2, 5, 5)).astype(np.float32)
    go = np.ones(layer(x).shape, np.float32)
    gx = layer.backward(go)
    assert gx.shape == x.shape and gx.dtype == np.float32
    first = layer.weight_grad.copy(), layer.bias_grad.copy()
    layer.backward(go)
    np.testing.assert_allclose(layer.weight_grad, 2 * first[0], rtol=1e-6)
    np.testing.assert_allclose(layer.bias_grad, 2 * first[1], rtol=1e-6)
    layer.zero_grad()
    assert not layer.weight_grad.any() and not layer.bias_grad.any()
    assert layer.weight_grad.shape == layer.weight.shape


def test_backward_without_forward_is_an_error():
    with pytest.raises(convreg.ConvSpecError, match="needs the input of a forward call"):
        convreg.Conv2d(1, 1, 3).backward(np.ones((1, 1, 2, 2), np.float32))
    with pytest.raises(convreg.ConvSpecError, match="ConvTranspose2d.backward"):
        convreg.ConvTranspose2d(1, 1, 3).backward(np.ones((1, 1, 2, 2), np.float32))


def test_backward_checks_the_gradient_shape():
    layer = convreg.Conv2d(1, 2, 3)
    layer(np.zeros((1, 1, 5, 5), np.float32))
    with pytest.raises(convreg.ConvSpecError, match=r"grad_output must have shape \(1, 2, 3, 3\)"):
        layer.backward(np.ones((1, 2, 4, 4), np.float32))


def test_unbatched_backward():
    layer = convreg.Conv2d(2, 3, 3, padding=1, seed=1, dtype="float64")
    x = np.random.default_rng(5).standard_normal((2, 4, 4))
    go = np.ones((3, 4, 4))
    layer(x)
    gx = layer.backward(go)
    layer2 = convreg.Conv2d(2, 3, 3, padding=1, seed=1, dtype="float64")
    layer2(x[None])
    np.testing.assert_allclose(gx, layer2.backward(go[None])[0])
    np.testing.assert_allclose(layer.weight_grad, layer2.weight_grad)

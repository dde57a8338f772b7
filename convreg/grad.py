"""Gradients of ``conv2d``, with the names and argument orders of ``torch.nn.grad``.

    conv2d_input(input_size, weight, grad_output, ...)  -> gradient w.r.t. the input
    conv2d_weight(input, weight_size, grad_output, ...) -> gradient w.r.t. the weight
    conv2d_bias(grad_output)                            -> gradient w.r.t. the bias

``padding_mode`` (not in torch.nn.grad) gives the gradients of a ``Conv2d`` with that
padding mode, as torch's autograd computes them: the gradient through reflect /
replicate / circular padding is added back onto the input element each padded element
copies. The calls go through the backend registry exactly as ``conv2d`` does
(``backend=``, ``use_backend`` ...); a backend without the operation is declined with
that reason.
"""

from __future__ import annotations

import numpy as np

from ._dispatch.grad import run_input, run_weight
from ._errors import ConvSpecError
from ._frontend.arrays import as_array, torch_to_numpy
from ._frontend.grad import prepare_input_grad, prepare_weight_grad
from ._settings.context import call_context


def conv2d_input(input_size, weight, grad_output, stride=1, padding=0, dilation=1, groups=1,
                 padding_mode="zeros", *, backend=None):
    """Gradient of ``conv2d(input, weight, ...)`` with respect to ``input``.

    Parameters
    ----------
    input_size : sequence of 4 ints
        The shape (N, C_in, H, W) of the convolution's input (as ``torch.nn.grad``; it
        disambiguates H, W under strides). 3 entries (C_in, H, W) with a 3-D
        ``grad_output`` give the gradient of an unbatched call.
    weight : array_like (C_out, C_in/groups, kH, kW)
    grad_output : array_like (N, C_out, H_out, W_out)
        Must have exactly the shape of the forward call's output; same dtype as weight.
    stride, padding, dilation, groups, padding_mode : as for :func:`convreg.conv2d`.

    Returns an ndarray of shape ``input_size`` and the dtype of ``weight``.
    """
    spec, go, w = prepare_input_grad(input_size, weight, grad_output, stride, padding,
                                     dilation, groups, padding_mode)
    out = run_input(spec, go, w, call_context(backend))
    return out[0] if spec.unbatched else out


def conv2d_weight(input, weight_size, grad_output, stride=1, padding=0, dilation=1,
                  groups=1, padding_mode="zeros", *, backend=None):
    """Gradient of ``conv2d(input, weight, ...)`` with respect to ``weight``.

    Parameters
    ----------
    input : array_like (N, C_in, H, W) or (C_in, H, W)
    weight_size : sequence of 4 ints (C_out, C_in/groups, kH, kW)
    grad_output : array_like, the shape of the forward call's output; same dtype as input.
    stride, padding, dilation, groups, padding_mode : as for :func:`convreg.conv2d`.

    Returns an ndarray of shape ``weight_size`` and the dtype of ``input``.
    """
    spec, x, go = prepare_weight_grad(input, weight_size, grad_output, stride, padding,
                                      dilation, groups, padding_mode)
    return run_weight(spec, x, go, call_context(backend))


def conv2d_bias(grad_output):
    """Gradient of ``conv2d(..., bias)`` with respect to ``bias``: ``grad_output``
    summed over batch, height and width (3-D: unbatched, summed over height and width).
    Accumulated in float64, returned in grad_output's dtype."""
    hint = getattr(torch_to_numpy(grad_output), "dtype", None)
    go = as_array("grad_output", grad_output, hint)
    if go.ndim not in (3, 4):
        raise ConvSpecError(
            f"grad_output must be 3-D (C_out, H_out, W_out) or 4-D (N, C_out, H_out, W_out), "
            f"but got grad_output of shape {go.shape}")
    axes = (0, 2, 3) if go.ndim == 4 else (1, 2)
    return go.sum(axis=axes, dtype=np.float64).astype(go.dtype)


__all__ = ["conv2d_input", "conv2d_weight", "conv2d_bias"]
